//! What a caller asks: a [`CheckInput`] as written (from protobuf, JSON or a YAML test case),
//! and the [`RequestError`] that says what is wrong with one.
//!
//! Owns: the input types and their JSON/YAML form, and the closed set of request errors every
//! front-end maps to its own codes. Does not own: validation against a snapshot (the engine's)
//! or limits (`crate::limits`), which both report through [`RequestError`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::relations::{display_uid, parse_entity_uid};

/// The context key that carries the property name in property-level checks: Verdict sets it,
/// so a request (or a route) cannot.
pub const PROPERTY_CONTEXT_KEY: &str = "property";

/// Which limit a request broke: a closed set, for status codes and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`crate::Limits::max_batch`].
    Batch,
    /// [`crate::Limits::max_json_depth`].
    JsonDepth,
    /// [`crate::Limits::max_request_entities`].
    Entities,
    /// [`crate::Limits::max_entity_parents`].
    Parents,
    /// [`crate::Limits::max_properties`].
    Properties,
    /// [`crate::Limits::max_string_bytes`].
    StringBytes,
    /// [`crate::Limits::max_collection_elements`].
    CollectionElements,
    /// [`crate::Limits::max_request_work`].
    Work,
}

impl Limit {
    /// Returns the kind of limit as messages name it before "limit" (`the batch limit`), or
    /// nothing where the unit says it (`101 entities exceed the limit of 100`).
    fn kind(self) -> &'static str {
        match self {
            Self::Batch => "batch ",
            Self::CollectionElements => "set and record size ",
            Self::Work => "request work ",
            Self::JsonDepth
            | Self::Entities
            | Self::Parents
            | Self::Properties
            | Self::StringBytes => "",
        }
    }

    /// Returns the unit counted, as messages say it (`101 entities exceed the limit of 100`).
    pub fn unit(self) -> &'static str {
        match self {
            Self::Batch => "checks",
            Self::JsonDepth => "levels",
            Self::Entities => "entities",
            Self::Parents => "parents",
            Self::Properties => "properties",
            Self::StringBytes => "bytes",
            Self::CollectionElements => "elements",
            Self::Work => "units of work",
        }
    }
}

/// A request the engine cannot decide; the caller must treat it as a deny.
///
/// Front-ends map it to their status codes and metric labels by variant: [`Self::Invalid`],
/// [`Self::TooLarge`] and [`Self::TooDeep`] are the caller's fault, [`Self::Internal`] is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field is malformed or inconsistent with the snapshot (its schema, its relations).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as a path such as `entities[2].attrs.owner`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A count or a length is over its limit.
    #[error("{field}: {count} {unit} exceed the {kind}limit of {max}", unit = limit.unit(), kind = limit.kind())]
    TooLarge {
        /// The field, such as `entities` or `principal.id`.
        field: String,
        /// Which limit.
        limit: Limit,
        /// How many (entities, parents, properties, checks, or bytes) the field has.
        count: usize,
        /// The limit's value.
        max: usize,
    },
    /// JSON in the context or an entity's attributes is nested deeper than
    /// [`crate::Limits::max_json_depth`].
    #[error("{field}: nested too deeply")]
    TooDeep {
        /// The field at which the limit was reached, such as `context.a.b`.
        field: String,
    },
    /// Cedar rejected data Verdict built itself: a bug, not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RequestError {
    /// Returns the limit the request broke, if that is what is wrong with it.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Self::TooLarge { limit, .. } => Some(*limit),
            Self::TooDeep { .. } => Some(Limit::JsonDepth),
            Self::Invalid { .. } | Self::Internal(_) => None,
        }
    }

    /// Returns the error with `prefix` before its field name, for a front-end that puts
    /// several requests in one message (`checks[3].` for the fourth check of a batch).
    #[must_use]
    pub fn with_field_prefix(mut self, prefix: &str) -> Self {
        match &mut self {
            Self::Invalid { field, .. }
            | Self::TooLarge { field, .. }
            | Self::TooDeep { field, .. } => {
                field.insert_str(0, prefix);
            }
            Self::Internal(_) => {}
        }
        self
    }
}

/// A Cedar entity named by type and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "EntityRefRepr")]
pub struct EntityRef {
    /// The entity type, such as `User` or `Acme::User`.
    pub entity_type: String,
    /// The entity id.
    pub id: String,
}

impl EntityRef {
    /// Returns the entity `entity_type::"id"`.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }
}

/// Accepts `User::"alice"` as well as `{type: User, id: alice}` in JSON and YAML.
#[derive(Deserialize)]
#[serde(untagged)]
enum EntityRefRepr {
    Text(String),
    Fields {
        #[serde(rename = "type")]
        entity_type: String,
        id: String,
    },
}

impl TryFrom<EntityRefRepr> for EntityRef {
    type Error = String;

    fn try_from(repr: EntityRefRepr) -> Result<Self, String> {
        match repr {
            EntityRefRepr::Fields { entity_type, id } => Ok(Self { entity_type, id }),
            EntityRefRepr::Text(text) => {
                let uid = parse_entity_uid(&text)
                    .map_err(|e| format!("`{text}` is not an entity uid: {}", e.reason))?;
                Ok(Self {
                    entity_type: uid.entity_type.to_owned(),
                    id: uid.id.into_owned(),
                })
            }
        }
    }
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display_uid(&self.entity_type, &self.id))
    }
}

/// Entity data supplied with a request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityInput {
    /// The entity.
    pub uid: EntityRef,
    /// Attributes in Cedar's JSON entity format.
    #[serde(default)]
    pub attrs: Map<String, Value>,
    /// Parents, added to the bundle's.
    #[serde(default)]
    pub parents: Vec<EntityRef>,
}

/// A check as the caller wrote it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    /// Who asks.
    pub principal: EntityRef,
    /// An action id such as `read`, or a full action uid such as `Acme::Action::"read"`.
    pub action: String,
    /// What is asked about.
    pub resource: EntityRef,
    /// The Cedar context.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// Entity data for this request only.
    #[serde(default)]
    pub entities: Vec<EntityInput>,
    /// Properties to decide one by one.
    #[serde(default)]
    pub properties: Vec<String>,
    /// The principal as a front-end verified it (from a bearer token's claims): its attributes
    /// and parents. Its uid must be `principal`. Unlike [`Self::entities`] it is trusted: its
    /// parents may be entities the bundle knows (a token's `groups` claim naming
    /// `Role::"admin"`), whatever [`crate::EntityTrust`] says of request entities. Only code can
    /// set it: no JSON or YAML input can (`#[serde(skip)]`; a `verified_principal` key is an
    /// unknown field), and a request entity with the principal's uid is refused when it is set.
    #[serde(skip)]
    pub verified_principal: Option<EntityInput>,
}

impl CheckInput {
    /// Returns a request with no context, entities or properties.
    pub fn new(principal: EntityRef, action: impl Into<String>, resource: EntityRef) -> Self {
        Self {
            principal,
            action: action.into(),
            resource,
            context: Map::new(),
            entities: Vec::new(),
            properties: Vec::new(),
            verified_principal: None,
        }
    }
}
