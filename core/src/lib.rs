//! Verdict's decision library: load a policy bundle into a [`Snapshot`], then ask it.
//!
//! A bundle is a directory of Cedar policies (`*.cedar`), an optional Cedar schema
//! (`*.cedarschema`, `*.cedarschema.json`), Zanzibar-style relationship tuples (`*.tuples`) and
//! entity data (`*.entities.json`), and for gateways an optional route table (`routes.yaml`)
//! and revoked token ids (`revocations.txt`).
//! [`Snapshot::load`] reads and validates all of it, or reports every error with its file, line
//! and column. A snapshot is immutable and
//! `Send + Sync`: share it behind an `Arc` and ask it from any thread.
//!
//! Every question goes through one door, [`Snapshot::check`] (and [`Snapshot::check_batch`]
//! for several questions answered by the same snapshot). Input limits are a [`Limits`] value
//! the caller passes in; a request that breaks one, or that is malformed, is a typed
//! [`RequestError`]. Everything not explicitly permitted is denied.
//!
//! ```
//! use verdict_core::{CheckInput, EntityRef, Limits, LoadOptions, Snapshot};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
//! let snapshot = Snapshot::load(policies.as_ref(), &LoadOptions::default())?;
//! let input = CheckInput {
//!     context: serde_json::json!({"scopes": ["documents:read"]})
//!         .as_object()
//!         .cloned()
//!         .unwrap_or_default(),
//!     ..CheckInput::new(
//!         EntityRef::new("User", "bob"),
//!         "read",
//!         EntityRef::new("Document", "roadmap"),
//!     )
//! };
//! let decision = snapshot.check(input, &Limits::default())?;
//! assert!(decision.is_allowed());
//! assert_eq!(decision.determining_policies, ["document-read"]);
//! # Ok(())
//! # }
//! ```
//!
//! Modules:
//!
//! | module | owns | does not |
//! |---|---|---|
//! | `bundle` | reading a directory into validated data: policies, schema, entities, tuples, version | the engine's indexes, serving |
//! | [`relations`] | tuple syntax, the frozen tuple index, userset membership search | Cedar |
//! | `engine` | its per-snapshot indexes, request validation, the per-request entity slice, evaluation | I/O |
//! | `snapshot` | assembling bundle data and engine indexes into a [`Snapshot`]; the one door | parsing |
//! | `input` | what a caller asks ([`CheckInput`]) and what can be wrong with it ([`RequestError`]) | validation |
//! | `limits` | input limits and their enforcement, in one place | |
//! | `routes` | the route table: an HTTP method and path to a Cedar action and resource, path normalisation | reading files, principals |
//! | [`cases`] | decision tables kept with a bundle (`tests/*.yaml`) | |
//!
//! This crate has no serving dependencies (no tokio, tonic, hyper, axum, tracing, metrics or
//! notify) and does no I/O outside [`Snapshot::load`], [`fingerprint`] and [`cases`].

mod bundle;
pub mod cases;
mod diagnostics;
mod engine;
mod input;
mod limits;
mod questions;
pub mod relations;
mod routes;
mod snapshot;
pub mod store;

pub use bundle::{
    InvalidBundle, LoadError, LoadErrorKind, PolicyLocation, UnrecognisedFile, fingerprint,
    is_bundle_file_name, is_revocation_file_name, is_route_file_name, unrecognised_files,
};
pub use diagnostics::{error_chain, io_reason, line_column};
pub use engine::{
    Decision, EvaluationError, Outcome, PROPERTY_CONTEXT_KEY, Prepared, PropertyDecision,
};
pub use input::{CheckInput, EntityInput, EntityRef, Limit, RequestError};
pub use limits::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_COLLECTION_ELEMENTS, DEFAULT_MAX_ENTITY_PARENTS,
    DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_PROPERTIES, DEFAULT_MAX_REQUEST_ENTITIES,
    DEFAULT_MAX_REQUEST_WORK, DEFAULT_MAX_STRING_BYTES, ENTITY_WORK, EntityTrust, Limits,
    WorkBudget,
};
pub use questions::{
    ContextualTuples, LookupCursor, MAX_CONTEXTUAL_TUPLES, MAX_LOOKUP_PAGE, RelationAnswer,
    RelationError, RelationSubject, ResourcesPage, SubjectsPage,
};
pub use routes::{
    PathRefusal, PrincipalSource, Route, RouteMatch, RouteRefusal, UpstreamHeaders,
    is_listable_property,
};
pub use snapshot::{
    DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_BUNDLE_FILE_BYTES, DEFAULT_MAX_RELATION_DEPTH,
    LoadOptions, Snapshot, StoreMerge, StoreUpdate,
};
