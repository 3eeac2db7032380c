//! `verdict serve --config FILE`: the file's settings apply, flags win over it, and every
//! mistake in it is a usage error naming the file and line, through the real binary.

use crate::common;

use std::process::Command;

use common::process::Verdict;
use verdict::api::proto;

fn serve_with_config(config: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdict.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--policies"])
        .arg(common::example_bundle())
        .args(extra)
        .env_remove("VERDICT_CONFIG")
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&*path.to_string_lossy(), "verdict.yaml");
    (output.status.code(), stderr)
}

#[test]
fn mistakes_in_the_file_are_usage_errors_with_file_and_line() {
    for (config, message) in [
        (
            "log-format: json\ngrpc-adr: 127.0.0.1:1\n",
            "verdict.yaml:2: unknown setting `grpc-adr` (did you mean `grpc-addr`?)",
        ),
        (
            "\nmax-batch: lots\n",
            "verdict.yaml:2: invalid value 'lots' for '--max-batch",
        ),
        (
            "otlp-endpoint: http://127.0.0.1:4317\notlp-sample-ratio: 2\n",
            "verdict.yaml:2: --otlp-sample-ratio (VERDICT_OTLP_SAMPLE_RATIO): 2 is not between 0 and 1",
        ),
        (
            "max-relation-depth: 0\n",
            "verdict.yaml:1: --max-relation-depth (VERDICT_MAX_RELATION_DEPTH)",
        ),
        ("grpc-addr: [1\n", "verdict.yaml:"),
    ] {
        let (code, stderr) = serve_with_config(config, &[]);
        assert_eq!(code, Some(64), "{config}: {stderr}");
        assert!(
            stderr.contains(message),
            "{config}: want `{message}` in:\n{stderr}"
        );
    }
    let (code, stderr) = {
        let output = Command::new(env!("CARGO_BIN_EXE_verdict"))
            .args(["serve", "--config", "/nonexistent/verdict.yaml"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("/nonexistent/verdict.yaml: cannot read it"),
        "{stderr}"
    );
}

/// The file's `max-batch: 2` applies (a batch of 3 is refused) while the harness's
/// `--grpc-addr 127.0.0.1:0` on the command line wins over the file's unusable address.
#[test]
fn the_files_settings_apply_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdict.yaml");
    std::fs::write(
        &path,
        "# the example bundle, batches of two at most\ngrpc-addr: 192.0.2.1:1\nmax-batch: 2\nwatch: false\n",
    )
    .unwrap();
    let verdict = Verdict::start(
        &common::example_bundle(),
        &["--config", path.to_str().unwrap()],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = verdict.client(&runtime);
    let read = || {
        common::check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            serde_json::json!({"scopes": ["documents:read"]}),
        )
    };
    runtime.block_on(async {
        let two = client
            .batch_check(proto::BatchCheckRequest {
                checks: vec![read(), read()],
                consistency: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(two.results.len(), 2);
        let three = client
            .batch_check(proto::BatchCheckRequest {
                checks: vec![read(), read(), read()],
                consistency: None,
            })
            .await
            .unwrap_err();
        assert_eq!(three.code(), tonic::Code::InvalidArgument, "{three:?}");
    });
    verdict.stop();
}
