//! Requests with a context under a schema, through `Snapshot::check`: the context is read
//! directly where it can be (engine/context.rs) and by Cedar's parser otherwise, and both must
//! give Cedar's own decision (`is_authorized` on the context Cedar parses itself) and Cedar's own
//! errors. Properties are decided without validating each property's request again only when
//! the schema declares `property` as a string.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request, Schema};
use serde_json::{Value, json};
use verdict_core::{CheckInput, Limits, LoadOptions, Outcome, Snapshot};

const SCHEMA: &str = r#"
entity Tenant;
entity User { tenant: Tenant };
entity Document { tenant: Tenant };
action read appliesTo {
  principal: User, resource: Document,
  context: {
    scopes: Set<String>, mfa?: Bool, age?: Long, tenant: Tenant, ip: ipaddr,
    client?: { name: String }, property?: String,
  },
};
action probe appliesTo {
  principal: User, resource: Document,
  context: { property?: Long },
};
"#;

const POLICIES: &str = r#"@id("read")
permit (principal, action == Action::"read", resource)
when {
  context.scopes.contains("documents:read") && context.tenant == resource.tenant
};

@id("stale-token")
forbid (principal, action == Action::"read", resource)
when { context has age && context.age >= 900 };

@id("internal-only")
forbid (principal, action == Action::"read", resource)
unless { context.ip.isInRange(ip("10.0.0.0/8")) };

@id("no-secret-property")
forbid (principal, action == Action::"read", resource)
when { context has property && context.property == "secret" };
"#;

fn load() -> (tempfile::TempDir, Snapshot, Schema) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.cedarschema"), SCHEMA).unwrap();
    std::fs::write(dir.path().join("policies.cedar"), POLICIES).unwrap();
    let entities = json!([
        {"uid": {"type": "User", "id": "alice"}, "attrs": {"tenant": {"type": "Tenant", "id": "acme"}}, "parents": []},
        {"uid": {"type": "Document", "id": "plan"}, "attrs": {"tenant": {"type": "Tenant", "id": "acme"}}, "parents": []}
    ]);
    std::fs::write(dir.path().join("data.entities.json"), entities.to_string()).unwrap();
    let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
    let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
    (dir, snapshot, schema)
}

fn input(action: &str, context: Value, properties: &[&str]) -> CheckInput {
    serde_json::from_value(json!({
        "principal": "User::\"alice\"",
        "action": action,
        "resource": "Document::\"plan\"",
        "context": context,
        "properties": properties,
    }))
    .unwrap()
}

/// Cedar's decision on the same request, its context parsed by Cedar itself.
fn cedar_allows(snapshot: &Snapshot, schema: &Schema, action: &str, context: &Value) -> bool {
    let uid = |t: &str| EntityUid::from_str(t).unwrap();
    let action = uid(&format!("Action::\"{action}\""));
    let context = Context::from_json_value(context.clone(), Some((schema, &action))).unwrap();
    let request = Request::new(
        uid("User::\"alice\""),
        action,
        uid("Document::\"plan\""),
        context,
        Some(schema),
    )
    .unwrap();
    let entities = Entities::from_json_value(
        json!([
            {"uid": {"type": "User", "id": "alice"}, "attrs": {"tenant": {"type": "Tenant", "id": "acme"}}, "parents": []},
            {"uid": {"type": "Document", "id": "plan"}, "attrs": {"tenant": {"type": "Tenant", "id": "acme"}}, "parents": []}
        ]),
        Some(schema),
    )
    .unwrap();
    Authorizer::new()
        .is_authorized(&request, snapshot.policies(), &entities)
        .decision()
        == cedar_policy::Decision::Allow
}

#[test]
fn decisions_are_cedars_whichever_way_the_context_is_read() {
    let (_dir, snapshot, schema) = load();
    let tenant = |id: &str| json!({"type": "Tenant", "id": id});
    let contexts = [
        // Plain forms, read directly.
        json!({"scopes": ["documents:read"], "tenant": tenant("acme"), "ip": "10.1.2.3"}),
        json!({"scopes": ["documents:read"], "tenant": tenant("acme"), "ip": "192.168.0.1"}),
        json!({"scopes": ["documents:read"], "tenant": tenant("globex"), "ip": "10.1.2.3"}),
        json!({"scopes": [], "tenant": tenant("acme"), "ip": "10.0.0.0/8"}),
        json!({"scopes": ["documents:read"], "tenant": tenant("acme"), "ip": "10.1.2.3", "age": 1000, "mfa": true, "client": {"name": "web"}}),
        json!({"scopes": ["documents:read", "x"], "tenant": tenant("acme"), "ip": "10.9.9.9", "age": -5}),
        // Escapes, left to Cedar's parser.
        json!({"scopes": ["documents:read"], "tenant": {"__entity": {"type": "Tenant", "id": "acme"}}, "ip": "10.1.2.3"}),
        json!({"scopes": ["documents:read"], "tenant": tenant("acme"), "ip": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}}}),
        json!({"scopes": ["documents:read"], "tenant": tenant("acme"), "ip": {"__extn": {"fn": "ip", "arg": "172.16.0.1"}}}),
    ];
    for context in contexts {
        let decision = snapshot
            .check(input("read", context.clone(), &[]), &Limits::default())
            .unwrap();
        assert_eq!(
            decision.outcome == Outcome::Allow,
            cedar_allows(&snapshot, &schema, "read", &context),
            "{context}"
        );
    }
}

#[test]
fn errors_are_cedars_whichever_way_the_context_is_read() {
    let (_dir, snapshot, schema) = load();
    let action = EntityUid::from_str("Action::\"read\"").unwrap();
    let refused = |context: Value| {
        snapshot
            .check(input("read", context, &[]), &Limits::default())
            .unwrap_err()
            .to_string()
    };
    // Cedar's parser, then its request validation (which checks the types the parser does
    // not), as `Snapshot::check` runs them when it leaves a context to Cedar.
    let cedar = |context: Value| match Context::from_json_value(context, Some((&schema, &action))) {
        Err(e) => e.to_string(),
        Ok(context) => Request::new(
            EntityUid::from_str("User::\"alice\"").unwrap(),
            action.clone(),
            EntityUid::from_str("Document::\"plan\"").unwrap(),
            context,
            Some(&schema),
        )
        .unwrap_err()
        .to_string(),
    };
    for context in [
        json!({"scopes": "documents:read", "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2.3"}),
        json!({"scopes": [], "tenant": {"type": "User", "id": "acme"}, "ip": "10.1.2.3"}),
        json!({"scopes": [], "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2"}),
        json!({"scopes": [], "tenant": {"type": "Tenant", "id": "acme"}}),
        json!({"scopes": [], "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2.3", "extra": 1}),
        json!({"scopes": [1], "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2.3"}),
    ] {
        let ours = refused(context.clone());
        let theirs = cedar(context.clone());
        assert!(
            ours.contains(&theirs),
            "{context}: ours `{ours}`, Cedar's `{theirs}`"
        );
    }
    // A valid context with a principal of the wrong type: Cedar's request validation speaks.
    let wrong_principal: CheckInput = serde_json::from_value(json!({
        "principal": "Document::\"plan\"", "action": "read", "resource": "Document::\"plan\"",
        "context": {"scopes": [], "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2.3"},
    }))
    .unwrap();
    let error = snapshot
        .check(wrong_principal, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("principal type `Document` is not valid for `Action::\"read\"`"),
        "{error}"
    );
}

#[test]
fn properties_are_decided_when_the_schema_declares_property_as_a_string() {
    let (_dir, snapshot, _schema) = load();
    let context = json!({"scopes": ["documents:read"], "tenant": {"type": "Tenant", "id": "acme"}, "ip": "10.1.2.3"});
    let decision = snapshot
        .check(
            input("read", context, &["title", "secret"]),
            &Limits::default(),
        )
        .unwrap();
    let outcomes: Vec<(&str, Outcome)> = decision
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [("title", Outcome::Allow), ("secret", Outcome::Deny)]
    );

    // `probe` declares `property` as a Long: every property request is refused.
    let error = snapshot
        .check(input("probe", json!({}), &["title"]), &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "properties: the schema's context for `Action::\"probe\"` must declare `property?: String`"
        ),
        "{error}"
    );
}
