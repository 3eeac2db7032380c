//! TLS and mTLS on the gRPC port, with a test CA made in the test (rcgen).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{Ca, Leaf, write};
use common::{ALLOW, TestServer, check, example_bundle, test_config};
use serde_json::json;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use verdict::api::proto::{self, authorization_client::AuthorizationClient};
use verdict::config::{TlsFiles, ValidConfig};

const GATEWAY: &str = "spiffe://test.local/ns/gateways/sa/edge";
const OTHER: &str = "spiffe://test.local/ns/batch/sa/report";
const OPS: &str = "spiffe://test.local/ns/ops/sa/admin";

fn read() -> proto::CheckRequest {
    check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["documents:read"]}),
    )
}

fn tls_config(dir: &Path, ca: &Ca, server: &Leaf, client_ca: Option<&Ca>) -> ValidConfig {
    let paths = write(dir, &[("tls.crt", &server.cert), ("tls.key", &server.key)]);
    let client_ca = client_ca.map(|ca| write(dir, &[("ca.crt", &ca.pem())]).remove(0));
    let _ = ca;
    let mut config = test_config(&example_bundle());
    config.tls.files = Some(TlsFiles {
        cert: paths[0].clone(),
        key: paths[1].clone(),
        client_ca,
    });
    config
}

async fn connect(
    server: &TestServer,
    ca: &Ca,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

#[tokio::test]
async fn tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server = TestServer::start_with(tls_config(dir.path(), &ca, &ca.server(), None)).await;
    let channel = connect(&server, &ca, None).await.unwrap();
    let answer = AuthorizationClient::new(channel)
        .check(read())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, ALLOW);

    // A plaintext client does not get an answer.
    let plaintext = server.client().await.check(read()).await;
    assert!(plaintext.is_err());

    // A client that does not trust the CA refuses the server.
    let stranger = Ca::new("Other CA");
    assert!(connect(&server, &stranger, None).await.is_err());
    server.stop().await;
}

async fn mtls_server(dir: &Path, ca: &Ca) -> TestServer {
    let mut config = tls_config(dir, ca, &ca.server(), Some(ca));
    config.tls.allowed_clients = vec!["spiffe://test.local/ns/gateways/*".to_owned()];
    config.tls.admin_clients = vec![OPS.to_owned()];
    config.reload.enable_rpc = true;
    config.reload.watch = false;
    config.reload.poll_interval = None;
    TestServer::start_with(config).await
}

#[tokio::test]
async fn mtls_refuses_clients_without_an_allowed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server = mtls_server(dir.path(), &ca).await;

    // No client certificate, or one from another CA: refused by the TLS layer, before any
    // allow-list is consulted (so never PERMISSION_DENIED).
    assert_refused_at_handshake(&server, &ca, None).await;
    let stranger = Ca::new("Other CA").client(GATEWAY);
    assert_refused_at_handshake(&server, &ca, Some(&stranger)).await;
    // The right CA, an identity not on the list: PERMISSION_DENIED.
    let other = connect(&server, &ca, Some(&ca.client(OTHER)))
        .await
        .unwrap();
    let status = AuthorizationClient::new(other)
        .check(read())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains(OTHER), "{}", status.message());

    // An allowed identity gets decisions, but not the admin RPC.
    let gateway = connect(&server, &ca, Some(&ca.client(GATEWAY)))
        .await
        .unwrap();
    let mut client = AuthorizationClient::new(gateway);
    assert_eq!(
        client.check(read()).await.unwrap().into_inner().decision,
        ALLOW
    );
    let status = client.reload(proto::ReloadRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The admin identity may reload, and ask for decisions and status too.
    let ops = connect(&server, &ca, Some(&ca.client(OPS))).await.unwrap();
    let mut ops = AuthorizationClient::new(ops);
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
    ops.status(proto::StatusRequest {}).await.unwrap();
    server.stop().await;
}

/// The handshake (or, with TLS 1.3, the first call) fails without reaching the allow-lists.
async fn assert_refused_at_handshake(server: &TestServer, ca: &Ca, identity: Option<&Leaf>) {
    if let Ok(channel) = connect(server, ca, identity).await {
        let status = AuthorizationClient::new(channel)
            .check(read())
            .await
            .unwrap_err();
        assert_ne!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_ne!(status.code(), Code::Ok);
    }
}

/// Without an allow-list, any certificate the CA signed gets decisions; others are still
/// refused at the handshake.
#[tokio::test]
async fn mtls_without_an_allow_list_admits_any_verified_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server = TestServer::start_with(tls_config(dir.path(), &ca, &ca.server(), Some(&ca))).await;
    for identity in [GATEWAY, OTHER] {
        let channel = connect(&server, &ca, Some(&ca.client(identity)))
            .await
            .unwrap();
        assert_eq!(
            AuthorizationClient::new(channel)
                .check(read())
                .await
                .unwrap()
                .into_inner()
                .decision,
            ALLOW
        );
    }
    assert_refused_at_handshake(&server, &ca, None).await;
    assert_refused_at_handshake(&server, &ca, Some(&Ca::new("Other CA").client(GATEWAY))).await;
    server.stop().await;
}

/// Performs a TLS handshake with the server and returns the certificate it presented.
async fn presented_certificate(server: &TestServer, ca: &Ca) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Writes generation `n` of a Secret holding `leaf` into `dir` the way kubelet does: a new
/// timestamped directory, then an atomic swap of the `..data` symlink that `tls.crt` and
/// `tls.key` point through (created with the first generation).
fn mount_generation(dir: &Path, n: u32, leaf: &Leaf) {
    let real = dir.join(format!("..2026_01_01_00_00_0{n}"));
    std::fs::create_dir(&real).unwrap();
    write(&real, &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)]);
    let link = dir.join("..data_tmp");
    std::os::unix::fs::symlink(real.file_name().unwrap(), &link).unwrap();
    std::fs::rename(&link, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), path).unwrap();
        }
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    // Mounted like a Kubernetes Secret: files through a `..data` symlink that is swapped.
    let first = ca.server();
    let generation = |n: u32, leaf: &Leaf| mount_generation(dir.path(), n, leaf);
    generation(1, &first);
    let mut config = test_config(&example_bundle());
    config.tls.files = Some(TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        client_ca: None,
    });
    let server = TestServer::start_with(config).await;
    let before = presented_certificate(&server, &ca).await;
    let endpoint = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.pem()))
                .domain_name("localhost"),
        )
        .unwrap();
    let (established, dials) = server.counting_channel(endpoint).await;
    let mut client = AuthorizationClient::new(established);
    assert_eq!(
        client.check(read()).await.unwrap().into_inner().decision,
        ALLOW
    );

    let second = ca.server();
    generation(2, &second);
    let started = Instant::now();
    loop {
        let now = presented_certificate(&server, &ca).await;
        if now != before {
            let expected =
                rustls::pki_types::pem::PemObject::from_pem_slice(second.cert.as_bytes())
                    .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
                    .unwrap();
            assert_eq!(now, expected, "a certificate other than the rotated one");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the rotation still works: the same one, not a reconnect.
    assert_eq!(
        client.check(read()).await.unwrap().into_inner().decision,
        ALLOW
    );
    assert_eq!(dials.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.stop().await;
}

/// The value of an unlabelled sample, or of the one with `labels`, in a /metrics page.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name_and_labels)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Against the real binary: the certificate's expiry is exported, a rotation to files that do
/// not load is counted and keeps the previous certificate serving, and a good one replaces it.
#[test]
fn tls_rotations_are_measured_and_a_broken_one_keeps_the_old_certificate() {
    use common::process::{Verdict, http_get};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let generation = |n: u32, leaf: &Leaf| mount_generation(dir.path(), n, leaf);
    generation(1, &ca.server_until(2030));
    let cert = dir.path().join("tls.crt").display().to_string();
    let key = dir.path().join("tls.key").display().to_string();
    let verdict = Verdict::start(&example_bundle(), &["--tls-cert", &cert, "--tls-key", &key]);
    const EXPIRY: &str = "verdict_tls_certificate_expiry_timestamp_seconds";
    const FAILED: &str = "verdict_tls_reloads_total{result=\"failed\"}";
    const UPDATED: &str = "verdict_tls_reloads_total{result=\"updated\"}";
    let metrics = || http_get(verdict.metrics, "/metrics").1;
    let first = metrics();
    assert_eq!(sample(&first, EXPIRY), Some(1_893_456_000.0), "{first}");
    assert_eq!(sample(&first, FAILED), Some(0.0), "{first}");
    assert_eq!(sample(&first, UPDATED), Some(0.0), "{first}");

    // Wait until a predicate holds on /metrics, within the reload interval's reach.
    let wait_for = |what: &str, holds: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        loop {
            let page = metrics();
            if holds(&page) {
                return page;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what} never showed:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A key that does not match the certificate: counted as failed, the 2030 one keeps serving.
    let other = ca.server_until(2031);
    let mismatched = Leaf {
        cert: other.cert,
        key: ca.server().key,
    };
    generation(2, &mismatched);
    let page = wait_for("the failed rotation", &|page| {
        sample(page, FAILED) == Some(1.0)
    });
    assert_eq!(sample(&page, EXPIRY), Some(1_893_456_000.0));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let served = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", verdict.grpc))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .domain_name("localhost")
                    .ca_certificate(Certificate::from_pem(ca.pem())),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuthorizationClient::new(channel)
            .check(read())
            .await
            .unwrap()
            .into_inner()
            .decision
    });
    assert_eq!(served, ALLOW, "the previous certificate stopped serving");
    // A good one replaces it.
    generation(3, &ca.server_until(2031));
    let page = wait_for("the rotation", &|page| sample(page, UPDATED) == Some(1.0));
    assert_eq!(sample(&page, EXPIRY), Some(1_924_992_000.0));
    assert_eq!(sample(&page, FAILED), Some(1.0));
    let logs = verdict.stop().join("\n");
    assert!(
        logs.contains("TLS files changed but do not load"),
        "the failed rotation was not logged:\n{logs}"
    );
}

/// With client certificates, the admin identity sees the last load error's details in
/// `Status`; a decision-only identity gets the generic message.
#[tokio::test]
async fn status_details_follow_the_certificate_role() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, bundle.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let ca = Ca::new("Test CA");
    let mut config = tls_config(dir.path(), &ca, &ca.server(), Some(&ca));
    config.policies = bundle.path().to_path_buf();
    config.tls.allowed_clients = vec![GATEWAY.to_owned()];
    config.tls.admin_clients = vec![OPS.to_owned()];
    config.reload.enable_rpc = true;
    config.reload.watch = false;
    config.reload.poll_interval = None;
    let server = TestServer::start_with(config).await;
    std::fs::write(bundle.path().join("broken.tuples"), "Doc::\"x\"#viewer@\n").unwrap();
    let ops = connect(&server, &ca, Some(&ca.client(OPS))).await.unwrap();
    let mut ops = AuthorizationClient::new(ops);
    let reloaded = ops
        .reload(proto::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!reloaded.errors.is_empty());
    let details = |status: proto::StatusResponse| status.last_load_error.unwrap().message;
    let admin = details(
        ops.status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(admin.contains("broken.tuples:1:"), "{admin}");
    let gateway = connect(&server, &ca, Some(&ca.client(GATEWAY)))
        .await
        .unwrap();
    let other = details(
        AuthorizationClient::new(gateway)
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(!other.contains("broken.tuples"), "{other}");
    server.stop().await;
}

/// Connections that never start their handshake hold at most 64 slots per address: the next
/// one from that address is closed at once, and the server serves again once they go.
#[tokio::test]
async fn stalled_handshakes_from_one_address_are_capped() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server = TestServer::start_with(tls_config(dir.path(), &ca, &ca.server(), None)).await;
    let mut stalled = Vec::new();
    for _ in 0..64 {
        stalled.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the accept loop take all of them before the next one arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), over.read(&mut buffer))
        .await
        .expect("the connection over the cap was held open instead of closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(stalled);
    let started = Instant::now();
    loop {
        if let Ok(channel) = connect(&server, &ca, None).await
            && let Ok(answer) = AuthorizationClient::new(channel).check(read()).await
        {
            assert_eq!(answer.into_inner().decision, ALLOW);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never served again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}
