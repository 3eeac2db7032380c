//! The one mapping from errors to HTTP answers, and the JSON error body every refusal of the
//! HTTP API carries (the handlers' and the server's: size, content type, admission, auth).
//!
//! | error | status |
//! |---|---|
//! | malformed JSON, a missing or mistyped field, a request the snapshot refuses, over a limit | 400 |
//! | a bearer token that does not verify, a missing or unknown API key | 401 |
//! | a caller without the rights the route needs | 403 |
//! | no such route | 404; a route with another method 405 |
//! | the body did not arrive within `--request-body-timeout` | 408 |
//! | a body over `--http-max-body-bytes` | 413 |
//! | a body that is not `application/json` | 415 |
//! | every request slot taken (`--max-concurrent-requests`) | 429 |
//! | anything unexpected | 500, with a generic message (the detail is logged) |
//! | no bundle loaded yet | 503 |
//! | no answer within `--request-timeout` | 504 |
//!
//! The body is `{"error": {"status": 400, "code": "invalid_argument", "message": "subject.type:
//! required field is missing"}}`: the message names the field first, as every Verdict error
//! does, and never quotes internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;
use verdict_core::RequestError;

use super::super::error::ApiError;

/// An answer other than 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    /// A stable, machine-readable word: `invalid_argument`, `payload_too_large`, ...
    code: &'static str,
    message: String,
}

impl HttpError {
    /// Returns an error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// A malformed request: 400 with `message` (which starts with the field's path).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// A field that is missing: `<field>: required field is missing`.
    pub fn missing(field: &str) -> Self {
        Self::invalid(format!("{field}: required field is missing"))
    }

    /// A field of the wrong JSON type: `<field>: expected <what>, found <found>`.
    pub fn wrong_type(field: &str, expected: &str, found: &serde_json::Value) -> Self {
        Self::invalid(format!(
            "{field}: expected {expected}, found {}",
            json_kind(found)
        ))
    }

    /// Returns the status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
        }})
    }

    /// Maps a `verdict.v1` handler's gRPC status to its HTTP answer: the same request over
    /// HTTP fails the way it fails over gRPC, with the same message.
    pub fn from_status(status: &tonic::Status) -> Self {
        let (http, code) = match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(http, code, status.message())
    }

    /// Maps a handler error (the same table as gRPC's, `super::super::error`).
    pub fn from_api(error: &ApiError) -> Self {
        Self::from_status(&tonic::Status::new(error.code(), error.client_message()))
    }

    /// Maps a request the core refused, its field renamed by `rename` (core field names are
    /// `principal`, `resource`, `action`, `context…`, `entities[i]…`; the HTTP API's may
    /// differ, as AuthZEN's `subject`).
    pub fn from_request(error: RequestError, rename: &dyn Fn(&str) -> String) -> Self {
        match error {
            RequestError::Internal(_) => Self::from_api(&ApiError::Request(error)),
            RequestError::Invalid { field, reason } => RequestError::Invalid {
                field: rename(&field),
                reason,
            }
            .into_http(),
            RequestError::TooLarge {
                field,
                limit,
                count,
                max,
            } => RequestError::TooLarge {
                field: rename(&field),
                limit,
                count,
                max,
            }
            .into_http(),
            RequestError::TooDeep { field } => RequestError::TooDeep {
                field: rename(&field),
            }
            .into_http(),
        }
    }
}

/// A core error that is the caller's fault, as a 400 with its message.
trait IntoHttp {
    fn into_http(self) -> HttpError;
}

impl IntoHttp for RequestError {
    fn into_http(self) -> HttpError {
        HttpError::invalid(self.to_string())
    }
}

/// Names a JSON value's kind, for "expected …, found …" messages.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::DeadlineExceeded, 504),
            (Code::Unavailable, 503),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unknown, 500),
        ];
        for (code, http) in cases {
            let error = HttpError::from_status(&tonic::Status::new(code, "m"));
            assert_eq!(error.status().as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn core_errors_are_renamed_and_keep_their_reason() {
        let error = RequestError::Invalid {
            field: "principal.type".to_owned(),
            reason: "must not be empty".to_owned(),
        };
        let renamed = HttpError::from_request(error, &|f| f.replace("principal", "subject"));
        assert_eq!(renamed.message(), "subject.type: must not be empty");
        assert_eq!(renamed.status(), StatusCode::BAD_REQUEST);
        let internal =
            HttpError::from_request(RequestError::Internal("detail `secret`".to_owned()), &|f| {
                f.to_owned()
            });
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message().contains("secret"));
    }

    #[test]
    fn the_body_carries_status_code_and_message() {
        let body = HttpError::missing("subject").body();
        assert_eq!(body["error"]["status"], 400);
        assert_eq!(body["error"]["code"], "invalid_argument");
        assert_eq!(
            body["error"]["message"],
            "subject: required field is missing"
        );
    }
}
