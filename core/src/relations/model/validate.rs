//! Model validation: what OpenFGA refuses when a model is written, refused here with the
//! position of the name at fault.
//!
//! In three passes, each only when the previous one found nothing (later passes assume every
//! name resolves):
//!
//! 1. Names: type names are Cedar entity types, relation names Cedar identifiers; no type and no
//!    relation of a type is defined twice.
//! 2. References: every type and relation a definition names exists; the relation after `from`
//!    (the tupleset) is a direct relation whose type restriction lists plain types only (no
//!    wildcard, no userset), and at least one of those types has the relation before `from`.
//! 3. Cycles and entry points, as OpenFGA's type system checks them:
//!    - a relation may not be defined in terms of itself through relations of the same object
//!      (`define a: b`, `define b: a or [User]`, whatever the operators);
//!    - every relation needs an entry point: some way to hold a subject that starts at a tuple.
//!      Direct types are entry points; `T#r` is one when `T#r` has one; `a from b` when `a`
//!      has one on a type `b` can hold; a union needs one operand with an entry point, an
//!      intersection and an exclusion need all of theirs. A relation met again during the
//!      search counts as having none (`define viewer: viewer from parent` alone can never
//!      hold anybody). The search is OpenFGA's own, quirks included (see [`Visited`]): the
//!      differential test found models a cleaner fixpoint accepts and OpenFGA refuses.

use std::cell::RefCell;
use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::parse::TypeAst;
use super::{Name, RelationDef, RelationModel, Restriction, Rewrite, TypeDef};
use crate::relations::tuple::{is_identifier, parse_entity_type};

type Located = (Name, String);

pub(super) fn validate(types: Vec<TypeAst>) -> Result<RelationModel, Vec<Located>> {
    let mut errors = Vec::new();
    let model = names(types, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    for type_def in &model.types {
        for relation in &type_def.relations {
            references(&model, type_def, &relation.rewrite, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for type_def in &model.types {
        cycles(type_def, &mut errors);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for type_def in &model.types {
        for relation in &type_def.relations {
            let mut steps = 0;
            let found = has_entry_point(
                &model,
                &type_def.name.text,
                &relation.name.text,
                &relation.rewrite,
                &Visited::default(),
                &mut steps,
            );
            if found.is_err() {
                errors.push((
                    relation.name.clone(),
                    format!(
                        "relation `{}` of `{}` is too complex to validate (more than \
                         {MAX_ENTRY_POINT_STEPS} steps to find how it can hold a subject)",
                        relation.name, type_def.name
                    ),
                ));
            } else if found == Ok(false) {
                errors.push((
                    relation.name.clone(),
                    format!(
                        "relation `{}` of `{}` can never hold a subject: every way to it leads \
                         back to itself or through a relation that holds none (OpenFGA: no \
                         entrypoints)",
                        relation.name, type_def.name
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(model)
    } else {
        Err(errors)
    }
}

fn position(name: &Name) -> String {
    format!("line {}", name.line)
}

/// Pass 1: checks names and duplicates, and indexes the model.
fn names(types: Vec<TypeAst>, errors: &mut Vec<Located>) -> RelationModel {
    let mut model = RelationModel::default();
    for type_ast in types {
        if parse_entity_type(&type_ast.name.text).is_err() {
            errors.push((
                type_ast.name.clone(),
                format!(
                    "`{}` is not a valid type name: a type is a Cedar entity type (identifiers \
                     joined by `::`, not a reserved word)",
                    type_ast.name
                ),
            ));
        }
        if let Some(&first) = model.type_index.get(&type_ast.name.text) {
            let earlier = model.types.get(first).map(|t| &t.name);
            let same_file = earlier.is_some_and(|e| e.file == type_ast.name.file);
            errors.push((
                type_ast.name.clone(),
                match earlier {
                    Some(e) if same_file => {
                        format!("type `{}` is already defined at {}", e, position(e))
                    }
                    _ => format!(
                        "type `{}` is already defined in another model file",
                        type_ast.name
                    ),
                },
            ));
            continue;
        }
        let mut type_def = TypeDef {
            name: type_ast.name,
            relations: Vec::new(),
            relation_index: FxHashMap::default(),
        };
        for relation in type_ast.relations {
            if !is_identifier(&relation.name.text) {
                errors.push((
                    relation.name.clone(),
                    format!(
                        "`{}` is not a valid relation name: a relation is a Cedar identifier \
                         (letters, digits and `_`, not starting with a digit, not a reserved \
                         word)",
                        relation.name
                    ),
                ));
            }
            if let Some(earlier) = type_def.relation(&relation.name.text) {
                errors.push((
                    relation.name.clone(),
                    format!(
                        "relation `{}` of `{}` is already defined at {}",
                        relation.name,
                        type_def.name,
                        position(&earlier.name)
                    ),
                ));
                continue;
            }
            type_def
                .relation_index
                .insert(relation.name.text.clone(), type_def.relations.len());
            type_def.relations.push(RelationDef {
                name: relation.name,
                rewrite: relation.rewrite,
            });
        }
        model
            .type_index
            .insert(type_def.name.text.clone(), model.types.len());
        model.types.push(type_def);
    }
    model
}

/// Pass 2: every name a definition uses resolves, and `from` is used over a direct relation.
fn references(
    model: &RelationModel,
    type_def: &TypeDef,
    rewrite: &Rewrite,
    errors: &mut Vec<Located>,
) {
    let unknown_type = |name: &Name| {
        (
            name.clone(),
            format!("type `{name}` is not defined in the relation model"),
        )
    };
    let no_relation = |type_name: &str, name: &Name| {
        (
            name.clone(),
            format!("type `{type_name}` has no relation `{name}`"),
        )
    };
    match rewrite {
        Rewrite::Direct(restrictions) => {
            for restriction in restrictions {
                match restriction {
                    Restriction::Type(t) | Restriction::Wildcard(t) => {
                        if !model.has_type(&t.text) {
                            errors.push(unknown_type(t));
                        }
                    }
                    Restriction::Userset(t, r) => match model.type_def(&t.text) {
                        None => errors.push(unknown_type(t)),
                        Some(target) => {
                            if target.relation(&r.text).is_none() {
                                errors.push(no_relation(&t.text, r));
                            }
                        }
                    },
                }
            }
        }
        Rewrite::Computed(name) => {
            if type_def.relation(&name.text).is_none() {
                errors.push(no_relation(&type_def.name.text, name));
            }
        }
        Rewrite::TupleToUserset { tupleset, computed } => {
            let Some(tupleset_def) = type_def.relation(&tupleset.text) else {
                errors.push(no_relation(&type_def.name.text, tupleset));
                return;
            };
            let plain_types: Option<Vec<&Name>> = match &tupleset_def.rewrite {
                Rewrite::Direct(restrictions) => restrictions
                    .iter()
                    .map(|r| match r {
                        Restriction::Type(t) => Some(t),
                        Restriction::Wildcard(_) | Restriction::Userset(..) => None,
                    })
                    .collect(),
                _ => None,
            };
            let Some(plain_types) = plain_types else {
                errors.push((
                    tupleset.clone(),
                    format!(
                        "`{computed} from {tupleset}` needs `{tupleset}` to be a direct relation \
                         of plain types (such as `define {tupleset}: [Folder]`), without a \
                         wildcard, a userset or a rewrite"
                    ),
                ));
                return;
            };
            let holds_it = plain_types
                .iter()
                .any(|t| model.relation(&t.text, &computed.text).is_some());
            if !holds_it {
                errors.push((
                    computed.clone(),
                    format!(
                        "none of the types `{tupleset}` can hold ({}) has a relation `{computed}`",
                        plain_types
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            for child in children {
                references(model, type_def, child, errors);
            }
        }
        Rewrite::Exclusion(base, subtract) => {
            references(model, type_def, base, errors);
            references(model, type_def, subtract, errors);
        }
    }
}

/// The relations of the same object that `rewrite` names directly (not through `from`).
fn computed_names<'a>(rewrite: &'a Rewrite, out: &mut Vec<&'a Name>) {
    match rewrite {
        Rewrite::Computed(name) => out.push(name),
        Rewrite::Direct(_) | Rewrite::TupleToUserset { .. } => {}
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            children.iter().for_each(|c| computed_names(c, out));
        }
        Rewrite::Exclusion(base, subtract) => {
            computed_names(base, out);
            computed_names(subtract, out);
        }
    }
}

/// Pass 3a: refuses relations defined in terms of themselves through relations of the same
/// object. Each cycle is reported once, at the first of its relations in definition order.
fn cycles(type_def: &TypeDef, errors: &mut Vec<Located>) {
    let edges: Vec<Vec<usize>> = type_def
        .relations
        .iter()
        .map(|relation| {
            let mut names = Vec::new();
            computed_names(&relation.rewrite, &mut names);
            names
                .iter()
                .filter_map(|n| type_def.relation_index.get(&n.text).copied())
                .collect()
        })
        .collect();
    let mut reported: FxHashSet<usize> = FxHashSet::default();
    for start in 0..type_def.relations.len() {
        if reported.contains(&start) {
            continue;
        }
        // Depth-first from `start`, looking for a path back to it through relations after it
        // in definition order or equal to it (so each cycle is found from its first relation).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        let mut on_path: Vec<usize> = vec![start];
        let mut seen: FxHashSet<usize> = FxHashSet::default();
        let mut found: Option<Vec<usize>> = None;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&target) = edges.get(node).and_then(|e| e.get(*next)) else {
                stack.pop();
                on_path.pop();
                continue;
            };
            *next += 1;
            if target == start {
                found = Some(on_path.clone());
                break;
            }
            if target > start && seen.insert(target) {
                stack.push((target, 0));
                on_path.push(target);
            }
        }
        if let Some(cycle) = found {
            reported.extend(cycle.iter().copied());
            let names: Vec<&str> = cycle
                .iter()
                .chain([&start])
                .filter_map(|&i| type_def.relations.get(i).map(|r| r.name.text.as_ref()))
                .collect();
            if let Some(relation) = type_def.relations.get(start) {
                errors.push((
                    relation.name.clone(),
                    format!(
                        "relation `{}` of `{}` is defined in terms of itself ({}); OpenFGA \
                         refuses such a cycle",
                        relation.name,
                        type_def.name,
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                ));
            }
        }
    }
}

/// Which relations have been met by the entry-point search, per type, and whether each was
/// found directly assignable. OpenFGA copies the outer map at every step but shares the
/// per-type maps, so a relation met in one branch counts as met in later branches that share
/// its type's map; emulated here with shared inner maps, because which models OpenFGA accepts
/// depends on it.
type Visited<'a> = FxHashMap<&'a str, Rc<RefCell<FxHashMap<&'a str, bool>>>>;

/// The most steps the entry-point search of one relation may take; a model that needs more is
/// refused as too complex rather than validated for an unbounded time.
const MAX_ENTRY_POINT_STEPS: usize = 100_000;

/// Pass 3b: whether a relation can hold a subject through some tuple, decided as OpenFGA's
/// type system decides it (its `hasEntrypoints`), so that Verdict accepts the models OpenFGA
/// accepts. `Err` when the search took more than [`MAX_ENTRY_POINT_STEPS`].
fn has_entry_point<'a>(
    model: &'a RelationModel,
    type_name: &'a str,
    relation_name: &'a str,
    rewrite: &'a Rewrite,
    visited: &Visited<'a>,
    steps: &mut usize,
) -> Result<bool, ()> {
    *steps += 1;
    if *steps > MAX_ENTRY_POINT_STEPS {
        return Err(());
    }
    let mut v: Visited<'a> = visited.clone();
    v.entry(type_name)
        .or_default()
        .borrow_mut()
        .insert(relation_name, false);
    let seen =
        |v: &Visited<'a>, t: &str, r: &str| v.get(t).and_then(|m| m.borrow().get(r).copied());
    let Some(relation) = model.relation(type_name, relation_name) else {
        return Ok(false);
    };
    match rewrite {
        Rewrite::Direct(_) => {
            for restriction in relation.restrictions() {
                let (t, r) = match restriction {
                    Restriction::Type(_) | Restriction::Wildcard(_) => {
                        if let Some(own) = v.get(type_name) {
                            own.borrow_mut().insert(relation_name, true);
                        }
                        return Ok(true);
                    }
                    Restriction::Userset(t, r) => (t.text.as_ref(), r.text.as_ref()),
                };
                if seen(&v, t, r).is_some() {
                    continue;
                }
                let Some(target) = model.relation(t, r) else {
                    continue;
                };
                if has_entry_point(model, t, r, &target.rewrite, &v, steps)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rewrite::Computed(name) => {
            if let Some(known) = seen(&v, type_name, &name.text) {
                return Ok(known);
            }
            match model.relation(type_name, &name.text) {
                Some(target) => {
                    has_entry_point(model, type_name, &name.text, &target.rewrite, &v, steps)
                }
                None => Ok(false),
            }
        }
        Rewrite::TupleToUserset { tupleset, computed } => {
            let restrictions = model
                .relation(type_name, &tupleset.text)
                .map(RelationDef::restrictions)
                .unwrap_or_default();
            for restriction in restrictions {
                let t = match restriction {
                    Restriction::Type(t)
                    | Restriction::Wildcard(t)
                    | Restriction::Userset(t, _) => t.text.as_ref(),
                };
                let Some(target) = model.relation(t, &computed.text) else {
                    continue;
                };
                if let Some(known) = seen(&v, t, &computed.text) {
                    if known {
                        return Ok(true);
                    }
                    continue;
                }
                if has_entry_point(model, t, &computed.text, &target.rewrite, &v, steps)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        // The operands are searched with the caller's map, not this step's (as OpenFGA does).
        Rewrite::Union(children) => {
            for child in children {
                if has_entry_point(model, type_name, relation_name, child, visited, steps)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rewrite::Intersection(children) => {
            for child in children {
                if !has_entry_point(model, type_name, relation_name, child, visited, steps)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Rewrite::Exclusion(base, subtract) => {
            Ok(
                has_entry_point(model, type_name, relation_name, base, visited, steps)?
                    && has_entry_point(model, type_name, relation_name, subtract, visited, steps)?,
            )
        }
    }
}
