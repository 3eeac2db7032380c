//! Differential test of the relation graph's overlay against a full re-index.
//!
//! A snapshot that follows a relationship store adds each revision's changes to its graph as an
//! overlay (`Snapshot::with_store_changes`); a full join indexes every tuple again
//! (`Snapshot::with_store`). The two must answer every question the same way. Random store
//! states and revisions over a small universe (so that tuples meet: nested teams, folder
//! chains and cycles, wildcards, exclusions, tuples the bundle's files also hold), then after
//! every revision: tuple counts, Cedar decisions, `CheckRelation` for every object, relation
//! and subject, and both lookups paged to the end, also with contextual tuples on top.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;
use verdict_core::store::{ChangeKind, StoreChange, StoreTuples};
use verdict_core::{CheckInput, EntityRef, Limits, LoadOptions, RelationSubject, Snapshot};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const IDS: [&str; 3] = ["a", "b", "c"];
/// The example bundle's relation model: types and their relations.
const RELATIONS: [(&str, &[&str]); 3] = [
    ("Team", &["member"]),
    ("Folder", &["parent", "owner", "editor", "viewer"]),
    (
        "Document",
        &["parent", "owner", "blocked", "editor", "viewer"],
    ),
];
/// Tuples the bundle's own files hold.
const FILE_TUPLES: &str = "Team::\"a\"#member@User::\"u0\"\nFolder::\"b\"#parent@Folder::\"a\"\n";

/// Every tuple the model allows over the universe.
fn all_tuples() -> Vec<String> {
    let users = || USERS.iter().map(|u| format!("User::\"{u}\""));
    let teams = || IDS.iter().map(|t| format!("Team::\"{t}\"#member"));
    let folders = || IDS.iter().map(|f| format!("Folder::\"{f}\""));
    let mut all = Vec::new();
    let mut add = |object: String, relation: &str, subjects: Vec<String>| {
        for subject in subjects {
            // A userset holding itself is refused (OpenFGA refuses such an implicit tuple).
            if subject != format!("{object}#{relation}") {
                all.push(format!("{object}#{relation}@{subject}"));
            }
        }
    };
    for id in IDS {
        add(
            format!("Team::\"{id}\""),
            "member",
            users().chain(teams()).collect(),
        );
        for kind in ["Folder", "Document"] {
            let object = format!("{kind}::\"{id}\"");
            add(object.clone(), "parent", folders().collect());
            add(object.clone(), "owner", users().collect());
            add(object.clone(), "editor", users().chain(teams()).collect());
            add(
                object.clone(),
                "viewer",
                users()
                    .chain(["User::*".to_owned()])
                    .chain(teams())
                    .collect(),
            );
            if kind == "Document" {
                add(object, "blocked", users().collect());
            }
        }
    }
    all
}

fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/acme.fga"),
    )
    .unwrap();
    std::fs::write(dir.path().join("acme.fga"), model).unwrap();
    std::fs::write(dir.path().join("files.tuples"), FILE_TUPLES).unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action == Action::\"read\", resource is Document)\n\
         when { principal in resource.viewer };",
    )
    .unwrap();
    dir
}

fn subjects() -> Vec<RelationSubject> {
    let mut subjects: Vec<_> = USERS
        .iter()
        .map(|u| RelationSubject::Entity(EntityRef::new("User", *u)))
        .collect();
    subjects.push(RelationSubject::Entity(EntityRef::new("User", "nobody")));
    subjects.push(RelationSubject::Wildcard("User".to_owned()));
    for t in IDS {
        subjects.push(RelationSubject::Userset(
            EntityRef::new("Team", t),
            "member".to_owned(),
        ));
    }
    subjects
}

/// Every answer of `snapshot` (with `contextual` tuples on top), one line per question.
fn answers(snapshot: &Snapshot, contextual: &[String]) -> Vec<String> {
    let mut out = vec![format!("tuples {}", snapshot.tuple_count())];
    for user in USERS.iter().chain(&["nobody"]) {
        for doc in IDS {
            let input = CheckInput::new(
                EntityRef::new("User", *user),
                "read",
                EntityRef::new("Document", doc),
            );
            let allowed = snapshot
                .check(input, &Limits::default())
                .unwrap()
                .is_allowed();
            out.push(format!("cedar {user} read {doc}: {allowed}"));
        }
    }
    let view = snapshot
        .with_contextual_tuples(contextual.to_vec())
        .unwrap();
    for (kind, relations) in RELATIONS {
        for relation in relations {
            for id in IDS {
                let object = EntityRef::new(kind, id);
                for subject in subjects() {
                    let answer = view.check_relation(&object, relation, &subject);
                    out.push(format!(
                        "check {kind}:{id}#{relation}@{}: {:?}",
                        subject.text(),
                        answer.map(|a| (a.allowed, a.relation_depth_exceeded))
                    ));
                }
                for (subject_type, subject_relation) in [("User", None), ("Team", Some("member"))] {
                    let mut cursor: Option<String> = None;
                    let mut found = Vec::new();
                    for _ in 0..100 {
                        let page = view
                            .lookup_subjects(
                                &object,
                                relation,
                                (subject_type, subject_relation),
                                2,
                                cursor.as_deref(),
                            )
                            .unwrap();
                        found.extend(page.subjects.iter().map(RelationSubject::text));
                        match page.next_cursor {
                            Some(next) => cursor = Some(next.as_str().to_owned()),
                            None => break,
                        }
                    }
                    out.push(format!(
                        "subjects {kind}:{id}#{relation} {subject_type}: {found:?}"
                    ));
                }
            }
            for subject in subjects() {
                let mut cursor: Option<String> = None;
                let mut found = Vec::new();
                for _ in 0..100 {
                    let page =
                        match view.lookup_resources(&subject, relation, kind, 2, cursor.as_deref())
                        {
                            Ok(page) => page,
                            Err(error) => {
                                found.push(format!("error: {error}"));
                                break;
                            }
                        };
                    found.extend(page.ids);
                    match page.next_cursor {
                        Some(next) => cursor = Some(next.as_str().to_owned()),
                        None => break,
                    }
                }
                out.push(format!(
                    "resources {}#{relation} {kind}: {found:?}",
                    subject.text()
                ));
            }
        }
    }
    out
}

fn assert_same(incremental: &Snapshot, full: &Snapshot, contextual: &[String], at: &str) {
    let (a, b) = (answers(incremental, contextual), answers(full, contextual));
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a, b, "overlay (left) and full re-index (right) differ {at}");
    }
}

/// Runs one case: `initial` store tuples, then `revisions` of (write?, tuple index) changes.
fn run(initial: &[usize], revisions: &[Vec<(bool, usize)>], prepared: bool, contextual: &[usize]) {
    let all = all_tuples();
    let dir = bundle();
    let base = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let mut store = StoreTuples::at(1, initial.iter().map(|&i| all[i % all.len()].clone()));
    let mut snapshot = base.with_store(&store).unwrap().snapshot;
    if prepared {
        snapshot = snapshot.prepared_for_changes();
    }
    let contextual: Vec<String> = contextual
        .iter()
        .map(|&i| all[i % all.len()].clone())
        .collect();
    for (n, changes) in revisions.iter().enumerate() {
        let revision = n as u64 + 2;
        let changes: Vec<StoreChange> = changes
            .iter()
            .map(|&(write, i)| StoreChange {
                kind: if write {
                    ChangeKind::Write
                } else {
                    ChangeKind::Delete
                },
                tuple: all[i % all.len()].clone(),
            })
            .collect();
        let effective = store.apply(revision, changes.clone()).unwrap();
        let update = snapshot.with_store_changes(&effective, revision).unwrap();
        snapshot = update.snapshot.unwrap();
        let full = base.with_store(&store).unwrap().snapshot;
        let at = format!("after revision {revision} ({changes:?})");
        assert_same(&snapshot, &full, &[], &at);
        assert_same(
            &snapshot,
            &full,
            &contextual,
            &format!("{at}, with {contextual:?}"),
        );
    }
}

#[test]
fn a_base_tuple_removed_and_written_again_and_the_files_tuples_through_the_store() {
    let all = all_tuples();
    let index = |tuple: &str| all.iter().position(|t| t == tuple).unwrap();
    let member = index("Team::\"a\"#member@User::\"u0\"");
    let parent = index("Folder::\"b\"#parent@Folder::\"a\"");
    let viewer = index("Folder::\"a\"#viewer@Team::\"a\"#member");
    let doc = index("Document::\"c\"#parent@Folder::\"b\"");
    let blocked = index("Document::\"c\"#blocked@User::\"u0\"");
    for prepared in [false, true] {
        run(
            &[viewer, doc, member],
            &[
                vec![(false, viewer), (true, blocked)],
                vec![(true, viewer), (false, member), (false, parent)],
                vec![(false, blocked), (true, viewer), (false, doc), (true, doc)],
            ],
            prepared,
            &[blocked],
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_overlay_answers_as_a_full_re_index(
        initial in proptest::collection::vec(0usize..1000, 0..40),
        revisions in proptest::collection::vec(
            proptest::collection::vec((any::<bool>(), 0usize..1000), 1..8),
            1..5,
        ),
        prepared in any::<bool>(),
        contextual in proptest::collection::vec(0usize..1000, 0..3),
    ) {
        run(&initial, &revisions, prepared, &contextual);
    }
}
