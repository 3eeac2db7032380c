//! Input limits: what one request may carry, checked in one place before any work is done on it.
//!
//! Owns: the [`Limits`] value a caller passes to [`crate::Snapshot::check`], its defaults, and
//! the counting. A broken limit is a typed [`RequestError::TooLarge`] or
//! [`RequestError::TooDeep`] naming the `Limit`, so front-ends map it to a status code and a
//! metric label by matching on the variant, never on message text.
//!
//! Does not own: transport limits (message size, streams, timeouts): those belong to the
//! front-ends that read bytes.

use serde_json::Value;

use crate::input::{CheckInput, EntityRef, Limit, RequestError};

/// Default most checks in one batch.
pub const DEFAULT_MAX_BATCH: usize = 100;
/// Default deepest nesting of lists and records in context and entity attributes.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;
/// Default most entities in one request.
pub const DEFAULT_MAX_REQUEST_ENTITIES: usize = 100;
/// Default most parents of one request entity.
pub const DEFAULT_MAX_ENTITY_PARENTS: usize = 32;
/// Default most properties in one request.
pub const DEFAULT_MAX_PROPERTIES: usize = 100;
/// Default longest type, id, action, property or attribute name, in bytes.
pub const DEFAULT_MAX_STRING_BYTES: usize = 1024;
/// Default most elements in one set or record of the context or of an entity's attributes.
pub const DEFAULT_MAX_COLLECTION_ELEMENTS: usize = 1_000;
/// Units of work one request entity counts for: building it (merging it with the bundle's data,
/// checking it against the schema) costs about what reading eight values does.
pub const ENTITY_WORK: usize = 8;
/// Default most work one request may cause: its JSON values, entities and properties together.
pub const DEFAULT_MAX_REQUEST_WORK: usize = 2_000;

/// What one request may carry, and how far the caller's entities are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most checks in one batch.
    pub max_batch: usize,
    /// The deepest nesting of lists and records in context and entity attributes.
    pub max_json_depth: usize,
    /// The most entities in one request.
    pub max_request_entities: usize,
    /// The most parents of one request entity.
    pub max_entity_parents: usize,
    /// The most properties in one request.
    pub max_properties: usize,
    /// The longest type, id, action, property or attribute name, in bytes.
    pub max_string_bytes: usize,
    /// The most elements in one set (JSON array) or record (JSON object) of the context or of
    /// a request entity's attributes.
    pub max_collection_elements: usize,
    /// The most work one request may cause: every JSON value in its context and its entities'
    /// attributes (each scalar, set and record counts one), plus [`ENTITY_WORK`] per entity,
    /// plus one per property. What a request costs grows with this sum: a context value read
    /// directly costs about 0.4 µs (3 µs through Cedar's JSON parser, which escapes such as
    /// `__entity` still take), a request entity far more (hence `ENTITY_WORK`); the default
    /// keeps the worst admitted request well under 10 ms of CPU (BENCHMARKS.md measures it).
    pub max_request_work: usize,
    /// How far entities supplied with a request are trusted.
    pub request_entities: EntityTrust,
    /// The entity types a request may supply; `None` allows any type.
    pub request_entity_types: Option<Vec<String>>,
}

/// How far entities supplied with a request (`CheckInput::entities`) are trusted.
///
/// The threat: a caller that forwards end-user data as entities, or any client that reaches
/// the port, could claim memberships the bundle manages (a role, a team, a folder) and be
/// allowed by every policy that tests them (`principal in Role::"admin"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntityTrust {
    /// A request may describe entities the bundle does not know (their attributes) and chain
    /// them to each other as parents, but never make any entity a member of an entity the
    /// bundle knows (defines in its entity files, names in a tuple or a policy) or of one the
    /// request does not supply itself.
    #[default]
    Attributes,
    /// A request may also give an entity the bundle does not know any parents, the bundle's
    /// roles and groups included (as Amazon Verified Permissions does): trust every caller
    /// that can reach the port with every membership.
    Full,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_request_entities: DEFAULT_MAX_REQUEST_ENTITIES,
            max_entity_parents: DEFAULT_MAX_ENTITY_PARENTS,
            max_properties: DEFAULT_MAX_PROPERTIES,
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
            max_collection_elements: DEFAULT_MAX_COLLECTION_ELEMENTS,
            max_request_work: DEFAULT_MAX_REQUEST_WORK,
            request_entities: EntityTrust::default(),
            request_entity_types: None,
        }
    }
}

/// Counts a request's work while a front-end converts it, so that an oversized set or record
/// is refused before it is converted, not after. Made by [`Limits::work_budget`]; the engine
/// counts the same way when it checks a [`CheckInput`].
#[derive(Debug)]
pub struct WorkBudget {
    max_collection_elements: usize,
    max_work: usize,
    spent: usize,
}

impl WorkBudget {
    /// Spends `count` units (values, entities or properties); `field` names where, built only
    /// when the budget is exceeded.
    pub fn spend(
        &mut self,
        count: usize,
        field: impl FnOnce() -> String,
    ) -> Result<(), RequestError> {
        self.spent = self.spent.saturating_add(count);
        if self.spent > self.max_work {
            return Err(RequestError::TooLarge {
                field: field(),
                limit: Limit::Work,
                count: self.spent,
                max: self.max_work,
            });
        }
        Ok(())
    }

    /// Checks one set or record of `len` elements, and spends one unit for it: each element is
    /// spent when it is visited.
    pub fn collection(
        &mut self,
        len: usize,
        field: impl Fn() -> String,
    ) -> Result<(), RequestError> {
        if len > self.max_collection_elements {
            return Err(RequestError::TooLarge {
                field: field(),
                limit: Limit::CollectionElements,
                count: len,
                max: self.max_collection_elements,
            });
        }
        self.spend(1, field)
    }

    /// Counts a JSON value: itself and everything inside it.
    fn value(&mut self, value: &Value, path: &mut String) -> Result<(), RequestError> {
        match value {
            Value::Array(items) => {
                self.collection(items.len(), || path.clone())?;
                let len = path.len();
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    self.value(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(fields) => self.record(fields, path),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                self.spend(1, || path.clone())
            }
        }
    }

    /// Counts a record and its fields.
    fn record(
        &mut self,
        fields: &serde_json::Map<String, Value>,
        path: &mut String,
    ) -> Result<(), RequestError> {
        self.collection(fields.len(), || path.clone())?;
        let len = path.len();
        for (key, item) in fields {
            path.push('.');
            path.push_str(key);
            self.value(item, path)?;
            path.truncate(len);
        }
        Ok(())
    }
}

impl Limits {
    /// Returns an empty work budget under these limits.
    pub fn work_budget(&self) -> WorkBudget {
        WorkBudget {
            max_collection_elements: self.max_collection_elements,
            max_work: self.max_request_work,
            spent: 0,
        }
    }

    /// Rejects a batch of `count` checks over [`Limits::max_batch`].
    pub fn check_batch_len(&self, count: usize) -> Result<(), RequestError> {
        if count > self.max_batch {
            return Err(RequestError::TooLarge {
                field: "checks".to_owned(),
                limit: Limit::Batch,
                count,
                max: self.max_batch,
            });
        }
        Ok(())
    }

    /// Rejects a request over a count or length limit. Nesting depth is checked while the
    /// JSON is normalised, where it is walked anyway.
    pub(crate) fn check_counts(&self, input: &CheckInput) -> Result<(), RequestError> {
        let over = |limit: Limit, field: String, count: usize, max: usize| {
            Err(RequestError::TooLarge {
                field,
                limit,
                count,
                max,
            })
        };
        if input.entities.len() > self.max_request_entities {
            return over(
                Limit::Entities,
                "entities".to_owned(),
                input.entities.len(),
                self.max_request_entities,
            );
        }
        for (i, entity) in input.entities.iter().enumerate() {
            if entity.parents.len() > self.max_entity_parents {
                return over(
                    Limit::Parents,
                    format!("entities[{i}].parents"),
                    entity.parents.len(),
                    self.max_entity_parents,
                );
            }
        }
        if input.properties.len() > self.max_properties {
            return over(
                Limit::Properties,
                "properties".to_owned(),
                input.properties.len(),
                self.max_properties,
            );
        }
        if let Some((field, length)) = overlong_name(input, self.max_string_bytes) {
            return over(Limit::StringBytes, field, length, self.max_string_bytes);
        }
        let mut budget = self.work_budget();
        budget.spend(
            input.entities.len() * ENTITY_WORK + input.properties.len(),
            || "entities".to_owned(),
        )?;
        budget.record(&input.context, &mut "context".to_owned())?;
        for (i, entity) in input.entities.iter().enumerate() {
            budget.record(&entity.attrs, &mut format!("entities[{i}].attrs"))?;
        }
        if let Some(allowed) = &self.request_entity_types {
            for (i, entity) in input.entities.iter().enumerate() {
                if !allowed.contains(&entity.uid.entity_type) {
                    return Err(RequestError::Invalid {
                        field: format!("entities[{i}].uid.type"),
                        reason: format!(
                            "requests may not supply entities of type `{}` (allowed: {})",
                            entity.uid.entity_type,
                            allowed.join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Returns the first name in a request longer than `max` bytes, with its field and length.
/// Names are entity types and ids, the action, property names, and the names of context and
/// entity attributes (at the top level). Field names are built only for the one returned.
fn overlong_name(input: &CheckInput, max: usize) -> Option<(String, usize)> {
    let overlong = |text: &str| (text.len() > max).then_some(text.len());
    let entity = |field: &dyn Fn() -> String, entity: &EntityRef| {
        overlong(&entity.entity_type)
            .map(|length| (format!("{}.type", field()), length))
            .or_else(|| overlong(&entity.id).map(|length| (format!("{}.id", field()), length)))
    };
    entity(&|| "principal".to_owned(), &input.principal)
        .or_else(|| entity(&|| "resource".to_owned(), &input.resource))
        .or_else(|| {
            input.entities.iter().enumerate().find_map(|(i, e)| {
                entity(&|| format!("entities[{i}].uid"), &e.uid).or_else(|| {
                    e.parents.iter().enumerate().find_map(|(p, parent)| {
                        entity(&|| format!("entities[{i}].parents[{p}]"), parent)
                    })
                })
            })
        })
        .or_else(|| overlong(&input.action).map(|length| ("action".to_owned(), length)))
        .or_else(|| {
            input
                .properties
                .iter()
                .enumerate()
                .find_map(|(i, property)| {
                    overlong(property).map(|length| (format!("properties[{i}]"), length))
                })
        })
        .or_else(|| {
            input
                .context
                .keys()
                .find_map(|key| overlong(key))
                .map(|length| ("context (a key)".to_owned(), length))
        })
        .or_else(|| {
            input.entities.iter().enumerate().find_map(|(i, e)| {
                e.attrs
                    .keys()
                    .find_map(|key| overlong(key))
                    .map(|length| (format!("entities[{i}].attrs (a key)"), length))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::EntityInput;

    fn limits() -> Limits {
        Limits {
            max_string_bytes: 8,
            ..Limits::default()
        }
    }

    fn request() -> CheckInput {
        let mut input = CheckInput::new(
            EntityRef::new("User", "u"),
            "read",
            EntityRef::new("Doc", "d"),
        );
        input.entities = vec![EntityInput {
            uid: EntityRef::new("User", "u"),
            attrs: serde_json::Map::new(),
            parents: vec![EntityRef::new("Org", "o"), EntityRef::new("Org", "o")],
        }];
        input
    }

    fn error(input: &CheckInput) -> String {
        match limits().check_counts(input) {
            Err(error) => error.to_string(),
            Ok(()) => "accepted".to_owned(),
        }
    }

    #[test]
    fn an_overlong_name_is_named_by_its_field() {
        assert_eq!(error(&request()), "accepted");
        let mut overlong = request();
        overlong.entities[0].parents[1].id = "o".repeat(9);
        assert_eq!(
            error(&overlong),
            "entities[0].parents[1].id: 9 bytes exceed the limit of 8"
        );
        // The first overlong name in request order is the one reported.
        overlong.resource = EntityRef::new("Documents", "d");
        assert_eq!(
            error(&overlong),
            "resource.type: 9 bytes exceed the limit of 8"
        );
    }

    #[test]
    fn a_broken_limit_is_typed() {
        let mut input = request();
        input.properties = (0..101).map(|i| format!("p{i}")).collect();
        let error = Limits::default().check_counts(&input).unwrap_err();
        assert!(matches!(
            error,
            RequestError::TooLarge {
                limit: Limit::Properties,
                count: 101,
                max: 100,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "properties: 101 properties exceed the limit of 100"
        );
        let batch = Limits::default().check_batch_len(101).unwrap_err();
        assert_eq!(
            batch.to_string(),
            "checks: 101 checks exceed the batch limit of 100"
        );
    }

    #[test]
    fn a_large_set_or_a_costly_request_is_refused_by_its_limit() {
        let limits = Limits {
            max_collection_elements: 3,
            max_request_work: 15,
            ..Limits::default()
        };
        let mut input = request();
        input.context = serde_json::json!({"ips": ["a", "b", "c", "d"]})
            .as_object()
            .cloned()
            .unwrap();
        let error = limits.check_counts(&input).unwrap_err();
        assert_eq!(error.limit(), Some(Limit::CollectionElements));
        assert_eq!(
            error.to_string(),
            "context.ips: 4 elements exceed the set and record size limit of 3"
        );
        // Within each set's size, but more than the request's work: 1 entity (8), then the
        // context record, two sets and their six values.
        input.context = serde_json::json!({"a": [1, 2, 3], "b": [4, 5, 6]})
            .as_object()
            .cloned()
            .unwrap();
        let error = limits.check_counts(&input).unwrap_err();
        assert_eq!(error.limit(), Some(Limit::Work));
        assert_eq!(
            error.to_string(),
            "context.b[1]: 16 units of work exceed the request work limit of 15"
        );
        input.context.remove("b");
        assert_eq!(limits.check_counts(&input), Ok(()));
    }
}
