use super::*;
use crate::{CheckInput, EntityRef, Limits, LoadOptions, Snapshot};

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

/// A bundle with a schema, a policy and one file tuple: alice views d1.
fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schema.cedarschema"),
        "entity User;\nentity Team { member: Verdict::Userset };\n\
         entity Doc { viewer: Verdict::Userset };\n\
         action read appliesTo { principal: User, resource: Doc };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "@id(\"viewers\")\npermit (principal, action == Action::\"read\", resource is Doc)\n\
         when { principal in resource.viewer };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("docs.tuples"),
        "Doc::\"d1\"#viewer@User::\"alice\"\n",
    )
    .unwrap();
    dir
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

#[test]
fn store_tuples_and_bundle_tuples_answer_as_one_graph() {
    let dir = bundle();
    let base = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let store = StoreTuples::at(
        7,
        [
            r##"Doc::"d1"#viewer@Team::"eng"#member"##.to_owned(),
            r##"Team::"eng"#member@User::"bob""##.to_owned(),
        ],
    );
    let merge = base.with_store(&store).unwrap();
    assert_eq!(merge.rejected, 0);
    let merged = merge.snapshot;
    // Bob through the store's team, alice through the bundle's file.
    assert!(reads(&merged, "bob", "d1"));
    assert!(reads(&merged, "alice", "d1"));
    assert!(!reads(&merged, "carol", "d1"));
    // The base snapshot is untouched.
    assert!(!reads(&base, "bob", "d1"));
    assert_eq!((base.tuple_count(), merged.tuple_count()), (1, 3));
    assert_eq!(merged.store_revision(), Some(7));
    assert_eq!(base.store_revision(), None);
    assert_eq!(merged.version(), base.version());
    assert_eq!(
        merged.served_version(),
        format!("{}@{}", base.version(), ConsistencyToken::new(7))
    );
    assert_eq!(base.served_version(), base.version());
}

#[test]
fn merging_again_replaces_the_previous_store_state_and_keeps_the_file_tuples() {
    let dir = bundle();
    let base = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let mut store = StoreTuples::at(1, [r##"Doc::"d2"#viewer@User::"bob""##.to_owned()]);
    let first = base.with_store(&store).unwrap().snapshot;
    assert!(reads(&first, "bob", "d2"));
    store
        .apply(
            2,
            [
                delete(r##"Doc::"d2"#viewer@User::"bob""##),
                write(r##"Doc::"d2"#viewer@User::"carol""##),
            ],
        )
        .unwrap();
    // From the merged snapshot: only its file tuples are reused.
    let second = first.with_store(&store).unwrap().snapshot;
    assert!(!reads(&second, "bob", "d2"));
    assert!(reads(&second, "carol", "d2"));
    assert!(reads(&second, "alice", "d1"));
    assert_eq!(second.tuple_count(), 2);
    // A reload of the same files reuses the file tuples, not the merge.
    let reloaded = Snapshot::reload(dir.path(), &LoadOptions::default(), &second).unwrap();
    assert_eq!(reloaded.tuple_count(), 1);
    assert!(!reads(&reloaded, "carol", "d2"));
}

#[test]
fn store_tuples_a_changed_schema_refuses_are_left_out_and_counted() {
    let dir = bundle();
    let base = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let store = StoreTuples::at(
        3,
        [
            r##"Doc::"d2"#viewer@User::"bob""##.to_owned(),
            r##"Doc::"d2"#editor@User::"bob""##.to_owned(),
            "not a tuple".to_owned(),
        ],
    );
    let merge = base.with_store(&store).unwrap();
    assert_eq!(merge.rejected, 2);
    assert_eq!(merge.first_rejections.len(), 2);
    assert!(
        merge
            .first_rejections
            .iter()
            .any(|(line, why)| line.contains("editor") && why.contains("not declared")),
        "{:?}",
        merge.first_rejections
    );
    assert!(reads(&merge.snapshot, "bob", "d2"));
}

#[test]
fn writes_are_validated_like_file_tuples_and_bundle_tuples_are_recognised() {
    let dir = bundle();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let parse = |line: &'static str| crate::relations::parse_tuple_line(line).unwrap().unwrap();
    assert_eq!(
        snapshot.validate_store_tuple(&parse(r##"Doc::"d"#viewer@User::"u""##)),
        Ok(())
    );
    assert_eq!(
        snapshot
            .validate_store_tuple(&parse(r##"Robot::"r"#viewer@User::"u""##))
            .unwrap_err(),
        "entity type `Robot` is not declared in the schema"
    );
    assert!(
        snapshot
            .validate_store_tuple(&parse(r##"Doc::"d"#owner@User::"u""##))
            .unwrap_err()
            .starts_with("relation `owner` of `Doc` is not declared in the schema")
    );
    assert!(snapshot.bundle_defines(&parse(r##"Doc::"d1"#viewer@User::"alice""##)));
    assert!(!snapshot.bundle_defines(&parse(r##"Doc::"d1"#viewer@User::"bob""##)));
    // A merged snapshot still tells the bundle's tuples from the store's.
    let store = StoreTuples::at(1, [r##"Doc::"d1"#viewer@User::"bob""##.to_owned()]);
    let merged = snapshot.with_store(&store).unwrap().snapshot;
    assert!(!merged.bundle_defines(&parse(r##"Doc::"d1"#viewer@User::"bob""##)));
}

#[test]
fn a_revision_is_applied_whole_and_never_twice() {
    let mut store = StoreTuples::default();
    assert_eq!(store.revision(), 0);
    store
        .apply(
            1,
            [
                write("Doc::\"a\"#viewer@User::\"u\""),
                write("Doc::\"b\"#viewer@User::\"u\""),
            ],
        )
        .unwrap();
    assert_eq!((store.revision(), store.len()), (1, 2));
    assert_eq!(
        store.apply(1, [delete("Doc::\"a\"#viewer@User::\"u\"")]),
        Err(StaleRevision {
            applied: 1,
            offered: 1
        })
    );
    assert_eq!(store.len(), 2);
    // Within a revision, changes apply in order: a write then a delete of the same tuple.
    // Only effective changes come back: not a write of a tuple held, nor a delete of one not.
    let effective = store
        .apply(
            5,
            [
                write("Doc::\"c\"#viewer@User::\"u\""),
                write("Doc::\"b\"#viewer@User::\"u\""),
                delete("Doc::\"c\"#viewer@User::\"u\""),
                delete("Doc::\"a\"#viewer@User::\"u\""),
                delete("Doc::\"z\"#viewer@User::\"u\""),
            ],
        )
        .unwrap();
    assert_eq!(
        effective,
        [
            write("Doc::\"c\"#viewer@User::\"u\""),
            delete("Doc::\"c\"#viewer@User::\"u\""),
            delete("Doc::\"a\"#viewer@User::\"u\""),
        ]
    );
    assert_eq!((store.revision(), store.len()), (5, 1));
    assert!(store.contains("Doc::\"b\"#viewer@User::\"u\""));
}

#[test]
fn consistency_tokens_round_trip_and_refuse_anything_else() {
    for revision in [0, 1, 42, u64::MAX] {
        let token = ConsistencyToken::new(revision);
        assert_eq!(ConsistencyToken::parse(&token.to_string()), Ok(token));
        // The store part of a snapshot_version works too.
        let version = format!("abc123@{token}");
        assert_eq!(ConsistencyToken::parse(&version), Ok(token));
    }
    for bad in [
        "",
        "42",
        "vr1_",
        "vr1_zz00000000000000",
        "vr1_000000000000002a0",
        "vr2_000000000000002a",
    ] {
        assert_eq!(ConsistencyToken::parse(bad), Err(InvalidToken), "{bad:?}");
    }
}
