//! The relation graph one snapshot answers from: a frozen, shared [`TupleIndex`] (the base)
//! and a small overlay of the tuples added and removed since the base was built.
//!
//! Why: a relationship store changes the graph a few tuples at a time, and a request's
//! contextual tuples add a few more for that request only. Re-indexing every tuple for each
//! such change costs time in proportion to the whole graph; an overlay costs time in proportion
//! to the change. [`TupleGraph::edit`] starts from a graph's overlay (a clone that shares the
//! overlay's nodes, O(1); each change then copies O(log n) of them), and [`GraphEdit::finish`]
//! returns a new graph sharing the same base: the old graph keeps answering, untouched, for
//! whoever holds it.
//!
//! ```text
//!             base (Arc<TupleIndex>, shared)          overlay (per graph, small)
//!   ids       0 .. base counts                        base counts .. (new types, relations,
//!                                                     entities, usersets, numbered on)
//!   edges     CSR rows, sorted                        per touched userset: added (sorted, never
//!                                                     in the base) and removed (sorted, always
//!                                                     in the base)
//!   counts    a tuple names every base entity/type    per touched entity/type: +/- tuples
//! ```
//!
//! The searches (`search.rs`, `check.rs`, `lookup.rs`) ask the graph, never the base, so an
//! answer with an overlay is the answer a full rebuild of the same tuples gives
//! (`core/tests/graph_overlay_differential.rs` compares the two after random changes):
//!
//! - a userset's edges are the base row minus the removed plus the added, in id order;
//! - an entity or a type exists only while some tuple names it (a full rebuild interns nothing
//!   else). The base alone guarantees it for every base id; once an overlay removes a base
//!   tuple, the base's per-entity and per-type tuple counts ([`BaseCounts`], computed once per
//!   base, O(base), off the request path) plus the overlay's deltas decide it;
//! - "is a direct subject somewhere" and "has a wildcard somewhere" (the search's shortcut) and
//!   the relations a type has are counted the same way.
//!
//! Ids of an entity or userset that no tuple names any more stay interned in the overlay (so
//! the edges that name them stay valid) but are never reported: lookups skip them.

use std::borrow::Cow;
use std::ops::Bound;
use std::sync::Arc;

use imbl::{OrdMap, Vector};
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::index::{EntityIdx, IndexFull, RelationId, TupleIndex, TypeId, UsersetEdges, UsersetId};
use super::tuple::{EntityUidText, SubjectText, TupleText};

/// The relation graph a snapshot answers from: a shared base index and an optional overlay.
/// Cheap to clone (two `Arc`s).
#[derive(Debug, Clone, Default)]
pub struct TupleGraph {
    base: Arc<TupleIndex>,
    overlay: Option<Arc<Overlay>>,
}

/// A hash map whose clone shares its nodes (a hash array mapped trie): an edit copies an
/// overlay in O(1) and pays O(log n) per change, so a revision or a request's contextual
/// tuples cost in proportion to themselves, not to the overlay they are added to.
type SharedMap<K, V> =
    imbl::GenericHashMap<K, V, FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// Tuples added to and removed from a base, with the ids they needed. Cloned by every edit:
/// what grows with the overlay is in structures that share their nodes when cloned; the
/// type and relation names (a handful, bounded by the model or schema's names) are plain.
#[derive(Debug, Clone, Default)]
struct Overlay {
    type_names: Vec<Box<str>>,
    type_ids: FxHashMap<Box<str>, TypeId>,
    relation_names: Vec<Box<str>>,
    relation_ids: FxHashMap<Box<str>, RelationId>,
    /// Entities the base does not know, per type, sorted by id (lookups page through them).
    entities: SharedMap<TypeId, OrdMap<Arc<str>, EntityIdx>>,
    entity_keys: Vector<(TypeId, Arc<str>)>,
    usersets: SharedMap<(EntityIdx, RelationId), UsersetId>,
    userset_keys: Vector<(EntityIdx, RelationId)>,
    edges: SharedMap<UsersetId, EdgeDelta>,
    /// How many more (or fewer) tuples than in the base name each entity, type, ...
    deltas: CountDeltas,
    tuple_delta: i64,
    /// Tuple changes applied since the base (undone ones included): what compaction is
    /// bounded by.
    changed: usize,
    /// The base's counts, once some base tuple was removed.
    base_counts: Option<Arc<BaseCounts>>,
}

#[derive(Debug, Clone, Default)]
struct CountDeltas {
    /// Tuples naming each entity (as object, direct subject, or a userset subject's object).
    named: SharedMap<EntityIdx, i64>,
    /// Tuples naming each type (any of the above, or a wildcard).
    types: SharedMap<TypeId, i64>,
    /// Tuples with each entity as their direct subject.
    direct: SharedMap<EntityIdx, i64>,
    /// Tuples with the wildcard of each type as their subject.
    wildcards: SharedMap<TypeId, i64>,
    /// Tuples with an object of each type and each relation.
    pairs: SharedMap<(TypeId, RelationId), i64>,
}

/// The same counts over a whole base: O(base) to compute, once per base, only when an
/// overlay removes one of its tuples.
#[derive(Debug, Default)]
pub(crate) struct BaseCounts {
    named: Vec<u32>,
    types: Vec<u64>,
    direct: Vec<u32>,
    wildcards: Vec<u64>,
    pairs: FxHashMap<(TypeId, RelationId), u64>,
}

impl BaseCounts {
    fn of(base: &TupleIndex) -> Self {
        let mut counts = Self {
            named: vec![0; base.entity_count()],
            types: vec![0; base.type_count()],
            direct: vec![0; base.entity_count()],
            wildcards: vec![0; base.type_count()],
            pairs: FxHashMap::default(),
        };
        let bump32 = |v: &mut Vec<u32>, i: usize| {
            if let Some(c) = v.get_mut(i) {
                *c += 1;
            }
        };
        let bump64 = |v: &mut Vec<u64>, i: usize, n: u64| {
            if let Some(c) = v.get_mut(i) {
                *c += n;
            }
        };
        for u in 0..base.userset_count() {
            let Some(userset) = UsersetId::from_len(u) else {
                break;
            };
            let edges = base.edges(userset);
            let n = edges.direct.len() + edges.wildcards.len() + edges.children.len();
            if n == 0 {
                continue;
            }
            let (object, relation) = base.userset_key(userset);
            let (object_type, _) = base.entity_key(object);
            if let Some(c) = counts.named.get_mut(object.index()) {
                *c += u32::try_from(n).unwrap_or(u32::MAX);
            }
            bump64(&mut counts.types, object_type.index(), n as u64);
            *counts.pairs.entry((object_type, relation)).or_default() += n as u64;
            for &e in edges.direct {
                bump32(&mut counts.named, e.index());
                bump32(&mut counts.direct, e.index());
                bump64(&mut counts.types, base.entity_key(e).0.index(), 1);
            }
            for &t in edges.wildcards {
                bump64(&mut counts.types, t.index(), 1);
                bump64(&mut counts.wildcards, t.index(), 1);
            }
            for &child in edges.children {
                let (child_object, _) = base.userset_key(child);
                bump32(&mut counts.named, child_object.index());
                bump64(
                    &mut counts.types,
                    base.entity_key(child_object).0.index(),
                    1,
                );
            }
        }
        counts
    }
}

/// Added and removed edges of one userset.
#[derive(Debug, Clone, Default)]
struct EdgeDelta {
    direct: Delta<EntityIdx>,
    wildcards: Delta<TypeId>,
    children: Delta<UsersetId>,
}

/// Sorted added (never in the base row) and removed (always in the base row) values.
#[derive(Debug, Clone)]
struct Delta<T> {
    added: Vec<T>,
    removed: Vec<T>,
}

impl<T> Default for Delta<T> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<T: Ord + Copy> Delta<T> {
    /// Adds `value`; returns whether the graph changed.
    fn add(&mut self, value: T, in_base: bool) -> bool {
        if in_base {
            match self.removed.binary_search(&value) {
                Ok(i) => {
                    self.removed.remove(i);
                    true
                }
                Err(_) => false,
            }
        } else {
            match self.added.binary_search(&value) {
                Ok(_) => false,
                Err(i) => {
                    self.added.insert(i, value);
                    true
                }
            }
        }
    }

    /// Removes `value`; returns whether the graph changed.
    fn remove(&mut self, value: T, in_base: bool) -> bool {
        if in_base {
            match self.removed.binary_search(&value) {
                Ok(_) => false,
                Err(i) => {
                    self.removed.insert(i, value);
                    true
                }
            }
        } else {
            match self.added.binary_search(&value) {
                Ok(i) => {
                    self.added.remove(i);
                    true
                }
                Err(_) => false,
            }
        }
    }
}

fn has<T: Ord + Copy>(base: &[T], delta: Option<&Delta<T>>, value: T) -> bool {
    match delta {
        None => base.binary_search(&value).is_ok(),
        Some(delta) => {
            delta.added.binary_search(&value).is_ok()
                || (base.binary_search(&value).is_ok()
                    && delta.removed.binary_search(&value).is_err())
        }
    }
}

/// The edges of one userset as the graph has them: the base row with the overlay's changes.
pub(crate) struct Edges<'a> {
    base: UsersetEdges<'a>,
    delta: Option<&'a EdgeDelta>,
}

impl<'a> Edges<'a> {
    /// Returns whether `entity` is a direct subject.
    pub(crate) fn has_direct(&self, entity: EntityIdx) -> bool {
        has(self.base.direct, self.delta.map(|d| &d.direct), entity)
    }

    /// Returns whether the wildcard of `entity_type` is a subject.
    pub(crate) fn has_wildcard(&self, entity_type: TypeId) -> bool {
        has(
            self.base.wildcards,
            self.delta.map(|d| &d.wildcards),
            entity_type,
        )
    }

    /// Returns whether the userset `child` is a subject.
    pub(crate) fn has_child(&self, child: UsersetId) -> bool {
        has(self.base.children, self.delta.map(|d| &d.children), child)
    }

    /// Returns whether some userset is a subject.
    pub(crate) fn has_children(&self) -> bool {
        match self.delta {
            None => !self.base.children.is_empty(),
            Some(d) => {
                !d.children.added.is_empty() || self.base.children.len() > d.children.removed.len()
            }
        }
    }

    /// Returns the direct subjects, in id order.
    pub(crate) fn direct(&self) -> Merged<'a, EntityIdx> {
        Merged::new(self.base.direct, self.delta.map(|d| &d.direct))
    }

    /// Returns the userset subjects, in id order.
    pub(crate) fn children(&self) -> Merged<'a, UsersetId> {
        Merged::new(self.base.children, self.delta.map(|d| &d.children))
    }
}

/// A base row without the removed values, merged with the added ones, in order.
pub(crate) struct Merged<'a, T> {
    base: &'a [T],
    added: &'a [T],
    removed: &'a [T],
}

impl<'a, T> Merged<'a, T> {
    fn new(base: &'a [T], delta: Option<&'a Delta<T>>) -> Self {
        Self {
            base,
            added: delta.map_or(&[], |d| d.added.as_slice()),
            removed: delta.map_or(&[], |d| d.removed.as_slice()),
        }
    }
}

impl<T: Ord + Copy> Iterator for Merged<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            match (self.base.split_first(), self.added.split_first()) {
                (None, None) => return None,
                (Some((&b, _)), Some((&a, rest))) if a < b => {
                    self.added = rest;
                    return Some(a);
                }
                (Some((&b, rest)), _) => {
                    self.base = rest;
                    if !self.removed.is_empty() && self.removed.binary_search(&b).is_ok() {
                        continue;
                    }
                    return Some(b);
                }
                (None, Some((&a, rest))) => {
                    self.added = rest;
                    return Some(a);
                }
            }
        }
    }
}

impl From<TupleIndex> for TupleGraph {
    fn from(index: TupleIndex) -> Self {
        Self::new(Arc::new(index))
    }
}

impl TupleGraph {
    /// Returns the graph of `base`'s tuples, with no overlay.
    pub fn new(base: Arc<TupleIndex>) -> Self {
        Self {
            base,
            overlay: None,
        }
    }

    /// Returns the frozen base this graph shares.
    pub fn base(&self) -> &Arc<TupleIndex> {
        &self.base
    }

    /// Returns how many tuples the overlay adds or removes against the base: what a caller
    /// compacts by (0 without an overlay).
    pub fn overlay_len(&self) -> usize {
        self.overlay.as_ref().map_or(0, |o| o.changed)
    }

    /// Returns this graph with an empty overlay holding the base's counts, computed now
    /// (O(base)): a graph that later edits can remove base tuples from without computing them
    /// then. For a fresh base about to be followed, built off the request path.
    pub fn prepared_for_removals(&self) -> Self {
        let mut overlay = self.overlay.as_deref().cloned().unwrap_or_default();
        if overlay.base_counts.is_none() {
            overlay.base_counts = Some(Arc::new(BaseCounts::of(&self.base)));
        }
        Self {
            base: Arc::clone(&self.base),
            overlay: Some(Arc::new(overlay)),
        }
    }

    /// Starts a set of changes to this graph. The graph itself is not modified: the edit
    /// starts from a clone of its overlay that shares its nodes, never from a copy of its base.
    pub fn edit(&self) -> GraphEdit<'_> {
        GraphEdit {
            base: &self.base,
            overlay: self.overlay.as_deref().cloned().unwrap_or_default(),
            full: false,
        }
    }

    /// Returns the number of distinct tuples.
    pub fn tuple_count(&self) -> usize {
        let base = self.base.tuple_count();
        match &self.overlay {
            None => base,
            Some(o) => usize::try_from(base as i64 + o.tuple_delta).unwrap_or(0),
        }
    }

    /// Returns the number of interned usersets (those of tuples since removed included).
    pub fn userset_count(&self) -> usize {
        self.base.userset_count() + self.overlay.as_ref().map_or(0, |o| o.userset_keys.len())
    }

    /// Returns whether the graph holds `tuple` itself (not whether a search would find its
    /// subject through other tuples).
    pub fn contains(&self, tuple: &TupleText<'_>) -> bool {
        let Some(o) = &self.overlay else {
            return self.base.contains(tuple);
        };
        let find = || -> Option<bool> {
            let object = self.raw_entity(o, &tuple.object)?;
            let userset = self.raw_userset(o, object, self.relation_id(tuple.relation)?)?;
            let edges = self.edges(userset);
            Some(match &tuple.subject {
                SubjectText::Entity(subject) => edges.has_direct(self.raw_entity(o, subject)?),
                SubjectText::Wildcard { entity_type } => {
                    edges.has_wildcard(self.raw_type_id(o, entity_type)?)
                }
                SubjectText::Userset { object, relation } => {
                    let subject = self.raw_entity(o, object)?;
                    let child = self.raw_userset(o, subject, self.relation_id(relation)?)?;
                    edges.has_child(child)
                }
            })
        };
        find().unwrap_or(false)
    }

    /// Returns every entity type some tuple names.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        let overlay = self.overlay.as_deref();
        let count = self.base.type_count() + overlay.map_or(0, |o| o.type_names.len());
        (0..count)
            .filter_map(TypeId::from_len)
            .filter(move |&t| overlay.is_none_or(|o| self.type_live(o, t)))
            .map(|t| self.type_name(t))
    }

    /// Returns the id of an entity type, if some tuple names it.
    pub fn type_id(&self, entity_type: &str) -> Option<TypeId> {
        let Some(o) = &self.overlay else {
            return self.base.type_id(entity_type);
        };
        self.raw_type_id(o, entity_type)
            .filter(|&t| self.type_live(o, t))
    }

    /// Returns the name of an entity type id.
    pub fn type_name(&self, id: TypeId) -> &str {
        let base = self.base.type_count();
        match &self.overlay {
            Some(o) if id.index() >= base => o
                .type_names
                .get(id.index() - base)
                .map_or("", AsRef::as_ref),
            _ => self.base.type_name(id),
        }
    }

    /// Returns the id of a relation, if some tuple ever used it.
    pub fn relation_id(&self, relation: &str) -> Option<RelationId> {
        self.base.relation_id(relation).or_else(|| {
            self.overlay
                .as_ref()
                .and_then(|o| o.relation_ids.get(relation).copied())
        })
    }

    /// Returns the name of a relation id.
    pub fn relation_name(&self, id: RelationId) -> &str {
        let base = self.base.relation_count();
        match &self.overlay {
            Some(o) if id.index() >= base => o
                .relation_names
                .get(id.index() - base)
                .map_or("", AsRef::as_ref),
            _ => self.base.relation_name(id),
        }
    }

    /// Returns the relations that objects of `entity_type` have in some tuple, sorted.
    pub fn relations_of_type(&self, entity_type: TypeId) -> Cow<'_, [RelationId]> {
        let base = self.base.relations_of_type(entity_type);
        let Some(o) = &self.overlay else {
            return Cow::Borrowed(base);
        };
        let mut relations: Vec<RelationId> = base
            .iter()
            .copied()
            .filter(|&r| self.pair_live(o, entity_type, r))
            .collect();
        for (&(t, r), &delta) in &o.deltas.pairs {
            if t == entity_type && delta > 0 && !relations.contains(&r) {
                relations.push(r);
            }
        }
        relations.sort_unstable();
        Cow::Owned(relations)
    }

    /// Returns the entity, if some tuple names it.
    pub fn entity(&self, entity_type: TypeId, id: &str) -> Option<EntityIdx> {
        let Some(o) = &self.overlay else {
            return self.base.entity(entity_type, id);
        };
        self.raw_entity_of(o, entity_type, id)
            .filter(|&e| self.entity_live(o, e))
    }

    /// Returns the type and id of an entity id.
    pub fn entity_key(&self, entity: EntityIdx) -> (TypeId, &str) {
        let base = self.base.entity_count();
        match &self.overlay {
            Some(o) if entity.index() >= base => o
                .entity_keys
                .get(entity.index() - base)
                .map_or_else(|| self.base.entity_key(entity), |(t, id)| (*t, id.as_ref())),
            _ => self.base.entity_key(entity),
        }
    }

    /// Returns every entity of `entity_type` some tuple names, in no particular order.
    pub fn entities_of_type(&self, entity_type: TypeId) -> impl Iterator<Item = EntityIdx> + '_ {
        let overlay = self.overlay.as_deref();
        let base = self
            .base
            .entities_of_type(entity_type)
            .filter(move |&e| overlay.is_none_or(|o| self.entity_live(o, e)));
        let added = overlay
            .and_then(|o| o.entities.get(&entity_type))
            .into_iter()
            .flat_map(|ids| ids.values().copied())
            .filter(move |&e| overlay.is_some_and(|o| self.entity_live(o, e)));
        base.chain(added)
    }

    /// Returns the ids of the entities of `entity_type` some tuple names, sorted, from just
    /// after `after`: the base's sorted ids (sorted once per base) merged with the overlay's.
    pub fn entity_ids_sorted_after<'g>(
        &'g self,
        entity_type: TypeId,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'g str> + 'g {
        let sorted = self.base.entities_of_type_sorted(entity_type);
        let start = after.map_or(0, |a| {
            sorted.partition_point(|&e| self.base.entity_key(e).1 <= a)
        });
        let overlay = self.overlay.as_deref();
        let mut base = sorted
            .get(start..)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(move |&e| overlay.is_none_or(|o| self.entity_live(o, e)))
            .map(|e| self.base.entity_key(e).1)
            .peekable();
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        let mut added = overlay
            .and_then(|o| o.entities.get(&entity_type))
            .into_iter()
            .flat_map(move |ids| {
                ids.range::<_, str>((lower.as_ref().map(String::as_str), Bound::Unbounded))
            })
            .filter(move |(_, e)| overlay.is_some_and(|o| self.entity_live(o, **e)))
            .map(|(id, _)| id.as_ref())
            .peekable();
        std::iter::from_fn(move || match (base.peek(), added.peek()) {
            (Some(b), Some(a)) if a < b => added.next(),
            (Some(_), _) => base.next(),
            (None, _) => added.next(),
        })
    }

    /// Returns the userset of `object`'s `relation`, if some tuple ever named it.
    pub fn userset(&self, object: EntityIdx, relation: RelationId) -> Option<UsersetId> {
        match &self.overlay {
            None => self.base.userset(object, relation),
            Some(o) => self.raw_userset(o, object, relation),
        }
    }

    /// Returns the object and relation of a userset id.
    pub fn userset_key(&self, userset: UsersetId) -> (EntityIdx, RelationId) {
        let base = self.base.userset_count();
        match &self.overlay {
            Some(o) if userset.index() >= base => o
                .userset_keys
                .get(userset.index() - base)
                .copied()
                .unwrap_or_else(|| self.base.userset_key(userset)),
            _ => self.base.userset_key(userset),
        }
    }

    /// Returns the userset `entity_type::"id"#relation` by name, if some tuple ever named it.
    pub(crate) fn userset_named(
        &self,
        entity_type: &str,
        id: &str,
        relation: &str,
    ) -> Option<UsersetId> {
        let object = self.entity(self.type_id(entity_type)?, id)?;
        self.userset(object, self.relation_id(relation)?)
    }

    /// Returns whether an entity could be in any userset: it is the direct subject of some
    /// tuple, or a wildcard of its type is.
    pub(crate) fn may_be_member(&self, entity: Option<EntityIdx>, entity_type: TypeId) -> bool {
        let Some(o) = &self.overlay else {
            return self.base.may_be_member(entity, entity_type);
        };
        let direct = entity.is_some_and(|e| {
            let in_base = || self.base.is_direct_subject(e);
            match o.deltas.direct.get(&e).copied().unwrap_or(0) {
                0 => in_base(),
                d if d > 0 => true,
                d => self.base_count(o, |c| c.direct.get(e.index()).map(|&n| i64::from(n))) + d > 0,
            }
        });
        direct || {
            let in_base = || self.base.has_wildcard_of(entity_type);
            match o.deltas.wildcards.get(&entity_type).copied().unwrap_or(0) {
                0 => in_base(),
                d if d > 0 => true,
                d => {
                    self.base_count(o, |c| {
                        c.wildcards
                            .get(entity_type.index())
                            .and_then(|&n| i64::try_from(n).ok())
                    }) + d
                        > 0
                }
            }
        }
    }

    /// Returns the edges of a userset.
    pub(crate) fn edges(&self, userset: UsersetId) -> Edges<'_> {
        Edges {
            base: self.base.edges(userset),
            delta: self.overlay.as_ref().and_then(|o| o.edges.get(&userset)),
        }
    }

    fn raw_type_id(&self, o: &Overlay, entity_type: &str) -> Option<TypeId> {
        self.base
            .type_id(entity_type)
            .or_else(|| o.type_ids.get(entity_type).copied())
    }

    fn raw_entity_of(&self, o: &Overlay, entity_type: TypeId, id: &str) -> Option<EntityIdx> {
        self.base
            .entity(entity_type, id)
            .or_else(|| o.entities.get(&entity_type)?.get(id).copied())
    }

    fn raw_entity(&self, o: &Overlay, uid: &EntityUidText<'_>) -> Option<EntityIdx> {
        self.raw_entity_of(o, self.raw_type_id(o, uid.entity_type)?, &uid.id)
    }

    fn raw_userset(
        &self,
        o: &Overlay,
        object: EntityIdx,
        relation: RelationId,
    ) -> Option<UsersetId> {
        self.base
            .userset(object, relation)
            .or_else(|| o.usersets.get(&(object, relation)).copied())
    }

    fn base_count(&self, o: &Overlay, count: impl Fn(&BaseCounts) -> Option<i64>) -> i64 {
        // INVARIANT: a delta goes below zero only when a base tuple is removed, and removing
        // one computes the base's counts first.
        debug_assert!(o.base_counts.is_some());
        o.base_counts.as_deref().and_then(count).unwrap_or(0)
    }

    fn entity_live(&self, o: &Overlay, e: EntityIdx) -> bool {
        let delta = o.deltas.named.get(&e).copied().unwrap_or(0);
        if e.index() >= self.base.entity_count() {
            return delta > 0;
        }
        delta >= 0
            || self.base_count(o, |c| c.named.get(e.index()).map(|&n| i64::from(n))) + delta > 0
    }

    fn type_live(&self, o: &Overlay, t: TypeId) -> bool {
        let delta = o.deltas.types.get(&t).copied().unwrap_or(0);
        if t.index() >= self.base.type_count() {
            return delta > 0;
        }
        delta >= 0
            || self.base_count(o, |c| {
                c.types.get(t.index()).and_then(|&n| i64::try_from(n).ok())
            }) + delta
                > 0
    }

    fn pair_live(&self, o: &Overlay, t: TypeId, r: RelationId) -> bool {
        let delta = o.deltas.pairs.get(&(t, r)).copied().unwrap_or(0);
        delta >= 0
            || self.base_count(o, |c| {
                c.pairs.get(&(t, r)).and_then(|&n| i64::try_from(n).ok())
            }) + delta
                > 0
    }
}

/// Changes to a [`TupleGraph`], collected into a new overlay; [`GraphEdit::finish`] returns the
/// new graph. Costs time in proportion to the changes (times the log of the overlay's size).
pub struct GraphEdit<'g> {
    base: &'g Arc<TupleIndex>,
    overlay: Overlay,
    full: bool,
}

impl GraphEdit<'_> {
    /// Adds `tuple`; returns whether the graph changed (false when it holds it already).
    pub fn add(&mut self, tuple: &TupleText<'_>) -> bool {
        match self.try_add(tuple) {
            Some(changed) => changed,
            None => {
                self.full = true;
                false
            }
        }
    }

    /// Removes `tuple`; returns whether the graph changed (false when it does not hold it).
    pub fn remove(&mut self, tuple: &TupleText<'_>) -> bool {
        self.try_remove(tuple).unwrap_or(false)
    }

    /// Returns the graph with the changes: the same base, the new overlay.
    pub fn finish(self) -> Result<TupleGraph, IndexFull> {
        if self.full {
            return Err(IndexFull);
        }
        Ok(TupleGraph {
            base: Arc::clone(self.base),
            overlay: Some(Arc::new(self.overlay)),
        })
    }

    fn try_add(&mut self, tuple: &TupleText<'_>) -> Option<bool> {
        let object_type = self.intern_type(tuple.object.entity_type)?;
        let object = self.intern_entity(&tuple.object)?;
        let relation = self.intern_relation(tuple.relation)?;
        let userset = self.intern_userset(object, relation)?;
        let base_edges = self.base.edges(userset);
        let subject = match &tuple.subject {
            SubjectText::Entity(subject) => {
                let subject_type = self.intern_type(subject.entity_type)?;
                let subject = self.intern_entity(subject)?;
                let in_base = base_edges.direct.binary_search(&subject).is_ok();
                let delta = self.overlay.edges.entry(userset).or_default();
                if !delta.direct.add(subject, in_base) {
                    return Some(false);
                }
                Named::Entity(subject_type, subject)
            }
            SubjectText::Wildcard { entity_type } => {
                let subject_type = self.intern_type(entity_type)?;
                let in_base = base_edges.wildcards.binary_search(&subject_type).is_ok();
                let delta = self.overlay.edges.entry(userset).or_default();
                if !delta.wildcards.add(subject_type, in_base) {
                    return Some(false);
                }
                Named::Wildcard(subject_type)
            }
            SubjectText::Userset {
                object: subject_object,
                relation: subject_relation,
            } => {
                let subject_type = self.intern_type(subject_object.entity_type)?;
                let subject_object = self.intern_entity(subject_object)?;
                let subject_relation = self.intern_relation(subject_relation)?;
                let child = self.intern_userset(subject_object, subject_relation)?;
                let in_base = base_edges.children.binary_search(&child).is_ok();
                let delta = self.overlay.edges.entry(userset).or_default();
                if !delta.children.add(child, in_base) {
                    return Some(false);
                }
                Named::Userset(subject_type, subject_object, child)
            }
        };
        self.count((object_type, object, relation), subject, 1);
        Some(true)
    }

    fn try_remove(&mut self, tuple: &TupleText<'_>) -> Option<bool> {
        let object_type = self.type_id(tuple.object.entity_type)?;
        let object = self.entity(object_type, &tuple.object.id)?;
        let relation = self.relation_id(tuple.relation)?;
        let userset = self.userset(object, relation)?;
        let base_edges = self.base.edges(userset);
        let (subject, in_base) = match &tuple.subject {
            SubjectText::Entity(subject) => {
                let subject_type = self.type_id(subject.entity_type)?;
                let subject = self.entity(subject_type, &subject.id)?;
                let in_base = base_edges.direct.binary_search(&subject).is_ok();
                (Named::Entity(subject_type, subject), in_base)
            }
            SubjectText::Wildcard { entity_type } => {
                let subject_type = self.type_id(entity_type)?;
                let in_base = base_edges.wildcards.binary_search(&subject_type).is_ok();
                (Named::Wildcard(subject_type), in_base)
            }
            SubjectText::Userset {
                object: subject_object,
                relation: subject_relation,
            } => {
                let subject_type = self.type_id(subject_object.entity_type)?;
                let subject_object = self.entity(subject_type, &subject_object.id)?;
                let child = self.userset(subject_object, self.relation_id(subject_relation)?)?;
                let in_base = base_edges.children.binary_search(&child).is_ok();
                (Named::Userset(subject_type, subject_object, child), in_base)
            }
        };
        if in_base && self.overlay.base_counts.is_none() {
            self.overlay.base_counts = Some(Arc::new(BaseCounts::of(self.base)));
        }
        let delta = self.overlay.edges.entry(userset).or_default();
        let changed = match subject {
            Named::Entity(_, e) => delta.direct.remove(e, in_base),
            Named::Wildcard(t) => delta.wildcards.remove(t, in_base),
            Named::Userset(_, _, child) => delta.children.remove(child, in_base),
        };
        if changed {
            self.count((object_type, object, relation), subject, -1);
        }
        Some(changed)
    }

    /// Moves every count a tuple contributes to by `by`.
    fn count(
        &mut self,
        (object_type, object, relation): (TypeId, EntityIdx, RelationId),
        subject: Named,
        by: i64,
    ) {
        let d = &mut self.overlay.deltas;
        *d.named.entry(object).or_default() += by;
        *d.types.entry(object_type).or_default() += by;
        *d.pairs.entry((object_type, relation)).or_default() += by;
        match subject {
            Named::Entity(t, e) => {
                *d.named.entry(e).or_default() += by;
                *d.types.entry(t).or_default() += by;
                *d.direct.entry(e).or_default() += by;
            }
            Named::Wildcard(t) => {
                *d.types.entry(t).or_default() += by;
                *d.wildcards.entry(t).or_default() += by;
            }
            Named::Userset(t, e, _) => {
                *d.named.entry(e).or_default() += by;
                *d.types.entry(t).or_default() += by;
            }
        }
        self.overlay.tuple_delta += by;
        self.overlay.changed += 1;
    }

    fn type_id(&self, name: &str) -> Option<TypeId> {
        self.base
            .type_id(name)
            .or_else(|| self.overlay.type_ids.get(name).copied())
    }

    fn relation_id(&self, name: &str) -> Option<RelationId> {
        self.base
            .relation_id(name)
            .or_else(|| self.overlay.relation_ids.get(name).copied())
    }

    fn entity(&self, entity_type: TypeId, id: &str) -> Option<EntityIdx> {
        self.base
            .entity(entity_type, id)
            .or_else(|| self.overlay.entities.get(&entity_type)?.get(id).copied())
    }

    fn userset(&self, object: EntityIdx, relation: RelationId) -> Option<UsersetId> {
        self.base
            .userset(object, relation)
            .or_else(|| self.overlay.usersets.get(&(object, relation)).copied())
    }

    fn intern_type(&mut self, name: &str) -> Option<TypeId> {
        if let Some(id) = self.type_id(name) {
            return Some(id);
        }
        let id = TypeId::from_len(self.base.type_count() + self.overlay.type_names.len())?;
        self.overlay.type_names.push(name.into());
        self.overlay.type_ids.insert(name.into(), id);
        Some(id)
    }

    fn intern_relation(&mut self, name: &str) -> Option<RelationId> {
        if let Some(id) = self.relation_id(name) {
            return Some(id);
        }
        let id =
            RelationId::from_len(self.base.relation_count() + self.overlay.relation_names.len())?;
        self.overlay.relation_names.push(name.into());
        self.overlay.relation_ids.insert(name.into(), id);
        Some(id)
    }

    fn intern_entity(&mut self, uid: &EntityUidText<'_>) -> Option<EntityIdx> {
        let entity_type = self.intern_type(uid.entity_type)?;
        if let Some(id) = self.entity(entity_type, &uid.id) {
            return Some(id);
        }
        let id = EntityIdx::from_len(self.base.entity_count() + self.overlay.entity_keys.len())?;
        let key: Arc<str> = uid.id.as_ref().into();
        self.overlay
            .entities
            .entry(entity_type)
            .or_default()
            .insert(Arc::clone(&key), id);
        self.overlay.entity_keys.push_back((entity_type, key));
        Some(id)
    }

    fn intern_userset(&mut self, object: EntityIdx, relation: RelationId) -> Option<UsersetId> {
        if let Some(id) = self.userset(object, relation) {
            return Some(id);
        }
        let id = UsersetId::from_len(self.base.userset_count() + self.overlay.userset_keys.len())?;
        self.overlay.usersets.insert((object, relation), id);
        self.overlay.userset_keys.push_back((object, relation));
        Some(id)
    }
}

/// What a tuple's subject names, for the counts.
#[derive(Clone, Copy)]
enum Named {
    Entity(TypeId, EntityIdx),
    Wildcard(TypeId),
    Userset(TypeId, EntityIdx, UsersetId),
}
