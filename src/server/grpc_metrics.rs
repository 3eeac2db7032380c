//! A tower layer that counts every gRPC request by method and status code, and times it until
//! the response is complete.
//!
//! The status of a gRPC response is in its trailers, after the body, except for errors that
//! carry no body ("trailers-only", the status in the headers). So the layer looks at the
//! headers first and otherwise wraps the body to read the trailers when they pass by. A body
//! dropped before its end (the client went away) counts as `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};
use tower::{Layer, Service};

use crate::telemetry::metrics::record_grpc;

/// Methods with their own label; anything else is `other`, so labels stay bounded.
const METHODS: [&str; 8] = [
    "verdict.v1.Authorization/Check",
    "verdict.v1.Authorization/BatchCheck",
    "verdict.v1.Authorization/Status",
    "verdict.v1.Authorization/Reload",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

fn method_label(path: &str) -> &'static str {
    let path = path.trim_start_matches('/');
    METHODS
        .iter()
        .find(|method| **method == path)
        .copied()
        .unwrap_or("other")
}

/// gRPC status code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn status_code(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code: usize = value.parse().ok()?;
    Some(CODES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// The layer; add it to the tonic server builder.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            // Until the response exists, a dropped future (a client cancel, a deadline) counts.
            let mut pending = Pending {
                method,
                started,
                done: false,
            };
            let response = response.await;
            pending.done = true;
            let response = response?;
            if let Some(code) = status_code(response.headers()) {
                record_grpc(method, code, started.elapsed());
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(ObservedBody {
                    inner: body,
                    method,
                    started,
                    recorded: false,
                })
            }))
        })
    }
}

/// Records a request whose future was dropped before the response existed.
struct Pending {
    method: &'static str,
    started: Instant,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            record_grpc(self.method, "CANCELLED", self.started.elapsed());
        }
    }
}

/// A response body that records the request when its trailers pass (or when it is dropped).
struct ObservedBody {
    inner: Body,
    method: &'static str,
    started: Instant,
    recorded: bool,
}

impl ObservedBody {
    fn record(&mut self, code: &'static str) {
        if !self.recorded {
            self.recorded = true;
            record_grpc(self.method, code, self.started.elapsed());
        }
    }
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or("UNKNOWN");
                    self.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.record("INTERNAL"),
            Poll::Ready(None) => self.record("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.record("CANCELLED");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(
            method_label("/verdict.v1.Authorization/Check"),
            "verdict.v1.Authorization/Check"
        );
        assert_eq!(method_label("/evil/\u{1F600}"), "other");
        assert_eq!(method_label("/verdict.v1.Authorization/Nope"), "other");
    }

    #[test]
    fn status_codes_are_named() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(status_code(&headers), Some("INVALID_ARGUMENT"));
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status_code(&headers), Some("UNKNOWN"));
        assert_eq!(status_code(&HeaderMap::new()), None);
    }
}
