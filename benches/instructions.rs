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
//! entities) and `example-verdict` (the example bundle's requests). Arguments: the workload and
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
            for workload in ["owner-verdict", "owner-cedar", "example-verdict"] {
                run(workload, 1);
            }
        }
    }
}
