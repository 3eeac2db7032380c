//! The decision library stays embeddable: `verdict-core` depends on none of the serving crates
//! (DESIGN.md, "Layout"). Checked on what Cargo resolves, not on what the source mentions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates that belong to the server, never to the library.
const SERVING_CRATES: [&str; 7] = [
    "tokio", "tonic", "hyper", "axum", "tracing", "metrics", "notify",
];

/// Returns the names of every crate `package` depends on for normal builds, directly or not
/// (`cargo tree -e normal`), itself included.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn verdict_core_depends_on_no_serving_crate() {
    let dependencies = normal_dependencies("verdict-core");
    // The tree is really there: the library's own foundations are listed.
    for expected in ["verdict-core", "cedar-policy", "serde_json"] {
        assert!(dependencies.contains(expected), "{dependencies:?}");
    }
    let serving: Vec<&str> = SERVING_CRATES
        .into_iter()
        .filter(|name| dependencies.contains(*name))
        .collect();
    assert!(
        serving.is_empty(),
        "verdict-core depends on {serving:?}; the library must stay free of serving crates"
    );
}

#[test]
fn the_check_sees_a_serving_crate_where_there_is_one() {
    // The same query on the server package lists them, so the check above can fail.
    let dependencies = normal_dependencies("verdict");
    for name in SERVING_CRATES {
        assert!(
            dependencies.contains(name),
            "{name} not in {dependencies:?}"
        );
    }
}

#[test]
fn verdict_client_depends_on_no_server_or_engine_crate() {
    // A client: tonic's channel (which needs tokio and hyper's client), nothing of the server
    // (axum, tonic's server side, telemetry, the file watcher) or of the engine.
    let dependencies = normal_dependencies("verdict-client");
    for expected in ["verdict-client", "tonic", "prost"] {
        assert!(dependencies.contains(expected), "{dependencies:?}");
    }
    let server: Vec<&str> = [
        "verdict",
        "verdict-core",
        "cedar-policy",
        "axum",
        "tonic-health",
        "tonic-reflection",
        "tracing-subscriber",
        "metrics",
        "notify",
        "tokio-postgres",
    ]
    .into_iter()
    .filter(|name| dependencies.contains(*name))
    .collect();
    assert!(
        server.is_empty(),
        "verdict-client depends on {server:?}; a client must not pull in the server"
    );
}
