use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, Request as Attributes};
use prost::Message;
use verdict_core::{EntityInput, LoadOptions, Snapshot};

use super::*;

/// Tokens the fake authenticator knows: token → (user, scopes).
const TOKENS: [(&str, &str, &[&str]); 5] = [
    ("bob-token", "bob", &["documents:read", "documents:write"]),
    ("bob-no-scopes", "bob", &[]),
    ("carol-token", "carol", &["documents:read"]),
    ("erin-token", "erin", &["documents:read"]),
    ("frank-token", "frank", &["documents:read"]),
];

/// Verifies the tokens in [`TOKENS`]; refuses anything else as a bad signature.
#[derive(Debug)]
struct FakeAuthenticator;

#[tonic::async_trait]
impl Authenticator for FakeAuthenticator {
    async fn verify(&self, token: &str) -> Result<VerifiedPrincipal, TokenRefusal> {
        let (_, user, scopes) = TOKENS
            .iter()
            .find(|(known, _, _)| *known == token)
            .ok_or(TokenRefusal::BadSignature)?;
        Ok(VerifiedPrincipal {
            entity: EntityInput {
                uid: EntityRef::new("User", *user),
                attrs: serde_json::Map::new(),
                parents: Vec::new(),
            },
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            jti: None,
            issuer: "test".to_owned(),
        })
    }
}

fn settings() -> ExtAuthzSettings {
    ExtAuthzSettings {
        peer_principal_type: "Service".to_owned(),
        max_body_bytes: 1024,
        deny_reasons: false,
    }
}

fn example_snapshot() -> Snapshot {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    Snapshot::load(policies.as_ref(), &LoadOptions::default()).unwrap()
}

fn service_with(settings: ExtAuthzSettings) -> ExtAuthzService {
    ExtAuthzService::new(
        Arc::new(SnapshotHandle::with(example_snapshot())),
        Limits::default(),
        Arc::new(FakeAuthenticator),
        settings,
    )
    .with_decision_log(DecisionLogSettings::OFF)
}

fn service() -> ExtAuthzService {
    service_with(settings())
}

/// A request as Envoy sends it: the path with its query, lower-case header names.
#[derive(Default, Clone)]
struct Http {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    raw_body: Vec<u8>,
    size: i64,
    peer: &'static str,
}

impl Http {
    fn new(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            size: -1,
            ..Self::default()
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    fn peer(mut self, peer: &'static str) -> Self {
        self.peer = peer;
        self
    }

    fn request(&self) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    principal: self.peer.to_owned(),
                    ..Peer::default()
                }),
                request: Some(Attributes {
                    time: None,
                    http: Some(HttpRequest {
                        method: self.method.to_owned(),
                        path: self.path.to_owned(),
                        headers: self
                            .headers
                            .iter()
                            .map(|(n, v)| ((*n).to_owned(), v.clone()))
                            .collect(),
                        body: self.body.clone(),
                        raw_body: self.raw_body.clone(),
                        size: self.size,
                        ..HttpRequest::default()
                    }),
                }),
                ..AttributeContext::default()
            }),
        }
    }
}

/// What a test looks at in an answer.
#[derive(Debug)]
struct Seen {
    grpc: i32,
    http: Option<i32>,
    headers: HashMap<String, (String, i32)>,
    removed: Vec<String>,
    body: Option<serde_json::Value>,
}

fn seen(response: CheckResponse) -> Seen {
    let grpc = response.status.map_or(-1, |s| s.code);
    let options = |headers: Vec<HeaderValueOption>| {
        headers
            .into_iter()
            .map(|o| {
                let h = o.header.unwrap();
                (h.key, (h.value, o.append_action))
            })
            .collect()
    };
    match response.http_response.unwrap() {
        HttpResponse::OkResponse(ok) => Seen {
            grpc,
            http: None,
            headers: options(ok.headers),
            removed: ok.headers_to_remove,
            body: None,
        },
        HttpResponse::DeniedResponse(denied) => Seen {
            grpc,
            http: denied.status.map(|s| s.code),
            headers: options(denied.headers),
            removed: Vec::new(),
            body: Some(serde_json::from_str(&denied.body).unwrap()),
        },
        HttpResponse::ErrorResponse(_) => panic!("no error responses"),
    }
}

async fn ask_with(service: &ExtAuthzService, http: &Http) -> Seen {
    seen(service.answer(http.request(), None).await)
}

async fn ask(http: &Http) -> Seen {
    ask_with(&service(), http).await
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|(v, _)| v.as_str())
}

fn assert_forbidden(seen: &Seen) {
    assert_eq!(seen.grpc, tonic::Code::PermissionDenied as i32, "{seen:?}");
    assert_eq!(seen.http, Some(403), "{seen:?}");
    assert_eq!(header(seen, "content-type"), Some("application/json"));
    assert_eq!(header(seen, "www-authenticate"), None);
    let body = seen.body.as_ref().unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(
        body.get("reason").is_none(),
        "no reasons by default: {body}"
    );
}

fn assert_unauthorized(seen: &Seen, challenge: &str) {
    assert_eq!(seen.grpc, tonic::Code::Unauthenticated as i32, "{seen:?}");
    assert_eq!(seen.http, Some(401), "{seen:?}");
    assert_eq!(header(seen, "www-authenticate"), Some(challenge));
    assert_eq!(seen.body.as_ref().unwrap()["error"], "unauthenticated");
}

fn assert_allowed(seen: &Seen) {
    assert_eq!(seen.grpc, 0, "{seen:?}");
    assert_eq!(seen.http, None, "{seen:?}");
}

#[tokio::test]
async fn requests_no_route_takes_are_forbidden_whatever_the_token() {
    for http in [
        Http::new("GET", "/v1/unknown"),
        Http::new("GET", "/v1/admin/audit"),
        // A method the path has no route for.
        Http::new("POST", "/v1/documents/roadmap"),
        // An encoded slash is refused, never matched to a neighbour.
        Http::new("GET", "/v1/documents/..%2fadmin"),
        Http::new("GET", "relative/path"),
        Http::new("GET", ""),
        Http::new("", "/v1/documents/roadmap"),
        // A context value that is malformed.
        Http::new("GET", "/v1/documents/roadmap").header("x-acme-mfa", "yes"),
    ] {
        assert_forbidden(&ask(&http.clone().token("bob-token")).await);
        assert_forbidden(&ask(&http).await);
    }
}

#[tokio::test]
async fn a_jwt_route_without_a_valid_token_is_unauthorized() {
    let read = Http::new("GET", "/v1/documents/roadmap");
    assert_unauthorized(&ask(&read).await, "Bearer");
    assert_unauthorized(
        &ask(&read.clone().header("authorization", "Basic Ym9iOmJvYg==")).await,
        "Bearer",
    );
    assert_unauthorized(
        &ask(&read.clone().header("authorization", "Bearer ")).await,
        "Bearer",
    );
    assert_unauthorized(
        &ask(&read.clone().token("forged")).await,
        "Bearer error=\"invalid_token\"",
    );
    // The real verifier, unconfigured, refuses every token.
    let unconfigured = ExtAuthzService::new(
        Arc::new(SnapshotHandle::with(example_snapshot())),
        Limits::default(),
        Arc::new(TokenVerifier::disabled()),
        settings(),
    );
    assert_unauthorized(
        &ask_with(&unconfigured, &read.clone().token("bob-token")).await,
        "Bearer error=\"invalid_token\"",
    );
}

#[tokio::test]
async fn object_level_allows_the_owner_tenant_and_denies_another_tenants_document() {
    let allowed = ask(&Http::new("GET", "/v1/documents/roadmap").token("bob-token")).await;
    assert_allowed(&allowed);
    let (principal, action) = allowed.headers.get("x-verdict-principal").unwrap();
    assert_eq!(principal, "bob");
    // Overwrite: a copy the client sent is replaced, not appended to.
    assert_eq!(*action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32);
    // BOLA: another tenant's document id in the path.
    assert_forbidden(&ask(&Http::new("GET", "/v1/documents/globex-plan").token("bob-token")).await);
    assert_allowed(&ask(&Http::new("GET", "/v1/documents/globex-plan").token("frank-token")).await);
    // The path is normalised before matching: dots resolve within the documents route.
    assert_allowed(
        &ask(&Http::new("GET", "/v1/documents/x/../roadmap?lang=en").token("bob-token")).await,
    );
}

#[tokio::test]
async fn a_tokens_scopes_override_the_scopes_header() {
    // The route reads `scopes` from `x-acme-scopes`; a verified token's scopes replace it.
    let widened = Http::new("GET", "/v1/documents/roadmap")
        .token("bob-no-scopes")
        .header("x-acme-scopes", "documents:read");
    assert_forbidden(&ask(&widened).await);
}

#[tokio::test]
async fn function_level_denies_a_plain_user_on_the_admin_api() {
    assert_forbidden(&ask(&Http::new("GET", "/v1/admin/users").token("bob-token")).await);
    assert_allowed(&ask(&Http::new("GET", "/v1/admin/users").token("carol-token")).await);
    assert_forbidden(&ask(&Http::new("DELETE", "/v1/admin/users/bob").token("carol-token")).await);
    assert_allowed(&ask(&Http::new("DELETE", "/v1/admin/users/bob").token("erin-token")).await);
}

#[tokio::test]
async fn an_mtls_route_takes_the_peer_identity_as_the_principal() {
    let reindex = Http::new("POST", "/v1/admin/reindex");
    let allowed = ask(&reindex.clone().peer("spiffe://acme/ns/search/sa/indexer")).await;
    assert_allowed(&allowed);
    assert_eq!(
        header(&allowed, "x-verdict-principal"),
        Some("spiffe://acme/ns/search/sa/indexer")
    );
    assert_forbidden(&ask(&reindex.clone().peer("spiffe://acme/ns/web/sa/frontend")).await);
    // No peer identity: 401, whatever token comes along (the route does not read tokens).
    assert_unauthorized(&ask(&reindex.clone().token("erin-token")).await, "Bearer");
    // The peer's type is configurable: no policy permits `Workload`.
    let other_type = service_with(ExtAuthzSettings {
        peer_principal_type: "Workload".to_owned(),
        ..settings()
    });
    assert_forbidden(
        &ask_with(
            &other_type,
            &reindex.peer("spiffe://acme/ns/search/sa/indexer"),
        )
        .await,
    );
}

#[tokio::test]
async fn a_body_field_the_caller_may_not_write_denies_the_write() {
    let update = Http::new("PATCH", "/v1/profiles/bob").token("bob-token");
    assert_allowed(&ask(&update.clone().body(r#"{"name": "Bob", "email": "b@x"}"#)).await);
    // Mass assignment: one privileged field denies the whole request.
    let denied = ask(&update.clone().body(r#"{"name": "Bob", "role": "admin"}"#)).await;
    assert_forbidden(&denied);
    assert!(!denied.body.unwrap().to_string().contains("role"));
    // An admin may write `role`.
    let admin = Http::new("PATCH", "/v1/profiles/bob").token("erin-token");
    assert_allowed(&ask(&admin.body(r#"{"role": "support"}"#)).await);
    // `raw_body` (Envoy's `pack_as_bytes`) is read the same way.
    let mut raw = update.clone();
    raw.raw_body = br#"{"isAdmin": true}"#.to_vec();
    assert_forbidden(&ask(&raw).await);
    raw.raw_body = br#"{"email": "b@y"}"#.to_vec();
    assert_allowed(&ask(&raw).await);
}

#[tokio::test]
async fn a_body_that_cannot_be_checked_is_forbidden() {
    let update = Http::new("PATCH", "/v1/profiles/bob").token("bob-token");
    for body in [
        "",
        "[1, 2]",
        "\"name\"",
        "name=Bob",
        "{\"name\": \"Bob\"",
        "{\"name\": \"Bob\"} trailing",
        "{\"a b\": 1}",
        "{\"a,b\": 1}",
        "{\"caf\u{e9}\": 1}",
    ] {
        assert_forbidden(&ask(&update.clone().body(body)).await);
    }
    // Over --ext-authz-max-body-bytes (1024 here).
    let large = format!("{{\"name\": \"{}\"}}", "x".repeat(1100));
    assert_forbidden(&ask(&update.clone().body(&large)).await);
    // Partial: Envoy says so, or the body is shorter than the request's length.
    let partial = update
        .clone()
        .body(r#"{"name": "Bob"}"#)
        .header("x-envoy-auth-partial-body", "true");
    assert_forbidden(&ask(&partial).await);
    let mut short = update.clone().body(r#"{"name": "Bob"}"#);
    short.size = 400;
    assert_forbidden(&ask(&short).await);
    short.size = 15;
    assert_allowed(&ask(&short).await);
    let whole = update
        .body(r#"{"name": "Bob"}"#)
        .header("x-envoy-auth-partial-body", "false");
    assert_allowed(&ask(&whole).await);
}

#[tokio::test]
async fn a_read_sends_its_allowed_properties_upstream() {
    let read = |token: &str| Http::new("GET", "/v1/profiles/bob").token(token);
    let support = ask(&read("carol-token")).await;
    assert_allowed(&support);
    assert_eq!(
        header(&support, "x-verdict-allowed-properties"),
        Some("name,email,plan,role")
    );
    let own = ask(&read("bob-token")).await;
    assert_eq!(
        header(&own, "x-verdict-allowed-properties"),
        Some("name,email,plan,role,ssn,paymentCard")
    );
    assert!(own.removed.is_empty());
}

#[test]
fn an_empty_header_value_is_removed_rather_than_sent() {
    let response = seen(allowed_response(
        Some(("x-verdict-principal", "bob")),
        Some(("x-verdict-allowed-properties", String::new())),
    ));
    assert_eq!(header(&response, "x-verdict-principal"), Some("bob"));
    assert_eq!(header(&response, "x-verdict-allowed-properties"), None);
    assert_eq!(response.removed, ["x-verdict-allowed-properties"]);
}

#[tokio::test]
async fn every_error_denies() {
    let no_snapshot = ExtAuthzService::new(
        Arc::new(SnapshotHandle::empty()),
        Limits::default(),
        Arc::new(FakeAuthenticator),
        settings(),
    );
    let read = Http::new("GET", "/v1/documents/roadmap").token("bob-token");
    assert_forbidden(&ask_with(&no_snapshot, &read).await);
    // No http attributes at all.
    assert_forbidden(&seen(service().answer(CheckRequest::default(), None).await));
    // Over a request limit: more properties than allowed.
    let few = ExtAuthzService::new(
        Arc::new(SnapshotHandle::with(example_snapshot())),
        Limits {
            max_properties: 1,
            ..Limits::default()
        },
        Arc::new(FakeAuthenticator),
        settings(),
    );
    let update = Http::new("PATCH", "/v1/profiles/bob")
        .token("bob-token")
        .body(r#"{"name": "Bob", "email": "b@x"}"#);
    assert_forbidden(&ask_with(&few, &update).await);
}

#[tokio::test]
async fn reasons_are_shown_only_when_configured_and_never_name_a_field() {
    let verbose = service_with(ExtAuthzSettings {
        deny_reasons: true,
        ..settings()
    });
    let reason = |seen: Seen| seen.body.unwrap()["reason"].as_str().unwrap().to_owned();
    assert_eq!(
        reason(ask_with(&verbose, &Http::new("GET", "/v1/nothing")).await),
        "no route matches the path"
    );
    assert_eq!(
        reason(ask_with(&verbose, &Http::new("GET", "/v1/documents/d1")).await),
        "no bearer token"
    );
    let mass_assignment = Http::new("PATCH", "/v1/profiles/bob")
        .token("bob-token")
        .body(r#"{"role": "admin"}"#);
    let text = reason(ask_with(&verbose, &mass_assignment).await);
    assert_eq!(text, "a field of the request body may not be written");
}

#[tokio::test]
async fn the_request_id_is_envoys_when_sane_and_generated_otherwise() {
    let read = Http::new("GET", "/v1/nothing");
    let given = ask(&read.clone().header("x-request-id", "abc-123")).await;
    assert_eq!(given.body.unwrap()["request_id"], "abc-123");
    let insane = ask(&read.header("x-request-id", "Bearer abc.def.ghi")).await;
    let id = insane.body.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.parse::<ulid::Ulid>().is_ok(), "{id}");
}

#[test]
fn headers_are_read_by_lower_case_name_from_either_form() {
    let http = HttpRequest {
        headers: [("X-Acme-MFA".to_owned(), "true".to_owned())].into(),
        header_map: Some(HeaderMap {
            headers: vec![
                HeaderValue {
                    key: "x-acme-scopes".to_owned(),
                    value: String::new(),
                    raw_value: b"a".to_vec(),
                },
                HeaderValue {
                    key: "X-Acme-Scopes".to_owned(),
                    value: "b".to_owned(),
                    raw_value: Vec::new(),
                },
                HeaderValue {
                    key: "x-bin".to_owned(),
                    value: String::new(),
                    raw_value: vec![0xff, 0xfe],
                },
            ],
        }),
        ..HttpRequest::default()
    };
    let headers = Headers::of(&http);
    assert_eq!(headers.get("x-acme-mfa"), Some("true"));
    assert_eq!(headers.get("x-acme-scopes"), Some("a,b"));
    assert_eq!(headers.get("x-bin"), None);
}

#[test]
fn a_bearer_token_is_read_case_insensitively_and_nothing_else_is() {
    assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
    assert_eq!(bearer_token(Some("Basic abc")), None);
    assert_eq!(bearer_token(Some("Bearer")), None);
    assert_eq!(bearer_token(Some("Bearerabc")), None);
    assert_eq!(bearer_token(None), None);
}

#[test]
fn the_body_keys_are_read_once_each_in_order() {
    let http = HttpRequest {
        body: r#"{"b": {"nested": [1, {"x": 2}]}, "a": null, "b": 3}"#.to_owned(),
        size: -1,
        ..HttpRequest::default()
    };
    assert_eq!(
        body_properties(&http, &Headers::default(), 1024),
        Ok(vec!["b".to_owned(), "a".to_owned()])
    );
    // Values are skipped without recursion: deep nesting costs no stack.
    let deep = HttpRequest {
        body: format!("{{\"a\": {}{}}}", "[".repeat(30_000), "]".repeat(30_000)),
        ..HttpRequest::default()
    };
    assert_eq!(
        body_properties(&deep, &Headers::default(), 100_000),
        Ok(vec!["a".to_owned()])
    );
}

/// The descriptors reflection serves agree with `envoy-types`' messages: decoding a message
/// encoded by `envoy-types` through them finds every field Verdict reads and writes.
#[test]
fn the_reflection_descriptors_match_envoys_field_numbers() {
    use prost_reflect::{DescriptorPool, DynamicMessage, Value as Reflected};
    let pool = DescriptorPool::from_file_descriptor_set(file_descriptor_set()).unwrap();
    let service = pool
        .get_service_by_name("envoy.service.auth.v3.Authorization")
        .unwrap();
    let check = service.methods().next().unwrap();
    assert_eq!(check.name(), "Check");

    let mut http = Http::new("PATCH", "/v1/profiles/bob?x=1")
        .header("x-acme-mfa", "true")
        .body("{}")
        .peer("spiffe://acme/ns/a/sa/b");
    http.raw_body = b"raw".to_vec();
    let encoded = http.request().encode_to_vec();
    let request = DynamicMessage::decode(check.input(), encoded.as_slice()).unwrap();
    let at = |path: &str| {
        let mut value = Reflected::Message(request.clone());
        for field in path.split('.') {
            let Reflected::Message(message) = value else {
                panic!("{path}: {field} is not in a message");
            };
            value = message.get_field_by_name(field).unwrap().into_owned();
        }
        value
    };
    assert_eq!(
        at("attributes.request.http.method"),
        Reflected::String("PATCH".into())
    );
    assert_eq!(
        at("attributes.request.http.path"),
        Reflected::String("/v1/profiles/bob?x=1".into())
    );
    assert_eq!(
        at("attributes.request.http.body"),
        Reflected::String("{}".into())
    );
    assert_eq!(
        at("attributes.request.http.raw_body"),
        Reflected::Bytes(b"raw".to_vec().into())
    );
    assert_eq!(at("attributes.request.http.size"), Reflected::I64(-1));
    assert_eq!(
        at("attributes.source.principal"),
        Reflected::String("spiffe://acme/ns/a/sa/b".into())
    );
    let Reflected::Map(headers) = at("attributes.request.http.headers") else {
        panic!("headers is a map");
    };
    assert_eq!(headers.len(), 1);

    let mut response = allowed_response(
        Some(("x-verdict-principal", "bob")),
        Some(("x-verdict-allowed-properties", String::new())),
    );
    let decoded =
        DynamicMessage::decode(check.output(), response.encode_to_vec().as_slice()).unwrap();
    let ok = decoded.get_field_by_name("ok_response").unwrap();
    let ok = ok.as_message().unwrap();
    assert_eq!(
        ok.get_field_by_name("headers_to_remove")
            .unwrap()
            .as_list()
            .unwrap()
            .len(),
        1
    );
    let option = ok.get_field_by_name("headers").unwrap().as_list().unwrap()[0].clone();
    let option = option.as_message().unwrap();
    assert_eq!(
        option
            .get_field_by_name("append_action")
            .unwrap()
            .as_enum_number(),
        Some(HeaderAppendAction::OverwriteIfExistsOrAdd as i32)
    );
    response =
        Denial::Token(TokenRefusal::Expired).response(&RequestId::from_given(Some("r1")), false);
    let decoded =
        DynamicMessage::decode(check.output(), response.encode_to_vec().as_slice()).unwrap();
    let denied = decoded.get_field_by_name("denied_response").unwrap();
    let denied = denied.as_message().unwrap();
    let status = denied.get_field_by_name("status").unwrap();
    assert_eq!(
        status
            .as_message()
            .unwrap()
            .get_field_by_name("code")
            .unwrap()
            .as_enum_number(),
        Some(401)
    );
    assert_eq!(
        decoded
            .get_field_by_name("status")
            .unwrap()
            .as_message()
            .unwrap()
            .get_field_by_name("code")
            .unwrap()
            .as_i32(),
        Some(16)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary methods, paths and headers never panic, and a request no route takes is never
    /// allowed.
    #[test]
    fn arbitrary_requests_never_panic_and_unrouted_ones_never_pass(
        method in proptest::sample::select(vec!["GET", "POST", "PATCH", "DELETE", "HEAD", "get", ""]),
        prefix in proptest::sample::select(vec!["", "/v1/documents", "/v1/admin", "/v1/profiles/bob", "/v1"]),
        tail in "(/[a-zA-Z0-9%._~{}*,-]{0,12}){0,4}(\\?[a-z=&%]{0,10})?",
        header_value in "[ -~]{0,40}",
        token in proptest::sample::select(vec!["", "bob-token", "erin-token", "forged"]),
        peer in proptest::sample::select(vec!["", "spiffe://acme/ns/search/sa/indexer"]),
        body in "[ -~]{0,40}",
    ) {
        static SERVICE: std::sync::LazyLock<ExtAuthzService> = std::sync::LazyLock::new(service);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let service = &*SERVICE;
        let served = service.snapshots.load().unwrap();
        let snapshot = &served.snapshot;
        let path = format!("{prefix}{tail}");
        let mut http = Http::new("GET", "/");
        let request = {
            let mut request = http.request();
            let attrs = request.attributes.as_mut().unwrap();
            attrs.source.as_mut().unwrap().principal = peer.to_owned();
            let h = attrs.request.as_mut().unwrap().http.as_mut().unwrap();
            h.method = method.to_owned();
            h.path.clone_from(&path);
            h.body = body;
            h.headers.insert("x-acme-mfa".to_owned(), header_value.clone());
            h.headers.insert("x-acme-scopes".to_owned(), header_value.clone());
            if !token.is_empty() {
                h.headers.insert("authorization".to_owned(), format!("Bearer {token}"));
            }
            request
        };
        http.path = "/";
        let routed = snapshot
            .route(method, &path, &|name| match name {
                "x-acme-mfa" | "x-acme-scopes" => Some(header_value.as_str()),
                _ => None,
            })
            .is_ok();
        let answer = seen(runtime.block_on(service.answer(request, None)));
        if !routed {
            proptest::prop_assert_eq!(answer.http, Some(403));
        }
        if answer.http.is_none() {
            proptest::prop_assert!(routed);
            proptest::prop_assert_eq!(answer.grpc, 0);
        } else {
            proptest::prop_assert!(answer.grpc == 7 || answer.grpc == 16);
        }
    }
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_decision_log_names_the_front_end_the_route_and_a_denied_field_but_no_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let service = service().with_decision_log(DecisionLogSettings {
        deny_rate: 1.0,
        allow_rate: 1.0,
        ..DecisionLogSettings::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let mass_assignment = Http::new("PATCH", "/v1/profiles/bob")
            .token("bob-token")
            .header("x-request-id", "log-1")
            .body(r#"{"name": "Bob", "role": "admin"}"#);
        let answer = seen(runtime.block_on(service.answer(mass_assignment.request(), Some("gw"))));
        assert_forbidden(&answer);
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("verdict::decision"), "{log}");
    for field in [
        "request_id=log-1",
        "caller=\"gw\"",
        "front_end=\"ext_authz\"",
        "route=\"PATCH /v1/profiles/{userId}\"",
        "decision=\"deny\"",
        "properties=name=allow,role=deny",
    ] {
        assert!(log.contains(field), "`{field}` not in {log}");
    }
    assert!(!log.contains("bob-token"), "{log}");
}
