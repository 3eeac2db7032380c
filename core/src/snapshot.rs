//! The immutable snapshot: one valid bundle's data and the engine's indexes over it, assembled
//! in one place, and the one door every question goes through.
//!
//! INVARIANT: a question is answered entirely from one snapshot. A [`Prepared`] request borrows
//! the snapshot that validated it, so it cannot be decided against another one: the type
//! system, not a runtime check, keeps the schema, the entities and the relations that shaped a
//! request together with the policies that decide it.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{EntityUid, PolicySet};

use crate::bundle::{self, Bundle, InvalidBundle, PolicyLocation, ReadLimits, RelationCatalog};
use crate::engine::{Decision, Index, PolicyEntities, Prepared, policy_entities};
use crate::input::{CheckInput, RequestError};
use crate::limits::Limits;
use crate::relations::{
    IndexFull, RelationModel, TupleGraph, TupleIndexBuilder, TupleText, parse_tuple_line,
};
use crate::routes::{RouteMatch, RouteRefusal};
use crate::store::{ChangeKind, ConsistencyToken, StoreChange, StoreTuples};

/// The default bound on nested usersets followed by one membership search.
pub const DEFAULT_MAX_RELATION_DEPTH: u32 = 32;

/// The default largest bundle file, in bytes (1 GiB: a file of 10^7 tuples is a few hundred
/// MiB).
pub const DEFAULT_MAX_BUNDLE_FILE_BYTES: u64 = 1 << 30;
/// The default most bytes of all of a bundle's files together (4 GiB).
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 4 << 30;

/// Settings that shape a snapshot, or what a load accepts, but do not come from the bundle
/// itself. `LoadOptions::default()` is what `verdict serve` does by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The most userset-to-userset hops a membership search follows; a search that needs more
    /// denies and says so (`relation_depth_exceeded`).
    pub max_relation_depth: u32,
    /// The largest bundle file, in bytes; a larger one fails the load (`verdict serve
    /// --max-bundle-file-bytes`).
    pub max_file_bytes: u64,
    /// The most bytes of all of the bundle's files together; more fails the load (`verdict
    /// serve --max-bundle-bytes`).
    pub max_bundle_bytes: u64,
    /// Whether a bundle without policies loads; by default it fails the load, because it would
    /// deny every request and is almost always a mistake (`verdict serve --allow-empty-bundle`).
    pub allow_empty: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_relation_depth: DEFAULT_MAX_RELATION_DEPTH,
            max_file_bytes: DEFAULT_MAX_BUNDLE_FILE_BYTES,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            allow_empty: false,
        }
    }
}

/// Everything loaded from one valid bundle, ready to answer questions. Never modified after it
/// is built; `Send + Sync`, so share it behind an `Arc`.
#[derive(Debug)]
pub struct Snapshot {
    /// The bundle's data, shared by every snapshot built from it (store revisions, contextual
    /// tuples).
    pub(crate) bundle: Arc<Bundle>,
    /// The engine's indexes over the bundle, shared likewise.
    pub(crate) index: Arc<Index>,
    /// The relation graph: the bundle's tuples, the store's and a request's.
    pub(crate) tuples: TupleGraph,
    /// The relations each entity type exposes to Cedar (with a bundle without schema or
    /// model, those its tuples use).
    pub(crate) relations: Arc<RelationCatalog>,
    /// The entities and usersets the policies name that a slice may need (they depend on
    /// `relations`).
    pub(crate) policy_entities: Arc<PolicyEntities>,
    pub(crate) max_relation_depth: u32,
    loaded_at: SystemTime,
    /// The relationship store's revision merged in, when a store is configured.
    store_revision: Option<u64>,
    /// What answers name: the bundle version, and the store revision when there is one.
    served_version: String,
}

/// A snapshot with the relationship store's tuples, and the store tuples it left out.
#[derive(Debug)]
pub struct StoreMerge {
    /// The snapshot: the bundle's tuples and the store's, one graph.
    pub snapshot: Snapshot,
    /// How many store tuples this bundle refuses (its schema or relation model changed since
    /// they were written): they are left out, never half-applied.
    pub rejected: usize,
    /// The first few refused tuples, each with why.
    pub first_rejections: Vec<(String, String)>,
}

/// What [`Snapshot::with_store_changes`] did.
#[derive(Debug)]
pub struct StoreUpdate {
    /// The snapshot with the changes (always set when returned).
    pub snapshot: Option<Snapshot>,
    /// Written tuples this bundle refuses: left out, counted like [`StoreMerge::rejected`].
    pub newly_rejected: usize,
    /// Deleted tuples this bundle refuses (they were counted as rejected).
    pub no_longer_rejected: usize,
    /// The first few newly refused tuples, each with why.
    pub first_rejections: Vec<(String, String)>,
}

/// Refused store tuples listed by a [`StoreMerge`] (the count covers all of them).
const MAX_LISTED_REJECTIONS: usize = 10;

impl Snapshot {
    /// Reads and validates the bundle in `dir`: every error it finds, each with its file and,
    /// where the problem has one, its line and column, or a snapshot.
    ///
    /// Only regular files, and symlinks that resolve to regular files inside `dir`, are read,
    /// within the options' size caps; a read never blocks on a FIFO. Blocking I/O all the same;
    /// on an async runtime, call it on a blocking thread.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, InvalidBundle> {
        let limits = ReadLimits {
            max_file_bytes: options.max_file_bytes,
            max_bundle_bytes: options.max_bundle_bytes,
        };
        let bundle = bundle::load(dir, limits, options.allow_empty, None)?;
        Ok(Self::assemble(bundle, options))
    }

    /// Reads and validates the bundle in `dir` as [`Snapshot::load`] does, reusing what did not
    /// change since `previous` was loaded from the same directory: its parsed and validated
    /// policies when no policy or schema file changed, its tuple index when no tuple or schema
    /// file changed. `previous` is only read (the parts are shared, immutable), so it keeps
    /// serving untouched while this runs.
    pub fn reload(
        dir: &Path,
        options: &LoadOptions,
        previous: &Snapshot,
    ) -> Result<Self, InvalidBundle> {
        let limits = ReadLimits {
            max_file_bytes: options.max_file_bytes,
            max_bundle_bytes: options.max_bundle_bytes,
        };
        let bundle = bundle::load(dir, limits, options.allow_empty, Some(&previous.bundle))?;
        Ok(Self::assemble(bundle, options))
    }

    /// Returns whether this snapshot shares its parsed policy set with `other` (a reload that
    /// changed no policy or schema file reuses it).
    pub fn shares_policies_with(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.bundle.policies, &other.bundle.policies)
    }

    /// Returns whether this snapshot shares its tuple index with `other` (a reload that
    /// changed no tuple or schema file reuses it).
    pub fn shares_tuples_with(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.bundle.file_tuples, &other.bundle.file_tuples)
    }

    /// Assembles a snapshot from a bundle's data and the indexes the engine derives from it.
    fn assemble(bundle: Bundle, options: &LoadOptions) -> Self {
        let index = Index::build(&bundle);
        let policy_entities =
            policy_entities(&bundle.policies, &bundle.relations, &bundle.entities);
        Self {
            served_version: bundle.version.clone(),
            tuples: TupleGraph::new(Arc::clone(&bundle.file_tuples)),
            relations: Arc::new(bundle.relations.clone()),
            policy_entities: Arc::new(policy_entities),
            bundle: Arc::new(bundle),
            index: Arc::new(index),
            max_relation_depth: options.max_relation_depth,
            loaded_at: SystemTime::now(),
            store_revision: None,
        }
    }

    /// Returns this snapshot's bundle with the relationship store's tuples added: one relation
    /// graph, answering from the bundle version and `store`'s revision together.
    ///
    /// Only the bundle's own file tuples are taken from `self` (never a store's merged in
    /// before), so calling it on a snapshot that already has a store replaces that store's
    /// tuples. Each store tuple is checked against this bundle's schema and relation model as
    /// a write is; one the bundle no longer allows is left out and counted. CPU-bound (it
    /// re-indexes every tuple): call it on a blocking thread.
    pub fn with_store(&self, store: &StoreTuples) -> Result<StoreMerge, IndexFull> {
        let mut builder = TupleIndexBuilder::from_index(&self.bundle.file_tuples);
        let mut rejected = 0;
        let mut first_rejections = Vec::new();
        for line in store.iter() {
            let verdict = match parse_tuple_line(line) {
                Ok(Some(tuple)) => match self.validate_store_tuple(&tuple) {
                    Ok(()) => {
                        builder.add(&tuple);
                        continue;
                    }
                    Err(reason) => reason,
                },
                Ok(None) => "an empty tuple".to_owned(),
                Err(error) => error.reason,
            };
            rejected += 1;
            if first_rejections.len() < MAX_LISTED_REJECTIONS {
                first_rejections.push((line.to_owned(), verdict));
            }
        }
        let revision = store.revision();
        let served_version = format!(
            "{}@{}",
            self.bundle.version,
            ConsistencyToken::new(revision)
        );
        let graph = TupleGraph::new(Arc::new(builder.finish()?));
        Ok(StoreMerge {
            snapshot: self.with_graph(graph, served_version, Some(revision)),
            rejected,
            first_rejections,
        })
    }

    /// Returns this snapshot (one with a store, see [`Snapshot::with_store`]) with the store
    /// changes of revisions up to `revision` applied as an overlay on its graph: time in
    /// proportion to the changes and the graph's overlay so far, not to the graph. The
    /// changes must be effective (each write adds a tuple the store did not hold, each delete
    /// removes one it held), in order. Tuples this bundle refuses are left out and counted, as
    /// [`Snapshot::with_store`] does; tuples the bundle's own files define stay whatever the
    /// store says (they belong to the bundle).
    pub fn with_store_changes(
        &self,
        changes: &[StoreChange],
        revision: u64,
    ) -> Result<StoreUpdate, IndexFull> {
        let mut edit = self.tuples.edit();
        let mut update = StoreUpdate {
            snapshot: None,
            newly_rejected: 0,
            no_longer_rejected: 0,
            first_rejections: Vec::new(),
        };
        for change in changes {
            let tuple = match parse_tuple_line(&change.tuple) {
                Ok(Some(tuple)) => match self.validate_store_tuple(&tuple) {
                    Ok(()) => Ok(tuple),
                    Err(reason) => Err(reason),
                },
                Ok(None) => Err("an empty tuple".to_owned()),
                Err(error) => Err(error.reason),
            };
            match (tuple, change.kind) {
                (Ok(tuple), _) if self.bundle_defines(&tuple) => {}
                (Ok(tuple), ChangeKind::Write) => {
                    edit.add(&tuple);
                }
                (Ok(tuple), ChangeKind::Delete) => {
                    edit.remove(&tuple);
                }
                (Err(reason), ChangeKind::Write) => {
                    update.newly_rejected += 1;
                    if update.first_rejections.len() < MAX_LISTED_REJECTIONS {
                        update.first_rejections.push((change.tuple.clone(), reason));
                    }
                }
                (Err(_), ChangeKind::Delete) => update.no_longer_rejected += 1,
            }
        }
        let served_version = format!(
            "{}@{}",
            self.bundle.version,
            ConsistencyToken::new(revision)
        );
        update.snapshot = Some(self.with_graph(edit.finish()?, served_version, Some(revision)));
        Ok(update)
    }

    /// Returns this snapshot answering from `tuples` (this snapshot's graph with changes), as
    /// `served_version`. Shares the bundle and the engine's indexes; derives again only what
    /// depends on the graph's types and relations: O(types × relations), not O(tuples).
    pub(crate) fn with_graph(
        &self,
        tuples: TupleGraph,
        served_version: String,
        store_revision: Option<u64>,
    ) -> Self {
        let relations = self.bundle.relations.clone().with_tuple_relations(
            &tuples,
            self.bundle.model.as_ref(),
            self.bundle.schema.is_some(),
        );
        let (relations, policy_entities) = if relations == *self.relations {
            (
                Arc::clone(&self.relations),
                Arc::clone(&self.policy_entities),
            )
        } else {
            let entities =
                policy_entities(&self.bundle.policies, &relations, &self.bundle.entities);
            (Arc::new(relations), Arc::new(entities))
        };
        Self {
            served_version,
            bundle: Arc::clone(&self.bundle),
            index: Arc::clone(&self.index),
            tuples,
            relations,
            policy_entities,
            max_relation_depth: self.max_relation_depth,
            loaded_at: self.loaded_at,
            store_revision,
        }
    }

    /// Returns this snapshot with its graph's overlay folded into a new base computed now
    /// (O(graph)), prepared so that later changes can remove tuples without computing the
    /// base's counts then: a snapshot built off the request path to follow a store from.
    pub fn prepared_for_changes(&self) -> Self {
        self.with_graph(
            self.tuples.prepared_for_removals(),
            self.served_version.clone(),
            self.store_revision,
        )
    }

    /// Returns how many tuple changes this snapshot's graph holds over its frozen base: what
    /// a follower compacts by.
    pub fn overlay_len(&self) -> usize {
        self.tuples.overlay_len()
    }

    /// Checks a tuple to be written to the relationship store exactly as a line of a tuple file
    /// is checked: Cedar's type syntax, this bundle's schema, and its relation model's type
    /// restrictions. The error says what is wrong, without position.
    pub fn validate_store_tuple(&self, tuple: &TupleText<'_>) -> Result<(), String> {
        crate::bundle::check_tuple(
            tuple,
            self.bundle.tuple_schema.as_deref(),
            self.bundle.model.as_ref(),
        )
    }

    /// Returns whether the bundle's own files define `tuple`: such a tuple belongs to the
    /// bundle (git), and may be neither written nor deleted through the store.
    pub fn bundle_defines(&self, tuple: &TupleText<'_>) -> bool {
        self.bundle.file_tuples.contains(tuple)
    }

    /// Returns the relationship store revision this snapshot answers from, when a store is
    /// configured.
    pub fn store_revision(&self) -> Option<u64> {
        self.store_revision
    }

    /// Returns what an answer names as the state it came from: the bundle version, and with a
    /// store `version@token` (the store revision as a consistency token).
    pub fn served_version(&self) -> &str {
        &self.served_version
    }

    /// Decides one request: validates `input` against this snapshot and `limits`, then
    /// evaluates it. Only a malformed request, or one over a limit, is an error; the caller
    /// must treat an error as a deny.
    pub fn check(&self, input: CheckInput, limits: &Limits) -> Result<Decision, RequestError> {
        self.prepare(input, limits)?.decide()
    }

    /// Decides every request of a batch against this one snapshot, in order, each with its
    /// own answer or its own error. A batch over [`Limits::max_batch`] is an error as a whole.
    pub fn check_batch(
        &self,
        inputs: Vec<CheckInput>,
        limits: &Limits,
    ) -> Result<Vec<Result<Decision, RequestError>>, RequestError> {
        limits.check_batch_len(inputs.len())?;
        Ok(inputs
            .into_iter()
            .map(|input| self.check(input, limits))
            .collect())
    }

    /// Validates `input` against this snapshot and `limits` without deciding it yet: the first
    /// half of [`Snapshot::check`], for callers that time or repeat the decision alone (the
    /// benches). The result can only be decided against this snapshot.
    pub fn prepare(
        &self,
        input: CheckInput,
        limits: &Limits,
    ) -> Result<Prepared<'_>, RequestError> {
        Prepared::new(self, input, limits)
    }

    /// Matches an HTTP request to the bundle's route table (`routes.yaml`): the action,
    /// resource and context the request asks about, and the route's settings; or why there is
    /// no route, which means deny (a bundle without route files refuses every request).
    ///
    /// `raw_path_and_query` is the request target as it arrived (`/v1/documents/d1?x=1`): it is
    /// normalised here, and refused when it cannot be safely. `headers` looks up a header by
    /// its lower-case name; only the headers the route lists are asked for. Pure: no I/O.
    pub fn route<'s, 'h>(
        &'s self,
        method: &str,
        raw_path_and_query: &str,
        headers: &dyn Fn(&str) -> Option<&'h str>,
    ) -> Result<RouteMatch<'s>, RouteRefusal> {
        self.bundle
            .routes
            .route(method, raw_path_and_query, headers)
    }

    /// Returns whether the bundle's revocation lists (`revocations.txt`, `*.revocations.txt`)
    /// name the token id `jti`: a front-end refuses such a token even though it verifies.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.bundle.revocations.contains(jti)
    }

    /// Returns the number of distinct revoked token ids.
    pub fn revocation_count(&self) -> usize {
        self.bundle.revocations.len()
    }

    /// Returns the number of routes in the route table.
    pub fn route_count(&self) -> usize {
        self.bundle.routes.len()
    }

    /// Returns the content hash of the bundle's files (without any store revision: see
    /// [`Snapshot::served_version`]).
    pub fn version(&self) -> &str {
        &self.bundle.version
    }

    /// Returns when the bundle was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Returns the bundle directory it was loaded from.
    pub fn source(&self) -> &Path {
        &self.bundle.source
    }

    /// Returns the number of policies.
    pub fn policy_count(&self) -> usize {
        self.bundle.policies.policies().count()
    }

    /// Returns the number of relationship tuples (the bundle's and the store's).
    pub fn tuple_count(&self) -> usize {
        self.tuples.tuple_count()
    }

    /// Returns the relation graph: every relationship tuple, indexed.
    pub fn tuples(&self) -> &TupleGraph {
        &self.tuples
    }

    /// Returns the relation model, when the bundle has `*.fga` files.
    pub fn relation_model(&self) -> Option<&RelationModel> {
        self.bundle.model.as_ref()
    }

    /// Returns the number of entities in the bundle's entity files (without the schema's
    /// actions).
    pub fn entity_count(&self) -> usize {
        self.bundle.entity_count
    }

    /// Returns whether the bundle has a schema.
    pub fn has_schema(&self) -> bool {
        self.bundle.schema.is_some()
    }

    /// Returns the schema validation warnings.
    pub fn warnings(&self) -> &[String] {
        &self.bundle.warnings
    }

    /// Returns where the policy `id` was written.
    pub fn policy_location(&self, id: &str) -> Option<&PolicyLocation> {
        self.bundle.policy_locations.get(id)
    }

    /// Returns every action the bundle knows (declared in its schema or entity files, or named
    /// in a policy's scope), sorted: the bounded set front-ends label metrics with.
    pub fn known_actions(&self) -> &[EntityUid] {
        &self.index.known_actions
    }

    /// Returns the resource types the schema's actions apply to, sorted; empty without a
    /// schema.
    pub fn resource_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .bundle
            .schema
            .as_ref()
            .map(|schema| schema.resources().map(ToString::to_string).collect())
            .unwrap_or_default();
        types.sort();
        types.dedup();
        types
    }

    /// Returns the bundle's policies, as Cedar parsed them (each with its id as written).
    pub fn policies(&self) -> &PolicySet {
        &self.bundle.policies
    }

    /// Returns the uid of the userset entity that stands for the `relation` of
    /// `entity_type::"id"` in Cedar (`Verdict::Userset::"Document::\"d1\"#owner"`): what
    /// `principal in resource.owner` tests membership of.
    pub fn userset_uid(&self, entity_type: &str, id: &str, relation: &str) -> EntityUid {
        self.relations.userset_uid(entity_type, id, relation)
    }

    /// Returns whether the bundle knows `uid`: defines it in its entity files, names it in a
    /// tuple (as an object or a subject) or names it in a policy. Such an entity's memberships
    /// are the bundle's to manage, not a request's.
    pub fn knows_entity(&self, uid: &EntityUid) -> bool {
        if self.bundle.entities.get(uid).is_some() || self.index.literal_entities.contains(uid) {
            return true;
        }
        let tuples = &self.tuples;
        tuples
            .type_id(&uid.type_name().to_string())
            .is_some_and(|entity_type| tuples.entity(entity_type, uid.id().unescaped()).is_some())
    }

    /// Returns the ids of every entity of `entity_type` the bundle knows (defines in its entity
    /// files, names in a tuple or in a policy), sorted and without duplicates: the candidates
    /// of a search by type (AuthZEN's subject and resource search), each of which a front-end
    /// confirms with [`Snapshot::check`]. Userset entities are never listed. Linear in the
    /// bundle's entities.
    pub fn entity_ids_of_type(&self, entity_type: &str) -> Vec<String> {
        if entity_type == crate::bundle::USERSET_TYPE {
            return Vec::new();
        }
        let same_type = |uid: &EntityUid| uid.type_name().to_string() == entity_type;
        let mut ids: Vec<String> = self
            .bundle
            .entities
            .iter()
            .map(cedar_policy::Entity::uid)
            .filter(|uid| same_type(uid))
            .map(|uid| uid.id().unescaped().to_owned())
            .collect();
        ids.extend(
            self.index
                .literal_entities
                .iter()
                .filter(|uid| same_type(uid))
                .map(|uid| uid.id().unescaped().to_owned()),
        );
        let tuples = &self.tuples;
        if let Some(type_id) = tuples.type_id(entity_type) {
            ids.extend(
                tuples
                    .entities_of_type(type_id)
                    .map(|entity| tuples.entity_key(entity).1.to_owned()),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Returns the most nested usersets one membership search follows.
    pub fn max_relation_depth(&self) -> u32 {
        self.max_relation_depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_snapshot_can_be_shared_across_threads() {
        assert_send_sync::<Snapshot>();
    }

    #[test]
    fn a_bundle_without_policies_loads_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"u\"\n",
        )
        .unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(error.kind(), crate::LoadErrorKind::Empty);
        assert_eq!(
            error.to_string(),
            format!(
                "{}: the bundle has no policies, so every request would be denied; an empty \
                 bundle is refused unless empty bundles are allowed",
                dir.path().display()
            )
        );
        let allowed = LoadOptions {
            allow_empty: true,
            ..LoadOptions::default()
        };
        let snapshot = Snapshot::load(dir.path(), &allowed).unwrap();
        assert_eq!((snapshot.policy_count(), snapshot.tuple_count()), (0, 1));

        // A broken policy file is reported as broken, not as an empty bundle.
        std::fs::write(dir.path().join("a.cedar"), "permit (principal,").unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(error.kind(), crate::LoadErrorKind::Invalid);
    }

    #[test]
    fn the_example_bundle_routes_its_api_to_checks() {
        let policies = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies"));
        let snapshot = Snapshot::load(policies, &LoadOptions::default()).unwrap();
        assert!(snapshot.route_count() >= 10);
        let headers = |name: &str| match name {
            "x-acme-scopes" => Some("documents:read"),
            _ => None,
        };
        let ask = |method: &str, path: &str, principal: &str| {
            let matched = snapshot.route(method, path, &headers).unwrap();
            let input = matched.into_check_input(crate::EntityRef::new("User", principal), vec![]);
            snapshot
                .check(input, &Limits::default())
                .unwrap()
                .is_allowed()
        };
        assert!(ask("GET", "/v1/documents/roadmap", "bob"));
        assert!(!ask("DELETE", "/v1/documents/roadmap", "bob"));
        assert!(ask("GET", "/v1/admin/users", "carol"));
        assert!(!ask("DELETE", "/v1/admin/users/bob", "carol"));
        assert!(ask("DELETE", "/v1/admin/users/bob", "erin"));
        // No route: denied before any policy is asked.
        assert_eq!(
            snapshot
                .route("GET", "/v1/admin/audit", &headers)
                .unwrap_err(),
            crate::RouteRefusal::NoRoute
        );
        assert_eq!(
            snapshot
                .route("GET", "/v1/documents/..%2fadmin/users", &headers)
                .unwrap_err(),
            crate::RouteRefusal::PathRefused(crate::PathRefusal::EncodedSlash)
        );
    }

    #[test]
    fn entities_of_a_type_come_from_entity_files_tuples_and_policies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit (principal == User::\"pat\", action, resource);",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"tuple\"\nDoc::\"d\"#viewer@Team::\"t\"#member\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("people.entities.json"),
            r#"[{"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []},
                {"uid": {"type": "User", "id": "tuple"}, "attrs": {}, "parents": []}]"#,
        )
        .unwrap();
        let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(snapshot.entity_ids_of_type("User"), ["ann", "pat", "tuple"]);
        assert_eq!(snapshot.entity_ids_of_type("Doc"), ["d"]);
        assert_eq!(snapshot.entity_ids_of_type("Team"), ["t"]);
        assert!(snapshot.entity_ids_of_type("Robot").is_empty());
        assert!(snapshot.entity_ids_of_type("Verdict::Userset").is_empty());
    }

    #[test]
    fn revocation_files_are_part_of_the_bundle_and_its_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        let before = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(before.revocation_count(), 0);
        assert!(!before.is_revoked("t-1"));
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("revocations.txt"),
            "# incident 42\n  t-1  \n\nt-2\nt-1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("tokens/idp.revocations.txt"), "t-3\n").unwrap();
        // Not a revocation file: ignored.
        std::fs::write(dir.path().join("revocations.txt.bak"), "t-4\n").unwrap();
        let after = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_ne!(before.version(), after.version());
        assert_eq!(after.revocation_count(), 3);
        for jti in ["t-1", "t-2", "t-3"] {
            assert!(after.is_revoked(jti), "{jti}");
        }
        for jti in ["t-4", "T-1", " t-1", "", "# incident 42"] {
            assert!(!after.is_revoked(jti), "{jti:?}");
        }
        // A bad line fails the whole load, with its position, without quoting the line.
        std::fs::write(
            dir.path().join("tokens/idp.revocations.txt"),
            "t-3\nsecret\u{1b}id\n",
        )
        .unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        let shown = error.to_string();
        assert!(
            shown.contains(&format!(
                "{}: a revoked token id may not contain control characters",
                dir.path().join("tokens/idp.revocations.txt:2:7").display()
            )),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn route_files_are_part_of_the_bundle_and_its_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        let before = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(before.route_count(), 0);
        let routes = "routes:\n  - {method: GET, path: /x, action: read, resource: Api::\"x\"}\n";
        std::fs::create_dir(dir.path().join("gateway")).unwrap();
        std::fs::write(dir.path().join("gateway/x.routes.yaml"), routes).unwrap();
        let after = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(after.route_count(), 1);
        assert_ne!(before.version(), after.version());

        // A broken route file fails the whole load, with its position.
        std::fs::write(dir.path().join("routes.yaml"), "routes:\n  - method: GET\n").unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{}: routes[0]: missing field `path`",
                dir.path().join("routes.yaml:2:5").display()
            )
        );
    }

    /// A bundle with a schema, a policy file and a tuple file, in a fresh directory.
    fn reusable_bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("schema.cedarschema"),
            "entity User;\nentity Doc { viewer: Verdict::Userset };\n\
             action read appliesTo { principal: User, resource: Doc };\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "@id(\"viewers\")\npermit (principal, action == Action::\"read\", resource is Doc)\n\
             when { principal in resource.viewer };\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"alice\"\n",
        )
        .unwrap();
        dir
    }

    fn reads(snapshot: &Snapshot, user: &str) -> bool {
        let input = CheckInput::new(
            crate::EntityRef::new("User", user),
            "read",
            crate::EntityRef::new("Doc", "d"),
        );
        snapshot
            .check(input, &Limits::default())
            .unwrap()
            .is_allowed()
    }

    #[test]
    fn a_reload_that_touched_only_tuples_keeps_the_parsed_policy_set() {
        let dir = reusable_bundle();
        let options = LoadOptions::default();
        let first = Snapshot::load(dir.path(), &options).unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"bob\"\n",
        )
        .unwrap();
        let second = Snapshot::reload(dir.path(), &options, &first).unwrap();
        assert!(second.shares_policies_with(&first));
        assert!(!second.shares_tuples_with(&first));
        assert_ne!(second.version(), first.version());
        // The new tuples answer; the old snapshot still answers from its own.
        assert!(reads(&second, "bob") && !reads(&second, "alice"));
        assert!(reads(&first, "alice") && !reads(&first, "bob"));

        // Only policies changed: the tuple index is kept, the policies are parsed again.
        std::fs::write(
            dir.path().join("a.cedar"),
            "@id(\"nobody\")\nforbid (principal, action, resource);\n",
        )
        .unwrap();
        let third = Snapshot::reload(dir.path(), &options, &second).unwrap();
        assert!(third.shares_tuples_with(&second));
        assert!(!third.shares_policies_with(&second));
        assert!(!reads(&third, "bob"));

        // Nothing changed: both are kept, and the version is the same.
        let fourth = Snapshot::reload(dir.path(), &options, &third).unwrap();
        assert!(fourth.shares_policies_with(&third) && fourth.shares_tuples_with(&third));
        assert_eq!(fourth.version(), third.version());
    }

    #[test]
    fn a_schema_change_parses_and_validates_everything_again() {
        let dir = reusable_bundle();
        let options = LoadOptions::default();
        let first = Snapshot::load(dir.path(), &options).unwrap();
        // The same schema with another action: both parts depend on the schema.
        std::fs::write(
            dir.path().join("schema.cedarschema"),
            "entity User;\nentity Doc { viewer: Verdict::Userset };\n\
             action read, write appliesTo { principal: User, resource: Doc };\n",
        )
        .unwrap();
        let second = Snapshot::reload(dir.path(), &options, &first).unwrap();
        assert!(!second.shares_policies_with(&first));
        assert!(!second.shares_tuples_with(&first));
        // A schema the tuples break fails the reload with the tuple's position, even though
        // the tuple file itself did not change.
        std::fs::write(
            dir.path().join("schema.cedarschema"),
            "entity User;\nentity Doc;\naction read appliesTo { principal: User, resource: Doc };\n",
        )
        .unwrap();
        let error = Snapshot::reload(dir.path(), &options, &second).unwrap_err();
        assert!(error.to_string().contains("docs.tuples:1:1"), "{error}");
    }

    #[test]
    fn tuple_errors_keep_their_lines_across_parallel_pieces() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        // Enough lines for several parsing pieces, with bad lines far apart.
        let mut text = String::new();
        for i in 1..=60_000 {
            if i == 7 || i == 45_001 {
                text.push_str("Doc::\"d\"viewer@User::\"u\"\n");
            } else {
                text.push_str(&format!("Doc::\"d{i}\"#viewer@User::\"u{i}\"\n"));
            }
        }
        std::fs::write(dir.path().join("big.tuples"), text).unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        let lines: Vec<String> = error.errors().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("big.tuples:7:"), "{lines:?}");
        assert!(lines[1].contains("big.tuples:45001:"), "{lines:?}");
    }

    const MODEL: &str = "model\n  schema 1.1\ntype User\ntype Team\n  relations\n    define member: [User, Team#member]\n\
        type Folder\n  relations\n    define viewer: [User, Team#member]\n\
        type Document\n  relations\n    define parent: [Folder]\n    define owner: [User]\n    define editor: [User] or owner\n\
        \x20   define blocked: [User]\n    define viewer: ([User:*, Team#member] or editor or viewer from parent) but not blocked\n";

    fn model_bundle(tuples: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.fga"), MODEL).unwrap();
        std::fs::write(dir.path().join("docs.tuples"), tuples).unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit (principal, action == Action::\"read\", resource is Document)\n\
             when { principal in resource.viewer };",
        )
        .unwrap();
        dir
    }

    #[test]
    fn cedar_sees_the_model_relations_with_their_rewrites() {
        let dir = model_bundle(
            "Document::\"d1\"#parent@Folder::\"f1\"\n\
             Folder::\"f1\"#viewer@Team::\"eng\"#member\n\
             Team::\"eng\"#member@User::\"anne\"\n\
             Team::\"eng\"#member@User::\"bob\"\n\
             Document::\"d1\"#blocked@User::\"bob\"\n\
             Document::\"d2\"#owner@User::\"carl\"\n",
        );
        let snapshot = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert!(snapshot.relation_model().is_some());
        let read = |principal: &str, document: &str| {
            let input = CheckInput::new(
                crate::EntityRef::new("User", principal),
                "read",
                crate::EntityRef::new("Document", document),
            );
            snapshot.check(input, &Limits::default()).unwrap()
        };
        // Inherited from the folder through the team.
        assert!(read("anne", "d1").is_allowed());
        // Excluded by `but not blocked`.
        assert!(!read("bob", "d1").is_allowed());
        // Owners are editors, editors are viewers.
        assert!(read("carl", "d2").is_allowed());
        assert!(!read("anne", "d2").is_allowed());
        assert!(!read("nobody", "d1").is_allowed());
    }

    #[test]
    fn tuples_the_model_does_not_allow_fail_the_load_with_their_line() {
        let dir = model_bundle(
            "Document::\"d1\"#owner@User::\"carl\"\n\
             Document::\"d1\"#editor@Team::\"eng\"#member\n\
             Document::\"d1\"#reader@User::\"carl\"\n\
             Robot::\"r\"#owner@User::\"carl\"\n",
        );
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        let file = dir.path().join("docs.tuples").display().to_string();
        assert_eq!(
            error.to_string(),
            format!(
                "{file}:2:1: relation `editor` of `Document` cannot hold the userset \
                 `Team::\"eng\"#member`; its type restriction is `[User]`\n\
                 {file}:3:1: type `Document` has no relation `reader` in the relation model\n\
                 {file}:4:1: type `Robot` is not defined in the relation model"
            )
        );
        // A broken model fails the load with its position; the tuples are then not checked.
        std::fs::write(
            dir.path().join("model.fga"),
            "model\n  schema 1.1\ntype User\n  relations\n    define x: [Ghost]\n",
        )
        .unwrap();
        let error = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "{}:5:16: type `Ghost` is not defined",
                dir.path().join("model.fga").display()
            )),
            "{error}"
        );
    }

    #[test]
    fn model_files_are_part_of_the_version() {
        let dir = model_bundle("Document::\"d1\"#owner@User::\"carl\"\n");
        let before = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        std::fs::write(dir.path().join("model.fga"), format!("{MODEL}type Robot\n")).unwrap();
        let after = Snapshot::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_ne!(before.version(), after.version());
    }
}
