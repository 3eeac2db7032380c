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

use rayon::slice::ParallelSliceMut;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

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
    /// Entity ids per type, indexed by `TypeId`.
    entities: Vec<FxHashMap<Arc<str>, EntityIdx>>,
    entity_count: usize,
    /// Each entity's type and id, indexed by `EntityIdx` (the id shared with `entities`).
    entity_keys: Vec<(TypeId, Arc<str>)>,
    usersets: FxHashMap<(EntityIdx, RelationId), UsersetId>,
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

#[derive(Debug, Clone, Copy, Default)]
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
        self.entities.get(entity_type.index())?.get(id).copied()
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
            .get(entity_type.index())
            .into_iter()
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
        self.usersets.get(&(object, relation)).copied()
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
#[derive(Debug, Default)]
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
        Self {
            index,
            direct_edges,
            wildcard_edges,
            child_edges,
            type_relations,
            full: false,
        }
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

        let userset_count = index.usersets.len();
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
        self.index.entities.push(FxHashMap::default());
        Some(id)
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
        let ids = self.index.entities.get_mut(entity_type.index())?;
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
        if let Some(&id) = self.index.usersets.get(&(object, relation)) {
            return Some(id);
        }
        let next = UsersetId::from_len(self.index.usersets.len())?;
        self.index.usersets.insert((object, relation), next);
        self.index.userset_keys.push((object, relation));
        Some(next)
    }
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

    #[test]
    fn empty_index_answers_nothing() {
        let index = TupleIndexBuilder::new().finish().unwrap();
        assert_eq!(index.tuple_count(), 0);
        assert_eq!(index.type_id("User"), None);
        assert_eq!(index.userset_count(), 0);
    }
}
