//! AuthZEN Authorization API 1.0 (OpenID Foundation, final): the request model, its mapping to a
//! Cedar request, and the evaluation and evaluations endpoints. Search is `search.rs`.
//!
//! The mapping (docs/authzen.md), configurable with `--authzen-types` and
//! `--authzen-action-type`:
//!
//! | AuthZEN | Cedar |
//! |---|---|
//! | `subject.type`, `subject.id` | the principal `<type>::"<id>"` (the type renamed when mapped) |
//! | `resource.type`, `resource.id` | the resource, likewise |
//! | `action.name` | the action `Action::"<name>"` (or `<action type>::"<name>"`) |
//! | `subject.properties`, `resource.properties` | attributes of the principal and resource as request entities: merged with the bundle's data under its rules (docs/security.md), validated against the schema |
//! | `action.properties` | not used: Cedar actions take no request attributes (must be an object if present) |
//! | `context` | the Cedar context (validated against the schema) |
//!
//! Every decision goes through `Snapshot::check`, the one door, and is recorded like any other
//! (`front_end="http"`). Unknown fields are ignored, as the specification requires; a field of
//! the model that is missing or of the wrong type is a 400 naming it.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use verdict_core::{CheckInput, Decision, EntityInput, EntityRef, Limits};

use super::error::HttpError;
use super::json::{self, as_object, get, optional_object, required_string};
use crate::api::record::{Asked, FrontEnd, RequestId, record_decision};
use crate::serving::Served;
use crate::telemetry::decision_log::DecisionLogSettings;
use crate::telemetry::metrics::{self as telemetry_metrics, Rejection};

/// How AuthZEN's entities become Cedar's (`--authzen-types`, `--authzen-action-type`,
/// `--authzen-reasons`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzenMapping {
    /// AuthZEN types that have another name in Cedar; any other type is used as written.
    pub types: Vec<(String, String)>,
    /// The Cedar type of action names (`Action`, or `Ns::Action`).
    pub action_type: String,
    /// Whether decisions carry `context.determining_policies` (and `context.errors`).
    pub reasons: bool,
}

impl Default for AuthzenMapping {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            action_type: "Action".to_owned(),
            reasons: false,
        }
    }
}

impl AuthzenMapping {
    /// Returns the Cedar type of the AuthZEN type `authzen`.
    pub fn cedar_type<'a>(&'a self, authzen: &'a str) -> &'a str {
        self.types
            .iter()
            .find(|(from, _)| from == authzen)
            .map_or(authzen, |(_, to)| to.as_str())
    }

    /// Returns the Cedar action uid text of the action name `name`.
    pub fn cedar_action(&self, name: &str) -> String {
        verdict_core::relations::display_uid(&self.action_type, name)
    }
}

/// A subject or a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// `type`, as AuthZEN names it.
    pub kind: String,
    /// `id`; empty in a search for this entity (where the id is ignored).
    pub id: String,
    /// `properties`.
    pub properties: Map<String, Value>,
}

/// An action.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `name`.
    pub name: String,
}

/// One access evaluation: the four parts of the information model.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub subject: Entity,
    pub action: Action,
    pub resource: Entity,
    pub context: Map<String, Value>,
}

/// Whether an entity's `id` is read (an evaluation) or ignored (the entity searched for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Required,
    Ignored,
}

/// Parses a subject or resource at `path`.
pub fn parse_entity(value: &Value, path: &str, id: Id) -> Result<Entity, HttpError> {
    let object = as_object(value, path)?;
    let kind = required_string(object, "type", &|| format!("{path}.type"))?.to_owned();
    let id = match id {
        Id::Required => required_string(object, "id", &|| format!("{path}.id"))?.to_owned(),
        Id::Ignored => String::new(),
    };
    let properties = optional_object(object, "properties", &|| format!("{path}.properties"))?;
    Ok(Entity {
        kind,
        id,
        properties,
    })
}

/// Parses an action at `path`.
pub fn parse_action(value: &Value, path: &str) -> Result<Action, HttpError> {
    let object = as_object(value, path)?;
    let name = required_string(object, "name", &|| format!("{path}.name"))?.to_owned();
    // Checked for its shape; Cedar actions take no request attributes.
    optional_object(object, "properties", &|| format!("{path}.properties"))?;
    Ok(Action { name })
}

/// Parses a context at `path` (absent: empty).
pub fn parse_context(value: Option<&Value>, path: &str) -> Result<Map<String, Value>, HttpError> {
    match value {
        None => Ok(Map::new()),
        Some(value) => Ok(as_object(value, path)?.clone()),
    }
}

/// Reads a required part of a request: `request[key]` or, for an evaluations item, the
/// top-level default; `path` names where it was read.
fn part<'v>(
    item: &'v Map<String, Value>,
    default: Option<&'v Map<String, Value>>,
    key: &str,
    prefix: &str,
) -> Result<(&'v Value, String), HttpError> {
    if let Some(value) = get(item, key) {
        return Ok((value, format!("{prefix}{key}")));
    }
    match default.and_then(|d| get(d, key)) {
        Some(value) => Ok((value, key.to_owned())),
        None if default.is_some() => Err(HttpError::invalid(format!(
            "{prefix}{key}: required field is missing (and there is no top-level `{key}` default)"
        ))),
        None => Err(HttpError::missing(&format!("{prefix}{key}"))),
    }
}

/// Parses an access evaluation from `item`, each part missing from it taken whole from
/// `defaults` (the evaluations request's top level); errors name `prefix` + the field.
pub fn parse_evaluation(
    item: &Map<String, Value>,
    defaults: Option<&Map<String, Value>>,
    prefix: &str,
) -> Result<Evaluation, HttpError> {
    let (subject, subject_path) = part(item, defaults, "subject", prefix)?;
    let (action, action_path) = part(item, defaults, "action", prefix)?;
    let (resource, resource_path) = part(item, defaults, "resource", prefix)?;
    let context = match get(item, "context") {
        Some(value) => parse_context(Some(value), &format!("{prefix}context"))?,
        None => parse_context(defaults.and_then(|d| get(d, "context")), "context")?,
    };
    Ok(Evaluation {
        subject: parse_entity(subject, &subject_path, Id::Required)?,
        action: parse_action(action, &action_path)?,
        resource: parse_entity(resource, &resource_path, Id::Required)?,
        context,
    })
}

/// Which request entity stands for which AuthZEN entity, to name fields in errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntitySlots {
    subject: Option<usize>,
    resource: Option<usize>,
}

/// Builds the core's request: principal, action, resource, context, and the subject's and
/// resource's properties as request entities.
pub fn check_input(evaluation: &Evaluation, mapping: &AuthzenMapping) -> (CheckInput, EntitySlots) {
    let principal = EntityRef::new(
        mapping.cedar_type(&evaluation.subject.kind),
        evaluation.subject.id.clone(),
    );
    let resource = EntityRef::new(
        mapping.cedar_type(&evaluation.resource.kind),
        evaluation.resource.id.clone(),
    );
    let mut input = CheckInput::new(
        principal.clone(),
        mapping.cedar_action(&evaluation.action.name),
        resource.clone(),
    );
    input.context = evaluation.context.clone();
    let mut slots = EntitySlots::default();
    if !evaluation.subject.properties.is_empty() {
        slots.subject = Some(input.entities.len());
        input.entities.push(EntityInput {
            uid: principal.clone(),
            attrs: evaluation.subject.properties.clone(),
            parents: Vec::new(),
        });
    }
    if !evaluation.resource.properties.is_empty() {
        if principal == resource {
            // One entity cannot be supplied twice: its attributes are merged.
            if let Some(entity) = slots.subject.and_then(|i| input.entities.get_mut(i)) {
                for (key, value) in &evaluation.resource.properties {
                    entity
                        .attrs
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
            }
        } else {
            slots.resource = Some(input.entities.len());
            input.entities.push(EntityInput {
                uid: resource,
                attrs: evaluation.resource.properties.clone(),
                parents: Vec::new(),
            });
        }
    }
    (input, slots)
}

/// Renames a core field (`principal.type`, `entities[1].attrs.owner`) to the AuthZEN request's
/// (`subject.type`, `resource.properties.owner`), with `prefix` (`evaluations[2].`) in front.
pub fn authzen_field(field: &str, slots: EntitySlots, prefix: &str) -> String {
    let renamed = if let Some(rest) = field.strip_prefix("principal") {
        format!("subject{rest}")
    } else if let Some(rest) = field.strip_prefix("action") {
        format!("action.name{rest}")
    } else if let Some(rest) = field.strip_prefix("entities[") {
        let (index, rest) = rest.split_once(']').unwrap_or(("", rest));
        let index = index.parse::<usize>().ok();
        let owner = if index.is_some() && index == slots.subject {
            "subject"
        } else if index.is_some() && index == slots.resource {
            "resource"
        } else {
            "entities"
        };
        let rest = rest
            .strip_prefix(".attrs")
            .map_or_else(|| rest.to_owned(), |r| format!(".properties{r}"));
        format!("{owner}{rest}")
    } else {
        field.to_owned()
    };
    format!("{prefix}{renamed}")
}

/// Everything deciding needs besides the request: one snapshot for the whole request.
#[derive(Clone)]
pub struct Asking {
    pub served: Arc<Served>,
    pub limits: Arc<Limits>,
    pub decision_log: DecisionLogSettings,
    pub request_id: RequestId,
    pub caller: Option<Arc<str>>,
    pub mapping: Arc<AuthzenMapping>,
}

/// Decides one evaluation through the one door and records it; `prefix` names the item in
/// errors (`evaluations[3].`).
pub fn decide(
    asking: &Asking,
    evaluation: &Evaluation,
    prefix: &str,
) -> Result<Decision, HttpError> {
    let started = Instant::now();
    let (input, slots) = check_input(evaluation, &asking.mapping);
    match asking.served.snapshot.check(input, &asking.limits) {
        Ok(decision) => {
            let item_id = ItemId {
                request: &asking.request_id,
                prefix,
            };
            let asked = Asked {
                served: &asking.served,
                decision_log: asking.decision_log,
                request_id: &item_id,
                caller: asking.caller.as_deref(),
                front_end: FrontEnd::Http,
                route: None,
            };
            record_decision(&asked, &decision, decision.is_allowed(), started.elapsed());
            Ok(decision)
        }
        Err(error) => {
            if let Some(limit) = error.limit() {
                telemetry_metrics::record_limit_breach(limit.into());
            }
            telemetry_metrics::record_rejection(match error {
                verdict_core::RequestError::Internal(_) => Rejection::Internal,
                _ => Rejection::Invalid,
            });
            Err(HttpError::from_request(error, &|field| {
                authzen_field(field, slots, prefix)
            }))
        }
    }
}

/// The decision log's request id of one evaluation: the request's, and `/evaluations[i]` for
/// an item of an evaluations request.
struct ItemId<'a> {
    request: &'a RequestId,
    prefix: &'a str,
}

impl std::fmt::Display for ItemId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.strip_suffix('.') {
            Some(item) => write!(f, "{}/{item}", self.request),
            None => write!(f, "{}", self.request),
        }
    }
}

/// The AuthZEN Decision object of a decision: `{"decision": bool}`, with `context` when
/// reasons are on.
pub fn decision_json(decision: &Decision, reasons: bool) -> Value {
    let mut out = json!({ "decision": decision.is_allowed() });
    if reasons {
        let mut context = json!({ "determining_policies": decision.determining_policies });
        if !decision.errors.is_empty() {
            context["errors"] = decision
                .errors
                .iter()
                .map(|e| json!({"policy": e.policy_id, "message": e.message}))
                .collect();
        }
        if decision.relation_depth_exceeded {
            context["relation_depth_exceeded"] = Value::Bool(true);
        }
        out["context"] = context;
    }
    out
}

/// The Decision of an item that could not be decided: closed, with the error in its context
/// (the specification's per-item error form).
fn error_decision_json(error: &HttpError) -> Value {
    json!({
        "decision": false,
        "context": {"error": {"status": error.status().as_u16(), "message": error.message()}},
    })
}

/// `POST /access/v1/evaluation`.
pub fn evaluation(asking: &Asking, body: &Map<String, Value>) -> Result<Value, HttpError> {
    let evaluation = parse_evaluation(body, None, "")?;
    let decision = decide(asking, &evaluation, "")?;
    Ok(decision_json(&decision, asking.mapping.reasons))
}

/// `options.evaluations_semantic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantic {
    /// Every item, in order (the default).
    ExecuteAll,
    /// Stop after the first item denied (or failed).
    DenyOnFirstDeny,
    /// Stop after the first item permitted.
    PermitOnFirstPermit,
}

impl Semantic {
    fn parse(options: Option<&Value>) -> Result<Self, HttpError> {
        let Some(options) = options else {
            return Ok(Self::ExecuteAll);
        };
        let options = as_object(options, "options")?;
        // Other option keys are ignored, as the specification requires.
        match json::optional_string(options, "evaluations_semantic", &|| {
            "options.evaluations_semantic".to_owned()
        })? {
            None | Some("execute_all") => Ok(Self::ExecuteAll),
            Some("deny_on_first_deny") => Ok(Self::DenyOnFirstDeny),
            Some("permit_on_first_permit") => Ok(Self::PermitOnFirstPermit),
            Some(other) => Err(HttpError::invalid(format!(
                "options.evaluations_semantic: `{}` is not `execute_all`, `deny_on_first_deny` or `permit_on_first_permit`",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// Whether an item with this outcome ends the evaluations.
    fn stops_after(self, allowed: bool) -> bool {
        match self {
            Self::ExecuteAll => false,
            Self::DenyOnFirstDeny => !allowed,
            Self::PermitOnFirstPermit => allowed,
        }
    }
}

/// `POST /access/v1/evaluations`: with no (or an empty) `evaluations` array it is one
/// evaluation; otherwise each item, its missing parts taken whole from the top level, in
/// order, stopping after the deciding item under the short-circuit semantics. The request is
/// parsed whole first (a malformed item is a 400 for the request); an item the core refuses is
/// a closed decision with the error in its context.
pub fn evaluations(asking: &Asking, body: &Map<String, Value>) -> Result<Value, HttpError> {
    let semantic = Semantic::parse(get(body, "options"))?;
    let items = match get(body, "evaluations") {
        None => &Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(HttpError::wrong_type("evaluations", "an array", other)),
    };
    if items.is_empty() {
        return evaluation(asking, body);
    }
    if let Err(error) = asking.limits.check_batch_len(items.len()) {
        telemetry_metrics::record_limit_breach(verdict_core::Limit::Batch.into());
        return Err(HttpError::from_request(error, &|_| {
            "evaluations".to_owned()
        }));
    }
    let parsed = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("evaluations[{i}].");
            let object = as_object(item, &format!("evaluations[{i}]"))?;
            Ok((parse_evaluation(object, Some(body), &prefix)?, prefix))
        })
        .collect::<Result<Vec<_>, HttpError>>()?;
    telemetry_metrics::record_batch_size(parsed.len());
    // INVARIANT: one snapshot (in `asking`) answers every item.
    let mut answers = Vec::with_capacity(parsed.len());
    for (evaluation, prefix) in &parsed {
        let (answer, allowed) = match decide(asking, evaluation, prefix) {
            Ok(decision) => (
                decision_json(&decision, asking.mapping.reasons),
                decision.is_allowed(),
            ),
            Err(error) if error.status().is_client_error() => (error_decision_json(&error), false),
            Err(error) => return Err(error),
        };
        answers.push(answer);
        if semantic.stops_after(allowed) {
            break;
        }
    }
    Ok(json!({ "evaluations": answers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_item_part_replaces_the_default_whole() {
        let body = object(
            r#"{"subject": {"type": "user", "id": "a", "properties": {"x": 1}},
                "action": {"name": "read"},
                "context": {"t": 1},
                "evaluations": [{"resource": {"type": "doc", "id": "1"},
                                 "subject": {"type": "user", "id": "b"}}]}"#,
        );
        let item = body["evaluations"][0].as_object().unwrap();
        let evaluation = parse_evaluation(item, Some(&body), "evaluations[0].").unwrap();
        assert_eq!(evaluation.subject.id, "b");
        assert!(evaluation.subject.properties.is_empty(), "not merged");
        assert_eq!(evaluation.action.name, "read");
        assert_eq!(evaluation.context["t"], 1);
    }

    #[test]
    fn missing_parts_are_named() {
        let body = object(r#"{"evaluations": [{"action": {"name": "read"}}]}"#);
        let item = body["evaluations"][0].as_object().unwrap();
        let error = parse_evaluation(item, Some(&body), "evaluations[0].").unwrap_err();
        assert_eq!(
            error.message(),
            "evaluations[0].subject: required field is missing (and there is no top-level `subject` default)"
        );
        let error = parse_evaluation(
            &object(r#"{"subject": {"type": "user"}, "action": {}, "resource": {}}"#),
            None,
            "",
        )
        .unwrap_err();
        assert_eq!(error.message(), "subject.id: required field is missing");
        let error = parse_evaluation(
            &object(
                r#"{"subject": {"type": "u", "id": "1"}, "action": {"name": "r"},
                    "resource": {"type": "d", "id": "1"}, "context": [1]}"#,
            ),
            None,
            "",
        )
        .unwrap_err();
        assert_eq!(
            error.message(),
            "context: expected an object, found an array"
        );
    }

    #[test]
    fn core_fields_are_renamed_to_authzen_fields() {
        let slots = EntitySlots {
            subject: Some(0),
            resource: Some(1),
        };
        assert_eq!(authzen_field("principal.type", slots, ""), "subject.type");
        assert_eq!(
            authzen_field("entities[1].attrs.owner", slots, "evaluations[2]."),
            "evaluations[2].resource.properties.owner"
        );
        assert_eq!(authzen_field("action", slots, ""), "action.name");
        assert_eq!(authzen_field("context.a", slots, ""), "context.a");
    }

    #[test]
    fn semantics_parse_and_unknown_options_are_ignored() {
        let parse = |text: &str| Semantic::parse(Some(&serde_json::from_str(text).unwrap()));
        assert_eq!(parse(r#"{"x": 1}"#).unwrap(), Semantic::ExecuteAll);
        assert_eq!(
            parse(r#"{"evaluations_semantic": "deny_on_first_deny", "y": [1]}"#).unwrap(),
            Semantic::DenyOnFirstDeny
        );
        assert_eq!(
            parse(r#"{"evaluations_semantic": "permit_on_first_permit"}"#).unwrap(),
            Semantic::PermitOnFirstPermit
        );
        assert!(
            parse(r#"{"evaluations_semantic": "all"}"#)
                .unwrap_err()
                .message()
                .starts_with("options.evaluations_semantic: `all`")
        );
        assert!(parse("[]").is_err());
    }

    #[test]
    fn the_mapping_renames_listed_types_only() {
        let mapping = AuthzenMapping {
            types: vec![("user".to_owned(), "Todo::User".to_owned())],
            action_type: "Todo::Action".to_owned(),
            reasons: false,
        };
        assert_eq!(mapping.cedar_type("user"), "Todo::User");
        assert_eq!(mapping.cedar_type("todo"), "todo");
        assert_eq!(
            mapping.cedar_action("can \"x\""),
            "Todo::Action::\"can \\\"x\\\"\""
        );
    }
}
