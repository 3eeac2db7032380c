//! The proto3 JSON mapping of the `verdict.v1` messages the HTTP API carries, so that
//! `POST /v1/check` takes the JSON a gRPC client (grpcurl, a gRPC-JSON transcoder) would send
//! for `Check`, and answers what it would print.
//!
//! JSON becomes the generated prost message, and the gRPC handlers
//! (`super::super::authorization`) answer it: one conversion, one handler, the same decision on
//! both transports. The mapping follows the proto3 JSON rules for these messages:
//!
//! - field names in lowerCamelCase, their proto names accepted too (every request field of
//!   `verdict.v1` is one word, so they are the same); an unknown field is an error, as proto3
//!   JSON parsers do by default, naming it;
//! - `null` is the field's default; `google.protobuf.Struct` (`context`, `attrs`) is a JSON
//!   object, numbers as doubles (the core then wants whole numbers, as over gRPC);
//! - on output, fields with default values are left out, enums are their names
//!   (`DECISION_ALLOW`), and `oneof result` is the set member's name.
//!
//! Written by hand rather than generated (pbjson-build): the generated serde code would need
//! pbjson-types in place of prost-types for `Struct`, changing the gRPC types every handler
//! and the ext_authz front-end (whose envoy-types use prost-types) share, and it would name
//! only the field, not the path, in errors. The mapping is small (four messages in, six out).

use prost_types::value::Kind;
use serde_json::{Map, Value, json};

use super::error::HttpError;
use super::json::{as_object, get};
use crate::api::proto;

/// Refuses any key of `object` outside `known`, naming it under `path`.
fn only_known(object: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), HttpError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(key) => Err(HttpError::invalid(format!(
            "{path}{}: unknown field (expected one of {})",
            key.chars().take(64).collect::<String>(),
            known.join(", ")
        ))),
    }
}

fn string(object: &Map<String, Value>, key: &str, path: &str) -> Result<String, HttpError> {
    match get(object, key) {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(HttpError::wrong_type(
            &format!("{path}{key}"),
            "a string",
            other,
        )),
    }
}

fn array<'v>(
    object: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v [Value], HttpError> {
    match get(object, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(HttpError::wrong_type(
            &format!("{path}{key}"),
            "an array",
            other,
        )),
    }
}

fn entity_ref(value: &Value, path: &str) -> Result<proto::EntityRef, HttpError> {
    let object = as_object(value, path)?;
    let prefix = format!("{path}.");
    only_known(object, &["type", "id"], &prefix)?;
    Ok(proto::EntityRef {
        r#type: string(object, "type", &prefix)?,
        id: string(object, "id", &prefix)?,
    })
}

fn optional_entity_ref(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<proto::EntityRef>, HttpError> {
    get(object, key)
        .map(|value| entity_ref(value, &format!("{path}{key}")))
        .transpose()
}

/// A JSON object as `google.protobuf.Struct`.
fn to_struct(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<prost_types::Struct>, HttpError> {
    match get(object, key) {
        None => Ok(None),
        Some(Value::Object(fields)) => Ok(Some(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect(),
        })),
        Some(other) => Err(HttpError::wrong_type(
            &format!("{path}{key}"),
            "an object",
            other,
        )),
    }
}

/// A JSON value as `google.protobuf.Value`. Nesting is bounded before parsing
/// (`--max-json-depth`, `super::json`).
fn to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Parses a `CheckRequest` at `path` (`""`, or `checks[3].` in a batch).
pub fn check_request(value: &Value, path: &str) -> Result<proto::CheckRequest, HttpError> {
    let object = as_object(value, path.trim_end_matches('.'))?;
    only_known(
        object,
        &[
            "principal",
            "action",
            "resource",
            "context",
            "entities",
            "properties",
            "token",
            "consistency",
            "contextual_tuples",
            "contextualTuples",
        ],
        path,
    )?;
    let entities = array(object, "entities", path)?
        .iter()
        .enumerate()
        .map(|(i, entity)| {
            let at = format!("{path}entities[{i}]");
            let fields = as_object(entity, &at)?;
            let prefix = format!("{at}.");
            only_known(fields, &["uid", "attrs", "parents"], &prefix)?;
            Ok(proto::Entity {
                uid: optional_entity_ref(fields, "uid", &prefix)?,
                attrs: to_struct(fields, "attrs", &prefix)?,
                parents: array(fields, "parents", &prefix)?
                    .iter()
                    .enumerate()
                    .map(|(j, parent)| entity_ref(parent, &format!("{prefix}parents[{j}]")))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, HttpError>>()?;
    let properties = array(object, "properties", path)?
        .iter()
        .enumerate()
        .map(|(i, name)| match name {
            Value::String(name) => Ok(name.clone()),
            other => Err(HttpError::wrong_type(
                &format!("{path}properties[{i}]"),
                "a string",
                other,
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(proto::CheckRequest {
        contextual_tuples: contextual_tuples(object, path)?,
        principal: optional_entity_ref(object, "principal", path)?,
        action: string(object, "action", path)?,
        resource: optional_entity_ref(object, "resource", path)?,
        context: to_struct(object, "context", path)?,
        entities,
        properties,
        token: string(object, "token", path)?,
        consistency: consistency(object, path)?,
    })
}

/// Looks `key` up under its proto name or its lowerCamelCase JSON name.
fn get_either<'v>(object: &'v Map<String, Value>, proto: &str, json: &str) -> Option<&'v Value> {
    get(object, proto).or_else(|| get(object, json))
}

fn subject(value: &Value, path: &str) -> Result<proto::Subject, HttpError> {
    let object = as_object(value, path)?;
    let prefix = format!("{path}.");
    only_known(object, &["entity", "relation", "wildcard"], &prefix)?;
    let wildcard = match get(object, "wildcard") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(HttpError::wrong_type(
                &format!("{prefix}wildcard"),
                "a boolean",
                other,
            ));
        }
    };
    Ok(proto::Subject {
        entity: optional_entity_ref(object, "entity", &prefix)?,
        relation: string(object, "relation", &prefix)?,
        wildcard,
    })
}

fn optional_subject(
    object: &Map<String, Value>,
    path: &str,
) -> Result<Option<proto::Subject>, HttpError> {
    get(object, "subject")
        .map(|value| subject(value, &format!("{path}subject")))
        .transpose()
}

/// Parses `contextual_tuples` (or `contextualTuples`) under `path`.
fn contextual_tuples(
    object: &Map<String, Value>,
    path: &str,
) -> Result<Vec<proto::RelationTuple>, HttpError> {
    let Some(value) = get_either(object, "contextual_tuples", "contextualTuples") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(HttpError::wrong_type(
            &format!("{path}contextual_tuples"),
            "an array",
            value,
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}contextual_tuples[{i}]");
            let fields = as_object(item, &at)?;
            let prefix = format!("{at}.");
            only_known(fields, &["object", "relation", "subject"], &prefix)?;
            Ok(proto::RelationTuple {
                object: optional_entity_ref(fields, "object", &prefix)?,
                relation: string(fields, "relation", &prefix)?,
                subject: optional_subject(fields, &prefix)?,
            })
        })
        .collect()
}

fn page_size(object: &Map<String, Value>) -> Result<u32, HttpError> {
    match get_either(object, "page_size", "pageSize") {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| HttpError::invalid("page_size: not a 32-bit unsigned integer")),
        Some(other) => Err(HttpError::wrong_type("page_size", "a number", other)),
    }
}

/// Parses a `CheckRelationRequest`.
pub fn check_relation_request(
    object: &Map<String, Value>,
) -> Result<proto::CheckRelationRequest, HttpError> {
    only_known(
        object,
        &[
            "object",
            "relation",
            "subject",
            "contextual_tuples",
            "contextualTuples",
            "consistency",
        ],
        "",
    )?;
    Ok(proto::CheckRelationRequest {
        object: optional_entity_ref(object, "object", "")?,
        relation: string(object, "relation", "")?,
        subject: optional_subject(object, "")?,
        contextual_tuples: contextual_tuples(object, "")?,
        consistency: consistency(object, "")?,
    })
}

/// Parses a `LookupResourcesRequest`.
pub fn lookup_resources_request(
    object: &Map<String, Value>,
) -> Result<proto::LookupResourcesRequest, HttpError> {
    only_known(
        object,
        &[
            "subject",
            "relation",
            "resource_type",
            "resourceType",
            "contextual_tuples",
            "contextualTuples",
            "page_size",
            "pageSize",
            "cursor",
            "consistency",
        ],
        "",
    )?;
    let resource_type = match get_either(object, "resource_type", "resourceType") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(other) => return Err(HttpError::wrong_type("resource_type", "a string", other)),
    };
    Ok(proto::LookupResourcesRequest {
        subject: optional_subject(object, "")?,
        relation: string(object, "relation", "")?,
        resource_type,
        contextual_tuples: contextual_tuples(object, "")?,
        page_size: page_size(object)?,
        cursor: string(object, "cursor", "")?,
        consistency: consistency(object, "")?,
    })
}

/// Parses a `LookupSubjectsRequest`.
pub fn lookup_subjects_request(
    object: &Map<String, Value>,
) -> Result<proto::LookupSubjectsRequest, HttpError> {
    only_known(
        object,
        &[
            "object",
            "relation",
            "subject_type",
            "subjectType",
            "subject_relation",
            "subjectRelation",
            "contextual_tuples",
            "contextualTuples",
            "page_size",
            "pageSize",
            "cursor",
            "consistency",
        ],
        "",
    )?;
    let text = |proto: &str, json: &str| match get_either(object, proto, json) {
        Some(Value::String(s)) => Ok(s.clone()),
        None => Ok(String::new()),
        Some(other) => Err(HttpError::wrong_type(proto, "a string", other)),
    };
    Ok(proto::LookupSubjectsRequest {
        object: optional_entity_ref(object, "object", "")?,
        relation: string(object, "relation", "")?,
        subject_type: text("subject_type", "subjectType")?,
        subject_relation: text("subject_relation", "subjectRelation")?,
        contextual_tuples: contextual_tuples(object, "")?,
        page_size: page_size(object)?,
        cursor: string(object, "cursor", "")?,
        consistency: consistency(object, "")?,
    })
}

/// A `CheckRelationResponse` in proto3 JSON (defaults left out).
pub fn check_relation_response(response: &proto::CheckRelationResponse) -> Value {
    let mut out = Map::new();
    if response.allowed {
        out.insert("allowed".to_owned(), Value::Bool(true));
    }
    out.insert(
        "snapshotVersion".to_owned(),
        json!(response.snapshot_version),
    );
    if response.relation_depth_exceeded {
        out.insert("relationDepthExceeded".to_owned(), Value::Bool(true));
    }
    Value::Object(out)
}

fn page_json(mut out: Map<String, Value>, cursor: &str, version: &str, exceeded: bool) -> Value {
    if !cursor.is_empty() {
        out.insert("nextCursor".to_owned(), json!(cursor));
    }
    out.insert("snapshotVersion".to_owned(), json!(version));
    if exceeded {
        out.insert("relationDepthExceeded".to_owned(), Value::Bool(true));
    }
    Value::Object(out)
}

/// A `LookupResourcesResponse` (one page) in proto3 JSON.
pub fn lookup_resources_response(page: &proto::LookupResourcesResponse) -> Value {
    let mut out = Map::new();
    out.insert("resourceIds".to_owned(), json!(page.resource_ids));
    page_json(
        out,
        &page.next_cursor,
        &page.snapshot_version,
        page.relation_depth_exceeded,
    )
}

/// A `LookupSubjectsResponse` (one page) in proto3 JSON.
pub fn lookup_subjects_response(page: &proto::LookupSubjectsResponse) -> Value {
    let subjects: Vec<Value> = page
        .subjects
        .iter()
        .map(|s| {
            let mut out = Map::new();
            if let Some(e) = &s.entity {
                out.insert("entity".to_owned(), json!({"type": e.r#type, "id": e.id}));
            }
            if !s.relation.is_empty() {
                out.insert("relation".to_owned(), json!(s.relation));
            }
            if s.wildcard {
                out.insert("wildcard".to_owned(), Value::Bool(true));
            }
            Value::Object(out)
        })
        .collect();
    let mut out = Map::new();
    out.insert("subjects".to_owned(), Value::Array(subjects));
    page_json(
        out,
        &page.next_cursor,
        &page.snapshot_version,
        page.relation_depth_exceeded,
    )
}

/// Parses `consistency` (proto3 JSON: one of `minimizeLatency`, `atLeastAsFresh`,
/// `fullyConsistent`, or their proto names), if present.
fn consistency(
    object: &Map<String, Value>,
    path: &str,
) -> Result<Option<proto::Consistency>, HttpError> {
    use proto::consistency::Requirement;
    let Some(value) = get(object, "consistency") else {
        return Ok(None);
    };
    let at = format!("{path}consistency");
    let fields = as_object(value, &at)?;
    let prefix = format!("{at}.");
    const NAMES: [(&str, &str); 3] = [
        ("minimizeLatency", "minimize_latency"),
        ("atLeastAsFresh", "at_least_as_fresh"),
        ("fullyConsistent", "fully_consistent"),
    ];
    let known: Vec<&str> = NAMES.iter().flat_map(|(a, b)| [*a, *b]).collect();
    only_known(fields, &known, &prefix)?;
    if fields.len() > 1 {
        return Err(HttpError::invalid(format!(
            "{at}: at most one of minimizeLatency, atLeastAsFresh, fullyConsistent"
        )));
    }
    let Some((key, value)) = fields.iter().next() else {
        return Ok(Some(proto::Consistency { requirement: None }));
    };
    let boolean = |value: &Value| match value {
        Value::Bool(flag) => Ok(*flag),
        other => Err(HttpError::wrong_type(
            &format!("{prefix}{key}"),
            "a boolean",
            other,
        )),
    };
    let requirement = match key.as_str() {
        "minimizeLatency" | "minimize_latency" => Requirement::MinimizeLatency(boolean(value)?),
        "fullyConsistent" | "fully_consistent" => Requirement::FullyConsistent(boolean(value)?),
        _ => match value {
            Value::String(token) => Requirement::AtLeastAsFresh(token.clone()),
            other => {
                return Err(HttpError::wrong_type(
                    &format!("{prefix}{key}"),
                    "a string",
                    other,
                ));
            }
        },
    };
    Ok(Some(proto::Consistency {
        requirement: Some(requirement),
    }))
}

/// Parses a `BatchCheckRequest`.
pub fn batch_check_request(
    object: &Map<String, Value>,
) -> Result<proto::BatchCheckRequest, HttpError> {
    only_known(object, &["checks", "consistency"], "")?;
    let checks = array(object, "checks", "")?
        .iter()
        .enumerate()
        .map(|(i, check)| check_request(check, &format!("checks[{i}].")))
        .collect::<Result<_, _>>()?;
    Ok(proto::BatchCheckRequest {
        checks,
        consistency: consistency(object, "")?,
    })
}

fn decision_name(code: i32) -> &'static str {
    match proto::Decision::try_from(code) {
        Ok(proto::Decision::Allow) => "DECISION_ALLOW",
        Ok(proto::Decision::Deny) => "DECISION_DENY",
        _ => "DECISION_UNSPECIFIED",
    }
}

/// Sets `object[key]` unless `value` is the field's default (proto3 JSON leaves those out).
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    let default = match &value {
        Value::Array(items) => items.is_empty(),
        Value::String(text) => text.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Null => true,
        Value::Object(_) => false,
    };
    if !default {
        object.insert(key.to_owned(), value);
    }
}

fn errors_json(errors: &[proto::EvaluationError]) -> Value {
    errors
        .iter()
        .map(|e| {
            let mut out = Map::new();
            put(&mut out, "policyId", json!(e.policy_id));
            put(&mut out, "message", json!(e.message));
            Value::Object(out)
        })
        .collect()
}

/// A `CheckResponse` in proto3 JSON.
pub fn check_response(response: &proto::CheckResponse) -> Value {
    let mut out = Map::new();
    if response.decision != 0 {
        out.insert(
            "decision".to_owned(),
            json!(decision_name(response.decision)),
        );
    }
    put(
        &mut out,
        "determiningPolicies",
        json!(response.determining_policies),
    );
    put(&mut out, "errors", errors_json(&response.errors));
    let properties: Vec<Value> = response
        .properties
        .iter()
        .map(|p| {
            let mut property = Map::new();
            put(&mut property, "name", json!(p.name));
            if p.decision != 0 {
                property.insert("decision".to_owned(), json!(decision_name(p.decision)));
            }
            put(
                &mut property,
                "determiningPolicies",
                json!(p.determining_policies),
            );
            put(&mut property, "errors", errors_json(&p.errors));
            Value::Object(property)
        })
        .collect();
    put(&mut out, "properties", Value::Array(properties));
    put(
        &mut out,
        "snapshotVersion",
        json!(response.snapshot_version),
    );
    put(
        &mut out,
        "relationDepthExceeded",
        json!(response.relation_depth_exceeded),
    );
    Value::Object(out)
}

/// A `BatchCheckResponse` in proto3 JSON.
pub fn batch_check_response(response: &proto::BatchCheckResponse) -> Value {
    use proto::batch_check_result::Result as Item;
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|result| match &result.result {
            Some(Item::Response(response)) => json!({"response": check_response(response)}),
            Some(Item::Error(error)) => {
                let mut out = Map::new();
                put(&mut out, "code", json!(error.code));
                put(&mut out, "message", json!(error.message));
                json!({ "error": out })
            }
            None => json!({}),
        })
        .collect();
    let mut out = Map::new();
    put(&mut out, "results", Value::Array(results));
    put(
        &mut out,
        "snapshotVersion",
        json!(response.snapshot_version),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpcurl_request_becomes_the_same_message() {
        let value: Value = serde_json::from_str(
            r#"{"principal": {"type": "User", "id": "bob"}, "action": "read",
                "resource": {"type": "Document", "id": "roadmap"},
                "context": {"scopes": ["documents:read"], "n": 2},
                "entities": [{"uid": {"type": "Order", "id": "o"}, "attrs": {"total": 3},
                              "parents": [{"type": "Cart", "id": "c"}]}],
                "properties": ["email"]}"#,
        )
        .unwrap();
        let request = check_request(&value, "").unwrap();
        assert_eq!(request.principal.unwrap().id, "bob");
        assert_eq!(request.action, "read");
        assert_eq!(request.entities[0].parents[0].r#type, "Cart");
        let context = request.context.unwrap();
        assert_eq!(context.fields["n"].kind, Some(Kind::NumberValue(2.0)));
        assert_eq!(request.properties, vec!["email".to_owned()]);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named_with_their_path() {
        let parse = |text: &str| {
            check_request(&serde_json::from_str(text).unwrap(), "checks[1].")
                .unwrap_err()
                .message()
                .to_owned()
        };
        assert!(parse(r#"{"principle": {}}"#).starts_with("checks[1].principle: unknown field"));
        assert_eq!(
            parse(r#"{"principal": {"type": 1}}"#),
            "checks[1].principal.type: expected a string, found a number"
        );
        assert_eq!(
            parse(r#"{"entities": [{"uid": {}, "parents": [3]}]}"#),
            "checks[1].entities[0].parents[0]: expected an object, found a number"
        );
        assert_eq!(
            parse(r#"{"properties": [true]}"#),
            "checks[1].properties[0]: expected a string, found a boolean"
        );
    }

    #[test]
    fn responses_leave_defaults_out_and_name_enums() {
        let response = proto::CheckResponse {
            decision: proto::Decision::Deny as i32,
            determining_policies: Vec::new(),
            errors: vec![proto::EvaluationError {
                policy_id: "p".to_owned(),
                message: "m".to_owned(),
            }],
            properties: Vec::new(),
            snapshot_version: "v1".to_owned(),
            relation_depth_exceeded: false,
        };
        assert_eq!(
            check_response(&response),
            json!({"decision": "DECISION_DENY", "errors": [{"policyId": "p", "message": "m"}],
                   "snapshotVersion": "v1"})
        );
    }
}
