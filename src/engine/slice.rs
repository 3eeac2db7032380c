//! The per-request entity slice: just the entities Cedar needs for one request.
//!
//! The slice holds the principal, the resource, the action and the caller's entities. Each
//! carries its attributes (bundle data, merged with the caller's), its relations as attributes
//! pointing at userset entities, and as parents every ancestor it has in the bundle plus every
//! userset in scope that the tuple graph says it belongs to. The usersets in scope are the
//! relations of the principal and of the resource: the ones a policy can name as
//! `resource.viewer` or `principal.manager`.
//!
//! Membership is written as direct parents, already closed transitively, so Cedar's own closure
//! over the slice is trivial and `principal in resource.viewer` is one set lookup. Userset
//! entities themselves are not in the slice: `in` only needs them among the principal's
//! ancestors.

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use rustc_hash::FxHashSet;

use super::request::{Request, RequestError, Target};
use crate::bundle::Snapshot;
use crate::diagnostics::error_chain;
use crate::relations::{Membership, SearchScratch};

/// The entities for one request, and whether a relation search hit the depth bound.
pub(super) struct Slice {
    pub(super) entities: Entities,
    pub(super) relation_depth_exceeded: bool,
}

/// A userset in scope for this request.
struct ScopedUserset {
    uid: EntityUid,
    userset: Option<crate::relations::UsersetId>,
}

pub(super) fn build(snapshot: &Snapshot, request: &Request) -> Result<Slice, RequestError> {
    let same_target = request.principal.uid == request.resource.uid;
    let targets: &[&Target] = if same_target {
        &[&request.principal]
    } else {
        &[&request.principal, &request.resource]
    };

    let mut scope = Vec::new();
    for target in targets {
        scoped_usersets(snapshot, target, &mut scope);
    }

    let mut relation_depth_exceeded = false;
    let mut scratch = SearchScratch::default();
    let mut entities = Vec::with_capacity(request.supplied.len() + 3);
    for target in targets {
        let subject = snapshot.tuples.subject(&target.entity_type, &target.id);
        let mut parents = Vec::new();
        for scoped in &scope {
            let Some(userset) = scoped.userset else {
                continue;
            };
            match snapshot.tuples.membership(
                userset,
                subject,
                snapshot.max_relation_depth,
                &mut scratch,
            ) {
                Membership::Member => parents.push(scoped.uid.clone()),
                Membership::NotMember => {}
                Membership::DepthExceeded => relation_depth_exceeded = true,
            }
        }
        entities.push(target_entity(snapshot, request, target, parents)?);
    }
    if let Some(action) = snapshot.actions.get(&request.action) {
        entities.push(action.clone());
    }
    for supplied in &request.supplied {
        let uid = supplied.uid();
        if targets.iter().any(|t| t.uid == uid) {
            continue;
        }
        entities.push(with_parents(snapshot, supplied.clone(), Vec::new())?);
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

/// Adds the usersets of `target`'s relations to `scope` (once each).
fn scoped_usersets(snapshot: &Snapshot, target: &Target, scope: &mut Vec<ScopedUserset>) {
    let tuples = &snapshot.tuples;
    let object = tuples
        .type_id(&target.entity_type)
        .and_then(|t| tuples.entity(t, &target.id));
    for relation in snapshot.relations.relations(&target.entity_type) {
        let userset = match (object, relation.id) {
            (Some(object), Some(relation)) => tuples.userset(object, relation),
            _ => None,
        };
        scope.push(ScopedUserset {
            uid: snapshot
                .relations
                .userset_uid(&target.entity_type, &target.id, &relation.name),
            userset,
        });
    }
}

/// The principal or resource: the caller's version, else the bundle's, else a bare entity with
/// just its relation attributes; plus the usersets it belongs to.
fn target_entity(
    snapshot: &Snapshot,
    request: &Request,
    target: &Target,
    memberships: Vec<EntityUid>,
) -> Result<Entity, RequestError> {
    if let Some(supplied) = request.supplied.iter().find(|e| e.uid() == target.uid) {
        return with_parents(snapshot, supplied.clone(), memberships);
    }
    if let Some(known) = snapshot.entities.get(&target.uid) {
        return with_parents(snapshot, known.clone(), memberships);
    }
    let attrs = snapshot
        .relations
        .relations(&target.entity_type)
        .iter()
        .map(|relation| {
            let userset =
                snapshot
                    .relations
                    .userset_uid(&target.entity_type, &target.id, &relation.name);
            (
                relation.name.to_string(),
                RestrictedExpression::new_entity_uid(userset),
            )
        });
    Entity::new_with_tags(target.uid.clone(), attrs, memberships, []).map_err(|e| internal(&e))
}

/// Returns `entity` with its ancestors from the bundle and `extra` as direct parents.
fn with_parents(
    snapshot: &Snapshot,
    entity: Entity,
    extra: Vec<EntityUid>,
) -> Result<Entity, RequestError> {
    let (uid, attrs, parents) = entity.into_inner();
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
    RequestError::Invalid {
        field: "entities".to_owned(),
        reason: error_chain(error),
    }
}
