//! Limits on requests: sizes, counts, depths, concurrency and deadlines.

use std::time::Duration;

// The request limits' defaults are the library's: stated once, in `verdict_core`.
pub use verdict_core::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_COLLECTION_ELEMENTS, DEFAULT_MAX_ENTITY_PARENTS,
    DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_PROPERTIES, DEFAULT_MAX_RELATION_DEPTH,
    DEFAULT_MAX_REQUEST_ENTITIES, DEFAULT_MAX_REQUEST_WORK, DEFAULT_MAX_STRING_BYTES,
};
use verdict_core::{EntityTrust, Limits};

use super::{ConfigError, in_range, parse_duration};

/// Default largest request message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default most Authorization requests in flight before shedding.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// Default most Authorization requests in flight from one connection before shedding: a
/// sixteenth of [`DEFAULT_MAX_CONCURRENT_REQUESTS`], so no one connection holds the pool.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION: usize = 64;
/// Default deadline of one request.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "5s";
/// Default time for a request's message to arrive once its headers have. Clients send the
/// message with the headers (one write, usually one TCP segment); a 4 MiB batch at 100 Mbit/s
/// takes a third of a second. A caller's own deadline (tens of milliseconds for a decision
/// that takes microseconds) has long passed by then.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: &str = "1s";

const MAX_BATCH_CEILING: usize = 10_000;
const MAX_MESSAGE_BYTES_CEILING: usize = 64 * 1024 * 1024;
const MAX_RELATION_DEPTH_CEILING: u32 = 1_000;
const MAX_JSON_DEPTH_CEILING: usize = 64;

/// How far entities supplied with a request are trusted (`--request-entity-trust`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntityTrustArg {
    /// Requests may describe entities the bundle does not know and chain them to each other,
    /// never claim a membership of an entity the bundle knows (roles, teams, folders).
    Attributes,
    /// Requests may also give their entities any parents, the bundle's roles included.
    Full,
}

impl From<EntityTrustArg> for EntityTrust {
    fn from(arg: EntityTrustArg) -> Self {
        match arg {
            EntityTrustArg::Attributes => Self::Attributes,
            EntityTrustArg::Full => Self::Full,
        }
    }
}

/// Limits on what one request may ask and how many may run at once.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    /// Most nested usersets one relation search follows; deeper searches deny and say so.
    #[arg(long, env = "VERDICT_MAX_RELATION_DEPTH", default_value_t = DEFAULT_MAX_RELATION_DEPTH)]
    pub max_relation_depth: u32,
    /// Most checks in one BatchCheck.
    #[arg(long, env = "VERDICT_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Largest request message, in bytes.
    #[arg(long, env = "VERDICT_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Deepest nesting of lists and records in context and entity attributes.
    #[arg(long, env = "VERDICT_MAX_JSON_DEPTH", default_value_t = DEFAULT_MAX_JSON_DEPTH)]
    pub max_json_depth: usize,
    /// Most entities in one request.
    #[arg(long, env = "VERDICT_MAX_REQUEST_ENTITIES", default_value_t = DEFAULT_MAX_REQUEST_ENTITIES)]
    pub max_request_entities: usize,
    /// Most parents of one request entity.
    #[arg(long, env = "VERDICT_MAX_ENTITY_PARENTS", default_value_t = DEFAULT_MAX_ENTITY_PARENTS)]
    pub max_entity_parents: usize,
    /// Most properties decided in one request.
    #[arg(long, env = "VERDICT_MAX_PROPERTIES", default_value_t = DEFAULT_MAX_PROPERTIES)]
    pub max_properties: usize,
    /// Most Authorization requests in flight across all connections; more are shed with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "VERDICT_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Most Authorization requests in flight from one connection; more are shed with
    /// RESOURCE_EXHAUSTED, so one connection cannot take every slot.
    #[arg(long, env = "VERDICT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION)]
    pub max_concurrent_requests_per_connection: usize,
    /// Deadline of one request (DEADLINE_EXCEEDED after it).
    #[arg(long, env = "VERDICT_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Time for an Authorization request's message to arrive after its headers
    /// (DEADLINE_EXCEEDED after it); a request takes a concurrency slot only once its message
    /// is in.
    #[arg(long, env = "VERDICT_REQUEST_BODY_TIMEOUT", default_value = DEFAULT_REQUEST_BODY_TIMEOUT, value_parser = parse_duration)]
    pub request_body_timeout: Duration,
    /// Longest type, id, action, property or attribute name, in bytes.
    #[arg(long, env = "VERDICT_MAX_STRING_BYTES", default_value_t = DEFAULT_MAX_STRING_BYTES)]
    pub max_string_bytes: usize,
    /// Most elements in one set or record of the context or of a request entity's attributes.
    #[arg(long, env = "VERDICT_MAX_COLLECTION_ELEMENTS", default_value_t = DEFAULT_MAX_COLLECTION_ELEMENTS)]
    pub max_collection_elements: usize,
    /// Most work one request may cause: the values in its context and entity attributes (1 each),
    /// its entities (8 each) and its properties (1 each).
    #[arg(long, env = "VERDICT_MAX_REQUEST_WORK", default_value_t = DEFAULT_MAX_REQUEST_WORK)]
    pub max_request_work: usize,
    /// How far request entities are trusted: `attributes` (no request may make an entity a
    /// member of one the bundle knows) or `full` (any parents, as Verified Permissions).
    #[arg(long, env = "VERDICT_REQUEST_ENTITY_TRUST", value_enum, default_value_t = EntityTrustArg::Attributes)]
    pub request_entity_trust: EntityTrustArg,
    /// Entity types requests may supply, comma-separated; empty allows any type.
    #[arg(long, env = "VERDICT_REQUEST_ENTITY_TYPES", value_delimiter = ',')]
    pub request_entity_types: Vec<String>,
}

/// The request limits, validated.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Relation search depth bound.
    pub max_relation_depth: u32,
    /// Batch limit.
    pub max_batch: usize,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
    /// Most entities in one request.
    pub max_request_entities: usize,
    /// Most parents of one request entity.
    pub max_entity_parents: usize,
    /// Most properties in one request.
    pub max_properties: usize,
    /// Most Authorization requests in flight.
    pub max_concurrent_requests: usize,
    /// Most Authorization requests in flight from one connection.
    pub max_concurrent_requests_per_connection: usize,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Time for a request's message to arrive after its headers.
    pub request_body_timeout: Duration,
    /// Longest name, in bytes.
    pub max_string_bytes: usize,
    /// Most elements in one set or record.
    pub max_collection_elements: usize,
    /// Most work one request may cause.
    pub max_request_work: usize,
    /// How far request entities are trusted.
    pub request_entity_trust: EntityTrust,
    /// Entity types requests may supply; `None` allows any.
    pub request_entity_types: Option<Vec<String>>,
}

impl LimitsArgs {
    /// Checks every limit against its range; the first problem found is returned.
    pub fn validate(self) -> Result<LimitsConfig, ConfigError> {
        Ok(LimitsConfig {
            max_relation_depth: in_range(
                self.max_relation_depth,
                1,
                MAX_RELATION_DEPTH_CEILING,
                arg_id!(Self, max_relation_depth),
            )?,
            max_batch: in_range(
                self.max_batch,
                1,
                MAX_BATCH_CEILING,
                arg_id!(Self, max_batch),
            )?,
            max_message_bytes: in_range(
                self.max_message_bytes,
                1024,
                MAX_MESSAGE_BYTES_CEILING,
                arg_id!(Self, max_message_bytes),
            )?,
            max_json_depth: in_range(
                self.max_json_depth,
                1,
                MAX_JSON_DEPTH_CEILING,
                arg_id!(Self, max_json_depth),
            )?,
            max_request_entities: in_range(
                self.max_request_entities,
                0,
                MAX_BATCH_CEILING,
                arg_id!(Self, max_request_entities),
            )?,
            max_entity_parents: in_range(
                self.max_entity_parents,
                0,
                1_000,
                arg_id!(Self, max_entity_parents),
            )?,
            max_properties: in_range(
                self.max_properties,
                0,
                MAX_BATCH_CEILING,
                arg_id!(Self, max_properties),
            )?,
            max_concurrent_requests: in_range(
                self.max_concurrent_requests,
                1,
                1_000_000,
                arg_id!(Self, max_concurrent_requests),
            )?,
            max_concurrent_requests_per_connection: in_range(
                self.max_concurrent_requests_per_connection,
                1,
                1_000_000,
                arg_id!(Self, max_concurrent_requests_per_connection),
            )?,
            request_timeout: in_range(
                self.request_timeout,
                Duration::from_millis(1),
                Duration::from_secs(3600),
                arg_id!(Self, request_timeout),
            )?,
            request_body_timeout: in_range(
                self.request_body_timeout,
                Duration::from_millis(1),
                Duration::from_secs(3600),
                arg_id!(Self, request_body_timeout),
            )?,
            max_string_bytes: in_range(
                self.max_string_bytes,
                16,
                1 << 20,
                arg_id!(Self, max_string_bytes),
            )?,
            max_collection_elements: in_range(
                self.max_collection_elements,
                1,
                1_000_000,
                arg_id!(Self, max_collection_elements),
            )?,
            max_request_work: in_range(
                self.max_request_work,
                1,
                10_000_000,
                arg_id!(Self, max_request_work),
            )?,
            request_entity_trust: self.request_entity_trust.into(),
            request_entity_types: entity_types(self.request_entity_types)?,
        })
    }
}

impl LimitsConfig {
    /// The limits every front-end passes to `Snapshot::check`.
    pub fn request_limits(&self) -> Limits {
        Limits {
            max_batch: self.max_batch,
            max_json_depth: self.max_json_depth,
            max_request_entities: self.max_request_entities,
            max_entity_parents: self.max_entity_parents,
            max_properties: self.max_properties,
            max_string_bytes: self.max_string_bytes,
            max_collection_elements: self.max_collection_elements,
            max_request_work: self.max_request_work,
            request_entities: self.request_entity_trust,
            request_entity_types: self.request_entity_types.clone(),
        }
    }
}

/// The type allow-list: `None` when unset; each entry a Cedar type name.
fn entity_types(values: Vec<String>) -> Result<Option<Vec<String>>, ConfigError> {
    let types: Vec<String> = values
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if types.is_empty() {
        return Ok(None);
    }
    for name in &types {
        if verdict_core::relations::parse_entity_type(name).is_err() {
            return Err(ConfigError::Invalid {
                arg: arg_id!(LimitsArgs, request_entity_types),
                reason: format!("`{name}` is not a Cedar entity type (identifiers joined by `::`)"),
            });
        }
    }
    Ok(Some(types))
}
