//! The load benchmark: gRPC over loopback against Verdict, a no-op server with the same API
//! (the transport ceiling), and Cerbos (a peer PDP), and Verdict's HTTP API (AuthZEN
//! evaluation, and evaluations of 100, over keep-alive HTTP/1.1: target `verdict-http`) against
//! Cerbos's HTTP API (`POST /api/check/resources`, JSON: target `cerbos-http`), with the same
//! generator and equivalent requests, in the same run.
//!
//! ```sh
//! cargo bench --bench load                       # everything, 10 s per measurement
//! LOAD_SECONDS=5 LOAD_TARGETS=verdict,noop cargo bench --bench load
//! LOAD_MODES=check LOAD_IN_FLIGHT=64 LOAD_VERDICT_ARGS="--request-timeout 1s" cargo bench --bench load
//! LOAD_DECISION_LOG=default LOAD_TARGETS=verdict cargo bench --bench load   # decision log on
//! LOAD_MODES=soak LOAD_TARGETS=verdict cargo bench --bench load   # normal traffic under attack
//! LOAD_BASELINE_BIN=/path/to/older/verdict LOAD_TARGETS=baseline,verdict cargo bench --bench load
//! ```
//!
//! `LOAD_MODES=soak` runs the soak of `load/soak.rs` instead of the tables: normal traffic at
//! half of Verdict's peak, alone and then while hostile clients and a churning bundle attack
//! (`LOAD_SOAK_SECONDS`, 60; `LOAD_SOAK_ATTACKERS` to run only some of them).
//!
//! Verdict runs with metrics on and its decision log off (Cerbos runs with audit off);
//! `LOAD_DECISION_LOG=default` keeps the shipped sampling, every deny and 1% of allows.
//!
//! `cargo bench` builds the release `verdict` binary and this harness. The harness starts each
//! server pinned to CPU 0 (`taskset -c 0`) and runs the generator, a re-execution of itself,
//! pinned to CPU 1, so the two never compete for a core (the machine has two). For each target
//! it drives unary `Check` and batches of 100 (`BatchCheck`; Cerbos: `CheckResources` with 100
//! resources) with 1, 8 and 64 requests in flight over up to 4 HTTP/2 connections, closed loop,
//! for `LOAD_SECONDS` after a one-second warm-up, and prints throughput and latency
//! percentiles. Then open-loop runs at a quarter and at half of Verdict's peak unary
//! throughput measure latency from each request's scheduled start (no coordinated omission),
//! against Verdict and then the no-op server on the same schedules. Every response is
//! checked: a non-OK status or a decision other than the expected one is counted as an error,
//! and any error fails the run.
//!
//! The scenario is the one Cerbos documents first: the owner of a document may update and
//! delete it, an admin may do anything, everyone else is denied. Verdict learns owners from
//! tuples and admins from entity data; Cerbos gets the owner as a resource attribute and the
//! roles in the request, as its API requires. Both give the same decisions for every request.
//!
//! Cerbos 0.55.0 is installed from npm (`@cerbos/cerbos-linux-x64`) into a scratch directory
//! under the system temp dir on first use. `cargo test --benches` runs a smoke version: Verdict
//! and the no-op server only, a few hundred requests each, then the soak for 1.5 s with fewer
//! attackers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use verdict::api::proto;

/// The verdict binary's allocator (see `src/main.rs`) for the no-op server this binary runs,
/// so that the transport ceiling is measured with the same allocator as Verdict.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "load/h2load.rs"]
mod h2load;
#[path = "common/owner_scenario.rs"]
mod owner_scenario;
#[path = "load/soak.rs"]
mod soak;
use owner_scenario::{Check, checks, expected, is_admin, owner, write_bundle};

const CERBOS_VERSION: &str = "0.55.0";
const BATCH: usize = 100;
const CONNECTIONS_MAX: usize = 4;
fn verdict_check(check: Check) -> proto::CheckRequest {
    proto::CheckRequest {
        contextual_tuples: Default::default(),
        principal: Some(proto::EntityRef {
            r#type: "User".to_owned(),
            id: format!("u{}", check.user),
        }),
        action: check.action.to_owned(),
        resource: Some(proto::EntityRef {
            r#type: "Document".to_owned(),
            id: format!("d{}", check.document),
        }),
        context: None,
        entities: Vec::new(),
        properties: Vec::new(),
        token: String::new(),
        consistency: None,
    }
}

// ------------------------------------------------------------------------------------------
// Cerbos's API: the fields this benchmark uses, with Cerbos's field numbers
// (cerbos/request/v1, cerbos/engine/v1, cerbos/response/v1).

mod cerbos {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResourcesRequest {
        #[prost(string, tag = "1")]
        pub request_id: String,
        #[prost(message, optional, tag = "3")]
        pub principal: Option<Principal>,
        #[prost(message, repeated, tag = "4")]
        pub resources: Vec<ResourceEntry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Principal {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, repeated, tag = "3")]
        pub roles: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceEntry {
        #[prost(string, repeated, tag = "1")]
        pub actions: Vec<String>,
        #[prost(message, optional, tag = "2")]
        pub resource: Option<Resource>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(string, tag = "1")]
        pub kind: String,
        #[prost(string, tag = "3")]
        pub id: String,
        #[prost(map = "string, message", tag = "4")]
        pub attr: HashMap<String, prost_types::Value>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResourcesResponse {
        #[prost(message, repeated, tag = "2")]
        pub results: Vec<ResultEntry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResultEntry {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<ResultResource>,
        /// Action → effect (1 = EFFECT_ALLOW, 2 = EFFECT_DENY).
        #[prost(map = "string, int32", tag = "2")]
        pub actions: HashMap<String, i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResultResource {
        #[prost(string, tag = "1")]
        pub id: String,
    }

    pub const EFFECT_ALLOW: i32 = 1;
}

fn cerbos_principal(user: usize) -> cerbos::Principal {
    let mut roles = vec!["user".to_owned()];
    if is_admin(user) {
        roles.push("admin".to_owned());
    }
    cerbos::Principal {
        id: format!("u{user}"),
        roles,
    }
}

fn cerbos_entry(check: Check) -> cerbos::ResourceEntry {
    let owner = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(format!(
            "u{}",
            owner(check.document)
        ))),
    };
    cerbos::ResourceEntry {
        actions: vec![check.action.to_owned()],
        resource: Some(cerbos::Resource {
            kind: "document".to_owned(),
            id: format!("d{}", check.document),
            attr: HashMap::from([("owner".to_owned(), owner)]),
        }),
    }
}

const CERBOS_POLICY: &str = r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: document
  rules:
    - actions: ["update", "delete"]
      effect: EFFECT_ALLOW
      roles: ["user"]
      condition:
        match:
          expr: request.resource.attr.owner == request.principal.id
    - actions: ["*"]
      effect: EFFECT_ALLOW
      roles: ["admin"]
"#;

// ------------------------------------------------------------------------------------------
// Servers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Verdict,
    /// Verdict's HTTP API: AuthZEN evaluation (and evaluations of 100 for batches) over
    /// keep-alive HTTP/1.1, one connection per request in flight.
    VerdictHttp,
    Noop,
    /// Another build of Verdict (`LOAD_BASELINE_BIN`, e.g. the previous commit's release
    /// binary) on the same scenario: a before/after comparison in one run.
    Baseline,
    Cerbos,
    /// Cerbos's HTTP API (`POST /api/check/resources`, JSON) over keep-alive HTTP/1.1: the
    /// peer of `verdict-http`.
    CerbosHttp,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Verdict => "verdict",
            Self::VerdictHttp => "verdict-http",
            Self::Noop => "noop",
            Self::Baseline => "baseline",
            Self::Cerbos => "cerbos",
            Self::CerbosHttp => "cerbos-http",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "verdict" => Self::Verdict,
            "verdict-http" => Self::VerdictHttp,
            "noop" => Self::Noop,
            "baseline" => Self::Baseline,
            "cerbos" => Self::Cerbos,
            "cerbos-http" => Self::CerbosHttp,
            other => panic!("unknown target {other}"),
        }
    }
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Verdict's HTTP port (`/metrics`), when the caller waited for it.
    metrics: Option<SocketAddr>,
    scratch: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `taskset -c CPU program`, when taskset exists and the machine has two or more CPUs.
fn pinned(cpu: usize, program: &Path) -> Command {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 && Path::new("/usr/bin/taskset").try_exists().unwrap_or(false) {
        let mut command = Command::new("/usr/bin/taskset");
        command.arg("-c").arg(cpu.to_string()).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Reads lines from a child's output until `find` returns an address.
fn wait_for_addr(
    reader: impl std::io::Read + Send + 'static,
    find: fn(&str) -> Option<SocketAddr>,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = find(&line) {
                let _ = tx.send(addr);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server did not report its address")
}

fn start_verdict() -> Server {
    start_verdict_with(&["--watch", "false", "--poll-interval", "0"], |_| {}, false)
}

/// The `LOAD_BASELINE_BIN` build of Verdict, started as [`start_verdict`] starts this one.
fn start_baseline() -> Server {
    let binary = std::env::var_os("LOAD_BASELINE_BIN")
        .expect("target `baseline` needs LOAD_BASELINE_BIN, the path of another verdict build");
    start_binary(
        Path::new(&binary),
        &["--watch", "false", "--poll-interval", "0"],
        |_| {},
        false,
    )
}

/// Verdict with its HTTP API on; the server's `addr` is the HTTP API's.
fn start_verdict_http() -> Server {
    start_verdict_with(
        &[
            "--watch",
            "false",
            "--poll-interval",
            "0",
            "--http-addr",
            "127.0.0.1:0",
        ],
        |_| {},
        false,
    )
}

/// Starts Verdict on the owner scenario's bundle, written into a scratch directory and then
/// passed to `extra_files`; `reload` are the reload flags. With `wait_for_metrics`, also waits
/// for the HTTP port's address (`Server::metrics`).
fn start_verdict_with(
    reload: &[&str],
    extra_files: impl FnOnce(&Path),
    wait_for_metrics: bool,
) -> Server {
    start_binary(
        Path::new(env!("CARGO_BIN_EXE_verdict")),
        reload,
        extra_files,
        wait_for_metrics,
    )
}

/// [`start_verdict_with`] for the `verdict` executable at `binary`.
fn start_binary(
    binary: &Path,
    reload: &[&str],
    extra_files: impl FnOnce(&Path),
    wait_for_metrics: bool,
) -> Server {
    let scratch = tempfile::tempdir().unwrap();
    write_bundle(scratch.path());
    extra_files(scratch.path());
    let mut child = pinned(0, binary)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--max-batch",
            "100",
        ])
        .args(reload)
        .arg("--policies")
        .arg(scratch.path())
        // The decision log off, as Cerbos runs with audit off; LOAD_DECISION_LOG=default keeps
        // the shipped sampling (every deny, 1% of allows), written to the drained stderr pipe.
        .args(match std::env::var("LOAD_DECISION_LOG").as_deref() {
            Ok("default") => vec![],
            _ => vec![
                "--decision-log-deny-rate",
                "0",
                "--decision-log-allow-rate",
                "0",
            ],
        })
        // Metrics on, as in production (recorded per decision; nobody scrapes here);
        // LOAD_VERDICT_METRICS=off for experiments.
        .arg("--metrics-addr")
        .arg(std::env::var("LOAD_VERDICT_METRICS").unwrap_or_else(|_| "127.0.0.1:0".to_owned()))
        // For experiments: extra `serve` flags, whitespace-separated.
        .args(
            std::env::var("LOAD_VERDICT_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env_remove("RUST_LOG")
        .env("VERDICT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    // Reads every line (the pipe must be drained), and sends each `<what> listening` address.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Cheap for the decision log records that follow on the same pipe.
            if !line.contains(" listening") {
                continue;
            }
            let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            // Flat JSON, or nested under `fields` (builds before the logs were flattened,
            // such as a LOAD_BASELINE_BIN).
            let field = |name: &str| {
                record
                    .get(name)
                    .or_else(|| record["fields"].get(name))
                    .and_then(serde_json::Value::as_str)
            };
            let message = field("message").unwrap_or_default();
            let Some(what) = message.strip_suffix(" listening") else {
                continue;
            };
            if let Some(addr) = field("addr").and_then(|a| a.parse::<SocketAddr>().ok()) {
                let _ = tx.send((what.to_owned(), addr));
            }
        }
    });
    // The gRPC port is bound and logged first, then the HTTP port, then the HTTP API.
    let wait_for_api = reload.contains(&"--http-addr");
    let (mut addr, mut metrics, mut api) = (None, None, None);
    while addr.is_none()
        || (wait_for_metrics && metrics.is_none())
        || (wait_for_api && api.is_none())
    {
        let (what, bound) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not report its address");
        match what.as_str() {
            "grpc" => addr = Some(bound),
            "metrics" => metrics = Some(bound),
            "http api" => api = Some(bound),
            _ => {}
        }
    }
    let addr = if wait_for_api { api } else { addr };
    Server {
        child,
        addr: addr.unwrap(),
        metrics,
        scratch: Some(scratch),
    }
}

fn start_noop() -> Server {
    let mut child = pinned(0, &std::env::current_exe().unwrap())
        .arg("--noop-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = wait_for_addr(child.stdout.take().unwrap(), |line| {
        line.strip_prefix("noop listening ")?.parse().ok()
    });
    Server {
        child,
        addr,
        metrics: None,
        scratch: None,
    }
}

/// Installs Cerbos from npm into a scratch directory (once) and returns its executable.
fn cerbos_binary() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("verdict-load-bench/cerbos-{CERBOS_VERSION}"));
    let binary = dir.join("node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64");
    if !binary.try_exists().unwrap_or(false) {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("@cerbos/cerbos-linux-x64@{CERBOS_VERSION}"))
            .status()
            .expect("npm is needed to install Cerbos");
        assert!(status.success(), "npm install of Cerbos failed");
    }
    assert!(
        binary.try_exists().unwrap_or(false),
        "no Cerbos binary at {}",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Cerbos; `addr` is its gRPC port, or its HTTP port when `http`.
fn start_cerbos(http_api: bool) -> Server {
    let binary = cerbos_binary();
    let scratch = tempfile::tempdir().unwrap();
    let policies = scratch.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("document.yaml"), CERBOS_POLICY).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = scratch.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  grpcListenAddr: \"127.0.0.1:{grpc}\"\n  httpListenAddr: \"127.0.0.1:{http}\"\n  requestLimits:\n    maxActionsPerResource: 50\n    maxResourcesPerRequest: {BATCH}\nstorage:\n  driver: disk\n  disk:\n    directory: {}\n    watchForChanges: false\naudit:\n  enabled: false\ntelemetry:\n  disabled: true\n",
            policies.display()
        ),
    )
    .unwrap();
    let child = pinned(0, &binary)
        .arg("server")
        .arg(format!("--config={}", config.display()))
        .arg("--log-level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let port = if http_api { http } else { grpc };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Cerbos did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        child,
        addr,
        metrics: None,
        scratch: Some(scratch),
    }
}

// ------------------------------------------------------------------------------------------
// The no-op server: Verdict's API, a constant answer.

struct Noop;

fn noop_response() -> proto::CheckResponse {
    proto::CheckResponse {
        decision: proto::Decision::Allow as i32,
        determining_policies: vec!["noop".to_owned()],
        errors: Vec::new(),
        properties: Vec::new(),
        snapshot_version: "noop".to_owned(),
        relation_depth_exceeded: false,
    }
}

#[tonic::async_trait]
impl proto::authorization_server::Authorization for Noop {
    async fn check(
        &self,
        _request: tonic::Request<proto::CheckRequest>,
    ) -> Result<tonic::Response<proto::CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(noop_response()))
    }

    async fn batch_check(
        &self,
        request: tonic::Request<proto::BatchCheckRequest>,
    ) -> Result<tonic::Response<proto::BatchCheckResponse>, tonic::Status> {
        let results = request
            .get_ref()
            .checks
            .iter()
            .map(|_| proto::BatchCheckResult {
                result: Some(proto::batch_check_result::Result::Response(noop_response())),
            })
            .collect();
        Ok(tonic::Response::new(proto::BatchCheckResponse {
            results,
            snapshot_version: "noop".to_owned(),
        }))
    }

    async fn status(
        &self,
        _request: tonic::Request<proto::StatusRequest>,
    ) -> Result<tonic::Response<proto::StatusResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("noop"))
    }

    async fn reload(
        &self,
        _request: tonic::Request<proto::ReloadRequest>,
    ) -> Result<tonic::Response<proto::ReloadResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("noop"))
    }

    async fn check_relation(
        &self,
        _request: tonic::Request<proto::CheckRelationRequest>,
    ) -> Result<tonic::Response<proto::CheckRelationResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("noop"))
    }

    type LookupResourcesStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<proto::LookupResourcesResponse, tonic::Status>>
                + Send,
        >,
    >;

    async fn lookup_resources(
        &self,
        _request: tonic::Request<proto::LookupResourcesRequest>,
    ) -> Result<tonic::Response<Self::LookupResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("noop"))
    }

    type LookupSubjectsStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<proto::LookupSubjectsResponse, tonic::Status>>
                + Send,
        >,
    >;

    async fn lookup_subjects(
        &self,
        _request: tonic::Request<proto::LookupSubjectsRequest>,
    ) -> Result<tonic::Response<Self::LookupSubjectsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("noop"))
    }
}

fn run_noop_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("noop listening {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        // TCP_NODELAY as Verdict sets it: without it a batch waits out delayed ACKs (~40 ms).
        tonic::transport::Server::builder()
            .add_service(proto::authorization_server::AuthorizationServer::new(Noop))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await
            .unwrap();
    });
}

// ------------------------------------------------------------------------------------------
// The generator.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Batch,
}

/// What one request carries, prebuilt, and the answers it must get.
enum Prepared {
    Verdict(proto::CheckRequest, bool),
    VerdictBatch(proto::BatchCheckRequest, Vec<bool>),
    /// An AuthZEN request: its path, its JSON body, and the decisions it must get.
    Http(&'static str, bytes::Bytes, Vec<bool>),
    /// A Cerbos HTTP `CheckResources`: its JSON body, each resource's action, and the
    /// decisions it must get.
    CerbosHttp(bytes::Bytes, Vec<&'static str>, Vec<bool>),
    Cerbos(cerbos::CheckResourcesRequest, Vec<bool>),
}

fn prepare(target: Target, mode: Mode) -> Vec<Prepared> {
    let all = checks(10_000);
    match (target, mode) {
        (Target::Verdict | Target::Baseline | Target::Noop, Mode::Check) => all
            .iter()
            .map(|&c| {
                Prepared::Verdict(
                    verdict_check(c),
                    target == Target::Noop || expected(c.user, c.action, c.document),
                )
            })
            .collect(),
        (Target::Verdict | Target::Baseline | Target::Noop, Mode::Batch) => all
            .chunks(BATCH)
            .map(|chunk| {
                // One principal per batch, as Cerbos requires.
                let user = chunk[0].user;
                let checks: Vec<Check> = chunk.iter().map(|&c| Check { user, ..c }).collect();
                Prepared::VerdictBatch(
                    proto::BatchCheckRequest {
                        checks: checks.iter().map(|&c| verdict_check(c)).collect(),
                        consistency: None,
                    },
                    checks
                        .iter()
                        .map(|c| target == Target::Noop || expected(c.user, c.action, c.document))
                        .collect(),
                )
            })
            .collect(),
        (Target::VerdictHttp, Mode::Check) => all
            .iter()
            .map(|&c| {
                Prepared::Http(
                    "/access/v1/evaluation",
                    serde_json::to_vec(&authzen_evaluation(c)).unwrap().into(),
                    vec![expected(c.user, c.action, c.document)],
                )
            })
            .collect(),
        (Target::VerdictHttp, Mode::Batch) => all
            .chunks(BATCH)
            .map(|chunk| {
                let user = chunk[0].user;
                let checks: Vec<Check> = chunk.iter().map(|&c| Check { user, ..c }).collect();
                let body = serde_json::json!({
                    "subject": {"type": "User", "id": format!("u{user}")},
                    "evaluations": checks.iter().map(|&c| {
                        let mut item = authzen_evaluation(c);
                        item.as_object_mut().unwrap().remove("subject");
                        item
                    }).collect::<Vec<_>>(),
                });
                Prepared::Http(
                    "/access/v1/evaluations",
                    serde_json::to_vec(&body).unwrap().into(),
                    checks
                        .iter()
                        .map(|c| expected(c.user, c.action, c.document))
                        .collect(),
                )
            })
            .collect(),
        (Target::CerbosHttp, Mode::Check) => all
            .iter()
            .map(|&c| {
                Prepared::CerbosHttp(
                    cerbos_http_body(c.user, &[c]),
                    vec![c.action],
                    vec![expected(c.user, c.action, c.document)],
                )
            })
            .collect(),
        (Target::CerbosHttp, Mode::Batch) => all
            .chunks(BATCH)
            .map(|chunk| {
                let user = chunk[0].user;
                let checks: Vec<Check> = chunk.iter().map(|&c| Check { user, ..c }).collect();
                Prepared::CerbosHttp(
                    cerbos_http_body(user, &checks),
                    checks.iter().map(|c| c.action).collect(),
                    checks
                        .iter()
                        .map(|c| expected(c.user, c.action, c.document))
                        .collect(),
                )
            })
            .collect(),
        (Target::Cerbos, Mode::Check) => all
            .iter()
            .map(|&c| {
                Prepared::Cerbos(
                    cerbos::CheckResourcesRequest {
                        request_id: String::new(),
                        principal: Some(cerbos_principal(c.user)),
                        resources: vec![cerbos_entry(c)],
                    },
                    vec![expected(c.user, c.action, c.document)],
                )
            })
            .collect(),
        (Target::Cerbos, Mode::Batch) => all
            .chunks(BATCH)
            .map(|chunk| {
                let user = chunk[0].user;
                let checks: Vec<Check> = chunk.iter().map(|&c| Check { user, ..c }).collect();
                Prepared::Cerbos(
                    cerbos::CheckResourcesRequest {
                        request_id: String::new(),
                        principal: Some(cerbos_principal(user)),
                        resources: checks.iter().map(|&c| cerbos_entry(c)).collect(),
                    },
                    checks
                        .iter()
                        .map(|c| expected(c.user, c.action, c.document))
                        .collect(),
                )
            })
            .collect(),
    }
}

/// The JSON body of Cerbos's HTTP `CheckResources` for `checks`, all by `user` (the same
/// principal, roles and resource attributes as the gRPC requests).
fn cerbos_http_body(user: usize, checks: &[Check]) -> bytes::Bytes {
    let principal = cerbos_principal(user);
    let body = serde_json::json!({
        "requestId": "load",
        "principal": {"id": principal.id, "roles": principal.roles},
        "resources": checks.iter().map(|c| serde_json::json!({
            "actions": [c.action],
            "resource": {
                "kind": "document",
                "id": format!("d{}", c.document),
                "attr": {"owner": format!("u{}", owner(c.document))},
            },
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&body).unwrap().into()
}

/// The AuthZEN evaluation of one check.
fn authzen_evaluation(check: Check) -> serde_json::Value {
    serde_json::json!({
        "subject": {"type": "User", "id": format!("u{}", check.user)},
        "action": {"name": check.action},
        "resource": {"type": "Document", "id": format!("d{}", check.document)},
    })
}

/// A keep-alive HTTP/1.1 client (hyper's pooled client: one connection per request in
/// flight, reused).
type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// A connection to a target: a gRPC channel, or the HTTP API's client and address.
#[derive(Clone)]
enum Conn {
    Grpc(Channel),
    Http(Box<HttpClient>, SocketAddr),
}

/// Opens a connection to `target` at `addr`.
async fn connect(target: Target, addr: SocketAddr) -> Conn {
    if matches!(target, Target::VerdictHttp | Target::CerbosHttp) {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        return Conn::Http(Box::new(client), addr);
    }
    Conn::Grpc(
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap(),
    )
}

/// Sends one JSON request over HTTP and checks its decisions: an AuthZEN request when
/// `cerbos_actions` is `None`, else a Cerbos `CheckResources` whose resources ask those actions.
async fn send_http(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    body: &bytes::Bytes,
    cerbos_actions: Option<&[&str]>,
    want: &[bool],
) -> Result<usize, String> {
    use http_body_util::BodyExt;
    let request = tonic::codegen::http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let got: Vec<bool> = match (cerbos_actions, answer.get("evaluations")) {
        (Some(actions), _) => answer["results"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .zip(actions)
                    .map(|(r, action)| r["actions"][action] == "EFFECT_ALLOW")
                    .collect()
            })
            .unwrap_or_default(),
        (None, Some(serde_json::Value::Array(items))) => {
            items.iter().map(|i| i["decision"] == true).collect()
        }
        (None, _) => vec![answer["decision"] == true],
    };
    if got != want {
        return Err(format!("unexpected decisions {got:?} for {path}"));
    }
    Ok(want.len())
}

/// Sends one prepared request; `Ok(decisions)` if every answer was the expected one.
async fn send(conn: &Conn, prepared: &Prepared) -> Result<usize, String> {
    let allow = proto::Decision::Allow as i32;
    let channel = match (conn, prepared) {
        (Conn::Http(client, addr), Prepared::Http(path, body, want)) => {
            return send_http(client, *addr, path, body, None, want).await;
        }
        (Conn::Http(client, addr), Prepared::CerbosHttp(body, actions, want)) => {
            let path = "/api/check/resources";
            return send_http(client, *addr, path, body, Some(actions), want).await;
        }
        (Conn::Grpc(channel), _) => channel,
        (Conn::Http(..), _) => return Err("a gRPC request on an HTTP connection".to_owned()),
    };
    match prepared {
        Prepared::Http(..) | Prepared::CerbosHttp(..) => {
            Err("an HTTP request on a gRPC channel".to_owned())
        }
        Prepared::Verdict(request, want) => {
            let mut client = proto::authorization_client::AuthorizationClient::new(channel.clone());
            let answer = client
                .check(request.clone())
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            if (answer.decision == allow) != *want {
                return Err(format!("unexpected decision for {request:?}: {answer:?}"));
            }
            Ok(1)
        }
        Prepared::VerdictBatch(request, want) => {
            let mut client = proto::authorization_client::AuthorizationClient::new(channel.clone());
            let answer = client
                .batch_check(request.clone())
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            if answer.results.len() != want.len() {
                return Err("wrong number of batch results".to_owned());
            }
            for (result, want) in answer.results.iter().zip(want) {
                match &result.result {
                    Some(proto::batch_check_result::Result::Response(r))
                        if (r.decision == allow) == *want => {}
                    other => return Err(format!("unexpected batch item {other:?}")),
                }
            }
            Ok(want.len())
        }
        Prepared::Cerbos(request, want) => {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.map_err(|e| e.to_string())?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/cerbos.svc.v1.CerbosService/CheckResources",
            );
            let answer: cerbos::CheckResourcesResponse = grpc
                .unary(
                    tonic::Request::new(request.clone()),
                    path,
                    tonic_prost::ProstCodec::default(),
                )
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            if answer.results.len() != want.len() {
                return Err(format!(
                    "{} results for {} resources",
                    answer.results.len(),
                    want.len()
                ));
            }
            for ((result, entry), want) in answer.results.iter().zip(&request.resources).zip(want) {
                let action = &entry.actions[0];
                let effect = result.actions.get(action).copied().unwrap_or(0);
                if (effect == cerbos::EFFECT_ALLOW) != *want {
                    return Err(format!("unexpected Cerbos effect {effect} for {entry:?}"));
                }
            }
            Ok(want.len())
        }
    }
}

/// The outcome of one measurement.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Measured {
    requests: u64,
    decisions: u64,
    errors: u64,
    first_error: Option<String>,
    /// Open loop: requests never sent for want of a free slot (also counted in `errors`).
    #[serde(default)]
    skipped: u64,
    /// Errors by their first word: the gRPC code, or `unexpected` for a wrong answer.
    #[serde(default)]
    failures: std::collections::BTreeMap<String, u64>,
    seconds: f64,
    /// Latency percentiles in microseconds: p50, p90, p99, p99.9.
    percentiles: [f64; 4],
}

/// The first word of a `send` error: the gRPC code (`DeadlineExceeded: …`), or `unexpected`.
fn failure_kind(error: &str) -> String {
    error
        .split([':', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn percentiles(mut latencies: Vec<u64>) -> [f64; 4] {
    latencies.sort_unstable();
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1_000.0
    };
    [at(0.5), at(0.9), at(0.99), at(0.999)]
}

/// Closed loop: `in_flight` workers over up to four connections, each sending its next request
/// as soon as the last is answered. Bounded in time and in count.
async fn closed_loop(
    target: Target,
    addr: SocketAddr,
    prepared: Arc<Vec<Prepared>>,
    in_flight: usize,
    warmup: Duration,
    measure: Duration,
) -> Measured {
    let connections = in_flight.clamp(1, CONNECTIONS_MAX);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(connect(target, addr).await);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut workers = Vec::new();
    for worker in 0..in_flight {
        let channel = channels[worker % connections].clone();
        let prepared = Arc::clone(&prepared);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut requests, mut decisions, mut errors) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            // Bounded in count too: at most 10 million requests per worker.
            for i in (worker * 7919..).take(10_000_000) {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = send(&channel, &prepared[i % prepared.len()]).await;
                if sent < measure_from {
                    continue;
                }
                latencies.push(sent.elapsed().as_nanos() as u64);
                requests += 1;
                match result {
                    Ok(n) => decisions += n as u64,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, requests, decisions, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let (mut requests, mut decisions, mut errors) = (0, 0, 0);
    let mut first_error = None;
    for worker in workers {
        let (l, r, d, e, f) = worker.await.unwrap();
        all.extend(l);
        requests += r;
        decisions += d;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    Measured {
        requests,
        decisions,
        errors,
        first_error,
        skipped: 0,
        failures: Default::default(),
        seconds: measure.as_secs_f64(),
        percentiles: percentiles(all),
    }
}

/// Open loop: requests start on a fixed schedule (`rate` per second) whatever the answers do,
/// at most `in_flight` outstanding; latency counts from the scheduled start. The first second
/// runs at the same rate unrecorded (connections, caches). A request with no free slot is an
/// error: `in_flight` is set far above what the rate needs, so that means the server stalled.
async fn open_loop(
    target: Target,
    addr: SocketAddr,
    prepared: Arc<Vec<Prepared>>,
    rate: f64,
    in_flight: usize,
    measure: Duration,
) -> Measured {
    let connections = CONNECTIONS_MAX;
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(connect(target, addr).await);
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let warm_up = rate as u64;
    let start = Instant::now();
    let measured_from = start + Duration::from_secs(1);
    let total = warm_up + (rate * measure.as_secs_f64()) as u64;
    let mut skipped = 0u64;
    for n in 0..total {
        let scheduled = start + Duration::from_secs_f64(n as f64 / rate);
        // Tokio's timers tick in milliseconds, which would send requests in bursts and add up
        // to a millisecond of lateness to each: wait by yielding instead (the generator has a
        // core of its own), so answers are still processed meanwhile.
        while Instant::now() < scheduled {
            tokio::task::yield_now().await;
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let channel = channels[n as usize % connections].clone();
        let prepared = Arc::clone(&prepared);
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = send(&channel, &prepared[n as usize % prepared.len()]).await;
            if n >= warm_up {
                let _ = tx.send((scheduled.elapsed().as_nanos() as u64, result));
            }
            drop(permit);
        });
    }
    drop(tx);
    let mut latencies = Vec::new();
    let (mut requests, mut decisions, mut errors) = (0, 0, skipped);
    let mut first_error = (skipped > 0).then(|| format!("{skipped} requests found no free slot"));
    let mut failures = std::collections::BTreeMap::new();
    while let Some((latency, result)) = rx.recv().await {
        latencies.push(latency);
        requests += 1;
        match result {
            Ok(n) => decisions += n as u64,
            Err(e) => {
                errors += 1;
                *failures.entry(failure_kind(&e)).or_insert(0) += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Measured {
        requests,
        decisions,
        errors,
        first_error,
        skipped,
        failures,
        seconds: measured_from.elapsed().as_secs_f64(),
        percentiles: percentiles(latencies),
    }
}

/// The generator process: one measurement, printed as JSON on stdout.
fn run_generator(args: &[String]) {
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("missing {name}"))
    };
    let target = Target::parse(&get("--target"));
    let mode = if get("--mode") == "batch" {
        Mode::Batch
    } else {
        Mode::Check
    };
    let addr: SocketAddr = get("--addr").parse().unwrap();
    let in_flight: usize = get("--in-flight").parse().unwrap();
    let seconds: f64 = get("--seconds").parse().unwrap();
    let rate: f64 = get("--rate").parse().unwrap();
    let prepared = Arc::new(prepare(target, mode));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let measured = runtime.block_on(async {
        if rate > 0.0 {
            open_loop(
                target,
                addr,
                prepared,
                rate,
                in_flight,
                Duration::from_secs_f64(seconds),
            )
            .await
        } else {
            closed_loop(
                target,
                addr,
                prepared,
                in_flight,
                Duration::from_secs_f64(seconds.min(1.0)),
                Duration::from_secs_f64(seconds),
            )
            .await
        }
    });
    println!("{}", serde_json::to_string(&measured).unwrap());
}

fn measure(
    target: Target,
    addr: SocketAddr,
    mode: Mode,
    in_flight: usize,
    seconds: f64,
    rate: f64,
) -> Measured {
    let measured = generate(target, addr, mode, in_flight, seconds, rate);
    assert_eq!(
        measured.errors,
        0,
        "{} {mode:?} at {in_flight} in flight: {} errors, first: {:?}",
        target.name(),
        measured.errors,
        measured.first_error
    );
    measured
}

/// Runs one measurement in a generator process on CPU 1 and returns what it measured, errors
/// included.
fn generate(
    target: Target,
    addr: SocketAddr,
    mode: Mode,
    in_flight: usize,
    seconds: f64,
    rate: f64,
) -> Measured {
    let output = pinned(1, &std::env::current_exe().unwrap())
        .args([
            "--generator",
            "--target",
            target.name(),
            "--mode",
            if mode == Mode::Batch {
                "batch"
            } else {
                "check"
            },
            "--addr",
            &addr.to_string(),
            "--in-flight",
            &in_flight.to_string(),
            "--seconds",
            &seconds.to_string(),
            "--rate",
            &rate.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "the generator failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The most requests the open-loop run keeps outstanding: far above what half the peak rate
/// needs at these latencies (a stall of 50 ms at 20,000/s fills them), and below Verdict's
/// default concurrency limit (1024).
const OPEN_LOOP_SLOTS: usize = 1000;

/// The open-loop rates, as shares of Verdict's peak unary throughput.
const OPEN_LOOP_SHARES: [f64; 2] = [0.25, 0.5];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--noop-server") {
        return run_noop_server();
    }
    if args.iter().any(|a| a == "--generator") {
        return run_generator(&args);
    }
    if args.iter().any(|a| a == "--attacker") {
        return soak::run_attacker(&args);
    }
    if let Some(i) = args.iter().position(|a| a == "--h2load-setup") {
        return h2load::setup(Path::new(&args[i + 1]));
    }
    if let Some(i) = args.iter().position(|a| a == "--h2load-verify") {
        return h2load::verify(
            args[i + 1].parse().unwrap(),
            Path::new(&args[i + 2]),
            &args[i + 3],
        );
    }
    let full = args.iter().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 10.0 } else { 0.3 });
    let targets: Vec<Target> = match std::env::var("LOAD_TARGETS") {
        Ok(list) => list.split(',').map(Target::parse).collect(),
        Err(_) if full => vec![
            Target::Noop,
            Target::Verdict,
            Target::VerdictHttp,
            Target::Cerbos,
            Target::CerbosHttp,
        ],
        Err(_) => vec![Target::Noop, Target::Verdict, Target::VerdictHttp],
    };
    let concurrencies: Vec<usize> = match std::env::var("LOAD_IN_FLIGHT") {
        Ok(list) => list.split(',').map(|n| n.parse().unwrap()).collect(),
        Err(_) if full => vec![1, 8, 64],
        Err(_) => vec![1, 8],
    };
    let modes: Vec<Mode> = match std::env::var("LOAD_MODES") {
        Ok(list) => list
            .split(',')
            .filter(|&m| m != "soak")
            .map(|m| {
                if m == "batch" {
                    Mode::Batch
                } else {
                    Mode::Check
                }
            })
            .collect(),
        Err(_) => vec![Mode::Check, Mode::Batch],
    };
    // The soak (issue 15) runs when asked for, and briefly in test mode.
    let soak = match std::env::var("LOAD_MODES") {
        Ok(list) => list.split(',').any(|m| m == "soak"),
        Err(_) => !full,
    };
    let peak = if modes.is_empty() {
        0.0
    } else {
        tables(full, seconds, &targets, &concurrencies, &modes)
    };
    if soak {
        if targets.contains(&Target::Verdict) {
            soak::run(full, seconds, peak);
        } else {
            println!("soak: skipped, it runs against Verdict only (add it to LOAD_TARGETS)");
        }
    }
}

/// The throughput and latency tables; returns Verdict's peak unary throughput (0 if it was not
/// measured).
fn tables(
    full: bool,
    seconds: f64,
    targets: &[Target],
    concurrencies: &[usize],
    modes: &[Mode],
) -> f64 {
    println!(
        "load: {seconds} s per measurement; servers on CPU 0, generator on CPU 1; {} connections at most",
        CONNECTIONS_MAX
    );
    println!(
        "| target | request | in flight | requests/s | decisions/s | p50 µs | p90 µs | p99 µs | p99.9 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut peak_verdict_check = 0.0f64;
    let mut open_loop_rates = Vec::new();
    for &target in targets {
        let server = match target {
            Target::Verdict => start_verdict(),
            Target::VerdictHttp => start_verdict_http(),
            Target::Noop => start_noop(),
            Target::Baseline => start_baseline(),
            Target::Cerbos => start_cerbos(false),
            Target::CerbosHttp => start_cerbos(true),
        };
        for &mode in modes {
            for &in_flight in concurrencies {
                let m = measure(target, server.addr, mode, in_flight, seconds, 0.0);
                let rps = m.requests as f64 / m.seconds;
                if target == Target::Verdict && mode == Mode::Check {
                    peak_verdict_check = peak_verdict_check.max(rps);
                }
                let [p50, p90, p99, p999] = m.percentiles;
                println!(
                    "| {} | {} | {in_flight} | {rps:.0} | {:.0} | {p50:.0} | {p90:.0} | {p99:.0} | {p999:.0} |",
                    target.name(),
                    if mode == Mode::Batch {
                        "batch of 100"
                    } else {
                        "check"
                    },
                    m.decisions as f64 / m.seconds,
                );
            }
        }
        if target == Target::Verdict && full && peak_verdict_check > 0.0 {
            for share in OPEN_LOOP_SHARES {
                let rate = (peak_verdict_check * share).floor();
                print_open_loop(target, &server, rate, share, seconds);
                open_loop_rates.push((rate, share));
            }
        }
        drop(server);
    }
    // The same schedules against the no-op server: what the transport and the generator alone
    // add to the tail at those rates.
    if !open_loop_rates.is_empty() && targets.contains(&Target::Noop) {
        let noop = start_noop();
        for (rate, share) in open_loop_rates {
            print_open_loop(Target::Noop, &noop, rate, share, seconds);
        }
    }
    peak_verdict_check
}

/// Runs the open loop at `rate` (`share` of Verdict's peak) against `server` and prints its row.
fn print_open_loop(target: Target, server: &Server, rate: f64, share: f64, seconds: f64) {
    let m = measure(
        target,
        server.addr,
        Mode::Check,
        OPEN_LOOP_SLOTS,
        seconds,
        rate,
    );
    let [p50, p90, p99, p999] = m.percentiles;
    println!(
        "| {} | check, open loop at {rate:.0}/s ({:.0}% of Verdict's peak) | ≤{OPEN_LOOP_SLOTS} | {:.0} | {:.0} | {p50:.0} | {p90:.0} | {p99:.0} | {p999:.0} |",
        target.name(),
        share * 100.0,
        m.requests as f64 / m.seconds,
        m.decisions as f64 / m.seconds,
    );
}
