//! The one mapping from errors to gRPC statuses.
//!
//! | error | status |
//! |---|---|
//! | malformed request, batch over the limit | `INVALID_ARGUMENT` |
//! | a bearer token (`Check.token`) that does not verify | `UNAUTHENTICATED`, with the reason |
//! | no snapshot loaded yet | `UNAVAILABLE` |
//! | the relationship store is unreachable, or this replica is not as fresh as asked in time | `UNAVAILABLE` |
//! | a relationship write of a tuple that exists / a delete of one that does not | `ALREADY_EXISTS` / `NOT_FOUND` |
//! | a write's precondition does not hold | `FAILED_PRECONDITION` |
//! | an admin RPC that is disabled | `UNIMPLEMENTED` |
//! | a relation question's unknown type or relation, a malformed cursor | `INVALID_ARGUMENT` |
//! | a relation question without a relation model; a cursor of a snapshot no longer served | `FAILED_PRECONDITION` |
//! | a lookup past the client's deadline (`grpc-timeout`) | `DEADLINE_EXCEEDED` |
//! | anything else | `INTERNAL`, with a generic message; the detail is logged |

use tonic::{Code, Status};

use super::convert::ProtocolError;
use crate::identity::TokenRefusal;
use verdict_core::{RelationError, RequestError};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The protobuf message is missing a field or has a malformed one.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The request is malformed, over a limit, or does not fit the snapshot (schema,
    /// relations).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request's bearer token does not verify (or is revoked). The text says why and
    /// quotes nothing of the token.
    #[error("token: {0}")]
    Token(TokenRefusal),
    /// No snapshot has been loaded yet.
    #[error("no policy bundle is loaded yet")]
    NoSnapshot,
    /// The `Reload` RPC is off in this server's configuration.
    #[error(
        "the Reload RPC is disabled; enable it with --enable-reload-rpc (VERDICT_ENABLE_RELOAD_RPC=true)"
    )]
    ReloadDisabled,
    /// A field of a relationship request is malformed or invalid; the text names it
    /// (`updates[2].tuple.relation: …`), and lists every such field.
    #[error("{0}")]
    InvalidField(String),
    /// The relationship store cannot be reached, or the replica did not become as fresh as
    /// the request's consistency asks in time. The text says which.
    #[error("{0}")]
    Unavailable(String),
    /// A relationship write conflicts with the store's state.
    #[error(transparent)]
    Conflict(crate::store::WriteError),
    /// A relation question (`CheckRelation`, the lookups) has no answer.
    #[error(transparent)]
    Relation(verdict_core::RelationError),
    /// The client's deadline passed before a lookup finished.
    #[error("the deadline passed before the lookup finished; resume from the last cursor")]
    DeadlineExceeded,
    /// A bug or an environment failure; the detail is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<verdict_core::RelationError> for ApiError {
    fn from(error: verdict_core::RelationError) -> Self {
        match error {
            verdict_core::RelationError::Request(error) => Self::Request(error),
            other => Self::Relation(other),
        }
    }
}

impl ApiError {
    /// Returns the gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Internal(_) | Self::Request(RequestError::Internal(_)) => Code::Internal,
            Self::Protocol(_)
            | Self::Request(
                RequestError::Invalid { .. }
                | RequestError::TooLarge { .. }
                | RequestError::TooDeep { .. },
            ) => Code::InvalidArgument,
            Self::Token(_) => Code::Unauthenticated,
            Self::NoSnapshot | Self::Unavailable(_) => Code::Unavailable,
            Self::InvalidField(_) => Code::InvalidArgument,
            Self::Conflict(crate::store::WriteError::AlreadyExists { .. }) => Code::AlreadyExists,
            Self::Conflict(crate::store::WriteError::NotFound { .. }) => Code::NotFound,
            Self::Conflict(crate::store::WriteError::Precondition { .. }) => {
                Code::FailedPrecondition
            }
            Self::Conflict(crate::store::WriteError::Store(_)) => Code::Internal,
            Self::ReloadDisabled => Code::Unimplemented,
            Self::Relation(error) => match error {
                RelationError::Request(RequestError::Internal(_)) => Code::Internal,
                RelationError::Request(_)
                | RelationError::Unknown { .. }
                | RelationError::BadCursor(_) => Code::InvalidArgument,
                RelationError::NoModel | RelationError::StaleCursor { .. } => {
                    Code::FailedPrecondition
                }
            },
            Self::DeadlineExceeded => Code::DeadlineExceeded,
        }
    }

    /// Returns the message a client may see: everything but internal details.
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(detail) | Self::Request(RequestError::Internal(detail)) => {
                tracing::error!(detail = %without_quoted_values(detail), "internal error");
                "internal error; see the server log".to_owned()
            }
            Self::Conflict(crate::store::WriteError::Store(error)) => {
                tracing::error!(detail = %without_quoted_values(&error.to_string()), "relationship store error");
                "internal error; see the server log".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// Replaces every `backtick-quoted` span (where Cedar quotes values, which may be request
/// data) with `…`, so an internal error can be logged without the caller's data.
fn without_quoted_values(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut inside = false;
    for c in detail.chars() {
        if c == '`' {
            if !inside {
                out.push_str("`…`");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(_) | StoreError::Schema(_) => {
                Self::Unavailable(error.to_string())
            }
            StoreError::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<crate::store::WriteError> for ApiError {
    fn from(error: crate::store::WriteError) -> Self {
        match error {
            crate::store::WriteError::Store(error) => error.into(),
            conflict => Self::Conflict(conflict),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        Status::new(error.code(), error.client_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let invalid = ApiError::from(ProtocolError::Missing("principal".to_owned()));
        assert_eq!(Status::from(invalid).code(), Code::InvalidArgument);
        let batch = Status::from(ApiError::Request(RequestError::TooLarge {
            field: "checks".to_owned(),
            limit: verdict_core::Limit::Batch,
            count: 101,
            max: 100,
        }));
        assert_eq!(batch.code(), Code::InvalidArgument);
        assert_eq!(
            batch.message(),
            "checks: 101 checks exceed the batch limit of 100"
        );
        assert_eq!(Status::from(ApiError::NoSnapshot).code(), Code::Unavailable);
        let token = Status::from(ApiError::Token(TokenRefusal::Expired));
        assert_eq!(token.code(), Code::Unauthenticated);
        assert_eq!(token.message(), "token: the token has expired");
        let exists = Status::from(ApiError::Conflict(
            crate::store::WriteError::AlreadyExists { index: 2 },
        ));
        assert_eq!(exists.code(), Code::AlreadyExists);
        assert_eq!(
            exists.message(),
            "updates[2]: the tuple already exists (set ignore_existing to accept that)"
        );
        let precondition =
            Status::from(ApiError::Conflict(crate::store::WriteError::Precondition {
                index: 0,
                must_exist: true,
            }));
        assert_eq!(precondition.code(), Code::FailedPrecondition);
        assert_eq!(
            precondition.message(),
            "preconditions[0]: the tuple does not exist"
        );
        assert_eq!(
            Status::from(ApiError::Unavailable("store down".to_owned())).code(),
            Code::Unavailable
        );
        let internal = Status::from(ApiError::Internal("join error: task panicked".to_owned()));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("panicked"));
        // The engine's own internal errors are INTERNAL too, not the caller's fault.
        let engine = Status::from(ApiError::Request(RequestError::Internal(
            "context schema missing".to_owned(),
        )));
        assert_eq!(engine.code(), Code::Internal);
        assert_eq!(engine.message(), "internal error; see the server log");
    }

    #[test]
    fn internal_details_are_logged_without_quoted_values() {
        assert_eq!(
            without_quoted_values("bad value `Bearer abc` in `User::\"x\"`: oops"),
            "bad value `…` in `…`: oops"
        );
    }
}
