//! The policy scope index, computed once per snapshot: for each action the bundle knows, the
//! policies whose action constraint can match it, and the attribute names those policies read.
//!
//! Both are exact shortcuts, not approximations:
//!
//! - Cedar evaluates a policy as `principal scope && action scope && resource scope && when &&
//!   !unless`, left to right, so a policy whose action scope cannot match the request's action
//!   neither allows, forbids nor errors. Leaving it out changes nothing but the time spent.
//! - A policy can read an entity attribute only by naming it (`e.name`, `e["name"]`,
//!   `e has name`): Cedar has no computed attribute names. So a relation (an attribute) that no
//!   applicable policy names cannot influence the decision, and its membership search and
//!   userset entity can be skipped.
//!
//! Actions the bundle does not know (neither its schema, its entity files nor a policy names
//! them) get no scope: they are decided with every policy and every relation.

use std::sync::Arc;

use rayon::prelude::*;

use cedar_policy::{ActionConstraint, Entities, EntityUid, PolicySet};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

/// What one action's requests need from the policies.
#[derive(Debug)]
pub struct ActionScope {
    /// The policies whose action constraint matches the action.
    pub policies: PolicySet,
    /// Every attribute name those policies read; `None` when that could not be determined
    /// (then every relation is in scope).
    pub attributes: Option<FxHashSet<Box<str>>>,
}

impl ActionScope {
    /// Returns whether a policy in scope may read the attribute `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.attributes.as_ref().is_none_or(|a| a.contains(name))
    }
}

/// The scope of every action the bundle knows.
#[derive(Debug, Default)]
pub struct ActionScopes {
    by_action: FxHashMap<EntityUid, Arc<ActionScope>>,
}

impl ActionScopes {
    /// Returns the scope of `action`, or `None` for an action the bundle does not know.
    pub fn get(&self, action: &EntityUid) -> Option<&ActionScope> {
        self.by_action.get(action).map(AsRef::as_ref)
    }

    /// Returns the number of distinct scopes (actions with the same policies share one).
    #[cfg(test)]
    pub fn distinct(&self) -> usize {
        let mut seen: FxHashSet<*const ActionScope> = FxHashSet::default();
        self.by_action
            .values()
            .filter(|s| seen.insert(Arc::as_ptr(s)))
            .count()
    }
}

/// Attribute names a policy reads.
type Attributes = FxHashSet<Box<str>>;

/// Builds the scope of each of `actions`, using `entities` for action groups.
///
/// Returns an empty index (every request uses every policy) when the set has templates:
/// template-linked policies cannot be copied into a new set on their own.
pub(super) fn build<'a>(
    policies: &PolicySet,
    entities: &Entities,
    actions: impl IntoIterator<Item = &'a EntityUid>,
) -> ActionScopes {
    if policies.templates().next().is_some() {
        return ActionScopes::default();
    }
    let all: Vec<_> = policies.policies().collect();
    // Per policy, once and in parallel (rayon): the attributes it reads (through its JSON form,
    // the costliest step of loading 10,000 policies after parsing them) and its action
    // constraint (which Cedar builds anew, cloning uids, on every call).
    let (reads, constraints): (Vec<Option<Attributes>>, Vec<ActionConstraint>) = all
        .par_iter()
        .map(|p| (attributes_read(p), p.action_constraint()))
        .unzip();
    let mut shared: FxHashMap<Vec<usize>, Arc<ActionScope>> = FxHashMap::default();
    let mut by_action = FxHashMap::default();
    for action in actions {
        let groups: FxHashSet<&EntityUid> = entities
            .ancestors(action)
            .map(Iterator::collect)
            .unwrap_or_default();
        let matches = |uid: &EntityUid| uid == action || groups.contains(uid);
        let applicable: Vec<usize> = constraints
            .iter()
            .enumerate()
            .filter(|(_, constraint)| match constraint {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(uid) => matches(uid),
                ActionConstraint::In(uids) => uids.iter().any(&matches),
            })
            .map(|(i, _)| i)
            .collect();
        let scope = shared.entry(applicable.clone()).or_insert_with(|| {
            let mut set = PolicySet::new();
            let mut attributes = Some(FxHashSet::default());
            for &i in &applicable {
                // Adding a policy the full set already holds cannot fail; if it somehow did,
                // the scope would be incomplete, so the action falls back to the full set.
                if set.add((*all[i]).clone()).is_err() {
                    return Arc::new(ActionScope {
                        policies: policies.clone(),
                        attributes: None,
                    });
                }
                match (&mut attributes, &reads[i]) {
                    (Some(all), Some(read)) => all.extend(read.iter().cloned()),
                    _ => attributes = None,
                }
            }
            Arc::new(ActionScope {
                policies: set,
                attributes,
            })
        });
        by_action.insert(action.clone(), Arc::clone(scope));
    }
    ActionScopes { by_action }
}

/// Returns every attribute name `policy` reads or tests, from its JSON form; `None` if that
/// form is not available.
fn attributes_read(policy: &cedar_policy::Policy) -> Option<FxHashSet<Box<str>>> {
    let json = policy.to_json().ok()?;
    let mut out = FxHashSet::default();
    collect_attributes(&json, &mut out);
    Some(out)
}

/// Collects the `attr` of every `.` (attribute access) and `has` node. Over-collecting (a
/// record literal with a field named `.`) only widens the scope, which stays exact.
fn collect_attributes(value: &Value, out: &mut FxHashSet<Box<str>>) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                if (key == "." || key == "has")
                    && let Some(attr) = child.get("attr")
                {
                    match attr {
                        Value::String(name) => {
                            out.insert(name.as_str().into());
                        }
                        // The extended form, `e has a.b.c`.
                        Value::Array(names) => {
                            out.extend(names.iter().filter_map(Value::as_str).map(Into::into));
                        }
                        _ => {}
                    }
                }
                collect_attributes(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_attributes(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn uid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap()
    }

    fn policies(text: &str) -> PolicySet {
        PolicySet::from_str(text).unwrap()
    }

    fn ids(scope: &ActionScope) -> Vec<String> {
        let mut ids: Vec<String> = scope
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn scope_holds_the_policies_whose_action_constraint_matches() {
        let set = policies(
            r#"
            permit (principal, action == Action::"read", resource) when { principal in resource.viewer };
            permit (principal, action in [Action::"write", Action::"edits"], resource) when { resource.owner == principal };
            permit (principal, action, resource) when { resource has public && resource.public };
            forbid (principal, action in Action::"admin", resource) unless { principal.level > 3 };
            "#,
        );
        let entities = Entities::from_json_str(
            r#"[
              {"uid": {"type": "Action", "id": "write"}, "attrs": {}, "parents": []},
              {"uid": {"type": "Action", "id": "delete"}, "attrs": {}, "parents": [{"type": "Action", "id": "admin"}]},
              {"uid": {"type": "Action", "id": "admin"}, "attrs": {}, "parents": []},
              {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": []}
            ]"#,
            None,
        )
        .unwrap();
        let actions = [
            uid(r#"Action::"read""#),
            uid(r#"Action::"write""#),
            uid(r#"Action::"delete""#),
        ];
        let scopes = build(&set, &entities, &actions);
        let read = scopes.get(&actions[0]).unwrap();
        assert_eq!(ids(read), ["policy0", "policy2"]);
        assert!(read.reads("viewer") && read.reads("public"));
        assert!(!read.reads("owner") && !read.reads("level"));
        let write = scopes.get(&actions[1]).unwrap();
        assert_eq!(ids(write), ["policy1", "policy2"]);
        assert!(write.reads("owner") && !write.reads("viewer"));
        // `delete` is in the `admin` group.
        let delete = scopes.get(&actions[2]).unwrap();
        assert_eq!(ids(delete), ["policy2", "policy3"]);
        assert!(delete.reads("level"));
        assert!(scopes.get(&uid(r#"Action::"unknown""#)).is_none());
    }

    #[test]
    fn every_way_of_naming_an_attribute_is_collected() {
        let set = policies(
            r#"
            permit (principal, action, resource) when {
                resource["quoted name"] == 1 && principal has a.b.c && context.rec.inner
                && (if resource has x then resource.y else resource.tags.contains(principal.z))
            };
            "#,
        );
        let scopes = build(&set, &Entities::empty(), &[uid(r#"Action::"a""#)]);
        let scope = scopes.get(&uid(r#"Action::"a""#)).unwrap();
        for name in [
            "quoted name",
            "a",
            "b",
            "c",
            "rec",
            "inner",
            "x",
            "y",
            "tags",
            "z",
        ] {
            assert!(scope.reads(name), "{name}");
        }
        assert!(!scope.reads("w"));
    }

    #[test]
    fn actions_with_the_same_policies_share_a_scope() {
        let set = policies(
            r#"
            permit (principal, action in [Action::"a", Action::"b"], resource);
            permit (principal, action == Action::"c", resource);
            "#,
        );
        let actions = [
            uid(r#"Action::"a""#),
            uid(r#"Action::"b""#),
            uid(r#"Action::"c""#),
        ];
        let scopes = build(&set, &Entities::empty(), &actions);
        assert_eq!(scopes.distinct(), 2);
    }
}
