//! Policy bundles: reading a directory into validated, immutable [`Bundle`] data.
//!
//! Owns: finding the bundle's files, parsing Cedar policies, the optional schema, entity JSON
//! and tuple files, and validating all of it together. A bundle is all or nothing: [`load`]
//! returns its data only when every file is valid, otherwise every error it found, each with
//! file:line:column.
//!
//! Does not own: the engine's indexes (the engine derives them from a [`Bundle`], and
//! `crate::snapshot` assembles the two), serving or watching. Loading is synchronous, blocking
//! I/O; callers on an async runtime run it on a blocking thread.
//!
//! Files (found recursively; names starting with `.` are skipped, so Kubernetes' `..data` and
//! timestamped directories are never read twice; symlinks are followed when they resolve inside
//! the bundle directory; FIFOs, devices, sockets, links out and files over the size caps are
//! refused, see `files.rs`):
//!
//! | file | holds |
//! |---|---|
//! | `*.cedar` | policies; a policy's id is its `@id("…")` annotation, else `file:line` |
//! | `*.cedarschema`, `*.cedarschema.json` | optional schema (fragments are combined) |
//! | `*.tuples` | relationship tuples, one per line |
//! | `*.entities.json` | optional Cedar JSON entities: attributes and parents |
//! | `routes.yaml`, `*.routes.yaml` | optional route table for gateways (`crate::routes`, docs/gateway.md); several files form one table |
//! | `revocations.txt`, `*.revocations.txt` | optional revoked token ids (`jti`), one per line (`revocations.rs`, docs/tokens.md); several files form one list |
//! | `*.fga` | optional relation model in OpenFGA's language, schema 1.1 (`crate::relations::RelationModel`, docs/relations.md); several files form one model |
//!
//! Anything else (README.md, the decision tables in `tests/*.yaml`) is ignored.
//!
//! A bundle without a single policy denies every request; that is almost always an accident (a
//! git-sync or ConfigMap mistake that deleted the files), so it is refused unless the caller
//! allows it (`LoadOptions::allow_empty`).
//!
//! Reloads reuse what did not change. Every file is hashed as it is read; the policies are
//! keyed by the contents and paths of the policy and schema files, the tuple index by those of
//! the tuple and schema files. A reload given the previous bundle (of the same directory)
//! shares its parsed and validated policy set, or its tuple index, when the key is the same,
//! instead of parsing again: an `Arc` shared by two immutable bundles, so the serving snapshot
//! is never touched. Everything else (schema, entities, routes, the engine's indexes) is
//! rebuilt: it is cheap, and depends on both halves.

mod entities;
mod error;
mod files;
mod policies;
mod revocations;
mod schema;
mod tuples;
mod unrecognised;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedar_policy::{Entities, PolicySet, Schema};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::relations::{ModelError, ModelSource, RelationModel, TupleGraph, TupleIndex};
use crate::routes::{RouteError, RouteSource, RouteTable};

pub use error::{InvalidBundle, LoadError, LoadErrorKind};
pub(crate) use files::ReadLimits;
pub use files::{fingerprint, is_bundle_file_name, is_revocation_file_name, is_route_file_name};
pub use policies::PolicyLocation;
pub(crate) use revocations::Revocations;
pub(crate) use schema::{Relation, RelationCatalog, USERSET_TYPE};
pub(crate) use tuples::check_one as check_tuple;
pub use unrecognised::{UnrecognisedFile, unrecognised_files};

/// Everything read from one valid bundle directory. Never modified after it is built; every
/// snapshot built from it (with the relationship store's tuples, or a request's contextual
/// tuples) shares it behind an `Arc`.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    /// Content hash of the bundle's files: the consistency token in every response.
    pub(crate) version: String,
    /// The bundle directory it was loaded from.
    pub(crate) source: PathBuf,
    /// Every policy, by its id (shared with the previous bundle when the policies and the
    /// schema did not change).
    pub(crate) policies: Arc<PolicySet>,
    /// Where each policy was written, by id.
    pub(crate) policy_locations: Arc<FxHashMap<String, PolicyLocation>>,
    /// The schema, when the bundle has one.
    pub(crate) schema: Option<Schema>,
    /// The bundle's entity data (transitively closed; includes the schema's actions).
    pub(crate) entities: Entities,
    /// The number of entities in the bundle's entity files (without the schema's actions).
    pub(crate) entity_count: usize,
    /// The tuples of the bundle's own files (shared with the previous bundle when the tuple
    /// files and the schema did not change). A snapshot's graph starts from it and adds the
    /// relationship store's and a request's contextual tuples; a reload reuses this one, never
    /// a merge.
    pub(crate) file_tuples: Arc<TupleIndex>,
    /// The schema as tuples are checked against it (declared types and relations).
    pub(crate) tuple_schema: Option<Arc<schema::LoadedSchema>>,
    /// The relation model, when the bundle has `*.fga` files.
    pub(crate) model: Option<RelationModel>,
    /// The relations each entity type exposes as attributes.
    pub(crate) relations: RelationCatalog,
    /// The route table (empty without route files).
    pub(crate) routes: RouteTable,
    /// The revoked token ids (empty without revocation files).
    pub(crate) revocations: Revocations,
    /// Schema validation warnings, for `verdict validate` and the startup log.
    pub(crate) warnings: Vec<String>,
    /// What the reusable parts were built from.
    reuse_keys: ReuseKeys,
}

/// Content keys of the parts a reload may reuse: SHA-256 over the paths and contents of the
/// files each part was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReuseKeys {
    /// Policy and schema files.
    policies: [u8; 32],
    /// Tuple, schema and relation model files (a model validates the tuples).
    tuples: [u8; 32],
}

/// Hashes the paths and contents (already hashed, per file) of `groups` of files.
fn content_key(groups: &[&[files::BundleFile]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for group in groups {
        hasher.update((group.len() as u64).to_le_bytes());
        for file in *group {
            hasher.update((file.relative.len() as u64).to_le_bytes());
            hasher.update(file.relative.as_bytes());
            hasher.update(file.digest);
        }
    }
    hasher.finalize().into()
}

/// Reads and validates the bundle in `dir`, reading within `limits`; a bundle without policies
/// is refused unless `allow_empty`. With `previous` (a bundle loaded earlier from the same
/// directory), the policies and the tuple index are taken from it when their files did not
/// change.
pub(crate) fn load(
    dir: &Path,
    limits: ReadLimits,
    allow_empty: bool,
    previous: Option<&Bundle>,
) -> Result<Bundle, InvalidBundle> {
    let files = files::read_bundle_dir(dir, limits)?;
    let mut errors = Vec::new();
    let reuse_keys = ReuseKeys {
        policies: content_key(&[&files.schemas, &files.policies]),
        tuples: content_key(&[&files.schemas, &files.models, &files.tuples]),
    };
    let previous = previous.filter(|previous| previous.source == dir);

    let schema = schema::load(&files.schemas, &mut errors);
    let relations =
        RelationCatalog::new(schema.as_ref()).map_err(|message| LoadError::file(dir, message))?;
    // The policies and the tuples do not depend on each other: both are built at once (each
    // is parallel inside too, so a core that one side leaves idle, the tuple index's sequential
    // steps for one, works for the other). Each side collects its own errors, reported in the
    // order of a sequential load: the policies', then the model's and the tuples'.
    let load_policies = || {
        let mut errors = Vec::new();
        let loaded = match previous {
            Some(previous) if previous.reuse_keys.policies == reuse_keys.policies => (
                Arc::clone(&previous.policies),
                Arc::clone(&previous.policy_locations),
                previous.warnings.clone(),
            ),
            _ => {
                let (policies, locations, warnings) = policies::load(
                    &files.policies,
                    schema.as_ref().map(|s| &s.schema),
                    &mut errors,
                );
                (Arc::new(policies), Arc::new(locations), warnings)
            }
        };
        (loaded, errors)
    };
    let load_model_and_tuples = || {
        let mut errors = Vec::new();
        let model = load_model(&files.models, &mut errors);
        let tuples = match previous {
            Some(previous) if previous.reuse_keys.tuples == reuse_keys.tuples => {
                Arc::clone(&previous.file_tuples)
            }
            _ => Arc::new(tuples::load(
                &files.tuples,
                schema.as_ref(),
                model.as_ref(),
                &mut errors,
            )),
        };
        ((model, tuples), errors)
    };
    let (((policies, policy_locations, warnings), policy_errors), ((model, tuples), tuple_errors)) =
        rayon::join(load_policies, load_model_and_tuples);
    errors.extend(policy_errors);
    errors.extend(tuple_errors);
    let relations = relations.with_tuple_relations(
        &TupleGraph::new(Arc::clone(&tuples)),
        model.as_ref(),
        schema.is_some(),
    );
    let tuple_schema = schema.map(Arc::new);
    let schema = tuple_schema.as_ref().map(|s| s.schema.clone());
    let (entities, entity_count) =
        entities::load(&files.entities, schema.as_ref(), &relations, &mut errors);
    let routes = load_routes(&files.routes, schema.as_ref(), &mut errors);
    let revocations = revocations::load(&files.revocations, &mut errors);

    // Only a bundle that is otherwise valid is called empty: a broken policy file is reported
    // as what it is.
    if errors.is_empty() && !allow_empty && policies.is_empty() {
        errors.push(
            LoadError::file(
                dir,
                "the bundle has no policies, so every request would be denied; an empty bundle \
                 is refused unless empty bundles are allowed",
            )
            .with_kind(LoadErrorKind::Empty),
        );
    }
    if !errors.is_empty() {
        return Err(InvalidBundle::new(errors));
    }
    Ok(Bundle {
        version: files.version,
        source: dir.to_path_buf(),
        policies,
        policy_locations,
        schema,
        entities,
        entity_count,
        file_tuples: tuples,
        tuple_schema,
        model,
        relations,
        routes,
        revocations,
        warnings,
        reuse_keys,
    })
}

/// Builds the relation model from every `*.fga` file; `None` when there are none or they are
/// invalid (the errors say why).
fn load_model(files: &[files::BundleFile], errors: &mut Vec<LoadError>) -> Option<RelationModel> {
    let sources: Vec<ModelSource<'_>> = files
        .iter()
        .map(|file| ModelSource {
            path: &file.path,
            text: &file.text,
        })
        .collect();
    RelationModel::build(&sources).unwrap_or_else(|model_errors| {
        errors.extend(model_errors.into_iter().map(
            |ModelError {
                 path,
                 line,
                 column,
                 message,
             }| LoadError::at(path, line, column, message),
        ));
        None
    })
}

/// Builds the route table from every route file, checked against the schema when there is
/// one; an empty table when there are none or they are invalid.
fn load_routes(
    files: &[files::BundleFile],
    schema: Option<&Schema>,
    errors: &mut Vec<LoadError>,
) -> RouteTable {
    let sources: Vec<RouteSource<'_>> = files
        .iter()
        .map(|file| RouteSource {
            path: &file.path,
            text: &file.text,
        })
        .collect();
    RouteTable::build(&sources, schema).unwrap_or_else(|route_errors| {
        errors.extend(route_errors.into_iter().map(
            |RouteError {
                 path,
                 position,
                 message,
             }| match position {
                Some((line, column)) => LoadError::at(path, line, column, message),
                None => LoadError::file(path, message),
            },
        ));
        RouteTable::default()
    })
}
