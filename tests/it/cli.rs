//! The `verdict` binary as a user runs it: exit codes, messages, environment variables.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn verdict() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verdict"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in [
        "VERDICT_POLICIES",
        "VERDICT_GRPC_ADDR",
        "VERDICT_LOG",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    verdict().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies the example bundle (without its tests) into a fresh directory.
fn copy_of_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::example_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn validate_accepts_the_example_and_rejects_a_broken_copy_with_file_and_line() {
    let ok = run(&["validate", "policies"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).starts_with("policies: valid: "),
        "{}",
        text(&ok.stdout)
    );

    let broken = copy_of_example();
    let tuples = broken.path().join("teams.tuples");
    let mut content = std::fs::read_to_string(&tuples).unwrap();
    content.push_str("Team::\"eng\"#member User::\"eve\"\n");
    std::fs::write(&tuples, content).unwrap();
    std::fs::write(
        broken.path().join("extra.cedar"),
        "permit (principal, action, resource) when { resource.nope };\n",
    )
    .unwrap();
    let out = run(&["validate", broken.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let root = broken.path().display();
    assert!(
        stderr.contains(&format!(
            "{root}/teams.tuples:12:19: expected `@` after the relation"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{root}/extra.cedar:1:")),
        "{stderr}"
    );
    assert!(stderr.contains("invalid: 5 error(s)"), "{stderr}");
}

#[test]
fn test_runs_the_bundle_cases_and_fails_on_a_mismatch() {
    let ok = run(&["test", "policies"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    let stdout = text(&ok.stdout);
    let summary = stdout.lines().last().unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("mismatch.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: bob is no admin\n    request: {principal: User::\"bob\", action: DeleteUser, resource: Api::\"admin\"}\n    expect: {decision: allow}\n",
    )
    .unwrap();
    let out = run(&["test", "policies", "--cases", cases.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "FAIL {}:2: bob is no admin: expected allow; got deny",
            cases.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");

    let broken = copy_of_example();
    std::fs::write(
        broken.path().join("bad.cedar"),
        "permit (principal, action, resource)",
    )
    .unwrap();
    let out = run(&[
        "test",
        broken.path().to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("bad.cedar:1:37:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_exit_codes_say_allow_deny_or_bad_request() {
    let allow = run(&[
        "check",
        "--principal",
        "User::\"bob\"",
        "--action",
        "read",
        "--resource",
        "Document::\"roadmap\"",
        "--context",
        r#"{"scopes": ["documents:read"]}"#,
    ]);
    assert_eq!(allow.status.code(), Some(0), "{}", text(&allow.stderr));
    let stdout = text(&allow.stdout);
    assert!(stdout.starts_with("ALLOW\n"), "{stdout}");
    assert!(
        stdout.contains("document-read (./policies/documents.cedar:"),
        "{stdout}"
    );

    let deny = run(&[
        "check",
        "--principal",
        "User::\"dave\"",
        "--action",
        "DeleteUser",
        "--resource",
        "Api::\"admin\"",
        "--json",
    ]);
    assert_eq!(deny.status.code(), Some(2));
    let answer: serde_json::Value = serde_json::from_slice(&deny.stdout).unwrap();
    assert_eq!(answer["decision"], "deny");
    assert_eq!(answer["determining_policies"], json!([]));

    let not_an_object = run(&[
        "check",
        "--principal",
        "User::\"bob\"",
        "--action",
        "read",
        "--resource",
        "Document::\"roadmap\"",
        "--context",
        "[1, 2]",
    ]);
    assert_eq!(not_an_object.status.code(), Some(64));
    assert!(
        text(&not_an_object.stderr).contains("invalid request"),
        "{}",
        text(&not_an_object.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        json!({
            "principal": "User::\"carol\"",
            "action": "readProfile",
            "resource": {"type": "User", "id": "bob"},
            "properties": ["email", "ssn"],
        })
        .to_string(),
    )
    .unwrap();
    let out = run(&["check", "--request", request.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["properties"][0]["decision"], "allow");
    assert_eq!(answer["properties"][1]["decision"], "deny");

    let usage = run(&["check", "--principal", "User::\"bob\""]);
    assert_eq!(usage.status.code(), Some(64));
}

#[test]
fn serve_refuses_an_invalid_bundle_or_config_with_a_readable_message() {
    let broken = copy_of_example();
    std::fs::write(
        broken.path().join("oops.tuples"),
        "\n\nDocument::\"x\"#viewer@\n",
    )
    .unwrap();
    let out = verdict()
        .args(["serve", "--grpc-addr", "127.0.0.1:0"])
        .env("VERDICT_POLICIES", broken.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is invalid, not serving"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}/oops.tuples:3:22: expected subject type",
            broken.path().display()
        )),
        "{stderr}"
    );

    let out = verdict()
        .args(["serve"])
        .env("VERDICT_GRPC_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains(
            "--grpc-addr (VERDICT_GRPC_ADDR): `not-an-address` is not an ip:port address"
        )
    );

    // TLS files that are missing or not PEM stop `serve` before it listens, naming the file.
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("tls.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing_key = dir.path().join("tls.key");
    let good = dir.path().join("good.crt");
    std::fs::write(&good, common::pki::Ca::new("CA").server().cert).unwrap();
    for (cert, key, expected) in [
        (
            &garbage,
            &garbage,
            format!("{}: no certificate", garbage.display()),
        ),
        (
            &good,
            &missing_key,
            format!("{}: cannot read a PEM private key", missing_key.display()),
        ),
    ] {
        let out = verdict()
            .args(["serve", "--grpc-addr", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&expected),
            "{}",
            text(&out.stderr)
        );
    }
    let out = verdict()
        .args(["serve", "--grpc-addr", "127.0.0.1:0"])
        .env("VERDICT_TLS_KEY", &missing_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("--tls-cert (VERDICT_TLS_CERT): --tls-key is set"),
        "{}",
        text(&out.stderr)
    );
}

/// Reads the child's stderr until the "grpc listening" line and returns the address.
fn wait_for_listening(child: &mut std::process::Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line
                .split("addr=")
                .nth(1)
                .filter(|_| line.contains("grpc listening"))
            {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("server did not report its address")
}

#[test]
fn serve_reads_its_settings_from_the_environment_and_stops_cleanly_on_sigterm() {
    let mut child = verdict()
        .env(
            "VERDICT_POLICIES",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        )
        .env("VERDICT_GRPC_ADDR", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_for_listening(&mut child);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let decision = runtime.block_on(async {
        let mut client = verdict::api::proto::authorization_client::AuthorizationClient::connect(
            format!("http://{addr}"),
        )
        .await
        .unwrap();
        client
            .check(common::check(
                ("User", "bob"),
                "read",
                ("Document", "roadmap"),
                json!({"scopes": ["documents:read"]}),
            ))
            .await
            .unwrap()
            .into_inner()
            .decision
    });
    assert_eq!(decision, common::ALLOW);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_reloads_the_bundle_when_watching_is_off() {
    let bundle = copy_of_example();
    let mut child = verdict()
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--watch",
            "false",
            "--poll-interval",
            "0",
        ])
        .arg("--policies")
        .arg(bundle.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_for_listening(&mut child);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = runtime
        .block_on(
            verdict::api::proto::authorization_client::AuthorizationClient::connect(format!(
                "http://{addr}"
            )),
        )
        .unwrap();
    let dave_reads =
        |client: &mut verdict::api::proto::authorization_client::AuthorizationClient<
            tonic::transport::Channel,
        >| {
            runtime.block_on(async {
                client
                    .check(common::check(
                        ("User", "dave"),
                        "read",
                        ("Document", "roadmap"),
                        json!({"scopes": ["documents:read"]}),
                    ))
                    .await
                    .unwrap()
                    .into_inner()
            })
        };
    let before = dave_reads(&mut client);
    assert_eq!(before.decision, common::DENY);

    let tuples = bundle.path().join("documents.tuples");
    let mut content = std::fs::read_to_string(&tuples).unwrap();
    content.push_str("Document::\"roadmap\"#viewer@User::\"dave\"\n");
    std::fs::write(&tuples, content).unwrap();
    let killed = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let started = Instant::now();
    let after = loop {
        let answer = dave_reads(&mut client);
        if answer.snapshot_version != before.snapshot_version {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "SIGHUP did not reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after.decision, common::ALLOW);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn startup_logs_count_the_api_keys_and_never_show_one() {
    let inline = "0123456789abcdef0123456789abcdef";
    let in_file = "fedcba9876543210fedcba9876543210";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.txt");
    std::fs::write(&file, format!("ops admin {in_file}\n")).unwrap();
    let verdict = common::process::Verdict::start(
        &common::example_bundle(),
        &[
            "--api-keys",
            &format!("gw check {inline}"),
            "--api-keys-file",
            file.to_str().unwrap(),
        ],
    );
    let lines = verdict.stop();
    let startup = lines.iter().find(|line| line.contains("starting verdict"));
    assert!(startup.is_some(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("API keys required") && line.contains("keys=2")),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains(inline) && !line.contains(in_file), "{line}");
    }
}

/// Runs `verdict validate` with `args` and returns its output, failing the test if it has
/// not exited after a generous while: a FIFO or `/dev/zero` used to hang it for good, so the
/// bound only tells "returns" from "hangs", it does not time anything.
fn validate_without_hanging(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = verdict()
        .arg("validate")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`verdict validate {args:?}` hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// A hostile entry for `validate`: its name, how to create it, extra flags, and the error.
type HostileCase<'a> = (&'a str, &'a dyn Fn(&Path), &'a [&'a str], String);

/// Issue 15, finding 2: `verdict validate` returns at once on a bundle with a FIFO, a symlink
/// to a device, a symlink out of the bundle, or a file over `--max-bundle-file-bytes`, and
/// names the file and the problem.
#[test]
fn validate_refuses_fifos_devices_links_out_and_oversized_files_without_hanging() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\n",
    )
    .unwrap();
    let link_out = "is a symlink that leads out of the bundle directory; only symlinks that resolve inside it are followed";
    let cases: [HostileCase<'_>; 4] = [
        (
            "pipe.tuples",
            &|path| {
                let made = Command::new("mkfifo").arg(path).status().unwrap();
                assert!(made.success());
            },
            &[],
            "is a FIFO; a bundle file must be a regular file".to_owned(),
        ),
        (
            "zero.tuples",
            &|path| std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            &[],
            link_out.to_owned(),
        ),
        (
            "passwd.tuples",
            &|path| std::os::unix::fs::symlink(outside.path().join("passwd"), path).unwrap(),
            &[],
            link_out.to_owned(),
        ),
        (
            "big.tuples",
            &|path| std::fs::write(path, "x".repeat(5_000)).unwrap(),
            &["--max-bundle-file-bytes", "4096"],
            "the file is 5000 bytes, over the limit of 4096 bytes per file".to_owned(),
        ),
    ];
    for (name, create, extra, reason) in cases {
        let bundle = copy_of_example();
        let path = bundle.path().join(name);
        create(&path);
        let mut args = vec![bundle.path().as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let (code, stderr) = validate_without_hanging(&args);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: {reason}", path.display())),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("root:x"), "{stderr}");
    }
}

/// Issue 15, finding 5: an empty bundle is reported by `validate` (exit 1) and refused by
/// `serve` at startup (exit 3), unless `--allow-empty-bundle`.
#[test]
fn an_empty_bundle_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docs.tuples"),
        "Doc::\"d\"#viewer@User::\"u\"\n",
    )
    .unwrap();
    let empty = dir.path().as_os_str();
    let (code, stderr) = validate_without_hanging(&[empty]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the bundle has no policies, so every request would be denied",
            dir.path().display()
        )),
        "{stderr}"
    );
    let (code, stderr) =
        validate_without_hanging(&[empty, std::ffi::OsStr::new("--allow-empty-bundle")]);
    assert_eq!(code, Some(0), "{stderr}");

    let serve = verdict()
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
        ])
        .arg("--policies")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(3), "{}", text(&serve.stderr));
    assert!(
        text(&serve.stderr).contains("the bundle has no policies"),
        "{}",
        text(&serve.stderr)
    );
}

/// `verdict --help` is short: the subcommands, not the server's ~50 settings, which
/// `verdict serve --help` lists; `verdict` alone still takes them.
#[test]
fn top_level_help_lists_subcommands_and_serve_help_lists_settings() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let top = text(&top.stdout);
    for subcommand in ["serve", "check", "validate", "test"] {
        assert!(top.contains(&format!("  {subcommand} ")), "{top}");
    }
    assert!(!top.contains("--grpc-addr"), "{top}");
    assert!(top.lines().count() < 40, "{top}");

    let serve = run(&["serve", "--help"]);
    assert!(serve.status.success());
    let serve = text(&serve.stdout);
    assert!(serve.contains("--grpc-addr") && serve.contains("VERDICT_GRPC_ADDR"));

    // A serve flag without a subcommand is still accepted (and validated).
    let bad = run(&["--max-batch", "0"]);
    assert_eq!(bad.status.code(), Some(64), "{}", text(&bad.stderr));
}
