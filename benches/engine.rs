//! Engine benchmarks: Verdict's decision path on the example bundle, and userset membership
//! search by nesting depth. Run with `cargo bench --bench engine`; `cargo test --benches` runs
//! each once as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use verdict::bundle::{self, LoadOptions};
use verdict::engine::{self, CheckInput};
use verdict::relations::{SearchScratch, TupleIndexBuilder, parse_tuple_line};

fn example_requests() -> Vec<(&'static str, CheckInput)> {
    let input = |value: serde_json::Value| serde_json::from_value::<CheckInput>(value).unwrap();
    vec![
        (
            "nested-team-read",
            input(
                json!({"principal": "User::\"bob\"", "action": "read", "resource": "Document::\"roadmap\"", "context": {"scopes": ["documents:read"]}}),
            ),
        ),
        (
            "default-deny",
            input(
                json!({"principal": "User::\"dave\"", "action": "read", "resource": "Document::\"roadmap\"", "context": {"scopes": ["documents:read"]}}),
            ),
        ),
        (
            "function-level",
            input(
                json!({"principal": "User::\"erin\"", "action": "DeleteUser", "resource": "Api::\"admin\""}),
            ),
        ),
        (
            "properties",
            input(
                json!({"principal": "User::\"carol\"", "action": "readProfile", "resource": "User::\"bob\"", "properties": ["name", "email", "ssn"]}),
            ),
        ),
    ]
}

fn decision(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let snapshot = bundle::load(&dir, LoadOptions::default()).unwrap();
    let mut group = c.benchmark_group("decision/example-bundle");
    group.throughput(Throughput::Elements(1));
    for (name, input) in example_requests() {
        group.bench_with_input(
            BenchmarkId::new("prepare+decide", name),
            &input,
            |b, input| {
                b.iter(|| {
                    let request =
                        engine::Request::prepare(black_box(input.clone()), &snapshot).unwrap();
                    engine::decide(&snapshot, &request).unwrap()
                });
            },
        );
        let request = engine::Request::prepare(input.clone(), &snapshot).unwrap();
        group.bench_with_input(BenchmarkId::new("decide", name), &request, |b, request| {
            b.iter(|| engine::decide(&snapshot, black_box(request)).unwrap());
        });
    }
    group.finish();
}

fn membership_by_depth(c: &mut Criterion) {
    let mut group = c.benchmark_group("relations/membership-by-depth");
    for depth in [1u32, 4, 16, 32] {
        let mut builder = TupleIndexBuilder::new();
        for i in 0..depth {
            let line = format!("Team::\"t{i}\"#member@Team::\"t{}\"#member", i + 1);
            builder.add(&parse_tuple_line(&line).unwrap().unwrap());
        }
        let last = format!("Team::\"t{depth}\"#member@User::\"u\"");
        builder.add(&parse_tuple_line(&last).unwrap().unwrap());
        let index = builder.finish().unwrap();
        let team = index.type_id("Team").unwrap();
        let start = index
            .userset(
                index.entity(team, "t0").unwrap(),
                index.relation_id("member").unwrap(),
            )
            .unwrap();
        let subject = index.subject("User", "u");
        let mut scratch = SearchScratch::default();
        group.bench_with_input(BenchmarkId::from_parameter(depth), &depth, |b, _| {
            b.iter(|| index.membership(black_box(start), black_box(subject), 64, &mut scratch));
        });
    }
    group.finish();
}

/// `cargo bench` passes `--bench`; `cargo test --benches` (unoptimised smoke run) does not.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn add(builder: &mut TupleIndexBuilder, line: &str) {
    builder.add(&parse_tuple_line(line).unwrap().unwrap());
}

/// Search cost by fan-out: the start userset has `fanout` team subjects, each nested one level
/// further, and only the last leads to the user (the search visits them all).
fn membership_by_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("relations/membership-by-fanout");
    for fanout in [1usize, 10, 100, 1_000] {
        let mut builder = TupleIndexBuilder::new();
        for i in 0..fanout {
            add(
                &mut builder,
                &format!("Doc::\"d\"#viewer@Team::\"t{i}\"#member"),
            );
            add(
                &mut builder,
                &format!("Team::\"t{i}\"#member@User::\"other{i}\""),
            );
        }
        add(
            &mut builder,
            &format!("Team::\"t{}\"#member@User::\"u\"", fanout - 1),
        );
        let index = builder.finish().unwrap();
        let start = index
            .userset(
                index.entity(index.type_id("Doc").unwrap(), "d").unwrap(),
                index.relation_id("viewer").unwrap(),
            )
            .unwrap();
        let subject = index.subject("User", "u");
        let mut scratch = SearchScratch::default();
        group.bench_with_input(BenchmarkId::from_parameter(fanout), &fanout, |b, _| {
            b.iter(|| index.membership(black_box(start), black_box(subject), 64, &mut scratch));
        });
    }
    group.finish();
}

/// Search cost by total graph size at a fixed depth (4 nested teams): the tuples that do not
/// touch the searched path must not make the search slower.
fn membership_by_graph_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("relations/membership-by-graph-size");
    group.sample_size(20);
    let sizes: &[usize] = if full_run() {
        &[1_000, 10_000, 100_000, 1_000_000, 10_000_000]
    } else {
        &[1_000, 10_000]
    };
    for &size in sizes {
        let mut builder = TupleIndexBuilder::new();
        for i in 0..4 {
            add(
                &mut builder,
                &format!("Team::\"t{i}\"#member@Team::\"t{}\"#member", i + 1),
            );
        }
        add(&mut builder, "Team::\"t4\"#member@User::\"u\"");
        // Unrelated tuples: other documents, teams and users, nested the same way, none
        // reachable from the searched userset.
        let mut rng = 0x5eed_u64;
        let mut next = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let teams = (size / 10).max(10);
        for i in 0..size.saturating_sub(5) {
            let line = match i % 3 {
                0 => format!(
                    "Doc::\"d{}\"#viewer@Team::\"x{}\"#member",
                    next(size),
                    next(teams)
                ),
                1 => format!(
                    "Team::\"x{}\"#member@Team::\"x{}\"#member",
                    next(teams),
                    next(teams)
                ),
                _ => format!(
                    "Team::\"x{}\"#member@User::\"v{}\"",
                    next(teams),
                    next(size)
                ),
            };
            add(&mut builder, &line);
        }
        let index = builder.finish().unwrap();
        let team = index.type_id("Team").unwrap();
        let start = index
            .userset(
                index.entity(team, "t0").unwrap(),
                index.relation_id("member").unwrap(),
            )
            .unwrap();
        let subject = index.subject("User", "u");
        let mut scratch = SearchScratch::default();
        let tuples = index.tuple_count();
        group.bench_with_input(BenchmarkId::from_parameter(tuples), &tuples, |b, _| {
            b.iter(|| index.membership(black_box(start), black_box(subject), 64, &mut scratch));
        });
    }
    group.finish();
}

/// The same decision with and without what the server adds around it: metrics (a real
/// Prometheus recorder) and a decision log record (JSON, to a sink, every decision sampled).
fn telemetry_cost(c: &mut Criterion) {
    use verdict::telemetry::decision_log::{self, DecisionRecord};
    use verdict::telemetry::metrics::{self as telemetry_metrics, DecisionMetrics};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let snapshot = bundle::load(&dir, LoadOptions::default()).unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    telemetry_metrics::describe();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    let (_, input) = example_requests().swap_remove(0);
    let mut group = c.benchmark_group("decision/telemetry");
    let decide = || {
        let request = engine::Request::prepare(black_box(input.clone()), &snapshot).unwrap();
        let decision = engine::decide(&snapshot, &request).unwrap();
        (request, decision)
    };
    group.bench_function("without", |b| b.iter(decide));
    group.bench_function("with-metrics", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            let (request, decision) = decide();
            telemetry_metrics::record_decision(&DecisionMetrics {
                decision: decision.outcome.as_str(),
                action: metrics::SharedString::const_str("read"),
                duration: started.elapsed(),
                errored_policies: &[],
                relation_depth_exceeded: decision.relation_depth_exceeded,
            });
            black_box(request);
        });
    });
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("with-metrics-and-decision-log", |b| {
            b.iter(|| {
                let started = std::time::Instant::now();
                let (request, decision) = decide();
                telemetry_metrics::record_decision(&DecisionMetrics {
                    decision: decision.outcome.as_str(),
                    action: metrics::SharedString::const_str("read"),
                    duration: started.elapsed(),
                    errored_policies: &[],
                    relation_depth_exceeded: decision.relation_depth_exceeded,
                });
                decision_log::log(&DecisionRecord {
                    request_id: "bench",
                    caller: Some("gateway"),
                    principal: request.principal(),
                    action: request.action(),
                    resource: request.resource(),
                    decision: decision.outcome.as_str(),
                    determining_policies: &decision.determining_policies,
                    errored_policies: &[],
                    properties: &[],
                    snapshot_version: &snapshot.version,
                    latency: started.elapsed(),
                    relation_depth_exceeded: decision.relation_depth_exceeded,
                });
            });
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    decision,
    membership_by_depth,
    membership_by_fanout,
    membership_by_graph_size,
    telemetry_cost
);
criterion_main!(benches);
