//! Differential test: on random tuple graphs (nesting, cycles, wildcards), the engine's decision
//! equals cedar-policy's own `is_authorized` over the fully materialised entity set, where every
//! userset is an entity and every tuple a parent edge. Cedar computes the transitive closure
//! itself when the graph is acyclic; Cedar rejects cyclic hierarchies, so for those the closure
//! is computed here by a plain breadth-first walk and handed to Cedar as direct parents.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};
use proptest::prelude::*;
use serde_json::json;
use verdict_core::{CheckInput, EntityRef, Outcome};
use verdict_core::{Limits, LoadOptions, Snapshot};

const POLICIES: &str = r#"
@id("read")
permit (principal, action == Action::"read", resource)
when { principal in resource.viewer || principal in resource.owner };

@id("edit")
permit (principal, action == Action::"edit", resource)
when { principal in resource.owner };

@id("blocked")
forbid (principal, action, resource)
when { principal in resource.blocked };

@id("join")
permit (principal, action == Action::"join", resource is Team)
when { principal in resource.member };
"#;

const USERS: usize = 5;
const TEAMS: usize = 5;
const DOCS: usize = 4;

#[derive(Debug, Clone)]
enum Subject {
    User(usize),
    TeamMembers(usize),
    AllUsers,
}

#[derive(Debug, Clone)]
struct Tuple {
    object: (&'static str, usize),
    relation: &'static str,
    subject: Subject,
}

fn arb_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        4 => (0..USERS).prop_map(Subject::User),
        3 => (0..TEAMS).prop_map(Subject::TeamMembers),
        1 => Just(Subject::AllUsers),
    ]
}

fn arb_tuple() -> impl Strategy<Value = Tuple> {
    prop_oneof![
        // Teams nest in any direction, so cycles are common.
        ((0..TEAMS), arb_subject()).prop_map(|(t, subject)| Tuple {
            object: ("Team", t),
            relation: "member",
            subject,
        }),
        (
            (0..DOCS),
            prop_oneof![Just("viewer"), Just("owner"), Just("blocked")],
            arb_subject()
        )
            .prop_map(|(d, relation, subject)| Tuple {
                object: ("Doc", d),
                relation,
                subject,
            }),
    ]
}

fn uid_text(entity_type: &str, id: &str) -> String {
    format!("{entity_type}::\"{id}\"")
}

fn object_text((entity_type, i): (&str, usize)) -> String {
    let prefix = if entity_type == "Team" { "t" } else { "d" };
    uid_text(entity_type, &format!("{prefix}{i}"))
}

fn tuple_line(tuple: &Tuple) -> String {
    let subject = match tuple.subject {
        Subject::User(u) => uid_text("User", &format!("u{u}")),
        Subject::TeamMembers(t) => format!("{}#member", uid_text("Team", &format!("t{t}"))),
        Subject::AllUsers => "User::*".to_owned(),
    };
    format!("{}#{}@{subject}", object_text(tuple.object), tuple.relation)
}

fn userset_uid(object: &str, relation: &str) -> EntityUid {
    let id = format!("{object}#{relation}");
    EntityUid::from_str(&format!("Verdict::Userset::{}", json!(id))).unwrap()
}

/// Every userset as an entity, every tuple as a parent edge; Cedar closes it transitively.
fn materialise(tuples: &[Tuple], principals: &[String]) -> Entities {
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wildcard_usersets: BTreeSet<String> = BTreeSet::new();
    let mut relations_by_type: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut usersets: BTreeSet<(String, String)> = BTreeSet::new();
    for tuple in tuples {
        let object = object_text(tuple.object);
        relations_by_type
            .entry(tuple.object.0)
            .or_default()
            .insert(tuple.relation);
        usersets.insert((object.clone(), tuple.relation.to_owned()));
        let userset = format!("{object}#{}", tuple.relation);
        match tuple.subject {
            Subject::User(u) => {
                parents
                    .entry(uid_text("User", &format!("u{u}")))
                    .or_default()
                    .insert(userset);
            }
            Subject::TeamMembers(t) => {
                let team = uid_text("Team", &format!("t{t}"));
                usersets.insert((team.clone(), "member".to_owned()));
                parents
                    .entry(format!("{team}#member"))
                    .or_default()
                    .insert(userset);
            }
            Subject::AllUsers => {
                wildcard_usersets.insert(userset);
            }
        }
    }
    let to_uids = |set: &BTreeSet<String>| -> HashSet<EntityUid> {
        set.iter()
            .map(|s| {
                let (object, relation) = s.rsplit_once('#').unwrap();
                userset_uid(object, relation)
            })
            .collect()
    };
    for principal in principals {
        parents
            .entry(principal.clone())
            .or_default()
            .extend(wildcard_usersets.iter().cloned());
    }
    let edges_entities = |closed: bool| {
        let mut entities = Vec::new();
        let ancestors = |node: &String| -> BTreeSet<String> {
            let direct = parents.get(node).cloned().unwrap_or_default();
            if !closed {
                return direct;
            }
            let mut seen = BTreeSet::new();
            let mut queue: Vec<String> = direct.into_iter().collect();
            while let Some(next) = queue.pop() {
                if seen.insert(next.clone()) {
                    queue.extend(parents.get(&next).cloned().unwrap_or_default());
                }
            }
            seen
        };
        for (object, relation) in &usersets {
            let key = format!("{object}#{relation}");
            // With the closure precomputed, usersets need no parents (and may not have cyclic ones).
            let own = if closed {
                BTreeSet::new()
            } else {
                ancestors(&key)
            };
            entities.push(Entity::new_no_attrs(
                userset_uid(object, relation),
                to_uids(&own),
            ));
        }
        for principal in principals {
            entities.push(Entity::new_no_attrs(
                EntityUid::from_str(principal).unwrap(),
                to_uids(&ancestors(principal)),
            ));
        }
        entities
    };
    let mut entities = edges_entities(false);
    for (entity_type, count, prefix) in [("Team", TEAMS, "t"), ("Doc", DOCS, "d")] {
        for i in 0..count {
            let object = uid_text(entity_type, &format!("{prefix}{i}"));
            let attrs: HashMap<String, RestrictedExpression> = relations_by_type
                .get(entity_type)
                .into_iter()
                .flatten()
                .map(|relation| {
                    (
                        (*relation).to_owned(),
                        RestrictedExpression::new_entity_uid(userset_uid(&object, relation)),
                    )
                })
                .collect();
            entities.push(
                Entity::new(EntityUid::from_str(&object).unwrap(), attrs, HashSet::new()).unwrap(),
            );
        }
    }
    let resources = entities.split_off(usersets.len() + principals.len());
    match Entities::from_entities(
        entities.iter().cloned().chain(resources.iter().cloned()),
        None,
    ) {
        Ok(entities) => entities,
        Err(_cycle) => {
            let closed = edges_entities(true);
            Entities::from_entities(closed.into_iter().chain(resources), None).unwrap()
        }
    }
}

fn arb_request() -> impl Strategy<Value = (usize, &'static str, (&'static str, usize))> {
    (
        0..=USERS, // USERS itself is a principal no tuple names
        prop_oneof![Just("read"), Just("edit"), Just("join")],
        prop_oneof![
            (0..DOCS).prop_map(|d| ("Doc", d)),
            (0..TEAMS).prop_map(|t| ("Team", t))
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_cedar_over_the_materialised_graph(
        tuples in proptest::collection::vec(arb_tuple(), 0..30),
        requests in proptest::collection::vec(arb_request(), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policies.cedar"), POLICIES).unwrap();
        let lines: Vec<String> = tuples.iter().map(tuple_line).collect();
        std::fs::write(dir.path().join("graph.tuples"), lines.join("\n")).unwrap();
        let options = LoadOptions { max_relation_depth: 1_000, ..LoadOptions::default() };
        let snapshot = Snapshot::load(dir.path(), &options).unwrap();

        let principals: Vec<String> = (0..=USERS).map(|u| uid_text("User", &format!("u{u}"))).collect();
        let materialised = materialise(&tuples, &principals);
        let policies = PolicySet::from_str(POLICIES).unwrap();
        let mut renamed = PolicySet::new();
        for policy in policies.policies() {
            let id = policy.annotation("id").unwrap().to_owned();
            renamed.add(policy.new_id(cedar_policy::PolicyId::new(id))).unwrap();
        }

        for (user, action, object) in requests {
            let principal = EntityRef { entity_type: "User".into(), id: format!("u{user}") };
            let prefix = if object.0 == "Team" { "t" } else { "d" };
            let resource = EntityRef { entity_type: object.0.into(), id: format!("{prefix}{}", object.1) };
            let input = CheckInput {
                principal: principal.clone(),
                action: action.to_owned(),
                resource: resource.clone(),
                context: serde_json::Map::new(),
                entities: Vec::new(),
                properties: Vec::new(),
                verified_principal: None,
            };
            let request = snapshot.prepare(input, &Limits::default()).unwrap();
            let ours = request.decide().unwrap();

            let cedar_request = Request::new(
                EntityUid::from_str(&principal.to_string()).unwrap(),
                EntityUid::from_str(&format!("Action::\"{action}\"")).unwrap(),
                EntityUid::from_str(&resource.to_string()).unwrap(),
                Context::empty(),
                None,
            ).unwrap();
            let theirs = Authorizer::new().is_authorized(&cedar_request, &renamed, &materialised);
            let theirs_allowed = theirs.decision() == cedar_policy::Decision::Allow;
            let mut theirs_reasons: Vec<String> = theirs.diagnostics().reason().map(ToString::to_string).collect();
            theirs_reasons.sort();

            prop_assert!(!ours.relation_depth_exceeded);
            prop_assert_eq!(ours.outcome == Outcome::Allow, theirs_allowed,
                "{} {} {}\ntuples:\n{}", principal, action, resource, lines.join("\n"));
            prop_assert_eq!(&ours.determining_policies, &theirs_reasons);
            prop_assert_eq!(ours.errors.len(), theirs.diagnostics().errors().count());
        }
    }
}
