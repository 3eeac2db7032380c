//! The front-ends: thin tonic handlers over the engine, for `verdict.v1` and for Envoy's
//! ext_authz ([`ext_authz`]), and the HTTP/JSON API ([`http`]: AuthZEN 1.0 and `verdict.v1`
//! over HTTP).
//!
//! Owns: the generated protobuf types ([`proto`]), converting them to and from
//! `verdict_core` types, `Check.token` (verifying it and handing its principal to the core,
//! `token.rs`), and the mapping of every error to a gRPC status.
//!
//! Does not own: policy logic or input limits. A handler loads the snapshot once, converts the
//! request, calls `Snapshot::check` (the one door, which enforces the `Limits` it is
//! given) and converts the answer back.

mod authorization;
mod convert;
mod error;
pub mod ext_authz;
pub mod http;
mod prescan;
pub mod proto;
pub(crate) mod record;
pub(crate) mod relation_questions;
pub mod relationships;
mod token;

pub use authorization::{AuthorizationService, Caller, CallerIsAdmin, ReloadAnswer, ReloadControl};
pub use convert::ProtocolError;
pub use error::ApiError;
pub use prescan::{BATCH_CHECK_PATH, CHECK_PATH, prescan};
pub use relationships::RelationshipsService;

/// The time a `grpc-timeout` header value gives (at most 8 digits and a unit, `H`, `M`, `S`,
/// `m`, `u` or `n`); `None` when malformed.
pub fn grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    match value.as_bytes().last()? {
        b'H' => Some(Duration::from_secs(amount * 3600)),
        b'M' => Some(Duration::from_secs(amount * 60)),
        b'S' => Some(Duration::from_secs(amount)),
        b'm' => Some(Duration::from_millis(amount)),
        b'u' => Some(Duration::from_micros(amount)),
        b'n' => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}
