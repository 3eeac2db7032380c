//! The Envoy ext_authz front-end, end to end without Envoy: the real server on loopback with the
//! example bundle, called with `envoy-types`' generated tonic client (the stock client for
//! `envoy.service.auth.v3.Authorization`), as Envoy's ext_authz filter calls it.
//!
//! Tokens: the JWT verifier is configured elsewhere (docs/tokens.md); the server's own verifier
//! here has no issuer and refuses every token, so the allow/deny cases inject a fake
//! authenticator that knows a few test tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{TestServer, example_bundle, test_config};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as Attributes,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use tonic::transport::Channel;
use verdict::api::ext_authz::Authenticator;
use verdict::identity::{TokenRefusal, VerifiedPrincipal};
use verdict_core::{EntityInput, EntityRef};

/// Knows `<user>-token` for a few users, with the scopes documents need.
#[derive(Debug)]
struct FakeAuthenticator;

#[tonic::async_trait]
impl Authenticator for FakeAuthenticator {
    async fn verify(&self, token: &str) -> Result<VerifiedPrincipal, TokenRefusal> {
        let user = token
            .strip_suffix("-token")
            .filter(|user| ["bob", "carol", "erin", "frank"].contains(user))
            .ok_or(TokenRefusal::BadSignature)?;
        Ok(VerifiedPrincipal {
            entity: EntityInput {
                uid: EntityRef::new("User", user),
                attrs: serde_json::Map::new(),
                parents: Vec::new(),
            },
            scopes: vec!["documents:read".to_owned(), "documents:write".to_owned()],
            jti: None,
            issuer: "test".to_owned(),
        })
    }
}

/// One HTTP request, as Envoy describes it.
#[derive(Clone, Default)]
struct Http {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
    peer: &'static str,
}

fn http(method: &'static str, path: &'static str) -> Http {
    Http {
        method,
        path,
        ..Http::default()
    }
}

impl Http {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }

    fn peer(mut self, peer: &'static str) -> Self {
        self.peer = peer;
        self
    }

    fn request(&self) -> CheckRequest {
        let mut headers: HashMap<String, String> = self
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        headers.insert(":method".to_owned(), self.method.to_owned());
        headers.insert(":path".to_owned(), self.path.to_owned());
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
                        headers,
                        body: self.body.to_owned(),
                        size: i64::try_from(self.body.len()).unwrap(),
                        protocol: "HTTP/1.1".to_owned(),
                        ..HttpRequest::default()
                    }),
                }),
                ..AttributeContext::default()
            }),
        }
    }
}

/// An answer as Envoy would act on it.
#[derive(Debug)]
struct Answer {
    /// `None` when allowed; the HTTP status of the denial otherwise.
    denied: Option<i32>,
    grpc: i32,
    headers: HashMap<String, String>,
    removed: Vec<String>,
    body: serde_json::Value,
}

fn answer(response: CheckResponse) -> Answer {
    let grpc = response.status.map_or(-1, |s| s.code);
    let headers = |options: Vec<envoy_types::pb::envoy::config::core::v3::HeaderValueOption>| {
        options
            .into_iter()
            .map(|o| {
                let header = o.header.unwrap();
                (header.key, header.value)
            })
            .collect()
    };
    match response.http_response.expect("an http response") {
        HttpResponse::OkResponse(ok) => Answer {
            denied: None,
            grpc,
            headers: headers(ok.headers),
            removed: ok.headers_to_remove,
            body: serde_json::Value::Null,
        },
        HttpResponse::DeniedResponse(denied) => Answer {
            denied: Some(denied.status.unwrap().code),
            grpc,
            headers: headers(denied.headers),
            removed: Vec::new(),
            body: serde_json::from_str(&denied.body).unwrap(),
        },
        HttpResponse::ErrorResponse(_) => panic!("Verdict sends no error responses"),
    }
}

async fn client(server: &TestServer) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(server.channel().await)
}

async fn ask(client: &mut AuthorizationClient<Channel>, http: &Http) -> Answer {
    answer(client.check(http.request()).await.unwrap().into_inner())
}

fn assert_forbidden(answer: &Answer) {
    assert_eq!(answer.denied, Some(403), "{answer:?}");
    assert_eq!(answer.grpc, 7, "PERMISSION_DENIED: {answer:?}");
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.body["error"], "forbidden");
    assert!(answer.body["request_id"].is_string());
    assert!(answer.body.get("reason").is_none(), "{answer:?}");
}

fn assert_allowed(answer: &Answer) {
    assert_eq!(answer.denied, None, "{answer:?}");
    assert_eq!(answer.grpc, 0, "{answer:?}");
}

async fn with_fake_tokens() -> TestServer {
    TestServer::start_with_authenticator(
        test_config(&example_bundle()),
        Arc::new(FakeAuthenticator),
    )
    .await
}

#[tokio::test]
async fn requests_without_a_route_are_forbidden() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = client(&server).await;
    for request in [
        http("GET", "/v1/internal/metrics"),
        http("POST", "/v1/documents/roadmap"),
        http("GET", "/v1/documents/..%2fadmin"),
        http("GET", "/v1/documents/..%2fadmin/users"),
    ] {
        assert_forbidden(&ask(&mut client, &request).await);
        assert_forbidden(&ask(&mut client, &request.token("bob-token")).await);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_jwt_route_without_a_valid_token_is_unauthorized() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = client(&server).await;
    let missing = ask(&mut client, &http("GET", "/v1/documents/roadmap")).await;
    assert_eq!(missing.denied, Some(401), "{missing:?}");
    assert_eq!(missing.grpc, 16, "UNAUTHENTICATED");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(missing.body["error"], "unauthenticated");
    // The server's verifier has no issuer configured: every token is refused.
    let refused = ask(
        &mut client,
        &http("GET", "/v1/documents/roadmap").token("bob-token"),
    )
    .await;
    assert_eq!(refused.denied, Some(401));
    assert_eq!(
        refused.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    server.stop().await;
}

#[tokio::test]
async fn object_function_and_property_level_decisions_on_the_wire() {
    let server = with_fake_tokens().await;
    let mut client = client(&server).await;

    // Object level (BOLA): bob reads his tenant's document, not another tenant's.
    let read = ask(
        &mut client,
        &http("GET", "/v1/documents/roadmap")
            .token("bob-token")
            .header("x-request-id", "req-1"),
    )
    .await;
    assert_allowed(&read);
    assert_eq!(read.headers["x-verdict-principal"], "bob");
    let other_tenant = ask(
        &mut client,
        &http("GET", "/v1/documents/globex-plan")
            .token("bob-token")
            .header("x-request-id", "req-2"),
    )
    .await;
    assert_forbidden(&other_tenant);
    assert_eq!(other_tenant.body["request_id"], "req-2");

    // Function level (BFLA): a plain user on the admin API.
    assert_forbidden(
        &ask(
            &mut client,
            &http("GET", "/v1/admin/users").token("bob-token"),
        )
        .await,
    );
    assert_allowed(
        &ask(
            &mut client,
            &http("GET", "/v1/admin/users").token("erin-token"),
        )
        .await,
    );

    // Property level (mass assignment): a privileged field denies the write.
    let update = http("PATCH", "/v1/profiles/bob").token("bob-token");
    let privileged = ask(
        &mut client,
        &update.clone().body(r#"{"name": "Bob", "role": "admin"}"#),
    )
    .await;
    assert_forbidden(&privileged);
    assert!(!privileged.body.to_string().contains("role"));
    assert_allowed(&ask(&mut client, &update.clone().body(r#"{"name": "Bob"}"#)).await);
    assert_forbidden(&ask(&mut client, &update.body("name=Bob")).await);

    // A read sends the allowed fields upstream; support sees no ssn.
    let support = ask(
        &mut client,
        &http("GET", "/v1/profiles/bob").token("carol-token"),
    )
    .await;
    assert_allowed(&support);
    assert_eq!(
        support.headers["x-verdict-allowed-properties"],
        "name,email,plan,role"
    );
    assert_eq!(support.headers["x-verdict-principal"], "carol");
    server.stop().await;
}

#[tokio::test]
async fn a_forged_upstream_header_is_replaced_by_the_verified_one() {
    let server = with_fake_tokens().await;
    let mut client = client(&server).await;
    let forged = http("GET", "/v1/documents/roadmap")
        .token("bob-token")
        .header("x-verdict-principal", "erin");
    let response = client.check(forged.request()).await.unwrap().into_inner();
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("allowed: {response:?}");
    };
    let option = ok
        .headers
        .iter()
        .find(|o| o.header.as_ref().unwrap().key == "x-verdict-principal")
        .unwrap();
    assert_eq!(option.header.as_ref().unwrap().value, "bob");
    // OVERWRITE_IF_EXISTS_OR_ADD: Envoy replaces every copy the client sent.
    assert_eq!(option.append_action, 2);
    assert!(ok.headers_to_remove.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_mtls_route_takes_the_peer_as_the_principal() {
    let server = TestServer::start(&example_bundle()).await;
    let mut client = client(&server).await;
    let reindex = http("POST", "/v1/admin/reindex");
    let indexer = ask(
        &mut client,
        &reindex.clone().peer("spiffe://acme/ns/search/sa/indexer"),
    )
    .await;
    assert_allowed(&indexer);
    assert_eq!(
        indexer.headers["x-verdict-principal"],
        "spiffe://acme/ns/search/sa/indexer"
    );
    assert_forbidden(
        &ask(
            &mut client,
            &reindex.clone().peer("spiffe://acme/ns/web/sa/frontend"),
        )
        .await,
    );
    let anonymous = ask(&mut client, &reindex).await;
    assert_eq!(anonymous.denied, Some(401), "{anonymous:?}");
    assert!(indexer.removed.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn without_a_snapshot_everything_is_forbidden_and_health_says_not_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut config = test_config(Path::new("/nonexistent/verdict-bundle"));
    config.start_without_bundle = true;
    let server = TestServer::start_with(config).await;
    let mut client = client(&server).await;
    assert_forbidden(&ask(&mut client, &http("GET", "/v1/documents/roadmap")).await);
    let answer = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, ServingStatus::NotServing as i32);
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_list_the_ext_authz_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(&example_bundle()).await;
    let answer = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("envoy.service.auth.v3.Authorization".to_owned()),
        MessageRequest::FileByFilename("envoy/service/auth/v3/attribute_context.proto".to_owned()),
    ];
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(requests.map(|message| {
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(message),
            }
        })))
        .await
        .unwrap()
        .into_inner();
    match stream.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            assert!(
                names
                    .iter()
                    .any(|n| n == "envoy.service.auth.v3.Authorization"),
                "{names:?}"
            );
            assert!(names.iter().any(|n| n == "verdict.v1.Authorization"));
        }
        other => panic!("unexpected {other:?}"),
    }
    for _ in 0..2 {
        match stream.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                assert_eq!(files.file_descriptor_proto.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}
