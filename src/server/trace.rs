//! A server span per gRPC call, for OpenTelemetry (`crate::telemetry::otel`): named
//! `service/Method` as the RPC semantic conventions say, continuing the caller's
//! `traceparent`, with the call's status. Handlers run inside it, so their decisions land on
//! it as events. When traces are off the request passes through with no span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tower::Service;
use tracing::Instrument;

use crate::telemetry::otel;

/// The service around `inner` that traces each call.
#[derive(Debug, Clone)]
pub(super) struct Traced<S> {
    inner: S,
}

impl<S> Traced<S> {
    /// Traces `inner`'s calls; use it in `ServiceBuilder::layer_fn`.
    pub(super) fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// The span of one call to `path` (`/package.Service/Method`).
fn call_span(path: &str) -> tracing::Span {
    let path = path.trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    tracing::info_span!(
        target: otel::TARGET,
        "grpc",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        verdict.snapshot_version = tracing::field::Empty,
    )
}

/// The status a unary call's response head shows: its `grpc-status` when the call failed
/// without a body (trailers-only), else OK (a unary answer's status follows in trailers only
/// after success). Streams can still fail later; their span covers the call's start.
fn status_of(headers: &http::HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<S> Service<http::Request<Body>> for Traced<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !otel::enabled() {
            return Box::pin(self.inner.call(request));
        }
        let span = call_span(request.uri().path());
        otel::continue_trace(&span, request.headers());
        let response = span.in_scope(|| self.inner.call(request));
        let recorder = span.clone();
        Box::pin(
            async move {
                let response = response.await?;
                let status = status_of(response.headers());
                recorder.record("rpc.grpc.status_code", status);
                if status != 0 {
                    recorder.record("otel.status_code", "ERROR");
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailers_only_status_is_read_and_a_plain_head_is_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(&headers), 0);
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(status_of(&headers), 7);
    }
}
