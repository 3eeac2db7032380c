//! The policy scope index decides with the policies that can apply to the request's action and
//! searches only the relations they read; these tests pin down that the shortcut never changes
//! an answer: action groups, actions the bundle does not know, policies for every action,
//! relations read through another entity, and the depth bound of a relation nobody reads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use serde_json::json;
use verdict_core::{CheckInput, Decision, Outcome};
use verdict_core::{Limits, LoadOptions, Snapshot};

const POLICIES: &str = r##"
@id("view-readers")
permit (principal, action in Action::"viewing", resource is Doc)
when { principal in resource.reader };

@id("edit-writers")
permit (principal, action == Action::"edit", resource is Doc)
when { principal in resource.writer };

@id("folder-viewers")
permit (principal, action == Action::"list", resource is Doc)
when { resource has folder && principal in resource.folder.viewer };

@id("owners-anything")
permit (principal, action, resource is Doc)
when { principal in resource.owner };

@id("no-suspended")
forbid (principal, action, resource)
when { principal has suspended && principal.suspended };
"##;

/// `deep` is a relation no policy reads, with a chain longer than the depth bound (4) that
/// `carol` is at the end of.
const TUPLES: &str = r##"
Doc::"d"#reader@User::"alice"
Doc::"d"#writer@User::"bob"
Doc::"d"#owner@User::"olga"
Folder::"f"#viewer@User::"fay"
Doc::"d"#deep@Team::"t0"#member
Team::"t0"#member@Team::"t1"#member
Team::"t1"#member@Team::"t2"#member
Team::"t2"#member@Team::"t3"#member
Team::"t3"#member@Team::"t4"#member
Team::"t4"#member@Team::"t5"#member
Team::"t5"#member@Team::"t6"#member
Team::"t6"#member@User::"carol"
"##;

const ENTITIES: &str = r##"[
  {"uid": {"type": "Action", "id": "viewing"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": [{"type": "Action", "id": "viewing"}]},
  {"uid": {"type": "Action", "id": "edit"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Action", "id": "list"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Doc", "id": "d"}, "attrs": {"folder": {"__entity": {"type": "Folder", "id": "f"}}}, "parents": []},
  {"uid": {"type": "User", "id": "sam"}, "attrs": {"suspended": true}, "parents": []}
]"##;

fn snapshot() -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.cedar"), POLICIES).unwrap();
    std::fs::write(dir.path().join("graph.tuples"), TUPLES).unwrap();
    std::fs::write(dir.path().join("data.entities.json"), ENTITIES).unwrap();
    let options = LoadOptions {
        max_relation_depth: 4,
        ..LoadOptions::default()
    };
    let snapshot = Snapshot::load(dir.path(), &options).unwrap();
    (dir, snapshot)
}

fn decide(snapshot: &Snapshot, principal: &str, action: &str) -> Decision {
    let input: CheckInput = serde_json::from_value(json!({
        "principal": format!("User::\"{principal}\""),
        "action": action,
        "resource": "Doc::\"d\"",
    }))
    .unwrap();
    snapshot.check(input, &Limits::default()).unwrap()
}

#[test]
fn a_policy_on_an_action_group_applies_to_its_members() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, "alice", "read");
    assert_eq!(decision.outcome, Outcome::Allow, "{decision:?}");
    assert_eq!(decision.determining_policies, ["view-readers"]);
    // The group itself is an action too.
    let decision = decide(&snapshot, "alice", "viewing");
    assert_eq!(decision.determining_policies, ["view-readers"]);
    // Reading is not editing.
    assert_eq!(decide(&snapshot, "alice", "edit").outcome, Outcome::Deny);
    assert_eq!(decide(&snapshot, "bob", "edit").outcome, Outcome::Allow);
    assert_eq!(decide(&snapshot, "bob", "read").outcome, Outcome::Deny);
}

#[test]
fn policies_for_every_action_apply_to_each_action() {
    let (_dir, snapshot) = snapshot();
    for action in ["read", "edit", "list", "viewing"] {
        let decision = decide(&snapshot, "olga", action);
        assert_eq!(
            decision.determining_policies,
            ["owners-anything"],
            "{action}"
        );
        let decision = decide(&snapshot, "sam", action);
        assert_eq!(decision.outcome, Outcome::Deny, "{action}");
    }
}

#[test]
fn an_action_the_bundle_does_not_know_gets_every_policy_and_every_relation() {
    let (_dir, snapshot) = snapshot();
    assert!(
        !snapshot
            .known_actions()
            .contains(&"Action::\"archive\"".parse().unwrap())
    );
    // Every policy: the forbid for every action fires.
    let decision = decide(&snapshot, "sam", "archive");
    assert_eq!(decision.determining_policies, ["no-suspended"]);
    // Every relation: the unread `deep` one is searched too and hits the bound, so even the
    // owner, allowed to read, is denied and told why.
    let decision = decide(&snapshot, "olga", "archive");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(decision.relation_depth_exceeded, "{decision:?}");
    assert_eq!(decide(&snapshot, "olga", "read").outcome, Outcome::Allow);
}

#[test]
fn a_relation_read_through_another_entity_is_searched() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, "fay", "list");
    assert_eq!(decision.determining_policies, ["folder-viewers"]);
}

#[test]
fn the_depth_bound_counts_only_for_relations_a_policy_reads() {
    let (_dir, snapshot) = snapshot();
    // `carol` is in `deep` only, through a chain longer than the bound, and no policy for a
    // known action reads `deep`: plain denies, nothing exceeded.
    for action in ["read", "edit", "list"] {
        let decision = decide(&snapshot, "carol", action);
        assert_eq!(decision.outcome, Outcome::Deny, "{action}");
        assert!(!decision.relation_depth_exceeded, "{action}: {decision:?}");
    }
    // Allows are not spoiled by the unread deep relation either.
    let decision = decide(&snapshot, "bob", "edit");
    assert_eq!(decision.outcome, Outcome::Allow);
    assert!(!decision.relation_depth_exceeded, "{decision:?}");
    let decision = decide(&snapshot, "olga", "read");
    assert_eq!(decision.outcome, Outcome::Allow);
}

#[test]
fn an_empty_context_is_still_checked_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schema.cedarschema"),
        r#"
        entity User;
        entity Doc;
        action read appliesTo { principal: User, resource: Doc, context: { mfa: Bool } };
        "#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "permit (principal, action == Action::\"read\", resource) when { context.mfa };",
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let prepare = |context: serde_json::Value| {
        let input: CheckInput = serde_json::from_value(json!({
            "principal": "User::\"u\"", "action": "read", "resource": "Doc::\"d\"",
            "context": context,
        }))
        .unwrap();
        snapshot.prepare(input, &Limits::default())
    };
    let error = prepare(json!({})).unwrap_err().to_string();
    assert!(error.starts_with("context: "), "{error}");
    assert!(error.contains("mfa"), "{error}");
    let request = prepare(json!({"mfa": true})).unwrap();
    let decision = request.decide().unwrap();
    assert_eq!(decision.outcome, Outcome::Allow);
}
