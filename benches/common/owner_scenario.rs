//! The load benchmark's scenario, shared with the engine benches: the one Cerbos documents
//! first. The owner of a document may update and delete it, an admin may do anything, everyone
//! else is denied. Verdict learns owners from tuples and admins from entity data.

#![allow(dead_code, reason = "each bench uses its own part")]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};
use serde_json::json;
use verdict_core::CheckInput;
use verdict_core::{Limits, LoadOptions, Snapshot};

/// Documents and users; every tenth user is an admin.
pub const DOCUMENTS: usize = 1_000;
pub const USERS: usize = 100;
pub const ACTIONS: [&str; 3] = ["view", "update", "delete"];

pub fn is_admin(user: usize) -> bool {
    user.is_multiple_of(10)
}

pub fn owner(document: usize) -> usize {
    (document * 7) % USERS
}

pub fn expected(user: usize, action: &str, document: usize) -> bool {
    is_admin(user) || (action != "view" && owner(document) == user)
}

/// One logical check: who, what, which document.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub user: usize,
    pub action: &'static str,
    pub document: usize,
}

/// The request mix: every third request is the owner acting on their own document, so about
/// a third of the answers are allows.
pub fn checks(count: usize) -> Vec<Check> {
    let mut state = 0x5eed_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    (0..count)
        .map(|i| {
            let document = next(DOCUMENTS);
            let user = if i % 3 == 0 {
                owner(document)
            } else {
                next(USERS)
            };
            Check {
                user,
                action: ACTIONS[next(ACTIONS.len())],
                document,
            }
        })
        .collect()
}

/// The policies, in Verdict's bundle and in Cedar's own benchmark alike.
pub const POLICIES: &str = r#"@id("owner-update-delete")
permit (principal, action in [Action::"update", Action::"delete"], resource is Document)
when { principal in resource.owner };

@id("admin-all")
permit (principal in Role::"admin", action, resource);
"#;

/// Writes the Verdict bundle for the scenario into `dir`.
pub fn write_bundle(dir: &Path) {
    std::fs::write(dir.join("policies.cedar"), POLICIES).unwrap();
    let mut tuples = String::new();
    for d in 0..DOCUMENTS {
        tuples.push_str(&format!(
            "Document::\"d{d}\"#owner@User::\"u{}\"\n",
            owner(d)
        ));
    }
    std::fs::write(dir.join("owners.tuples"), tuples).unwrap();
    let users: Vec<serde_json::Value> = (0..USERS)
        .map(|u| {
            let parents = if is_admin(u) {
                json!([{"type": "Role", "id": "admin"}])
            } else {
                json!([])
            };
            json!({"uid": {"type": "User", "id": format!("u{u}")}, "attrs": {}, "parents": parents})
        })
        .collect();
    std::fs::write(
        dir.join("users.entities.json"),
        serde_json::to_string_pretty(&users).unwrap(),
    )
    .unwrap();
}

/// The scenario for the engine alone: Verdict's snapshot and requests, and Cedar's own view of
/// the same data (users with their roles, documents pointing at their owner userset, owners as
/// its members: what Verdict's slice gives Cedar, for the whole bundle at once).
pub struct Workload {
    pub checks: Vec<Check>,
    pub snapshot: Snapshot,
    pub inputs: Vec<CheckInput>,
    pub cedar_entities: Entities,
    pub cedar_requests: Vec<cedar_policy::Request>,
}

fn uid(entity_type: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{entity_type}::\"{id}\"")).unwrap()
}

impl Workload {
    /// Writes the bundle into `dir`, loads it, and builds `count` requests for both engines;
    /// asserts that both give the expected decision for every one.
    pub fn new(dir: &Path, count: usize) -> Self {
        write_bundle(dir);
        let snapshot = Snapshot::load(dir, &LoadOptions::default()).unwrap();
        let owners = |d: usize| snapshot.userset_uid("Document", &format!("d{d}"), "owner");
        let mut entities = vec![Entity::new_no_attrs(uid("Role", "admin"), HashSet::new())];
        for u in 0..USERS {
            let mut parents: HashSet<EntityUid> = (0..DOCUMENTS)
                .filter(|&d| owner(d) == u)
                .map(owners)
                .collect();
            if is_admin(u) {
                parents.insert(uid("Role", "admin"));
            }
            entities.push(Entity::new_no_attrs(uid("User", &format!("u{u}")), parents));
        }
        for d in 0..DOCUMENTS {
            let attrs = HashMap::from([(
                "owner".to_owned(),
                RestrictedExpression::new_entity_uid(owners(d)),
            )]);
            entities.push(
                Entity::new(uid("Document", &format!("d{d}")), attrs, HashSet::new()).unwrap(),
            );
            entities.push(Entity::new_no_attrs(owners(d), HashSet::new()));
        }
        let cedar_entities = Entities::from_entities(entities, None).unwrap();
        let checks = checks(count);
        let inputs: Vec<CheckInput> = checks
            .iter()
            .map(|c| {
                serde_json::from_value(json!({
                    "principal": format!("User::\"u{}\"", c.user),
                    "action": c.action,
                    "resource": format!("Document::\"d{}\"", c.document),
                }))
                .unwrap()
            })
            .collect();
        let cedar_requests: Vec<cedar_policy::Request> = checks
            .iter()
            .map(|c| {
                cedar_policy::Request::new(
                    uid("User", &format!("u{}", c.user)),
                    uid("Action", c.action),
                    uid("Document", &format!("d{}", c.document)),
                    Context::empty(),
                    None,
                )
                .unwrap()
            })
            .collect();
        let authorizer = cedar_policy::Authorizer::new();
        for ((check, input), cedar) in checks.iter().zip(&inputs).zip(&cedar_requests) {
            let want = expected(check.user, check.action, check.document);
            let request = snapshot.prepare(input.clone(), &Limits::default()).unwrap();
            let ours = request.decide().unwrap();
            let theirs = authorizer.is_authorized(cedar, snapshot.policies(), &cedar_entities);
            assert_eq!(
                ours.outcome == verdict_core::Outcome::Allow,
                want,
                "{check:?}"
            );
            assert_eq!(
                theirs.decision() == cedar_policy::Decision::Allow,
                want,
                "{check:?}"
            );
        }
        Self {
            checks,
            snapshot,
            inputs,
            cedar_entities,
            cedar_requests,
        }
    }
}
