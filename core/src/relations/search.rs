//! Userset membership search.
//!
//! A subject is a member of userset `O#r` when some tuple `O#r@S` has `S` equal to the subject,
//! or `S` is a wildcard of the subject's type, or `S` is another userset the subject is a member
//! of. The search walks that last case breadth first from the userset the policy asks about,
//! downwards, and stops at the first proof of membership:
//!
//! - Direct subjects and wildcards are checked with a binary search at each userset reached, so
//!   a userset with a million members costs no more than one with ten. Only userset-to-userset
//!   edges are followed.
//! - A userset is checked when it is reached, before the rest of its level is expanded, so a
//!   proof one level down ends the search early. Every userset with nested usersets is expanded
//!   at most once, so cycles (`A#member@B#member`, `B#member@A#member`) terminate; usersets
//!   without nested ones (most of them) are just checked, with no bookkeeping.
//! - Breadth first means the shortest proof is found first. The walk follows at most
//!   `max_depth` userset-to-userset hops; if usersets remain unexplored at that depth (or the
//!   only proof lies beyond it), the answer is [`Membership::DepthExceeded`], never a guess. The engine
//!   turns that into a DENY that says why.
//! - A subject that is the direct subject of no tuple, and whose type has no wildcard tuple,
//!   is in no userset: that is one bit per entity, checked before any search.
//! - Nothing else is precomputed: the cost depends on the part of the graph below the userset,
//!   not on the size of the whole graph.

use rustc_hash::FxHashSet;

use super::graph::{Edges, TupleGraph};
use super::index::{EntityIdx, TypeId, UsersetId};

/// The subject of a membership question, resolved against one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    /// The subject's type, if any tuple names it.
    pub entity_type: Option<TypeId>,
    /// The subject itself, if any tuple names it.
    pub entity: Option<EntityIdx>,
}

/// The answer to a membership question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// A chain of tuples proves membership.
    Member,
    /// The whole reachable graph was searched; no tuple proves membership.
    NotMember,
    /// The depth bound was reached before the search could conclude.
    DepthExceeded,
}

/// Reusable buffers for [`TupleGraph::membership`], so searches need not allocate.
#[derive(Debug, Default)]
pub struct SearchScratch {
    visited: FxHashSet<UsersetId>,
    frontier: Vec<UsersetId>,
    next: Vec<UsersetId>,
}

impl SearchScratch {
    /// The most entries the buffers keep between searches; a search that needed more gives
    /// the memory back afterwards.
    const KEEP: usize = 1 << 14;

    /// Releases memory beyond what typical searches use, for scratch kept per thread.
    pub fn trim(&mut self) {
        if self.visited.capacity() > Self::KEEP {
            self.visited = FxHashSet::default();
        }
        for buffer in [&mut self.frontier, &mut self.next] {
            if buffer.capacity() > Self::KEEP {
                *buffer = Vec::new();
            }
        }
    }
}

impl TupleGraph {
    /// Resolves a subject given as type and id; unknown parts stay `None`.
    pub fn subject(&self, entity_type: &str, id: &str) -> Subject {
        let type_id = self.type_id(entity_type);
        Subject {
            entity_type: type_id,
            entity: type_id.and_then(|t| self.entity(t, id)),
        }
    }

    /// Decides whether `subject` is in `userset`, following at most `max_depth` nested
    /// usersets.
    pub fn membership(
        &self,
        userset: UsersetId,
        subject: Subject,
        max_depth: u32,
        scratch: &mut SearchScratch,
    ) -> Membership {
        let Some(subject_type) = subject.entity_type else {
            // No tuple names the subject's type: neither a direct tuple nor a wildcard can match.
            return Membership::NotMember;
        };
        if !self.may_be_member(subject.entity, subject_type) {
            // Never a direct subject and no wildcard of its type: no chain can end at it.
            return Membership::NotMember;
        }
        let matches = |edges: &Edges<'_>| {
            subject.entity.is_some_and(|e| edges.has_direct(e)) || edges.has_wildcard(subject_type)
        };
        if matches(&self.edges(userset)) {
            return Membership::Member;
        }
        scratch.visited.clear();
        scratch.frontier.clear();
        scratch.next.clear();
        scratch.visited.insert(userset);
        scratch.frontier.push(userset);
        // Every userset in `frontier` is `depth` hops from `userset` and was checked for a
        // direct match when it was reached; expanding it checks its children at `depth + 1`.
        let mut depth = 0u32;
        while !scratch.frontier.is_empty() {
            for &current in &scratch.frontier {
                for child in self.edges(current).children() {
                    let edges = self.edges(child);
                    if !edges.has_children() {
                        // A leaf is explored completely by checking it, so it needs no visited
                        // entry; a match beyond the bound is not a proof, though.
                        if matches(&edges) {
                            return if depth < max_depth {
                                Membership::Member
                            } else {
                                Membership::DepthExceeded
                            };
                        }
                        continue;
                    }
                    if !scratch.visited.insert(child) {
                        continue;
                    }
                    if depth >= max_depth {
                        return Membership::DepthExceeded;
                    }
                    if matches(&edges) {
                        return Membership::Member;
                    }
                    scratch.next.push(child);
                }
            }
            depth += 1;
            std::mem::swap(&mut scratch.frontier, &mut scratch.next);
            scratch.next.clear();
        }
        Membership::NotMember
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use proptest::prelude::*;

    use super::*;
    use crate::relations::{SubjectText, TupleIndexBuilder, TupleText, parse_tuple_line};

    fn build(lines: &[String]) -> TupleGraph {
        let mut builder = TupleIndexBuilder::new();
        for line in lines {
            builder.add(&parse_tuple_line(line).unwrap().unwrap());
        }
        builder.finish().unwrap().into()
    }

    fn member(
        index: &TupleGraph,
        object: (&str, &str),
        rel: &str,
        subject: (&str, &str),
    ) -> Membership {
        member_with_depth(index, object, rel, subject, 32)
    }

    fn member_with_depth(
        index: &TupleGraph,
        (object_type, object_id): (&str, &str),
        rel: &str,
        (subject_type, subject_id): (&str, &str),
        max_depth: u32,
    ) -> Membership {
        let object = index
            .type_id(object_type)
            .and_then(|t| index.entity(t, object_id));
        let relation = index.relation_id(rel);
        let (Some(object), Some(relation)) = (object, relation) else {
            return Membership::NotMember;
        };
        let Some(userset) = index.userset(object, relation) else {
            return Membership::NotMember;
        };
        index.membership(
            userset,
            index.subject(subject_type, subject_id),
            max_depth,
            &mut SearchScratch::default(),
        )
    }

    fn lines(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn nested_team_member_is_a_viewer() {
        let index = build(&lines(&[
            r##"Doc::"d"#viewer@Team::"eng"#member"##,
            r##"Team::"eng"#member@Team::"backend"#member"##,
            r##"Team::"backend"#member@User::"bob""##,
        ]));
        assert_eq!(
            member(&index, ("Doc", "d"), "viewer", ("User", "bob")),
            Membership::Member
        );
        assert_eq!(
            member(&index, ("Doc", "d"), "viewer", ("User", "carol")),
            Membership::NotMember
        );
        // The team entity itself is not a member: `Team::"eng"#member` means its members.
        assert_eq!(
            member(&index, ("Doc", "d"), "viewer", ("Team", "eng")),
            Membership::NotMember
        );
    }

    #[test]
    fn wildcard_admits_every_entity_of_its_type_only() {
        let index = build(&lines(&[
            r##"Doc::"h"#viewer@User::*"##,
            r##"Doc::"x"#owner@Bot::"b""##,
        ]));
        assert_eq!(
            member(&index, ("Doc", "h"), "viewer", ("User", "never-seen")),
            Membership::Member
        );
        assert_eq!(
            member(&index, ("Doc", "h"), "viewer", ("Bot", "b")),
            Membership::NotMember
        );
        assert_eq!(
            member(&index, ("Doc", "h"), "viewer", ("Robot", "r")),
            Membership::NotMember
        );
    }

    #[test]
    fn userset_cycle_terminates() {
        let index = build(&lines(&[
            r##"Team::"a"#member@Team::"b"#member"##,
            r##"Team::"b"#member@Team::"c"#member"##,
            r##"Team::"c"#member@Team::"a"#member"##,
            r##"Team::"c"#member@User::"u""##,
        ]));
        assert_eq!(
            member(&index, ("Team", "a"), "member", ("User", "u")),
            Membership::Member
        );
        assert_eq!(
            member(&index, ("Team", "a"), "member", ("User", "nobody")),
            Membership::NotMember
        );
    }

    fn chain(len: usize) -> Vec<String> {
        let mut out: Vec<String> = (0..len)
            .map(|i| format!(r##"Team::"t{i}"#member@Team::"t{}"#member"##, i + 1))
            .collect();
        out.push(format!(r##"Team::"t{len}"#member@User::"deep""##));
        out
    }

    #[test]
    fn depth_bound_is_reported_not_guessed() {
        let index = build(&chain(10));
        let at = |d| member_with_depth(&index, ("Team", "t0"), "member", ("User", "deep"), d);
        assert_eq!(at(10), Membership::Member);
        assert_eq!(at(9), Membership::DepthExceeded);
        assert_eq!(at(0), Membership::DepthExceeded);
        // A subject that is found before the bound is a member even with a tight bound.
        let shallow = build(&lines(&[
            r##"Team::"a"#member@User::"u""##,
            r##"Team::"a"#member@Team::"b"#member"##,
            r##"Team::"b"#member@Team::"c"#member"##,
            r##"Team::"c"#member@Team::"d"#member"##,
            // `x` is a member of something, so the search for it must run.
            r##"Team::"z"#member@User::"x""##,
        ]));
        assert_eq!(
            member_with_depth(&shallow, ("Team", "a"), "member", ("User", "u"), 0),
            Membership::Member
        );
        assert_eq!(
            member_with_depth(&shallow, ("Team", "a"), "member", ("User", "x"), 2),
            Membership::NotMember
        );
        assert_eq!(
            member_with_depth(&shallow, ("Team", "a"), "member", ("User", "x"), 1),
            Membership::DepthExceeded
        );
    }

    #[test]
    fn subject_of_no_tuple_is_no_member_without_a_search() {
        let index = build(&chain(10));
        // `Team::"t3"` is an object (and inside usersets as `t3#member`), never a direct
        // subject: provably in no userset, even with a depth bound too tight to search.
        let at = |subject, d| member_with_depth(&index, ("Team", "t0"), "member", subject, d);
        assert_eq!(at(("Team", "t3"), 0), Membership::NotMember);
        assert_eq!(at(("User", "nobody"), 0), Membership::NotMember);
        assert_eq!(at(("User", "deep"), 0), Membership::DepthExceeded);
        // A wildcard of the subject's type makes every entity of the type a possible member.
        let mut wild = chain(10);
        wild.push(r##"Team::"t10"#member@User::*"##.to_owned());
        let index = build(&wild);
        assert_eq!(
            member_with_depth(&index, ("Team", "t0"), "member", ("User", "nobody"), 0),
            Membership::DepthExceeded
        );
        assert_eq!(
            member_with_depth(&index, ("Team", "t0"), "member", ("User", "nobody"), 10),
            Membership::Member
        );
    }

    /// The obvious breadth-first search over the raw tuple list, kept as the reference: the
    /// length of the shortest proof (userset-to-userset hops), if any.
    fn naive_depth(
        tuples: &[TupleText<'_>],
        object: &str,
        rel: &str,
        subject: &str,
        subject_type: &str,
    ) -> Option<u32> {
        let mut queue = VecDeque::from([(object.to_owned(), rel.to_owned(), 0u32)]);
        let mut seen = HashSet::new();
        while let Some((o, r, depth)) = queue.pop_front() {
            if !seen.insert((o.clone(), r.clone())) {
                continue;
            }
            for t in tuples {
                if t.object.to_string() != o || t.relation != r {
                    continue;
                }
                match &t.subject {
                    SubjectText::Entity(e) if e.to_string() == subject => return Some(depth),
                    SubjectText::Wildcard { entity_type } if *entity_type == subject_type => {
                        return Some(depth);
                    }
                    SubjectText::Userset { object, relation } => {
                        queue.push_back((object.to_string(), (*relation).to_owned(), depth + 1));
                    }
                    _ => {}
                }
            }
        }
        None
    }

    fn arb_tuple() -> impl Strategy<Value = String> {
        let team = || (0..6u8).prop_map(|i| format!(r##"Team::"t{i}""##));
        let user = (0..6u8).prop_map(|i| format!(r##"User::"u{i}""##));
        prop_oneof![
            (team(), user.clone()).prop_map(|(t, u)| format!("{t}#member@{u}")),
            (team(), team()).prop_map(|(a, b)| format!("{a}#member@{b}#member")),
            team().prop_map(|t| format!("{t}#member@User::*")),
            (team(), team()).prop_map(|(a, b)| format!("{a}#admin@{b}#member")),
            (team(), user).prop_map(|(t, u)| format!("{t}#admin@{u}")),
        ]
    }

    proptest! {
        #[test]
        fn search_agrees_with_naive_reference(
            raw in proptest::collection::vec(arb_tuple(), 0..40),
            team in 0..6u8,
            user in 0..7u8,
            admin in any::<bool>(),
        ) {
            let index = build(&raw);
            let parsed: Vec<_> = raw.iter().map(|l| parse_tuple_line(l).unwrap().unwrap()).collect();
            let rel = if admin { "admin" } else { "member" };
            let object = format!(r##"Team::"t{team}""##);
            let subject = format!(r##"User::"u{user}""##);
            let expected = naive_depth(&parsed, &object, rel, &subject, "User").is_some();
            let got = member_with_depth(&index, ("Team", &format!("t{team}")), rel, ("User", &format!("u{user}")), 64);
            prop_assert_eq!(got == Membership::Member, expected);
            prop_assert_ne!(got, Membership::DepthExceeded);
        }

        /// With a tight bound: a proof within it is always found, a member is never claimed
        /// without one, and a non-member is never reported as one.
        #[test]
        fn depth_bound_is_exact_or_reported(
            raw in proptest::collection::vec(arb_tuple(), 0..40),
            team in 0..6u8,
            user in 0..7u8,
            admin in any::<bool>(),
            max_depth in 0..4u32,
        ) {
            let index = build(&raw);
            let parsed: Vec<_> = raw.iter().map(|l| parse_tuple_line(l).unwrap().unwrap()).collect();
            let rel = if admin { "admin" } else { "member" };
            let object = format!(r##"Team::"t{team}""##);
            let subject = format!(r##"User::"u{user}""##);
            let shortest = naive_depth(&parsed, &object, rel, &subject, "User");
            let got = member_with_depth(&index, ("Team", &format!("t{team}")), rel, ("User", &format!("u{user}")), max_depth);
            match shortest {
                Some(d) if d <= max_depth => prop_assert_eq!(got, Membership::Member),
                Some(_) => prop_assert_eq!(got, Membership::DepthExceeded),
                None => prop_assert_ne!(got, Membership::Member),
            }
        }
    }
}
