//! The HTTP API listener (`--http-addr`): HTTP/1.1 and h2c (or HTTPS with either, by ALPN,
//! under the `--tls-*` settings), serving `crate::api::http`'s router behind the same
//! protections as the gRPC port.
//!
//! Owns: the accept loop (the connection cap and backoff of [`super::accept`], the TLS
//! handshake of [`super::tls`]), hyper's connection settings, and what every request goes
//! through before a handler, in this order:
//!
//! ```text
//!   headers (≤ 5 s, ≤ --max-header-list-bytes) ─► request id ─► caller key / certificate
//!     ─► the whole body (≤ --http-max-body-bytes, ≤ --request-body-timeout; holding no slot)
//!     ─► a request slot from the pool the gRPC port uses (--max-concurrent-requests) or 429
//!     ─► the handler, within --request-timeout or 504 ─► x-request-id echoed, metrics
//! ```
//!
//! - **Request ids.** An `X-Request-ID` the client sent is echoed back unchanged (AuthZEN
//!   requires the same identifier in the response); without one, the server's id for the
//!   request is sent back. The decision log uses the given id only when it is a sane token
//!   (`crate::api`'s `RequestId`), else the server's.
//! - **Caller authentication** is the gRPC port's (`super::auth`): API keys in
//!   `authorization: Bearer <key>` and, with `--tls-client-ca`, the client certificate's
//!   identities; a refusal is 401 or 403 with the JSON error body. The metadata and the
//!   OpenAPI document are open.
//! - **Slow and idle clients.** Headers must arrive within [`HEADER_READ_TIMEOUT`] (the same
//!   timer closes a kept-alive HTTP/1 connection idle for that long); an h2c or HTTP/2
//!   connection with no request in progress for `--idle-timeout` is closed, as on the gRPC
//!   port (`super::limits::IdleTimeout`: keepalive pings do not count); the body within
//!   `--request-body-timeout` (408). A request takes a slot only once its body is in, as on
//!   the gRPC port (`super::admission`), so slow bodies cannot starve others of slots.
//! - **Drain.** On shutdown the listener stops accepting, connections finish their requests in
//!   progress (HTTP/1 closes after the current response, HTTP/2 sends GOAWAY), and what is
//!   left after `--shutdown-grace` is closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::Instrument;

use super::accept::Acceptor;
use super::auth::{self, ClientCertificates};
use super::http::HEADER_READ_TIMEOUT;
use super::limits::{IdleTimeout, RequestInProgress};
use super::tls::TlsState;
use crate::api::http::{HttpError, OPEN_ROUTES, route_label};
use crate::api::record::RequestId;
use crate::telemetry::metrics::{self as telemetry_metrics, LimitBreach, record_limit_breach};

/// The request id header, read and echoed.
const REQUEST_ID: &str = "x-request-id";

/// How the HTTP API's transport is bounded: the gRPC port's settings where they exist.
#[derive(Debug, Clone, Copy)]
pub(super) struct ApiTransport {
    /// Largest body (`--http-max-body-bytes`).
    pub(super) max_body_bytes: usize,
    /// Time for the body to arrive after the headers (`--request-body-timeout`).
    pub(super) body_timeout: Duration,
    /// Time to answer once the body is in (`--request-timeout`).
    pub(super) request_timeout: Duration,
    /// Largest header section (`--max-header-list-bytes`).
    pub(super) max_header_list_bytes: u32,
    /// HTTP/2 streams per connection (`--max-concurrent-streams`).
    pub(super) max_concurrent_streams: u32,
    /// HTTP/2 keepalive pings (`--http2-keepalive-*`).
    pub(super) keepalive_interval: Option<Duration>,
    pub(super) keepalive_timeout: Duration,
    /// A connection with no request in progress for this long is closed (`--idle-timeout`,
    /// `None` when off), as on the gRPC port: HTTP/1 keep-alive connections are closed sooner
    /// by the header timer, h2c and HTTP/2 connections only by this.
    pub(super) idle_timeout: Option<Duration>,
}

/// What each request goes through before the router; cheap to clone.
#[derive(Clone)]
pub(super) struct Gate {
    pub(super) router: Router,
    pub(super) authenticator: auth::Authenticator,
    /// The request slots, shared with the gRPC port.
    pub(super) slots: Arc<Semaphore>,
    pub(super) transport: ApiTransport,
}

impl Gate {
    /// Answers one request, echoing its request id and counting it.
    async fn handle(
        self,
        mut request: Request<Incoming>,
        certificates: Option<ClientCertificates>,
    ) -> Response<Body> {
        let started = Instant::now();
        let route = route_label(request.uri().path());
        let given = request.headers().get(REQUEST_ID).cloned();
        let request_id = RequestId::from_given(given.as_ref().and_then(|v| v.to_str().ok()));
        let echoed = given.or_else(|| HeaderValue::from_str(&request_id.to_string()).ok());
        if let Some(certificates) = certificates {
            request.extensions_mut().insert(certificates);
        }
        request.extensions_mut().insert(request_id);
        let mut response = if crate::telemetry::otel::enabled() {
            let span = tracing::info_span!(
                target: crate::telemetry::otel::TARGET,
                "http",
                otel.name = format!("{} {route}", request.method()),
                otel.kind = "server",
                http.request.method = request.method().as_str(),
                http.route = route,
                http.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                verdict.snapshot_version = tracing::field::Empty,
            );
            crate::telemetry::otel::continue_trace(&span, request.headers());
            let response = self.admit(request).instrument(span.clone()).await;
            span.record("http.response.status_code", response.status().as_u16());
            if response.status().is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            response
        } else {
            self.admit(request).await
        };
        if let Some(echoed) = echoed {
            response.headers_mut().insert(REQUEST_ID, echoed);
        }
        telemetry_metrics::record_http(
            route,
            telemetry_metrics::http_status_label(response.status().as_u16()),
            started.elapsed(),
        );
        response
    }

    async fn admit(self, request: Request<Incoming>) -> Response<Body> {
        let transport = self.transport;
        let request = if OPEN_ROUTES.contains(&request.uri().path()) {
            request
        } else {
            match self.authenticator.authorize(request) {
                Ok(request) => request,
                Err(status) => return HttpError::from_status(&status).into_response(),
            }
        };
        let (parts, body) = request.into_parts();
        let too_large = || {
            record_limit_breach(LimitBreach::MessageSize);
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body: over the limit of {} bytes", transport.max_body_bytes),
            )
            .into_response()
        };
        // Refused from its announced length, before any of it is read.
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|len| len > transport.max_body_bytes as u64) {
            return too_large();
        }
        let received = tokio::time::timeout(
            transport.body_timeout,
            Limited::new(body, transport.max_body_bytes).collect(),
        )
        .await;
        let bytes = match received {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
            Ok(Err(_)) => {
                return HttpError::invalid("body: the request body could not be read")
                    .into_response();
            }
            Err(_) => {
                record_limit_breach(LimitBreach::BodyTimeout);
                return HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "body: not received within {:?} of the headers",
                        transport.body_timeout
                    ),
                )
                .into_response();
            }
        };
        // INVARIANT: the slot is taken only now that the body is in, and held until the
        // answer is ready.
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            record_limit_breach(LimitBreach::Concurrency);
            return HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "resource_exhausted",
                "the server is at its limit of concurrent requests; retry later",
            )
            .into_response();
        };
        let request = Request::from_parts(parts, Body::from(bytes));
        let answered =
            tokio::time::timeout(transport.request_timeout, self.router.oneshot(request)).await;
        drop(slot);
        match answered {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => {
                record_limit_breach(LimitBreach::Deadline);
                HttpError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    format!("no answer within {:?}", transport.request_timeout),
                )
                .into_response()
            }
        }
    }
}

/// hyper's settings for both protocols.
fn connection_builder(transport: &ApiTransport) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // The header section is read into this buffer: bounded by the header list limit (hyper
        // answers 431 beyond it), never below hyper's minimum.
        .max_buf_size((transport.max_header_list_bytes as usize).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(transport.max_concurrent_streams)
        .max_header_list_size(transport.max_header_list_bytes)
        .keep_alive_interval(transport.keepalive_interval)
        .keep_alive_timeout(transport.keepalive_timeout);
    builder
}

/// Serves the HTTP API until `cancel` fires, then drains the connections for at most
/// `grace`.
pub(super) async fn serve(
    mut acceptor: Acceptor,
    tls: Option<Arc<TlsState>>,
    gate: Gate,
    cancel: CancellationToken,
    grace: Duration,
) {
    let builder = connection_builder(&gate.transport);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    match tls {
        None => {
            http1_and_h2c(&mut acceptor, &builder, &graceful, &gate, &cancel).await;
            // Closing the listener: new connections are refused from now on.
            drop(acceptor);
        }
        Some(tls) => {
            let accept_cancel = cancel.child_token();
            let mut incoming = tls.incoming_with_alpn(
                acceptor,
                gate.transport.idle_timeout,
                accept_cancel.clone(),
                Some(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
            );
            loop {
                let connection = tokio::select! {
                    () = cancel.cancelled() => break,
                    connection = incoming.next() => connection,
                };
                let Some(Ok(connection)) = connection else {
                    break;
                };
                let certificates = connection
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|certs| ClientCertificates(Arc::new(certs.to_vec())));
                let activity = connection.get_ref().0.activity();
                let gate = gate.clone();
                let service = hyper::service::service_fn(move |request| {
                    let gate = gate.clone();
                    let certificates = certificates.clone();
                    let in_progress = RequestInProgress::start(&activity);
                    async move {
                        let response = gate.handle(request, certificates).await;
                        drop(in_progress);
                        Ok::<_, Infallible>(response)
                    }
                });
                let served = graceful.watch(
                    builder
                        .serve_connection(TokioIo::new(connection), service)
                        .into_owned(),
                );
                tokio::spawn(async move {
                    if let Err(error) = served.await {
                        tracing::debug!(%error, "http api connection ended with an error");
                    }
                });
            }
            accept_cancel.cancel();
        }
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = %humantime::format_duration(grace),
            "shutdown grace period over; closing the remaining http api connections"
        );
    }
}

/// Accepts plaintext connections (HTTP/1.1, or h2c with prior knowledge) until `cancel` fires.
async fn http1_and_h2c(
    acceptor: &mut Acceptor,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    gate: &Gate,
    cancel: &CancellationToken,
) {
    loop {
        let connection = tokio::select! {
            () = cancel.cancelled() => break,
            connection = acceptor.accept() => connection,
        };
        let _ = connection.get_ref().set_nodelay(true);
        let connection = IdleTimeout::new(connection, gate.transport.idle_timeout);
        let activity = connection.activity();
        let gate = gate.clone();
        let service = hyper::service::service_fn(move |request| {
            let gate = gate.clone();
            let in_progress = RequestInProgress::start(&activity);
            async move {
                let response = gate.handle(request, None).await;
                drop(in_progress);
                Ok::<_, Infallible>(response)
            }
        });
        let served = graceful.watch(
            builder
                .serve_connection(TokioIo::new(connection), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::debug!(%error, "http api connection ended with an error");
            }
        });
    }
}
