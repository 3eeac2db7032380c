//! What the per-request slice must contain for forbids to fire, and what request data may not
//! do: entities reached through attributes, context and policy literals; no forged relations,
//! roles or action groups.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use serde_json::json;
use verdict_core::{CheckInput, Decision, EntityTrust, Outcome};
use verdict_core::{Limits, LoadOptions, Snapshot};

const POLICIES: &str = r##"
@id("readers")
permit (principal, action == Action::"read", resource is Doc)
when { principal in resource.reader };

@id("members-of-folder")
permit (principal, action == Action::"read", resource is Doc)
when { resource has folder && principal in resource.folder.viewer };

@id("admins")
permit (principal in Role::"admin", action == Action::"administer", resource);

@id("frozen-tenants")
forbid (principal, action, resource)
when { principal has tenant && principal.tenant in Tenant::"frozen" };

@id("locked-tenants")
forbid (principal, action, resource)
when { principal has tenant && principal.tenant has locked && principal.tenant.locked };

@id("banned-group")
forbid (principal, action, resource)
when { principal in Group::"banned".member };

@id("blocked-userset")
forbid (principal, action, resource)
when { principal in Verdict::Userset::"Group::\"blocked\"#member" };

@id("outer-circle")
permit (principal in Circle::"outer", action == Action::"enter", resource);

@id("owned-by-a-cleared-user")
permit (principal, action == Action::"peek", resource)
when { resource in Verdict::Userset::"Group::\"cleared\"#member" };

@id("closed-accounts")
forbid (principal, action, resource)
when { context has account && context.account has closed && context.account.closed };
"##;

const TUPLES: &str = r##"
Doc::"d"#reader@User::*
Doc::"in-folder"#reader@User::"nobody"
Folder::"f"#viewer@User::"frank"
Group::"banned"#member@User::"mallory"
Group::"blocked"#member@User::"oscar"
Group::"cleared"#member@User::"pat"
"##;

const ENTITIES: &str = r##"[
  {"uid": {"type": "Tenant", "id": "frozen"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Tenant", "id": "iced"}, "attrs": {}, "parents": [{"type": "Tenant", "id": "frozen"}]},
  {"uid": {"type": "Tenant", "id": "closed"}, "attrs": {"locked": true}, "parents": []},
  {"uid": {"type": "Tenant", "id": "open"}, "attrs": {"locked": false}, "parents": []},
  {"uid": {"type": "User", "id": "alice"}, "attrs": {"tenant": {"__entity": {"type": "Tenant", "id": "open"}}}, "parents": []},
  {"uid": {"type": "User", "id": "ida"}, "attrs": {"tenant": {"__entity": {"type": "Tenant", "id": "iced"}}}, "parents": []},
  {"uid": {"type": "User", "id": "lou"}, "attrs": {"tenant": {"__entity": {"type": "Tenant", "id": "closed"}}}, "parents": []},
  {"uid": {"type": "Doc", "id": "in-folder"}, "attrs": {"folder": {"__entity": {"type": "Folder", "id": "f"}}}, "parents": []},
  {"uid": {"type": "Account", "id": "gone"}, "attrs": {"closed": true}, "parents": []},
  {"uid": {"type": "Doc", "id": "pats-diary"}, "attrs": {}, "parents": [{"type": "User", "id": "pat"}]}
]"##;

fn snapshot() -> (tempfile::TempDir, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.cedar"), POLICIES).unwrap();
    std::fs::write(dir.path().join("graph.tuples"), TUPLES).unwrap();
    std::fs::write(dir.path().join("data.entities.json"), ENTITIES).unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    (dir, snapshot)
}

fn decide(snapshot: &Snapshot, request: serde_json::Value) -> Result<Decision, String> {
    decide_with(snapshot, request, &Limits::default())
}

fn decide_with(
    snapshot: &Snapshot,
    request: serde_json::Value,
    limits: &Limits,
) -> Result<Decision, String> {
    let input: CheckInput = serde_json::from_value(request).unwrap();
    snapshot.check(input, limits).map_err(|e| e.to_string())
}

/// Limits that trust request entities with any parents (`--request-entity-trust full`).
fn trusting() -> Limits {
    Limits {
        request_entities: EntityTrust::Full,
        ..Limits::default()
    }
}

fn read_d(principal: &str) -> serde_json::Value {
    json!({"principal": format!("User::\"{principal}\""), "action": "read", "resource": "Doc::\"d\""})
}

#[test]
fn a_user_with_nothing_against_them_reads_the_public_doc() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, read_d("alice")).unwrap();
    assert_eq!(decision.outcome, Outcome::Allow, "{decision:?}");
    assert!(decision.errors.is_empty(), "{decision:?}");
}

#[test]
fn a_forbid_on_the_principals_tenant_hierarchy_fires() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, read_d("ida")).unwrap();
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.determining_policies, ["frozen-tenants"]);
}

#[test]
fn a_forbid_on_the_principals_tenant_attributes_fires() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, read_d("lou")).unwrap();
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.determining_policies, ["locked-tenants"]);
    assert!(decision.errors.is_empty(), "{decision:?}");
}

#[test]
fn forbids_on_usersets_named_in_policies_fire() {
    let (_dir, snapshot) = snapshot();
    let decision = decide(&snapshot, read_d("mallory")).unwrap();
    assert_eq!(decision.determining_policies, ["banned-group"]);
    let decision = decide(&snapshot, read_d("oscar")).unwrap();
    assert_eq!(decision.determining_policies, ["blocked-userset"]);
}

#[test]
fn a_forbid_on_an_entity_in_the_context_fires() {
    let (_dir, snapshot) = snapshot();
    let mut request = read_d("alice");
    request["context"] = json!({"account": {"__entity": {"type": "Account", "id": "gone"}}});
    let decision = decide(&snapshot, request).unwrap();
    assert_eq!(decision.determining_policies, ["closed-accounts"]);
}

#[test]
fn relations_of_an_entity_reached_through_an_attribute_are_searched() {
    let (_dir, snapshot) = snapshot();
    let request =
        json!({"principal": "User::\"frank\"", "action": "read", "resource": "Doc::\"in-folder\""});
    let decision = decide(&snapshot, request).unwrap();
    assert_eq!(decision.outcome, Outcome::Allow, "{decision:?}");
    assert_eq!(decision.determining_policies, ["members-of-folder"]);
}

#[test]
fn request_parents_cannot_forge_a_relation() {
    let (_dir, snapshot) = snapshot();
    let mut request =
        json!({"principal": "User::\"eve\"", "action": "read", "resource": "Doc::\"in-folder\""});
    request["entities"] = json!([{
        "uid": "User::\"eve\"",
        "parents": [{"type": "Verdict::Userset", "id": "Doc::\"in-folder\"#reader"}],
    }]);
    let error = decide(&snapshot, request).unwrap_err();
    assert_eq!(
        error,
        "entities[0].parents[0]: `Verdict::Userset::\"Doc::\\\"in-folder\\\"#reader\"` cannot be a parent: relations come from tuples, action groups from the schema"
    );
}

#[test]
fn request_parents_cannot_move_an_entity_the_bundle_defines() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"alice\"", "action": "administer", "resource": "Doc::\"d\"",
        "entities": [{"uid": "User::\"alice\"", "parents": ["Role::\"admin\""]}],
    });
    let error = decide(&snapshot, request).unwrap_err();
    assert_eq!(
        error,
        "entities[0].parents: the bundle defines `User::\"alice\"`; its parents come from the bundle, not the request"
    );
}

#[test]
fn an_entity_the_bundle_does_not_know_may_bring_its_parents_when_trusted() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"newcomer\"", "action": "administer", "resource": "Doc::\"d\"",
        "entities": [{"uid": "User::\"newcomer\"", "parents": ["Role::\"admin\"", "Role::\"admin\""]}],
    });
    let decision = decide_with(&snapshot, request, &trusting()).unwrap();
    assert_eq!(decision.outcome, Outcome::Allow);
    assert_eq!(decision.determining_policies, ["admins"]);
}

#[test]
fn a_request_cannot_claim_a_role_the_bundle_manages_by_default() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"eve\"", "action": "administer", "resource": "Doc::\"d\"",
        "entities": [{"uid": "User::\"eve\"", "parents": ["Role::\"admin\""]}],
    });
    let error = decide(&snapshot, request.clone()).unwrap_err();
    assert_eq!(
        error,
        "entities[0].parents[0]: a request may not claim membership of `Role::\"admin\"`: the bundle manages its members (request entity trust is `attributes`)"
    );
    // Supplying the role as well does not help: the bundle knows it.
    let mut with_role = request;
    with_role["entities"] = json!([
        {"uid": "User::\"eve\"", "parents": ["Role::\"admin\""]},
        {"uid": "Role::\"admin\"", "attrs": {"note": "mine"}},
    ]);
    let error = decide(&snapshot, with_role).unwrap_err();
    assert!(error.contains("the bundle manages its members"), "{error}");
}

#[test]
fn a_request_may_chain_its_own_entities_by_default() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"newcomer\"", "action": "enter", "resource": "Doc::\"d\"",
        "entities": [
            {"uid": "User::\"newcomer\"", "parents": ["Circle::\"inner\""]},
            {"uid": "Circle::\"inner\""},
        ],
    });
    let decision = decide(&snapshot, request.clone()).unwrap();
    assert_eq!(decision.outcome, Outcome::Deny, "{decision:?}");
    // A parent the request does not supply is a claim on something it cannot vouch for.
    let mut unsupplied = request;
    unsupplied["entities"] =
        json!([{"uid": "User::\"newcomer\"", "parents": ["Circle::\"elsewhere\""]}]);
    let error = decide(&snapshot, unsupplied).unwrap_err();
    assert!(
        error.ends_with(
            "a parent must be an entity of the same request (request entity trust is `attributes`)"
        ),
        "{error}"
    );
}

#[test]
fn request_entity_types_can_be_limited() {
    let (_dir, snapshot) = snapshot();
    let limits = Limits {
        request_entity_types: Some(vec!["Circle".to_owned()]),
        ..Limits::default()
    };
    let request = json!({
        "principal": "User::\"newcomer\"", "action": "enter", "resource": "Doc::\"d\"",
        "entities": [{"uid": "Circle::\"inner\""}, {"uid": "User::\"newcomer\""}],
    });
    let error = decide_with(&snapshot, request, &limits).unwrap_err();
    assert_eq!(
        error,
        "entities[1].uid.type: requests may not supply entities of type `User` (allowed: Circle)"
    );
}

#[test]
fn parents_the_request_chains_are_closed_transitively() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"newcomer\"", "action": "enter", "resource": "Doc::\"d\"",
        "entities": [
            {"uid": "User::\"newcomer\"", "parents": ["Circle::\"inner\""]},
            {"uid": "Circle::\"inner\"", "parents": ["Circle::\"middle\""]},
            {"uid": "Circle::\"middle\"", "parents": ["Circle::\"outer\""]},
        ],
    });
    let decision = decide_with(&snapshot, request.clone(), &trusting()).unwrap();
    assert_eq!(decision.determining_policies, ["outer-circle"]);
    // A cycle among the request's parents is the caller's error, named as such.
    let mut cyclic = request;
    cyclic["entities"][2]["parents"] = json!(["Circle::\"inner\""]);
    let error = decide_with(&snapshot, cyclic, &trusting()).unwrap_err();
    assert!(error.starts_with("entities: "), "{error}");
}

/// The principal's usersets pass on to entities below it in the bundle's hierarchy, as a
/// transitive closure over the whole slice would have them.
#[test]
fn entities_below_the_principal_are_in_its_usersets() {
    let (_dir, snapshot) = snapshot();
    let peek = |principal: &str| {
        json!({
            "principal": format!("User::\"{principal}\""), "action": "peek",
            "resource": "Doc::\"pats-diary\"",
        })
    };
    let decision = decide(&snapshot, peek("pat")).unwrap();
    assert_eq!(decision.determining_policies, ["owned-by-a-cleared-user"]);
    // Someone else asking: the diary is not below them.
    assert_eq!(
        decide(&snapshot, peek("alice")).unwrap().outcome,
        Outcome::Deny
    );
}

#[test]
fn action_groups_cannot_come_from_the_request() {
    let (_dir, snapshot) = snapshot();
    let request = json!({
        "principal": "User::\"newcomer\"", "action": "read", "resource": "Doc::\"d\"",
        "entities": [{"uid": "Doc::\"new\"", "parents": ["Action::\"administer\""]}],
    });
    let error = decide(&snapshot, request).unwrap_err();
    assert!(
        error.starts_with("entities[0].parents[0]: `Action::\"administer\"` cannot be a parent"),
        "{error}"
    );
}

/// Policy ids come back as written: Cedar's `Display` escapes quotes and backslashes.
#[test]
fn policy_ids_are_reported_unescaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        "@id(\"bob's \\\"read\\\" \\\\ rule\")\npermit (principal, action, resource);\n\
         @id(\"fails's\")\npermit (principal, action, resource) when { context.missing };\n",
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let decision = decide(&snapshot, read_d("alice")).unwrap();
    assert_eq!(decision.determining_policies, ["bob's \"read\" \\ rule"]);
    assert_eq!(decision.errors.len(), 1, "{decision:?}");
    assert_eq!(decision.errors[0].policy_id, "fails's");
    assert!(snapshot.policy_location("bob's \"read\" \\ rule").is_some());
}
