//! Admission of Authorization requests: a request takes one of the server's request slots
//! (`--max-concurrent-requests`) and one of its connection's
//! (`--max-concurrent-requests-per-connection`) only once its whole message has arrived, and
//! holds them only while it is answered.
//!
//! Owns: receiving the request's message (within `--request-body-timeout`, at most
//! `--max-message-bytes`, exactly one well-framed gRPC message), the two slot counts, and the
//! answers for each refusal (one table: [`Refusal::answer`]). Does not own: decoding the
//! message (tonic, behind this service), the request deadline or the connection state
//! (`super::limits`).
//!
//! Why the message first (issue 15, finding 1): taken when the headers arrived, a slot was held
//! until the message came or the request timed out, so clients sending headers and never a
//! message held every slot for the price of a few bytes each, and everyone else was shed.
//! Now a stream waiting for its message holds one of its own connection's HTTP/2 streams
//! (`--max-concurrent-streams`) and nothing shared; it is answered DEADLINE_EXCEEDED when the
//! body timeout passes, and CANCELLED if the client resets it or goes away first.
//!
//! ```text
//!   headers ──► receive the message ──► per-connection slot ──► global slot ──► handler ──► answer
//!               │ ≤ body timeout          │ or RESOURCE_EXHAUSTED  │ or RESOURCE_EXHAUSTED      │
//!               │ ≤ max message bytes     └────────── both held until the answer ─────────────┘
//!               └ or DEADLINE_EXCEEDED / INVALID_ARGUMENT / CANCELLED, holding no slot
//! ```
//!
//! The per-connection cap is what keeps one connection from holding the pool: with the
//! defaults, 64 of 1024. Both refuse at once rather than queue.
//!
//! Malformed framing is answered here too, INVALID_ARGUMENT with a plain message (tonic would
//! answer INTERNAL or UNKNOWN): a length prefix longer than the data, a prefix shorter than
//! its 5 bytes, no message at all, more than one message, a compression flag without an
//! encoding. Oversized messages are refused from their prefix, before their bytes arrive.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use super::limits::connection_activity;
use crate::telemetry::metrics::{LimitBreach, record_limit_breach};

/// A gRPC message's prefix: a compression flag and a big-endian `u32` length.
const PREFIX_BYTES: usize = 5;

/// How the Authorization service admits requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct AdmissionSettings {
    /// Request slots across all connections (`--max-concurrent-requests`).
    pub(super) max_concurrent_requests: usize,
    /// Request slots of one connection (`--max-concurrent-requests-per-connection`).
    pub(super) max_per_connection: usize,
    /// Time for the message to arrive after the headers (`--request-body-timeout`).
    pub(super) body_timeout: Duration,
    /// Largest message (`--max-message-bytes`).
    pub(super) max_message_bytes: usize,
}

/// The Authorization service behind admission: a tower service written by hand because tonic
/// routes only a `NamedService` whose error is `Infallible`, and every refusal is an answer.
#[derive(Debug, Clone)]
pub(super) struct Admission<S> {
    inner: S,
    slots: Arc<Semaphore>,
    settings: AdmissionSettings,
    /// The request limits, for counting a message's values before it is decoded.
    limits: Arc<verdict_core::Limits>,
}

impl<S> Admission<S> {
    /// Admits `inner`'s requests per `settings`.
    pub(super) fn new(
        inner: S,
        settings: AdmissionSettings,
        limits: Arc<verdict_core::Limits>,
    ) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            settings,
            limits,
        }
    }
}

impl<S> Admission<S> {
    /// Admits `other`'s requests with the same settings and the same request slots: every
    /// front-end draws from one pool.
    pub(super) fn sharing<T>(&self, other: T) -> Admission<T> {
        Admission {
            inner: other,
            slots: Arc::clone(&self.slots),
            settings: self.settings,
            limits: Arc::clone(&self.limits),
        }
    }
}

impl<S> Admission<S> {
    /// Returns the request slots, for another listener to draw from the same pool (the HTTP
    /// API).
    pub(super) fn slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.slots)
    }
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
}

/// Why a request was not admitted; each becomes one answer in [`Refusal::answer`].
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The client reset the stream or closed the connection before its message arrived.
    Cancelled,
    /// The message did not arrive within the body timeout.
    BodyTimeout(Duration),
    /// The message's prefix announces more than the limit.
    TooLarge { size: usize, limit: usize },
    /// A compressed message, in an encoding the server does not accept.
    Compressed { encoding: Option<String> },
    /// Anything else wrong with the framing, with what.
    Malformed(String),
    /// Every slot of the connection is taken.
    ConnectionBusy,
    /// Every slot of the server is taken.
    Overloaded,
    /// The message, counted on the wire before decoding, breaks a request limit
    /// (`--max-collection-elements`, `--max-request-work`).
    Costly(verdict_core::RequestError),
}

impl Refusal {
    /// The answer, and the count in `verdict_limit_rejections_total`.
    fn answer(self) -> http::Response<Body> {
        let (breach, status) = match self {
            Self::Cancelled => (
                None,
                Status::cancelled("the request was cancelled before its message arrived"),
            ),
            Self::BodyTimeout(timeout) => (
                Some(LimitBreach::BodyTimeout),
                Status::deadline_exceeded(format!(
                    "the request message did not arrive within {timeout:?} of its headers"
                )),
            ),
            Self::TooLarge { size, limit } => (
                Some(LimitBreach::MessageSize),
                Status::invalid_argument(format!(
                    "request message is {size} bytes, over the limit of {limit} bytes"
                )),
            ),
            Self::Compressed {
                encoding: Some(encoding),
            } => (
                Some(LimitBreach::Decoding),
                Status::unimplemented(format!("message compression `{encoding}` is not supported")),
            ),
            Self::Compressed { encoding: None } => (
                Some(LimitBreach::Decoding),
                Status::invalid_argument(
                    "request message is marked compressed, but the request names no grpc-encoding",
                ),
            ),
            Self::Malformed(text) => (Some(LimitBreach::Decoding), Status::invalid_argument(text)),
            Self::ConnectionBusy => (
                Some(LimitBreach::ConnectionConcurrency),
                Status::resource_exhausted(
                    "too many requests in progress on this connection; retry with backoff (treat as deny meanwhile)",
                ),
            ),
            Self::Costly(error) => (
                error.limit().map(LimitBreach::from),
                Status::invalid_argument(error.to_string()),
            ),
            Self::Overloaded => (
                Some(LimitBreach::Concurrency),
                Status::resource_exhausted(
                    "too many requests in progress; retry with backoff (treat as deny meanwhile)",
                ),
            ),
        };
        if let Some(breach) = breach {
            record_limit_breach(breach);
        }
        status.into_http()
    }
}

/// Checks a message's prefix; returns the message's length.
fn check_prefix(
    prefix: [u8; PREFIX_BYTES],
    headers: &HeaderMap,
    limit: usize,
) -> Result<usize, Refusal> {
    let [flag, length @ ..] = prefix;
    match flag {
        0 => {}
        1 => {
            let encoding = headers
                .get("grpc-encoding")
                .and_then(|value| value.to_str().ok())
                .filter(|encoding| *encoding != "identity")
                .map(str::to_owned);
            return Err(Refusal::Compressed { encoding });
        }
        other => {
            return Err(Refusal::Malformed(format!(
                "request message has an invalid compression flag {other}"
            )));
        }
    }
    let size = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if size > limit {
        return Err(Refusal::TooLarge { size, limit });
    }
    Ok(size)
}

/// Reads `body` to its end: exactly one gRPC message of at most `limit` bytes, returned with
/// its prefix. Never buffers more than the prefix announces.
async fn receive_message<B>(
    mut body: B,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Refusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut received = BytesMut::new();
    // The prefix and message length, once the prefix is in.
    let mut total = None;
    while let Some(frame) = body.frame().await {
        // A body error is the client's stream ending badly: a reset, or the connection gone.
        let frame = frame.map_err(|_| Refusal::Cancelled)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received.extend_from_slice(&data);
        if total.is_none()
            && let Some(prefix) = received.first_chunk::<PREFIX_BYTES>()
        {
            total = Some(PREFIX_BYTES + check_prefix(*prefix, headers, limit)?);
        }
        if let Some(total) = total
            && received.len() > total
        {
            return Err(Refusal::Malformed(
                "request body holds more than one message".to_owned(),
            ));
        }
    }
    match total {
        None if received.is_empty() => Err(Refusal::Malformed("request has no message".to_owned())),
        None => Err(Refusal::Malformed(format!(
            "request message prefix is truncated: {} of {PREFIX_BYTES} bytes",
            received.len()
        ))),
        Some(total) if received.len() < total => Err(Refusal::Malformed(format!(
            "request message is truncated: {} of {} bytes",
            received.len() - PREFIX_BYTES,
            total - PREFIX_BYTES
        ))),
        Some(_) => Ok(received.freeze()),
    }
}

impl<S> Service<http::Request<Body>> for Admission<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Refusals are answers, and the inner service is called through `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let slots = Arc::clone(&self.slots);
        let settings = self.settings;
        let limits = Arc::clone(&self.limits);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let received = tokio::time::timeout(
                settings.body_timeout,
                receive_message(body, &parts.headers, settings.max_message_bytes),
            )
            .await
            .unwrap_or(Err(Refusal::BodyTimeout(settings.body_timeout)));
            let message = match received {
                Ok(message) => message,
                Err(refusal) => return Ok(refusal.answer()),
            };
            // Counted before decoding: decoding a large set is the cost it would bound.
            if let Some(encoded) = message.get(PREFIX_BYTES..)
                && let Err(error) = crate::api::prescan(parts.uri.path(), encoded, &limits)
            {
                crate::telemetry::metrics::record_rejection(
                    crate::telemetry::metrics::Rejection::Invalid,
                );
                return Ok(Refusal::Costly(error).answer());
            }
            // INVARIANT: both slots are taken only now that the message is in, and are held
            // until the answer is ready (the handler's work; the answer's body is one message).
            let connection_slot = match connection_activity(&parts.extensions) {
                Some(activity) => match activity.try_admit(settings.max_per_connection) {
                    Some(slot) => Some(slot),
                    None => return Ok(Refusal::ConnectionBusy.answer()),
                },
                None => None,
            };
            let Ok(slot) = slots.try_acquire_owned() else {
                return Ok(Refusal::Overloaded.answer());
            };
            let request =
                http::Request::from_parts(parts, Body::new(http_body_util::Full::new(message)));
            let response = inner.oneshot(request).await;
            drop((slot, connection_slot));
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};

    use super::*;

    const LIMIT: usize = 1024;

    async fn receive_chunks(chunks: &[&[u8]], headers: &HeaderMap) -> Result<Bytes, Refusal> {
        let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = chunks
            .iter()
            .map(|chunk| Ok(http_body::Frame::data(Bytes::copy_from_slice(chunk))))
            .collect();
        receive_message(StreamBody::new(tokio_stream::iter(frames)), headers, LIMIT).await
    }

    async fn receive(body: &[u8]) -> Result<Bytes, Refusal> {
        receive_message(
            Full::new(Bytes::copy_from_slice(body)),
            &HeaderMap::new(),
            LIMIT,
        )
        .await
    }

    fn malformed(result: Result<Bytes, Refusal>) -> String {
        match result {
            Err(Refusal::Malformed(text)) => text,
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_whole_message_is_received_in_pieces() {
        let message = [0, 0, 0, 0, 3, b'a', b'b', b'c'];
        let received = receive_chunks(
            &[&message[..2], &message[2..6], &message[6..]],
            &HeaderMap::new(),
        )
        .await
        .unwrap();
        assert_eq!(&received[..], &message[..]);
        assert_eq!(
            &receive(&[0, 0, 0, 0, 0]).await.unwrap()[..],
            &[0, 0, 0, 0, 0]
        );
    }

    #[tokio::test]
    async fn truncated_and_extra_framing_is_malformed() {
        assert_eq!(malformed(receive(&[]).await), "request has no message");
        assert_eq!(
            malformed(receive(&[0, 0, 0]).await),
            "request message prefix is truncated: 3 of 5 bytes"
        );
        assert_eq!(
            malformed(receive(&[0, 0, 0, 0, 10, 1, 2]).await),
            "request message is truncated: 2 of 10 bytes"
        );
        assert_eq!(
            malformed(receive(&[0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]).await),
            "request body holds more than one message"
        );
        assert_eq!(
            malformed(receive(&[7, 0, 0, 0, 0]).await),
            "request message has an invalid compression flag 7"
        );
    }

    #[tokio::test]
    async fn compressed_messages_are_refused_by_encoding() {
        assert_eq!(
            receive(&[1, 0, 0, 0, 0]).await,
            Err(Refusal::Compressed { encoding: None })
        );
        let mut headers = HeaderMap::new();
        headers.insert("grpc-encoding", "gzip".parse().unwrap());
        assert_eq!(
            receive_chunks(&[&[1, 0, 0, 0, 0]], &headers).await,
            Err(Refusal::Compressed {
                encoding: Some("gzip".to_owned())
            })
        );
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_from_its_prefix() {
        // Only the prefix is sent: the refusal does not wait for the rest.
        let prefix = u32::try_from(LIMIT + 1).unwrap().to_be_bytes();
        assert_eq!(
            receive(&[0, prefix[0], prefix[1], prefix[2], prefix[3]]).await,
            Err(Refusal::TooLarge {
                size: LIMIT + 1,
                limit: LIMIT
            })
        );
    }

    #[test]
    fn refusals_answer_their_codes() {
        use tonic::Code;
        let code = |refusal: Refusal| {
            Status::from_header_map(refusal.answer().headers())
                .unwrap()
                .code()
        };
        assert_eq!(code(Refusal::Cancelled), Code::Cancelled);
        assert_eq!(
            code(Refusal::BodyTimeout(Duration::from_secs(1))),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code(Refusal::TooLarge { size: 2, limit: 1 }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Refusal::Compressed { encoding: None }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Refusal::Compressed {
                encoding: Some("gzip".to_owned())
            }),
            Code::Unimplemented
        );
        assert_eq!(
            code(Refusal::Malformed(String::new())),
            Code::InvalidArgument
        );
        assert_eq!(code(Refusal::ConnectionBusy), Code::ResourceExhausted);
        assert_eq!(code(Refusal::Overloaded), Code::ResourceExhausted);
    }
}
