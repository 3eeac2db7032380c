//! A client for Verdict's gRPC API (`verdict.v1`): the generated tonic client for every RPC
//! ([`proto`]), and typed builders for the common calls, so a service asks a question in a
//! few lines without writing protobuf messages by hand.
//!
//! ```no_run
//! use verdict_client::{Check, Client, Entity};
//!
//! # async fn ask() -> Result<(), verdict_client::Error> {
//! let mut verdict = Client::connect("http://127.0.0.1:50051").await?;
//! let answer = verdict
//!     .check(
//!         Check::new(Entity::new("User", "bob"), "read", Entity::new("Document", "roadmap"))
//!             .context(serde_json::json!({"scopes": ["documents:read"]}))?,
//!     )
//!     .await?;
//! if answer.allowed {
//!     println!("allowed by {:?}", answer.determining_policies);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Everything not covered by a builder is one call away: [`Client::authorization`] is the
//! generated client itself. This crate depends on tonic's client side only: no server, no
//! policy engine.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The `verdict.v1` messages and the generated clients (`authorization_client`,
/// `relationships_client`).
pub mod proto {
    #![allow(missing_docs, clippy::all, reason = "generated code")]
    tonic::include_proto!("verdict.v1");
}

/// What can go wrong before or while asking.
#[derive(Debug)]
pub enum Error {
    /// The endpoint is not a URI, or nothing could be connected to there.
    Connect(String),
    /// The context is not a JSON object, or an API key is not valid header text.
    Request(String),
    /// The server answered with a gRPC error (`INVALID_ARGUMENT`, `UNAVAILABLE`, ...).
    Status(tonic::Status),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(reason) => write!(f, "cannot connect to Verdict: {reason}"),
            Self::Request(reason) => write!(f, "invalid request: {reason}"),
            Self::Status(status) => {
                write!(
                    f,
                    "Verdict answered {:?}: {}",
                    status.code(),
                    status.message()
                )
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

/// An entity: its Cedar type (`User`, `Acme::Document`) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The entity type.
    pub entity_type: String,
    /// The id.
    pub id: String,
}

impl Entity {
    /// The entity `entity_type::"id"`.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }

    fn to_proto(&self) -> proto::EntityRef {
        proto::EntityRef {
            r#type: self.entity_type.clone(),
            id: self.id.clone(),
        }
    }
}

/// One question: may `principal` do `action` on `resource`? Built with [`Check::new`] and the
/// optional parts after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    request: proto::CheckRequest,
}

impl Check {
    /// The question; `action` is an action id (`read`) or a full action uid
    /// (`Acme::Action::"read"`).
    pub fn new(principal: Entity, action: impl Into<String>, resource: Entity) -> Self {
        Self {
            request: proto::CheckRequest {
                principal: Some(principal.to_proto()),
                action: action.into(),
                resource: Some(resource.to_proto()),
                ..proto::CheckRequest::default()
            },
        }
    }

    /// The same question asked with a bearer token instead of a principal: Verdict verifies it
    /// and takes the principal from it.
    pub fn with_token(
        token: impl Into<String>,
        action: impl Into<String>,
        resource: Entity,
    ) -> Self {
        Self {
            request: proto::CheckRequest {
                action: action.into(),
                resource: Some(resource.to_proto()),
                token: token.into(),
                ..proto::CheckRequest::default()
            },
        }
    }

    /// The Cedar context, a JSON object.
    pub fn context(mut self, context: serde_json::Value) -> Result<Self, Error> {
        let serde_json::Value::Object(fields) = context else {
            return Err(Error::Request(
                "the context must be a JSON object".to_owned(),
            ));
        };
        self.request.context = Some(to_struct(fields));
        Ok(self)
    }

    /// A property to decide on its own (field-level authorization), in the answer's order.
    pub fn property(mut self, name: impl Into<String>) -> Self {
        self.request.properties.push(name.into());
        self
    }

    /// The request message, for the generated client.
    pub fn into_proto(self) -> proto::CheckRequest {
        self.request
    }
}

/// JSON object → `google.protobuf.Struct` (numbers become doubles, as protobuf has it; Verdict
/// turns whole numbers back into Cedar longs).
fn to_struct(fields: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(to_struct(fields)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Verdict's answer to one [`Check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Whether the request is allowed (`DECISION_ALLOW`); anything else is a deny.
    pub allowed: bool,
    /// The ids of the policies that decided it.
    pub determining_policies: Vec<String>,
    /// Each property asked for, with whether it is allowed, in the request's order.
    pub properties: Vec<(String, bool)>,
    /// The bundle (and store revision) version that answered.
    pub snapshot_version: String,
    /// The whole response.
    pub response: proto::CheckResponse,
}

impl From<proto::CheckResponse> for Answer {
    fn from(response: proto::CheckResponse) -> Self {
        let allow = proto::Decision::Allow as i32;
        Self {
            allowed: response.decision == allow,
            determining_policies: response.determining_policies.clone(),
            properties: response
                .properties
                .iter()
                .map(|p| (p.name.clone(), p.decision == allow))
                .collect(),
            snapshot_version: response.snapshot_version.clone(),
            response,
        }
    }
}

/// Adds `authorization: Bearer <key>` when an API key is set.
#[derive(Debug, Clone, Default)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The generated `verdict.v1.Authorization` client, with the API key interceptor.
pub type AuthorizationClient =
    proto::authorization_client::AuthorizationClient<InterceptedService<Channel, ApiKey>>;

/// A connection to Verdict (cheap to clone: clones share the HTTP/2 connection).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    key: ApiKey,
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`; `https://` needs [`Client::from_channel`]
    /// with a TLS-configured channel).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        let endpoint = tonic::transport::Endpoint::from_shared(endpoint.into())
            .map_err(|e| Error::Connect(e.to_string()))?;
        let channel = endpoint
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        Ok(Self::from_channel(channel))
    }

    /// A client over a channel built elsewhere (TLS, timeouts, load balancing).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            key: ApiKey::default(),
        }
    }

    /// Sends `key` as `authorization: Bearer <key>` with every call (`--api-keys-file`).
    pub fn with_api_key(mut self, key: &str) -> Result<Self, Error> {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| Error::Request("the API key is not valid header text".to_owned()))?;
        self.key = ApiKey(Some(value));
        Ok(self)
    }

    /// The generated `verdict.v1.Authorization` client, for every RPC.
    pub fn authorization(&self) -> AuthorizationClient {
        proto::authorization_client::AuthorizationClient::with_interceptor(
            self.channel.clone(),
            self.key.clone(),
        )
    }

    /// Asks one question.
    pub async fn check(&self, check: Check) -> Result<Answer, Error> {
        let response = self.authorization().check(check.request).await?;
        Ok(Answer::from(response.into_inner()))
    }

    /// Asks several questions against one snapshot; each item is answered or fails on its own
    /// (a gRPC status with the item's code and message).
    pub async fn batch_check(
        &self,
        checks: impl IntoIterator<Item = Check>,
    ) -> Result<Vec<Result<Answer, tonic::Status>>, Error> {
        let request = proto::BatchCheckRequest {
            checks: checks.into_iter().map(|c| c.request).collect(),
            ..proto::BatchCheckRequest::default()
        };
        let response = self.authorization().batch_check(request).await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(proto::batch_check_result::Result::Response(response)) => {
                    Ok(Answer::from(response))
                }
                Some(proto::batch_check_result::Result::Error(error)) => Err(tonic::Status::new(
                    tonic::Code::from_i32(error.code),
                    error.message,
                )),
                None => Err(tonic::Status::internal("an empty batch item")),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_check_builds_the_request_message() {
        let check = Check::new(Entity::new("User", "bob"), "read", Entity::new("Doc", "d"))
            .context(serde_json::json!({"n": 3, "tags": ["a"], "ok": true}))
            .unwrap()
            .property("title")
            .into_proto();
        assert_eq!(check.principal.unwrap().id, "bob");
        assert_eq!(check.action, "read");
        assert_eq!(check.properties, ["title"]);
        let context = check.context.unwrap();
        assert_eq!(
            context.fields["n"].kind,
            Some(prost_types::value::Kind::NumberValue(3.0))
        );
        assert!(matches!(
            Check::new(Entity::new("User", "bob"), "read", Entity::new("Doc", "d"))
                .context(serde_json::json!([1])),
            Err(Error::Request(_))
        ));
    }

    #[test]
    fn an_answer_reads_the_decisions() {
        let answer = Answer::from(proto::CheckResponse {
            decision: proto::Decision::Allow as i32,
            determining_policies: vec!["p".to_owned()],
            properties: vec![proto::PropertyDecision {
                name: "ssn".to_owned(),
                decision: proto::Decision::Deny as i32,
                ..proto::PropertyDecision::default()
            }],
            snapshot_version: "v".to_owned(),
            ..proto::CheckResponse::default()
        });
        assert!(answer.allowed);
        assert_eq!(answer.properties, [("ssn".to_owned(), false)]);
    }
}
