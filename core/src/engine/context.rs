//! Reading a request's context into Cedar's values without Cedar's JSON parser.
//!
//! `cedar_policy::Context::from_json_value` reads every value of a context through serde's
//! untagged enums (an `__extn`/`unknown` escape tried first, then each form in turn, each
//! failure formatting an error message), and `Request::new` then converts the values back to
//! expressions to check them against the schema: 630,000 instructions for a gateway's ten-field
//! context, twelve times the decision itself (BENCHMARKS.md, "Reading a request's context
//! directly").
//!
//! [`ContextTypes::read`] builds the same values directly, guided by the schema's context type
//! for the action, for the forms callers send: booleans, whole numbers, strings, sets, records,
//! entity references as `{"type", "id"}` and extension values as the string their single-
//! argument constructor takes (`"10.0.0.1"` for an `ipaddr`). It also proves, while reading,
//! what Cedar's context validation would check (every value of its declared type, no
//! undeclared attribute, every required one present), so the request is then built without the
//! schema's context check; the principal, action and resource are still checked by Cedar's own
//! `validate_scope_variables`.
//!
//! Whatever it does not read exactly as Cedar would, it leaves to Cedar: it returns `None` for
//! an escape (`__entity`, `__extn`, `__expr`, any key starting with `__`), an entity of an
//! enumerated or action type, an unknown type name, a constructor that fails, any value not of
//! its declared type, and an open record type. The caller then runs Cedar's parser and
//! validation, so every error a caller sees is Cedar's, word for word, and every accepted
//! context is the one Cedar would build: the tests (`context_tests.rs`) compare the two on random
//! contexts under random schemas and without one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use cedar_policy::{EntityUid, Schema};
use cedar_policy_core::ast::{self, Eid, EntityUID, ExtensionFunction, Name, PartialValue};
use cedar_policy_core::entities::{ContextSchema as _, SchemaType};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::{ValidatorEntityTypeKind, context_schema_for_action};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use smol_str::SmolStr;

/// What reading a context needs from a bundle's schema, derived once per bundle.
#[derive(Debug, Default)]
pub(crate) struct ContextTypes {
    /// Whether the bundle has a schema (without one, values are read untyped, as Cedar does).
    schema: bool,
    /// Each declared action's context type.
    by_action: FxHashMap<EntityUid, SchemaType>,
    /// The name, as written in JSON, of each declared entity type whose entities need no
    /// further check (standard types: not enumerated, not actions).
    plain_entity_types: FxHashMap<ast::EntityType, Box<str>>,
}

impl ContextTypes {
    /// Derives the context types of `schema`'s actions.
    pub(crate) fn build(schema: Option<&Schema>) -> Self {
        let Some(schema) = schema else {
            return Self::default();
        };
        let validator = schema.as_ref();
        let by_action = schema
            .actions()
            .filter_map(|action| {
                let context = context_schema_for_action(validator, action.as_ref())?;
                Some((action.clone(), context.context_type()))
            })
            .collect();
        let plain_entity_types = schema
            .entity_types()
            .filter_map(|name| {
                let ty: &ast::EntityType = name.as_ref();
                let declared = validator.get_entity_type(ty)?;
                let standard = matches!(declared.kind, ValidatorEntityTypeKind::Standard(_));
                (standard && !ty.is_action()).then(|| (ty.clone(), ty.to_string().into()))
            })
            .collect();
        Self {
            schema: true,
            by_action,
            plain_entity_types,
        }
    }

    /// Whether the context type of `action` declares `name` as a string (optional or not).
    pub(crate) fn declares_string(&self, action: &EntityUid, name: &str) -> bool {
        matches!(
            self.by_action.get(action),
            Some(SchemaType::Record { attrs, .. })
                if attrs.get(name).is_some_and(|a| *a.schema_type() == SchemaType::String)
        )
    }

    /// Returns `fields` as the context of a request for `action`, as Cedar's parser would build
    /// it and already known to conform to the action's context type; `None` to leave it to
    /// Cedar (see the module's doc). `fields` is the normalised JSON (whole numbers as
    /// integers, depth already limited).
    pub(crate) fn read(
        &self,
        fields: &Map<String, Value>,
        action: &EntityUid,
    ) -> Option<ast::Context> {
        let attrs = if self.schema {
            let ty = self.by_action.get(action)?;
            self.record(fields, ty)?
        } else {
            self.untyped_record(fields)?
        };
        Some(ast::Context::Value(Arc::new(attrs)))
    }

    /// A record read under `ty`, which must be a closed record type.
    fn record(
        &self,
        fields: &Map<String, Value>,
        ty: &SchemaType,
    ) -> Option<BTreeMap<SmolStr, ast::Value>> {
        let SchemaType::Record {
            attrs,
            open_attrs: false,
        } = ty
        else {
            return None;
        };
        if has_escape_key(fields) {
            return None;
        }
        let mut out = BTreeMap::new();
        for (name, attr) in attrs {
            match fields.get(name.as_str()) {
                Some(value) => {
                    out.insert(name.clone(), self.value(value, attr.schema_type())?);
                }
                None if attr.is_required() => return None,
                None => {}
            }
        }
        // Every field was declared (a closed record has no others).
        (out.len() == fields.len()).then_some(out)
    }

    /// A value read under `ty`.
    fn value(&self, value: &Value, ty: &SchemaType) -> Option<ast::Value> {
        match (ty, value) {
            (SchemaType::Bool, Value::Bool(b)) => Some(ast::Value::from(*b)),
            (SchemaType::Long, Value::Number(n)) => Some(ast::Value::from(n.as_i64()?)),
            (SchemaType::String, Value::String(s)) => Some(ast::Value::from(s.as_str())),
            (SchemaType::Set { element_ty }, Value::Array(items)) => {
                let items = items
                    .iter()
                    .map(|item| self.value(item, element_ty))
                    .collect::<Option<Vec<_>>>()?;
                Some(ast::Value::set(items, None))
            }
            (SchemaType::Record { .. }, Value::Object(fields)) => {
                let attrs = self.record(fields, ty)?;
                Some(ast::Value::record_arc(Arc::new(attrs), None))
            }
            (SchemaType::Entity { ty }, Value::Object(fields)) => {
                let expected = self.plain_entity_types.get(ty)?;
                let [(k1, v1), (k2, v2)] = two_fields(fields)?;
                let (type_name, id) = match (k1.as_str(), k2.as_str()) {
                    ("type", "id") => (v1, v2),
                    ("id", "type") => (v2, v1),
                    _ => return None,
                };
                let (Value::String(type_name), Value::String(id)) = (type_name, id) else {
                    return None;
                };
                if type_name.as_str() != &**expected {
                    return None;
                }
                let uid = EntityUID::from_components(ty.clone(), Eid::new(id.as_str()), None);
                Some(ast::Value::from(uid))
            }
            (SchemaType::Extension { name }, Value::String(arg)) => {
                let constructor = single_arg_constructor(name)?;
                match constructor.call(&[ast::Value::from(arg.as_str())]).ok()? {
                    PartialValue::Value(value) => Some(value.with_maybe_source_loc(None)),
                    PartialValue::Residual(_) => None,
                }
            }
            _ => None,
        }
    }

    /// A record read without a schema: Cedar's untyped JSON form, escapes left to Cedar.
    fn untyped_record(&self, fields: &Map<String, Value>) -> Option<BTreeMap<SmolStr, ast::Value>> {
        if has_escape_key(fields) {
            return None;
        }
        fields
            .iter()
            .map(|(name, value)| Some((name.as_str().into(), self.untyped(value)?)))
            .collect()
    }

    fn untyped(&self, value: &Value) -> Option<ast::Value> {
        match value {
            Value::Bool(b) => Some(ast::Value::from(*b)),
            Value::Number(n) => Some(ast::Value::from(n.as_i64()?)),
            Value::String(s) => Some(ast::Value::from(s.as_str())),
            Value::Array(items) => {
                let items = items
                    .iter()
                    .map(|item| self.untyped(item))
                    .collect::<Option<Vec<_>>>()?;
                Some(ast::Value::set(items, None))
            }
            Value::Object(fields) => {
                let attrs = self.untyped_record(fields)?;
                Some(ast::Value::record_arc(Arc::new(attrs), None))
            }
            Value::Null => None,
        }
    }
}

/// Whether a JSON object has a key Cedar may read as an escape (`__entity`, `__extn`,
/// `__expr`); such objects are left to Cedar.
fn has_escape_key(fields: &Map<String, Value>) -> bool {
    fields.keys().any(|k| k.starts_with("__"))
}

/// The two fields of an object that has exactly two.
fn two_fields(fields: &Map<String, Value>) -> Option<[(&String, &Value); 2]> {
    if fields.len() != 2 {
        return None;
    }
    let mut it = fields.iter();
    Some([it.next()?, it.next()?])
}

/// The single-argument constructor Cedar calls for a string where the schema expects the
/// extension type `name` (`ip` for `ipaddr`, `decimal`, `datetime`, `duration`): found by
/// name and checked to be the constructor Cedar's parser would pick (a single-argument
/// constructor taking a string and returning `name`; Cedar allows one per return type).
fn single_arg_constructor(name: &Name) -> Option<&'static ExtensionFunction> {
    static CONSTRUCTORS: OnceLock<Vec<(Name, &'static ExtensionFunction)>> = OnceLock::new();
    CONSTRUCTORS
        .get_or_init(|| {
            let extensions = Extensions::all_available();
            ["ip", "decimal", "datetime", "duration"]
                .into_iter()
                .filter_map(|f| {
                    let function = extensions.func(&f.parse::<Name>().ok()?).ok()?;
                    let Some(SchemaType::Extension { name }) = function.return_type() else {
                        return None;
                    };
                    let takes_a_string = function.arg_types() == [SchemaType::String];
                    (function.is_single_arg_constructor() && takes_a_string)
                        .then(|| (name.clone(), function))
                })
                .collect()
        })
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, f)| *f)
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
