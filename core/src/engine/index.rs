//! The engine's per-snapshot indexes, derived once from a bundle's data so that a request does
//! no work that does not depend on it.
//!
//! Owns: the flattened action entities, the parsed entity type names, each bundle entity's
//! references, the policy scope of every known action, each action's context type, and Cedar's
//! authorizer. Built by [`Index::build`] from the bundle alone (never from the relationship
//! store's or a request's tuples), so every snapshot of one bundle shares one `Index`;
//! `crate::snapshot` keeps it beside the bundle it was built from. The entities and usersets
//! the policies name (`PolicyEntities`) depend on the relation catalog, so a snapshot keeps
//! them itself.

use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Entities, Entity, EntityTypeName, EntityUid, PolicySet, Schema,
};
use rustc_hash::{FxHashMap, FxHashSet};

use super::action_scope::{self, ActionScopes};
use super::context::ContextTypes;
use super::references;
use crate::bundle::Bundle;
use crate::relations::TupleIndex;

/// What the engine derives from one bundle.
#[derive(Debug)]
pub(crate) struct Index {
    /// Action entities with all their ancestors as direct parents.
    pub(crate) actions: FxHashMap<EntityUid, Entity>,
    /// Every action the bundle knows: declared in the schema or the entity files, or named in
    /// a policy's action scope. Sorted, without duplicates.
    pub(crate) known_actions: Vec<EntityUid>,
    /// Every entity type the bundle names, parsed once (a cache: a type only the store's
    /// tuples name is parsed per request).
    pub(crate) type_names: FxHashMap<Box<str>, EntityTypeName>,
    /// Every entity a policy names literally (`Role::"admin"`).
    pub(crate) literal_entities: FxHashSet<EntityUid>,
    /// For each bundle entity, the entities its attributes point at.
    pub(crate) entity_references: FxHashMap<EntityUid, Vec<EntityUid>>,
    /// For each known action, the policies that can apply and the attributes they read.
    pub(crate) action_scopes: ActionScopes,
    /// Each action's context type, for reading contexts without Cedar's JSON parser.
    pub(crate) context_types: ContextTypes,
    /// Cedar's authorizer (stateless; kept here so it is built once).
    pub(crate) authorizer: Authorizer,
}

impl Index {
    /// Derives the indexes of `bundle`.
    pub(crate) fn build(bundle: &Bundle) -> Self {
        let actions = flattened_actions(&bundle.entities);
        let known_actions = known_actions(&actions, &bundle.policies);
        let type_names = known_type_names(
            bundle.schema.as_ref(),
            &bundle.entities,
            &bundle.file_tuples,
        );
        let entity_references = references::entity_references(&bundle.entities);
        let literal_entities = bundle
            .policies
            .policies()
            .flat_map(|policy| policy.entity_literals())
            .collect();
        let action_scopes =
            action_scope::build(&bundle.policies, &bundle.entities, known_actions.iter());
        Self {
            actions,
            known_actions,
            type_names,
            literal_entities,
            entity_references,
            action_scopes,
            context_types: ContextTypes::build(bundle.schema.as_ref()),
            authorizer: Authorizer::new(),
        }
    }
}

/// Returns every entity type the bundle names, parsed once, so requests need not parse them.
fn known_type_names(
    schema: Option<&Schema>,
    entities: &Entities,
    tuples: &TupleIndex,
) -> FxHashMap<Box<str>, EntityTypeName> {
    let mut names: FxHashMap<Box<str>, EntityTypeName> = FxHashMap::default();
    let mut add = |name: EntityTypeName| {
        names.entry(name.to_string().into()).or_insert(name);
    };
    if let Some(schema) = schema {
        schema.entity_types().cloned().for_each(&mut add);
    }
    entities
        .iter()
        .map(|e| e.uid().type_name().clone())
        .for_each(&mut add);
    tuples
        .type_names()
        .filter_map(|name| EntityTypeName::from_str(name).ok())
        .for_each(&mut add);
    if let Ok(action) = EntityTypeName::from_str("Action") {
        add(action);
    }
    names
}

/// Returns every action the bundle knows: the action entities (declared in the schema or the
/// entity files) and the actions a policy's scope names.
fn known_actions(actions: &FxHashMap<EntityUid, Entity>, policies: &PolicySet) -> Vec<EntityUid> {
    let mut known: Vec<EntityUid> = actions.keys().cloned().collect();
    for policy in policies.policies() {
        match policy.action_constraint() {
            ActionConstraint::Any => {}
            ActionConstraint::Eq(uid) => known.push(uid),
            ActionConstraint::In(uids) => known.extend(uids),
        }
    }
    known.sort();
    known.dedup();
    known
}

/// Returns every action entity (type `Action` or `Namespace::Action`) with all its ancestors
/// as direct parents, so a request slice needs just one entity for `action in …`.
fn flattened_actions(entities: &Entities) -> FxHashMap<EntityUid, Entity> {
    entities
        .iter()
        .filter(|e| e.uid().type_name().basename() == "Action")
        .map(|e| {
            let uid = e.uid();
            let ancestors = entities
                .ancestors(&uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            (uid.clone(), Entity::new_no_attrs(uid, ancestors))
        })
        .collect()
}
