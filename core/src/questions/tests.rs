use super::*;
use crate::LoadOptions;

const MODEL: &str = "model\n  schema 1.1\n\ntype User\n\ntype Folder\n  relations\n    define viewer: [User]\n\ntype Document\n  relations\n    define parent: [Folder]\n    define editor: [User]\n    define blocked: [User]\n    define viewer: ([User, User:*] or editor or viewer from parent) but not blocked\n";

fn snapshot(tuples: &str) -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.fga"), MODEL).unwrap();
    std::fs::write(dir.path().join("docs.tuples"), tuples).unwrap();
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

#[test]
fn contextual_tuples_answer_for_one_request_only() {
    let (_dir, snapshot) = snapshot("Document::\"d1\"#parent@Folder::\"f1\"\n");
    let doc = EntityRef::new("Document", "d1");
    let plain = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    assert!(
        !plain
            .check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
    let with = snapshot
        .with_contextual_tuples(vec!["Folder::\"f1\"#viewer@User::\"anne\"".to_owned()])
        .unwrap();
    assert!(
        with.check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
    assert_eq!(with.served_version(), snapshot.served_version());
    let plain = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    assert!(
        !plain
            .check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
}

#[test]
fn contextual_tuples_the_model_refuses_name_their_index() {
    let (_dir, snapshot) = snapshot("");
    for (tuple, expected) in [
        ("Document::\"d\"#owner@User::\"a\"", "contextual_tuples[1]"),
        ("Document::\"d\"#parent@User::\"a\"", "contextual_tuples[1]"),
        ("Nope::\"d\"#viewer@User::\"a\"", "contextual_tuples[1]"),
        ("not a tuple", "contextual_tuples[1]"),
    ] {
        let Err(error) = snapshot.with_contextual_tuples(vec![
            "Document::\"d\"#viewer@User::\"a\"".to_owned(),
            tuple.to_owned(),
        ]) else {
            panic!("{tuple} accepted");
        };
        assert!(matches!(error, RequestError::Invalid { .. }), "{error}");
        assert!(error.to_string().starts_with(expected), "{error}");
    }
}

#[test]
fn lookups_page_to_the_end_and_cursors_bind_the_question_and_version() {
    let tuples: String = (0..25)
        .map(|i| format!("Document::\"d{i:02}\"#parent@Folder::\"f\"\n"))
        .chain(["Folder::\"f\"#viewer@User::\"anne\"\n".to_owned()])
        .chain(["Document::\"d07\"#blocked@User::\"anne\"\n".to_owned()])
        .collect();
    let (_dir, snapshot) = snapshot(&tuples);
    let view = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    let mut all = Vec::new();
    let mut cursor: Option<LookupCursor> = None;
    loop {
        let page = view
            .lookup_resources(
                &user("anne"),
                "viewer",
                "Document",
                4,
                cursor.as_ref().map(LookupCursor::as_str),
            )
            .unwrap();
        assert!(page.ids.len() <= 4);
        all.extend(page.ids);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 7)
        .map(|i| format!("d{i:02}"))
        .collect();
    assert_eq!(all, expected);

    let page = view
        .lookup_resources(&user("anne"), "viewer", "Document", 4, None)
        .unwrap();
    let cursor = page.next_cursor.unwrap();
    let other = view.lookup_resources(&user("bob"), "viewer", "Document", 4, Some(cursor.as_str()));
    assert!(
        matches!(other, Err(RelationError::BadCursor(_))),
        "{other:?}"
    );

    let (_dir2, changed) =
        self::snapshot(&format!("{tuples}Document::\"x\"#viewer@User::\"bob\"\n"));
    let changed = changed.with_contextual_tuples(Vec::new()).unwrap();
    let stale = changed.lookup_resources(
        &user("anne"),
        "viewer",
        "Document",
        4,
        Some(cursor.as_str()),
    );
    assert!(
        matches!(stale, Err(RelationError::StaleCursor { .. })),
        "{stale:?}"
    );

    let subjects = view
        .lookup_subjects(
            &EntityRef::new("Document", "d01"),
            "viewer",
            ("User", None),
            1,
            None,
        )
        .unwrap();
    assert_eq!(subjects.subjects, vec![user("anne")]);
    let garbage = view.lookup_resources(&user("anne"), "viewer", "Document", 4, Some("v1.zz"));
    assert!(
        matches!(garbage, Err(RelationError::BadCursor(_))),
        "{garbage:?}"
    );
}

#[test]
fn relation_questions_without_a_model_say_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let view = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    let answer = view.check_relation(&EntityRef::new("Document", "d"), "viewer", &user("a"));
    assert_eq!(answer, Err(RelationError::NoModel));
}

#[test]
fn contextual_tuples_answer_on_a_large_graph_and_are_bounded_per_request() {
    // Larger than any graph the per-request re-index used to accept (20,000 tuples).
    let tuples: String = (0..50_000)
        .map(|i| format!("Document::\"d{i}\"#editor@User::\"u{i}\"\n"))
        .collect();
    let (_dir, snapshot) = snapshot(&tuples);
    let with = snapshot
        .with_contextual_tuples(vec![
            "Document::\"d7\"#parent@Folder::\"f1\"".to_owned(),
            "Folder::\"f1\"#viewer@User::\"anne\"".to_owned(),
        ])
        .unwrap();
    let doc = EntityRef::new("Document", "d7");
    assert!(
        with.check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
    assert!(
        with.check_relation(&doc, "viewer", &user("u7"))
            .unwrap()
            .allowed
    );
    assert!(
        !with
            .check_relation(&doc, "viewer", &user("u8"))
            .unwrap()
            .allowed
    );
    assert_eq!(with.tuple_count(), 50_002);
    // The snapshot itself is untouched.
    let plain = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    assert!(
        !plain
            .check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
    assert_eq!(snapshot.tuple_count(), 50_000);
    // The bound is per request, and the error names it.
    let too_many = (0..=MAX_CONTEXTUAL_TUPLES)
        .map(|i| format!("Folder::\"f{i}\"#viewer@User::\"anne\""))
        .collect();
    let refused = snapshot.with_contextual_tuples(too_many).err().unwrap();
    assert!(
        refused.to_string().contains("contextual_tuples"),
        "{refused}"
    );
    assert_eq!(
        refused.limit(),
        Some(crate::input::Limit::Entities),
        "{refused}"
    );
}

#[test]
fn a_subject_the_model_does_not_define_is_refused_as_openfga_refuses_it() {
    let (_dir, snapshot) = snapshot("Document::\"d\"#editor@User::\"anne\"\n");
    let view = snapshot.with_contextual_tuples(Vec::new()).unwrap();
    let doc = EntityRef::new("Document", "d");
    for (subject, message) in [
        (
            RelationSubject::Entity(EntityRef::new("Robot", "r")),
            "subject: type `Robot` is not defined in the relation model",
        ),
        (
            RelationSubject::Userset(EntityRef::new("Folder", "f"), "owner".to_owned()),
            "subject: type `Folder` has no relation `owner` in the relation model",
        ),
        (
            RelationSubject::Wildcard("Robot".to_owned()),
            "subject: type `Robot` is not defined in the relation model",
        ),
    ] {
        let refused = view.check_relation(&doc, "viewer", &subject).unwrap_err();
        assert_eq!(refused.to_string(), message);
        let refused = view
            .lookup_resources(&subject, "viewer", "Document", 10, None)
            .unwrap_err();
        assert_eq!(refused.to_string(), message);
    }
    // A defined subject type still answers, even one no tuple names.
    let answer = view
        .check_relation(
            &doc,
            "viewer",
            &RelationSubject::Wildcard("User".to_owned()),
        )
        .unwrap();
    assert!(!answer.allowed);
    assert!(
        view.check_relation(&doc, "viewer", &user("anne"))
            .unwrap()
            .allowed
    );
}
