//! The relation model: OpenFGA's modelling language (schema 1.1) read from a bundle's `*.fga`
//! files, validated as OpenFGA validates it, and the rewrites it defines.
//!
//! Owns: the model's syntax (`parse.rs`), its validation (`validate.rs`: unknown types and
//! relations, the cycles and relations without entry points OpenFGA refuses, `from` over a
//! relation that is not direct), and checking a tuple against the model's type restrictions.
//!
//! Does not own: reading files (the bundle loader hands over their text), evaluation (`check.rs`
//! walks a model's rewrites over the tuple index).
//!
//! A model is several files or none. Each file is a complete OpenFGA file (`model`,
//! `schema 1.1`, then types); the types of all files form one model, and a relation may name a
//! type of another file. Without any file there is no model, and relations are what the tuples
//! say, as before models existed.
//!
//! Type names are Cedar entity types (`User`, `Acme::Document`), so `user:anne` in OpenFGA is
//! `user::"anne"` in a tuple; relation names are Cedar identifiers, because Cedar reads them as
//! attributes (`resource.viewer`).

mod parse;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::tuple::{SubjectText, TupleText, display_uid};

/// One model file's text and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ModelSource<'a> {
    /// The path errors name.
    pub path: &'a Path,
    /// The file's text.
    pub text: &'a str,
}

/// A problem in a model file, located by its 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct ModelError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, lowercase, one line.
    pub message: String,
}

/// A syntax error inside one file, before its path is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// A name as written, with its position (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) text: Box<str>,
    pub(crate) line: usize,
    pub(crate) column: usize,
    /// Which model file it is in (an index into the sources).
    pub(crate) file: usize,
}

impl Name {
    fn new(text: &str, line: usize, column: usize) -> Self {
        Self {
            text: text.into(),
            line,
            column,
            file: 0,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One entry of a direct type restriction: what a tuple's subject may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restriction {
    /// `[User]`: an entity of the type.
    Type(Name),
    /// `[User:*]`: the wildcard of the type (every entity of it).
    Wildcard(Name),
    /// `[Team#member]`: a userset of the type.
    Userset(Name, Name),
}

/// How a relation is defined (OpenFGA's userset rewrites).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// `[…]`: the subjects of the object's tuples for this relation, as restricted.
    Direct(Vec<Restriction>),
    /// `editor`: another relation of the same object.
    Computed(Name),
    /// `viewer from parent`: the `computed` relation of every object the `tupleset` relation
    /// holds.
    TupleToUserset { tupleset: Name, computed: Name },
    /// `a or b`.
    Union(Vec<Rewrite>),
    /// `a and b`.
    Intersection(Vec<Rewrite>),
    /// `a but not b`.
    Exclusion(Box<Rewrite>, Box<Rewrite>),
}

impl Rewrite {
    /// Returns the direct type restriction, if the definition has one (it can only come
    /// first, so it is found along the first operands).
    fn direct(&self) -> Option<&[Restriction]> {
        match self {
            Self::Direct(restrictions) => Some(restrictions),
            Self::Union(children) | Self::Intersection(children) => {
                children.first().and_then(Self::direct)
            }
            Self::Exclusion(base, _) => base.direct(),
            Self::Computed(_) | Self::TupleToUserset { .. } => None,
        }
    }
}

/// One relation of a type.
#[derive(Debug, Clone)]
pub(crate) struct RelationDef {
    pub(crate) name: Name,
    pub(crate) rewrite: Rewrite,
}

impl RelationDef {
    /// Returns the direct type restriction: empty when tuples cannot name this relation.
    pub(crate) fn restrictions(&self) -> &[Restriction] {
        self.rewrite.direct().unwrap_or(&[])
    }
}

/// One type and its relations.
#[derive(Debug, Clone)]
pub(crate) struct TypeDef {
    pub(crate) name: Name,
    pub(crate) relations: Vec<RelationDef>,
    relation_index: FxHashMap<Box<str>, usize>,
}

impl TypeDef {
    pub(crate) fn relation(&self, name: &str) -> Option<&RelationDef> {
        self.relations.get(*self.relation_index.get(name)?)
    }
}

/// A validated relation model. Immutable once built.
#[derive(Debug, Clone, Default)]
pub struct RelationModel {
    types: Vec<TypeDef>,
    type_index: FxHashMap<Box<str>, usize>,
}

impl RelationModel {
    /// Parses and validates every model file as one model: `Ok(None)` without files, else the
    /// model or every error found (syntax errors stop their file at the first one).
    pub fn build(sources: &[ModelSource<'_>]) -> Result<Option<Self>, Vec<ModelError>> {
        if sources.is_empty() {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (file, source) in sources.iter().enumerate() {
            match parse::parse_file(source.text) {
                Ok(types) => parsed.extend(types.into_iter().map(|mut t| {
                    set_file(&mut t, file);
                    t
                })),
                Err(SyntaxError {
                    line,
                    column,
                    message,
                }) => errors.push(ModelError {
                    path: source.path.to_path_buf(),
                    line,
                    column,
                    message,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let model = validate::validate(parsed).map_err(|located| {
            located
                .into_iter()
                .map(|(name, message)| ModelError {
                    path: sources
                        .get(name.file)
                        .map(|s| s.path.to_path_buf())
                        .unwrap_or_default(),
                    line: name.line,
                    column: name.column,
                    message,
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Some(model))
    }

    pub(crate) fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(*self.type_index.get(name)?)
    }

    pub(crate) fn relation(&self, entity_type: &str, relation: &str) -> Option<&RelationDef> {
        self.type_def(entity_type)?.relation(relation)
    }

    /// Returns whether the model defines `entity_type`.
    pub fn has_type(&self, entity_type: &str) -> bool {
        self.type_index.contains_key(entity_type)
    }

    /// Returns whether the model defines `relation` on `entity_type`.
    pub fn has_relation(&self, entity_type: &str, relation: &str) -> bool {
        self.relation(entity_type, relation).is_some()
    }

    /// Returns every type with its relation names, in definition order.
    pub fn types(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
        self.types.iter().map(|t| {
            (
                t.name.text.as_ref(),
                t.relations.iter().map(|r| r.name.text.as_ref()),
            )
        })
    }

    /// Checks a tuple against the model, as OpenFGA checks a write: the object's type and
    /// relation are defined, the relation is directly assignable and its type restriction
    /// allows the subject. Returns why not, as a message.
    pub fn check_tuple(&self, tuple: &TupleText<'_>) -> Result<(), String> {
        let object_type = tuple.object.entity_type;
        let Some(type_def) = self.type_def(object_type) else {
            return Err(format!(
                "type `{object_type}` is not defined in the relation model"
            ));
        };
        let Some(relation) = type_def.relation(tuple.relation) else {
            return Err(format!(
                "type `{object_type}` has no relation `{}` in the relation model",
                tuple.relation
            ));
        };
        if let SubjectText::Userset {
            object,
            relation: subject_relation,
        } = &tuple.subject
            && *object == tuple.object
            && *subject_relation == tuple.relation
        {
            // OpenFGA refuses such a write: a userset always holds its own relation.
            return Err(format!(
                "the tuple says `{}#{}` holds itself, which is always true; OpenFGA refuses such an implicit tuple",
                display_uid(object.entity_type, &object.id),
                tuple.relation
            ));
        }
        self.check_subject(object_type, relation, &tuple.subject)
    }

    fn check_subject(
        &self,
        object_type: &str,
        relation: &RelationDef,
        subject: &SubjectText<'_>,
    ) -> Result<(), String> {
        let restrictions = relation.restrictions();
        if restrictions.is_empty() {
            return Err(format!(
                "relation `{}` of `{object_type}` is not directly assignable (it has no type \
                 restriction `[…]`), so no tuple can grant it",
                relation.name
            ));
        }
        let allowed = restrictions.iter().any(|r| match (r, subject) {
            (Restriction::Type(t), SubjectText::Entity(uid)) => *t.text == *uid.entity_type,
            (Restriction::Wildcard(t), SubjectText::Wildcard { entity_type }) => {
                *t.text == **entity_type
            }
            (
                Restriction::Userset(t, r),
                SubjectText::Userset {
                    object,
                    relation: subject_relation,
                },
            ) => *t.text == *object.entity_type && *r.text == **subject_relation,
            _ => false,
        });
        if allowed {
            return Ok(());
        }
        let written = match subject {
            SubjectText::Entity(uid) => format!("an entity of type `{}`", uid.entity_type),
            SubjectText::Wildcard { entity_type } => format!("the wildcard `{entity_type}::*`"),
            SubjectText::Userset { object, relation } => format!(
                "the userset `{}#{relation}`",
                display_uid(object.entity_type, &object.id)
            ),
        };
        Err(format!(
            "relation `{}` of `{object_type}` cannot hold {written}; its type restriction is \
             `[{}]`",
            relation.name,
            restrictions
                .iter()
                .map(restriction_text)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn restriction_text(restriction: &Restriction) -> String {
    match restriction {
        Restriction::Type(t) => t.text.to_string(),
        Restriction::Wildcard(t) => format!("{}:*", t.text),
        Restriction::Userset(t, r) => format!("{}#{}", t.text, r.text),
    }
}

fn set_file(type_ast: &mut parse::TypeAst, file: usize) {
    fn in_rewrite(rewrite: &mut Rewrite, file: usize) {
        match rewrite {
            Rewrite::Direct(restrictions) => {
                for restriction in restrictions {
                    match restriction {
                        Restriction::Type(n) | Restriction::Wildcard(n) => n.file = file,
                        Restriction::Userset(t, r) => {
                            t.file = file;
                            r.file = file;
                        }
                    }
                }
            }
            Rewrite::Computed(n) => n.file = file,
            Rewrite::TupleToUserset { tupleset, computed } => {
                tupleset.file = file;
                computed.file = file;
            }
            Rewrite::Union(children) | Rewrite::Intersection(children) => {
                children.iter_mut().for_each(|c| in_rewrite(c, file));
            }
            Rewrite::Exclusion(base, subtract) => {
                in_rewrite(base, file);
                in_rewrite(subtract, file);
            }
        }
    }
    type_ast.name.file = file;
    for relation in &mut type_ast.relations {
        relation.name.file = file;
        in_rewrite(&mut relation.rewrite, file);
    }
}

#[cfg(test)]
mod tests;
