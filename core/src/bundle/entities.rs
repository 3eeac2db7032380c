//! Entity files: Cedar's JSON entity format (`[{"uid": …, "attrs": …, "parents": […]}]`).
//!
//! Each array element is parsed separately from its raw JSON text, so that an error names the
//! line where that entity starts. Relations come from tuples only: an entity may not define an
//! attribute named like a relation of its type, and Verdict adds those attributes itself
//! (pointing at the userset entities) before Cedar validates the entity against the schema.
//! Cedar computes the entities' transitive closure once, here, at load time.

use cedar_policy::{Entities, Entity, EntityUid, Schema};
use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::error::LoadError;
use super::files::BundleFile;
use super::schema::RelationCatalog;
use crate::diagnostics::{error_chain, line_column};

/// Parses every entity file into one `Entities` and returns it with the number of entities
/// the files define; on any error, reports it and returns an empty set (the bundle is rejected
/// anyway).
pub(super) fn load(
    files: &[BundleFile],
    schema: Option<&Schema>,
    relations: &RelationCatalog,
    errors: &mut Vec<LoadError>,
) -> (Entities, usize) {
    let before = errors.len();
    let mut all = Vec::new();
    let mut first_seen: FxHashMap<EntityUid, (std::path::PathBuf, usize)> = FxHashMap::default();
    for file in files {
        let elements: Vec<&RawValue> = match serde_json::from_str(&file.text) {
            Ok(elements) => elements,
            Err(e) => {
                errors.push(LoadError::at(
                    &file.path,
                    e.line(),
                    e.column(),
                    format!("expected a JSON array of entities: {}", json_reason(&e)),
                ));
                continue;
            }
        };
        for raw in elements {
            let offset = (raw.get().as_ptr() as usize).saturating_sub(file.text.as_ptr() as usize);
            let (line, column) = line_column(&file.text, offset);
            let at = |message: String| LoadError::at(&file.path, line, column, message);
            let entity = serde_json::from_str::<Value>(raw.get())
                .map_err(|e| json_reason(&e))
                .and_then(|value| with_relation_attributes(value, relations))
                .and_then(|value| {
                    Entity::from_json_value(value, schema).map_err(|e| error_chain(&e))
                });
            let entity = match entity {
                Ok(entity) => entity,
                Err(message) => {
                    errors.push(at(format!("invalid entity: {message}")));
                    continue;
                }
            };
            let uid = entity.uid();
            if let Some((path, first_line)) = first_seen.get(&uid) {
                errors.push(at(format!(
                    "duplicate entity `{uid}`, first defined at {}:{first_line}",
                    path.display()
                )));
                continue;
            }
            first_seen.insert(uid, (file.path.clone(), line));
            all.push(entity);
        }
    }
    if errors.len() > before {
        return (Entities::empty(), 0);
    }
    let count = all.len();
    match Entities::from_entities(all, schema) {
        Ok(entities) => (entities, count),
        Err(e) => {
            // Whole-set problems (a parent cycle, an action that differs from the schema's)
            // belong to no single file.
            let path = match files {
                [only] => only.path.clone(),
                _ => files
                    .first()
                    .and_then(|f| f.path.parent())
                    .map(|dir| dir.join("*.entities.json"))
                    .unwrap_or_default(),
            };
            errors.push(LoadError::file(path, error_chain(&e)));
            (Entities::empty(), 0)
        }
    }
}

/// Rejects attributes named like relations and adds the relation attributes.
fn with_relation_attributes(
    mut value: Value,
    relations: &RelationCatalog,
) -> Result<Value, String> {
    let uid = value.get("uid");
    // Cedar also accepts the uid as `{"__entity": {...}}`.
    let uid = uid.and_then(|u| u.get("__entity")).or(uid);
    let (Some(entity_type), Some(id)) = (
        uid.and_then(|u| u.get("type")).and_then(Value::as_str),
        uid.and_then(|u| u.get("id")).and_then(Value::as_str),
    ) else {
        // Malformed: Cedar's parser reports it.
        return Ok(value);
    };
    let entity_type = entity_type.to_owned();
    let relation_attributes = relations.attributes_json(&entity_type, id);
    if relation_attributes.is_empty() {
        return Ok(value);
    }
    if let Value::Object(fields) = &mut value
        && let Value::Object(attrs) = fields
            .entry("attrs")
            .or_insert_with(|| Value::Object(Map::new()))
    {
        for (name, reference) in relation_attributes {
            if attrs.contains_key(&name) {
                return Err(format!(
                    "attribute `{name}` is a relation of `{entity_type}`: relations come from tuples, not entity attributes"
                ));
            }
            attrs.insert(name, reference);
        }
    }
    Ok(value)
}

/// serde_json's message without its trailing " at line L column C" (the location is kept in
/// fields).
fn json_reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse_uid(text: &str) -> Option<EntityUid> {
        text.parse().ok()
    }

    fn file(text: &str) -> BundleFile {
        BundleFile {
            path: PathBuf::from("b/e.entities.json"),
            relative: "e.entities.json".to_owned(),
            text: text.to_owned(),
            digest: [0; 32],
        }
    }

    fn load_one(text: &str) -> (Entities, Vec<String>) {
        let mut errors = Vec::new();
        let (entities, _) = load(
            &[file(text)],
            None,
            &RelationCatalog::new(None).unwrap(),
            &mut errors,
        );
        (entities, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn parents_are_closed_transitively_at_load() {
        let (entities, errors) = load_one(
            r#"[
  {"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [{"type": "Group", "id": "g"}]},
  {"uid": {"type": "Group", "id": "g"}, "attrs": {}, "parents": [{"type": "Group", "id": "root"}]}
]"#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let a = parse_uid(r#"User::"a""#).unwrap();
        let root = parse_uid(r#"Group::"root""#).unwrap();
        assert!(entities.is_ancestor_of(&root, &a));
    }

    #[test]
    fn a_bad_entity_is_reported_at_its_line() {
        let (_, errors) = load_one(
            r#"[
  {"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": []},
  {"uid": {"type": "User"}, "attrs": {}, "parents": []}
]"#,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("b/e.entities.json:3:3: invalid entity: "),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicates_and_malformed_json_are_located() {
        let (_, errors) = load_one(
            "[\n{\"uid\": {\"type\": \"U\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []},\n{\"uid\": {\"type\": \"U\", \"id\": \"a\"}, \"attrs\": {}, \"parents\": []}\n]",
        );
        assert_eq!(
            errors,
            [
                "b/e.entities.json:3:1: duplicate entity `U::\"a\"`, first defined at b/e.entities.json:2"
            ]
        );
        let (_, errors) = load_one("[\n  {\"uid\": }\n]");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("b/e.entities.json:2:11: expected a JSON array of entities: "),
            "{errors:?}"
        );
    }
}
