//! Input limits: what one request may carry, checked in one place before any work is done on it.
//!
//! Owns: the [`Limits`] value a caller passes to [`crate::Snapshot::check`], its defaults, and
//! the counting. A broken limit is a typed [`RequestError::TooLarge`] or
//! [`RequestError::TooDeep`] naming the `Limit`, so front-ends map it to a status code and a
//! metric label by matching on the variant, never on message text.
//!
//! Does not own: transport limits (message size, streams, timeouts): those belong to the
//! front-ends that read bytes.

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

/// What one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }
}

impl Limits {
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
}
