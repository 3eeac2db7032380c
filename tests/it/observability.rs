//! Observability end to end, against the real binary: a real Prometheus server scrapes
//! `/metrics`, promtool lints it, label cardinality stays bounded under distinct ids, and the
//! decision log never prints a secret.
//!
//! Prometheus and promtool come from Debian's `prometheus` package; the test installs it with
//! apt-get when it is missing, and fails (never skips) if it cannot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use common::process::{Verdict, http_get, try_http_get};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use verdict::api::proto;

/// Makes sure Debian's prometheus package (prometheus and promtool) is installed.
fn prometheus_binaries() -> (PathBuf, PathBuf) {
    static INSTALL: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_at_a_time = INSTALL.get_or_init(|| Mutex::new(())).lock().unwrap();
    let prometheus = PathBuf::from("/usr/bin/prometheus");
    let promtool = PathBuf::from("/usr/bin/promtool");
    if std::fs::metadata(&prometheus).is_err() || std::fs::metadata(&promtool).is_err() {
        let output = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("cannot run apt-get to install prometheus");
        assert!(
            output.status.success() && std::fs::metadata(&prometheus).is_ok(),
            "installing Debian's prometheus package failed; this test needs a real Prometheus:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (prometheus, promtool)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Queries Prometheus for a single number, `None` while the query returns nothing.
fn query(prometheus: SocketAddr, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = try_http_get(prometheus, &format!("/api/v1/query?query={encoded}"))?;
    if status != 200 {
        return None;
    }
    let answer: Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

fn read_check(user: &str, resource: &str) -> proto::CheckRequest {
    common::check(
        ("User", user),
        "read",
        ("Document", resource),
        json!({"scopes": ["documents:read"]}),
    )
}

#[test]
fn a_real_prometheus_scrapes_decision_metrics_and_promtool_lints_them() {
    let (prometheus_bin, promtool) = prometheus_binaries();
    let verdict = Verdict::start(&common::example_bundle(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = verdict.client(&runtime);

    // 20 allows and 10 denies, then a batch of 3 allows and 2 denies: 35 decisions.
    runtime.block_on(async {
        for _ in 0..20 {
            let answer = client
                .check(read_check("bob", "roadmap"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer.decision, common::ALLOW);
        }
        for _ in 0..10 {
            let answer = client
                .check(read_check("dave", "roadmap"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(answer.decision, common::DENY);
        }
        let checks = ["bob", "alice", "bob", "dave", "dave"]
            .iter()
            .map(|user| read_check(user, "roadmap"))
            .collect();
        client
            .batch_check(proto::BatchCheckRequest {
                checks,
                consistency: None,
            })
            .await
            .unwrap();
    });

    let (status, metrics) = http_get(verdict.metrics, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "verdict_decisions_total{decision=\"allow\",action=\"read\",front_end=\"grpc\"} 23",
        "verdict_decisions_total{decision=\"deny\",action=\"read\",front_end=\"grpc\"} 12",
        "verdict_decision_duration_seconds_count 35",
        "verdict_grpc_requests_total{method=\"verdict.v1.Authorization/Check\",code=\"OK\"} 30",
        // The conventional gRPC server families, as go-grpc-prometheus names and labels them.
        "grpc_server_started_total{grpc_type=\"unary\",grpc_service=\"verdict.v1.Authorization\",grpc_method=\"Check\"} 30",
        "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"verdict.v1.Authorization\",grpc_method=\"Check\",grpc_code=\"OK\"} 30",
        "grpc_server_handling_seconds_count{grpc_type=\"unary\",grpc_service=\"verdict.v1.Authorization\",grpc_method=\"BatchCheck\"} 1",
        "verdict_ready 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
    // The process's own gauges, with values read from /proc.
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(family)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("missing `{family}` in:\n{metrics}"));
        assert!(
            value > 0.0 || family == "process_cpu_seconds_total",
            "{family} {value}"
        );
    }
    assert_eq!(http_get(verdict.metrics, "/healthz").0, 200);
    assert_eq!(http_get(verdict.metrics, "/readyz").0, 200);

    // promtool lints the exposition: exit 0 means no finding at all.
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let linted = lint.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    // A real Prometheus on loopback scrapes it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: verdict\n    static_configs:\n      - targets: ['{}']\n",
            verdict.metrics
        ),
    )
    .unwrap();
    let prometheus_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut prometheus = Command::new(&prometheus_bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outcome = std::panic::catch_unwind(|| {
        let started = Instant::now();
        loop {
            if query(prometheus_addr, "up{job=\"verdict\"}") == Some(1.0) {
                break;
            }
            let targets = try_http_get(prometheus_addr, "/api/v1/targets")
                .unwrap_or_default()
                .1;
            if let Ok(targets) = serde_json::from_str::<Value>(&targets)
                && let Some(target) = targets["data"]["activeTargets"].get(0)
                && target["health"] == "down"
            {
                panic!("Prometheus cannot scrape Verdict: {}", target["lastError"]);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no successful scrape in 30 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let expect = |promql: &str, wanted: f64| {
            let started = Instant::now();
            loop {
                let got = query(prometheus_addr, promql);
                if got == Some(wanted) {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "`{promql}` is {got:?}, expected {wanted}"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        };
        expect("sum(verdict_decisions_total)", 35.0);
        expect("sum(verdict_decisions_total{decision=\"deny\"})", 12.0);
        expect("verdict_decision_duration_seconds_count", 35.0);
        expect("sum(verdict_batch_size_count)", 1.0);
        expect("verdict_snapshot_policies", 23.0);
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    verdict.stop();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Series in an exposition: lines that are neither comments nor blank.
fn series(metrics: &str) -> Vec<String> {
    let mut names: Vec<String> = metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned())
        .collect();
    names.sort();
    names
}

/// A bundle without a schema, where any action may be asked.
fn open_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.cedar"),
        "@id(\"viewers\")\npermit (principal, action == Action::\"view\", resource) when { principal in resource.viewer };\n@id(\"broken\")\nforbid (principal, action == Action::\"edit\", resource) when { principal.missing };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docs.tuples"),
        "Doc::\"d\"#viewer@User::*\n",
    )
    .unwrap();
    dir
}

#[test]
fn ten_thousand_distinct_requests_add_no_series() {
    let bundle = open_bundle();
    let verdict = Verdict::start(bundle.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = verdict.client(&runtime);
    let check = |principal: String, action: String, resource: String| proto::CheckRequest {
        contextual_tuples: Default::default(),
        principal: Some(common::entity("User", &principal)),
        action,
        resource: Some(common::entity("Doc", &resource)),
        context: None,
        entities: Vec::new(),
        properties: Vec::new(),
        token: String::new(),
        consistency: None,
    };
    // Every kind of answer once: allow, deny, unknown action, evaluation error, rejection.
    runtime.block_on(async {
        let mut client = client.clone();
        client
            .check(check("u".into(), "view".into(), "d".into()))
            .await
            .unwrap();
        client
            .check(check("u".into(), "view".into(), "x".into()))
            .await
            .unwrap();
        client
            .check(check("u".into(), "fly".into(), "d".into()))
            .await
            .unwrap();
        client
            .check(check("u".into(), "edit".into(), "d".into()))
            .await
            .unwrap();
        client
            .check(check(String::new(), "view".into(), "d".into()))
            .await
            .unwrap_err();
    });
    let before = series(&http_get(verdict.metrics, "/metrics").1);

    runtime.block_on(async {
        let mut workers = Vec::new();
        for worker in 0..8 {
            let mut client = client.clone();
            workers.push(tokio::spawn(async move {
                for i in 0..1250 {
                    let n = worker * 1250 + i;
                    let action = match n % 4 {
                        0 => "view".to_owned(),
                        1 => "edit".to_owned(),
                        _ => format!("action-{n}"),
                    };
                    client
                        .check(check(format!("user-{n}"), action, format!("doc-{n}")))
                        .await
                        .unwrap();
                }
            }));
        }
        for worker in workers {
            worker.await.unwrap();
        }
    });
    let after_metrics = http_get(verdict.metrics, "/metrics").1;
    let after = series(&after_metrics);
    assert_eq!(
        before, after,
        "series changed after 10,000 distinct requests"
    );
    let decisions: f64 = after_metrics
        .lines()
        .filter(|l| l.starts_with("verdict_decisions_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(decisions, 10_004.0);
    assert!(
        after_metrics.contains("action=\"other\""),
        "{after_metrics}"
    );
    verdict.stop();
}

/// A stalled log collector (stderr into a pipe nobody reads) must not stall decisions: the
/// decision log's queue fills, records are dropped and counted, and every request is answered.
#[test]
fn a_blocked_decision_log_drops_records_and_never_blocks_requests() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 500;
    let bundle = open_bundle();
    let verdict = Verdict::start_with_stalled_stderr(
        bundle.path(),
        &["--log-format", "json", "--decision-log-queue", "64"],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let denied = runtime.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..CLIENTS {
            let mut client = verdict.client_async().await;
            workers.push(tokio::spawn(async move {
                let mut denied = 0;
                for i in 0..PER_CLIENT {
                    let request = common::check(
                        ("User", &format!("user-{i}")),
                        "delete",
                        ("Doc", "d"),
                        json!({}),
                    );
                    let answer = client.check(request).await.unwrap().into_inner();
                    assert_eq!(answer.decision, common::DENY);
                    denied += 1;
                }
                denied
            }));
        }
        // Bounded: with a blocking log, this is where it would hang (174 of 5,000 answered in
        // 60 s before the queue, issue 20).
        tokio::time::timeout(Duration::from_secs(120), async {
            let mut denied = 0;
            for worker in workers {
                denied += worker.await.unwrap();
            }
            denied
        })
        .await
        .expect("denied checks did not complete within 120 s with stderr blocked")
    });
    assert_eq!(denied, CLIENTS * PER_CLIENT);
    let metrics = http_get(verdict.metrics, "/metrics").1;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    assert_eq!(
        value("verdict_decisions_total{decision=\"deny\""),
        (CLIENTS * PER_CLIENT) as f64,
        "{metrics}"
    );
    let dropped = value("verdict_decision_log_dropped_total");
    assert!(dropped > 0.0, "no record counted as dropped:\n{metrics}");
    // The pipe holds 64 KiB: most of the 4,000 records (hundreds of bytes each) cannot have
    // been written.
    assert!(dropped >= 2_000.0, "{dropped} dropped");
    // Shutdown does not hang on the blocked output either (the flush gives up after 2 s).
    verdict.stop();
}

#[test]
fn the_decision_log_records_decisions_but_never_secrets() {
    let bundle = open_bundle();
    let verdict = Verdict::start(
        bundle.path(),
        &[
            "--log-format",
            "json",
            "--decision-log-allow-rate",
            "1",
            "--decision-log-deny-rate",
            "1",
        ],
    );
    let secrets = [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA",
        "hunter2-correct-horse-battery",
        "sk_live_51H8xkQ2eZvKYlo2C0XYZabcdef",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = verdict.client(&runtime);
    runtime.block_on(async {
        let context = json!({
            "authorization": format!("Bearer {}", secrets[0]),
            "password": secrets[1],
            "apiKey": secrets[2],
            "nested": {"aws": [secrets[3]]},
        });
        let mut request = common::check(("User", "alice"), "view", ("Doc", "d"), context.clone());
        request.entities = vec![proto::Entity {
            uid: Some(common::entity("User", "alice")),
            attrs: Some(common::to_struct(
                json!({"sessionToken": secrets[0], "password": secrets[1]}),
            )),
            parents: Vec::new(),
        }];
        let answer = client.check(request).await.unwrap().into_inner();
        assert_eq!(answer.decision, common::ALLOW);
        let denied = common::check(("User", "alice"), "delete", ("Doc", "d"), context);
        assert_eq!(
            client.check(denied).await.unwrap().into_inner().decision,
            common::DENY
        );
        // A caller that puts a token where an id belongs.
        let token_as_id = common::check(("User", secrets[0]), "view", ("Doc", "d"), json!({}));
        client.check(token_as_id).await.unwrap();
    });
    let lines = verdict.stop();
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "verdict::decision")
        .collect();
    assert_eq!(records.len(), 3, "{lines:#?}");
    let first = &records[0];
    assert_eq!(first["principal"], "User::\"alice\"");
    assert_eq!(first["action"], "Action::\"view\"");
    assert_eq!(first["resource"], "Doc::\"d\"");
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["determining_policies"], json!(["viewers"]));
    assert!(
        first["snapshot_version"]
            .as_str()
            .is_some_and(|v| v.len() == 16)
    );
    assert!(first["latency_us"].as_u64().is_some());
    // No trace id without OpenTelemetry (tests/it/otel.rs has it with).
    assert!(first.get("trace_id").is_none(), "{first}");
    assert!(first["request_id"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(records[1]["decision"], "deny");
    assert_eq!(records[2]["principal"], "User::\"[redacted]\"");
    let everything = lines.join("\n");
    for secret in secrets {
        assert!(
            !everything.contains(secret),
            "`{secret}` leaked into the log"
        );
    }
    for fragment in ["hunter2", "sk_live", "AKIA", "eyJhbGciOi"] {
        assert!(
            !everything.contains(fragment),
            "`{fragment}` leaked into the log"
        );
    }
}
