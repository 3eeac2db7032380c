//! The gRPC API: thin tonic handlers over the engine.
//!
//! Owns: the generated protobuf types ([`proto`]), converting them to and from engine types,
//! request limits (batch size, JSON depth), and the mapping of every error to a gRPC status.
//!
//! Does not own: policy logic. A handler converts the request, loads the snapshot once, calls
//! the engine and converts the answer back.

mod authorization;
mod convert;
mod error;
pub mod proto;

pub use authorization::{
    AuthorizationService, Caller, CallerIsAdmin, Limits, ReloadAnswer, ReloadControl,
};
pub use convert::ProtocolError;
pub use error::ApiError;
