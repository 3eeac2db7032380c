//! Which entities a request's slice may need beyond the principal and the resource, computed
//! once per snapshot: the entities and usersets the policies name literally, and for every
//! bundle entity the entities its attributes point at.

use cedar_policy::{Entities, Entity, EntityUid, EvalResult, PolicySet};
use rustc_hash::FxHashMap;

use crate::bundle::{RelationCatalog, USERSET_TYPE};
use crate::relations::parse_entity_uid;

/// Entities and usersets named literally in the policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyEntities {
    /// Literal entities worth putting in every slice: those with attributes in the bundle or
    /// with relations (`Group::"banned".member`). Entities with neither only matter as the
    /// right-hand side of `in`, which needs no entity.
    pub entities: Vec<EntityUid>,
    /// Literal userset entities (`Verdict::Userset::"Group::\"banned\"#member"`), with the
    /// object type, id and relation they name, when the id reads as one (a request finds the
    /// userset in its snapshot's graph by them).
    pub usersets: Vec<(EntityUid, Option<UsersetKey>)>,
}

/// The object type, object id and relation a userset entity stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsersetKey {
    pub entity_type: String,
    pub id: String,
    pub relation: String,
}

/// Returns the type of `uid` as Cedar prints it.
pub(crate) fn type_of(uid: &EntityUid) -> String {
    uid.type_name().to_string()
}

/// Returns the entities and usersets `policies` name literally that a slice may need, given
/// the relations each type has (`relations`) and the bundle's entity data.
pub(crate) fn policy_entities(
    policies: &PolicySet,
    relations: &RelationCatalog,
    entities: &Entities,
) -> PolicyEntities {
    let mut literals: Vec<EntityUid> = policies
        .policies()
        .flat_map(|policy| policy.entity_literals())
        .collect();
    literals.sort_by_key(ToString::to_string);
    literals.dedup();
    let mut out = PolicyEntities::default();
    for uid in literals {
        let entity_type = type_of(&uid);
        if entity_type == USERSET_TYPE {
            let key = userset_key(uid.id().unescaped());
            out.usersets.push((uid, key));
        } else if uid.type_name().basename() == "Action" {
            // Actions reach the slice as the request's action, with their groups as parents.
        } else {
            let has_attributes = entities
                .get(&uid)
                .is_some_and(|e| e.attrs().next().is_some());
            if has_attributes || !relations.relations(&entity_type).is_empty() {
                out.entities.push(uid);
            }
        }
    }
    out
}

/// Reads a userset entity id such as `Group::"banned"#member` as its parts.
fn userset_key(id: &str) -> Option<UsersetKey> {
    let (object, relation) = id.rsplit_once('#')?;
    let object = parse_entity_uid(object).ok()?;
    Some(UsersetKey {
        entity_type: object.entity_type.to_owned(),
        id: object.id.into_owned(),
        relation: relation.to_owned(),
    })
}

/// For each bundle entity, the entities its attributes point at (relations excluded).
pub(super) fn entity_references(entities: &Entities) -> FxHashMap<EntityUid, Vec<EntityUid>> {
    entities
        .iter()
        .filter_map(|entity| {
            let references = referenced_entities(entity);
            (!references.is_empty()).then(|| (entity.uid(), references))
        })
        .collect()
}

/// Returns the entities `entity`'s attributes point at, in records and sets too, except
/// userset entities (relations are answered by the tuple search, not by data).
pub(super) fn referenced_entities(entity: &Entity) -> Vec<EntityUid> {
    let mut out = Vec::new();
    for (_, value) in entity.attrs() {
        if let Ok(value) = value {
            collect(&value, &mut out);
        }
    }
    out.sort_by_key(ToString::to_string);
    out.dedup();
    out
}

fn collect(value: &EvalResult, out: &mut Vec<EntityUid>) {
    match value {
        EvalResult::EntityUid(uid) => {
            if type_of(uid) != USERSET_TYPE {
                out.push(uid.clone());
            }
        }
        EvalResult::Set(set) => set.iter().for_each(|v| collect(v, out)),
        EvalResult::Record(record) => record.iter().for_each(|(_, v)| collect(v, out)),
        EvalResult::Bool(_)
        | EvalResult::Long(_)
        | EvalResult::String(_)
        | EvalResult::ExtensionValue(_) => {}
    }
}
