//! Counts every gRPC request by method and status code, and times it until the response is
//! complete: an [`Observer`] of each request (see [`super::observe`]).
//!
//! The status of a gRPC response is in its trailers, after the body, except for errors that
//! carry no body ("trailers-only", the status in the headers). So the observer looks at the
//! headers first and otherwise reads the trailers when they pass by in the body. A request
//! dropped before its end counts as `DEADLINE_EXCEEDED` when the client's deadline (its
//! `grpc-timeout` header) has passed, since tonic drops a request at its client's deadline,
//! and as `CANCELLED` otherwise (the client reset the stream or went away).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};

use super::observe::Observer;
use crate::telemetry::metrics::{record_grpc, record_grpc_started};

/// Methods with their own label; anything else is `other`, so labels stay bounded.
const METHODS: [&str; 15] = [
    "verdict.v1.Authorization/Check",
    "envoy.service.auth.v3.Authorization/Check",
    "verdict.v1.Authorization/BatchCheck",
    "verdict.v1.Authorization/CheckRelation",
    "verdict.v1.Authorization/LookupResources",
    "verdict.v1.Authorization/LookupSubjects",
    "verdict.v1.Authorization/Status",
    "verdict.v1.Authorization/Reload",
    "verdict.v1.Relationships/WriteRelationships",
    "verdict.v1.Relationships/ReadRelationships",
    "verdict.v1.Relationships/WatchRelationships",
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

/// The time a `grpc-timeout` header gives (gRPC over HTTP/2: at most 8 digits and a unit,
/// `H`, `M`, `S`, `m`, `u` or `n`); `None` when absent or malformed.
fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    crate::api::grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// One gRPC call being timed: made when the request arrives, recorded once, with the status
/// from the headers (trailers-only), from the trailers, or, if dropped before either,
/// `DEADLINE_EXCEEDED` past the client's deadline and `CANCELLED` before it.
pub(super) struct GrpcCall {
    method: &'static str,
    started: Instant,
    /// When the client stops waiting, from its `grpc-timeout`.
    client_deadline: Option<Instant>,
    recorded: bool,
}

impl GrpcCall {
    /// Starts timing `request`; every request is observed.
    pub(super) fn start(request: &http::Request<Body>) -> Option<Self> {
        let started = Instant::now();
        let method = method_label(request.uri().path());
        record_grpc_started(method);
        Some(Self {
            method,
            started,
            client_deadline: client_timeout(request.headers())
                .and_then(|timeout| started.checked_add(timeout)),
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
        let past_deadline = self
            .client_deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        self.record(if past_deadline {
            "DEADLINE_EXCEEDED"
        } else {
            "CANCELLED"
        });
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
    fn client_timeouts_are_read_in_every_unit() {
        let timeout = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            client_timeout(&headers)
        };
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(timeout(bad), None, "{bad}");
        }
        assert_eq!(client_timeout(&HeaderMap::new()), None);
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
