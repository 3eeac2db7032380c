//! The frozen tuple index.
//!
//! Every entity type, relation, entity and userset is interned to a dense `u32`. A userset is
//! an (object, relation) pair; its edges are stored in compressed sparse rows, sorted, so that
//! "is this entity a direct subject?" is a binary search and the memory cost of a direct tuple
//! is one `u32`:
//!
//! ```text
//! offsets[u] .. offsets[u + 1]  ->  direct subjects   (EntityIdx, sorted)
//!                                   wildcard types    (TypeId, sorted)
//!                                   userset subjects  (UsersetId, sorted)
//! ```
//!
//! Entity ids are only interned for entities that appear in tuples; an entity that appears in
//! none simply has no relations.
//!
//! The interning tables are split into [`SHARDS`] shards (entities by a hash of their id,
//! usersets by their object), so that a large load interns in parallel, one shard per task,
//! and still numbers every entity and userset in the order a sequential load first sees it
//! (see [`TupleIndexBuilder::add_runs`]): the index does not depend on the number of threads.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use super::tuple::{EntityUidText, SubjectText, TupleText};

macro_rules! dense_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            #[allow(dead_code, reason = "not every kind of id indexes a vector")]
            pub(crate) fn index(self) -> usize {
                self.0 as usize
            }

            /// The id of the `len`-th value; `None` past what a `u32` can number.
            pub(crate) fn from_len(len: usize) -> Option<Self> {
                u32::try_from(len).ok().filter(|&n| n < u32::MAX).map(Self)
            }
        }
    };
}

dense_id!(
    /// An interned entity type.
    TypeId
);
dense_id!(
    /// An interned relation name.
    RelationId
);
dense_id!(
    /// An interned entity (type and id) that appears in some tuple.
    EntityIdx
);
dense_id!(
    /// An interned userset: an object and one of its relations.
    UsersetId
);

/// The immutable index of every tuple in a bundle.
#[derive(Debug, Default, Clone)]
pub struct TupleIndex {
    type_names: Vec<Box<str>>,
    type_ids: FxHashMap<Box<str>, TypeId>,
    relation_names: Vec<Box<str>>,
    relation_ids: FxHashMap<Box<str>, RelationId>,
    /// Entity ids per shard ([`entity_shard`] of the id), then per type (indexed by `TypeId`).
    entities: Vec<Vec<FxHashMap<Arc<str>, EntityIdx>>>,
    entity_count: usize,
    /// Each entity's type and id, indexed by `EntityIdx` (the id shared with `entities`).
    entity_keys: Vec<(TypeId, Arc<str>)>,
    /// Userset ids per shard ([`userset_shard`] of the object).
    usersets: Vec<FxHashMap<(EntityIdx, RelationId), UsersetId>>,
    /// Each userset's object and relation, indexed by `UsersetId`.
    userset_keys: Vec<(EntityIdx, RelationId)>,
    /// `offsets[u]` is where userset `u`'s edges start in each of the three edge arrays.
    offsets: Vec<EdgeOffsets>,
    direct: Vec<EntityIdx>,
    wildcards: Vec<TypeId>,
    children: Vec<UsersetId>,
    /// Relations that objects of each type have in some tuple, indexed by `TypeId`, sorted.
    relations_by_type: Vec<Vec<RelationId>>,
    /// One bit per `EntityIdx`: set when the entity is the direct subject of some tuple.
    direct_subjects: Vec<u64>,
    /// Per `TypeId`: whether some tuple has a wildcard of that type as its subject.
    wildcard_types: Vec<bool>,
    tuple_count: usize,
    /// Per `TypeId`: its entities sorted by id, built on first use (reverse lookups page
    /// through it from a cursor instead of collecting and sorting every entity per page).
    sorted_by_type: std::sync::OnceLock<Vec<Vec<EntityIdx>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EdgeOffsets {
    direct: u32,
    wildcards: u32,
    children: u32,
}

/// Edges of one userset, borrowed from the index.
pub(crate) struct UsersetEdges<'a> {
    pub(crate) direct: &'a [EntityIdx],
    pub(crate) wildcards: &'a [TypeId],
    pub(crate) children: &'a [UsersetId],
}

impl TupleIndex {
    /// Returns the number of distinct tuples.
    pub fn tuple_count(&self) -> usize {
        self.tuple_count
    }

    /// Returns the number of distinct usersets (object and relation pairs with a subject).
    pub fn userset_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Returns the number of distinct entities named by tuples.
    pub fn entity_count(&self) -> usize {
        self.entity_count
    }

    /// Returns the number of interned entity types (ids `0..type_count`).
    pub(crate) fn type_count(&self) -> usize {
        self.type_names.len()
    }

    /// Returns the number of interned relations (ids `0..relation_count`).
    pub(crate) fn relation_count(&self) -> usize {
        self.relation_names.len()
    }

    /// Returns whether `entity` is the direct subject of some tuple.
    pub(crate) fn is_direct_subject(&self, entity: EntityIdx) -> bool {
        let i = entity.index();
        self.direct_subjects
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Returns whether some tuple has the wildcard of `entity_type` as its subject.
    pub(crate) fn has_wildcard_of(&self, entity_type: TypeId) -> bool {
        self.wildcard_types.get(entity_type.index()) == Some(&true)
    }

    /// Returns every entity type named by some tuple.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.type_names.iter().map(AsRef::as_ref)
    }

    /// Returns the interned id of an entity type, if any tuple names it.
    pub fn type_id(&self, entity_type: &str) -> Option<TypeId> {
        self.type_ids.get(entity_type).copied()
    }

    /// Returns the name of an interned entity type.
    pub fn type_name(&self, id: TypeId) -> &str {
        self.type_names.get(id.index()).map_or("", AsRef::as_ref)
    }

    /// Returns the interned id of a relation, if any tuple uses it.
    pub fn relation_id(&self, relation: &str) -> Option<RelationId> {
        self.relation_ids.get(relation).copied()
    }

    /// Returns the name of an interned relation.
    pub fn relation_name(&self, id: RelationId) -> &str {
        self.relation_names
            .get(id.index())
            .map_or("", AsRef::as_ref)
    }

    /// Returns the relations that objects of `entity_type` have in some tuple.
    pub fn relations_of_type(&self, entity_type: TypeId) -> &[RelationId] {
        self.relations_by_type
            .get(entity_type.index())
            .map_or(&[], Vec::as_slice)
    }

    /// Returns the interned entity, if any tuple names it.
    pub fn entity(&self, entity_type: TypeId, id: &str) -> Option<EntityIdx> {
        self.entities
            .get(entity_shard(id))?
            .get(entity_type.index())?
            .get(id)
            .copied()
    }

    /// Returns the type and id of an interned entity.
    pub fn entity_key(&self, entity: EntityIdx) -> (TypeId, &str) {
        self.entity_keys
            .get(entity.index())
            .map_or((TypeId(u32::MAX), ""), |(t, id)| (*t, id.as_ref()))
    }

    /// Returns every interned entity of `entity_type`, in no particular order.
    pub fn entities_of_type(&self, entity_type: TypeId) -> impl Iterator<Item = EntityIdx> + '_ {
        self.entities
            .iter()
            .filter_map(move |shard| shard.get(entity_type.index()))
            .flat_map(|ids| ids.values().copied())
    }

    /// Returns every interned entity of `entity_type`, sorted by id (computed once per index,
    /// on first use: a sort of the type's ids).
    pub fn entities_of_type_sorted(&self, entity_type: TypeId) -> &[EntityIdx] {
        let by_type = self.sorted_by_type.get_or_init(|| {
            let mut by_type: Vec<Vec<EntityIdx>> = vec![Vec::new(); self.type_names.len()];
            for (i, (t, _)) in self.entity_keys.iter().enumerate() {
                if let Some(list) = by_type.get_mut(t.index()) {
                    list.push(EntityIdx(to_u32(i)));
                }
            }
            for list in &mut by_type {
                list.sort_unstable_by(|&a, &b| self.entity_key(a).1.cmp(self.entity_key(b).1));
            }
            by_type
        });
        by_type.get(entity_type.index()).map_or(&[], Vec::as_slice)
    }

    /// Returns the object and relation of an interned userset.
    pub fn userset_key(&self, userset: UsersetId) -> (EntityIdx, RelationId) {
        self.userset_keys
            .get(userset.index())
            .copied()
            .unwrap_or((EntityIdx(u32::MAX), RelationId(u32::MAX)))
    }

    /// Returns the userset of `object`'s `relation`, if it has any subject.
    pub fn userset(&self, object: EntityIdx, relation: RelationId) -> Option<UsersetId> {
        self.usersets
            .get(userset_shard(object))?
            .get(&(object, relation))
            .copied()
    }

    /// Returns whether `subject` could be in any userset at all: it is the direct subject of
    /// some tuple, or a wildcard of its type is. If not, no search can find it.
    pub(crate) fn may_be_member(&self, entity: Option<EntityIdx>, entity_type: TypeId) -> bool {
        let direct = entity.is_some_and(|e| {
            let i = e.index();
            self.direct_subjects
                .get(i / 64)
                .is_some_and(|word| word & (1 << (i % 64)) != 0)
        });
        direct || self.wildcard_types.get(entity_type.index()) == Some(&true)
    }

    pub(crate) fn edges(&self, userset: UsersetId) -> UsersetEdges<'_> {
        let i = userset.index();
        let (Some(start), Some(end)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return UsersetEdges {
                direct: &[],
                wildcards: &[],
                children: &[],
            };
        };
        UsersetEdges {
            direct: self
                .direct
                .get(start.direct as usize..end.direct as usize)
                .unwrap_or(&[]),
            wildcards: self
                .wildcards
                .get(start.wildcards as usize..end.wildcards as usize)
                .unwrap_or(&[]),
            children: self
                .children
                .get(start.children as usize..end.children as usize)
                .unwrap_or(&[]),
        }
    }
}

impl TupleIndex {
    /// Returns whether the index holds `tuple` itself (not whether a search would find its
    /// subject through other tuples): what "the bundle defines this tuple" means.
    pub fn contains(&self, tuple: &TupleText<'_>) -> bool {
        self.find(tuple).unwrap_or(false)
    }

    fn find(&self, tuple: &TupleText<'_>) -> Option<bool> {
        let object_type = self.type_id(tuple.object.entity_type)?;
        let object = self.entity(object_type, &tuple.object.id)?;
        let userset = self.userset(object, self.relation_id(tuple.relation)?)?;
        let edges = self.edges(userset);
        Some(match &tuple.subject {
            SubjectText::Entity(subject) => {
                let subject_type = self.type_id(subject.entity_type)?;
                let subject = self.entity(subject_type, &subject.id)?;
                edges.direct.binary_search(&subject).is_ok()
            }
            SubjectText::Wildcard { entity_type } => {
                let subject_type = self.type_id(entity_type)?;
                edges.wildcards.binary_search(&subject_type).is_ok()
            }
            SubjectText::Userset { object, relation } => {
                let subject_type = self.type_id(object.entity_type)?;
                let subject = self.entity(subject_type, &object.id)?;
                let child = self.userset(subject, self.relation_id(relation)?)?;
                edges.children.binary_search(&child).is_ok()
            }
        })
    }
}

/// Collects tuples, then freezes them into a [`TupleIndex`].
#[derive(Debug)]
pub struct TupleIndexBuilder {
    index: TupleIndex,
    direct_edges: Vec<(UsersetId, EntityIdx)>,
    wildcard_edges: Vec<(UsersetId, TypeId)>,
    child_edges: Vec<(UsersetId, UsersetId)>,
    type_relations: FxHashSet<(TypeId, RelationId)>,
    /// Set when more values were added than 32-bit ids can number.
    full: bool,
}

/// More distinct entities, usersets or tuples than the index can number (2^32 - 1 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bundle has more than 4294967294 distinct entities, usersets or tuples")]
pub struct IndexFull;

impl Default for TupleIndexBuilder {
    fn default() -> Self {
        Self {
            index: TupleIndex {
                entities: vec![Vec::new(); SHARDS],
                usersets: vec![FxHashMap::default(); SHARDS],
                ..TupleIndex::default()
            },
            direct_edges: Vec::new(),
            wildcard_edges: Vec::new(),
            child_edges: Vec::new(),
            type_relations: FxHashSet::default(),
            full: false,
        }
    }
}

impl TupleIndexBuilder {
    /// Returns an empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a builder that already holds every tuple of `index`, with the same interned
    /// ids, so more tuples can be added to a copy of a frozen index (the bundle's tuples with
    /// the relationship store's on top) without parsing the first ones again.
    pub fn from_index(index: &TupleIndex) -> Self {
        let mut direct_edges = Vec::with_capacity(index.direct.len());
        let mut wildcard_edges = Vec::with_capacity(index.wildcards.len());
        let mut child_edges = Vec::with_capacity(index.children.len());
        for u in 0..index.userset_count() {
            let userset = UsersetId(to_u32(u));
            let edges = index.edges(userset);
            direct_edges.extend(edges.direct.iter().map(|&e| (userset, e)));
            wildcard_edges.extend(edges.wildcards.iter().map(|&t| (userset, t)));
            child_edges.extend(edges.children.iter().map(|&c| (userset, c)));
        }
        let mut type_relations = FxHashSet::default();
        for (t, relations) in index.relations_by_type.iter().enumerate() {
            for &relation in relations {
                type_relations.insert((TypeId(to_u32(t)), relation));
            }
        }
        // The frozen arrays are rebuilt by `finish`; only the interning tables are kept.
        let index = TupleIndex {
            type_names: index.type_names.clone(),
            type_ids: index.type_ids.clone(),
            relation_names: index.relation_names.clone(),
            relation_ids: index.relation_ids.clone(),
            entities: index.entities.clone(),
            entity_count: index.entity_count,
            entity_keys: index.entity_keys.clone(),
            usersets: index.usersets.clone(),
            userset_keys: index.userset_keys.clone(),
            ..TupleIndex::default()
        };
        let mut builder = Self {
            index,
            direct_edges,
            wildcard_edges,
            child_edges,
            type_relations,
            full: false,
        };
        builder.ensure_shards();
        builder
    }

    /// Adds one tuple; duplicates are counted once.
    pub fn add(&mut self, tuple: &TupleText<'_>) {
        if self.try_add(tuple).is_none() {
            self.full = true;
        }
    }

    fn try_add(&mut self, tuple: &TupleText<'_>) -> Option<()> {
        let object = self.intern_entity(&tuple.object)?;
        let object_type = self.intern_type(tuple.object.entity_type)?;
        let relation = self.intern_relation(tuple.relation)?;
        self.type_relations.insert((object_type, relation));
        let userset = self.intern_userset(object, relation)?;
        match &tuple.subject {
            SubjectText::Entity(subject) => {
                let subject = self.intern_entity(subject)?;
                self.direct_edges.push((userset, subject));
            }
            SubjectText::Wildcard { entity_type } => {
                let subject_type = self.intern_type(entity_type)?;
                self.wildcard_edges.push((userset, subject_type));
            }
            SubjectText::Userset {
                object: subject_object,
                relation: subject_relation,
            } => {
                let subject_object = self.intern_entity(subject_object)?;
                let subject_relation = self.intern_relation(subject_relation)?;
                let child = self.intern_userset(subject_object, subject_relation)?;
                self.child_edges.push((userset, child));
            }
        }
        Some(())
    }

    /// Sorts and deduplicates the edges and returns the frozen index.
    pub fn finish(self) -> Result<TupleIndex, IndexFull> {
        let Self {
            mut index,
            mut direct_edges,
            mut wildcard_edges,
            mut child_edges,
            type_relations,
            full,
        } = self;
        let too_many = |n: usize| u32::try_from(n).is_err();
        if full
            || too_many(direct_edges.len())
            || too_many(wildcard_edges.len())
            || too_many(child_edges.len())
        {
            return Err(IndexFull);
        }
        // Sorting a million edges is a measurable part of a load: rayon spreads it over the
        // cores (the order is the same as `sort_unstable`'s: keys are unique after dedup).
        direct_edges.par_sort_unstable();
        direct_edges.dedup();
        wildcard_edges.par_sort_unstable();
        wildcard_edges.dedup();
        child_edges.par_sort_unstable();
        child_edges.dedup();
        index.tuple_count = direct_edges.len() + wildcard_edges.len() + child_edges.len();

        let userset_count = index.userset_keys.len();
        index.offsets = Vec::with_capacity(userset_count + 1);
        index.direct = direct_edges.iter().map(|&(_, e)| e).collect();
        index.wildcards = wildcard_edges.iter().map(|&(_, t)| t).collect();
        index.children = child_edges.iter().map(|&(_, c)| c).collect();
        let (mut d, mut w, mut c) = (0usize, 0usize, 0usize);
        for u in 0..userset_count {
            index.offsets.push(EdgeOffsets {
                direct: to_u32(d),
                wildcards: to_u32(w),
                children: to_u32(c),
            });
            // INVARIANT: every userset id was numbered by `from_len` when interned.
            let userset = UsersetId(to_u32(u));
            d += direct_edges[d..].partition_point(|&(x, _)| x == userset);
            w += wildcard_edges[w..].partition_point(|&(x, _)| x == userset);
            c += child_edges[c..].partition_point(|&(x, _)| x == userset);
        }
        index.offsets.push(EdgeOffsets {
            direct: to_u32(d),
            wildcards: to_u32(w),
            children: to_u32(c),
        });

        index.direct_subjects = vec![0; index.entity_count.div_ceil(64)];
        for &(_, entity) in &direct_edges {
            let i = entity.index();
            if let Some(word) = index.direct_subjects.get_mut(i / 64) {
                *word |= 1 << (i % 64);
            }
        }
        index.wildcard_types = vec![false; index.type_names.len()];
        for &(_, entity_type) in &wildcard_edges {
            if let Some(flag) = index.wildcard_types.get_mut(entity_type.index()) {
                *flag = true;
            }
        }

        index.relations_by_type = vec![Vec::new(); index.type_names.len()];
        for (entity_type, relation) in type_relations {
            if let Some(list) = index.relations_by_type.get_mut(entity_type.index()) {
                list.push(relation);
            }
        }
        for list in &mut index.relations_by_type {
            list.sort_unstable();
        }
        Ok(index)
    }

    fn intern_type(&mut self, name: &str) -> Option<TypeId> {
        if let Some(&id) = self.index.type_ids.get(name) {
            return Some(id);
        }
        let id = TypeId::from_len(self.index.type_names.len())?;
        self.index.type_names.push(name.into());
        self.index.type_ids.insert(name.into(), id);
        for shard in &mut self.index.entities {
            shard.push(FxHashMap::default());
        }
        Some(id)
    }

    /// Gives the tables their shards when they have none (an index from
    /// `TupleIndex::default()`).
    fn ensure_shards(&mut self) {
        if self.index.entities.len() != SHARDS {
            self.index.entities.resize_with(SHARDS, || {
                vec![FxHashMap::default(); self.index.type_names.len()]
            });
        }
        if self.index.usersets.len() != SHARDS {
            self.index.usersets.resize_with(SHARDS, FxHashMap::default);
        }
    }

    fn intern_relation(&mut self, name: &str) -> Option<RelationId> {
        if let Some(&id) = self.index.relation_ids.get(name) {
            return Some(id);
        }
        let id = RelationId::from_len(self.index.relation_names.len())?;
        self.index.relation_names.push(name.into());
        self.index.relation_ids.insert(name.into(), id);
        Some(id)
    }

    fn intern_entity(&mut self, uid: &EntityUidText<'_>) -> Option<EntityIdx> {
        let entity_type = self.intern_type(uid.entity_type)?;
        let ids = self
            .index
            .entities
            .get_mut(entity_shard(&uid.id))?
            .get_mut(entity_type.index())?;
        if let Some(&id) = ids.get(uid.id.as_ref()) {
            return Some(id);
        }
        let next = EntityIdx::from_len(self.index.entity_count)?;
        let id: Arc<str> = uid.id.as_ref().into();
        ids.insert(Arc::clone(&id), next);
        self.index.entity_keys.push((entity_type, id));
        self.index.entity_count += 1;
        Some(next)
    }

    fn intern_userset(&mut self, object: EntityIdx, relation: RelationId) -> Option<UsersetId> {
        let usersets = self.index.usersets.get_mut(userset_shard(object))?;
        if let Some(&id) = usersets.get(&(object, relation)) {
            return Some(id);
        }
        let next = UsersetId::from_len(self.index.userset_keys.len())?;
        usersets.insert((object, relation), next);
        self.index.userset_keys.push((object, relation));
        Some(next)
    }
}

impl TupleIndexBuilder {
    /// Adds several runs of tuples, in order, using every core: the index is the one that
    /// adding each tuple in turn with [`TupleIndexBuilder::add`] builds, ids included.
    ///
    /// Each run is first interned on its own, in parallel, with run-local numbers (types and
    /// relations, a handful, are interned first, in order). Then the runs' entities, and after
    /// them their usersets (whose keys name shared entity numbers), are interned into the
    /// shared tables shard by shard in parallel (`intern_in_shards`), and each run's edges
    /// are translated to the shared numbers.
    pub fn add_runs<'a, R>(&mut self, runs: &[R])
    where
        R: AsRef<[TupleText<'a>]> + Sync,
    {
        if self.try_add_runs(runs).is_none() {
            self.full = true;
        }
    }

    fn try_add_runs<'r, 'a: 'r, R>(&mut self, runs: &'r [R]) -> Option<()>
    where
        R: AsRef<[TupleText<'a>]> + Sync,
    {
        if self.full {
            return None;
        }
        let names: Vec<_> = runs
            .par_iter()
            .map(|run| names_in_order(run.as_ref()))
            .collect();
        for (types, relations) in &names {
            for name in types {
                self.intern_type(name)?;
            }
            for name in relations {
                self.intern_relation(name)?;
            }
        }
        let (type_ids, relation_ids) = (&self.index.type_ids, &self.index.relation_ids);
        let locals: Vec<LocalRun<'r>> = runs
            .par_iter()
            .map(|run| LocalRun::new(run.as_ref(), type_ids, relation_ids))
            .collect::<Option<_>>()?;

        let entity_runs: Vec<Run<'_, (TypeId, &str)>> = locals
            .iter()
            .map(|run| (run.entities.as_slice(), run.entities_by_shard.as_slice()))
            .collect();
        let (entities, new_entities) = intern_in_shards(
            &mut self.index.entities,
            &entity_runs,
            self.index.entity_count,
        )?;
        self.index.entity_count += new_entities.len();
        self.index.entity_keys.extend(new_entities);

        let entity = |numbers: &[u32], local: u32| {
            EntityIdx(numbers.get(local as usize).copied().unwrap_or(u32::MAX))
        };
        type UsersetQueries = (Vec<(EntityIdx, RelationId)>, Vec<Vec<u32>>);
        let userset_queries: Vec<UsersetQueries> = locals
            .par_iter()
            .zip(&entities)
            .map(|(run, numbers)| {
                let mut by_shard = vec![Vec::new(); SHARDS];
                let queries = (run.usersets.iter().enumerate())
                    .map(|(local, &(object, relation))| {
                        let object = entity(numbers, object);
                        if let Some(list) = by_shard.get_mut(userset_shard(object)) {
                            list.push(to_u32(local));
                        }
                        (object, relation)
                    })
                    .collect();
                (queries, by_shard)
            })
            .collect();
        let userset_runs: Vec<Run<'_, (EntityIdx, RelationId)>> = userset_queries
            .iter()
            .map(|(queries, by_shard)| (queries.as_slice(), by_shard.as_slice()))
            .collect();
        let (usersets, new_usersets) = intern_in_shards(
            &mut self.index.usersets,
            &userset_runs,
            self.index.userset_keys.len(),
        )?;
        self.index.userset_keys.extend(new_usersets);

        let userset = |numbers: &[u32], local: u32| {
            UsersetId(numbers.get(local as usize).copied().unwrap_or(u32::MAX))
        };
        type Edges = (
            Vec<(UsersetId, EntityIdx)>,
            Vec<(UsersetId, TypeId)>,
            Vec<(UsersetId, UsersetId)>,
        );
        let edges: Vec<Edges> = (locals.par_iter().zip(&entities).zip(&usersets))
            .map(|((run, entities), usersets)| {
                let direct = (run.direct.iter())
                    .map(|&(u, e)| (userset(usersets, u), entity(entities, e)))
                    .collect();
                let wildcards = (run.wildcards.iter())
                    .map(|&(u, t)| (userset(usersets, u), t))
                    .collect();
                let children = (run.children.iter())
                    .map(|&(u, c)| (userset(usersets, u), userset(usersets, c)))
                    .collect();
                (direct, wildcards, children)
            })
            .collect();
        for (direct, wildcards, children) in edges {
            self.direct_edges.extend(direct);
            self.wildcard_edges.extend(wildcards);
            self.child_edges.extend(children);
        }
        for run in locals {
            self.type_relations.extend(run.type_relations);
        }
        Some(())
    }
}

/// Shards of the entity and userset tables. A fixed number, not the number of threads, so
/// that the index is the same on any machine; enough to keep every core busy with some to
/// spare for an uneven split.
pub(crate) const SHARDS: usize = 16;

/// Returns the shard of an entity id (the same for every type; the shard holds one table per
/// type). The bits taken are neither those a table picks its bucket with nor its tag bits, so
/// a shard's table still spreads its keys.
fn entity_shard(id: &str) -> usize {
    let mut hasher = FxHasher::default();
    id.hash(&mut hasher);
    (hasher.finish() >> 40) as usize % SHARDS
}

/// Returns the shard of a userset: that of its object's number.
fn userset_shard(object: EntityIdx) -> usize {
    object.index() % SHARDS
}

/// One run of tuples interned on its own, with run-local numbers, before its entities and
/// usersets are interned into the shared, sharded tables.
struct LocalRun<'t> {
    /// Each local entity: its type and id, in first-seen order.
    entities: Vec<(TypeId, &'t str)>,
    /// Local entity numbers by shard, ascending (so first-seen order within each shard).
    entities_by_shard: Vec<Vec<u32>>,
    /// Each local userset: its local object and relation, in first-seen order.
    usersets: Vec<(u32, RelationId)>,
    direct: Vec<(u32, u32)>,
    wildcards: Vec<(u32, TypeId)>,
    children: Vec<(u32, u32)>,
    type_relations: FxHashSet<(TypeId, RelationId)>,
}

impl<'t> LocalRun<'t> {
    /// Interns `tuples` in the order `TupleIndexBuilder::try_add` does, with the builder's
    /// type and relation tables (every name already interned); `None` if a name is missing.
    fn new(
        tuples: &'t [TupleText<'_>],
        type_ids: &FxHashMap<Box<str>, TypeId>,
        relation_ids: &FxHashMap<Box<str>, RelationId>,
    ) -> Option<Self> {
        let mut run = LocalRun {
            entities: Vec::with_capacity(tuples.len()),
            entities_by_shard: vec![Vec::new(); SHARDS],
            usersets: Vec::with_capacity(tuples.len()),
            direct: Vec::new(),
            wildcards: Vec::new(),
            children: Vec::new(),
            type_relations: FxHashSet::default(),
        };
        let mut entity_numbers: FxHashMap<(TypeId, &'t str), u32> = FxHashMap::default();
        let mut userset_numbers: FxHashMap<(u32, RelationId), u32> = FxHashMap::default();
        let mut entity = |run: &mut LocalRun<'t>, uid: &'t EntityUidText<'_>| {
            let entity_type = *type_ids.get(uid.entity_type)?;
            let id: &'t str = &uid.id;
            let next = to_u32(run.entities.len());
            let number = *entity_numbers.entry((entity_type, id)).or_insert(next);
            if number == next {
                run.entities.push((entity_type, id));
                run.entities_by_shard
                    .get_mut(entity_shard(id))?
                    .push(number);
            }
            Some(number)
        };
        let mut userset = |run: &mut LocalRun<'t>, object: u32, relation: RelationId| {
            let next = to_u32(run.usersets.len());
            let number = *userset_numbers.entry((object, relation)).or_insert(next);
            if number == next {
                run.usersets.push((object, relation));
            }
            number
        };
        for tuple in tuples {
            let object = entity(&mut run, &tuple.object)?;
            let object_type = *type_ids.get(tuple.object.entity_type)?;
            let relation = *relation_ids.get(tuple.relation)?;
            run.type_relations.insert((object_type, relation));
            let set = userset(&mut run, object, relation);
            match &tuple.subject {
                SubjectText::Entity(subject) => {
                    let subject = entity(&mut run, subject)?;
                    run.direct.push((set, subject));
                }
                SubjectText::Wildcard { entity_type } => {
                    run.wildcards.push((set, *type_ids.get(*entity_type)?));
                }
                SubjectText::Userset {
                    object: subject_object,
                    relation: subject_relation,
                } => {
                    let subject_object = entity(&mut run, subject_object)?;
                    let subject_relation = *relation_ids.get(*subject_relation)?;
                    let child = userset(&mut run, subject_object, subject_relation);
                    run.children.push((set, child));
                }
            }
        }
        Some(run)
    }
}

/// The entity and relation names of `tuples`, each list in first-seen order.
fn names_in_order<'t>(tuples: &'t [TupleText<'_>]) -> (Vec<&'t str>, Vec<&'t str>) {
    let (mut types, mut relations) = (Vec::new(), Vec::new());
    let (mut seen_types, mut seen_relations) = (FxHashSet::default(), FxHashSet::default());
    let see = |name: &'t str, seen: &mut FxHashSet<&'t str>, list: &mut Vec<&'t str>| {
        if seen.insert(name) {
            list.push(name);
        }
    };
    for tuple in tuples {
        see(tuple.object.entity_type, &mut seen_types, &mut types);
        see(tuple.relation, &mut seen_relations, &mut relations);
        match &tuple.subject {
            SubjectText::Entity(uid) => see(uid.entity_type, &mut seen_types, &mut types),
            SubjectText::Wildcard { entity_type } => {
                see(entity_type, &mut seen_types, &mut types);
            }
            SubjectText::Userset { object, relation } => {
                see(object.entity_type, &mut seen_types, &mut types);
                see(relation, &mut seen_relations, &mut relations);
            }
        }
    }
    (types, relations)
}

/// One shard's interning table, as `intern_in_shards` uses it, looked up by `Q`.
trait ShardTable<Q>: Send {
    /// What the index keeps for each numbered item (`entity_keys`, `userset_keys`).
    type Key: Clone + Send + Sync;
    /// Returns the number stored for `query`.
    fn find(&self, query: &Q) -> Option<u32>;
    /// Stores `value` for `query`, which is absent, and returns its key.
    fn insert(&mut self, query: &Q, value: u32) -> Self::Key;
    /// Replaces the value stored for `key`.
    fn settle(&mut self, key: &Self::Key, value: u32);
}

/// One shard's entity tables: one per type.
impl ShardTable<(TypeId, &str)> for Vec<FxHashMap<Arc<str>, EntityIdx>> {
    type Key = (TypeId, Arc<str>);

    fn find(&self, &(entity_type, id): &(TypeId, &str)) -> Option<u32> {
        Some(self.get(entity_type.index())?.get(id)?.0)
    }

    fn insert(&mut self, &(entity_type, id): &(TypeId, &str), value: u32) -> Self::Key {
        let id: Arc<str> = Arc::from(id);
        if let Some(table) = self.get_mut(entity_type.index()) {
            table.insert(Arc::clone(&id), EntityIdx(value));
        }
        (entity_type, id)
    }

    fn settle(&mut self, (entity_type, id): &Self::Key, value: u32) {
        if let Some(stored) = self
            .get_mut(entity_type.index())
            .and_then(|table| table.get_mut(&**id))
        {
            *stored = EntityIdx(value);
        }
    }
}

/// One shard's userset table.
impl ShardTable<(EntityIdx, RelationId)> for FxHashMap<(EntityIdx, RelationId), UsersetId> {
    type Key = (EntityIdx, RelationId);

    fn find(&self, query: &(EntityIdx, RelationId)) -> Option<u32> {
        Some(self.get(query)?.0)
    }

    fn insert(&mut self, query: &(EntityIdx, RelationId), value: u32) -> Self::Key {
        std::collections::HashMap::insert(self, *query, UsersetId(value));
        *query
    }

    fn settle(&mut self, key: &Self::Key, value: u32) {
        if let Some(stored) = self.get_mut(key) {
            *stored = UsersetId(value);
        }
    }
}

/// What a shard found for one run-local item.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// Numbered before these runs.
    Old(u32),
    /// New, and this is its first occurrence: the shard's `k`-th new item.
    First(u32),
    /// New, first seen earlier in these runs: the shard's `k`-th new item.
    Again(u32),
}

/// One run's items for `intern_in_shards`: its queries by local number, and its local
/// numbers by shard.
type Run<'q, Q> = (&'q [Q], &'q [Vec<u32>]);

/// What `intern_in_shards` returns: each run's shared numbers by local number, and the keys
/// of the new items in number order.
type Interned<K> = (Vec<Vec<u32>>, Vec<K>);

/// Interns the run-local items of several runs into sharded tables, one shard per task, and
/// numbers the new ones from `first` in the order of their first occurrence (runs in order,
/// each run's items in its own first-seen order): the numbers a sequential load gives.
///
/// `runs[r]` is the run's items as queries, by local number, and its local numbers by shard,
/// ascending. Returns each run's shared numbers by local number, and the keys of the new items
/// in number order; `None` when the numbers would not fit in a `u32`.
///
/// How: each shard looks up its items run by run; an item it does not have is inserted with a
/// provisional value (`first` + its rank among the shard's new items), so a later occurrence in
/// any run finds the same provisional value. A sequential pass over the runs' items then
/// numbers the first occurrences in order (no hashing, one step per item), and each shard
/// replaces its provisional values by those numbers.
fn intern_in_shards<Q, T>(
    tables: &mut [T],
    runs: &[Run<'_, Q>],
    first: usize,
) -> Option<Interned<T::Key>>
where
    Q: Sync,
    T: ShardTable<Q>,
{
    // Per shard: the new items' (run, local number, key), and what it found per run (in the
    // order of the run's list for that shard).
    type ShardFinds<K> = (Vec<(usize, u32, K)>, Vec<Vec<Found>>);
    let per_shard: Vec<Option<ShardFinds<T::Key>>> = tables
        .par_iter_mut()
        .enumerate()
        .map(|(shard, table)| {
            let mut new_items = Vec::new();
            let mut finds = Vec::with_capacity(runs.len());
            for (run, &(queries, by_shard)) in runs.iter().enumerate() {
                let locals = by_shard.get(shard).map_or(&[][..], Vec::as_slice);
                let mut found = Vec::with_capacity(locals.len());
                for &local in locals {
                    let query = queries.get(local as usize)?;
                    found.push(match table.find(query) {
                        Some(value) if (value as usize) < first => Found::Old(value),
                        Some(value) => Found::Again(value - to_u32(first)),
                        None => {
                            let k = new_items.len();
                            // The provisional value must fit too (and then so does the number).
                            let value = u32::try_from(first + k).ok().filter(|&v| v < u32::MAX)?;
                            new_items.push((run, local, table.insert(query, value)));
                            Found::First(to_u32(k))
                        }
                    });
                }
                finds.push(found);
            }
            Some((new_items, finds))
        })
        .collect();
    let per_shard: Vec<ShardFinds<T::Key>> = per_shard.into_iter().collect::<Option<_>>()?;

    // Each run's finds by local number, with the shard that found them.
    let by_local: Vec<Vec<(usize, Found)>> = runs
        .par_iter()
        .enumerate()
        .map(|(run, &(queries, by_shard))| {
            let mut by_local = vec![(0, Found::Old(0)); queries.len()];
            for (shard, locals) in by_shard.iter().enumerate() {
                let finds = per_shard
                    .get(shard)
                    .and_then(|(_, finds)| finds.get(run))
                    .map_or(&[][..], Vec::as_slice);
                for (&local, &found) in locals.iter().zip(finds) {
                    if let Some(slot) = by_local.get_mut(local as usize) {
                        *slot = (shard, found);
                    }
                }
            }
            by_local
        })
        .collect();

    // Number the first occurrences in order.
    let mut numbers: Vec<Vec<u32>> = per_shard
        .iter()
        .map(|(new_items, _)| vec![0; new_items.len()])
        .collect();
    let mut new_keys = Vec::with_capacity(numbers.iter().map(Vec::len).sum());
    for finds in &by_local {
        for &(shard, found) in finds {
            if let Found::First(k) = found {
                let number = to_u32(first + new_keys.len());
                let (slot, key) = numbers
                    .get_mut(shard)
                    .and_then(|n| n.get_mut(k as usize))
                    .zip(
                        per_shard
                            .get(shard)
                            .and_then(|(items, _)| items.get(k as usize)),
                    )?;
                *slot = number;
                new_keys.push(key.2.clone());
            }
        }
    }

    // Settle the provisional values, and translate every run.
    tables
        .par_iter_mut()
        .zip(&per_shard)
        .zip(&numbers)
        .for_each(|((table, (new_items, _)), numbers)| {
            for ((_, _, key), &number) in new_items.iter().zip(numbers) {
                table.settle(key, number);
            }
        });
    let shared: Vec<Vec<u32>> = by_local
        .into_par_iter()
        .map(|finds| {
            finds
                .into_iter()
                .map(|(shard, found)| match found {
                    Found::Old(number) => number,
                    Found::First(k) | Found::Again(k) => numbers
                        .get(shard)
                        .and_then(|n| n.get(k as usize))
                        .copied()
                        .unwrap_or(u32::MAX),
                })
                .collect()
        })
        .collect();
    Some((shared, new_keys))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relations::parse_tuple_line;

    fn build(lines: &[&str]) -> TupleIndex {
        let mut builder = TupleIndexBuilder::new();
        for line in lines {
            builder.add(&parse_tuple_line(line).unwrap().unwrap());
        }
        builder.finish().unwrap()
    }

    #[test]
    fn duplicates_count_once_and_edges_land_in_their_userset() {
        let index = build(&[
            r##"Doc::"a"#viewer@User::"u1""##,
            r##"Doc::"a"#viewer@User::"u1""##,
            r##"Doc::"a"#viewer@User::*"##,
            r##"Doc::"a"#viewer@Team::"t"#member"##,
            r##"Team::"t"#member@User::"u2""##,
            r##"Doc::"b"#owner@User::"u2""##,
        ]);
        assert_eq!(index.tuple_count(), 5);
        let doc = index.type_id("Doc").unwrap();
        let user = index.type_id("User").unwrap();
        let viewer = index.relation_id("viewer").unwrap();
        let a = index.entity(doc, "a").unwrap();
        let u1 = index.entity(user, "u1").unwrap();
        let edges = index.edges(index.userset(a, viewer).unwrap());
        assert_eq!(edges.direct, &[u1]);
        assert_eq!(edges.wildcards, &[user]);
        assert_eq!(edges.children.len(), 1);
        let mut names: Vec<_> = index
            .relations_of_type(doc)
            .iter()
            .map(|&r| index.relation_name(r))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["owner", "viewer"]);
        assert!(index.relations_of_type(user).is_empty());
        // A userset that only appears as a subject exists but has no edges of its own.
        let team = index.type_id("Team").unwrap();
        let t = index.entity(team, "t").unwrap();
        let member = index.relation_id("member").unwrap();
        assert_eq!(
            index.edges(index.userset(t, member).unwrap()).direct.len(),
            1
        );
    }

    #[test]
    fn a_builder_from_an_index_keeps_its_tuples_and_takes_more() {
        let lines = [
            r##"Doc::"a"#viewer@User::"u1""##,
            r##"Doc::"a"#viewer@User::*"##,
            r##"Doc::"a"#viewer@Team::"t"#member"##,
            r##"Team::"t"#member@User::"u2""##,
        ];
        let base = build(&lines);
        let mut builder = TupleIndexBuilder::from_index(&base);
        let extra = r##"Doc::"b"#owner@User::"u1""##;
        builder.add(&parse_tuple_line(extra).unwrap().unwrap());
        // A duplicate of a base tuple counts once.
        builder.add(&parse_tuple_line(lines[0]).unwrap().unwrap());
        let merged = builder.finish().unwrap();
        assert_eq!(merged.tuple_count(), 5);
        for line in lines.iter().chain([&extra]) {
            assert!(
                merged.contains(&parse_tuple_line(line).unwrap().unwrap()),
                "{line}"
            );
        }
        assert!(!base.contains(&parse_tuple_line(extra).unwrap().unwrap()));
        // Ids of the base are kept.
        assert_eq!(merged.type_id("Doc"), base.type_id("Doc"));
        assert_eq!(merged.relation_id("member"), base.relation_id("member"));
        for absent in [
            r##"Doc::"a"#viewer@User::"u2""##,
            r##"Doc::"a"#owner@User::"u1""##,
            r##"Doc::"a"#viewer@Robot::*"##,
            r##"Doc::"a"#viewer@Team::"t"#owner"##,
            r##"Nope::"a"#viewer@User::"u1""##,
        ] {
            assert!(
                !merged.contains(&parse_tuple_line(absent).unwrap().unwrap()),
                "{absent}"
            );
        }
    }

    /// Asserts that two indexes are the same, interned numbers included.
    fn assert_same(a: &TupleIndex, b: &TupleIndex) {
        assert_eq!(a.type_names, b.type_names);
        assert_eq!(a.type_ids, b.type_ids);
        assert_eq!(a.relation_names, b.relation_names);
        assert_eq!(a.relation_ids, b.relation_ids);
        assert_eq!(a.entities, b.entities);
        assert_eq!(a.entity_count, b.entity_count);
        assert_eq!(a.entity_keys, b.entity_keys);
        assert_eq!(a.usersets, b.usersets);
        assert_eq!(a.userset_keys, b.userset_keys);
        assert_eq!(a.offsets, b.offsets);
        assert_eq!(a.direct, b.direct);
        assert_eq!(a.wildcards, b.wildcards);
        assert_eq!(a.children, b.children);
        assert_eq!(a.relations_by_type, b.relations_by_type);
        assert_eq!(a.direct_subjects, b.direct_subjects);
        assert_eq!(a.wildcard_types, b.wildcard_types);
        assert_eq!(a.tuple_count, b.tuple_count);
    }

    /// Seeded tuple lines: direct, wildcard and userset subjects, repeats near and far, types
    /// and relations that first appear late, and escaped ids (parsed into owned strings).
    fn varied_lines(count: usize) -> Vec<String> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut below = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        (0..count)
            .map(|i| {
                let types = if i < count / 2 { 2 } else { 4 };
                let object_type = ["Doc", "Team", "Folder", "Ns::Repo"][below(types) as usize];
                let relation = ["viewer", "member", "owner", "parent"][below(types) as usize];
                let object = below(50);
                match below(10) {
                    0 => format!("{object_type}::\"o{object}\"#{relation}@User::*"),
                    1..=3 => format!(
                        "{object_type}::\"o{object}\"#{relation}@Team::\"t{}\"#member",
                        below(30)
                    ),
                    4 => format!(
                        "{object_type}::\"o\\\"{object}\"#{relation}@User::\"u{}\"",
                        below(80)
                    ),
                    _ => format!(
                        "{object_type}::\"o{object}\"#{relation}@User::\"u{}\"",
                        below(80)
                    ),
                }
            })
            .collect()
    }

    #[test]
    fn runs_added_in_parallel_number_everything_as_one_at_a_time() {
        let lines = varied_lines(3_000);
        let tuples: Vec<TupleText<'_>> = lines
            .iter()
            .map(|line| parse_tuple_line(line).unwrap().unwrap())
            .collect();
        assert!(
            tuples
                .iter()
                .any(|t| matches!(t.object.id, std::borrow::Cow::Owned(_)))
        );
        let mut one_at_a_time = TupleIndexBuilder::new();
        for tuple in &tuples {
            one_at_a_time.add(tuple);
        }
        let expected = one_at_a_time.finish().unwrap();

        // Uneven runs, an empty one among them, in two calls (the second sees the first's
        // entities), after a few tuples added one at a time.
        let (head, rest) = tuples.split_at(7);
        let mut runs: Vec<Vec<TupleText<'_>>> = Vec::new();
        let mut rest = rest;
        for size in [1, 0, 300, 45, 1_000, 2, 500].into_iter().cycle() {
            let (run, tail) = rest.split_at(size.min(rest.len()));
            runs.push(run.to_vec());
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        let (first_call, second_call) = runs.split_at(runs.len() / 2);
        let mut parallel = TupleIndexBuilder::new();
        for tuple in head {
            parallel.add(tuple);
        }
        parallel.add_runs(first_call);
        parallel.add_runs(second_call);
        let built = parallel.finish().unwrap();
        assert_same(&built, &expected);
        for tuple in &tuples {
            assert!(built.contains(tuple), "{tuple}");
        }

        // A builder continued from the index (as the store's tuples are added) takes runs too.
        let mut continued = TupleIndexBuilder::from_index(&built);
        let more = varied_lines(3_200);
        let more: Vec<TupleText<'_>> = more[3_000..]
            .iter()
            .map(|line| parse_tuple_line(line).unwrap().unwrap())
            .collect();
        continued.add_runs(std::slice::from_ref(&more));
        let mut reference = TupleIndexBuilder::from_index(&expected);
        for tuple in &more {
            reference.add(tuple);
        }
        assert_same(&continued.finish().unwrap(), &reference.finish().unwrap());
    }

    #[test]
    fn runs_added_to_a_builder_from_an_empty_index_are_indexed() {
        let lines = varied_lines(100);
        let tuples: Vec<TupleText<'_>> = lines
            .iter()
            .map(|line| parse_tuple_line(line).unwrap().unwrap())
            .collect();
        let mut builder = TupleIndexBuilder::from_index(&TupleIndex::default());
        builder.add_runs(&[&tuples[..40], &tuples[40..]]);
        let index = builder.finish().unwrap();
        for tuple in &tuples {
            assert!(index.contains(tuple), "{tuple}");
        }
    }

    #[test]
    fn empty_index_answers_nothing() {
        let index = TupleIndexBuilder::new().finish().unwrap();
        assert_eq!(index.tuple_count(), 0);
        assert_eq!(index.type_id("User"), None);
        assert_eq!(index.userset_count(), 0);
    }
}
