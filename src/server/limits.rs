//! Transport limits, as tower layers and wrappers around the gRPC server:
//!
//! - decoding failures (a message over `--max-message-bytes`, or one prost refuses, such as a
//!   context nested beyond its recursion limit) become INVALID_ARGUMENT with a plain message,
//!   where tonic would answer OUT_OF_RANGE or INTERNAL (recognised by tonic's message text,
//!   the only thing tonic 0.14 leaves to go on: see `decoding_failure`);
//! - a deadline per request (`--request-timeout`): DEADLINE_EXCEEDED when it passes;
//! - an idle timeout on connections (`--idle-timeout`): a connection with no request in
//!   progress for that long is closed;
//! - each connection's [`ConnectionActivity`]: its requests in progress (for the idle timeout)
//!   and its admitted Authorization requests (for `super::admission`'s per-connection cap).
//!
//! Admission (the message's arrival, and the global and per-connection request slots) is in
//! `super::admission`; connection caps and accept backoff in `super::accept`.
//!
//! Every breach is counted in `verdict_limit_rejections_total{limit}`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use super::observe::Observer;
use crate::telemetry::metrics::{LimitBreach, record_limit_breach};

/// Rewrites tonic's answers to messages it could not decode into INVALID_ARGUMENT, and counts
/// them.
pub(super) fn rewrite_decoding_errors(response: http::Response<Body>) -> http::Response<Body> {
    let Some(failure) = response
        .extensions()
        .get::<Status>()
        .and_then(decoding_failure)
    else {
        return response;
    };
    let (breach, text) = match failure {
        DecodingFailure::TooLarge {
            size_and_limit: Some((size, limit)),
        } => (
            LimitBreach::MessageSize,
            format!("request message is {size} bytes, over the limit of {limit} bytes"),
        ),
        DecodingFailure::TooLarge {
            size_and_limit: None,
        } => (
            LimitBreach::MessageSize,
            "request message is over the size limit".to_owned(),
        ),
        DecodingFailure::TooDeep => (
            LimitBreach::Decoding,
            "request message is nested too deeply to decode".to_owned(),
        ),
        DecodingFailure::Invalid { detail } => (
            LimitBreach::Decoding,
            format!("request message is not valid protobuf: {detail}"),
        ),
    };
    record_limit_breach(breach);
    Status::invalid_argument(text).into_http()
}

/// A request message tonic could not decode.
#[derive(Debug, PartialEq, Eq)]
enum DecodingFailure<'a> {
    /// Over the size limit (`--max-message-bytes` for the Authorization service), with the
    /// message's size and the limit when tonic's message has them.
    TooLarge {
        size_and_limit: Option<(&'a str, &'a str)>,
    },
    /// Nested beyond prost's recursion limit.
    TooDeep,
    /// Anything else prost refuses, with prost's description.
    Invalid { detail: &'a str },
}

/// Tells tonic's decoding failures from every other status, by tonic's message text: the one
/// place Verdict reads another crate's messages. Nothing typed is left to read in tonic 0.14:
/// its size check answers `Status::out_of_range(format!(..))` (`tonic::codec::decode`), and
/// tonic-prost answers `Status::internal(error.to_string())` for prost's `DecodeError`, both
/// without a source (and prost keeps the kind of a `DecodeError` private). The code alone is
/// not enough: tonic also answers OUT_OF_RANGE for an I/O `UnexpectedEof`, and handlers answer
/// INTERNAL (with their own generic message). The tests below run tonic's own decoder, so an
/// upgrade that changes these messages fails there.
fn decoding_failure(status: &Status) -> Option<DecodingFailure<'_>> {
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.contains("message length too large") => {
            let numbers: Vec<&str> = message
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .collect();
            let size_and_limit = match numbers.as_slice() {
                [size, limit] => Some((*size, *limit)),
                _ => None,
            };
            Some(DecodingFailure::TooLarge { size_and_limit })
        }
        Code::Internal => {
            let detail = message
                .strip_prefix("failed to decode Protobuf message")?
                .trim_start_matches(':')
                .trim();
            if detail.contains("recursion limit") {
                Some(DecodingFailure::TooDeep)
            } else {
                Some(DecodingFailure::Invalid { detail })
            }
        }
        _ => None,
    }
}

/// Awaits `response`, or answers DEADLINE_EXCEEDED once `deadline` has passed: the future
/// of every request, through `ServiceBuilder::map_future`. (tokio's timeout, not tower's
/// `TimeoutLayer` or tonic's `Server::timeout`: their elapsed errors reach the client as
/// UNKNOWN and CANCELLED, where gRPC's code for a deadline is DEADLINE_EXCEEDED, counted here.)
pub(super) async fn within_deadline<F, E>(
    deadline: Duration,
    response: F,
) -> Result<http::Response<Body>, E>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    match tokio::time::timeout(deadline, response).await {
        Ok(response) => response,
        Err(_) => {
            record_limit_breach(LimitBreach::Deadline);
            Ok(Status::deadline_exceeded(format!(
                "no answer within the server's deadline of {deadline:?}"
            ))
            .into_http())
        }
    }
}

/// A connection closed after `idle` with no request in progress on it (grpc-go's
/// `MaxConnectionIdle`): idleness counts from when the connection opened or its last request
/// ended, whichever is later. Bytes alone do not count as activity: the server's keepalive
/// pings are answered by every live client, so counting reads would keep an abandoned
/// connection open forever. Requests are counted by [`track_request`], which finds this
/// connection's [`ConnectionActivity`] through the connection info tonic puts in each request.
///
/// Every connection has its activity, with or without an idle timeout: admission counts each
/// connection's requests there too.
pub(super) struct IdleTimeout<IO> {
    inner: IO,
    activity: Arc<ConnectionActivity>,
    /// `None` when idle connections may stay.
    timer: Option<IdleTimer>,
}

/// The timer is not moved by requests (that would be a timer-wheel update per request): a
/// request only notes the time it ended, and when the timer fires early because of requests
/// since it was set, it is set again for the rest.
struct IdleTimer {
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

/// Requests in progress on one connection and when the last one ended, and its admitted
/// Authorization requests.
#[derive(Debug)]
pub(super) struct ConnectionActivity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds after `opened`.
    last_ended_ms: AtomicU64,
    /// Authorization requests holding a request slot (see `super::admission`).
    admitted: AtomicUsize,
}

/// One admitted request counted against its connection; uncounted when dropped.
#[derive(Debug)]
pub(super) struct ConnectionSlot(Arc<ConnectionActivity>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionActivity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
            admitted: AtomicUsize::new(0),
        }
    }

    /// Counts one more admitted request on this connection, unless `max` already are.
    pub(super) fn try_admit(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |admitted| {
                (admitted < max).then_some(admitted + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(Arc::clone(self)))
    }

    /// When the connection went idle, or `None` while a request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_ended_ms.load(Ordering::Acquire)))
    }
}

/// Counts one request as in progress on its connection until dropped: with the response body,
/// so a stream (a health `Watch`) keeps its connection busy for as long as it is open.
pub(super) struct RequestInProgress(Arc<ConnectionActivity>);

/// Needs no look at the response: being dropped with it is the whole job.
impl Observer for RequestInProgress {}

impl RequestInProgress {
    pub(super) fn start(activity: &Arc<ConnectionActivity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        let ended = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.fetch_max(ended, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection wrapped in [`IdleTimeout`] tells tonic about itself: the inner
/// connection's information, and its activity for [`track_request`].
#[derive(Debug, Clone)]
pub(super) struct TrackedConnectInfo<T> {
    #[expect(
        dead_code,
        reason = "nothing reads the peer address today; it stays with the connection for logs"
    )]
    inner: T,
    activity: Arc<ConnectionActivity>,
}

/// The connection info tonic puts in requests, for plaintext and TLS connections.
type PlainInfo = TrackedConnectInfo<TcpConnectInfo>;
pub(super) type TlsInfo = TlsConnectInfo<TrackedConnectInfo<TcpConnectInfo>>;

/// The activity of the connection a request came on, from the connection info tonic puts in
/// its extensions; `None` only for a request that did not come through Verdict's listeners.
pub(super) fn connection_activity(
    extensions: &http::Extensions,
) -> Option<&Arc<ConnectionActivity>> {
    extensions
        .get::<PlainInfo>()
        .or_else(|| extensions.get::<TlsInfo>().map(TlsConnectInfo::get_ref))
        .map(|info| &info.activity)
}

/// Counts `request` (of any service) as in progress on its connection until its response
/// ends, for the idle timeout: an observer in [`super::observe`].
pub(super) fn track_request(request: &http::Request<Body>) -> Option<RequestInProgress> {
    connection_activity(request.extensions()).map(RequestInProgress::start)
}

impl<IO> IdleTimeout<IO> {
    /// This connection's activity, for a server that counts its requests itself (the HTTP
    /// API's, which tonic's connection info does not reach).
    pub(super) fn activity(&self) -> Arc<ConnectionActivity> {
        Arc::clone(&self.activity)
    }

    pub(super) fn new(inner: IO, idle: Option<Duration>) -> Self {
        Self {
            inner,
            activity: Arc::new(ConnectionActivity::new()),
            timer: idle.map(|idle| IdleTimer {
                idle,
                sleep: Box::pin(tokio::time::sleep(idle)),
            }),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let (Poll::Pending, Some(timer)) = (&read, this.timer.as_mut()) else {
            return read;
        };
        // Waiting for the client: wake at the deadline, and close if it has truly passed.
        loop {
            if timer.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let deadline = match this.activity.idle_since() {
                Some(since) => since + timer.idle,
                None => now + timer.idle,
            };
            if deadline <= now {
                record_limit_breach(LimitBreach::IdleConnection);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            timer.sleep.as_mut().reset(deadline);
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: Connected> Connected for IdleTimeout<IO> {
    type ConnectInfo = TrackedConnectInfo<IO::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        TrackedConnectInfo {
            inner: self.inner.connect_info(),
            activity: Arc::clone(&self.activity),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body::Frame;
    use prost::Message;
    use prost_types::value::Kind;
    use prost_types::{Struct, Value};
    use tonic::codec::Streaming;
    use tonic_prost::ProstDecoder;

    use super::*;

    /// A request body of one chunk.
    struct OneChunk(Option<Bytes>);

    impl http_body::Body for OneChunk {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.take().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    /// The status tonic's own request decoder answers for `message`, under `limit` bytes.
    async fn tonic_decoding_status(message: &[u8], limit: usize) -> Status {
        let mut frame = vec![0];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(message);
        let mut messages = Streaming::<Value>::new_request(
            ProstDecoder::<Value>::default(),
            OneChunk(Some(frame.into())),
            None,
            Some(limit),
        );
        messages.message().await.unwrap_err()
    }

    fn answer(status: Status) -> Status {
        let response = rewrite_decoding_errors(status.into_http());
        Status::from_header_map(response.headers()).unwrap()
    }

    #[tokio::test]
    async fn tonics_oversize_message_is_recognised_with_its_numbers() {
        let status = tonic_decoding_status(&[0; 100], 10).await;
        assert_eq!(
            decoding_failure(&status),
            Some(DecodingFailure::TooLarge {
                size_and_limit: Some(("100", "10"))
            }),
            "{status:?}"
        );
        let answer = answer(status);
        assert_eq!(answer.code(), Code::InvalidArgument);
        assert_eq!(
            answer.message(),
            "request message is 100 bytes, over the limit of 10 bytes"
        );
    }

    #[tokio::test]
    async fn prosts_recursion_limit_is_recognised() {
        let mut value = Value::default();
        for _ in 0..200 {
            value = Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: [("a".to_owned(), value)].into(),
                })),
            };
        }
        let status = tonic_decoding_status(&value.encode_to_vec(), usize::MAX).await;
        assert_eq!(
            decoding_failure(&status),
            Some(DecodingFailure::TooDeep),
            "{status:?}"
        );
        let answer = answer(status);
        assert_eq!(answer.code(), Code::InvalidArgument);
        assert_eq!(
            answer.message(),
            "request message is nested too deeply to decode"
        );
    }

    #[tokio::test]
    async fn other_protobuf_errors_are_recognised_with_prosts_description() {
        let status = tonic_decoding_status(&[0xff], usize::MAX).await;
        let Some(DecodingFailure::Invalid { detail }) = decoding_failure(&status) else {
            panic!("not recognised: {status:?}");
        };
        assert!(!detail.is_empty(), "{status:?}");
        assert_eq!(answer(status).code(), Code::InvalidArgument);
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for status in [
            Status::internal("internal error"),
            Status::out_of_range("unexpected end of file"),
            Status::invalid_argument("failed to decode Protobuf message"),
        ] {
            assert_eq!(decoding_failure(&status), None, "{status:?}");
        }
    }
}
