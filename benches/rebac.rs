//! Verdict against Cedar's own `is_authorized` on generated ReBAC workloads, modelled on the ones
//! the Cedar paper used to compare Cedar, OpenFGA and Rego:
//!
//! - **github**: users, nested teams, organizations and repositories; each repository has the
//!   roles reader ⊇ triager ⊇ writer ⊇ maintainer ⊇ admin (each role's members also hold the
//!   roles below it), granted to users, teams and organization members; the actions pull,
//!   triage, push, maintain and admin need the matching role.
//! - **drive**: users, nested groups, nested folders and documents in folders; owner and viewer
//!   relations on folders and documents, inherited from the parent folder; an owner is also a
//!   viewer; a `public` flag on documents lets anyone read.
//!
//! Each graph is generated from a fixed seed with N entities per type, every possible edge added
//! with probability 0.05 (nesting only towards lower indexes, so teams, groups and folders form
//! DAGs), for N = 5, 10, 20, 50 (the paper's sizes), 1,000 and 10,000. 500 requests per graph
//! are drawn uniformly over the actions and the existing principals and resources.
//!
//! In the same criterion group: Verdict's decision (`decide` on a prepared request: the entity
//! slice, the relation searches and Cedar's evaluation on the slice), the same with request
//! preparation timed too (`Request::prepare`: uid parsing, context, schema checks; protobuf
//! decoding is never included), and cedar-policy's `is_authorized` on the equivalent fully
//! materialised `Entities` (every userset an entity, every subject a child of the usersets it is
//! in, transitive closure computed by Cedar), built outside the timed loop with the requests. Before timing, both must give the same decision
//! and the same determining policies for every request.
//!
//! Above N = 2,000 ([`CEDAR_MAX_N`]) Cedar's materialised view is not built: its transitive
//! closure outgrows the machine (each size prints what the view cost, so the growth is on
//! record), and Verdict runs alone, its tuples streamed to the bundle's file (about 68 million
//! for github at N = 10,000).
//!
//! `cargo bench --bench rebac` runs everything; `cargo bench --bench rebac -- github/N=50`
//! filters (a plain substring of the benchmark id; workloads it excludes are not built);
//! `REBAC_SIZES=1000,2000` picks the sizes.
//! `cargo test --benches` runs N = 5 and 20 once each, unoptimised, as a smoke test (the
//! decisions are still compared).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use verdict_core::{CheckInput, EntityRef, Outcome};
use verdict_core::{Limits, LoadOptions, Snapshot};

/// Requests per generated graph.
const REQUESTS: usize = 500;
/// Probability of each possible edge.
const EDGE_PROBABILITY: f64 = 0.05;

/// splitmix64: a small deterministic generator, so every run builds the same graphs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One relationship tuple: `object#relation@subject`, the subject an entity or a userset.
#[derive(Clone)]
struct Tuple {
    object: (&'static str, String),
    relation: &'static str,
    subject: (&'static str, String),
    subject_relation: Option<&'static str>,
}

impl Tuple {
    fn line(&self) -> String {
        let (ot, oi) = &self.object;
        let (st, si) = &self.subject;
        match self.subject_relation {
            Some(r) => format!("{ot}::\"{oi}\"#{}@{st}::\"{si}\"#{r}", self.relation),
            None => format!("{ot}::\"{oi}\"#{}@{st}::\"{si}\"", self.relation),
        }
    }
}

/// Where a generator puts its tuples: a list (when Cedar's materialised view is built from
/// them too), or straight into the bundle's tuple file (sizes where only Verdict runs).
trait Sink {
    fn push(&mut self, tuple: Tuple);
}

impl Sink for Vec<Tuple> {
    fn push(&mut self, tuple: Tuple) {
        Vec::push(self, tuple);
    }
}

/// Writes tuple lines to a file and counts them.
struct TupleFile {
    out: std::io::BufWriter<std::fs::File>,
    count: usize,
}

impl Sink for TupleFile {
    fn push(&mut self, tuple: Tuple) {
        use std::io::Write as _;
        writeln!(self.out, "{}", tuple.line()).unwrap();
        self.count += 1;
    }
}

/// Adds the tuple `make` builds with probability [`EDGE_PROBABILITY`] (built only then).
fn edge(sink: &mut impl Sink, rng: &mut Rng, make: impl FnOnce() -> Tuple) {
    if rng.chance(EDGE_PROBABILITY) {
        sink.push(make());
    }
}

/// A generated workload: the bundle's files, the relations each object type has, the
/// requests, and the flags that live in entity data. The tuples went to a [`Sink`].
struct Model {
    policies: String,
    /// Object type → its relations (every entity of the type gets them all as attributes).
    relations: BTreeMap<&'static str, Vec<&'static str>>,
    /// Documents with `public: true` (drive only).
    public: BTreeSet<String>,
    /// Entity types and ids that exist, for the request generator.
    principals: Vec<(&'static str, String)>,
    resources: Vec<(&'static str, String)>,
    actions: Vec<&'static str>,
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

const GITHUB_ROLES: [&str; 5] = ["reader", "triager", "writer", "maintainer", "admin"];
const GITHUB_ACTIONS: [&str; 5] = ["pull", "triage", "push", "maintain", "admin"];

fn github<S: Sink>(n: usize, seed: u64, tuples: &mut S) -> Model {
    let mut rng = Rng(seed);
    let (users, teams, orgs, repos) = (ids("u", n), ids("t", n), ids("o", n), ids("r", n));
    let entity = |t: &'static str, id: &String| (t, id.clone());
    for (i, team) in teams.iter().enumerate() {
        for user in &users {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Team", team),
                relation: "member",
                subject: entity("User", user),
                subject_relation: None,
            });
        }
        // Nested teams: members of a lower-indexed team are members of this one.
        for inner in &teams[..i] {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Team", team),
                relation: "member",
                subject: entity("Team", inner),
                subject_relation: Some("member"),
            });
        }
    }
    for org in &orgs {
        for user in &users {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Org", org),
                relation: "member",
                subject: entity("User", user),
                subject_relation: None,
            });
        }
    }
    for repo in &repos {
        // The role hierarchy, on every repository.
        for pair in GITHUB_ROLES.windows(2) {
            tuples.push(Tuple {
                object: entity("Repo", repo),
                relation: pair[0],
                subject: entity("Repo", repo),
                subject_relation: Some(pair[1]),
            });
        }
        for role in GITHUB_ROLES {
            for user in &users {
                edge(tuples, &mut rng, || Tuple {
                    object: entity("Repo", repo),
                    relation: role,
                    subject: entity("User", user),
                    subject_relation: None,
                });
            }
            for team in &teams {
                edge(tuples, &mut rng, || Tuple {
                    object: entity("Repo", repo),
                    relation: role,
                    subject: entity("Team", team),
                    subject_relation: Some("member"),
                });
            }
        }
        // Organization base permission: members of an owning organization read.
        for org in &orgs {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Repo", repo),
                relation: "reader",
                subject: entity("Org", org),
                subject_relation: Some("member"),
            });
        }
    }
    let mut policies = String::new();
    for (action, role) in GITHUB_ACTIONS.iter().zip(GITHUB_ROLES) {
        writeln!(
            policies,
            "@id(\"{action}\")\npermit (principal, action == Action::\"{action}\", resource is Repo)\nwhen {{ principal in resource.{role} }};"
        )
        .unwrap();
    }
    Model {
        policies,
        relations: BTreeMap::from([
            ("Repo", GITHUB_ROLES.to_vec()),
            ("Team", vec!["member"]),
            ("Org", vec!["member"]),
        ]),
        public: BTreeSet::new(),
        principals: users.iter().map(|u| ("User", u.clone())).collect(),
        resources: repos.iter().map(|r| ("Repo", r.clone())).collect(),
        actions: GITHUB_ACTIONS.to_vec(),
    }
}

fn drive<S: Sink>(n: usize, seed: u64, tuples: &mut S) -> Model {
    let mut rng = Rng(seed);
    let (users, groups, folders, docs) = (ids("u", n), ids("g", n), ids("f", n), ids("d", n));
    let entity = |t: &'static str, id: &String| (t, id.clone());
    for (i, group) in groups.iter().enumerate() {
        for user in &users {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Group", group),
                relation: "member",
                subject: entity("User", user),
                subject_relation: None,
            });
        }
        for inner in &groups[..i] {
            edge(tuples, &mut rng, || Tuple {
                object: entity("Group", group),
                relation: "member",
                subject: entity("Group", inner),
                subject_relation: Some("member"),
            });
        }
    }
    // Folders nest under lower-indexed folders and inherit owners and viewers from them;
    // documents sit in folders and inherit the same way.
    let grants = |tuples: &mut S, rng: &mut Rng, object: (&'static str, String)| {
        // An owner is also a viewer.
        tuples.push(Tuple {
            object: object.clone(),
            relation: "viewer",
            subject: object.clone(),
            subject_relation: Some("owner"),
        });
        for user in &users {
            for relation in ["owner", "viewer"] {
                edge(tuples, rng, || Tuple {
                    object: object.clone(),
                    relation,
                    subject: entity("User", user),
                    subject_relation: None,
                });
            }
        }
        for group in &groups {
            edge(tuples, rng, || Tuple {
                object: object.clone(),
                relation: "viewer",
                subject: entity("Group", group),
                subject_relation: Some("member"),
            });
        }
    };
    for (i, folder) in folders.iter().enumerate() {
        grants(tuples, &mut rng, entity("Folder", folder));
        for parent in &folders[..i] {
            if rng.chance(EDGE_PROBABILITY) {
                for relation in ["owner", "viewer"] {
                    tuples.push(Tuple {
                        object: entity("Folder", folder),
                        relation,
                        subject: entity("Folder", parent),
                        subject_relation: Some(relation),
                    });
                }
            }
        }
    }
    let mut public = BTreeSet::new();
    for doc in &docs {
        grants(tuples, &mut rng, entity("Document", doc));
        for folder in &folders {
            if rng.chance(EDGE_PROBABILITY) {
                for relation in ["owner", "viewer"] {
                    tuples.push(Tuple {
                        object: entity("Document", doc),
                        relation,
                        subject: entity("Folder", folder),
                        subject_relation: Some(relation),
                    });
                }
            }
        }
        if rng.chance(EDGE_PROBABILITY) {
            public.insert(doc.clone());
        }
    }
    let policies = "\
@id(\"read\")
permit (principal, action == Action::\"read\", resource is Document)
when { principal in resource.viewer };

@id(\"read-public\")
permit (principal, action == Action::\"read\", resource is Document)
when { resource has public && resource.public };

@id(\"write\")
permit (principal, action == Action::\"write\", resource is Document)
when { principal in resource.owner };

@id(\"share\")
permit (principal, action == Action::\"share\", resource is Document)
when { principal in resource.owner };
"
    .to_owned();
    Model {
        policies,
        relations: BTreeMap::from([
            ("Group", vec!["member"]),
            ("Folder", vec!["owner", "viewer"]),
            ("Document", vec!["owner", "viewer"]),
        ]),
        public,
        principals: users.iter().map(|u| ("User", u.clone())).collect(),
        resources: docs.iter().map(|d| ("Document", d.clone())).collect(),
        actions: vec!["read", "write", "share"],
    }
}

/// Verdict's side of a workload: the bundle (its tuple file already written to `dir`) and
/// the requests.
struct VerdictSide {
    dir: tempfile::TempDir,
    snapshot: Snapshot,
    inputs: Vec<CheckInput>,
    load_seconds: f64,
}

impl VerdictSide {
    /// Writes the rest of the bundle next to `dir`'s tuple file, loads it, and draws the
    /// requests.
    fn new(dir: tempfile::TempDir, model: &Model, seed: u64) -> Self {
        std::fs::write(dir.path().join("policies.cedar"), &model.policies).unwrap();
        let public: Vec<serde_json::Value> = model
            .public
            .iter()
            .map(|d| {
                serde_json::json!({"uid": {"type": "Document", "id": d}, "attrs": {"public": true}, "parents": []})
            })
            .collect();
        std::fs::write(
            dir.path().join("data.entities.json"),
            serde_json::to_string(&public).unwrap(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        let load_seconds = started.elapsed().as_secs_f64();
        let mut rng = Rng(seed ^ 0xfeed);
        let inputs: Vec<CheckInput> = (0..REQUESTS)
            .map(|_| {
                let (pt, pi) = &model.principals[rng.below(model.principals.len())];
                let (rt, ri) = &model.resources[rng.below(model.resources.len())];
                CheckInput {
                    principal: EntityRef {
                        entity_type: (*pt).to_owned(),
                        id: pi.clone(),
                    },
                    action: model.actions[rng.below(model.actions.len())].to_owned(),
                    resource: EntityRef {
                        entity_type: (*rt).to_owned(),
                        id: ri.clone(),
                    },
                    context: serde_json::Map::new(),
                    entities: Vec::new(),
                    verified_principal: None,
                    properties: Vec::new(),
                }
            })
            .collect();
        Self {
            dir,
            snapshot,
            inputs,
            load_seconds,
        }
    }
}

/// Everything one criterion group needs, built outside the timed loops.
struct Workload {
    verdict: VerdictSide,
    cedar_policies: PolicySet,
    cedar_entities: Entities,
    cedar_requests: Vec<cedar_policy::Request>,
    tuples: usize,
    /// What building Cedar's materialised view cost: seconds, ancestor entries (the
    /// transitive closure Cedar stores), and the growth of the resident set in MiB.
    cedar_build: (f64, usize, f64),
}

fn uid(entity_type: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{entity_type}::\"{id}\"")).unwrap()
}

/// This process's resident set, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Workload {
    fn new(model: &Model, tuples: &[Tuple], seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for tuple in tuples {
            text.push_str(&tuple.line());
            text.push('\n');
        }
        std::fs::write(dir.path().join("graph.tuples"), text).unwrap();
        let verdict = VerdictSide::new(dir, model, seed);
        let snapshot = &verdict.snapshot;
        let inputs = &verdict.inputs;
        let started = std::time::Instant::now();
        let rss_before = rss_mib();

        // Cedar's view: every userset is an entity; a subject is a child of each userset that
        // lists it; objects point at their usersets through relation attributes.
        let userset = |t: &str, i: &str, r: &str| snapshot.userset_uid(t, i, r);
        let mut parents: BTreeMap<EntityUid, BTreeSet<EntityUid>> = BTreeMap::new();
        for tuple in tuples {
            let (ot, oi) = &tuple.object;
            let (st, si) = &tuple.subject;
            let child = match tuple.subject_relation {
                Some(r) => userset(st, si, r),
                None => uid(st, si),
            };
            parents
                .entry(child)
                .or_default()
                .insert(userset(ot, oi, tuple.relation));
        }
        let mut objects: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (t, i) in model.principals.iter().chain(&model.resources) {
            objects.insert((t, i));
        }
        for tuple in tuples {
            objects.insert((tuple.object.0, &tuple.object.1));
            if tuple.subject_relation.is_none() {
                objects.insert((tuple.subject.0, &tuple.subject.1));
            }
        }
        let mut entities = Vec::new();
        for (t, i) in objects {
            let entity_uid = uid(t, i);
            let mut attrs: BTreeMap<String, RestrictedExpression> = model
                .relations
                .get(t)
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        (*r).to_owned(),
                        RestrictedExpression::new_entity_uid(userset(t, i, r)),
                    )
                })
                .collect();
            if t == "Document" && model.public.contains(i) {
                attrs.insert("public".to_owned(), RestrictedExpression::new_bool(true));
            }
            let ps = parents.remove(&entity_uid).unwrap_or_default();
            entities.push(
                Entity::new(
                    entity_uid,
                    attrs.into_iter().collect(),
                    ps.into_iter().collect(),
                )
                .unwrap(),
            );
        }
        for (userset_uid, ps) in parents {
            entities.push(Entity::new_no_attrs(userset_uid, ps.into_iter().collect()));
        }
        let cedar_entities = Entities::from_entities(entities, None).unwrap();
        let ancestors = cedar_entities
            .iter()
            .map(|e| cedar_entities.ancestors(&e.uid()).map_or(0, |a| a.count()))
            .sum();
        let cedar_build = (
            started.elapsed().as_secs_f64(),
            ancestors,
            rss_mib() - rss_before,
        );
        // The same policies Verdict serves (ids from `@id`).
        let cedar_policies = snapshot.policies().clone();
        let cedar_requests = inputs
            .iter()
            .map(|input| {
                cedar_policy::Request::new(
                    uid(&input.principal.entity_type, &input.principal.id),
                    uid("Action", &input.action),
                    uid(&input.resource.entity_type, &input.resource.id),
                    Context::empty(),
                    None,
                )
                .unwrap()
            })
            .collect();
        Self {
            verdict,
            cedar_policies,
            cedar_entities,
            cedar_requests,
            tuples: tuples.len(),
            cedar_build,
        }
    }

    /// Both engines must agree on every request before anything is timed.
    fn assert_same_decisions(&self) -> usize {
        let authorizer = Authorizer::new();
        let mut allowed = 0;
        let snapshot = &self.verdict.snapshot;
        for (input, cedar) in self.verdict.inputs.iter().zip(&self.cedar_requests) {
            let request = snapshot.prepare(input.clone(), &Limits::default()).unwrap();
            let ours = request.decide().unwrap();
            let theirs =
                authorizer.is_authorized(cedar, &self.cedar_policies, &self.cedar_entities);
            let theirs_allowed = theirs.decision() == cedar_policy::Decision::Allow;
            assert_eq!(
                ours.outcome == Outcome::Allow,
                theirs_allowed,
                "{input:?}: Verdict {ours:?}, Cedar {theirs:?}"
            );
            let mut reasons: Vec<String> = theirs
                .diagnostics()
                .reason()
                .map(|id| AsRef::<str>::as_ref(id).to_owned())
                .collect();
            reasons.sort();
            assert_eq!(ours.determining_policies, reasons, "{input:?}");
            allowed += usize::from(theirs_allowed);
        }
        allowed
    }
}

/// The benchmark name filter on the command line (criterion's positional argument), taken as a
/// plain substring.
fn name_filter() -> Option<String> {
    const TAKES_VALUE: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--output-format",
        "--color",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if TAKES_VALUE.contains(&arg.as_str()) {
            i += 2;
            continue;
        }
        if !arg.starts_with('-') {
            return Some(arg.clone());
        }
        i += 1;
    }
    None
}

/// The largest N for which Cedar's fully materialised view is built. Its transitive closure
/// grows with the square of N and more (measured: see BENCHMARKS.md); at N = 10,000 it would
/// not fit this machine, so that size runs Verdict alone.
const CEDAR_MAX_N: usize = 2_000;

/// Verdict's decision (on prepared requests, as Cedar gets prebuilt requests), and the same
/// with request preparation timed.
fn bench_verdict(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    side: &VerdictSide,
) {
    let prepared: Vec<verdict_core::Prepared<'_>> = side
        .inputs
        .iter()
        .map(|input| {
            side.snapshot
                .prepare(input.clone(), &Limits::default())
                .unwrap()
        })
        .collect();
    group.bench_function(BenchmarkId::new("verdict", REQUESTS), |b| {
        b.iter(|| {
            for request in &prepared {
                black_box(black_box(request).decide().unwrap());
            }
        });
    });
    group.bench_function(BenchmarkId::new("verdict_with_prepare", REQUESTS), |b| {
        b.iter(|| {
            for input in &side.inputs {
                let request = side
                    .snapshot
                    .prepare(black_box(input.clone()), &Limits::default())
                    .unwrap();
                black_box(request.decide().unwrap());
            }
        });
    });
}

fn rebac(c: &mut Criterion) {
    // `cargo bench` passes `--bench`; `cargo test --benches` (a smoke run, unoptimised) does
    // not, and gets the small sizes only. REBAC_SIZES=2000,5000 overrides the list.
    let sizes: Vec<usize> = match std::env::var("REBAC_SIZES") {
        Ok(list) => list.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        Err(_) if std::env::args().any(|a| a == "--bench") => vec![5, 10, 20, 50, 1_000, 10_000],
        Err(_) => vec![5, 20],
    };
    let filter = name_filter();
    type Generate<S> = fn(usize, u64, &mut S) -> Model;
    type Generators = (&'static str, Generate<Vec<Tuple>>, Generate<TupleFile>);
    let models: [Generators; 2] = [
        ("github", github::<Vec<Tuple>>, github::<TupleFile>),
        ("drive", drive::<Vec<Tuple>>, drive::<TupleFile>),
    ];
    for (model_name, in_memory, to_file) in models {
        for &n in &sizes {
            // Building a workload (Cedar's closure above all) costs far more than timing it:
            // skip the ones the command line filters out.
            let group_name = format!("rebac/{model_name}/N={n}");
            if let Some(filter) = &filter
                && !["verdict", "verdict_with_prepare", "cedar"]
                    .iter()
                    .any(|f| format!("{group_name}/{f}/{REQUESTS}").contains(filter.as_str()))
            {
                continue;
            }
            let seed = 0x5eed_0000 + n as u64;
            if n > CEDAR_MAX_N {
                let dir = tempfile::tempdir().unwrap();
                let file = std::fs::File::create(dir.path().join("graph.tuples")).unwrap();
                let mut sink = TupleFile {
                    out: std::io::BufWriter::new(file),
                    count: 0,
                };
                let model = to_file(n, seed, &mut sink);
                drop(sink.out);
                let side = VerdictSide::new(dir, &model, seed);
                eprintln!(
                    "{group_name}: {} tuples, loaded in {:.1} s; Verdict only (Cedar's materialised view is not built above N = {CEDAR_MAX_N})",
                    sink.count, side.load_seconds
                );
                let mut group = c.benchmark_group(group_name);
                group.throughput(Throughput::Elements(REQUESTS as u64));
                group.sample_size(20);
                bench_verdict(&mut group, &side);
                group.finish();
                drop(side.dir);
                continue;
            }
            let mut tuples = Vec::new();
            let model = in_memory(n, seed, &mut tuples);
            let workload = Workload::new(&model, &tuples, seed);
            drop(tuples);
            let allowed = workload.assert_same_decisions();
            let (seconds, ancestors, mib) = workload.cedar_build;
            eprintln!(
                "{group_name}: {} tuples, {allowed} of {REQUESTS} requests allowed; Verdict loaded in {:.1} s; Cedar's materialised view: {} entities, {ancestors} ancestor entries, built in {seconds:.1} s, +{mib:.0} MiB resident",
                workload.tuples,
                workload.verdict.load_seconds,
                workload.cedar_entities.iter().count()
            );
            let mut group = c.benchmark_group(group_name);
            group.throughput(Throughput::Elements(REQUESTS as u64));
            bench_verdict(&mut group, &workload.verdict);
            let authorizer = Authorizer::new();
            group.bench_function(BenchmarkId::new("cedar", REQUESTS), |b| {
                b.iter(|| {
                    for request in &workload.cedar_requests {
                        black_box(authorizer.is_authorized(
                            black_box(request),
                            &workload.cedar_policies,
                            &workload.cedar_entities,
                        ));
                    }
                });
            });
            group.finish();
        }
    }
}

criterion_group!(benches, rebac);
criterion_main!(benches);
