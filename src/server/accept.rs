//! Accepting connections on every listener (gRPC, plaintext or TLS, and the HTTP port): a cap
//! on open connections, and a backoff when accepting fails.
//!
//! Owns: how many connections a listener holds open, what happens when `accept` fails, and
//! how many connections fit in the process's open-file limit. Does not own: what is served on
//! a connection, or how long it may stay (`limits`, `http`, `tls`).
//!
//! - **Cap.** Each listener has a number of connection slots. An accepted connection takes one
//!   and gives it back when it closes ([`Admitted`] holds it); a connection accepted with no
//!   slot free is closed at once and counted in
//!   `verdict_limit_rejections_total{limit="connections"}`. Accepting (rather than leaving it in
//!   the kernel's backlog) is what keeps the listener from waking up for it again.
//! - **Open files.** The caps of all listeners, plus [`FD_RESERVE`] for the process's own files
//!   (bundle files while reloading, the file watcher, TLS files), must fit under the open-file
//!   limit: otherwise `accept` and every file open fail with "too many open files" while idle
//!   connections hold the descriptors. [`fit_to_open_file_limit`] lowers the caps at startup
//!   and says so.
//! - **Backoff.** A failed `accept` that is about the listener or the process (EMFILE, ENFILE,
//!   ENOBUFS, ENOMEM) leaves the pending connection in the backlog, so accepting again at once
//!   fails again: a loop at 100% of a core. The acceptor sleeps instead, from
//!   [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`], and starts over after a success. Errors
//!   about the one connection being accepted (ECONNABORTED, ECONNRESET) are skipped at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::telemetry::metrics::{LimitBreach, record_limit_breach};

/// The first pause after a failed `accept`.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between two failed `accept`s.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// File descriptors kept for the process itself, out of the open-file limit: standard streams,
/// the runtime's, the listeners, the file watcher, and the files a bundle reload opens (one
/// at a time, plus the directories being walked).
pub(super) const FD_RESERVE: usize = 32;

/// Most open connections on the HTTP port: probes and a scraper need a few each.
pub(super) const HTTP_MAX_CONNECTIONS: usize = 64;

/// The connection caps of the listeners, after fitting them to the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnectionCaps {
    /// The gRPC listener's cap.
    pub(super) grpc: usize,
    /// The HTTP port's cap.
    pub(super) http: usize,
    /// The HTTP API listener's cap (0 when it is off).
    pub(super) api: usize,
}

/// Lowers the caps so that all of them, plus [`FD_RESERVE`], fit under `open_file_limit`
/// (`None`: unknown or unlimited, the caps stay). The HTTP port keeps a quarter of what is
/// available at most, the HTTP API (when on) half of the rest at most, and the gRPC port the
/// remainder.
pub(super) fn fit_to_open_file_limit(
    wanted: ConnectionCaps,
    open_file_limit: Option<u64>,
) -> ConnectionCaps {
    let Some(limit) = open_file_limit else {
        return wanted;
    };
    let available = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE);
    if wanted
        .grpc
        .saturating_add(wanted.http)
        .saturating_add(wanted.api)
        <= available
    {
        return wanted;
    }
    let http = wanted.http.min(available / 4).max(1);
    let api = match wanted.api {
        0 => 0,
        wanted_api => wanted_api.min(available.saturating_sub(http) / 2).max(1),
    };
    let grpc = wanted
        .grpc
        .min(available.saturating_sub(http).saturating_sub(api))
        .max(1);
    ConnectionCaps { grpc, http, api }
}

/// The process's soft limit on open files, from `/proc/self/limits` (Linux); `None` when
/// unlimited or unknown. Read from the file rather than `getrlimit` to stay without `unsafe`.
pub(super) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a failed `accept` is about the one connection (skip it and accept the next at once)
/// rather than about the listener or the process (back off).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The pause after `previous` (none yet: [`MIN_BACKOFF`]), doubling up to [`MAX_BACKOFF`].
fn next_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(MIN_BACKOFF, |previous| (previous * 2).min(MAX_BACKOFF))
}

/// A listener that accepts at most `slots` connections at once and backs off when accepting
/// fails: a [`tokio_stream::Stream`] of connections for tonic, and an `accept` for the HTTP
/// port's own loop.
#[derive(Debug)]
pub(super) struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    /// `grpc` or `http`, for logs.
    name: &'static str,
    /// Set while pausing after a failed `accept`.
    pause: Option<Pin<Box<Sleep>>>,
    /// The last pause, while `accept` keeps failing.
    backoff: Option<Duration>,
}

impl Acceptor {
    /// Accepts on `listener`, at most `max_connections` open at once.
    pub(super) fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            name,
            pause: None,
            backoff: None,
        }
    }

    /// The next connection with a free slot.
    pub(super) async fn accept(&mut self) -> Admitted<TcpStream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Admitted<TcpStream>> {
        loop {
            if let Some(pause) = self.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, peer)) => {
                    self.backoff = None;
                    let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                        // Dropping the stream closes it.
                        record_limit_breach(LimitBreach::Connections);
                        tracing::debug!(listener = self.name, %peer, "too many open connections; connection closed");
                        continue;
                    };
                    return Poll::Ready(Admitted {
                        stream,
                        peer,
                        _slot: slot,
                    });
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(listener = self.name, %error, "accept failed for one connection");
                }
                Err(error) => {
                    let pause = next_backoff(self.backoff);
                    self.backoff = Some(pause);
                    tracing::warn!(listener = self.name, %error, pause = %humantime::format_duration(pause), "accept failed; pausing before the next");
                    self.pause = Some(Box::pin(tokio::time::sleep(pause)));
                }
            }
        }
    }
}

/// Never ends: a listener that fails to accept pauses and tries again.
impl tokio_stream::Stream for Acceptor {
    type Item = io::Result<Admitted<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx).map(|connection| Some(Ok(connection)))
    }
}

/// An accepted connection holding its listener's slot until dropped.
#[derive(Debug)]
pub(super) struct Admitted<IO> {
    stream: IO,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
}

impl<IO> Admitted<IO> {
    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection itself.
    pub(super) fn get_ref(&self) -> &IO {
        &self.stream
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Admitted<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_to_the_maximum() {
        let mut pause = None;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            let next = next_backoff(pause);
            pauses.push(next);
            pause = Some(next);
        }
        assert_eq!(pauses[0], MIN_BACKOFF);
        assert_eq!(pauses[1], MIN_BACKOFF * 2);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), MAX_BACKOFF);
    }

    #[test]
    fn running_out_of_files_backs_off_and_a_dropped_connection_does_not() {
        for errno in [
            24,  /* EMFILE */
            23,  /* ENFILE */
            105, /* ENOBUFS */
            12,  /* ENOMEM */
        ] {
            assert!(!is_connection_error(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [
            103, /* ECONNABORTED */
            104, /* ECONNRESET */
            4,   /* EINTR */
        ] {
            assert!(is_connection_error(&io::Error::from_raw_os_error(errno)));
        }
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert!(open_file_limit().is_some());
    }

    #[test]
    fn caps_fit_under_the_open_file_limit() {
        let wanted = ConnectionCaps {
            grpc: 1024,
            http: HTTP_MAX_CONNECTIONS,
            api: 0,
        };
        assert_eq!(fit_to_open_file_limit(wanted, None), wanted);
        assert_eq!(fit_to_open_file_limit(wanted, Some(1 << 20)), wanted);
        let fitted = fit_to_open_file_limit(wanted, Some(128));
        assert_eq!(
            fitted,
            ConnectionCaps {
                grpc: 72,
                http: 24,
                api: 0
            }
        );
        assert!(fitted.grpc + fitted.http + FD_RESERVE <= 128);
        let tiny = fit_to_open_file_limit(wanted, Some(8));
        assert_eq!(
            tiny,
            ConnectionCaps {
                grpc: 1,
                http: 1,
                api: 0
            }
        );
        // With the HTTP API on, it shares what the HTTP port leaves with the gRPC port.
        let with_api = ConnectionCaps {
            api: 1024,
            ..wanted
        };
        let fitted = fit_to_open_file_limit(with_api, Some(128));
        assert_eq!(
            fitted,
            ConnectionCaps {
                grpc: 36,
                http: 24,
                api: 36
            }
        );
        assert!(fitted.grpc + fitted.http + fitted.api + FD_RESERVE <= 128);
    }
}
