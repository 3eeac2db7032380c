//! Converting protobuf messages to engine types and back.
//!
//! Messages are destructured exhaustively, so a new proto field is a compile error here until it
//! is handled.

use std::fmt::Write as _;

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use super::proto;
use verdict_core::{
    CheckInput, Decision, EntityInput, EntityRef, EvaluationError, Limits, Outcome,
    PropertyDecision, RelationSubject, WorkBudget,
};

use super::error::ApiError;

/// A protobuf message that cannot become an engine request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A required field is absent.
    #[error("{0}: required field is missing")]
    Missing(String),
    /// A field has a value the API does not accept.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path, such as `context.amount`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Which message of a request is being converted: the request itself, or one check of a batch.
/// Its `Display` is the prefix of field names in errors (`checks[3].` in a batch), built only
/// when an error needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A `Check` request.
    Single,
    /// The check at this index of a `BatchCheck`.
    Batch(usize),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single => Ok(()),
            Self::Batch(i) => write!(f, "checks[{i}]."),
        }
    }
}

/// Converts a `CheckRequest`; `item` prefixes field names in errors. Sets and records are
/// counted against `limits` as they are converted, so an oversized one is refused before any
/// of it is copied.
pub fn check_input(
    request: proto::CheckRequest,
    item: Item,
    limits: &Limits,
) -> Result<CheckInput, ApiError> {
    let proto::CheckRequest {
        principal,
        action,
        resource,
        context,
        entities,
        properties,
        // Taken out (and verified) by `token::verify` before conversion; never copied.
        token: _,
        // Honoured for the whole request before conversion (`Authorization::check`).
        consistency: _,
        // Taken out by `decide` before conversion: they scope the snapshot, not the input.
        contextual_tuples: _,
    } = request;
    let budget = &mut limits.work_budget();
    let context = struct_to_map(context, || format!("{item}context"), budget)?;
    let entities = entities
        .into_iter()
        .enumerate()
        .map(|(i, entity)| entity_input(entity, || format!("{item}entities[{i}]"), budget))
        .collect::<Result<_, _>>()?;
    Ok(CheckInput {
        principal: entity_ref(principal, || format!("{item}principal"))?,
        action,
        resource: entity_ref(resource, || format!("{item}resource"))?,
        context,
        entities,
        properties,
        verified_principal: None,
    })
}

/// Converts contextual tuples to tuple syntax (`Document::"d"#viewer@User::"anne"`), for
/// [`verdict_core::Snapshot::with_contextual_tuples`], which validates them; `prefix` goes
/// before `contextual_tuples[i]` in errors.
pub fn contextual_tuples(
    tuples: Vec<proto::RelationTuple>,
    prefix: &str,
) -> Result<Vec<String>, ProtocolError> {
    tuples
        .into_iter()
        .enumerate()
        .map(|(i, tuple)| {
            let field = || format!("{prefix}contextual_tuples[{i}]");
            let proto::RelationTuple {
                object,
                relation,
                subject,
            } = tuple;
            let object = entity_ref(object, || format!("{}.object", field()))?;
            let subject = relation_subject(subject, || format!("{}.subject", field()))?;
            Ok(format!("{object}#{relation}@{}", subject.text()))
        })
        .collect()
}

/// Converts a `Subject`: an entity, a userset (`relation` set) or a wildcard (`wildcard` set,
/// `entity.id` empty).
pub fn relation_subject(
    subject: Option<proto::Subject>,
    field: impl Fn() -> String,
) -> Result<RelationSubject, ProtocolError> {
    let proto::Subject {
        entity,
        relation,
        wildcard,
    } = subject.ok_or_else(|| ProtocolError::Missing(field()))?;
    let entity = entity_ref(entity, || format!("{}.entity", field()))?;
    if entity.entity_type.is_empty() {
        return Err(ProtocolError::Invalid {
            field: format!("{}.entity.type", field()),
            reason: "must not be empty".to_owned(),
        });
    }
    match (wildcard, relation.is_empty(), entity.id.is_empty()) {
        (true, true, true) => Ok(RelationSubject::Wildcard(entity.entity_type)),
        (true, _, _) => Err(ProtocolError::Invalid {
            field: field(),
            reason: "a wildcard has no relation and an empty `entity.id`".to_owned(),
        }),
        (false, _, true) => Err(ProtocolError::Invalid {
            field: format!("{}.entity.id", field()),
            reason: "must not be empty (set `wildcard` for every entity of the type)".to_owned(),
        }),
        (false, true, false) => Ok(RelationSubject::Entity(entity)),
        (false, false, false) => Ok(RelationSubject::Userset(entity, relation)),
    }
}

/// Returns a required entity (type and id non-empty).
pub fn required_entity(
    entity: Option<proto::EntityRef>,
    field: &str,
) -> Result<EntityRef, ProtocolError> {
    let entity = entity_ref(entity, || field.to_owned())?;
    if entity.entity_type.is_empty() || entity.id.is_empty() {
        return Err(ProtocolError::Invalid {
            field: field.to_owned(),
            reason: "type and id must not be empty".to_owned(),
        });
    }
    Ok(entity)
}

/// Converts a `RelationSubject` back to a `Subject`.
pub fn subject_message(subject: RelationSubject) -> proto::Subject {
    let (entity, relation, wildcard) = match subject {
        RelationSubject::Entity(e) => (e, String::new(), false),
        RelationSubject::Userset(e, relation) => (e, relation, false),
        RelationSubject::Wildcard(entity_type) => {
            (EntityRef::new(entity_type, ""), String::new(), true)
        }
    };
    proto::Subject {
        entity: Some(proto::EntityRef {
            r#type: entity.entity_type,
            id: entity.id,
        }),
        relation,
        wildcard,
    }
}

/// Field names are built by `field` only when an error needs them (most requests have none).
fn entity_ref(
    entity: Option<proto::EntityRef>,
    field: impl FnOnce() -> String,
) -> Result<EntityRef, ProtocolError> {
    let proto::EntityRef { r#type, id } = entity.ok_or_else(|| ProtocolError::Missing(field()))?;
    Ok(EntityRef {
        entity_type: r#type,
        id,
    })
}

fn entity_input(
    entity: proto::Entity,
    field: impl Fn() -> String,
    budget: &mut WorkBudget,
) -> Result<EntityInput, ApiError> {
    let proto::Entity {
        uid,
        attrs,
        parents,
    } = entity;
    Ok(EntityInput {
        uid: entity_ref(uid, || format!("{}.uid", field()))?,
        attrs: struct_to_map(attrs, || format!("{}.attrs", field()), budget)?,
        parents: parents
            .into_iter()
            .enumerate()
            .map(|(i, parent)| entity_ref(Some(parent), || format!("{}.parents[{i}]", field())))
            .collect::<Result<_, _>>()?,
    })
}

/// Converts a `Struct` to JSON. Numbers stay doubles here; `Snapshot::check` turns whole ones
/// into Longs and rejects the rest with the field's path.
fn struct_to_map(
    value: Option<prost_types::Struct>,
    field: impl FnOnce() -> String,
    budget: &mut WorkBudget,
) -> Result<Map<String, Value>, ApiError> {
    match value {
        Some(value) if !value.fields.is_empty() => {
            fields_to_map(value.fields, &mut field(), budget)
        }
        _ => Ok(Map::new()),
    }
}

fn fields_to_map(
    fields: std::collections::BTreeMap<String, prost_types::Value>,
    path: &mut String,
    budget: &mut WorkBudget,
) -> Result<Map<String, Value>, ApiError> {
    budget.collection(fields.len(), || path.clone())?;
    let len = path.len();
    let mut out = Map::with_capacity(fields.len());
    for (key, value) in fields {
        path.push('.');
        path.push_str(&key);
        let value = to_json(value, path, budget)?;
        path.truncate(len);
        out.insert(key, value);
    }
    Ok(out)
}

/// A `Value` as JSON for the engine, checked on the way. (Not pbjson-types' serde: its `Struct`
/// replaces prost-types' in every generated message and the client crate, and a serde round
/// trip would check nulls, non-finite numbers and the work budget only afterwards, without
/// the field's path in the error.)
fn to_json(
    value: prost_types::Value,
    path: &mut String,
    budget: &mut WorkBudget,
) -> Result<Value, ApiError> {
    let invalid = |path: &str, reason: &str| {
        ApiError::from(ProtocolError::Invalid {
            field: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if !matches!(value.kind, Some(Kind::StructValue(_) | Kind::ListValue(_))) {
        budget.spend(1, || path.clone())?;
    }
    // Recursion is bounded: prost refuses to decode messages nested more than 100 deep.
    match value.kind {
        None | Some(Kind::NullValue(_)) => Err(invalid(path, "null is not a Cedar value")),
        Some(Kind::BoolValue(b)) => Ok(Value::Bool(b)),
        Some(Kind::StringValue(s)) => Ok(Value::String(s)),
        Some(Kind::NumberValue(n)) => Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| invalid(path, "not a finite number")),
        Some(Kind::StructValue(s)) => fields_to_map(s.fields, path, budget).map(Value::Object),
        Some(Kind::ListValue(list)) => {
            budget.collection(list.values.len(), || path.clone())?;
            let len = path.len();
            let mut out = Vec::with_capacity(list.values.len());
            for (i, item) in list.values.into_iter().enumerate() {
                // Infallible: writing to a `String`.
                let _ = write!(path, "[{i}]");
                out.push(to_json(item, path, budget)?);
                path.truncate(len);
            }
            Ok(Value::Array(out))
        }
    }
}

/// Converts an engine decision to a `CheckResponse`.
pub fn check_response(decision: Decision, snapshot_version: &str) -> proto::CheckResponse {
    let Decision {
        principal: _,
        action: _,
        resource: _,
        outcome,
        determining_policies,
        errors,
        properties,
        relation_depth_exceeded,
    } = decision;
    proto::CheckResponse {
        decision: decision_code(outcome),
        determining_policies,
        errors: errors.into_iter().map(evaluation_error).collect(),
        properties: properties.into_iter().map(property_decision).collect(),
        snapshot_version: snapshot_version.to_owned(),
        relation_depth_exceeded,
    }
}

fn decision_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Allow => proto::Decision::Allow as i32,
        Outcome::Deny => proto::Decision::Deny as i32,
    }
}

fn evaluation_error(error: EvaluationError) -> proto::EvaluationError {
    let EvaluationError { policy_id, message } = error;
    proto::EvaluationError { policy_id, message }
}

fn property_decision(property: PropertyDecision) -> proto::PropertyDecision {
    let PropertyDecision {
        name,
        outcome,
        determining_policies,
        errors,
    } = property;
    proto::PropertyDecision {
        name,
        decision: decision_code(outcome),
        determining_policies,
        errors: errors.into_iter().map(evaluation_error).collect(),
    }
}

#[cfg(test)]
mod tests {
    use prost_types::{ListValue, Struct};

    use super::*;

    fn number(n: f64) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    fn request_with_context(fields: Vec<(&str, prost_types::Value)>) -> proto::CheckRequest {
        proto::CheckRequest {
            principal: Some(proto::EntityRef {
                r#type: "User".to_owned(),
                id: "alice".to_owned(),
            }),
            action: "read".to_owned(),
            resource: Some(proto::EntityRef {
                r#type: "Document".to_owned(),
                id: "d".to_owned(),
            }),
            context: Some(Struct {
                fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            }),
            entities: Vec::new(),
            properties: Vec::new(),
            token: String::new(),
            consistency: None,
            contextual_tuples: Vec::new(),
        }
    }

    #[test]
    fn missing_principal_is_named() {
        let mut request = request_with_context(Vec::new());
        request.principal = None;
        assert_eq!(
            check_input(request, Item::Batch(2), &Limits::default())
                .unwrap_err()
                .to_string(),
            "checks[2].principal: required field is missing"
        );
    }

    #[test]
    fn null_and_non_finite_values_are_rejected_with_their_path() {
        let list = prost_types::Value {
            kind: Some(Kind::ListValue(ListValue {
                values: vec![number(1.0), prost_types::Value { kind: None }],
            })),
        };
        let err = check_input(
            request_with_context(vec![("xs", list)]),
            Item::Single,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "context.xs[1]: null is not a Cedar value");
        let err = check_input(
            request_with_context(vec![("n", number(f64::NAN))]),
            Item::Single,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "context.n: not a finite number");
    }

    #[test]
    fn whole_numbers_reach_the_engine_as_integers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit (principal, action, resource) when { context.n == 42 };",
        )
        .unwrap();
        let snapshot = verdict_core::Snapshot::load(dir.path(), &Default::default()).unwrap();
        let limits = verdict_core::Limits::default();
        let input = check_input(
            request_with_context(vec![("n", number(42.0))]),
            Item::Single,
            &Limits::default(),
        )
        .unwrap();
        assert!(snapshot.check(input, &limits).unwrap().is_allowed());
        let input = check_input(
            request_with_context(vec![("n", number(4.5))]),
            Item::Single,
            &Limits::default(),
        )
        .unwrap();
        let err = snapshot.check(input, &limits).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("context.n: `4.5` is not an integer"),
            "{err}"
        );
    }
}
