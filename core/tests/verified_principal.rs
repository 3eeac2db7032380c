//! A principal a front-end verified (a bearer token) is trusted where a caller's request
//! entities are not: its parents may be roles the bundle manages. And no caller can forge one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use serde_json::json;
use verdict_core::{
    CheckInput, EntityInput, EntityRef, EntityTrust, Limits, LoadOptions, RequestError, Snapshot,
};

fn example() -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    Snapshot::load(&dir, &LoadOptions::default()).unwrap()
}

fn admin_call(principal: &str) -> CheckInput {
    CheckInput::new(
        EntityRef::new("User", principal),
        "ListUsers",
        EntityRef::new("Api", "admin"),
    )
}

fn verified(principal: &str, roles: &[&str]) -> EntityInput {
    EntityInput {
        uid: EntityRef::new("User", principal),
        attrs: serde_json::Map::new(),
        parents: roles.iter().map(|r| EntityRef::new("Role", *r)).collect(),
    }
}

fn invalid_field(error: RequestError) -> (String, String) {
    match error {
        RequestError::Invalid { field, reason } => (field, reason),
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

#[test]
fn a_verified_principal_s_roles_count() {
    let snapshot = example();
    let limits = Limits::default();
    // bob is no admin in the bundle: denied.
    assert!(
        !snapshot
            .check(admin_call("bob"), &limits)
            .unwrap()
            .is_allowed()
    );
    // His token says he is: allowed, by the admin policy.
    let input = CheckInput {
        verified_principal: Some(verified("bob", &["admin"])),
        ..admin_call("bob")
    };
    let decision = snapshot.check(input, &limits).unwrap();
    assert!(decision.is_allowed());
    assert_eq!(decision.determining_policies, ["admin-api-admins"]);
    // A role the bundle already gives (erin is an admin) is no conflict.
    let input = CheckInput {
        verified_principal: Some(verified("erin", &["admin", "admin"])),
        ..admin_call("erin")
    };
    assert!(snapshot.check(input, &limits).unwrap().is_allowed());
    // Roles that grant nothing grant nothing.
    let input = CheckInput {
        verified_principal: Some(verified("bob", &["auditor"])),
        ..admin_call("bob")
    };
    assert!(!snapshot.check(input, &limits).unwrap().is_allowed());
}

#[test]
fn the_same_roles_as_request_entities_are_refused() {
    let snapshot = example();
    let input = CheckInput {
        entities: vec![verified("bob", &["admin"])],
        ..admin_call("bob")
    };
    let (field, reason) = invalid_field(snapshot.check(input, &Limits::default()).unwrap_err());
    assert_eq!(field, "entities[0].parents");
    assert!(
        reason.contains("its parents come from the bundle"),
        "{reason}"
    );
    // An unknown user claiming a bundle role through request entities: refused too.
    let input = CheckInput {
        entities: vec![verified("zoe", &["admin"])],
        ..admin_call("zoe")
    };
    let (field, reason) = invalid_field(snapshot.check(input, &Limits::default()).unwrap_err());
    assert_eq!(field, "entities[0].parents[0]");
    assert!(reason.contains("may not claim membership"), "{reason}");
}

#[test]
fn a_caller_cannot_forge_or_extend_the_verified_principal() {
    let snapshot = example();
    let limits = Limits {
        request_entities: EntityTrust::Full,
        ..Limits::default()
    };
    // Describing the verified principal again in the request's entities is refused, even
    // under full trust: the token is the only source of its data.
    let input = CheckInput {
        verified_principal: Some(verified("bob", &[])),
        entities: vec![verified("bob", &["admin"])],
        ..admin_call("bob")
    };
    let (field, reason) = invalid_field(snapshot.check(input, &limits).unwrap_err());
    assert_eq!(field, "entities[0].uid");
    assert!(reason.contains("is the verified principal"), "{reason}");
    // The verified principal must be the principal asked about.
    let input = CheckInput {
        verified_principal: Some(verified("erin", &["admin"])),
        ..admin_call("bob")
    };
    let (field, reason) = invalid_field(snapshot.check(input, &limits).unwrap_err());
    assert_eq!(field, "principal");
    assert_eq!(
        reason,
        "the verified principal is `User::\"erin\"`, not `User::\"bob\"`"
    );
    // No JSON (or YAML) input can carry one.
    let json = json!({
        "principal": "User::\"bob\"",
        "action": "ListUsers",
        "resource": "Api::\"admin\"",
        "verified_principal": {"uid": "User::\"bob\"", "parents": ["Role::\"admin\""]},
    });
    let error = serde_json::from_value::<CheckInput>(json).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown field `verified_principal`"),
        "{error}"
    );
}

#[test]
fn a_verified_principal_cannot_join_actions_or_usersets() {
    let snapshot = example();
    for (parent, expected) in [
        (
            EntityRef::new("Action", "AdminOperation"),
            "cannot be a parent",
        ),
        (
            EntityRef::new("Verdict::Userset", "Document::\"roadmap\"#owner"),
            "cannot be a parent",
        ),
    ] {
        let input = CheckInput {
            verified_principal: Some(EntityInput {
                parents: vec![parent],
                ..verified("bob", &[])
            }),
            ..admin_call("bob")
        };
        let (field, reason) = invalid_field(snapshot.check(input, &Limits::default()).unwrap_err());
        assert_eq!(field, "principal.parents[0]");
        assert!(reason.contains(expected), "{reason}");
    }
}

#[test]
fn a_verified_principal_s_attributes_reach_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"permit (principal in Role::"eng", action == Action::"deploy", resource)
           when { principal.level >= 3 && principal.teams.contains("infra") && principal.staff };"#,
    )
    .unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let input = |level: i64, bundle_role: &str| CheckInput {
        verified_principal: Some(EntityInput {
            uid: EntityRef::new("User", "zoe"),
            attrs: json!({"level": level, "teams": ["infra", "web"], "staff": true})
                .as_object()
                .cloned()
                .unwrap(),
            parents: vec![EntityRef::new("Role", bundle_role)],
        }),
        ..CheckInput::new(
            EntityRef::new("User", "zoe"),
            "deploy",
            EntityRef::new("Service", "api"),
        )
    };
    let limits = Limits::default();
    assert!(
        snapshot
            .check(input(3, "eng"), &limits)
            .unwrap()
            .is_allowed()
    );
    assert!(
        !snapshot
            .check(input(2, "eng"), &limits)
            .unwrap()
            .is_allowed()
    );
    assert!(
        !snapshot
            .check(input(3, "ops"), &limits)
            .unwrap()
            .is_allowed()
    );
}

#[test]
fn a_verified_attribute_the_bundle_defines_is_refused() {
    let snapshot = example();
    let input = CheckInput {
        verified_principal: Some(EntityInput {
            attrs: json!({"tenant": {"type": "Tenant", "id": "globex"}})
                .as_object()
                .cloned()
                .unwrap(),
            ..verified("bob", &[])
        }),
        ..admin_call("bob")
    };
    let (field, reason) = invalid_field(snapshot.check(input, &Limits::default()).unwrap_err());
    assert_eq!(field, "principal.attrs.tenant");
    assert!(
        reason.contains("the bundle already defines `tenant`"),
        "{reason}"
    );
}
