//! Instructions per decision, counted by valgrind's callgrind: repeatable where timings on a
//! shared machine wobble. The program runs one workload a fixed number of times inside a
//! function of its own, so callgrind counts only that function:
//!
//! ```sh
//! benches/instructions.sh            # builds, runs each workload under callgrind, prints a table
//! ```
//!
//! Workloads: `owner-verdict` / `owner-cedar` (the load benchmark's scenario, Verdict's request
//! preparation and decision against cedar-policy's `is_authorized` on the materialised
//! entities), `example-verdict` (the example bundle's requests), and the gRPC handler on the
//! owner scenario's decoded messages: `owner-handler` (decision log off), `owner-batch` (the
//! same checks in `BatchCheck`s of 100), `owner-handler-log-queued` (the decision log as
//! shipped, default sampling, its writer thread counted too) and `owner-handler-log-tracing`
//! (records formatted and written through `tracing` on the request's thread, as before issue
//! 20), and `context-verdict` / `context-handler` (a gateway's requests with a ten-field
//! context under a schema, in the core and through the gRPC handler with the context as a
//! protobuf `Struct`). Arguments: the workload and
//! the number of passes over its requests. Without arguments (`cargo test --benches`) every
//! workload runs once, as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::hint::black_box;
use std::path::Path;

use verdict_core::CheckInput;
use verdict_core::{Limits, LoadOptions, Snapshot};

/// The server's allocator (see `src/main.rs`), so that what is measured here is what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/context_scenario.rs"]
mod context_scenario;
#[path = "common/owner_scenario.rs"]
mod owner_scenario;

/// Requests per pass.
const REQUESTS: usize = 500;

#[inline(never)]
fn measured_verdict(snapshot: &Snapshot, inputs: &[CheckInput], passes: usize) {
    for _ in 0..passes {
        for input in inputs {
            let request = snapshot
                .prepare(black_box(input.clone()), &Limits::default())
                .unwrap();
            black_box(request.decide().unwrap());
        }
    }
}

#[inline(never)]
fn measured_cedar(
    policies: &cedar_policy::PolicySet,
    entities: &cedar_policy::Entities,
    requests: &[cedar_policy::Request],
    passes: usize,
) {
    let authorizer = cedar_policy::Authorizer::new();
    for _ in 0..passes {
        for request in requests {
            black_box(authorizer.is_authorized(black_box(request), policies, entities));
        }
    }
}

/// The gRPC handler on decoded messages, the whole way from a `CheckRequest` to a
/// `CheckResponse` (conversion, limits, preparation, decision, metrics, the decision log when
/// sampled): what a unary `Check` costs the server besides the transport.
#[inline(never)]
fn measured_handler(
    service: &verdict::api::AuthorizationService,
    requests: &[verdict::api::proto::CheckRequest],
    passes: usize,
) {
    use verdict::api::proto::authorization_server::Authorization;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..passes {
        for request in requests {
            let request = tonic::Request::new(black_box(request.clone()));
            black_box(runtime.block_on(service.check(request)).unwrap());
        }
    }
    // Everything the decision log's writer thread was given is written before this returns,
    // so that its instructions (counted under `drain`, see instructions.sh) are all counted.
    verdict::telemetry::decision_log::close(std::time::Duration::from_secs(600));
}

/// The same requests in `BatchCheck`s of 100.
#[inline(never)]
fn measured_batch(
    service: &verdict::api::AuthorizationService,
    requests: &[verdict::api::proto::CheckRequest],
    passes: usize,
) {
    use verdict::api::proto::authorization_server::Authorization;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..passes {
        for checks in requests.chunks(100) {
            let request = tonic::Request::new(verdict::api::proto::BatchCheckRequest {
                checks: black_box(checks.to_vec()),
                consistency: None,
            });
            black_box(runtime.block_on(service.batch_check(request)).unwrap());
        }
    }
}

/// The handler for `snapshot` with the given decision log sampling.
fn handler_service(
    snapshot: Snapshot,
    decision_log: verdict::telemetry::decision_log::DecisionLogSettings,
) -> verdict::api::AuthorizationService {
    verdict::api::AuthorizationService::new(
        std::sync::Arc::new(verdict::serving::SnapshotHandle::with(snapshot)),
        Limits::default(),
    )
    .with_decision_log(decision_log)
}

/// The owner scenario's checks as protobuf messages.
fn owner_requests(checks: &[owner_scenario::Check]) -> Vec<verdict::api::proto::CheckRequest> {
    use verdict::api::proto;
    let entity = |t: &str, id: String| proto::EntityRef {
        r#type: t.to_owned(),
        id,
    };
    checks
        .iter()
        .map(|c| proto::CheckRequest {
            contextual_tuples: Default::default(),
            principal: Some(entity("User", format!("u{}", c.user))),
            action: c.action.to_owned(),
            resource: Some(entity("Document", format!("d{}", c.document))),
            context: None,
            entities: Vec::new(),
            properties: Vec::new(),
            token: String::new(),
            consistency: None,
        })
        .collect()
}

/// The context scenario's requests as protobuf messages, their context a `Struct`.
fn context_requests(requests: &[serde_json::Value]) -> Vec<verdict::api::proto::CheckRequest> {
    use verdict::api::proto;
    let entity = |text: &serde_json::Value| {
        let uid: cedar_policy::EntityUid = text.as_str().unwrap().parse().unwrap();
        proto::EntityRef {
            r#type: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        }
    };
    requests
        .iter()
        .map(|r| proto::CheckRequest {
            contextual_tuples: Default::default(),
            principal: Some(entity(&r["principal"])),
            action: r["action"].as_str().unwrap().to_owned(),
            resource: Some(entity(&r["resource"])),
            context: Some(context_scenario::to_struct(
                r["context"].as_object().unwrap(),
            )),
            entities: Vec::new(),
            properties: Vec::new(),
            token: String::new(),
            consistency: None,
        })
        .collect()
}

fn example_inputs() -> Vec<CheckInput> {
    let text = [
        r#"{"principal": "User::\"bob\"", "action": "read", "resource": "Document::\"roadmap\"", "context": {"scopes": ["documents:read"]}}"#,
        r#"{"principal": "User::\"dave\"", "action": "read", "resource": "Document::\"roadmap\"", "context": {"scopes": ["documents:read"]}}"#,
        r#"{"principal": "User::\"erin\"", "action": "DeleteUser", "resource": "Api::\"admin\""}"#,
        r#"{"principal": "User::\"carol\"", "action": "readProfile", "resource": "User::\"bob\"", "properties": ["name", "email", "ssn"]}"#,
    ];
    text.iter()
        .cycle()
        .take(REQUESTS)
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
}

fn run(workload: &str, passes: usize) {
    let dir = tempfile::tempdir().unwrap();
    match workload {
        "owner-verdict" | "owner-cedar" => {
            let w = owner_scenario::Workload::new(dir.path(), REQUESTS);
            if workload == "owner-verdict" {
                measured_verdict(&w.snapshot, &w.inputs, passes);
            } else {
                measured_cedar(
                    w.snapshot.policies(),
                    &w.cedar_entities,
                    &w.cedar_requests,
                    passes,
                );
            }
        }
        "owner-handler"
        | "owner-handler-log-queued"
        | "owner-handler-log-tracing"
        | "owner-batch" => {
            use verdict::telemetry::{LogFormat, decision_log};
            let w = owner_scenario::Workload::new(dir.path(), REQUESTS);
            let requests = owner_requests(&w.checks);
            // Metrics on, as the server runs (installed once per process: the smoke run goes
            // through several workloads).
            static METRICS: std::sync::OnceLock<()> = std::sync::OnceLock::new();
            METRICS.get_or_init(|| {
                std::mem::forget(verdict::telemetry::metrics::install().unwrap());
            });
            let sampling = match workload {
                "owner-handler" | "owner-batch" => decision_log::DecisionLogSettings::OFF,
                _ => decision_log::DecisionLogSettings::default(),
            };
            match workload {
                // As shipped: the queued writer, JSON lines, into a sink instead of stderr (after
                // the tracing subscriber, whose filter lets the decision target through, as in
                // `verdict serve`).
                "owner-handler-log-queued" => {
                    tracing_subscriber::fmt()
                        .json()
                        .with_writer(std::io::sink)
                        .init();
                    decision_log::install(Box::new(std::io::sink()), LogFormat::Json, 8192)
                        .unwrap();
                }
                // Before issue 20: records formatted by tracing-subscriber's JSON formatter
                // and written on the request's thread (here into a sink).
                "owner-handler-log-tracing" => {
                    tracing_subscriber::fmt()
                        .json()
                        .with_writer(std::io::sink)
                        .init();
                }
                _ => {}
            }
            let service = handler_service(w.snapshot, sampling);
            if workload == "owner-batch" {
                measured_batch(&service, &requests, passes);
            } else {
                measured_handler(&service, &requests, passes);
            }
        }
        "context-verdict" => {
            let w = context_scenario::Workload::new(dir.path(), REQUESTS);
            measured_verdict(&w.snapshot, &w.inputs, passes);
        }
        "context-handler" => {
            let w = context_scenario::Workload::new(dir.path(), REQUESTS);
            let requests = context_requests(&w.requests);
            let service = handler_service(
                w.snapshot,
                verdict::telemetry::decision_log::DecisionLogSettings::OFF,
            );
            measured_handler(&service, &requests, passes);
        }
        "example-verdict" => {
            let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
            let snapshot = Snapshot::load(&policies, &LoadOptions::default()).unwrap();
            measured_verdict(&snapshot, &example_inputs(), passes);
        }
        other => panic!("unknown workload {other}"),
    }
    println!("{workload}: {} decisions", passes * REQUESTS);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [workload, passes] => run(workload, passes.parse().unwrap()),
        _ => {
            for workload in [
                "owner-verdict",
                "owner-cedar",
                "example-verdict",
                "owner-handler",
                "owner-batch",
                "context-verdict",
                "context-handler",
            ] {
                run(workload, 1);
            }
        }
    }
}
