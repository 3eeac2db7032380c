//! Caller authentication with preshared API keys (SpiceDB's model), as a tower layer.
//!
//! Keys come from `--api-keys-file` and/or `VERDICT_API_KEYS`, one per line, `name role key`:
//!
//! ```text
//! # name          role    key
//! gateway-2026a   check   6f1c0d2e8a9b4c3d2e1f0a9b8c7d6e5f
//! gateway-2026b   check   0a1b2c3d4e5f60718293a4b5c6d7e8f9      (rotation: both valid)
//! ops             admin   9e8d7c6b5a4938271605f4e3d2c1b0a9
//! ```
//!
//! A `check` key may call Check, BatchCheck and Status; an `admin` key may call everything,
//! Reload included. A request presents its key as `authorization: Bearer <key>`. Without keys
//! configured, the gRPC port is open (serve warns when that port is not on loopback).
//!
//! Keys are kept only as SHA-256 digests and compared in constant time against every key, so
//! neither the comparison nor which key matched leaks through timing. A key's name, never the
//! key, appears in logs, metrics and the decision log.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

use crate::api::Caller;
use crate::config::{KeyRing, Role};
use crate::telemetry::metrics::{AuthResult, record_auth};

/// Which RPCs need which role; `None` means open to anyone.
fn required_role(path: &str, open_health: bool, open_reflection: bool) -> Option<Role> {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "grpc.health.v1.Health" if open_health => None,
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection"
            if open_reflection =>
        {
            None
        }
        _ if path.ends_with("/Reload") => Some(Role::Admin),
        _ => Some(Role::Check),
    }
}

/// The layer; requests need a key when the ring has any.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    pub(crate) keys: std::sync::Arc<KeyRing>,
    pub(crate) open_health: bool,
    pub(crate) open_reflection: bool,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> Service<http::Request<B>> for Auth<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let keys = &self.layer.keys;
        let path = request.uri().path();
        let required = required_role(path, self.layer.open_health, self.layer.open_reflection);
        let (Some(required), true) = (required, keys.is_enabled()) else {
            return Box::pin(self.inner.call(request));
        };
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let refusal = match presented.and_then(|token| keys.find(token)) {
            None => {
                record_auth("anonymous", AuthResult::Unauthenticated);
                tracing::warn!(path, "request without a valid API key");
                Some(Status::unauthenticated(
                    "missing or invalid API key (send `authorization: Bearer <key>`)",
                ))
            }
            Some(key) if key.role == Role::Check && required == Role::Admin => {
                record_auth(&key.name, AuthResult::PermissionDenied);
                tracing::warn!(caller = %key.name, path, "API key without admin rights");
                Some(Status::permission_denied(format!(
                    "API key `{}` may not call {path}: it needs an admin key",
                    key.name
                )))
            }
            Some(key) => {
                record_auth(&key.name, AuthResult::Ok);
                request.extensions_mut().insert(Caller(key.name.clone()));
                None
            }
        };
        match refusal {
            Some(status) => Box::pin(async move { Ok(status.into_http()) }),
            None => Box::pin(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_rpc() {
        assert_eq!(
            required_role("/verdict.v1.Authorization/Check", true, true),
            Some(Role::Check)
        );
        assert_eq!(
            required_role("/verdict.v1.Authorization/Reload", true, true),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("/grpc.health.v1.Health/Check", true, true),
            None
        );
        assert_eq!(
            required_role("/grpc.health.v1.Health/Check", false, true),
            Some(Role::Check)
        );
        assert_eq!(
            required_role(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                true,
                true
            ),
            None
        );
        assert_eq!(
            required_role(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                true,
                false
            ),
            Some(Role::Check)
        );
    }
}
