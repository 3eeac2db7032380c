//! The validated [`Prepared`] request the engine decides.
//!
//! A [`CheckInput`] (what a caller wrote, `crate::input`) becomes a [`Prepared`] request only
//! against a snapshot, because the snapshot's schema decides how the
//! context and the caller's entities are read and whether they are valid. Limits and validation
//! happen once, here; deciding a prepared request never fails on input.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, Entity, EntityId, EntityTypeName, EntityUid, RequestValidationError,
    RestrictedExpression,
};
use cedar_policy_core::ast;
use rustc_hash::FxHashSet;
use serde_json::{Map, Value, json};

use super::json::normalize_map;
use crate::bundle::USERSET_TYPE;
use crate::diagnostics::error_chain;
pub use crate::input::PROPERTY_CONTEXT_KEY;
use crate::input::{CheckInput, EntityInput, EntityRef, RequestError};
use crate::limits::{EntityTrust, Limits};
use crate::relations::{parse_entity_type, parse_entity_uid};
use crate::snapshot::Snapshot;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A request validated against one snapshot, ready to be decided by it.
///
/// INVARIANT: decided only against the snapshot it was prepared with, because the schema, the
/// bundle's entities and the relations shaped it. It borrows that snapshot, so this holds by
/// construction: [`Prepared::decide`] takes no snapshot, and a prepared request cannot outlive
/// the snapshot that made it (a reload cannot slip a new one in between):
///
/// ```compile_fail,E0597
/// # use verdict_core::{CheckInput, EntityRef, Limits, LoadOptions, Snapshot};
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
/// let input = CheckInput::new(EntityRef::new("User", "bob"), "read", EntityRef::new("Document", "roadmap"));
/// let prepared = {
///     let old = Snapshot::load(dir.as_ref(), &LoadOptions::default()).unwrap();
///     old.prepare(input, &Limits::default()).unwrap()
/// }; // error: `old` does not live long enough
/// prepared.decide();
/// ```
#[derive(Debug, Clone)]
pub struct Prepared<'s> {
    pub(super) snapshot: &'s Snapshot,
    pub(super) principal: EntityUid,
    pub(super) resource: EntityUid,
    pub(super) action: EntityUid,
    pub(super) cedar: cedar_policy::Request,
    /// Each requested property with the Cedar request that decides it.
    pub(super) properties: Vec<(String, cedar_policy::Request)>,
    /// The caller's entities, merged with the bundle's data and validated.
    pub(super) supplied: Vec<Entity>,
    /// Entities the context points at.
    pub(super) context_entities: Vec<EntityUid>,
}

impl<'s> Prepared<'s> {
    /// Returns the principal.
    pub fn principal(&self) -> &EntityUid {
        &self.principal
    }

    /// Returns the action.
    pub fn action(&self) -> &EntityUid {
        &self.action
    }

    /// Returns the resource.
    pub fn resource(&self) -> &EntityUid {
        &self.resource
    }

    /// Returns the snapshot that prepared it and will decide it.
    pub fn snapshot(&self) -> &'s Snapshot {
        self.snapshot
    }

    /// Checks `input` against `limits`, normalises its JSON and validates it against
    /// `snapshot`: the only way a request becomes decidable.
    pub(crate) fn new(
        snapshot: &'s Snapshot,
        input: CheckInput,
        limits: &Limits,
    ) -> Result<Self, RequestError> {
        limits.check_counts(&input)?;
        let CheckInput {
            principal,
            action,
            resource,
            context,
            entities,
            properties,
            verified_principal,
        } = normalized(input, limits.max_json_depth)?;
        if let Some(verified) = &verified_principal
            && verified.uid != principal
        {
            return Err(invalid(
                "principal",
                format!(
                    "the verified principal is `{}`, not `{principal}`",
                    verified.uid
                ),
            ));
        }
        let principal = target(principal, "principal", snapshot)?;
        let resource = target(resource, "resource", snapshot)?;
        let action = action_uid(&action, snapshot)?;
        let schema = snapshot.bundle.schema.as_ref();
        if schema.is_some() && !snapshot.index.actions.contains_key(&action) {
            return Err(invalid(
                "action",
                format!("`{action}` is not declared in the schema"),
            ));
        }

        let mut seen = FxHashSet::default();
        for (i, name) in properties.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(format!("properties[{i}]"), "must not be empty"));
            }
            if !seen.insert(name.as_str()) {
                return Err(invalid(
                    format!("properties[{i}]"),
                    format!("duplicate property `{name}`"),
                ));
            }
        }
        if !properties.is_empty() && context.contains_key(PROPERTY_CONTEXT_KEY) {
            return Err(invalid(
                format!("context.{PROPERTY_CONTEXT_KEY}"),
                "is reserved for property-level checks when `properties` are requested",
            ));
        }

        let context_is_empty = context.is_empty();
        let direct = direct_request(snapshot, &context, &principal, &action, &resource);
        let read_directly = direct.is_some();
        let (context, cedar) = match direct {
            Some(read) => read,
            None => cedar_read_request(
                context,
                context_is_empty,
                (&principal, &action, &resource),
                schema,
            )?,
        };
        let cedar_request = |context: Context| {
            cedar_policy::Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context,
                schema,
            )
            .map_err(Box::new)
        };
        // Each property's request is the context plus `property`. Cedar's `Context::merge`
        // would evaluate the whole context again for each one (100 properties over a large
        // context cost a third of a second); sharing the evaluated values costs one map copy of
        // the top-level attributes. The shapes are equal but for that string, so the schema
        // validates the first and the rest are built without validating again; none needs
        // validating when the context was read directly (so it conforms) and its type declares
        // `property` as a string.
        let mut validated = read_directly
            && snapshot
                .index
                .context_types
                .declares_string(&action, PROPERTY_CONTEXT_KEY);
        let properties = properties
            .into_iter()
            .map(|name| {
                let with_property = match with_property(&context, &name) {
                    Some(context) => context,
                    None => context
                        .clone()
                        .merge([(
                            PROPERTY_CONTEXT_KEY.to_owned(),
                            RestrictedExpression::new_string(name.clone()),
                        )])
                        .map_err(|e| invalid("properties", error_chain(&e)))?,
                };
                let request = if validated {
                    cedar_policy::Request::new(
                        principal.clone(),
                        action.clone(),
                        resource.clone(),
                        with_property,
                        None,
                    )
                    .map_err(Box::new)
                } else {
                    cedar_request(with_property)
                };
                let request = request.map_err(|e| {
                    invalid(
                        "properties",
                        format!(
                            "the schema's context for `{action}` must declare `{PROPERTY_CONTEXT_KEY}?: String` for property-level checks: {}",
                            error_chain(&e)
                        ),
                    )
                })?;
                validated = true;
                Ok((name, request))
            })
            .collect::<Result<Vec<_>, RequestError>>()?;
        let supplied = supplied_entities(
            entities,
            verified_principal,
            snapshot,
            limits.request_entities,
        )?;
        let context_entities = if context_is_empty {
            Vec::new()
        } else {
            context_entities(&context)
        };
        Ok(Self {
            snapshot,
            principal,
            resource,
            action,
            cedar,
            properties,
            supplied,
            context_entities,
        })
    }
}

/// The context and Cedar request built directly (`super::context`): the context read without
/// Cedar's JSON parser and already known to conform to the schema, the principal, action and
/// resource checked by Cedar's own scope validation. `None` to build them through Cedar.
fn direct_request(
    snapshot: &Snapshot,
    context: &Map<String, Value>,
    principal: &EntityUid,
    action: &EntityUid,
    resource: &EntityUid,
) -> Option<(Context, cedar_policy::Request)> {
    let read = snapshot.index.context_types.read(context, action)?;
    if let Some(schema) = snapshot.bundle.schema.as_ref() {
        ast::RequestSchema::validate_scope_variables(
            schema.as_ref(),
            Some(principal.as_ref()),
            Some(action.as_ref()),
            Some(resource.as_ref()),
        )
        .ok()?;
    }
    let context = Context::from(read);
    let request = cedar_policy::Request::new(
        principal.clone(),
        action.clone(),
        resource.clone(),
        context.clone(),
        None,
    )
    .ok()?;
    Some((context, request))
}

/// The context and request built by Cedar: its JSON parser under the schema, and
/// `Request::new`'s validation. Every error a caller sees about a context comes from here.
fn cedar_read_request(
    context: Map<String, Value>,
    context_is_empty: bool,
    (principal, action, resource): (&EntityUid, &EntityUid, &EntityUid),
    schema: Option<&cedar_policy::Schema>,
) -> Result<(Context, cedar_policy::Request), RequestError> {
    // An empty context skips Cedar's JSON parser (it tries every escape form on the top-level
    // object first); `Request::new` below still checks it against the schema.
    let context = if context_is_empty {
        Context::empty()
    } else {
        Context::from_json_value(Value::Object(context), schema.map(|s| (s, action)))
            .map_err(|e| invalid("context", error_chain(&e)))?
    };
    match cedar_policy::Request::new(
        principal.clone(),
        action.clone(),
        resource.clone(),
        context.clone(),
        schema,
    ) {
        Ok(request) => Ok((context, request)),
        Err(error) => {
            // Cedar's context parser names what an empty context lacks; `Request::new`
            // only says it is invalid.
            if context_is_empty
                && let Some(schema) = schema
                && let Err(detail) =
                    Context::from_json_value(Value::Object(Map::new()), Some((schema, action)))
            {
                return Err(invalid("context", error_chain(&detail)));
            }
            Err(request_validation(Box::new(error)))
        }
    }
}

/// Returns `input` with its JSON normalised for Cedar (see `normalize_map`), at most
/// `max_depth` levels deep.
fn normalized(mut input: CheckInput, max_depth: usize) -> Result<CheckInput, RequestError> {
    normalize_map(&mut input.context, || "context".to_owned(), max_depth)?;
    // An entity's attributes are a record one level down, as a nested value is.
    let attrs_depth = |field: &dyn Fn() -> String| {
        max_depth
            .checked_sub(1)
            .ok_or_else(|| RequestError::TooDeep { field: field() })
    };
    for (i, entity) in input.entities.iter_mut().enumerate() {
        let field = || format!("entities[{i}].attrs");
        normalize_map(&mut entity.attrs, field, attrs_depth(&field)?)?;
    }
    if let Some(verified) = &mut input.verified_principal {
        let field = || "principal.attrs".to_owned();
        normalize_map(&mut verified.attrs, field, attrs_depth(&field)?)?;
    }
    Ok(input)
}

/// Returns the entities a context points at, from its evaluated values (no JSON round trip).
fn context_entities(context: &Context) -> Vec<EntityUid> {
    fn walk(value: &ast::Value, out: &mut Vec<EntityUid>) {
        match &value.value {
            ast::ValueKind::Lit(ast::Literal::EntityUID(uid)) => {
                out.push(EntityUid::from(ast::EntityUID::clone(uid)));
            }
            ast::ValueKind::Set(set) => set.authoritative.iter().for_each(|v| walk(v, out)),
            ast::ValueKind::Record(fields) => fields.values().for_each(|v| walk(v, out)),
            ast::ValueKind::Lit(_) | ast::ValueKind::ExtensionValue(_) => {}
        }
    }
    let mut out = Vec::new();
    if let ast::Context::Value(attrs) = context.as_ref() {
        attrs.values().for_each(|v| walk(v, &mut out));
    }
    out
}

/// Returns `context` with `property` set to `name`, sharing every other evaluated value; `None`
/// for a context Cedar keeps unevaluated (partial evaluation only, not built here).
fn with_property(context: &Context, name: &str) -> Option<Context> {
    match context.as_ref() {
        ast::Context::Value(attrs) => {
            let mut attrs = BTreeMap::clone(attrs);
            attrs.insert(PROPERTY_CONTEXT_KEY.into(), ast::Value::from(name));
            Some(Context::from(ast::Context::Value(Arc::new(attrs))))
        }
        ast::Context::RestrictedResidual(_) => None,
    }
}

fn request_validation(error: Box<RequestValidationError>) -> RequestError {
    let field =
        match error.as_ref() {
            RequestValidationError::UndeclaredPrincipalType(_)
            | RequestValidationError::InvalidPrincipalType(_) => "principal",
            RequestValidationError::UndeclaredResourceType(_)
            | RequestValidationError::InvalidResourceType(_) => "resource",
            RequestValidationError::InvalidContext(_)
            | RequestValidationError::TypeOfContext(_) => "context",
            RequestValidationError::UndeclaredAction(_)
            | RequestValidationError::ExternalAction(_) => "action",
            _ => "request",
        };
    invalid(field, error_chain(error.as_ref()))
}

/// Returns the Cedar type for `name`, from the snapshot's cache when it knows the type.
/// `field` names the field in an error; it is built only then.
fn entity_type_name(
    name: &str,
    field: impl FnOnce() -> String,
    snapshot: &Snapshot,
) -> Result<EntityTypeName, RequestError> {
    if let Some(known) = snapshot.index.type_names.get(name) {
        return Ok(known.clone());
    }
    if name.is_empty() {
        return Err(invalid(field(), "must not be empty"));
    }
    parse_entity_type(name)
        .ok()
        .and_then(|_| EntityTypeName::from_str(name).ok())
        .ok_or_else(|| {
            invalid(
                field(),
                format!("`{name}` is not a Cedar entity type (identifiers joined by `::`)"),
            )
        })
}

fn entity_uid(
    entity: &EntityRef,
    field: &str,
    snapshot: &Snapshot,
) -> Result<EntityUid, RequestError> {
    let entity_type = entity_type_name(&entity.entity_type, || format!("{field}.type"), snapshot)?;
    if entity.id.is_empty() {
        return Err(invalid(format!("{field}.id"), "must not be empty"));
    }
    Ok(EntityUid::from_type_name_and_id(
        entity_type,
        EntityId::new(&entity.id),
    ))
}

/// Whether `name` is [`USERSET_TYPE`] (compared without formatting the name).
fn is_userset_type(name: &EntityTypeName) -> bool {
    name.basename() == "Userset" && name.namespace_components().eq(["Verdict"])
}

/// The principal or the resource: any entity but a userset.
fn target(entity: EntityRef, field: &str, snapshot: &Snapshot) -> Result<EntityUid, RequestError> {
    let uid = entity_uid(&entity, field, snapshot)?;
    if is_userset_type(uid.type_name()) {
        return Err(invalid(
            format!("{field}.type"),
            format!("`{USERSET_TYPE}` is Verdict's own type for relations"),
        ));
    }
    Ok(uid)
}

/// Reads `read` as `Action::"read"`, or a full uid such as `Acme::Action::"read"`.
fn action_uid(text: &str, snapshot: &Snapshot) -> Result<EntityUid, RequestError> {
    if text.is_empty() {
        return Err(invalid("action", "must not be empty"));
    }
    if !(text.ends_with('"') && text.contains("::\"")) {
        let action_type = entity_type_name("Action", || "action".to_owned(), snapshot)?;
        return Ok(EntityUid::from_type_name_and_id(
            action_type,
            EntityId::new(text),
        ));
    }
    let parsed = parse_entity_uid(text).map_err(|e| {
        invalid(
            "action",
            format!("`{text}` is not an action uid: {}", e.reason),
        )
    })?;
    let entity_type = entity_type_name(parsed.entity_type, || "action".to_owned(), snapshot)?;
    if entity_type.basename() != "Action" {
        return Err(invalid(
            "action",
            format!("`{text}` is not an action: its type must be `Action` or end in `::Action`"),
        ));
    }
    Ok(EntityUid::from_type_name_and_id(
        entity_type,
        EntityId::new(parsed.id.as_ref()),
    ))
}

/// How far one supplied entity is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supplier {
    /// The caller's `entities`, trusted as far as [`EntityTrust`] says.
    Request(EntityTrust),
    /// The principal a front-end verified (`CheckInput::verified_principal`): its parents may
    /// be any entity but actions and usersets, and are added to the bundle's when the bundle
    /// defines the principal.
    Verified,
}

/// Validates the caller's entities and the verified principal, and merges each with the
/// bundle's data for the same uid. The verified principal comes first; a request entity with
/// its uid is refused, so a caller cannot replace or extend what a token said.
fn supplied_entities(
    inputs: Vec<EntityInput>,
    verified: Option<EntityInput>,
    snapshot: &Snapshot,
    trust: EntityTrust,
) -> Result<Vec<Entity>, RequestError> {
    // Under `EntityTrust::Attributes`, the only parents a request may give are its own
    // entities that the bundle does not know.
    let own: FxHashSet<EntityRef> = match trust {
        EntityTrust::Attributes => inputs.iter().map(|input| input.uid.clone()).collect(),
        EntityTrust::Full => FxHashSet::default(),
    };
    let mut seen = FxHashSet::default();
    let mut out = Vec::with_capacity(inputs.len() + 1);
    if let Some(verified) = verified {
        let entity = supplied_entity(
            verified,
            "principal",
            Supplier::Verified,
            &own,
            &mut seen,
            snapshot,
        )?;
        out.push(entity);
    }
    let verified_uid = out.first().map(Entity::uid);
    for (i, input) in inputs.into_iter().enumerate() {
        let field = format!("entities[{i}]");
        if verified_uid.is_some() {
            let uid = entity_uid(&input.uid, &format!("{field}.uid"), snapshot)?;
            if Some(&uid) == verified_uid.as_ref() {
                return Err(invalid(
                    format!("{field}.uid"),
                    format!(
                        "`{uid}` is the verified principal; its attributes and parents come from its token, not the request"
                    ),
                ));
            }
        }
        let entity = supplied_entity(
            input,
            &field,
            Supplier::Request(trust),
            &own,
            &mut seen,
            snapshot,
        )?;
        out.push(entity);
    }
    Ok(out)
}

/// Validates one supplied entity (named `field` in errors) and merges it with the bundle's
/// data for its uid.
fn supplied_entity(
    input: EntityInput,
    field: &str,
    supplier: Supplier,
    own: &FxHashSet<EntityRef>,
    seen: &mut FxHashSet<EntityUid>,
    snapshot: &Snapshot,
) -> Result<Entity, RequestError> {
    let uid = entity_uid(&input.uid, &format!("{field}.uid"), snapshot)?;
    if uid.type_name().basename() == "Action" {
        return Err(invalid(
            format!("{field}.uid"),
            "action entities come from the schema or the bundle, not the request",
        ));
    }
    if is_userset_type(uid.type_name()) {
        return Err(invalid(
            format!("{field}.uid"),
            format!("`{USERSET_TYPE}` entities come from tuples, not the request"),
        ));
    }
    if !seen.insert(uid.clone()) {
        return Err(invalid(
            format!("{field}.uid"),
            format!("duplicate entity `{uid}`"),
        ));
    }
    let entity_type = &input.uid.entity_type;
    let mut json = match snapshot.bundle.entities.get(&uid) {
        Some(existing) => existing
            .to_json_value()
            .map_err(|e| invalid(field, error_chain(&e)))?,
        None => json!({
            "uid": {"type": entity_type, "id": input.uid.id},
            "attrs": snapshot.relations.attributes_json(entity_type, &input.uid.id),
            "parents": [],
        }),
    };
    let (Some(Value::Object(attrs)), Some(Value::Array(parents))) =
        (json.get("attrs").cloned(), json.get("parents").cloned())
    else {
        return Err(invalid(
            field,
            "the bundle's data for this entity is not an entity",
        ));
    };
    let mut attrs = attrs;
    let mut parents = parents;
    for (name, value) in input.attrs {
        if snapshot.relations.is_relation(entity_type, &name) {
            return Err(invalid(
                format!("{field}.attrs.{name}"),
                format!("`{name}` is a relation of `{entity_type}`; relations come from tuples"),
            ));
        }
        if attrs.contains_key(&name) {
            return Err(invalid(
                format!("{field}.attrs.{name}"),
                format!("the bundle already defines `{name}` for `{uid}`"),
            ));
        }
        attrs.insert(name, value);
    }
    if supplier != Supplier::Verified
        && snapshot.bundle.entities.get(&uid).is_some()
        && !input.parents.is_empty()
    {
        // Roles and groups are authority: a request may describe entities the bundle does
        // not know, but not move the ones it does.
        return Err(invalid(
            format!("{field}.parents"),
            format!(
                "the bundle defines `{uid}`; its parents come from the bundle, not the request"
            ),
        ));
    }
    let mut seen_parents = FxHashSet::default();
    for (p, parent) in input.parents.iter().enumerate() {
        let parent_field = format!("{field}.parents[{p}]");
        let parent_uid = entity_uid(parent, &parent_field, snapshot)?;
        if parent_uid.type_name().basename() == "Action" || is_userset_type(parent_uid.type_name())
        {
            return Err(invalid(
                parent_field,
                format!(
                    "`{parent_uid}` cannot be a parent: relations come from tuples, action groups from the schema"
                ),
            ));
        }
        if supplier == Supplier::Request(EntityTrust::Attributes) {
            let reason = if snapshot.knows_entity(&parent_uid) {
                Some("the bundle manages its members")
            } else if !own.contains(parent) {
                Some("a parent must be an entity of the same request")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(invalid(
                    parent_field,
                    format!(
                        "a request may not claim membership of `{parent_uid}`: {reason} (request entity trust is `attributes`)"
                    ),
                ));
            }
        }
        if seen_parents.insert(parent_uid) {
            parents.push(json!({"type": parent.entity_type, "id": parent.id}));
        }
    }
    if let Value::Object(fields) = &mut json {
        fields.insert("attrs".to_owned(), Value::Object(attrs));
        fields.insert("parents".to_owned(), Value::Array(parents));
    }
    Entity::from_json_value(json, snapshot.bundle.schema.as_ref())
        .map_err(|e| invalid(field, error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userset_type_is_recognised_without_formatting() {
        let name = |text: &str| EntityTypeName::from_str(text).unwrap();
        assert!(is_userset_type(&name(USERSET_TYPE)));
        for other in [
            "Userset",
            "Other::Userset",
            "Verdict::Verdict::Userset",
            "Verdict::User",
        ] {
            assert!(!is_userset_type(&name(other)), "{other}");
        }
    }
}
