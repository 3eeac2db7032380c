use verdict_core::store::{ChangeKind, StoreChange, StoreTuples};
use verdict_core::{CheckInput, EntityRef, Limits, LoadOptions, Snapshot};

use super::*;

fn write(tuple: &str) -> StoreChange {
    StoreChange {
        kind: ChangeKind::Write,
        tuple: tuple.to_owned(),
    }
}

fn delete(tuple: &str) -> StoreChange {
    StoreChange {
        kind: ChangeKind::Delete,
        tuple: tuple.to_owned(),
    }
}

fn viewer(doc: &str, user: &str) -> String {
    format!("Doc::\"{doc}\"#viewer@User::\"{user}\"")
}

/// A bundle with a schema, a policy, a team and one file tuple: alice views d1.
fn bundle(dir: &std::path::Path, extra_policy: &str) {
    std::fs::write(
        dir.join("schema.cedarschema"),
        "entity User;\nentity Team { member: Verdict::Userset };\n\
         entity Doc { viewer: Verdict::Userset };\n\
         action read appliesTo { principal: User, resource: Doc };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.cedar"),
        format!(
            "@id(\"viewers\")\npermit (principal, action == Action::\"read\", resource is Doc)\n\
             when {{ principal in resource.viewer }};\n{extra_policy}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("docs.tuples"),
        format!("{}\n", viewer("d1", "alice")),
    )
    .unwrap();
}

fn reads(snapshot: &Snapshot, user: &str, doc: &str) -> bool {
    let input = CheckInput::new(
        EntityRef::new("User", user),
        "read",
        EntityRef::new("Doc", doc),
    );
    snapshot
        .check(input, &Limits::default())
        .unwrap()
        .is_allowed()
}

/// Asserts that what `handle` serves answers as a full join of its bundle with `store` does.
fn answers_as_a_full_join(handle: &SnapshotHandle, bundle: &Snapshot, store: &StoreTuples) {
    let served = handle.load().unwrap();
    let full = bundle.with_store(store).unwrap().snapshot;
    assert_eq!(served.snapshot.tuple_count(), full.tuple_count());
    assert_eq!(served.snapshot.served_version(), full.served_version());
    for user in ["alice", "bob", "carol", "dave", "u7", "u4099"] {
        for doc in ["d1", "d2", "d3", "bulk"] {
            assert_eq!(
                reads(&served.snapshot, user, doc),
                reads(&full, user, doc),
                "{user} reads {doc}"
            );
        }
    }
}

#[test]
fn store_revisions_are_followed_as_an_overlay_and_compacted_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path(), "");
    let bundle_snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let handle = SnapshotHandle::with_relationship_store();
    handle.store(Snapshot::load(dir.path(), &LoadOptions::default()).unwrap());
    let mut expected = StoreTuples::at(1, [viewer("d2", "bob")]);
    handle.replace_store(expected.clone()).unwrap();
    answers_as_a_full_join(&handle, &bundle_snapshot, &expected);

    // A small revision is an overlay on the served graph: one tuple refused (no such
    // relation in the schema), a write of one already held, a file tuple written again.
    let changes = vec![
        write(&viewer("d2", "carol")),
        write("Doc::\"d2\"#editor@User::\"dave\""),
        write(&viewer("d2", "bob")),
        write(&viewer("d1", "alice")),
        write("Team::\"t\"#member@User::\"dave\""),
        write("Doc::\"d3\"#viewer@Team::\"t\"#member"),
    ];
    let applied = handle
        .apply_store_revisions(vec![(2, changes.clone())])
        .unwrap()
        .unwrap();
    expected.apply(2, changes).unwrap();
    assert_eq!(
        (applied.revision, applied.tuples, applied.rejected),
        (2, 6, 1)
    );
    assert!(handle.load().unwrap().snapshot.overlay_len() > 0);
    assert_eq!(handle.applied_revision(), Some(2));
    answers_as_a_full_join(&handle, &bundle_snapshot, &expected);
    assert!(reads(&handle.load().unwrap().snapshot, "dave", "d3"));

    // Deletes, of the refused tuple among them (no longer counted), and of a file tuple
    // (the bundle's stays), over two revisions applied as one.
    let revisions = vec![
        (
            3,
            vec![
                delete("Doc::\"d2\"#editor@User::\"dave\""),
                delete(&viewer("d2", "bob")),
            ],
        ),
        (5, vec![delete(&viewer("d1", "alice")), delete("nothing")]),
    ];
    let applied = handle
        .apply_store_revisions(revisions.clone())
        .unwrap()
        .unwrap();
    for (revision, changes) in revisions {
        expected.apply(revision, changes).unwrap();
    }
    assert_eq!((applied.revision, applied.rejected), (5, 0));
    answers_as_a_full_join(&handle, &bundle_snapshot, &expected);
    assert!(reads(&handle.load().unwrap().snapshot, "alice", "d1"));
    assert!(!reads(&handle.load().unwrap().snapshot, "bob", "d2"));

    // A revision that takes the overlay past its bound is indexed whole.
    let bulk: Vec<_> = (0..4_100)
        .map(|i| write(&viewer("bulk", &format!("u{i}"))))
        .collect();
    handle
        .apply_store_revisions(vec![(6, bulk.clone())])
        .unwrap()
        .unwrap();
    expected.apply(6, bulk).unwrap();
    assert_eq!(handle.load().unwrap().snapshot.overlay_len(), 0);
    answers_as_a_full_join(&handle, &bundle_snapshot, &expected);

    // A stale revision changes nothing.
    assert!(
        handle
            .apply_store_revisions(vec![(6, vec![delete(&viewer("d2", "carol"))])])
            .is_err()
    );
    answers_as_a_full_join(&handle, &bundle_snapshot, &expected);

    // A new bundle is joined whole, and the next revision follows it as an overlay.
    bundle(
        dir.path(),
        "@id(\"dave\")\npermit (principal == User::\"dave\", action, resource);\n",
    );
    let reloaded = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    handle.store(Snapshot::load(dir.path(), &LoadOptions::default()).unwrap());
    assert_eq!(handle.load().unwrap().snapshot.overlay_len(), 0);
    assert!(reads(&handle.load().unwrap().snapshot, "dave", "d1"));
    let changes = vec![delete(&viewer("d2", "carol"))];
    handle
        .apply_store_revisions(vec![(7, changes.clone())])
        .unwrap()
        .unwrap();
    expected.apply(7, changes).unwrap();
    assert!(handle.load().unwrap().snapshot.overlay_len() > 0);
    answers_as_a_full_join(&handle, &reloaded, &expected);
}
