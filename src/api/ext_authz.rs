//! The Envoy external authorization front-end (`envoy.service.auth.v3.Authorization/Check`,
//! issue 16): Envoy, Istio (`action: CUSTOM`) and Envoy Gateway (`SecurityPolicy.extAuth`) ask
//! about an HTTP request; the bundle's route table says which Cedar question it is.
//!
//! Owns: reading Envoy's `CheckRequest` (method, path with its query, headers with lower-case
//! names, the body, the mTLS peer), resolving the principal (a bearer token through the
//! [`Authenticator`], or the peer's identity), the body's top-level field names as properties,
//! and the answer: `OkHttpResponse` with the route's upstream headers, or `DeniedHttpResponse`
//! (401 or 403 with a small JSON body). Does not own: routes (`Snapshot::route`), tokens
//! (`crate::identity`), deciding (`Snapshot::check`, the one door, with the server's `Limits`).
//!
//! A request, stop by stop; every stop that cannot go on denies:
//!
//! ```text
//!   snapshot ─► http attributes ─► route ─► principal ─► properties ─► check ─► answer
//!   │ none: 403  │ none: 403        │ none,   │ no token,   │ body not a  │ error: │ allow: OK +
//!   │            │                  │ bad: 403│ refused, no │ JSON object,│ 403    │ headers;
//!   │            │                  │         │ peer: 401   │ too large,  │        │ deny: 403
//!   │            │                  │         │             │ partial: 403│        │
//! ```
//!
//! INVARIANT: the answer to an error is always a denial (403); nothing here answers OK except
//! an allowed decision. A gRPC error from this service (tonic's, or admission's) also denies:
//! Envoy treats it as a failure, and `failure_mode_allow: false` fails closed.
//!
//! Tokens never reach logs or metrics: a refusal is recorded by its label, and the token is
//! only handed to the [`Authenticator`].

mod descriptor;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use tonic::{Request, Response, Status};
use verdict_core::{
    Decision, EntityRef, Limits, Outcome, PrincipalSource, RequestError, RouteRefusal,
    is_listable_property,
};

use super::authorization::Caller;
use super::record::{Asked, FrontEnd, RequestId, record_decision};
use crate::identity::{TokenRefusal, TokenVerifier, VerifiedPrincipal};
use crate::serving::{Served, SnapshotHandle};
use crate::telemetry::decision_log::DecisionLogSettings;
use crate::telemetry::metrics::{
    self as telemetry_metrics, ExtAuthzRefusal, Rejection, record_ext_authz_refusal,
};

pub use descriptor::file_descriptor_set;
pub use envoy_types::ext_authz::v3::pb::AuthorizationServer as ExtAuthzServer;

/// The service name health checks and reflection use for the ext_authz service.
pub const EXT_AUTHZ_SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// The header Envoy sets when `with_request_body.allow_partial_message` cut the body short.
const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The context key a token's scopes are put in.
const SCOPES_CONTEXT_KEY: &str = "scopes";

/// Verifies a bearer token into a principal: [`TokenVerifier`] in the server, a fake in tests.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Verifies `token` (the text after `Bearer `).
    async fn verify(&self, token: &str) -> Result<VerifiedPrincipal, TokenRefusal>;
}

#[tonic::async_trait]
impl Authenticator for TokenVerifier {
    async fn verify(&self, token: &str) -> Result<VerifiedPrincipal, TokenRefusal> {
        TokenVerifier::verify(self, token).await
    }
}

/// How requests are mapped and answered (`--ext-authz-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthzSettings {
    /// Entity type of an mTLS peer principal (`--ext-authz-peer-principal-type`).
    pub peer_principal_type: String,
    /// Largest body read for `properties_from_body` (`--ext-authz-max-body-bytes`).
    pub max_body_bytes: usize,
    /// Whether a denied response's body says why (`--ext-authz-deny-reasons`).
    pub deny_reasons: bool,
}

/// The ext_authz handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct ExtAuthzService {
    snapshots: Arc<SnapshotHandle>,
    limits: Arc<Limits>,
    decision_log: DecisionLogSettings,
    authenticator: Arc<dyn Authenticator>,
    settings: Arc<ExtAuthzSettings>,
}

impl ExtAuthzService {
    /// Returns a service answering from `snapshots` within `limits`, verifying tokens with
    /// `authenticator`.
    pub fn new(
        snapshots: Arc<SnapshotHandle>,
        limits: Limits,
        authenticator: Arc<dyn Authenticator>,
        settings: ExtAuthzSettings,
    ) -> Self {
        Self {
            snapshots,
            limits: Arc::new(limits),
            decision_log: DecisionLogSettings::default(),
            authenticator,
            settings: Arc::new(settings),
        }
    }

    /// Sets how many decisions the decision log records.
    pub fn with_decision_log(mut self, settings: DecisionLogSettings) -> Self {
        self.decision_log = settings;
        self
    }

    /// Answers one request: never an error, since every failure is a denial.
    async fn answer(&self, request: CheckRequest, caller: Option<&str>) -> CheckResponse {
        let started = Instant::now();
        let http = request
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        let peer = request
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.source.as_ref())
            .map_or("", |source| source.principal.as_str());
        let headers = http.map(Headers::of).unwrap_or_default();
        let request_id = RequestId::from_given(headers.get("x-request-id"));
        let denial = match self.snapshots.load() {
            None => Denial::Unavailable,
            Some(served) => match http {
                None => Denial::NoHttpAttributes,
                Some(http) => {
                    let asked = Asking {
                        served: &served,
                        http,
                        headers: &headers,
                        peer,
                        request_id: &request_id,
                        caller,
                    };
                    match self.decide(&asked, started).await {
                        Ok(allowed) => return allowed,
                        Err(denial) => denial,
                    }
                }
            },
        };
        denial.record(&request_id);
        denial.response(&request_id, self.settings.deny_reasons)
    }

    /// Routes, authenticates and decides; the allowed response, or why not.
    async fn decide(&self, asked: &Asking<'_>, started: Instant) -> Result<CheckResponse, Denial> {
        let snapshot = &asked.served.snapshot;
        let matched = snapshot
            .route(&asked.http.method, &asked.http.path, &|name| {
                asked.headers.get(name)
            })
            .map_err(Denial::Route)?;
        let route = matched.route();
        let (principal, verified_entity, scopes) = match route.principal_source() {
            PrincipalSource::Jwt => {
                let token = bearer_token(asked.headers.get("authorization"))
                    .ok_or(Denial::Token(TokenRefusal::Missing))?;
                let verified = self
                    .authenticator
                    .verify(token)
                    .await
                    .map_err(Denial::Token)?;
                verified.check_revocation(snapshot).map_err(Denial::Token)?;
                (
                    verified.entity.uid.clone(),
                    Some(verified.entity),
                    Some(verified.scopes),
                )
            }
            PrincipalSource::Mtls if asked.peer.is_empty() => return Err(Denial::NoPeer),
            PrincipalSource::Mtls => (
                EntityRef::new(self.settings.peer_principal_type.clone(), asked.peer),
                None,
                None,
            ),
        };
        let from_body = route.properties_from_body();
        let properties = if from_body {
            body_properties(asked.http, asked.headers, self.settings.max_body_bytes)
                .map_err(Denial::Body)?
        } else {
            route.properties().to_vec()
        };
        let principal_id = principal.id.clone();
        let mut input = matched.into_check_input(principal, properties);
        // The verified principal's attributes and parents (its roles) are trusted: the
        // server checked the token (docs/tokens.md).
        input.verified_principal = verified_entity;
        // A verified token's scopes are the request's scopes: they override whatever the
        // route read from a header, so a client cannot widen them (docs/gateway.md).
        if let Some(scopes) = scopes {
            input.context.insert(
                SCOPES_CONTEXT_KEY.to_owned(),
                Value::Array(scopes.into_iter().map(Value::String).collect()),
            );
        }
        let decision = snapshot
            .check(input, &self.limits)
            .map_err(Denial::Request)?;
        // A body is allowed only if every field in it is: one denied field denies the write.
        let allowed = decision.is_allowed()
            && (!from_body
                || decision
                    .properties
                    .iter()
                    .all(|p| p.outcome == Outcome::Allow));
        let recorded = Asked {
            served: asked.served,
            decision_log: self.decision_log,
            request_id: asked.request_id,
            caller: asked.caller,
            front_end: FrontEnd::ExtAuthz,
            route: Some(route.name()),
        };
        record_decision(&recorded, &decision, allowed, started.elapsed());
        if !allowed {
            return Err(if decision.is_allowed() {
                Denial::Property
            } else {
                Denial::Policy
            });
        }
        let upstream = route.upstream_headers();
        Ok(allowed_response(
            upstream
                .principal()
                .map(|name| (name, principal_id.as_str())),
            upstream
                .properties()
                .map(|name| (name, allowed_properties(&decision))),
        ))
    }
}

/// One request being answered: what `decide` reads.
struct Asking<'a> {
    served: &'a Served,
    http: &'a HttpRequest,
    headers: &'a Headers,
    /// The mTLS peer's identity (`source.principal`), empty without one.
    peer: &'a str,
    request_id: &'a RequestId,
    caller: Option<&'a str>,
}

#[tonic::async_trait]
impl envoy_types::ext_authz::v3::pb::Authorization for ExtAuthzService {
    #[tracing::instrument(name = "ExtAuthzCheck", level = "debug", skip_all)]
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .map(|caller| caller.0.clone());
        let response = self.answer(request.into_inner(), caller.as_deref()).await;
        Ok(Response::new(response))
    }
}

/// The request's headers by lower-case name: Envoy's `headers` map, and its `header_map`
/// (sent instead with `encode_raw_headers`), repeated names joined with `,` as Envoy does.
#[derive(Debug, Default)]
struct Headers(HashMap<String, String>);

impl Headers {
    fn of(http: &HttpRequest) -> Self {
        let mut headers: HashMap<String, String> = HashMap::with_capacity(http.headers.len());
        let mut add = |name: &str, value: &str| {
            headers
                .entry(name.to_ascii_lowercase())
                .and_modify(|joined| {
                    joined.push(',');
                    joined.push_str(value);
                })
                .or_insert_with(|| value.to_owned());
        };
        for (name, value) in &http.headers {
            add(name, value);
        }
        if let Some(map) = &http.header_map {
            for header in &map.headers {
                let value = if header.raw_value.is_empty() {
                    Some(header.value.as_str())
                } else {
                    std::str::from_utf8(&header.raw_value).ok()
                };
                // A value that is not UTF-8 is left out: no route can read it.
                if let Some(value) = value {
                    add(&header.key, value);
                }
            }
        }
        Self(headers)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The token of an `authorization: Bearer <token>` header (the scheme is case-insensitive,
/// RFC 9110); `None` for no header, another scheme, or an empty token.
fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a body's fields cannot be checked; each denies with 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BodyRefusal {
    /// No body: Envoy was not configured with `with_request_body`, or the request had none.
    #[error("the route checks the request body, and there is none")]
    Missing,
    /// Envoy sent only part of the body (`allow_partial_message`).
    #[error("the request body is partial")]
    Partial,
    /// Over `--ext-authz-max-body-bytes`.
    #[error("the request body is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Not a JSON object.
    #[error("the request body is not a JSON object")]
    NotJsonObject,
    /// A top-level field name that cannot be a property (a space, a comma, non-ASCII).
    #[error("the request body has a field name that cannot be checked as a property")]
    FieldName,
}

impl BodyRefusal {
    fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Partial => "partial",
            Self::TooLarge { .. } => "too_large",
            Self::NotJsonObject => "not_json_object",
            Self::FieldName => "field_name",
        }
    }
}

/// The top-level field names of the request's JSON object body, each once, in order.
fn body_properties(
    http: &HttpRequest,
    headers: &Headers,
    max_body_bytes: usize,
) -> Result<Vec<String>, BodyRefusal> {
    if headers.get(PARTIAL_BODY_HEADER) == Some("true") {
        return Err(BodyRefusal::Partial);
    }
    // `raw_body` with `pack_as_bytes`, `body` otherwise.
    let body = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        &http.raw_body
    };
    if body.is_empty() {
        return Err(BodyRefusal::Missing);
    }
    if body.len() > max_body_bytes {
        return Err(BodyRefusal::TooLarge {
            size: body.len(),
            limit: max_body_bytes,
        });
    }
    // `size` is the request's content length when known: a body shorter than that is a part.
    if usize::try_from(http.size).is_ok_and(|size| size > body.len()) {
        return Err(BodyRefusal::Partial);
    }
    let TopLevelKeys(keys) =
        serde_json::from_slice(body).map_err(|_| BodyRefusal::NotJsonObject)?;
    if keys.iter().any(|key| !is_listable_property(key)) {
        return Err(BodyRefusal::FieldName);
    }
    Ok(keys)
}

/// The keys of a JSON object, each once, in order; the values are skipped, not built.
struct TopLevelKeys(Vec<String>);

impl<'de> Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevelKeys, A::Error> {
                let mut keys = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if seen.insert(key.clone()) {
                        keys.push(key);
                    }
                }
                Ok(TopLevelKeys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// The allowed properties of an allowed decision, comma-separated.
fn allowed_properties(decision: &Decision) -> String {
    decision
        .properties
        .iter()
        .filter(|p| p.outcome == Outcome::Allow)
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The OK answer: the route's upstream headers, each set (overwriting any copy the client
/// sent, so a client cannot forge one), or removed when it has nothing to carry.
///
/// Why not `headers_to_remove` for the headers that are set: Envoy applies removals after it
/// sets headers, so a header in both lists would reach the service not at all. Setting with
/// `OVERWRITE_IF_EXISTS_OR_ADD` replaces every client copy instead.
fn allowed_response(
    principal: Option<(&str, &str)>,
    properties: Option<(&str, String)>,
) -> CheckResponse {
    let mut headers = Vec::new();
    let mut headers_to_remove = Vec::new();
    let mut set = |name: &str, value: &str| {
        if value.is_empty() {
            headers_to_remove.push(name.to_owned());
        } else {
            headers.push(header(
                name,
                value,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            ));
        }
    };
    if let Some((name, id)) = principal {
        set(name, id);
    }
    if let Some((name, list)) = &properties {
        set(name, list);
    }
    CheckResponse {
        status: Some(grpc_status(tonic::Code::Ok)),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    }
}

fn header(name: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append_action: action as i32,
        ..HeaderValueOption::default()
    }
}

fn grpc_status(code: tonic::Code) -> rpc::Status {
    rpc::Status {
        code: code as i32,
        message: String::new(),
        details: Vec::new(),
    }
}

/// Why a request is denied: the closed set, with its status, metric labels and reason in one
/// table ([`Denial::answer`]).
#[derive(Debug, Clone, PartialEq)]
enum Denial {
    /// No snapshot is loaded yet.
    Unavailable,
    /// The `CheckRequest` has no `attributes.request.http`.
    NoHttpAttributes,
    /// No route for the request.
    Route(RouteRefusal),
    /// No bearer token, or a token that was refused.
    Token(TokenRefusal),
    /// A `principal: mtls` route, and no peer identity.
    NoPeer,
    /// The body cannot be checked.
    Body(BodyRefusal),
    /// The check is malformed or over a limit.
    Request(RequestError),
    /// The policies deny the request.
    Policy,
    /// The policies allow the action, but not a field of the body.
    Property,
}

/// How a denial is answered.
struct Answer {
    http: HttpStatusCode,
    /// 401 only: the `WWW-Authenticate` challenge.
    challenge: Option<&'static str>,
    /// The metric labels of a denial before a decision; `None` for a decision (counted with
    /// the decisions).
    refusal: Option<ExtAuthzRefusal>,
}

impl Denial {
    /// The one table: status, challenge and metric labels of each denial.
    fn answer(&self) -> Answer {
        let forbidden = |kind: &'static str, reason: &'static str| Answer {
            http: HttpStatusCode::Forbidden,
            challenge: None,
            refusal: Some(ExtAuthzRefusal { kind, reason }),
        };
        match self {
            Self::Unavailable => forbidden("error", "unavailable"),
            Self::NoHttpAttributes => forbidden("error", "no_http_attributes"),
            Self::Route(refusal) => forbidden(
                "route",
                match refusal {
                    RouteRefusal::NoRoute => "no_route",
                    RouteRefusal::MethodNotAllowed { .. } => "method_not_allowed",
                    RouteRefusal::PathRefused(_) => "path_refused",
                    RouteRefusal::BadContext { .. } => "bad_context",
                },
            ),
            // RFC 6750 section 3.1: no error code when the request had no token at all.
            Self::Token(TokenRefusal::Missing) => Answer {
                http: HttpStatusCode::Unauthorized,
                challenge: Some("Bearer"),
                refusal: Some(ExtAuthzRefusal {
                    kind: "token",
                    reason: TokenRefusal::Missing.label(),
                }),
            },
            Self::Token(refusal) => Answer {
                http: HttpStatusCode::Unauthorized,
                challenge: Some("Bearer error=\"invalid_token\""),
                refusal: Some(ExtAuthzRefusal {
                    kind: "token",
                    reason: refusal.label(),
                }),
            },
            Self::NoPeer => Answer {
                http: HttpStatusCode::Unauthorized,
                challenge: Some("Bearer"),
                refusal: Some(ExtAuthzRefusal {
                    kind: "peer",
                    reason: "missing",
                }),
            },
            Self::Body(refusal) => forbidden("body", refusal.label()),
            Self::Request(error) => forbidden(
                "error",
                match error {
                    RequestError::Internal(_) => "internal",
                    RequestError::TooLarge { .. } | RequestError::TooDeep { .. } => "limit",
                    RequestError::Invalid { .. } => "invalid",
                },
            ),
            Self::Policy | Self::Property => Answer {
                http: HttpStatusCode::Forbidden,
                challenge: None,
                refusal: None,
            },
        }
    }

    /// The reason, for `--ext-authz-deny-reasons` and the log. A denied body field is never
    /// named: it is in the decision log only.
    fn reason(&self) -> String {
        match self {
            Self::Unavailable => "no policy bundle is loaded yet".to_owned(),
            Self::NoHttpAttributes => "the check request has no http request attributes".to_owned(),
            Self::Route(refusal) => refusal.to_string(),
            Self::Token(refusal) => refusal.to_string(),
            Self::NoPeer => {
                "the route needs the mTLS peer's identity, and there is none".to_owned()
            }
            Self::Body(refusal) => refusal.to_string(),
            Self::Request(RequestError::Internal(_)) => "internal error".to_owned(),
            Self::Request(error) => error.to_string(),
            Self::Policy => "denied by policy".to_owned(),
            Self::Property => "a field of the request body may not be written".to_owned(),
        }
    }

    /// Counts and logs a denial made before a decision (decisions are recorded when made).
    fn record(&self, request_id: &RequestId) {
        match self {
            Self::Unavailable => telemetry_metrics::record_rejection(Rejection::Unavailable),
            Self::Request(RequestError::Internal(detail)) => {
                tracing::error!(%request_id, detail, "ext_authz check failed");
                telemetry_metrics::record_rejection(Rejection::Internal);
            }
            Self::Request(error) => {
                if let Some(limit) = error.limit() {
                    telemetry_metrics::record_limit_breach(limit.into());
                }
                telemetry_metrics::record_rejection(Rejection::Invalid);
            }
            _ => {}
        }
        if let Some(refusal) = self.answer().refusal {
            record_ext_authz_refusal(refusal);
            tracing::debug!(
                %request_id,
                kind = refusal.kind,
                reason = refusal.reason,
                "ext_authz request refused"
            );
        }
    }

    /// The denied response: 401 or 403, a JSON body with the request id (and the reason when
    /// configured).
    fn response(&self, request_id: &RequestId, with_reason: bool) -> CheckResponse {
        let Answer {
            http, challenge, ..
        } = self.answer();
        let (code, error) = match http {
            HttpStatusCode::Unauthorized => (tonic::Code::Unauthenticated, "unauthenticated"),
            _ => (tonic::Code::PermissionDenied, "forbidden"),
        };
        let mut body = serde_json::json!({
            "error": error,
            "request_id": request_id.to_string(),
        });
        if with_reason && let Some(object) = body.as_object_mut() {
            object.insert("reason".to_owned(), Value::String(self.reason()));
        }
        let mut headers = vec![header(
            "content-type",
            "application/json",
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        )];
        if let Some(challenge) = challenge {
            headers.push(header(
                "www-authenticate",
                challenge,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            ));
        }
        CheckResponse {
            status: Some(grpc_status(code)),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: http as i32 }),
                headers,
                body: body.to_string(),
            })),
            dynamic_metadata: None,
        }
    }
}

#[cfg(test)]
mod tests;
