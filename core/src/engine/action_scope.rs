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

/// Returns every attribute name `policy` reads or tests; `None` if that cannot be determined.
///
/// From the policy's own text when it has one, by a scan of its tokens; otherwise (a string
/// literal with an escape, a linked template) from its JSON form. The JSON form is exact but
/// Cedar builds it by parsing the text again, which made it as costly as the parse itself: 44%
/// of loading 10,000 policies (BENCHMARKS.md, issue 20).
fn attributes_read(policy: &cedar_policy::Policy) -> Option<Attributes> {
    policy
        .to_cedar()
        .and_then(|text| attributes_in_text(&text))
        .or_else(|| attributes_from_json(policy))
}

/// The attributes `policy`'s JSON form reads or tests.
fn attributes_from_json(policy: &cedar_policy::Policy) -> Option<Attributes> {
    let json = policy.to_json().ok()?;
    let mut out = FxHashSet::default();
    collect_attributes(&json, &mut out);
    Some(out)
}

/// A token of Cedar policy text, as far as naming attributes goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    /// A string literal's content, without escapes.
    Str(&'a str),
    /// A string literal with an escape: its value would need unescaping.
    Escaped,
    Punct(u8),
    Other,
}

/// Every name that follows `.` (attribute access, or a method: over-collected), a string
/// literal that follows `[` (indexing, or a set literal: over-collected) and a name or string
/// that follows `has` (a dotted `has a.b` continues through the `.` rule). Cedar has no other way
/// to name an attribute, and no computed names, so the result is a superset of what the policy
/// reads: a wider scope, never a wrong one. `None` for text the scan does not handle exactly:
/// a string literal with an escape where it would name an attribute (its name would need
/// unescaping), a non-ASCII character outside a string, an unterminated string.
fn attributes_in_text(text: &str) -> Option<Attributes> {
    let bytes = text.as_bytes();
    let mut out = FxHashSet::default();
    let mut previous = Token::Other;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let token = match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                let start = i + 1;
                // An escaped quote ends nothing: look past `\"` (and `\\`).
                let mut end = start;
                loop {
                    let offset = bytes[end..].iter().position(|&b| b == b'"' || b == b'\\')?;
                    end += offset;
                    if bytes[end] == b'"' {
                        break;
                    }
                    end += 2;
                    if end > bytes.len() {
                        return None;
                    }
                }
                let content = &text[start..end];
                i = end + 1;
                if content.contains('\\') {
                    Token::Escaped
                } else {
                    Token::Str(content)
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Token::Ident(&text[start..i])
            }
            b'0'..=b'9' => {
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                Token::Other
            }
            _ if byte.is_ascii() => {
                i += 1;
                Token::Punct(byte)
            }
            _ => return None,
        };
        match (previous, token) {
            (Token::Punct(b'.'), Token::Ident(name))
            | (Token::Punct(b'['), Token::Str(name))
            | (Token::Ident("has"), Token::Ident(name) | Token::Str(name)) => {
                out.insert(name.into());
            }
            (Token::Punct(b'[') | Token::Ident("has"), Token::Escaped) => return None,
            _ => {}
        }
        previous = token;
    }
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

    /// The scan of a policy's text finds every attribute its JSON form names (a superset: it
    /// may find more), for every policy of every `.cedar` file in the repository that parses,
    /// and for text written to trip a scanner.
    #[test]
    fn the_text_scan_finds_every_attribute_the_json_form_names() {
        let tricky = r#"
            permit (principal, action, resource) when {
                resource [ "spaced" ] == 1 && principal has// comment
                   "quoted has" && context . // comment
                   split.inner && resource has a .b. c && [ "set", "literal" ].contains("x")
                && principal.tags.contains("has") && resource["has"] == "."
                && principal in Group::"a.b" && resource.n123 > 12 && !(resource has x_y)
            };
            forbid (principal, action, resource) unless { context.owner == principal.id };
            @id("a.b") permit (principal == User::"x", action, resource is T) when { resource.z };
            permit (principal, action, resource);
        "#;
        let mut texts = vec![("tricky".to_owned(), tricky.to_owned())];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs = vec![
            root.join("policies"),
            root.join("tests"),
            root.join("examples"),
        ];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "cedar") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    texts.push((path.display().to_string(), text));
                }
            }
        }
        let mut checked = 0;
        for (name, text) in &texts {
            let Ok(set) = PolicySet::from_str(text) else {
                continue;
            };
            for policy in set.policies() {
                let scanned = attributes_in_text(&policy.to_cedar().unwrap())
                    .unwrap_or_else(|| panic!("{name}: {} not scanned", policy.id()));
                let exact = attributes_from_json(policy).unwrap();
                let missing: Vec<_> = exact.difference(&scanned).collect();
                assert!(
                    missing.is_empty(),
                    "{name}: {} misses {missing:?}",
                    policy.id()
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} policies checked");
        let escaped =
            r#"@reason("say \"hi\"") permit (principal, action, resource) when { resource.q };"#;
        let escaped = PolicySet::from_str(escaped).unwrap();
        let policy = escaped.policies().next().unwrap();
        let scanned = attributes_in_text(&policy.to_cedar().unwrap()).unwrap();
        assert!(scanned.contains("q"), "{scanned:?}");
        let tricky = PolicySet::from_str(tricky).unwrap();
        let first = tricky.policies().find(|p| p.id().to_string() == "policy0");
        let scanned = attributes_in_text(&first.unwrap().to_cedar().unwrap()).unwrap();
        for name in [
            "spaced",
            "quoted has",
            "split",
            "inner",
            "a",
            "b",
            "c",
            "tags",
            "n123",
            "x_y",
        ] {
            assert!(scanned.contains(name), "{name} in {scanned:?}");
        }
    }

    #[test]
    fn text_the_scan_cannot_read_exactly_falls_back_to_the_json_form() {
        assert!(
            attributes_in_text(
                r#"permit (principal, action, resource) when { resource["a\u{62}"] };"#
            )
            .is_none()
        );
        assert!(
            attributes_in_text("permit (principal, action, resource) when { resource.é };")
                .is_none()
        );
        assert!(
            attributes_in_text(r#"permit (principal, action, resource) when { resource["a };"#)
                .is_none()
        );
        let set =
            policies(r#"permit (principal, action, resource) when { resource["a\u{62}"] == 1 };"#);
        let policy = set.policies().next().unwrap();
        let read = attributes_read(policy).unwrap();
        assert!(read.contains("ab"), "{read:?}");
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
