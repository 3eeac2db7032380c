//! AuthZEN 1.0 over HTTP, end to end: the public interop vectors against the real `verdict
//! serve` binary with a Python standard-library client, and what the specification's text says
//! beyond the vectors (evaluations defaults and overrides, each semantic, unknown options,
//! search with unknown types and ids, paging to the end, a reload between pages), with a plain
//! `std::net` HTTP/1.1 client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;
use common::http1::{get, post_json, request};

fn examples(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/authzen")
        .join(name)
}

fn vectors(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/authzen")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// `verdict serve` on an example bundle, configured the way docs/authzen.md says (only
/// `VERDICT_POLICIES` and `VERDICT_HTTP_ADDR`), plus ephemeral ports for the other listeners
/// so that tests running at once do not collide.
struct Served {
    child: std::process::Child,
    http: SocketAddr,
}

impl Served {
    fn start(bundle: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
            .arg("serve")
            .env("VERDICT_POLICIES", bundle)
            .env("VERDICT_HTTP_ADDR", "127.0.0.1:0")
            .env("VERDICT_GRPC_ADDR", "127.0.0.1:0")
            .env("VERDICT_METRICS_ADDR", "off")
            .env_remove("RUST_LOG")
            .env_remove("VERDICT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining, so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let started = Instant::now();
        let http = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("verdict did not report its HTTP API address");
            if line.contains("http api listening")
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse().ok())
            {
                break addr;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no address");
        };
        Self { child, http }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the stdlib client on `files`; returns its output.
fn replay(http: SocketAddr, files: &[&str]) -> String {
    let script = vectors("interop_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{http}"))
        .args(files.iter().map(|f| vectors(f)))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "interop client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_todo_and_api_gateway_interop_vectors_pass() {
    let served = Served::start(&examples("todo"));
    let output = replay(served.http, &["todo-1.0.json", "api-gateway.json"]);
    // 40 evaluations and 3 evaluations requests; 25 gateway evaluations.
    assert!(output.contains("todo-1.0.json: 43 passed"), "{output}");
    assert!(output.contains("api-gateway.json: 25 passed"), "{output}");
}

#[test]
fn the_search_interop_vectors_pass() {
    let served = Served::start(&examples("search"));
    let output = replay(
        served.http,
        &[
            "search-subject.json",
            "search-resource.json",
            "search-action.json",
        ],
    );
    assert!(
        output.contains("search-subject.json: 60 passed"),
        "{output}"
    );
    assert!(
        output.contains("search-resource.json: 18 passed"),
        "{output}"
    );
    assert!(
        output.contains("search-action.json: 120 passed"),
        "{output}"
    );
}

/// An in-process server on the search example (or `bundle`) with the HTTP API on.
fn start(runtime: &tokio::runtime::Runtime, bundle: &Path) -> (TestServer, SocketAddr) {
    let mut config = common::test_config(bundle);
    config.http.addr = Some("127.0.0.1:0".parse().unwrap());
    config.reload.watch = false;
    config.reload.poll_interval = None;
    let server = runtime.block_on(TestServer::start_with(config));
    let addr = server.api_addr.unwrap();
    (server, addr)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn decisions(answer: &Value) -> Vec<bool> {
    answer["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect()
}

fn record(id: &str) -> Value {
    json!({"type": "record", "id": id})
}

#[test]
fn evaluations_take_defaults_and_an_item_replaces_a_default_whole() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("search"));
    // Erin (Finance) views Finance's 115 and her own 105, not Sales' 107; Alice overrides the
    // subject for the last item and, as a manager, views 107.
    let response = post_json(
        addr,
        "/access/v1/evaluations",
        &json!({
            "subject": {"type": "user", "id": "erin"},
            "action": {"name": "view"},
            "context": {},
            "evaluations": [
                {"resource": record("115")},
                {"resource": record("105")},
                {"resource": record("107")},
                {"resource": record("107"), "subject": {"type": "user", "id": "alice"}},
                {"resource": record("107"), "action": {"name": "delete"},
                 "subject": {"type": "user", "id": "alice"}},
            ]
        }),
    );
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        decisions(&response.json()),
        vec![true, true, false, true, true]
    );
    // No evaluations array: the request is one evaluation, answered as one.
    let single = post_json(
        addr,
        "/access/v1/evaluations",
        &json!({"subject": {"type": "user", "id": "erin"}, "action": {"name": "view"},
                "resource": record("115"), "evaluations": []}),
    );
    assert_eq!(single.json(), json!({"decision": true}));
    // An item without a subject, and no default: the whole request is refused, naming it.
    let missing = post_json(
        addr,
        "/access/v1/evaluations",
        &json!({"action": {"name": "view"}, "evaluations": [
            {"subject": {"type": "user", "id": "erin"}, "resource": record("115")},
            {"resource": record("115")}]}),
    );
    assert_eq!(missing.status, 400);
    assert!(
        missing
            .error_message()
            .starts_with("evaluations[1].subject: required field is missing"),
        "{}",
        missing.error_message()
    );
    runtime.block_on(server.stop());
}

#[test]
fn each_evaluations_semantic_answers_in_order_and_stops_after_the_deciding_item() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("search"));
    // Bob: views 101 (Legal), not 104 (Accounting), views 102 (his own).
    let body = |semantic: Option<&str>| {
        let mut body = json!({
            "subject": {"type": "user", "id": "bob"},
            "action": {"name": "view"},
            "evaluations": [{"resource": record("101")}, {"resource": record("104")},
                            {"resource": record("102")}],
            "options": {"another_option": "ignored", "nested": {"x": [1]}},
        });
        if let Some(semantic) = semantic {
            body["options"]["evaluations_semantic"] = json!(semantic);
        }
        body
    };
    let answer = |semantic| {
        let response = post_json(addr, "/access/v1/evaluations", &body(semantic));
        assert_eq!(response.status, 200, "{semantic:?}: {:?}", response.json());
        decisions(&response.json())
    };
    assert_eq!(
        answer(None),
        vec![true, false, true],
        "default: execute_all"
    );
    assert_eq!(answer(Some("execute_all")), vec![true, false, true]);
    assert_eq!(answer(Some("deny_on_first_deny")), vec![true, false]);
    assert_eq!(answer(Some("permit_on_first_permit")), vec![true]);
    let unknown = post_json(addr, "/access/v1/evaluations", &body(Some("majority")));
    assert_eq!(unknown.status, 400);
    assert!(
        unknown
            .error_message()
            .starts_with("options.evaluations_semantic: `majority`")
    );
    // An item the core refuses (a fraction in its context) is a closed decision carrying its
    // error, and counts as a deny for deny_on_first_deny.
    let mut with_error = body(Some("deny_on_first_deny"));
    with_error["evaluations"][0]["context"] = json!({"amount": 1.5});
    let response = post_json(addr, "/access/v1/evaluations", &with_error);
    let answer = response.json();
    assert_eq!(answer["evaluations"].as_array().unwrap().len(), 1);
    assert_eq!(answer["evaluations"][0]["decision"], false);
    assert_eq!(answer["evaluations"][0]["context"]["error"]["status"], 400);
    assert!(
        answer["evaluations"][0]["context"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("evaluations[0].context.amount"),
        "{answer}"
    );
    runtime.block_on(server.stop());
}

#[test]
fn searches_for_unknown_types_ids_or_actions_are_empty_not_errors() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("search"));
    let empty = |path: &str, body: Value| {
        let response = post_json(addr, path, &body);
        assert_eq!(response.status, 200, "{path} {body}: {:?}", response.json());
        let answer = response.json();
        assert_eq!(answer["results"], json!([]), "{path} {body}");
        assert_eq!(answer["page"]["next_token"], "", "{path} {body}");
    };
    let view = json!({"name": "view"});
    empty(
        "/access/v1/search/subject",
        json!({"subject": {"type": "robot"}, "action": view, "resource": record("101")}),
    );
    empty(
        "/access/v1/search/subject",
        json!({"subject": {"type": "user"}, "action": view, "resource": record("999")}),
    );
    empty(
        "/access/v1/search/subject",
        json!({"subject": {"type": "user"}, "action": {"name": "fly"}, "resource": record("101")}),
    );
    empty(
        "/access/v1/search/resource",
        json!({"subject": {"type": "user", "id": "zed"}, "action": view, "resource": {"type": "record"}}),
    );
    empty(
        "/access/v1/search/resource",
        json!({"subject": {"type": "user", "id": "bob"}, "action": view, "resource": {"type": "vault"}}),
    );
    empty(
        "/access/v1/search/action",
        json!({"subject": {"type": "user", "id": "erin"}, "resource": record("118")}),
    );
    empty(
        "/access/v1/search/action",
        json!({"subject": {"type": "user", "id": "erin"}, "resource": {"type": "vault", "id": "1"}}),
    );
    // A malformed request is still an error, naming the field.
    let response = post_json(
        addr,
        "/access/v1/search/resource",
        &json!({"subject": {"type": "user"}, "action": view, "resource": {"type": "record"}}),
    );
    assert_eq!(response.status, 400);
    assert_eq!(
        response.error_message(),
        "subject.id: required field is missing"
    );
    runtime.block_on(server.stop());
}

/// Follows a search with `page.limit` 1 to its end; returns the ids and the number of pages.
fn search_in_pages(addr: SocketAddr, body: &Value) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut page = json!({"limit": 1});
    for pages in 1..=100 {
        let mut request = body.clone();
        request["page"] = page.clone();
        let response = post_json(addr, "/access/v1/search/subject", &request);
        assert_eq!(response.status, 200, "{:?}", response.json());
        let answer = response.json();
        let results = answer["results"].as_array().unwrap();
        assert!(results.len() <= 1, "{answer}");
        assert_eq!(answer["page"]["count"], results.len());
        ids.extend(results.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        let token = answer["page"]["next_token"].as_str().unwrap();
        if token.is_empty() {
            return (ids, pages);
        }
        page = json!({"limit": 1, "token": token});
    }
    panic!("the search did not end within 100 pages");
}

#[test]
fn paging_with_limit_one_reaches_every_result_once() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("search"));
    let body = json!({"subject": {"type": "user"}, "action": {"name": "view"},
                      "resource": record("105")});
    let (ids, pages) = search_in_pages(addr, &body);
    assert_eq!(ids, ["alice", "bob", "carol", "dan", "erin"]);
    assert!(pages >= 5, "{pages}");
    // Without a limit, one page holds everything and says there is no more.
    let whole = post_json(addr, "/access/v1/search/subject", &body).json();
    assert_eq!(whole["results"].as_array().unwrap().len(), 5);
    assert_eq!(whole["page"]["next_token"], "");
    // A token with a different request is refused, naming the token.
    let mut first = body.clone();
    first["page"] = json!({"limit": 1});
    let token = post_json(addr, "/access/v1/search/subject", &first).json()["page"]["next_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut changed = body.clone();
    changed["action"] = json!({"name": "edit"});
    changed["page"] = json!({"limit": 1, "token": token});
    let refused = post_json(addr, "/access/v1/search/subject", &changed);
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .error_message()
            .starts_with("page.token: the request differs")
    );
    let mut forged = body.clone();
    forged["page"] = json!({"limit": 1, "token": "bm90IGEgdG9rZW4"});
    let refused = post_json(addr, "/access/v1/search/subject", &forged);
    assert_eq!(
        refused.error_message(),
        "page.token: not a token this server issued"
    );
    runtime.block_on(server.stop());
}

#[test]
fn a_reload_between_pages_fails_the_next_page_clearly() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples("search")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let (server, addr) = start(&runtime, dir.path());
    let mut body = json!({"subject": {"type": "user"}, "action": {"name": "view"},
                          "resource": record("105"), "page": {"limit": 2}});
    let first = post_json(addr, "/access/v1/search/subject", &body);
    let answer = first.json();
    let version = first
        .header("x-verdict-snapshot-version")
        .unwrap()
        .to_owned();
    let token = answer["page"]["next_token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    // A new policy: the next page would come from another snapshot.
    std::fs::write(
        dir.path().join("more.cedar"),
        "@id(\"view-all\") permit (principal, action == Action::\"view\", resource is record);",
    )
    .unwrap();
    let outcome = runtime.block_on(server.reloader.reload(verdict::reload::Cause::Signal));
    assert!(
        matches!(outcome, verdict::reload::ReloadOutcome::Updated { .. }),
        "{outcome:?}"
    );
    body["page"] = json!({"limit": 2, "token": token});
    let next = post_json(addr, "/access/v1/search/subject", &body);
    assert_eq!(next.status, 400, "{:?}", next.json());
    assert_eq!(next.json()["error"]["code"], "snapshot_changed");
    let message = next.error_message();
    assert!(
        message.starts_with("page.token: the policy bundle was reloaded"),
        "{message}"
    );
    assert!(message.contains(&version), "{message}");
    // Starting over works, from the new snapshot.
    body["page"] = json!({"limit": 100});
    let again = post_json(addr, "/access/v1/search/subject", &body);
    assert_eq!(again.status, 200);
    assert_ne!(again.header("x-verdict-snapshot-version").unwrap(), version);
    assert_eq!(again.json()["results"].as_array().unwrap().len(), 6);
    runtime.block_on(server.stop());
}

#[test]
fn the_metadata_lists_every_endpoint() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("search"));
    let response = get(addr, "/.well-known/authzen-configuration");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let metadata = response.json();
    let base = format!("http://{addr}");
    assert_eq!(metadata["policy_decision_point"], base);
    for (key, path) in [
        ("access_evaluation_endpoint", "/access/v1/evaluation"),
        ("access_evaluations_endpoint", "/access/v1/evaluations"),
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ] {
        assert_eq!(metadata[key], format!("{base}{path}"), "{key}");
    }
    runtime.block_on(server.stop());
}

#[test]
fn evaluation_errors_name_the_authzen_field_and_ids_are_echoed() {
    let runtime = runtime();
    let (server, addr) = start(&runtime, &examples("todo"));
    let cases = [
        (
            json!({"action": {"name": "GET"}, "resource": {"type": "route", "id": "/todos"}}),
            "subject: required field is missing",
        ),
        (
            json!({"subject": {"type": "identity"}, "action": {"name": "GET"},
                "resource": {"type": "route", "id": "/todos"}}),
            "subject.id: required field is missing",
        ),
        (
            json!({"subject": {"type": "identity", "id": 7}, "action": {"name": "GET"},
                "resource": {"type": "route", "id": "/todos"}}),
            "subject.id: expected a string, found a number",
        ),
        (
            json!({"subject": {"type": "identity", "id": "x"}, "action": {"name": ""},
                "resource": {"type": "route", "id": "/todos"}}),
            "action.name: must not be empty",
        ),
        (
            json!({"subject": {"type": "identity", "id": "x"}, "action": {"name": "PATCH"},
                "resource": {"type": "route", "id": "/todos"}}),
            "action.name: `Action::\"PATCH\"` is not declared in the schema",
        ),
        (
            json!({"subject": {"type": "user", "id": "x"}, "action": {"name": "can_update_todo"},
                "resource": {"type": "todo", "id": "t", "properties": {"ownerID": 3}}}),
            "resource: entity does not conform to the schema: in attribute `ownerID`",
        ),
    ];
    for (body, expected) in cases {
        let response = post_json(addr, "/access/v1/evaluation", &body);
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(response.json()["error"]["status"], 400);
        assert!(
            response.error_message().starts_with(expected),
            "{body}: {}",
            response.error_message()
        );
    }
    // Unknown fields anywhere are ignored.
    let response = post_json(
        addr,
        "/access/v1/evaluation",
        &json!({"subject": {"type": "identity", "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs", "extra": 1},
                "action": {"name": "GET", "properties": {"method": "GET"}},
                "resource": {"type": "route", "id": "/todos"}, "future_field": [1, 2]}),
    );
    assert_eq!(response.json(), json!({"decision": true}));
    // The request id comes back as sent, or one is made up.
    let sent = request(
        addr,
        "POST",
        "/access/v1/evaluation",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "bfe9eb29-ab87"),
        ],
        b"{}",
    );
    assert_eq!(sent.header("x-request-id"), Some("bfe9eb29-ab87"));
    let made = post_json(addr, "/access/v1/evaluation", &json!({}));
    // Otherwise the server's own id: a ULID (26 characters of Crockford's base 32).
    let assigned = made.header("x-request-id").unwrap();
    assert!(
        assigned.len() == 26 && assigned.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{assigned}"
    );
    runtime.block_on(server.stop());
}

#[test]
fn the_example_bundles_decision_tables_pass() {
    use verdict_core::{LoadOptions, Snapshot, cases};
    for (name, at_least) in [("todo", 60), ("search", 360)] {
        let dir = examples(name);
        let snapshot = Snapshot::load(&dir, &LoadOptions::default()).unwrap();
        let mut total = 0;
        let mut failures = Vec::new();
        for file in cases::discover(&dir).unwrap() {
            for result in cases::run_file(&snapshot, &file).unwrap() {
                total += 1;
                if let Some(why) = result.failure {
                    failures.push(format!("{}:{}: {why}", result.path.display(), result.line));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(total >= at_least, "{name}: only {total} cases");
    }
}
