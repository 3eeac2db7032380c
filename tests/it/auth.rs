//! Preshared API keys through the real server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{ALLOW, TestServer, check, example_bundle, test_config};
use serde_json::json;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use verdict::api::proto::{self, authorization_client::AuthorizationClient};
use verdict::config::{KeyRing, ValidConfig};

const GATEWAY_OLD: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const GATEWAY_NEW: &str = "f00dbabef00dbabef00dbabef00dbabef00dbabef00dbabef00dbabef00dbabe";
const OPS: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de";

fn keys() -> Arc<KeyRing> {
    Arc::new(
        KeyRing::parse(
            &format!(
                "gateway-old check {GATEWAY_OLD}\ngateway-new check {GATEWAY_NEW}\nops admin {OPS}\n"
            ),
            "test",
        )
        .unwrap(),
    )
}

fn config_with_keys() -> ValidConfig {
    let mut config = test_config(&example_bundle());
    config.caller_auth.api_keys = keys();
    config.reload.enable_rpc = true;
    config.reload.watch = false;
    config.reload.poll_interval = None;
    config
}

type AddKey =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Client = AuthorizationClient<InterceptedService<Channel, AddKey>>;

fn client(channel: Channel, authorization: Option<String>) -> Client {
    let interceptor: AddKey = Box::new(move |mut request: tonic::Request<()>| {
        if let Some(value) = &authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        Ok(request)
    });
    AuthorizationClient::with_interceptor(channel, interceptor)
}

fn read() -> proto::CheckRequest {
    check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["documents:read"]}),
    )
}

#[tokio::test]
async fn missing_wrong_and_short_keys_are_unauthenticated() {
    let server = TestServer::start_with(config_with_keys()).await;
    let channel = server.channel().await;
    let wrong_same_length = format!("Bearer {}", "a".repeat(GATEWAY_OLD.len()));
    for authorization in [
        None,
        Some(wrong_same_length),
        Some("Bearer short".to_owned()),
        Some(format!("Basic {GATEWAY_OLD}")),
        Some(format!("Bearer {GATEWAY_OLD}x")),
    ] {
        let status = client(channel.clone(), authorization.clone())
            .check(read())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{authorization:?}");
        assert!(!status.message().contains(GATEWAY_OLD));
    }
    server.stop().await;
}

#[tokio::test]
async fn two_keys_are_valid_at_once_for_rotation_and_roles_are_enforced() {
    let server = TestServer::start_with(config_with_keys()).await;
    let channel = server.channel().await;
    for key in [GATEWAY_OLD, GATEWAY_NEW] {
        let mut gateway = client(channel.clone(), Some(format!("Bearer {key}")));
        assert_eq!(
            gateway.check(read()).await.unwrap().into_inner().decision,
            ALLOW
        );
        gateway.status(proto::StatusRequest {}).await.unwrap();
        let status = gateway.reload(proto::ReloadRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("gateway-"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("needs an admin key"));
    }
    let mut ops = client(channel.clone(), Some(format!("Bearer {OPS}")));
    let reloaded = ops
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(reloaded.errors.is_empty());
    assert_eq!(
        ops.check(read()).await.unwrap().into_inner().decision,
        ALLOW
    );
    server.stop().await;
}

/// Lists the services over gRPC reflection (v1), without credentials.
async fn list_services(channel: Channel) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.message().await?.expect("a reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open_unless_configured() {
    let server = TestServer::start_with(config_with_keys()).await;
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let services = list_services(server.channel().await).await.unwrap();
    assert!(
        services.iter().any(|s| s == "verdict.v1.Authorization"),
        "{services:?}"
    );
    server.stop().await;

    let mut config = config_with_keys();
    config.caller_auth.open_health = false;
    config.caller_auth.open_reflection = false;
    let server = TestServer::start_with(config).await;
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = list_services(server.channel().await).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

#[test]
fn key_text_never_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(
        &keys_file,
        format!("gateway check {GATEWAY_NEW}\nops admin {OPS}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
            "--log-format",
            "json",
            "--decision-log-allow-rate",
            "1",
            "--enable-reload-rpc",
        ])
        .arg("--policies")
        .arg(example_bundle())
        .arg("--api-keys-file")
        .arg(&keys_file)
        .env("VERDICT_LOG", "debug,h2=info,hyper=info,tower=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("no address");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        lines.push(line);
        if parsed["message"] == "grpc listening" {
            break parsed["addr"].as_str().unwrap().to_owned();
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut good = client(channel.clone(), Some(format!("Bearer {GATEWAY_NEW}")));
        good.check(read()).await.unwrap();
        good.reload(proto::ReloadRequest {}).await.unwrap_err();
        // A near miss: the wrong key must not be logged either.
        let mut bad = client(channel, Some(format!("Bearer {}", OPS.replace('0', "1"))));
        bad.check(read()).await.unwrap_err();
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    let everything = lines.join("\n");
    for secret in [GATEWAY_NEW, OPS, &OPS.replace('0', "1")] {
        assert!(!everything.contains(secret), "a key leaked into the log");
        assert!(
            !everything.contains(&secret[..16]),
            "part of a key leaked into the log"
        );
    }
    let decision = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "verdict::decision")
        .expect("no decision record");
    assert_eq!(decision["caller"], "gateway");
    assert!(everything.contains("API key without admin rights"));
    assert!(everything.contains("request without a valid API key"));
}

/// The last load error quotes the bundle: `Status` shows it to admin keys only.
#[tokio::test]
async fn status_shows_load_error_details_to_admin_keys_only() {
    let bundle = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, bundle.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut config = config_with_keys();
    config.policies = bundle.path().to_path_buf();
    let server = TestServer::start_with(config).await;
    std::fs::write(
        bundle.path().join("broken.tuples"),
        "Document::\"secret-plan\"#viewer@\n",
    )
    .unwrap();
    let channel = server.channel().await;
    let mut ops = client(channel.clone(), Some(format!("Bearer {OPS}")));
    let reloaded = ops
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!reloaded.errors.is_empty());
    let admin_view = ops
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_load_error
        .unwrap();
    assert!(
        admin_view.message.contains("broken.tuples:1:"),
        "{}",
        admin_view.message
    );
    let mut gateway = client(channel, Some(format!("Bearer {GATEWAY_NEW}")));
    let status = gateway
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let gateway_view = status.last_load_error.unwrap();
    assert!(gateway_view.at.is_some());
    assert!(
        !gateway_view.message.contains("broken.tuples") && gateway_view.message.contains("admin"),
        "{}",
        gateway_view.message
    );
    // The previous snapshot keeps serving.
    assert!(!status.snapshot_version.is_empty());
    server.stop().await;
}
