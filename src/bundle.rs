//! Policy bundles: reading a directory into a validated, immutable [`Snapshot`].
//!
//! Owns: finding the bundle's files, parsing Cedar policies, the optional schema, entity JSON
//! and tuple files, validating all of it together, and the [`SnapshotHandle`] that the server
//! reads from. A bundle is all or nothing: [`load`] returns a snapshot only when every file is
//! valid, otherwise every error it found, each with file:line:column.
//!
//! Does not own: serving or watching. Loading is synchronous, blocking I/O; callers on an async
//! runtime run it on a blocking thread.
//!
//! Files (found recursively; names starting with `.` are skipped, so Kubernetes' `..data` and
//! timestamped directories are never read twice; symlinks are followed):
//!
//! | file | holds |
//! |---|---|
//! | `*.cedar` | policies; a policy's id is its `@id("…")` annotation, else `file:line` |
//! | `*.cedarschema`, `*.cedarschema.json` | optional schema (fragments are combined) |
//! | `*.tuples` | relationship tuples, one per line |
//! | `*.entities.json` | optional Cedar JSON entities: attributes and parents |
//!
//! Anything else (README.md, `tests/*.yaml`) is ignored.

mod action_scope;
mod entities;
mod error;
mod files;
mod policies;
mod references;
mod schema;
mod snapshot;
mod tuples;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{Authorizer, Entities, Entity, EntityTypeName, EntityUid, PolicySet, Schema};
use rustc_hash::FxHashMap;

use crate::relations::TupleIndex;

pub use action_scope::{ActionScope, ActionScopes};
pub use error::{InvalidBundle, LoadError};
pub use files::{fingerprint, is_bundle_file_name};
pub use policies::PolicyLocation;
pub use references::{PolicyEntities, referenced_entities};
pub use schema::{Relation, RelationCatalog, USERSET_TYPE};
pub use snapshot::{LoadFailure, Snapshot, SnapshotHandle};

/// Settings that shape a snapshot but do not come from the bundle itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The most userset-to-userset hops a membership search follows.
    pub max_relation_depth: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_relation_depth: DEFAULT_MAX_RELATION_DEPTH,
        }
    }
}

/// The default bound on nested usersets followed by one membership search.
pub const DEFAULT_MAX_RELATION_DEPTH: u32 = 32;

/// Reads and validates the bundle in `dir`.
pub fn load(dir: &Path, options: LoadOptions) -> Result<Snapshot, InvalidBundle> {
    let files = files::read_bundle_dir(dir)?;
    let mut errors = Vec::new();

    let schema = schema::load(&files.schemas, &mut errors);
    let relations =
        RelationCatalog::new(schema.as_ref()).map_err(|message| LoadError::file(dir, message))?;
    let (policies, policy_locations, warnings) = policies::load(
        &files.policies,
        schema.as_ref().map(|s| &s.schema),
        &mut errors,
    );
    let tuple_index = tuples::load(&files.tuples, schema.as_ref(), &mut errors);
    let relations = relations.with_tuple_relations(&tuple_index, schema.is_some());
    let schema = schema.map(|s| s.schema);
    let (entities, entity_count) =
        entities::load(&files.entities, schema.as_ref(), &relations, &mut errors);

    if !errors.is_empty() {
        return Err(InvalidBundle::new(errors));
    }
    let actions = flattened_actions(&entities);
    let action_labels = action_labels(&actions, &policies);
    let type_names = known_type_names(schema.as_ref(), &entities, &tuple_index);
    let policy_entities =
        references::policy_entities(&policies, &relations, &entities, &tuple_index);
    let entity_references = references::entity_references(&entities);
    let action_scopes = action_scope::build(&policies, &entities, action_labels.keys());
    Ok(Snapshot {
        version: files.version,
        loaded_at: SystemTime::now(),
        source: dir.to_path_buf(),
        policies,
        policy_locations,
        schema,
        entity_count,
        entities,
        actions,
        tuples: tuple_index,
        relations,
        type_names,
        policy_entities,
        entity_references,
        action_labels,
        action_scopes,
        warnings,
        max_relation_depth: options.max_relation_depth,
        authorizer: Authorizer::new(),
    })
}

/// Returns every entity type the bundle names, parsed once, so requests need not parse them.
fn known_type_names(
    schema: Option<&Schema>,
    entities: &Entities,
    tuples: &TupleIndex,
) -> FxHashMap<Box<str>, EntityTypeName> {
    let mut names: FxHashMap<Box<str>, EntityTypeName> = FxHashMap::default();
    let mut add = |name: EntityTypeName| {
        names.entry(name.to_string().into()).or_insert(name);
    };
    if let Some(schema) = schema {
        schema.entity_types().cloned().for_each(&mut add);
    }
    entities
        .iter()
        .map(|e| e.uid().type_name().clone())
        .for_each(&mut add);
    tuples
        .type_names()
        .filter_map(|name| EntityTypeName::from_str(name).ok())
        .for_each(&mut add);
    if let Ok(action) = EntityTypeName::from_str("Action") {
        add(action);
    }
    names
}

/// Returns a metric label for every action the bundle knows (declared in the schema or the
/// entity files, or named in a policy's scope): `read` for `Action::"read"`, the full uid for
/// namespaced actions. Requests for other actions are labelled `other`, so labels stay bounded.
fn action_labels(
    actions: &FxHashMap<EntityUid, Entity>,
    policies: &PolicySet,
) -> FxHashMap<EntityUid, Arc<str>> {
    use cedar_policy::ActionConstraint;
    let mut known: Vec<EntityUid> = actions.keys().cloned().collect();
    for policy in policies.policies() {
        match policy.action_constraint() {
            ActionConstraint::Any => {}
            ActionConstraint::Eq(uid) => known.push(uid),
            ActionConstraint::In(uids) => known.extend(uids),
        }
    }
    known
        .into_iter()
        .map(|uid| {
            let label: Arc<str> = if uid.type_name().to_string() == "Action" {
                uid.id().unescaped().into()
            } else {
                uid.to_string().into()
            };
            (uid, label)
        })
        .collect()
}

/// Returns every action entity (type `Action` or `Namespace::Action`) with all its ancestors
/// as direct parents, so a request slice needs just one entity for `action in …`.
fn flattened_actions(entities: &Entities) -> FxHashMap<EntityUid, Entity> {
    entities
        .iter()
        .filter(|e| e.uid().type_name().basename() == "Action")
        .map(|e| {
            let uid = e.uid();
            let ancestors = entities
                .ancestors(&uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            (uid.clone(), Entity::new_no_attrs(uid, ancestors))
        })
        .collect()
}
