//! Counts every gRPC request by method and status code, and times it until the response is
//! complete: an [`Observer`] of each request (see [`super::observe`]).
//!
//! The status of a gRPC response is in its trailers, after the body, except for errors that
//! carry no body ("trailers-only", the status in the headers). So the observer looks at the
//! headers first and otherwise reads the trailers when they pass by in the body. A request
//! dropped before its end (the client went away) counts as `CANCELLED`.

use std::time::Instant;

use bytes::Bytes;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};

use super::observe::Observer;
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

/// One gRPC call being timed: made when the request arrives, recorded once, with the status
/// from the headers (trailers-only), from the trailers, or `CANCELLED` if dropped before
/// either (the client went away before the response or before the end of the body).
pub(super) struct GrpcCall {
    method: &'static str,
    started: Instant,
    recorded: bool,
}

impl GrpcCall {
    /// Starts timing `request`; every request is observed.
    pub(super) fn start(request: &http::Request<Body>) -> Option<Self> {
        Some(Self {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            recorded: false,
        })
    }

    fn record(&mut self, code: &'static str) {
        if !self.recorded {
            self.recorded = true;
            record_grpc(self.method, code, self.started.elapsed());
        }
    }
}

impl Observer for GrpcCall {
    fn on_headers(mut self, headers: &HeaderMap) -> Option<Self> {
        match status_code(headers) {
            Some(code) => {
                self.record(code);
                None
            }
            None => Some(self),
        }
    }

    fn on_frame(&mut self, frame: &Option<Result<Frame<Bytes>, Status>>) {
        match frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.record(status_code(trailers).unwrap_or("UNKNOWN"));
                }
            }
            Some(Err(_)) => self.record("INTERNAL"),
            None => self.record("UNKNOWN"),
        }
    }
}

impl Drop for GrpcCall {
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
