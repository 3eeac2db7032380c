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
//! relations of every entity in the slice that the policies for the request's action read
//! (see `action_scope`), plus the userset entities the policies name: all a policy can
//! reach. Relations no such policy reads are neither searched nor given to Cedar. Userset
//! entities themselves are not in the slice: `in` only needs them among the left-hand side's
//! ancestors.
//!
//! The slice is handed to Cedar already closed transitively (unless the request brings
//! entities of its own), so Cedar does not recompute the closure per request.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use cedar_policy::{Entities, Entity, EntityTypeName, EntityUid};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use rustc_hash::FxHashMap;

use super::action_scope::ActionScope;
use super::references::referenced_entities;
use super::request::Prepared;
use crate::bundle::Relation;
use crate::diagnostics::error_chain;
use crate::input::RequestError;
use crate::relations::{
    CheckSubject, Membership, RelationCheck, SearchScratch, Subject, UsersetId,
};
use crate::snapshot::Snapshot;

thread_local! {
    /// Search buffers, kept per thread so a decision does not allocate them.
    static SCRATCH: RefCell<SearchScratch> = RefCell::default();
}

/// How many attribute references away from a root an entity may be and still be included.
pub(super) const MAX_HOPS: usize = 3;

/// The entities for one request, and whether a relation search hit the depth bound.
pub(super) struct Slice {
    pub(super) entities: Entities,
    pub(super) relation_depth_exceeded: bool,
}

/// An entity on its way into the slice: its data, before parents are final.
struct Member<'a> {
    /// The caller's or the bundle's version, if any.
    data: Option<Data<'a>>,
    entity_type: String,
    id: String,
}

#[derive(Clone, Copy)]
enum Data<'a> {
    /// From the bundle: its ancestors are closed transitively already.
    Bundle(&'a Entity),
    /// From the request (merged with the bundle's data when the bundle defines it).
    Supplied(&'a Entity),
}

pub(super) fn build(
    request: &Prepared<'_>,
    scope: Option<&ActionScope>,
) -> Result<Slice, RequestError> {
    let snapshot = request.snapshot;
    let reads = |relation: &Relation| scope.is_none_or(|s| s.reads(&relation.name));
    let mut members: FxHashMap<EntityUid, Member<'_>> = FxHashMap::default();
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
        let data = supplied
            .map(Data::Supplied)
            .or_else(|| snapshot.bundle.entities.get(&uid).map(Data::Bundle));
        let entity_type = type_text(uid.type_name());
        let has_relations = !snapshot.relations.relations(&entity_type).is_empty();
        if data.is_none() && !has_relations && !is_target(&uid) {
            continue;
        }
        if hops < MAX_HOPS {
            match (supplied, snapshot.index.entity_references.get(&uid)) {
                (Some(entity), _) => queue.extend(
                    referenced_entities(entity)
                        .into_iter()
                        .map(|r| (r, hops + 1)),
                ),
                (None, Some(known)) => queue.extend(known.iter().map(|r| (r.clone(), hops + 1))),
                (None, None) => {}
            }
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

    let usersets = scoped_usersets(snapshot, &members, reads);
    let mut relation_depth_exceeded = false;
    let mut memberships = |uid: &EntityUid, scratch: &mut SearchScratch| -> Vec<ast::EntityUID> {
        let Some(member) = members.get(uid) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        if let Some(model) = &snapshot.bundle.model {
            // With a relation model, each relation is the model's: rewrites included.
            let subject = CheckSubject::Entity {
                entity_type: &member.entity_type,
                id: &member.id,
            };
            let mut check = RelationCheck::new(
                model,
                &snapshot.tuples,
                subject,
                snapshot.max_relation_depth,
            );
            for scoped in &usersets {
                let Some((entity_type, id, relation)) = scoped.key else {
                    continue;
                };
                match check.check(entity_type, id, relation) {
                    Membership::Member => found.push(scoped.uid.clone().into()),
                    Membership::NotMember => {}
                    Membership::DepthExceeded => relation_depth_exceeded = true,
                }
            }
            return found;
        }
        let subject = snapshot.tuples.subject(&member.entity_type, &member.id);
        for scoped in &usersets {
            match search(snapshot, scoped.userset, subject, scratch) {
                Membership::Member => found.push(scoped.uid.clone().into()),
                Membership::NotMember => {}
                Membership::DepthExceeded => relation_depth_exceeded = true,
            }
        }
        found
    };
    let (principal_in, resource_in) = SCRATCH.with_borrow_mut(|scratch| {
        let principal_in = memberships(&request.principal, scratch);
        let resource_in = if request.resource == request.principal {
            Vec::new()
        } else {
            memberships(&request.resource, scratch)
        };
        scratch.trim();
        (principal_in, resource_in)
    });

    let principal: ast::EntityUID = request.principal.clone().into();
    let resource: ast::EntityUID = request.resource.clone().into();
    let mut entities = Vec::with_capacity(members.len() + 1);
    for (uid, member) in &members {
        let extra: &[ast::EntityUID] = if *uid == request.principal {
            &principal_in
        } else if *uid == request.resource {
            &resource_in
        } else {
            &[]
        };
        entities.push(materialize(snapshot, uid, member, extra, &usersets));
    }
    if let Some(action) = snapshot.index.actions.get(&request.action) {
        entities.push(AsRef::<ast::Entity>::as_ref(action).clone());
    }
    // Without entities from the request the slice is closed transitively by construction:
    // bundle entities carry their closed ancestors, usersets and the (flattened) action have
    // none in the slice, and the principal's and resource's usersets are passed on to entities
    // that descend from them just below. Cedar would only recompute the same closure. The
    // request's entities can name each other as parents: then Cedar computes it (and rejects
    // cycles).
    let tc = if request.supplied.is_empty() {
        for entity in &mut entities {
            for (target, usersets) in [(&principal, &principal_in), (&resource, &resource_in)] {
                if !usersets.is_empty() && entity.uid() != target && entity.is_descendant_of(target)
                {
                    usersets
                        .iter()
                        .for_each(|u| entity.add_indirect_ancestor(u.clone()));
                }
            }
        }
        TCComputation::AssumeAlreadyComputed
    } else {
        TCComputation::ComputeNow
    };
    let entities = CoreEntities::from_entities(
        entities,
        None::<&NoEntitiesSchema>,
        tc,
        Extensions::all_available(),
    )
    .map_err(|e| RequestError::Invalid {
        field: "entities".to_owned(),
        reason: error_chain(&e),
    })?;
    Ok(Slice {
        entities: entities.into(),
        relation_depth_exceeded,
    })
}

/// The type as written (`Acme::Document`), joined by hand: `to_string` goes through the
/// formatting machinery, which showed in the slice's profile.
fn type_text(name: &EntityTypeName) -> String {
    let mut text = String::with_capacity(32);
    for component in name.namespace_components() {
        text.push_str(component);
        text.push_str("::");
    }
    text.push_str(name.basename());
    text
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

/// A userset in the slice's scope: its entity, its place in the tuple index (`None` when no
/// tuple grants it), and the member and relation it belongs to (`None` for the userset
/// entities the policies name).
struct ScopedUserset<'a> {
    uid: EntityUid,
    userset: Option<UsersetId>,
    of: Option<(&'a EntityUid, &'a str)>,
    /// The object type, object id and relation, for a relation model's check (`None` for a
    /// userset entity the policies name whose id does not read as one).
    key: Option<(&'a str, &'a str, &'a str)>,
}

/// The usersets a policy can reach: the relations of every member, and the userset entities
/// the policies name. Each userset uid is built once here; `materialize` reuses them.
fn scoped_usersets<'a>(
    snapshot: &'a Snapshot,
    members: &'a FxHashMap<EntityUid, Member>,
    reads: impl Fn(&Relation) -> bool,
) -> Vec<ScopedUserset<'a>> {
    let tuples = &snapshot.tuples;
    let mut scope = Vec::new();
    for (member_uid, member) in members {
        let object = tuples
            .type_id(&member.entity_type)
            .and_then(|t| tuples.entity(t, &member.id));
        for relation in snapshot.relations.relations(&member.entity_type) {
            if !reads(relation) {
                continue;
            }
            let userset = match (object, relation.id) {
                (Some(object), Some(relation)) => tuples.userset(object, relation),
                _ => None,
            };
            // INVARIANT: members are distinct and so are a type's relations: no duplicates.
            scope.push(ScopedUserset {
                uid: snapshot.relations.userset_uid(
                    &member.entity_type,
                    &member.id,
                    &relation.name,
                ),
                userset,
                of: Some((member_uid, relation.name.as_ref())),
                key: Some((&member.entity_type, &member.id, relation.name.as_ref())),
            });
        }
    }
    for (uid, key) in &snapshot.policy_entities.usersets {
        if !scope.iter().any(|scoped| scoped.uid == *uid) {
            scope.push(ScopedUserset {
                uid: uid.clone(),
                userset: key
                    .as_ref()
                    .and_then(|k| tuples.userset_named(&k.entity_type, &k.id, &k.relation)),
                of: None,
                key: key
                    .as_ref()
                    .map(|k| (k.entity_type.as_str(), k.id.as_str(), k.relation.as_str())),
            });
        }
    }
    scope
}

/// Builds the slice entity: its data (or just its relation attributes), its ancestors, and
/// `extra` parents (usersets it belongs to).
fn materialize(
    snapshot: &Snapshot,
    uid: &EntityUid,
    member: &Member<'_>,
    extra: &[ast::EntityUID],
    usersets: &[ScopedUserset<'_>],
) -> ast::Entity {
    let mut entity = match member.data {
        // Known only by its type's relations (or not at all): relation attributes, no data.
        // A relation no policy in scope reads is left out (it is not in `usersets`): nothing
        // could observe it.
        None => {
            let attrs = usersets
                .iter()
                .filter_map(|scoped| match scoped.of {
                    Some((owner, relation)) if owner == uid => Some((relation, &scoped.uid)),
                    _ => None,
                })
                .map(|(relation, userset)| {
                    let value = ast::Value::from(ast::EntityUID::from(userset.clone()));
                    (relation.into(), ast::PartialValue::from(value))
                });
            ast::Entity::new_with_attr_partial_value(
                uid.clone().into(),
                attrs,
                HashSet::new(),
                HashSet::new(),
                [],
            )
        }
        // Validated and closed when the bundle loaded: taken as it is.
        Some(Data::Bundle(entity)) => AsRef::<ast::Entity>::as_ref(entity).clone(),
        // The request's parents may be bundle entities: add their ancestors from the bundle.
        Some(Data::Supplied(supplied)) => {
            let mut entity = AsRef::<ast::Entity>::as_ref(supplied).clone();
            let parents: Vec<EntityUid> = entity.ancestors().cloned().map(Into::into).collect();
            for parent in parents {
                if let Some(ancestors) = snapshot.bundle.entities.ancestors(&parent) {
                    for ancestor in ancestors {
                        entity.add_indirect_ancestor(ancestor.clone().into());
                    }
                }
            }
            entity
        }
    };
    for userset in extra {
        entity.add_parent(userset.clone());
    }
    entity
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn type_text_is_the_type_as_cedar_prints_it() {
        for text in ["User", "Acme::Document", "A::B::C"] {
            let name = EntityTypeName::from_str(text).unwrap();
            assert_eq!(type_text(&name), name.to_string());
        }
    }
}
