//! The HTTP/JSON front-end: AuthZEN 1.0 (`/access/v1/…`, `/.well-known/authzen-configuration`)
//! and `verdict.v1` over HTTP (`/v1/check`, `/v1/batch-check`), with the OpenAPI document of
//! both (`/openapi.json`, kept in `docs/openapi.json`).
//!
//! Owns: the routes ([`ROUTES`]), reading JSON bodies strictly (`json.rs`), the AuthZEN model and
//! its mapping to Cedar (`authzen.rs`, `search.rs`), the proto3 JSON mapping of `verdict.v1`
//! (`verdict_json.rs`), and the one error → HTTP answer table (`error.rs`).
//!
//! Does not own: the listener, TLS, caller keys, body size and arrival time, request slots,
//! deadlines, request ids and HTTP metrics: the server's HTTP layer (`crate::server`) applies
//! the same settings as on the gRPC port before a handler runs, and hands it the whole body.
//! Nor policy logic: every decision is `Snapshot::check`'s, and `/v1/check` and
//! `/v1/batch-check` are answered by the very handlers of the gRPC `Check` and `BatchCheck`.
//!
//! A handler loads the served snapshot once; everything it answers (every item of an
//! evaluations request, every candidate of a search page) comes from that snapshot, whose
//! version is in the `x-verdict-snapshot-version` response header.

mod authzen;
mod error;
mod json;
mod search;
mod verdict_json;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use verdict_core::Limits;

pub use authzen::AuthzenMapping;
pub use error::HttpError;

use self::authzen::Asking;
use self::search::Searched;
use super::authorization::{AuthorizationService, Caller};
use super::proto::authorization_server::Authorization;
use super::record::RequestId;
use crate::serving::{Served, SnapshotHandle};
use crate::telemetry::decision_log::DecisionLogSettings;
use crate::telemetry::metrics::{self as telemetry_metrics, Rejection};

/// The response header with the version of the snapshot that answered.
pub const SNAPSHOT_VERSION_HEADER: &str = "x-verdict-snapshot-version";

/// Levels of a request body around the values the core bounds with `--max-json-depth` (the
/// body, `evaluations`, an item, `subject`, `properties`, ...): the body may nest this much
/// more before the value-level bound applies.
const ENVELOPE_DEPTH: usize = 8;

/// Every route of the HTTP API, as (method, path): the `route` label of the HTTP metrics, and
/// what `docs/openapi.json` must describe (a test checks it).
///
/// The relation questions of `verdict.v1` are `POST /v1/check-relation`,
/// `/v1/lookup-resources` and `/v1/lookup-subjects`, each answered by its gRPC handler as
/// `/v1/check` is; a lookup answers one page per HTTP request (its first streamed message),
/// and the caller passes `nextCursor` back as `cursor` for the next.
pub const ROUTES: [(&str, &str); 12] = [
    ("GET", "/.well-known/authzen-configuration"),
    ("POST", "/access/v1/evaluation"),
    ("POST", "/access/v1/evaluations"),
    ("POST", "/access/v1/search/subject"),
    ("POST", "/access/v1/search/resource"),
    ("POST", "/access/v1/search/action"),
    ("POST", "/v1/check"),
    ("POST", "/v1/batch-check"),
    ("POST", "/v1/check-relation"),
    ("POST", "/v1/lookup-resources"),
    ("POST", "/v1/lookup-subjects"),
    ("GET", "/openapi.json"),
];

/// Routes any caller may read without a key: metadata, no decisions.
pub const OPEN_ROUTES: [&str; 2] = ["/.well-known/authzen-configuration", "/openapi.json"];

/// Returns the route label of `path`: its entry in [`ROUTES`], or `other`.
pub fn route_label(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(_, route)| *route == path)
        .map_or("other", |(_, route)| route)
}

/// The OpenAPI 3.1 document of the HTTP API.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// What the HTTP handlers are configured with (`--http-*`, `--authzen-*`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body (`--http-max-body-bytes`); enforced by the server's HTTP layer.
    pub max_body_bytes: usize,
    /// AuthZEN → Cedar.
    pub mapping: AuthzenMapping,
    /// Largest search page, and the default one (`--authzen-max-page`).
    pub max_page: usize,
    /// The PDP identifier for the metadata (`--authzen-pdp-url`); `None`: from the request.
    pub pdp_url: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            mapping: AuthzenMapping::default(),
            max_page: 1000,
            pdp_url: None,
        }
    }
}

/// The HTTP handlers' state; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshots: Arc<SnapshotHandle>,
    limits: Arc<Limits>,
    decision_log: DecisionLogSettings,
    mapping: Arc<AuthzenMapping>,
    max_page: usize,
    pdp_url: Option<String>,
    /// The `verdict.v1` handlers, recording their decisions as `front_end="http"`.
    verdict: AuthorizationService,
    /// Whether the listener serves TLS (the metadata's URLs are then `https://`).
    tls: bool,
}

impl HttpApi {
    /// Returns the handlers answering from `snapshots`; `verdict` is the gRPC service whose
    /// `Check` and `BatchCheck` answer `/v1/check` and `/v1/batch-check`.
    pub fn new(
        snapshots: Arc<SnapshotHandle>,
        limits: Limits,
        decision_log: DecisionLogSettings,
        settings: &HttpSettings,
        verdict: AuthorizationService,
        tls: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                snapshots,
                limits: Arc::new(limits),
                decision_log,
                mapping: Arc::new(settings.mapping.clone()),
                max_page: settings.max_page,
                pdp_url: settings.pdp_url.clone(),
                verdict: verdict.for_http(),
                tls,
            }),
        }
    }

    /// Returns the router of every route in [`ROUTES`]. Unknown paths are 404 and known paths
    /// with another method 405, both with the JSON error body.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(authzen_routes())
            .merge(verdict_routes())
            .route("/openapi.json", get(openapi))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.clone())
    }

    fn served(&self) -> Result<Arc<Served>, HttpError> {
        self.inner.snapshots.load().ok_or_else(|| {
            telemetry_metrics::record_rejection(Rejection::Unavailable);
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no policy bundle is loaded yet",
            )
        })
    }

    fn asking(&self, served: Arc<Served>, call: &CallInfo) -> Asking {
        Asking {
            served,
            limits: Arc::clone(&self.inner.limits),
            decision_log: self.inner.decision_log,
            request_id: call.request_id.clone(),
            caller: call.caller.clone(),
            mapping: Arc::clone(&self.inner.mapping),
        }
    }
}

/// The AuthZEN routes.
fn authzen_routes() -> Router<HttpApi> {
    Router::new()
        .route("/.well-known/authzen-configuration", get(metadata))
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/access/v1/search/subject", post(search_subject))
        .route("/access/v1/search/resource", post(search_resource))
        .route("/access/v1/search/action", post(search_action))
}

/// The `verdict.v1` routes: one per RPC, its name in kebab case under `/v1/`.
fn verdict_routes() -> Router<HttpApi> {
    Router::new()
        .route("/v1/check", post(check))
        .route("/v1/batch-check", post(batch_check))
        .route("/v1/check-relation", post(check_relation))
        .route("/v1/lookup-resources", post(lookup_resources))
        .route("/v1/lookup-subjects", post(lookup_subjects))
}

async fn check_relation(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    let message = verdict_json::check_relation_request(&body)?;
    let response = unary(
        api.inner
            .verdict
            .check_relation(grpc_request(message, &call))
            .await,
    )?;
    Ok(answer(
        &verdict_json::check_relation_response(&response),
        &response.snapshot_version,
    ))
}

/// Answers a lookup's first streamed page as one JSON body.
async fn first_page<T>(
    stream: Result<tonic::Response<crate::api::relation_questions::PageStream<T>>, tonic::Status>,
) -> Result<T, HttpError> {
    use tokio_stream::StreamExt;
    let mut stream = stream
        .map_err(|status| HttpError::from_status(&status))?
        .into_inner();
    match stream.next().await {
        Some(Ok(page)) => Ok(page),
        Some(Err(status)) => Err(HttpError::from_status(&status)),
        None => Err(HttpError::from_status(&tonic::Status::internal(
            "the lookup answered no page",
        ))),
    }
}

async fn lookup_resources(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    let message = verdict_json::lookup_resources_request(&body)?;
    let page = first_page(
        api.inner
            .verdict
            .lookup_resources(grpc_request(message, &call))
            .await,
    )
    .await?;
    Ok(answer(
        &verdict_json::lookup_resources_response(&page),
        &page.snapshot_version,
    ))
}

async fn lookup_subjects(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    let message = verdict_json::lookup_subjects_request(&body)?;
    let page = first_page(
        api.inner
            .verdict
            .lookup_subjects(grpc_request(message, &call))
            .await,
    )
    .await?;
    Ok(answer(
        &verdict_json::lookup_subjects_response(&page),
        &page.snapshot_version,
    ))
}

/// Who asked: put in the request's extensions by the server's HTTP layer.
#[derive(Debug, Clone)]
struct CallInfo {
    request_id: RequestId,
    caller: Option<Arc<str>>,
}

/// What every JSON route takes: who asked, and the body read strictly (`application/json`,
/// an object, the nesting limit). A body that is not is answered with the JSON error.
struct JsonCall {
    call: CallInfo,
    body: Map<String, Value>,
}

impl axum::extract::FromRequest<HttpApi> for JsonCall {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        api: &HttpApi,
    ) -> Result<Self, Response> {
        let extensions = request.extensions();
        let call = CallInfo {
            request_id: extensions
                .get::<RequestId>()
                .cloned()
                .unwrap_or_else(|| RequestId::from_given(None)),
            caller: extensions.get::<Caller>().map(|c| Arc::from(c.0.as_str())),
        };
        json::require_json_content_type(request.headers()).map_err(IntoResponse::into_response)?;
        let bytes = Bytes::from_request(request, api)
            .await
            .map_err(IntoResponse::into_response)?;
        let body = json::parse_object(&bytes, api.inner.limits.max_json_depth + ENVELOPE_DEPTH)
            .map_err(IntoResponse::into_response)?;
        Ok(Self { call, body })
    }
}

/// A unary gRPC handler's answer, or its status as the HTTP error.
fn unary<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Result<T, HttpError> {
    answer
        .map(tonic::Response::into_inner)
        .map_err(|status| HttpError::from_status(&status))
}

/// A 200 answer with a JSON body and the answering snapshot's version.
fn answer(body: &Value, version: &str) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(version) {
        headers.insert(SNAPSHOT_VERSION_HEADER, value);
    }
    response
}

/// Parses the body, loads the snapshot once and answers with `handle`.
fn authzen_call(
    api: &HttpApi,
    call: &CallInfo,
    body: &Map<String, Value>,
    handle: fn(&Asking, &Map<String, Value>) -> Result<Value, HttpError>,
) -> Result<Response, HttpError> {
    let served = api.served()?;
    let asking = api.asking(Arc::clone(&served), call);
    let value = handle(&asking, body)?;
    Ok(answer(&value, served.snapshot.version()))
}

async fn evaluation(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    authzen_call(&api, &call, &body, authzen::evaluation)
}

async fn evaluations(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    authzen_call(&api, &call, &body, authzen::evaluations)
}

async fn search(
    api: HttpApi,
    call: CallInfo,
    body: Map<String, Value>,
    searched: Searched,
) -> Result<Response, HttpError> {
    let search = search::parse(searched, &body, api.inner.max_page)?;
    let served = api.served()?;
    let asking = api.asking(Arc::clone(&served), &call);
    let value = search::answer_off_the_runtime(asking, search).await?;
    Ok(answer(&value, served.snapshot.version()))
}

async fn search_subject(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    search(api, call, body, Searched::Subject).await
}

async fn search_resource(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    search(api, call, body, Searched::Resource).await
}

async fn search_action(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    search(api, call, body, Searched::Action).await
}

/// `GET /.well-known/authzen-configuration`: the PDP metadata, listing every endpoint served.
async fn metadata(State(api): State<HttpApi>, headers: HeaderMap) -> Response {
    let base = match &api.inner.pdp_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                        })
                });
            let Some(host) = host else {
                return HttpError::invalid(
                    "host: a valid Host header is needed to name the endpoints (or set --authzen-pdp-url)",
                )
                .into_response();
            };
            let scheme = if api.inner.tls { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    let body = json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    let mut response = (StatusCode::OK, OPENAPI_JSON).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Builds the gRPC request the `verdict.v1` handlers take: the message, the request id as
/// `x-request-id` metadata, the caller in the extensions.
fn grpc_request<T>(message: T, call: &CallInfo) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = call.request_id.to_string().parse() {
        request.metadata_mut().insert("x-request-id", value);
    }
    if let Some(caller) = &call.caller {
        request.extensions_mut().insert(Caller(caller.to_string()));
    }
    request
}

async fn check(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    let message = verdict_json::check_request(&Value::Object(body), "")?;
    let response = unary(api.inner.verdict.check(grpc_request(message, &call)).await)?;
    Ok(answer(
        &verdict_json::check_response(&response),
        &response.snapshot_version,
    ))
}

async fn batch_check(
    State(api): State<HttpApi>,
    JsonCall { call, body }: JsonCall,
) -> Result<Response, HttpError> {
    let message = verdict_json::batch_check_request(&body)?;
    let response = unary(
        api.inner
            .verdict
            .batch_check(grpc_request(message, &call))
            .await,
    )?;
    Ok(answer(
        &verdict_json::batch_check_response(&response),
        &response.snapshot_version,
    ))
}

async fn not_found() -> Response {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "path: no such route (see /openapi.json)",
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method: this route takes another method (see /openapi.json)",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_label_and_others_share_one() {
        for (_, path) in ROUTES {
            assert_eq!(route_label(path), path);
        }
        assert_eq!(route_label("/nowhere"), "other");
    }

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(document["openapi"].as_str().unwrap().get(..3), Some("3.1"));
        for (method, path) in ROUTES {
            let operation = &document["paths"][path][method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {path} is not in docs/openapi.json"
            );
        }
    }
}
