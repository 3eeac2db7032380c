//! The per-request entity slice: the entities Cedar may need for one request, and nothing of
//! the rest of the bundle.
//!
//! What goes in, starting from these roots:
//! - the principal and the resource (always, with no data if nothing is known about them),
//! - the caller's entities, the entities the context points at, and the entities the policies
//!   name literally (precomputed per snapshot),
//!
//! and then, up to [`MAX_HOPS`] steps away, every entity a member's attributes point at (so
//! `principal.tenant.locked` and `resource.folder.viewer` evaluate). An entity with no data and
//! no relations is left out: `in` needs only the left-hand side's ancestors.
//!
//! Each entity carries its attributes (bundle data merged with the caller's), its relations as
//! attributes pointing at userset entities, and as parents every ancestor it has in the bundle
//! (already closed transitively). The principal and the resource also get, as parents, every
//! userset in scope that the tuple graph says they belong to. The usersets in scope are the
//! relations of every entity in the slice plus the userset entities the policies name: all a
//! policy can reach. Userset entities themselves are not in the slice: `in` only needs them
//! among the left-hand side's ancestors.

use std::collections::VecDeque;

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use rustc_hash::{FxHashMap, FxHashSet};

use super::request::{Request, RequestError};
use crate::bundle::{Snapshot, referenced_entities};
use crate::diagnostics::error_chain;
use crate::relations::{Membership, SearchScratch, Subject, UsersetId};

/// How many attribute references away from a root an entity may be and still be included.
pub(super) const MAX_HOPS: usize = 3;

/// The entities for one request, and whether a relation search hit the depth bound.
pub(super) struct Slice {
    pub(super) entities: Entities,
    pub(super) relation_depth_exceeded: bool,
}

/// An entity on its way into the slice: its data, before parents are final.
struct Member {
    /// The caller's or the bundle's version, if any.
    data: Option<Entity>,
    entity_type: String,
    id: String,
}

pub(super) fn build(snapshot: &Snapshot, request: &Request) -> Result<Slice, RequestError> {
    let mut members: FxHashMap<EntityUid, Member> = FxHashMap::default();
    let mut queue: VecDeque<(EntityUid, usize)> = VecDeque::new();
    for target in [&request.principal, &request.resource] {
        queue.push_back((target.clone(), 0));
    }
    queue.extend(request.supplied.iter().map(|e| (e.uid(), 0)));
    queue.extend(request.context_entities.iter().map(|uid| (uid.clone(), 0)));
    queue.extend(
        snapshot
            .policy_entities
            .entities
            .iter()
            .map(|uid| (uid.clone(), 0)),
    );
    let is_target = |uid: &EntityUid| *uid == request.principal || *uid == request.resource;

    while let Some((uid, hops)) = queue.pop_front() {
        if members.contains_key(&uid) || uid.type_name().basename() == "Action" {
            continue;
        }
        let supplied = request.supplied.iter().find(|e| e.uid() == uid);
        let data = supplied.or_else(|| snapshot.entities.get(&uid)).cloned();
        let entity_type = uid.type_name().to_string();
        let has_relations = !snapshot.relations.relations(&entity_type).is_empty();
        if data.is_none() && !has_relations && !is_target(&uid) {
            continue;
        }
        if hops < MAX_HOPS {
            let references = match (supplied, snapshot.entity_references.get(&uid)) {
                (Some(entity), _) => referenced_entities(entity),
                (None, Some(known)) => known.clone(),
                (None, None) => Vec::new(),
            };
            queue.extend(references.into_iter().map(|r| (r, hops + 1)));
        }
        let id = uid.id().unescaped().to_owned();
        members.insert(
            uid,
            Member {
                data,
                entity_type,
                id,
            },
        );
    }

    let scope = scoped_usersets(snapshot, &members);
    let mut relation_depth_exceeded = false;
    let mut scratch = SearchScratch::default();
    let mut memberships = |uid: &EntityUid| -> Vec<EntityUid> {
        let Some(member) = members.get(uid) else {
            return Vec::new();
        };
        let subject = snapshot.tuples.subject(&member.entity_type, &member.id);
        let mut found = Vec::new();
        for (userset_uid, userset) in &scope {
            match search(snapshot, *userset, subject, &mut scratch) {
                Membership::Member => found.push(userset_uid.clone()),
                Membership::NotMember => {}
                Membership::DepthExceeded => relation_depth_exceeded = true,
            }
        }
        found
    };
    let principal_in = memberships(&request.principal);
    let resource_in = if request.resource == request.principal {
        Vec::new()
    } else {
        memberships(&request.resource)
    };

    let mut entities = Vec::with_capacity(members.len() + 1);
    for (uid, member) in members {
        let extra = if uid == request.principal {
            principal_in.clone()
        } else if uid == request.resource {
            resource_in.clone()
        } else {
            Vec::new()
        };
        entities.push(materialize(snapshot, uid, member, extra)?);
    }
    if let Some(action) = snapshot.actions.get(&request.action) {
        entities.push(action.clone());
    }
    let entities = Entities::from_entities(entities, None).map_err(|e| RequestError::Invalid {
        field: "entities".to_owned(),
        reason: error_chain(&e),
    })?;
    Ok(Slice {
        entities,
        relation_depth_exceeded,
    })
}

fn search(
    snapshot: &Snapshot,
    userset: Option<UsersetId>,
    subject: Subject,
    scratch: &mut SearchScratch,
) -> Membership {
    match userset {
        Some(userset) => {
            snapshot
                .tuples
                .membership(userset, subject, snapshot.max_relation_depth, scratch)
        }
        None => Membership::NotMember,
    }
}

/// The usersets a policy can reach: the relations of every member, and the userset entities
/// the policies name.
fn scoped_usersets(
    snapshot: &Snapshot,
    members: &FxHashMap<EntityUid, Member>,
) -> Vec<(EntityUid, Option<UsersetId>)> {
    let tuples = &snapshot.tuples;
    let mut seen = FxHashSet::default();
    let mut scope = Vec::new();
    for member in members.values() {
        let object = tuples
            .type_id(&member.entity_type)
            .and_then(|t| tuples.entity(t, &member.id));
        for relation in snapshot.relations.relations(&member.entity_type) {
            let userset = match (object, relation.id) {
                (Some(object), Some(relation)) => tuples.userset(object, relation),
                _ => None,
            };
            let uid =
                snapshot
                    .relations
                    .userset_uid(&member.entity_type, &member.id, &relation.name);
            if seen.insert(uid.clone()) {
                scope.push((uid, userset));
            }
        }
    }
    for (uid, userset) in &snapshot.policy_entities.usersets {
        if seen.insert(uid.clone()) {
            scope.push((uid.clone(), *userset));
        }
    }
    scope
}

/// Builds the slice entity: its data (or just its relation attributes), its ancestors from the
/// bundle as direct parents, and `extra` parents (usersets it belongs to).
fn materialize(
    snapshot: &Snapshot,
    uid: EntityUid,
    member: Member,
    extra: Vec<EntityUid>,
) -> Result<Entity, RequestError> {
    let Some(data) = member.data else {
        // Known only by its type's relations (or not at all): relation attributes, no data.
        let attrs = snapshot
            .relations
            .relations(&member.entity_type)
            .iter()
            .map(|relation| {
                let userset =
                    snapshot
                        .relations
                        .userset_uid(&member.entity_type, &member.id, &relation.name);
                (
                    relation.name.to_string(),
                    RestrictedExpression::new_entity_uid(userset),
                )
            });
        return Entity::new_with_tags(uid, attrs, extra, []).map_err(|e| internal(&e));
    };
    let (uid, attrs, parents) = data.into_inner();
    let mut all: FxHashSet<EntityUid> = FxHashSet::default();
    for parent in parents {
        if let Some(ancestors) = snapshot.entities.ancestors(&parent) {
            all.extend(ancestors.cloned());
        }
        all.insert(parent);
    }
    all.extend(extra);
    Entity::new(uid, attrs, all.into_iter().collect()).map_err(|e| internal(&e))
}

fn internal(error: &(dyn std::error::Error + 'static)) -> RequestError {
    RequestError::Internal(error_chain(error))
}
