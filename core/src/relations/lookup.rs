//! Reverse questions under a relation model, with OpenFGA's semantics: which objects of a type
//! does a subject hold a relation on (ListObjects, `LookupResources`), and which subjects of a
//! type hold a relation on an object (ListUsers, `LookupSubjects`).
//!
//! Both find candidates cheaply and confirm each one with [`RelationCheck`], the code that
//! answers a single check, so a reverse answer can never disagree with a check:
//!
//! - objects: every object of the type some tuple names, plus the subject's own object when the
//!   subject is a userset of that type (OpenFGA's reflexive rule);
//! - subjects: those met by expanding the object's relation downwards through the model: the
//!   direct subjects of every (object, relation) pair the rewrites reach (all operands of `or`,
//!   `and` and `but not`: an entity named only on the subtracted side can hold through a
//!   wildcard that does not hold for everyone), the wildcard of the type when a tuple grants
//!   it, and for a userset filter `T#r` every pair of that type and relation the expansion
//!   reaches. A subject that no tuple met on the way names is not listed even when the
//!   wildcard covers it: the wildcard is (as OpenFGA does).
//!
//! Answers come in pages, sorted (objects by id, subjects by their text), each resumed after
//! the last answer of the previous page: a page's work is bounded by the candidates it
//! confirms. Nothing is precomputed; the candidates of one question are collected per page.

use rustc_hash::FxHashSet;

use super::check::{CheckSubject, MAX_VISITS, RelationCheck};
use super::graph::TupleGraph;
use super::model::{RelationModel, Rewrite};
use super::search::Membership;
use super::tuple::display_uid;

/// The most candidates one page confirms with a check before it ends (with
/// [`LookupPage::more`] set) even if it holds fewer answers than asked: the server's bound on
/// the work of one page.
pub const MAX_CANDIDATES_PER_PAGE: usize = 10_000;

/// One page of a reverse question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupPage<T> {
    /// The answers, sorted.
    pub items: Vec<T>,
    /// Whether answers may remain after this page: resume after [`Self::resume_after`].
    pub more: bool,
    /// The last candidate this page examined (a member or not) when [`Self::more`] is set:
    /// the next page starts after it. A page stops when it is full or after
    /// [`MAX_CANDIDATES_PER_PAGE`] candidates, so its work is bounded even when few
    /// candidates are members.
    pub resume_after: Option<T>,
    /// Whether some candidate could not be decided within the depth bound (it is left out,
    /// as a check would deny it).
    pub relation_depth_exceeded: bool,
}

/// A subject found by [`lookup_subjects`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FoundSubject {
    /// An entity, by id.
    Entity(String),
    /// A userset: the object's id (its type and relation are the filter's).
    Userset(String),
    /// The wildcard of the filter's type.
    Wildcard,
}

impl FoundSubject {
    /// Returns the text OpenFGA and the tuple syntax write for it, for a subject of
    /// `entity_type` (and `relation` for a userset filter): `User::"anne"`, `Team::"eng"#member`,
    /// `User::*`.
    pub fn text(&self, entity_type: &str, relation: Option<&str>) -> String {
        match self {
            Self::Entity(id) => display_uid(entity_type, id),
            Self::Userset(id) => format!(
                "{}#{}",
                display_uid(entity_type, id),
                relation.unwrap_or_default()
            ),
            Self::Wildcard => format!("{entity_type}::*"),
        }
    }

    fn sort_key(&self) -> (u8, &str) {
        match self {
            Self::Wildcard => (0, ""),
            Self::Entity(id) | Self::Userset(id) => (1, id),
        }
    }
}

/// Why a reverse question cannot be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The type is not defined in the model.
    #[error("type `{0}` is not defined in the relation model")]
    UnknownType(String),
    /// The relation is not defined on the type.
    #[error("type `{entity_type}` has no relation `{relation}` in the relation model")]
    UnknownRelation {
        /// The type.
        entity_type: String,
        /// The relation.
        relation: String,
    },
}

fn require(
    model: &RelationModel,
    entity_type: &str,
    relation: Option<&str>,
) -> Result<(), LookupError> {
    if !model.has_type(entity_type) {
        return Err(LookupError::UnknownType(entity_type.to_owned()));
    }
    if let Some(relation) = relation
        && !model.has_relation(entity_type, relation)
    {
        return Err(LookupError::UnknownRelation {
            entity_type: entity_type.to_owned(),
            relation: relation.to_owned(),
        });
    }
    Ok(())
}

/// Returns up to `page_size` ids of objects of `object_type` on which `subject` holds
/// `relation`, sorted, starting after `after`.
#[allow(clippy::too_many_arguments, reason = "one reverse question's inputs")]
pub fn lookup_resources(
    model: &RelationModel,
    tuples: &TupleGraph,
    subject: CheckSubject<'_>,
    relation: &str,
    object_type: &str,
    max_depth: u32,
    after: Option<&str>,
    page_size: usize,
) -> Result<LookupPage<String>, LookupError> {
    require(model, object_type, Some(relation))?;
    // The candidates in id order from just after the cursor: a binary search into the index's
    // sorted entities of the type, read lazily, so a page costs what it examines, not the
    // type's size.
    let indexed = tuples
        .type_id(object_type)
        .into_iter()
        .flat_map(|t| tuples.entity_ids_sorted_after(t, after));
    // A userset subject of the object type is its own candidate, interned or not.
    let own = match subject {
        CheckSubject::Userset {
            entity_type, id, ..
        } if entity_type == object_type && after.is_none_or(|a| id > a) => Some(id),
        _ => None,
    };
    let candidates = merge_sorted(indexed, own);
    let mut check = RelationCheck::new(model, tuples, subject, max_depth);
    let mut page = LookupPage {
        items: Vec::new(),
        more: false,
        resume_after: None,
        relation_depth_exceeded: false,
    };
    let mut last: Option<&str> = None;
    for (examined, id) in candidates.into_iter().enumerate() {
        if page.items.len() >= page_size || examined >= MAX_CANDIDATES_PER_PAGE {
            page.more = true;
            page.resume_after = last.map(str::to_owned);
            break;
        }
        last = Some(id);
        match check.check(object_type, id, relation) {
            Membership::Member => page.items.push(id.to_owned()),
            Membership::NotMember => {}
            Membership::DepthExceeded => page.relation_depth_exceeded = true,
        }
    }
    Ok(page)
}

/// `sorted` (ascending, no duplicates) with `extra` merged in at its place, once.
fn merge_sorted<'a>(
    sorted: impl Iterator<Item = &'a str>,
    extra: Option<&'a str>,
) -> impl Iterator<Item = &'a str> {
    let mut sorted = sorted.peekable();
    let mut extra = extra;
    std::iter::from_fn(move || match (sorted.peek().copied(), extra) {
        (Some(next), Some(own)) if own < next => extra.take(),
        (Some(next), Some(own)) if own == next => {
            extra = None;
            sorted.next()
        }
        (Some(_), _) => sorted.next(),
        (None, _) => extra.take(),
    })
}

/// Returns up to `page_size` subjects of `subject_type` (usersets `subject_type#r` when
/// `subject_relation` is `Some(r)`) that hold `relation` on `object_type::"object_id"`, sorted
/// (the wildcard first), starting after `after`.
#[allow(clippy::too_many_arguments, reason = "one reverse question's inputs")]
pub fn lookup_subjects(
    model: &RelationModel,
    tuples: &TupleGraph,
    (object_type, object_id): (&str, &str),
    relation: &str,
    (subject_type, subject_relation): (&str, Option<&str>),
    max_depth: u32,
    after: Option<&FoundSubject>,
    page_size: usize,
) -> Result<LookupPage<FoundSubject>, LookupError> {
    require(model, object_type, Some(relation))?;
    require(model, subject_type, subject_relation)?;
    let mut candidates = FxHashSet::default();
    let mut exceeded = expand(
        model,
        tuples,
        (object_type, object_id, relation),
        (subject_type, subject_relation),
        &mut candidates,
    );
    let mut candidates: Vec<FoundSubject> = candidates
        .into_iter()
        .filter(|c| after.is_none_or(|a| c.sort_key() > a.sort_key()))
        .collect();
    candidates.sort_unstable_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let mut page = LookupPage {
        items: Vec::new(),
        more: false,
        resume_after: None,
        relation_depth_exceeded: false,
    };
    let mut last: Option<FoundSubject> = None;
    for (examined, candidate) in candidates.into_iter().enumerate() {
        if page.items.len() >= page_size || examined >= MAX_CANDIDATES_PER_PAGE {
            page.more = true;
            page.resume_after = last;
            break;
        }
        last = Some(candidate.clone());
        let subject = match (&candidate, subject_relation) {
            (FoundSubject::Wildcard, _) => CheckSubject::Wildcard {
                entity_type: subject_type,
            },
            (FoundSubject::Userset(id), Some(r)) => CheckSubject::Userset {
                entity_type: subject_type,
                id,
                relation: r,
            },
            (FoundSubject::Entity(id) | FoundSubject::Userset(id), _) => CheckSubject::Entity {
                entity_type: subject_type,
                id,
            },
        };
        let mut check = RelationCheck::new(model, tuples, subject, max_depth);
        match check.check(object_type, object_id, relation) {
            Membership::Member => page.items.push(candidate),
            Membership::NotMember => {}
            Membership::DepthExceeded => exceeded = true,
        }
    }
    page.relation_depth_exceeded = exceeded;
    Ok(page)
}

/// Expands `(type, id, relation)` downwards and collects the candidates that match the filter.
/// Returns whether the expansion stopped at [`MAX_VISITS`].
fn expand(
    model: &RelationModel,
    tuples: &TupleGraph,
    start: (&str, &str, &str),
    (subject_type, subject_relation): (&str, Option<&str>),
    out: &mut FxHashSet<FoundSubject>,
) -> bool {
    let mut seen: FxHashSet<(String, String, String)> = FxHashSet::default();
    let mut stack: Vec<(String, String, String)> =
        vec![(start.0.to_owned(), start.1.to_owned(), start.2.to_owned())];
    let subject_type_id = tuples.type_id(subject_type);
    while let Some(node) = stack.pop() {
        if !seen.insert(node.clone()) {
            continue;
        }
        if seen.len() > MAX_VISITS {
            return true;
        }
        let (entity_type, id, relation) = (&node.0, &node.1, &node.2);
        if Some(relation.as_str()) == subject_relation && entity_type == subject_type {
            out.insert(FoundSubject::Userset(id.clone()));
        }
        let Some(definition) = model.relation(entity_type, relation) else {
            continue;
        };
        let object = tuples
            .type_id(entity_type)
            .and_then(|t| tuples.entity(t, id));
        let userset_of =
            |relation: &str| object.and_then(|o| tuples.userset(o, tuples.relation_id(relation)?));
        let mut rewrites = vec![&definition.rewrite];
        while let Some(rewrite) = rewrites.pop() {
            match rewrite {
                Rewrite::Direct(_) => {
                    let Some(userset) = userset_of(relation) else {
                        continue;
                    };
                    let edges = tuples.edges(userset);
                    if subject_relation.is_none() {
                        for e in edges.direct() {
                            let (t, subject_id) = tuples.entity_key(e);
                            if Some(t) == subject_type_id {
                                out.insert(FoundSubject::Entity(subject_id.to_owned()));
                            }
                        }
                        if subject_type_id.is_some_and(|t| edges.has_wildcard(t)) {
                            out.insert(FoundSubject::Wildcard);
                        }
                    }
                    for child in edges.children() {
                        let (e, r) = tuples.userset_key(child);
                        let (t, child_id) = tuples.entity_key(e);
                        stack.push((
                            tuples.type_name(t).to_owned(),
                            child_id.to_owned(),
                            tuples.relation_name(r).to_owned(),
                        ));
                    }
                }
                Rewrite::Computed(name) => {
                    stack.push((entity_type.clone(), id.clone(), name.text.to_string()));
                }
                Rewrite::TupleToUserset { tupleset, computed } => {
                    let Some(userset) = userset_of(&tupleset.text) else {
                        continue;
                    };
                    for parent in tuples.edges(userset).direct() {
                        let (t, parent_id) = tuples.entity_key(parent);
                        let parent_type = tuples.type_name(t);
                        if model.has_relation(parent_type, &computed.text) {
                            stack.push((
                                parent_type.to_owned(),
                                parent_id.to_owned(),
                                computed.text.to_string(),
                            ));
                        }
                    }
                }
                Rewrite::Union(children) | Rewrite::Intersection(children) => {
                    rewrites.extend(children.iter());
                }
                // The subtracted side too: an entity named only there can hold the relation
                // through a wildcard of the base that does not hold for everyone (`[user:*]
                // but not (r2 but not r1)` holds for the users of `r1`). Every candidate is
                // confirmed by a check, so a wider net lists nothing that does not hold.
                Rewrite::Exclusion(base, subtract) => {
                    rewrites.push(base);
                    rewrites.push(subtract);
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;

    use super::*;
    use crate::relations::{ModelSource, TupleIndexBuilder, parse_tuple_line};

    const MODEL: &str = "model\n  schema 1.1\ntype User\ntype Team\n  relations\n    define member: [User, User:*, Team#member]\n\
        type Doc\n  relations\n    define owner: [User]\n    define blocked: [User]\n    define viewer: ([User, Team#member] or owner) but not blocked\n";

    fn fixture() -> (RelationModel, TupleGraph) {
        let path = PathBuf::from("m.fga");
        let model = RelationModel::build(&[ModelSource {
            path: &path,
            text: MODEL,
        }])
        .unwrap()
        .unwrap();
        let mut builder = TupleIndexBuilder::new();
        for line in [
            r##"Team::"eng"#member@User::"anne""##,
            r##"Team::"all"#member@Team::"eng"#member"##,
            r##"Team::"pub"#member@User::*"##,
            r##"Doc::"d1"#viewer@Team::"all"#member"##,
            r##"Doc::"d2"#owner@User::"anne""##,
            r##"Doc::"d3"#viewer@Team::"pub"#member"##,
            r##"Doc::"d3"#blocked@User::"anne""##,
            r##"Doc::"d4"#owner@User::"bob""##,
        ] {
            builder.add(&parse_tuple_line(line).unwrap().unwrap());
        }
        (model, builder.finish().unwrap().into())
    }

    #[test]
    fn resources_page_through_to_the_same_answer() {
        let (model, tuples) = fixture();
        let anne = CheckSubject::Entity {
            entity_type: "User",
            id: "anne",
        };
        let all = lookup_resources(&model, &tuples, anne, "viewer", "Doc", 32, None, 100).unwrap();
        assert_eq!(all.items, ["d1", "d2"]);
        assert!(!all.more);
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = lookup_resources(
                &model,
                &tuples,
                anne,
                "viewer",
                "Doc",
                32,
                after.as_deref(),
                1,
            )
            .unwrap();
            paged.extend(page.items.iter().cloned());
            after = page.items.last().cloned();
            if !page.more {
                break;
            }
        }
        assert_eq!(paged, all.items);
        // A userset subject is reflexive: `Team::"eng"#member` holds `member` on itself.
        let eng = CheckSubject::Userset {
            entity_type: "Team",
            id: "eng",
            relation: "member",
        };
        let teams = lookup_resources(&model, &tuples, eng, "member", "Team", 32, None, 10).unwrap();
        assert_eq!(teams.items, ["all", "eng"]);
    }

    #[test]
    fn subjects_list_the_wildcard_and_confirmed_entities() {
        let (model, tuples) = fixture();
        let users = |object: &str| {
            lookup_subjects(
                &model,
                &tuples,
                ("Doc", object),
                "viewer",
                ("User", None),
                32,
                None,
                10,
            )
            .unwrap()
            .items
        };
        assert_eq!(users("d1"), [FoundSubject::Entity("anne".to_owned())]);
        // Anne is blocked on d3; the wildcard is not.
        assert_eq!(users("d3"), [FoundSubject::Wildcard]);
        let teams = lookup_subjects(
            &model,
            &tuples,
            ("Doc", "d1"),
            "viewer",
            ("Team", Some("member")),
            32,
            None,
            10,
        )
        .unwrap();
        assert_eq!(
            teams.items,
            [
                FoundSubject::Userset("all".to_owned()),
                FoundSubject::Userset("eng".to_owned())
            ]
        );
        assert_eq!(
            teams.items[1].text("Team", Some("member")),
            r##"Team::"eng"#member"##
        );
    }

    #[test]
    fn unknown_types_and_relations_are_errors() {
        let (model, tuples) = fixture();
        let anne = CheckSubject::Entity {
            entity_type: "User",
            id: "anne",
        };
        assert_eq!(
            lookup_resources(&model, &tuples, anne, "viewer", "Robot", 32, None, 1).unwrap_err(),
            LookupError::UnknownType("Robot".to_owned())
        );
        assert_eq!(
            lookup_subjects(
                &model,
                &tuples,
                ("Doc", "d1"),
                "editor",
                ("User", None),
                32,
                None,
                1
            )
            .unwrap_err()
            .to_string(),
            "type `Doc` has no relation `editor` in the relation model"
        );
    }

    #[test]
    fn the_own_candidate_merges_into_the_sorted_ids_once() {
        let merged = |ids: &[&'static str], own: Option<&'static str>| -> Vec<&'static str> {
            merge_sorted(ids.iter().copied(), own).collect()
        };
        assert_eq!(merged(&["b", "d"], Some("a")), ["a", "b", "d"]);
        assert_eq!(merged(&["b", "d"], Some("c")), ["b", "c", "d"]);
        assert_eq!(merged(&["b", "d"], Some("d")), ["b", "d"]);
        assert_eq!(merged(&["b", "d"], Some("e")), ["b", "d", "e"]);
        assert_eq!(merged(&[], Some("e")), ["e"]);
        assert_eq!(merged(&["b"], None), ["b"]);
    }
}
