//! The README's command-line examples, executed: each ```sh block running `cargo run --release
//! --` that is directly followed by a ```text block is run by `sh` in a fresh directory holding
//! a copy of the example bundle (with the built binary in place of `cargo run --release --`),
//! and what it prints (stdout and stderr) must be the text block exactly. Each ```sh block of a `grpcurl` call directly followed by a ```json
//! block is run against the example bundle served on a loopback port, and the answer must be
//! that JSON. Every snapshot version the README shows must be the example bundle's, so the
//! README cannot drift from what Verdict prints (issue 21).

use std::process::Command;

use verdict_core::{LoadOptions, Snapshot};

use crate::common;

/// A fenced block of the README: its language and its text.
struct Block {
    language: String,
    text: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// Whether only blank lines separate it from the previous block.
    follows_directly: bool,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut blank_since_last = true;
    for (index, line) in readme.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(language)) => {
                open = Some(Block {
                    language: language.trim().to_owned(),
                    text: String::new(),
                    line: index + 1,
                    follows_directly: blank_since_last,
                });
            }
            (Some(_), Some(_)) => {
                blocks.push(open.take().unwrap());
                blank_since_last = true;
            }
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {
                if !line.trim().is_empty() {
                    blank_since_last = false;
                }
            }
        }
    }
    blocks
}

fn readme() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .unwrap()
}

#[test]
fn readme_commands_print_what_the_readme_shows() {
    let readme = readme();
    let blocks = blocks(&readme);
    let mut ran = 0;
    let mut mismatches = Vec::new();
    for pair in blocks.windows(2) {
        let (command, output) = (&pair[0], &pair[1]);
        let runs_verdict = command.text.contains("cargo run --release -- ");
        if command.language != "sh" || output.language != "text" || !output.follows_directly {
            continue;
        }
        assert!(
            runs_verdict,
            "README.md:{}: a command block followed by its output must run `cargo run --release --`",
            command.line
        );
        let script = command
            .text
            .replace("cargo run --release --", "\"$VERDICT\"");
        // Each block runs in a fresh directory holding a copy of the example bundle, so an
        // example may edit files (the `broken/` copy) without touching the repository.
        let workdir = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .args(["-r", "policies"])
            .arg(workdir.path())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(copied.success());
        let printed = Command::new("sh")
            .arg("-c")
            .arg(format!("set -e\nexec 2>&1\n{script}"))
            .env("VERDICT", env!("CARGO_BIN_EXE_verdict"))
            .env_remove("VERDICT_POLICIES")
            .env_remove("RUST_LOG")
            .current_dir(workdir.path())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
        if printed != output.text {
            mismatches.push(format!(
                "README.md:{} shows\n{}but `{}` prints\n{printed}",
                output.line,
                output.text,
                command.text.trim()
            ));
        }
        ran += 1;
    }
    assert!(
        ran >= 3,
        "expected the README's command examples, ran {ran}"
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The README's grpcurl examples, run against the example bundle served on a loopback port:
/// each answer, as JSON, is the one the README shows (its formatting aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_answer_what_the_readme_shows() {
    let server = common::TestServer::start(&common::example_bundle()).await;
    let addr = server.addr.to_string();
    let grpcurl = crate::stock_clients::grpcurl().to_path_buf();
    let readme = readme();
    let blocks = blocks(&readme);
    let mut ran = 0;
    for pair in blocks.windows(2) {
        let (command, output) = (&pair[0], &pair[1]);
        if command.language != "sh"
            || !command.text.starts_with("grpcurl ")
            || output.language != "json"
            || !output.follows_directly
        {
            continue;
        }
        let script = command.text.replace("127.0.0.1:50051", &addr);
        let script = format!("\"$GRPCURL\"{}", &script["grpcurl".len()..]);
        let grpcurl = grpcurl.clone();
        let printed = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("GRPCURL", grpcurl)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            printed.status.success(),
            "README.md:{}: {}",
            command.line,
            String::from_utf8_lossy(&printed.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
        let shown: serde_json::Value = serde_json::from_str(&output.text)
            .unwrap_or_else(|e| panic!("README.md:{}: {e}", output.line));
        assert_eq!(
            got, shown,
            "README.md:{} differs from what grpcurl prints",
            output.line
        );
        ran += 1;
    }
    assert!(
        ran >= 2,
        "expected the README's grpcurl examples, ran {ran}"
    );
    server.stop().await;
}

/// The versions in the README's gRPC answers are the example bundle's as it is.
#[test]
fn readme_snapshot_versions_are_the_example_bundles() {
    let version = Snapshot::load(&common::example_bundle(), &LoadOptions::default())
        .unwrap()
        .version()
        .to_owned();
    let readme = readme();
    let mut shown = 0;
    for (index, line) in readme.lines().enumerate() {
        for marker in ["\"snapshotVersion\": \"", "snapshot: "] {
            if let Some(rest) = line.split(marker).nth(1) {
                let hash: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
                if hash.len() == 16 {
                    shown += 1;
                    assert_eq!(
                        hash,
                        version,
                        "README.md:{}: stale snapshot version",
                        index + 1
                    );
                }
            }
        }
    }
    assert!(
        shown >= 3,
        "expected the README's snapshot versions, found {shown}"
    );
}
