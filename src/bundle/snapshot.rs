//! The immutable snapshot and the atomic pointer it is served from.
//!
//! INVARIANT: a request loads the pointer once and answers entirely from that snapshot, so a
//! reload never mixes old policies with new tuples.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use cedar_policy::{Authorizer, Entities, Entity, EntityTypeName, EntityUid, PolicySet, Schema};
use rustc_hash::FxHashMap;

use super::action_scope::ActionScopes;
use super::policies::PolicyLocation;
use super::references::PolicyEntities;
use super::schema::RelationCatalog;
use crate::relations::TupleIndex;

/// Everything loaded from one valid bundle. Never modified after it is built.
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of the bundle's files: the consistency token in every response.
    pub version: String,
    /// When the bundle was loaded.
    pub loaded_at: SystemTime,
    /// The bundle directory it was loaded from.
    pub source: PathBuf,
    /// Every policy, by its id.
    pub policies: PolicySet,
    /// Where each policy was written, by id.
    pub policy_locations: FxHashMap<String, PolicyLocation>,
    /// The schema, when the bundle has one.
    pub schema: Option<Schema>,
    /// The bundle's entity data (transitively closed; includes the schema's actions).
    pub entities: Entities,
    /// The number of entities in the bundle's entity files (without the schema's actions).
    pub entity_count: usize,
    /// Action entities with all their ancestors as direct parents.
    pub actions: FxHashMap<EntityUid, Entity>,
    /// Every relationship tuple.
    pub tuples: TupleIndex,
    /// The relations each entity type exposes as attributes.
    pub relations: RelationCatalog,
    /// Every entity type the bundle names, parsed once.
    pub type_names: FxHashMap<Box<str>, EntityTypeName>,
    /// Entities and usersets the policies name literally.
    pub policy_entities: PolicyEntities,
    /// For each bundle entity, the entities its attributes point at.
    pub entity_references: FxHashMap<EntityUid, Vec<EntityUid>>,
    /// The metric label of every action the bundle knows.
    pub action_labels: FxHashMap<EntityUid, Arc<str>>,
    /// For each known action, the policies that can apply and the attributes they read.
    pub action_scopes: ActionScopes,
    /// Schema validation warnings, for `verdict validate` and the startup log.
    pub warnings: Vec<String>,
    /// The most nested usersets one membership search follows.
    pub max_relation_depth: u32,
    /// Cedar's authorizer (stateless; kept here so it is built once).
    pub authorizer: Authorizer,
}

impl Snapshot {
    /// Returns the number of policies.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }
}

/// A failed load, kept for the status call while the previous snapshot keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    /// Every error, one per line.
    pub message: String,
    /// When the load failed.
    pub at: SystemTime,
}

/// The serving state: the current snapshot (if any) and the last load failure (if any).
#[derive(Debug, Default)]
pub struct SnapshotHandle {
    current: ArcSwapOption<Snapshot>,
    last_failure: ArcSwapOption<LoadFailure>,
}

impl SnapshotHandle {
    /// Returns a handle with nothing loaded: requests get UNAVAILABLE until a store.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Returns a handle serving `snapshot`.
    pub fn with(snapshot: Snapshot) -> Self {
        let handle = Self::empty();
        handle.store(snapshot);
        handle
    }

    /// Returns the snapshot being served; call once per request.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Serves `snapshot` from now on and clears the last failure.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
        self.last_failure.store(None);
    }

    /// Records a failed load; the current snapshot keeps serving.
    pub fn record_failure(&self, failure: LoadFailure) {
        self.last_failure.store(Some(Arc::new(failure)));
    }

    /// Forgets the last failure (the bundle on disk is valid again).
    pub fn clear_failure(&self) {
        self.last_failure.store(None);
    }

    /// Returns the last failed load, if the most recent load failed.
    pub fn last_failure(&self) -> Option<Arc<LoadFailure>> {
        self.last_failure.load_full()
    }
}
