//! Relation checks under a model: "does `subject` hold `relation` on `object`?" with the
//! model's rewrites, answered by searching the tuple index for this question only.
//!
//! The search follows OpenFGA's semantics, checked against the `fga` CLI by the differential
//! test (`core/tests/openfga_differential.rs`):
//!
//! - `[…]` (direct): a tuple `object#relation@S` where `S` is the subject, the wildcard of the
//!   subject's type (or, for a wildcard subject, that same wildcard), the subject userset
//!   itself, or a userset `T::"t"#r` whose `r` the subject holds on `T::"t"` (searched
//!   recursively with `T`'s own rewrite of `r`).
//! - `editor` (computed): the same object's `editor`.
//! - `viewer from parent`: `viewer` of every object `O` with a tuple `object#parent@O`, for
//!   each such `O` whose type defines `viewer`.
//! - `or`, `and`, `but not`: union, intersection, exclusion of the operands' answers.
//! - A userset subject `T::"t"#r` holds `r` on `T::"t"` (OpenFGA's reflexive rule), wherever
//!   the search reaches that pair.
//!
//! Termination and bounds. The search is depth first over (object, relation) pairs. A pair met
//! again on the current path is a cycle: that path proves nothing, and the "no" it gives is
//! marked as resting on a cycle. As in OpenFGA (whose concurrent search returns such a "no"
//! before the tuples of the other operands are read), the mark wins over a plain "no" in `and`
//! and `but not`, and under `but not` it denies rather than allows (`define r: [User] but not
//! s`, `define s: r` and the like have no consistent answer; OpenFGA denies). Intersections
//! and exclusions therefore search all their operands unless one already rests on a cycle.
//! Each pair's answer is remembered for the rest of the question when no cycle was cut below
//! it, so a diamond is searched once; a pair of a relation that is only direct tuples, with
//! none on its object, is answered "no" at once (not remembered, not counted). Every hop (a
//! userset, a computed relation, a `from`) is one level; beyond `max_depth` levels the answer is
//! [`Membership::DepthExceeded`], and so it is after [`MAX_VISITS`] pairs: the caller reports
//! it (`relation_depth_exceeded`) and denies, never guesses. Nothing is precomputed beyond the
//! index: the cost depends on the part of the graph the question reaches.
//!
//! Three-valued logic: a union is a member if any operand is, else depth-exceeded if any
//! operand is; an intersection is not a member if any operand is not, else depth-exceeded if
//! any is; `a but not b` is not a member when `a` is not or `b` is, a member when `a` is and
//! `b` is not, and depth-exceeded otherwise.

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use super::graph::TupleGraph;
use super::index::{EntityIdx, TypeId, UsersetId};
use super::model::{RelationModel, Rewrite};
use super::search::Membership;

/// The most (object, relation) pairs one question may visit before it answers
/// [`Membership::DepthExceeded`].
pub const MAX_VISITS: usize = 1 << 20;

/// Who a relation check asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSubject<'a> {
    /// One entity: `User::"anne"`.
    Entity {
        /// Its type.
        entity_type: &'a str,
        /// Its id.
        id: &'a str,
    },
    /// A userset: `Team::"eng"#member`.
    Userset {
        /// The object's type.
        entity_type: &'a str,
        /// The object's id.
        id: &'a str,
        /// The relation.
        relation: &'a str,
    },
    /// The wildcard of a type: `User::*`.
    Wildcard {
        /// The type.
        entity_type: &'a str,
    },
}

/// An object as the search meets it: its type and id, and its place in the index if any
/// tuple names it.
#[derive(Debug, Clone, Copy)]
struct Object<'a> {
    entity_type: &'a str,
    id: &'a str,
    entity: Option<EntityIdx>,
}

/// The subject, resolved against the index once.
#[derive(Debug, Clone, Copy)]
enum Resolved {
    Entity {
        entity_type: Option<TypeId>,
        entity: Option<EntityIdx>,
    },
    Userset(Option<UsersetId>),
    Wildcard(Option<TypeId>),
}

/// What the search knows of an (object, relation) pair.
#[derive(Debug, Clone, Copy)]
enum Pair {
    /// Being searched: met again, it is a cycle.
    OnPath,
    /// Answered, with no cycle cut below it.
    Known(Membership),
}

/// One question's answer, whether it rests on a cycle, and whether a cycle was cut anywhere
/// below it (then it depends on the path and is not remembered).
#[derive(Debug, Clone, Copy)]
struct Answer {
    membership: Membership,
    /// A "not a member" that only holds because a cycle was cut (OpenFGA's `cycle_detected`):
    /// under `but not` it denies instead of allowing.
    cycle: bool,
    cut: bool,
}

impl Answer {
    const fn new(membership: Membership) -> Self {
        Self {
            membership,
            cycle: false,
            cut: false,
        }
    }
}

/// Relation checks for one subject over one model and index; reuse it for several questions
/// about the same subject (answers below the questions are shared).
pub struct RelationCheck<'a> {
    model: &'a RelationModel,
    tuples: &'a TupleGraph,
    subject: CheckSubject<'a>,
    resolved: Resolved,
    max_depth: u32,
    /// Every (object type, object id, relation) pair on the current path or answered.
    pairs: FxHashMap<(&'a str, &'a str, &'a str), Pair>,
    visits: usize,
    cycle_under_exclusion: bool,
    /// How many `but not` subtrahends the search is inside.
    in_subtract: u32,
}

impl<'a> RelationCheck<'a> {
    /// Prepares checks about `subject`, following at most `max_depth` levels.
    pub fn new(
        model: &'a RelationModel,
        tuples: &'a TupleGraph,
        subject: CheckSubject<'a>,
        max_depth: u32,
    ) -> Self {
        let resolved = match subject {
            CheckSubject::Entity { entity_type, id } => {
                let entity_type = tuples.type_id(entity_type);
                Resolved::Entity {
                    entity_type,
                    entity: entity_type.and_then(|t| tuples.entity(t, id)),
                }
            }
            CheckSubject::Userset {
                entity_type,
                id,
                relation,
            } => Resolved::Userset(
                tuples
                    .type_id(entity_type)
                    .and_then(|t| tuples.entity(t, id))
                    .zip(tuples.relation_id(relation))
                    .and_then(|(e, r)| tuples.userset(e, r)),
            ),
            CheckSubject::Wildcard { entity_type } => {
                Resolved::Wildcard(tuples.type_id(entity_type))
            }
        };
        Self {
            model,
            tuples,
            subject,
            resolved,
            max_depth,
            pairs: FxHashMap::default(),
            visits: 0,
            cycle_under_exclusion: false,
            in_subtract: 0,
        }
    }

    /// Returns whether the subject holds `relation` on `entity_type::"id"`.
    pub fn check(&mut self, entity_type: &'a str, id: &'a str, relation: &'a str) -> Membership {
        if let (
            Resolved::Entity {
                entity_type: Some(t),
                entity,
            },
            CheckSubject::Entity { .. },
        ) = (self.resolved, self.subject)
            && !self.tuples.may_be_member(entity, t)
        {
            // Every proof for an entity ends at a tuple naming it or its type's wildcard.
            return Membership::NotMember;
        }
        if matches!(
            self.resolved,
            Resolved::Entity {
                entity_type: None,
                ..
            } | Resolved::Wildcard(None)
        ) {
            return Membership::NotMember;
        }
        let entity = self
            .tuples
            .type_id(entity_type)
            .and_then(|t| self.tuples.entity(t, id));
        let object = Object {
            entity_type,
            id,
            entity,
        };
        self.relation(object, relation, 0).membership
    }

    /// Returns whether some answer so far went through `but not` over a cycle: the one place
    /// where the answer depends on how cycles are cut (no consistent answer exists, and
    /// OpenFGA's own answer depends on its evaluation order). Such answers are the known
    /// differences from OpenFGA (docs/relations.md).
    pub fn met_cycle_under_exclusion(&self) -> bool {
        self.cycle_under_exclusion
    }

    fn object_of(&self, entity: EntityIdx) -> Object<'a> {
        let (type_id, id) = self.tuples.entity_key(entity);
        Object {
            entity_type: self.tuples.type_name(type_id),
            id,
            entity: Some(entity),
        }
    }

    fn relation(&mut self, object: Object<'a>, relation: &'a str, depth: u32) -> Answer {
        if let CheckSubject::Userset {
            entity_type,
            id,
            relation: subject_relation,
        } = self.subject
            && entity_type == object.entity_type
            && id == object.id
            && subject_relation == relation
        {
            return Answer::new(Membership::Member);
        }
        let model = self.model;
        let definition = model.relation(object.entity_type, relation);
        // A relation of direct tuples only, none of them on this object: "no", whatever the
        // path. Answered before the pair is looked up, as most of a union's operands are:
        // such a pair is never on the path (it has nothing to search below it) and nothing
        // else is remembered for it. Within the bounds only, so that beyond them the answer
        // stays the bound's.
        if let Some(definition) = definition
            && matches!(definition.rewrite, Rewrite::Direct(_))
            && depth <= self.max_depth
            && self.visits < MAX_VISITS
            && self.userset(object, relation).is_none()
        {
            return Answer::new(Membership::NotMember);
        }
        let key = (object.entity_type, object.id, relation);
        let definition = match self.pairs.entry(key) {
            Entry::Occupied(pair) => {
                return match *pair.get() {
                    Pair::Known(known) => Answer::new(known),
                    Pair::OnPath => {
                        self.cycle_under_exclusion |= self.in_subtract > 0;
                        Answer {
                            membership: Membership::NotMember,
                            cycle: true,
                            cut: true,
                        }
                    }
                };
            }
            Entry::Vacant(pair) => {
                if depth > self.max_depth || self.visits >= MAX_VISITS {
                    return Answer::new(Membership::DepthExceeded);
                }
                self.visits += 1;
                let Some(definition) = definition else {
                    return Answer::new(Membership::NotMember);
                };
                pair.insert(Pair::OnPath);
                definition
            }
        };
        let answer = self.rewrite(object, relation, &definition.rewrite, depth);
        if !answer.cut && answer.membership != Membership::DepthExceeded {
            self.pairs.insert(key, Pair::Known(answer.membership));
        } else {
            self.pairs.remove(&key);
        }
        answer
    }

    fn rewrite(
        &mut self,
        object: Object<'a>,
        relation: &'a str,
        rewrite: &'a Rewrite,
        depth: u32,
    ) -> Answer {
        match rewrite {
            Rewrite::Direct(_) => self.direct(object, relation, depth),
            Rewrite::Computed(name) => self.relation(object, &name.text, depth + 1),
            Rewrite::TupleToUserset { tupleset, computed } => {
                let mut any = Union::default();
                let Some(userset) = self.userset(object, &tupleset.text) else {
                    return any.answer();
                };
                let tuples = self.tuples;
                for parent in tuples.edges(userset).direct() {
                    let parent = self.object_of(parent);
                    if self
                        .model
                        .relation(parent.entity_type, &computed.text)
                        .is_none()
                    {
                        continue;
                    }
                    if any.add(self.relation(parent, &computed.text, depth + 1)) {
                        break;
                    }
                }
                any.answer()
            }
            Rewrite::Union(children) => {
                let mut any = Union::default();
                for child in children {
                    if any.add(self.rewrite(object, relation, child, depth)) {
                        break;
                    }
                }
                any.answer()
            }
            Rewrite::Intersection(children) => {
                let mut all = Intersection::default();
                for child in children {
                    // Inside a subtrahend every operand is searched, so that a cycle one of
                    // them rests on is seen (`met_cycle_under_exclusion`) whatever the order.
                    if all.add(self.rewrite(object, relation, child, depth))
                        && self.in_subtract == 0
                    {
                        break;
                    }
                }
                all.answer()
            }
            Rewrite::Exclusion(base, subtract) => {
                // Both operands are searched: a cycle under either makes the answer a "no"
                // that rests on a cycle (see the module header).
                let base = self.rewrite(object, relation, base, depth);
                self.in_subtract += 1;
                let subtract = self.rewrite(object, relation, subtract, depth);
                self.in_subtract -= 1;
                let cut = base.cut || subtract.cut;
                self.cycle_under_exclusion |= cut;
                let base_cycle = base.membership == Membership::NotMember && base.cycle;
                let subtract_cycle = subtract.membership == Membership::NotMember && subtract.cycle;
                let (membership, cycle) = if base_cycle || subtract_cycle {
                    (Membership::NotMember, true)
                } else {
                    match (base.membership, subtract.membership) {
                        (Membership::NotMember, _) | (_, Membership::Member) => {
                            (Membership::NotMember, false)
                        }
                        (Membership::Member, Membership::NotMember) => (Membership::Member, false),
                        _ => (Membership::DepthExceeded, false),
                    }
                };
                Answer {
                    membership,
                    cycle,
                    cut,
                }
            }
        }
    }

    fn userset(&self, object: Object<'a>, relation: &str) -> Option<UsersetId> {
        let entity = object.entity?;
        self.tuples
            .userset(entity, self.tuples.relation_id(relation)?)
    }

    /// The direct tuples of `object#relation`, and the usersets among their subjects.
    fn direct(&mut self, object: Object<'a>, relation: &'a str, depth: u32) -> Answer {
        let mut any = Union::default();
        let Some(userset) = self.userset(object, relation) else {
            return any.answer();
        };
        let tuples = self.tuples;
        let edges = tuples.edges(userset);
        let direct_match = match self.resolved {
            Resolved::Entity {
                entity_type,
                entity,
            } => {
                entity.is_some_and(|e| edges.has_direct(e))
                    || entity_type.is_some_and(|t| edges.has_wildcard(t))
            }
            Resolved::Wildcard(entity_type) => entity_type.is_some_and(|t| edges.has_wildcard(t)),
            Resolved::Userset(subject) => subject.is_some_and(|u| edges.has_child(u)),
        };
        if direct_match {
            return Answer::new(Membership::Member);
        }
        for child in edges.children() {
            let (child_object, child_relation) = tuples.userset_key(child);
            let child_object = self.object_of(child_object);
            let child_relation = tuples.relation_name(child_relation);
            if any.add(self.relation(child_object, child_relation, depth + 1)) {
                break;
            }
        }
        any.answer()
    }
}

/// Folds answers with `or`; `add` returns true once the answer is known (a member).
#[derive(Default)]
struct Union {
    member: bool,
    exceeded: bool,
    cycle: bool,
    cut: bool,
}

impl Union {
    fn add(&mut self, answer: Answer) -> bool {
        self.cut |= answer.cut;
        match answer.membership {
            Membership::Member => self.member = true,
            Membership::DepthExceeded => self.exceeded = true,
            Membership::NotMember => self.cycle |= answer.cycle,
        }
        self.member
    }

    fn answer(&self) -> Answer {
        let membership = if self.member {
            Membership::Member
        } else if self.exceeded {
            Membership::DepthExceeded
        } else {
            Membership::NotMember
        };
        // A proof found below a cut cycle may rest on it (through `but not`): still tainted.
        Answer {
            membership,
            cycle: membership == Membership::NotMember && self.cycle,
            cut: self.cut,
        }
    }
}

/// Folds answers with `and`. A "no" that rests on a cycle wins over a plain "no" (and ends
/// the fold); a plain "no" lets the other operands be searched, since one of them may rest on a
/// cycle.
#[derive(Default)]
struct Intersection {
    not_member: bool,
    cycle: bool,
    exceeded: bool,
    cut: bool,
}

impl Intersection {
    fn add(&mut self, answer: Answer) -> bool {
        self.cut |= answer.cut;
        match answer.membership {
            Membership::NotMember if answer.cycle => self.cycle = true,
            Membership::NotMember => self.not_member = true,
            Membership::DepthExceeded => self.exceeded = true,
            Membership::Member => {}
        }
        self.cycle
    }

    fn answer(&self) -> Answer {
        let (membership, cycle) = if self.cycle {
            (Membership::NotMember, true)
        } else if self.not_member {
            (Membership::NotMember, false)
        } else if self.exceeded {
            (Membership::DepthExceeded, false)
        } else {
            (Membership::Member, false)
        };
        Answer {
            membership,
            cycle,
            cut: self.cut,
        }
    }
}
