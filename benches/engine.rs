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
use verdict_core::CheckInput;
use verdict_core::relations::{SearchScratch, TupleGraph, TupleIndexBuilder, parse_tuple_line};
use verdict_core::{Limits, LoadOptions, Snapshot};

#[path = "common/context_scenario.rs"]
mod context_scenario;
#[path = "common/owner_scenario.rs"]
mod owner_scenario;

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
    let snapshot = Snapshot::load(&dir, &LoadOptions::default()).unwrap();
    let mut group = c.benchmark_group("decision/example-bundle");
    group.throughput(Throughput::Elements(1));
    for (name, input) in example_requests() {
        group.bench_with_input(
            BenchmarkId::new("prepare+decide", name),
            &input,
            |b, input| {
                b.iter(|| {
                    let request = snapshot
                        .prepare(black_box(input.clone()), &Limits::default())
                        .unwrap();
                    request.decide().unwrap()
                });
            },
        );
        let request = snapshot.prepare(input.clone(), &Limits::default()).unwrap();
        group.bench_with_input(BenchmarkId::new("decide", name), &request, |b, request| {
            b.iter(|| black_box(request).decide().unwrap());
        });
    }
    group.finish();
}

/// A gateway's requests with a ten-field context under a schema (`common/context_scenario.rs`),
/// 500 distinct ones in turn: preparing (reading the context) against deciding.
fn gateway_context(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let w = context_scenario::Workload::new(dir.path(), 500);
    let prepared: Vec<_> = w
        .inputs
        .iter()
        .map(|input| {
            w.snapshot
                .prepare(input.clone(), &Limits::default())
                .unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("decision/gateway-context");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("prepare+decide", |b| {
        b.iter(|| {
            i = (i + 1) % w.inputs.len();
            let request = w
                .snapshot
                .prepare(black_box(w.inputs[i].clone()), &Limits::default())
                .unwrap();
            request.decide().unwrap()
        });
    });
    group.bench_function("decide", |b| {
        b.iter(|| {
            i = (i + 1) % prepared.len();
            black_box(&prepared[i]).decide().unwrap()
        });
    });
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
        let index = TupleGraph::from(builder.finish().unwrap());
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
        let index = TupleGraph::from(builder.finish().unwrap());
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
        let index = TupleGraph::from(builder.finish().unwrap());
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
    let snapshot = Snapshot::load(&dir, &LoadOptions::default()).unwrap();
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
        let request = snapshot
            .prepare(black_box(input.clone()), &Limits::default())
            .unwrap();
        let decision = request.decide().unwrap();
        (request, decision)
    };
    group.bench_function("without", |b| b.iter(decide));
    group.bench_function("with-metrics", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            let (request, decision) = decide();
            telemetry_metrics::record_decision(&DecisionMetrics {
                decision: decision.outcome.as_str(),
                front_end: "grpc",
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
                    front_end: "grpc",
                    action: metrics::SharedString::const_str("read"),
                    duration: started.elapsed(),
                    errored_policies: &[],
                    relation_depth_exceeded: decision.relation_depth_exceeded,
                });
                decision_log::log(&DecisionRecord {
                    request_id: "bench",
                    caller: Some("gateway"),
                    front_end: "grpc",
                    route: None,
                    principal: request.principal(),
                    action: request.action(),
                    resource: request.resource(),
                    decision: decision.outcome.as_str(),
                    determining_policies: &decision.determining_policies,
                    errored_policies: &[],
                    properties: &[],
                    snapshot_version: snapshot.version(),
                    latency: started.elapsed(),
                    relation_depth_exceeded: decision.relation_depth_exceeded,
                    trace_id: None,
                });
            });
        });
    });
    group.finish();
}

/// The load benchmark's scenario (`benches/common/owner_scenario.rs`): Verdict's decision,
/// with request preparation, against cedar-policy's `is_authorized` on the same policies and
/// the equivalent materialised entities (users with their roles, documents pointing at their
/// owner userset, owners as its members), built outside the timed loop. The same decision is
/// asserted for every request first. This is the floor for the gRPC benchmark: no server can
/// answer a `Check` with less work than Cedar's own evaluation.
fn owner_scenario(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let workload = owner_scenario::Workload::new(dir.path(), 500);
    let owner_scenario::Workload {
        snapshot,
        inputs,
        cedar_entities,
        cedar_requests,
        ..
    } = &workload;
    let authorizer = cedar_policy::Authorizer::new();
    let mut group = c.benchmark_group("decision/owner-scenario");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("verdict-prepare+decide", |b| {
        b.iter(|| {
            for input in inputs {
                let request = snapshot
                    .prepare(black_box(input.clone()), &Limits::default())
                    .unwrap();
                black_box(request.decide().unwrap());
            }
        });
    });
    group.bench_function("cedar-is_authorized", |b| {
        b.iter(|| {
            for request in cedar_requests {
                black_box(authorizer.is_authorized(
                    black_box(request),
                    snapshot.policies(),
                    cedar_entities,
                ));
            }
        });
    });
    group.finish();
}

/// The whole `Check` handler (conversion, limits, preparation, decision, metrics, the span and
/// the unsampled decision log) on the example bundle, without the transport: what a unary
/// request costs the server beyond tonic's own work. The subscriber and recorder are the
/// server's (JSON logs at `info`, the Prometheus recorder).
fn handler(c: &mut Criterion) {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use verdict::api::proto::authorization_server::Authorization;
    use verdict::api::{AuthorizationService, proto};
    use verdict::serving::SnapshotHandle;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let snapshot = Snapshot::load(&dir, &LoadOptions::default()).unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .finish();
    let service =
        AuthorizationService::new(Arc::new(SnapshotHandle::with(snapshot)), Limits::default());
    let entity = |t: &str, id: &str| {
        Some(proto::EntityRef {
            r#type: t.to_owned(),
            id: id.to_owned(),
        })
    };
    let requests = [
        (
            "nested-team-read",
            proto::CheckRequest {
                contextual_tuples: Default::default(),
                principal: entity("User", "bob"),
                action: "read".to_owned(),
                resource: entity("Document", "roadmap"),
                context: Some(prost_types::Struct {
                    fields: [(
                        "scopes".to_owned(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::ListValue(
                                prost_types::ListValue {
                                    values: vec![prost_types::Value {
                                        kind: Some(prost_types::value::Kind::StringValue(
                                            "documents:read".to_owned(),
                                        )),
                                    }],
                                },
                            )),
                        },
                    )]
                    .into(),
                }),
                entities: Vec::new(),
                properties: Vec::new(),
                token: String::new(),
                consistency: None,
            },
        ),
        (
            "function-level",
            proto::CheckRequest {
                contextual_tuples: Default::default(),
                principal: entity("User", "erin"),
                action: "DeleteUser".to_owned(),
                resource: entity("Api", "admin"),
                context: None,
                entities: Vec::new(),
                properties: Vec::new(),
                token: String::new(),
                consistency: None,
            },
        ),
    ];
    let mut group = c.benchmark_group("handler/example-bundle/check");
    group.throughput(Throughput::Elements(1));
    tracing::subscriber::with_default(subscriber, || {
        for (name, request) in &requests {
            group.bench_function(*name, |b| {
                b.iter(|| {
                    let call = service.check(tonic::Request::new(black_box(request.clone())));
                    let mut call = std::pin::pin!(call);
                    // A plain check never waits: it completes on its first poll.
                    match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                        Poll::Ready(answer) => black_box(answer.unwrap()),
                        Poll::Pending => panic!("a plain check waited"),
                    }
                });
            });
        }
    });
    group.finish();
}

/// The most expensive request the default limits admit, and the cheapest refusal of one they do
/// not, each from encoded bytes through the whole handler (protobuf decoding, conversion, limits,
/// preparation, 101 evaluations). Issue 15's target: under 10 ms of CPU for the admitted one.
///
/// The admitted requests spend the default `--max-request-work` in three shapes (below), over
/// a context of ten sets that the policies compare with `containsAny` and `containsAll` on
/// every evaluation. The refused one is issue 15's attack: a message just under 4 MiB whose
/// context holds one set of 370,000 strings.
fn worst_admitted_request(c: &mut Criterion) {
    use std::sync::Arc;

    use prost::Message;
    use prost_types::value::Kind;
    use verdict::api::proto::authorization_server::Authorization;
    use verdict::api::{AuthorizationService, proto};
    use verdict::serving::SnapshotHandle;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("worst.cedar"),
        r#"
@id("sets") permit (principal, action == Action::"read", resource)
when { context.s0.containsAny(context.s1) || (principal has tag && context.s2.contains(principal.tag)) };
@id("all") permit (principal, action == Action::"read", resource)
when { context.s3.containsAll(context.s4) || context.s5.containsAny(context.s6) };
@id("no-late") forbid (principal, action, resource)
when { context.s7.containsAny(context.s8) && context.s9.contains("late") };
"#,
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let service =
        AuthorizationService::new(Arc::new(SnapshotHandle::with(snapshot)), Limits::default());
    let string = |s: String| prost_types::Value {
        kind: Some(Kind::StringValue(s)),
    };
    let set = |name: &str, len: usize| prost_types::Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: (0..len).map(|i| string(format!("{name}-{i}"))).collect(),
        })),
    };
    let entity = |t: &str, id: &str| proto::EntityRef {
        r#type: t.to_owned(),
        id: id.to_owned(),
    };
    let with_context = |context: Vec<(String, prost_types::Value)>| proto::CheckRequest {
        contextual_tuples: Default::default(),
        principal: Some(entity("User", "e0")),
        action: "read".to_owned(),
        resource: Some(entity("Doc", "d")),
        context: Some(prost_types::Struct {
            fields: context.into_iter().collect(),
        }),
        entities: Vec::new(),
        properties: Vec::new(),
        token: String::new(),
        consistency: None,
    };
    // Shapes at the edge of the default work limit (2,000 units: values, entities and
    // properties): values only (1,989 strings in ten sets), 100 entities with an attribute each
    // and the rest values, and 100 properties with the rest values.
    let shape = |properties: usize, set_len: usize, last_len: usize, entities: usize| {
        let mut request = with_context(
            (0..10)
                .map(|i| {
                    let len = if i == 9 { last_len } else { set_len };
                    (format!("s{i}"), set(&format!("v{i}"), len))
                })
                .collect(),
        );
        request.entities = (0..entities)
            .map(|i| proto::Entity {
                uid: Some(entity("User", &format!("e{i}"))),
                attrs: Some(prost_types::Struct {
                    fields: [("tag".to_owned(), string(format!("t{i}")))].into(),
                }),
                parents: Vec::new(),
            })
            .collect();
        request.properties = (0..properties).map(|i| format!("p{i}")).collect();
        request
    };
    // Units: 1 context record + 10 sets + their members, + 10 per entity (8 for itself, its
    // attribute record, the value), + 1 per property.
    let admitted = [
        ("values", shape(0, 199, 198, 0)),
        ("100-entities", shape(0, 99, 98, 100)),
        ("100-properties", shape(100, 189, 188, 0)),
    ];
    // Short members, as the attack had them: the message stays under the 4 MiB size limit.
    let members = prost_types::Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: (0..370_000).map(|i: u32| string(i.to_string())).collect(),
        })),
    };
    let refused = with_context(vec![("ips".to_owned(), members)]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |bytes: &[u8]| {
        let request = proto::CheckRequest::decode(bytes).unwrap();
        runtime.block_on(service.check(tonic::Request::new(request)))
    };
    let admitted: Vec<(&str, Vec<u8>)> = admitted
        .into_iter()
        .map(|(name, request)| (name, request.encode_to_vec()))
        .collect();
    let refused = refused.encode_to_vec();
    assert!(refused.len() < verdict::config::DEFAULT_MAX_MESSAGE_BYTES);
    // Each is what it claims before anything is timed: admitted and decided, or refused.
    for (name, bytes) in &admitted {
        let answer = run(bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        eprintln!(
            "worst admitted, {name}: {} bytes, {} properties decided",
            bytes.len(),
            answer.into_inner().properties.len()
        );
    }
    let status = run(&refused).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("set and record size limit"),
        "{status:?}"
    );
    eprintln!("refused large set: {} bytes", refused.len());
    let mut group = c.benchmark_group("limits/handler-from-bytes");
    group.sample_size(20);
    for (name, bytes) in &admitted {
        group.bench_function(format!("worst-admitted/{name}"), |b| {
            b.iter(|| black_box(run(black_box(bytes)).unwrap()))
        });
    }
    // The server counts a message on the wire before decoding it (`verdict::api::prescan`, in
    // the admission layer): that is what the refusal costs.
    let limits = Limits::default();
    assert!(verdict::api::prescan(verdict::api::CHECK_PATH, &refused, &limits).is_err());
    group.bench_function("large-set-refused", |b| {
        b.iter(|| {
            black_box(verdict::api::prescan(
                verdict::api::CHECK_PATH,
                black_box(&refused),
                &limits,
            ))
            .unwrap_err()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    worst_admitted_request,
    decision,
    gateway_context,
    owner_scenario,
    handler,
    membership_by_depth,
    membership_by_fanout,
    membership_by_graph_size,
    telemetry_cost
);
criterion_main!(benches);
