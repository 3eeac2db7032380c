//! The relation questions of issue 17, on snapshots loaded from generated bundles with an
//! OpenFGA model (`verdict-core` directly, no server):
//!
//! ```sh
//! cargo bench --bench relations
//! ```
//!
//! - `check-relation/userset-depth/D`: CheckRelation through D nested usersets
//!   (`Team#member` in `Team#member`), the direct userset search Check uses today, as the
//!   model's `[User, Team#member]` spells it;
//! - `check-relation/ttu-depth/D`: the same depth through tuple-to-userset (`viewer from
//!   parent` over D folders): the rewrite the issue asks to stay within 2× of the above;
//! - `check-relation/ttu-by-graph-size/N`: depth 4 of `from parent` in a graph of N tuples,
//!   the rest unrelated: flat in N is the target;
//! - `check-relation/union-exclusion`: a relation of eight alternatives `but not blocked`,
//!   the subject reaching the last one;
//! - `lookup-resources/first-page/N` (and `first-page-of-100/N`): the first page (1,000, or
//!   100) of the documents a user may view
//!   when N documents inherit the user's folder; after it, one timed pass over every page
//!   prints the whole result's rate (results/s).
//!
//! - `store-revision/apply-one-at-overlay/K`: one store revision of one tuple applied to a
//!   snapshot of 220,000 store tuples whose overlay holds K changes already; and
//!   `store-revision/check-at-overlay/K`: two relation checks on that snapshot, one answered
//!   through the overlay (a document of the last revision), one through the frozen index.
//!
//! `cargo test --benches` runs a smoke version (small sizes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use verdict_core::store::{ChangeKind, StoreChange, StoreTuples};
use verdict_core::{EntityRef, LoadOptions, RelationSubject, Snapshot};

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

const MODEL: &str = "model
  schema 1.1

type User

type Team
  relations
    define member: [User, Team#member]

type Folder
  relations
    define parent: [Folder]
    define viewer: [User, Team#member] or viewer from parent

type Document
  relations
    define parent: [Folder]
    define owner: [User]
    define a1: [User]
    define a2: [User]
    define a3: [User]
    define a4: [User]
    define a5: [User]
    define a6: [User]
    define editor: [User]
    define blocked: [User]
    define viewer: ([User] or owner or a1 or a2 or a3 or a4 or a5 or a6 or editor or viewer from parent) but not blocked
";

/// A snapshot of `MODEL` and `tuples`, in a directory kept alive with it.
fn snapshot(tuples: &str) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.fga"), MODEL).unwrap();
    std::fs::write(dir.path().join("bench.tuples"), tuples).unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action == Action::\"read\", resource is Document)\n\
         when { principal in resource.viewer };",
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    (dir, snapshot)
}

fn user(id: &str) -> RelationSubject {
    RelationSubject::Entity(EntityRef::new("User", id))
}

/// Tuples that touch nothing the questions search: `n` documents in other folders, other
/// teams and users.
fn unrelated(n: usize, out: &mut String) {
    for i in 0..n {
        match i % 3 {
            0 => writeln!(out, "Document::\"x{i}\"#parent@Folder::\"y{}\"", i % 997),
            1 => writeln!(out, "Folder::\"y{}\"#viewer@User::\"v{i}\"", i % 997),
            _ => writeln!(out, "Team::\"z{}\"#member@User::\"v{i}\"", i % 991),
        }
        .unwrap();
    }
}

/// Folder `f{depth}` inside … inside `f0`, which alice views.
fn folder_chain(depth: usize, out: &mut String) {
    writeln!(out, "Folder::\"f0\"#viewer@User::\"alice\"").unwrap();
    for i in 1..=depth {
        writeln!(out, "Folder::\"f{i}\"#parent@Folder::\"f{}\"", i - 1).unwrap();
    }
}

fn check_relation(c: &mut Criterion) {
    let mut group = c.benchmark_group("check-relation");
    group.sample_size(30);
    for depth in [1usize, 2, 4, 6, 8, 10] {
        // Userset nesting: t0#member ⊇ t1#member ⊇ … ⊇ t{depth}#member ∋ alice.
        let mut tuples = String::new();
        for i in 0..depth {
            writeln!(tuples, "Team::\"t{i}\"#member@Team::\"t{}\"#member", i + 1).unwrap();
        }
        writeln!(tuples, "Team::\"t{depth}\"#member@User::\"alice\"").unwrap();
        let (_dir, snap) = snapshot(&tuples);
        let view = snap.with_contextual_tuples(Vec::new()).unwrap();
        let team = EntityRef::new("Team", "t0");
        let alice = user("alice");
        assert!(
            view.check_relation(&team, "member", &alice)
                .unwrap()
                .allowed
        );
        group.bench_with_input(BenchmarkId::new("userset-depth", depth), &depth, |b, _| {
            b.iter(|| {
                view.check_relation(black_box(&team), "member", black_box(&alice))
                    .unwrap()
            });
        });

        // The same depth through `viewer from parent`.
        let mut tuples = String::new();
        folder_chain(depth, &mut tuples);
        let (_dir, snap) = snapshot(&tuples);
        let view = snap.with_contextual_tuples(Vec::new()).unwrap();
        let folder = EntityRef::new("Folder", format!("f{depth}"));
        assert!(
            view.check_relation(&folder, "viewer", &alice)
                .unwrap()
                .allowed
        );
        group.bench_with_input(BenchmarkId::new("ttu-depth", depth), &depth, |b, _| {
            b.iter(|| {
                view.check_relation(black_box(&folder), "viewer", black_box(&alice))
                    .unwrap()
            });
        });
    }

    let sizes: &[usize] = if full_run() {
        &[1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000]
    };
    for &size in sizes {
        let mut tuples = String::new();
        folder_chain(4, &mut tuples);
        writeln!(tuples, "Document::\"d\"#parent@Folder::\"f4\"").unwrap();
        unrelated(size, &mut tuples);
        let (_dir, snap) = snapshot(&tuples);
        let view = snap.with_contextual_tuples(Vec::new()).unwrap();
        let doc = EntityRef::new("Document", "d");
        let alice = user("alice");
        assert!(view.check_relation(&doc, "viewer", &alice).unwrap().allowed);
        let n = snap.tuples().tuple_count();
        group.bench_with_input(BenchmarkId::new("ttu-by-graph-size", n), &n, |b, _| {
            b.iter(|| {
                view.check_relation(black_box(&doc), "viewer", black_box(&alice))
                    .unwrap()
            });
        });
    }

    // Eight alternatives, the subject in the last direct one, and an exclusion to check.
    let mut tuples = String::new();
    for relation in ["owner", "a1", "a2", "a3", "a4", "a5", "a6"] {
        writeln!(tuples, "Document::\"u\"#{relation}@User::\"someone\"").unwrap();
    }
    writeln!(tuples, "Document::\"u\"#editor@User::\"alice\"").unwrap();
    writeln!(tuples, "Document::\"u\"#blocked@User::\"mallory\"").unwrap();
    let (_dir, snap) = snapshot(&tuples);
    let view = snap.with_contextual_tuples(Vec::new()).unwrap();
    let doc = EntityRef::new("Document", "u");
    let alice = user("alice");
    assert!(view.check_relation(&doc, "viewer", &alice).unwrap().allowed);
    group.bench_function("union-exclusion", |b| {
        b.iter(|| {
            view.check_relation(black_box(&doc), "viewer", black_box(&alice))
                .unwrap()
        });
    });
    group.finish();
}

fn lookup_resources(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup-resources");
    group.sample_size(10);
    let sizes: &[usize] = if full_run() {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[1_000]
    };
    for &size in sizes {
        // Every document sits in folder f2, inside f1, inside f0, which alice views.
        let mut tuples = String::new();
        folder_chain(2, &mut tuples);
        for i in 0..size {
            writeln!(tuples, "Document::\"d{i:07}\"#parent@Folder::\"f2\"").unwrap();
        }
        let (_dir, snap) = snapshot(&tuples);
        let view = snap.with_contextual_tuples(Vec::new()).unwrap();
        let alice = user("alice");
        // The default (and largest) page, and the page of 100 a client streaming results to a
        // user interface would ask for first.
        for (name, page_size) in [("first-page", 1_000), ("first-page-of-100", 100)] {
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    let page = view
                        .lookup_resources(black_box(&alice), "viewer", "Document", page_size, None)
                        .unwrap();
                    assert_eq!(page.ids.len(), page_size.min(size));
                    page
                });
            });
        }
        // The whole result, page by page: its rate, and that it is all there.
        let started = Instant::now();
        let (mut total, mut cursor, mut pages) = (0usize, None::<String>, 0usize);
        loop {
            let page = view
                .lookup_resources(&alice, "viewer", "Document", 1_000, cursor.as_deref())
                .unwrap();
            total += page.ids.len();
            pages += 1;
            match page.next_cursor {
                Some(next) => cursor = Some(next.as_str().to_owned()),
                None => break,
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(total, size, "every reachable document, once");
        println!(
            "lookup-resources/whole-result/{size}: {total} results in {pages} pages, {seconds:.3} s, {:.0} results/s",
            total as f64 / seconds
        );
    }
    group.finish();
}

/// One store revision (a single new tuple) applied to a snapshot of 220,000 store tuples whose
/// overlay already holds `k` changes: what a replica pays per revision it follows.
fn store_revision(c: &mut Criterion) {
    let mut group = c.benchmark_group("store-revision");
    group.sample_size(20);
    let (size, overlays): (usize, &[usize]) = if full_run() {
        (220_000, &[0, 1_000, 6_000])
    } else {
        (2_000, &[0, 100])
    };
    let (_dir, bundle) = snapshot("");
    let store = StoreTuples::at(
        1,
        (0..size).map(|i| format!("Document::\"g{i}\"#viewer@User::\"dave\"")),
    );
    let one = |snapshot: &Snapshot, i: usize, revision: u64| {
        let change = StoreChange {
            kind: ChangeKind::Write,
            tuple: format!("Document::\"x{i}\"#viewer@User::\"erin\""),
        };
        snapshot
            .with_store_changes(&[change], revision)
            .unwrap()
            .snapshot
            .unwrap()
    };
    for &k in overlays {
        let mut with_overlay = bundle.with_store(&store).unwrap().snapshot;
        for i in 0..k {
            with_overlay = one(&with_overlay, i, i as u64 + 2);
        }
        assert_eq!(with_overlay.tuple_count(), size + k);
        let revision = k as u64 + 2;
        group.bench_with_input(BenchmarkId::new("apply-one-at-overlay", k), &k, |b, _| {
            b.iter(|| one(black_box(&with_overlay), size + k, revision));
        });
        // A relation check answered through the overlay's maps (a document written in the
        // last revision) and through the frozen index (one from the store's start).
        let view = with_overlay.with_contextual_tuples(Vec::new()).unwrap();
        let (fresh, old) = (
            EntityRef::new("Document", format!("x{}", k.saturating_sub(1))),
            EntityRef::new("Document", "g7"),
        );
        let (erin, dave) = (user("erin"), user("dave"));
        assert_eq!(
            view.check_relation(&fresh, "viewer", &erin)
                .unwrap()
                .allowed,
            k > 0
        );
        assert!(view.check_relation(&old, "viewer", &dave).unwrap().allowed);
        group.bench_with_input(BenchmarkId::new("check-at-overlay", k), &k, |b, _| {
            b.iter(|| {
                (
                    view.check_relation(black_box(&fresh), "viewer", &erin)
                        .unwrap(),
                    view.check_relation(black_box(&old), "viewer", &dave)
                        .unwrap(),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, check_relation, lookup_resources, store_revision);
criterion_main!(benches);
