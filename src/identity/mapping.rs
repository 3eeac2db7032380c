//! A verified token's claims → the principal entity, its parents and its scopes, as the
//! issuer's settings say.
//!
//! | claim | becomes | accepted values |
//! |---|---|---|
//! | `principal.claim` (`sub`) | the principal's id, of type `principal.type` (`User`) | a non-empty string (required) |
//! | each claim of `attributes` | the attribute it maps to | string, bool, integer, list of strings; an absent claim is left out |
//! | `groups.claim` | parents of type `groups.type` | a list of strings, or one string; absent: none |
//! | `scope`, `scp` | `scopes` | `scope`: space-separated string; `scp`: such a string or a list of strings |
//! | `jti` | the id the revocation list is checked against | a string |
//!
//! A claim with another type refuses the token (`MissingClaim`): a policy must never see a
//! value the mapping did not expect.

use serde_json::{Map, Value};
use verdict_core::{EntityInput, EntityRef};

use super::settings::IssuerSettings;
use super::{TokenRefusal, VerifiedPrincipal};

/// The most groups one token may carry.
pub const MAX_GROUPS: usize = 256;
/// The most scopes one token may carry.
pub const MAX_SCOPES: usize = 256;

/// Maps `claims` (already verified) as `settings` say.
pub fn principal(
    settings: &IssuerSettings,
    mut claims: Map<String, Value>,
) -> Result<VerifiedPrincipal, TokenRefusal> {
    let missing = |claim: &str| TokenRefusal::MissingClaim(claim.to_owned());
    let id_claim = &settings.principal.claim;
    let id = match claims.get(id_claim) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(missing(id_claim)),
    };
    let mut attrs = Map::new();
    for (claim, attribute) in &settings.attributes {
        if let Some(value) = claims.get(claim) {
            attrs.insert(
                attribute.clone(),
                attribute_value(value).ok_or_else(|| missing(claim))?,
            );
        }
    }
    let parents = match &settings.groups {
        Some(groups) => strings(claims.get(&groups.claim), MAX_GROUPS)
            .ok_or_else(|| missing(&groups.claim))?
            .into_iter()
            .map(|group| EntityRef::new(groups.entity_type.0.clone(), group))
            .collect(),
        None => Vec::new(),
    };
    let mut scopes = Vec::new();
    if let Some(scope) = claims.get("scope") {
        let Value::String(text) = scope else {
            return Err(missing("scope"));
        };
        scopes.extend(text.split_whitespace().map(str::to_owned));
    }
    if let Some(scp) = claims.get("scp") {
        let listed = match scp {
            Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
            other => strings(Some(other), MAX_SCOPES).ok_or_else(|| missing("scp"))?,
        };
        for scope in listed {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    if scopes.len() > MAX_SCOPES {
        return Err(missing("scope"));
    }
    let jti = match claims.remove("jti") {
        Some(Value::String(jti)) => Some(jti),
        None => None,
        Some(_) => return Err(missing("jti")),
    };
    Ok(VerifiedPrincipal {
        entity: EntityInput {
            uid: EntityRef::new(settings.principal.entity_type.0.clone(), id),
            attrs,
            parents,
        },
        scopes,
        jti,
        issuer: settings.issuer.clone(),
    })
}

/// A claim's value as an attribute: strings, bools, integers, lists of strings.
fn attribute_value(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) | Value::Bool(_) => Some(value.clone()),
        Value::Number(n) if n.is_i64() => Some(value.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(value.clone()),
        _ => None,
    }
}

/// A list of non-empty strings (or one string), at most `max`; an absent claim is an empty
/// list; anything else is `None`.
fn strings(value: Option<&Value>, max: usize) -> Option<Vec<String>> {
    let items: Vec<String> = match value {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()?,
        Some(_) => return None,
    };
    if items.len() > max || items.iter().any(String::is_empty) {
        return None;
    }
    Some(items)
}
