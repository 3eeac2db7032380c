//! The client examples (`client/examples/check.rs`, `examples/clients/python/check.py`,
//! `examples/clients/typescript/check.ts`) against the real server: each prints what
//! `verdict check` prints for the same question on the same bundle (less the policies'
//! file:line, which only the bundle on disk knows).
//!
//! Python's grpcio and grpcio-tools 1.85.1 go into a venv under `.tools/`, the TypeScript
//! example's packages (pinned in its package.json) into its `node_modules/`, both on first use
//! and only then; if either cannot be installed the test fails and says why.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::process::Verdict;

const GRPCIO: &str = "1.85.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The questions: bob may read the roadmap, dave may not.
const QUESTIONS: [[&str; 5]; 2] = [
    ["User", "bob", "read", "Document", "roadmap"],
    ["User", "dave", "read", "Document", "roadmap"],
];
const CONTEXT: &str = r#"{"scopes": ["documents:read"]}"#;

/// Runs `command`; exit 0, or 2 (`verdict check`'s DENY), is success.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{command:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What `verdict check` prints, without the policies' locations.
fn expected(question: &[&str; 5]) -> String {
    let [principal_type, principal, action, resource_type, resource] = question;
    let printed = run(Command::new(env!("CARGO_BIN_EXE_verdict"))
        .arg("check")
        .arg("--policies")
        .arg(common::example_bundle())
        .args(["--principal", &format!("{principal_type}::\"{principal}\"")])
        .args(["--action", action])
        .args(["--resource", &format!("{resource_type}::\"{resource}\"")])
        .args(["--context", CONTEXT]));
    printed
        .lines()
        .map(|line| match line.split_once(" (") {
            Some((policy, _)) if line.contains("determining policy:") => policy.to_owned(),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Rust example's binary, built (or found up to date) by cargo with the workspace's
/// features, so it shares the test build's artifacts.
fn rust_example() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["build", "--locked", "--workspace", "--example", "check"])
        .status()
        .unwrap();
    assert!(status.success(), "building the Rust client example failed");
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/check")
}

/// A Python with grpcio and grpcio-tools, in a venv under `.tools/`.
fn python() -> PathBuf {
    let venv = root().join(format!(".tools/python-grpcio-{GRPCIO}"));
    let python = venv.join("bin/python3");
    let ready = venv.join(".installed");
    if !ready.is_file() {
        let status = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the Python client example");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("grpcio=={GRPCIO}"))
            .arg(format!("grpcio-tools=={GRPCIO}"))
            .status()
            .unwrap();
        assert!(status.success(), "pip install grpcio=={GRPCIO} failed");
        std::fs::write(&ready, GRPCIO).unwrap();
    }
    python
}

/// The TypeScript example's directory, its packages installed and its types checked.
fn typescript() -> PathBuf {
    let dir = root().join("examples/clients/typescript");
    if !dir.join("node_modules/.bin/tsx").is_file() {
        let status = Command::new("npm")
            .current_dir(&dir)
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .status()
            .expect("npm is needed for the TypeScript client example");
        assert!(status.success(), "npm install in {} failed", dir.display());
    }
    let checked = Command::new(dir.join("node_modules/.bin/tsc"))
        .current_dir(&dir)
        .args(["--noEmit", "-p", "."])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "tsc: {}",
        String::from_utf8_lossy(&checked.stdout)
    );
    dir
}

#[test]
fn the_client_examples_print_what_verdict_check_prints() {
    let verdict = Verdict::start(&common::example_bundle(), &[]);
    let grpc = verdict.grpc.to_string();
    let rust = rust_example();
    let python = python();
    let typescript = typescript();
    for question in &QUESTIONS {
        let want = expected(question);
        assert!(
            want.starts_with("ALLOW") || want.starts_with("DENY"),
            "{want}"
        );
        let got_rust = run(Command::new(&rust)
            .arg(format!("http://{grpc}"))
            .args(question)
            .arg(CONTEXT));
        assert_eq!(got_rust.trim_end(), want, "Rust client, {question:?}");
        let got_python = run(Command::new(&python)
            .arg(root().join("examples/clients/python/check.py"))
            .arg(&grpc)
            .args(question)
            .arg(CONTEXT));
        assert_eq!(got_python.trim_end(), want, "Python client, {question:?}");
        let got_typescript = run(Command::new(typescript.join("node_modules/.bin/tsx"))
            .current_dir(&typescript)
            .arg("check.ts")
            .arg(&grpc)
            .args(question)
            .arg(CONTEXT));
        assert_eq!(
            got_typescript.trim_end(),
            want,
            "TypeScript client, {question:?}"
        );
    }
    verdict.stop();
}
