//! The optional Cedar schema, and the catalog of relations each entity type exposes to Cedar.
//!
//! Relations reach Cedar as attributes whose values are userset entities of type
//! [`USERSET_TYPE`]. Under a schema, an entity type's relations are exactly its attributes of
//! that type, and every tuple must use a declared relation; without a schema, a type's
//! relations are those its objects have in some tuple.
//!
//! Verdict declares `namespace Verdict { entity Userset in [Userset]; }` itself unless the
//! schema already does, so a schema only has to reference `Verdict::Userset`.

use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema, SchemaError, SchemaFragment};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value, json};

use super::error::LoadError;
use super::files::BundleFile;
use crate::diagnostics::{error_chain, line_column, located_messages, serde_position};
use crate::relations::{RelationId, RelationModel, TupleGraph};

/// The Cedar entity type of userset entities.
pub const USERSET_TYPE: &str = "Verdict::Userset";

/// What Verdict adds to a schema that does not declare [`USERSET_TYPE`].
const USERSET_FRAGMENT: &str = "namespace Verdict { entity Userset in [Userset]; }";

/// A parsed schema and what Verdict needs to know about it.
#[derive(Debug)]
pub(crate) struct LoadedSchema {
    pub(super) schema: Schema,
    /// Every declared entity type, fully qualified.
    entity_types: FxHashSet<String>,
    /// Relation attributes per entity type, fully qualified.
    relations: FxHashMap<String, Vec<String>>,
}

impl LoadedSchema {
    /// Returns whether the schema declares `entity_type`.
    pub(super) fn declares_type(&self, entity_type: &str) -> bool {
        self.entity_types.contains(entity_type)
    }

    /// Returns every declared entity type, fully qualified.
    pub(super) fn entity_types(&self) -> impl Iterator<Item = &str> {
        self.entity_types.iter().map(String::as_str)
    }

    /// Returns the declared relation attributes of `entity_type`.
    pub(super) fn relations_of(&self, entity_type: &str) -> impl Iterator<Item = &str> {
        self.relations
            .get(entity_type)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Returns whether `relation` is a declared relation attribute of `entity_type`.
    pub(super) fn declares_relation(&self, entity_type: &str, relation: &str) -> bool {
        self.relations
            .get(entity_type)
            .is_some_and(|list| list.iter().any(|r| r == relation))
    }
}

/// Parses and combines the schema files; `None` when there are none or they are invalid.
pub(super) fn load(files: &[BundleFile], errors: &mut Vec<LoadError>) -> Option<LoadedSchema> {
    if files.is_empty() {
        return None;
    }
    let before = errors.len();
    let mut fragments = Vec::new();
    for file in files {
        let parsed = if file.relative.ends_with(".json") {
            SchemaFragment::from_json_str(&file.text).map_err(|e| located_messages(&e))
        } else {
            SchemaFragment::from_cedarschema_str(&file.text)
                .map(|(fragment, _warnings)| fragment)
                .map_err(|e| located_messages(&e))
        };
        match parsed {
            Ok(fragment) => fragments.push(fragment),
            Err(located) => {
                for l in located {
                    let (line, column) = match (l.offset, serde_position(&l.message)) {
                        (Some(offset), _) => line_column(&file.text, offset),
                        (None, Some(position)) => position,
                        (None, None) => (1, 1),
                    };
                    errors.push(LoadError::at(&file.path, line, column, l.message));
                }
            }
        }
    }
    if errors.len() > before {
        return None;
    }

    let relations = relation_attributes(&fragments);
    let declared = declared_type_names(&fragments);
    let schema = match combine(fragments) {
        Ok(schema) => schema,
        Err(error) => {
            if let CombineError::Schema(schema_error) = &error
                && let SchemaError::TypeNotDefined(undefined) = schema_error.as_ref()
                && let Some(located) = locate_undefined_types(undefined, files, &declared)
            {
                errors.extend(located);
                return None;
            }
            let message = error.to_string();
            let path = match files {
                [only] => only.path.clone(),
                _ => files
                    .first()
                    .and_then(|f| f.path.parent())
                    .map(|p| p.join("*.cedarschema"))
                    .unwrap_or_default(),
            };
            errors.push(LoadError::file(path, message));
            return None;
        }
    };
    let entity_types = schema.entity_types().map(ToString::to_string).collect();
    Some(LoadedSchema {
        schema,
        entity_types,
        relations,
    })
}

/// Why the fragments do not make a schema.
#[derive(Debug)]
enum CombineError {
    /// Cedar's own error, kept whole so its labels can be located in the files.
    Schema(Box<SchemaError>),
    /// Verdict's userset fragment did not parse (a bug, reported rather than panicking).
    Userset(String),
}

impl std::fmt::Display for CombineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Schema(error) => f.write_str(&error_chain(error.as_ref())),
            Self::Userset(message) => f.write_str(message),
        }
    }
}

/// Builds the schema, adding the userset type unless the fragments declare it.
fn combine(fragments: Vec<SchemaFragment>) -> Result<Schema, CombineError> {
    let userset = SchemaFragment::from_cedarschema_str(USERSET_FRAGMENT)
        .map(|(fragment, _)| fragment)
        .map_err(|e| CombineError::Userset(error_chain(&e)))?;
    let with_userset = fragments.iter().cloned().chain([userset]);
    match Schema::from_schema_fragments(with_userset) {
        Ok(schema) => Ok(schema),
        Err(first_error) => match Schema::from_schema_fragments(fragments) {
            // The schema declares `Verdict::Userset` itself.
            Ok(schema) if schema.entity_types().any(|t| t.to_string() == USERSET_TYPE) => {
                Ok(schema)
            }
            _ => Err(CombineError::Schema(Box::new(first_error))),
        },
    }
}

/// Returns the entity and common types the fragments declare, qualified by namespace and
/// sorted, for "did you mean" hints.
fn declared_type_names(fragments: &[SchemaFragment]) -> Vec<String> {
    let mut names = Vec::new();
    for fragment in fragments {
        let Ok(Value::Object(namespaces)) = fragment.clone().to_json_value() else {
            continue;
        };
        for (namespace, body) in &namespaces {
            for section in ["entityTypes", "commonTypes"] {
                let Some(Value::Object(types)) = body.get(section) else {
                    continue;
                };
                for name in types.keys() {
                    names.push(if namespace.is_empty() {
                        name.clone()
                    } else {
                        format!("{namespace}::{name}")
                    });
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Turns Cedar's "failed to resolve types: A, A, …" (labels with byte offsets, no file) into one
/// error per use of an undeclared type, at its file:line:column, with the declared type nearest
/// to it. Cedar's labels do not say which file they are in: a label belongs to the first
/// schema file whose text at that span is a type name. Returns `None` when a label cannot be
/// placed (the JSON schema format has no source locations), so Cedar's message is kept.
fn locate_undefined_types(
    error: &cedar_policy::schema_errors::TypeNotDefinedError,
    files: &[BundleFile],
    declared: &[String],
) -> Option<Vec<LoadError>> {
    let is_type_name = |text: &str| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
    };
    let mut located = Vec::new();
    for label in miette::Diagnostic::labels(error)? {
        let span = label.offset()..label.offset() + label.len();
        let (file, name) = files.iter().find_map(|file| {
            let name = file.text.get(span.clone())?;
            is_type_name(name).then_some((file, name))
        })?;
        let (line, column) = line_column(&file.text, span.start);
        // A use inside a namespace may name the type without its namespace.
        let hint = crate::diagnostics::nearest(
            name,
            declared.iter().map(|d| {
                if name.contains("::") {
                    d.as_str()
                } else {
                    d.rsplit("::").next().unwrap_or(d)
                }
            }),
        )
        .map(|near| format!(" (did you mean `{near}`?)"))
        .unwrap_or_default();
        let message = format!("type `{name}` is not declared{hint}");
        located.push(LoadError::at(&file.path, line, column, message.clone()));
        // Cedar locates only the first use: the others are found in the text, so each is
        // reported where it is (a list of bare names was all an author had before, issue 21).
        let first = (file.path.clone(), span.start);
        for other in files {
            for offset in other_type_uses(&other.text, name) {
                if (other.path.clone(), offset) != first {
                    let (line, column) = line_column(&other.text, offset);
                    located.push(LoadError::at(&other.path, line, column, message.clone()));
                }
            }
        }
    }
    located.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    located.dedup();
    (!located.is_empty()).then_some(located)
}

/// Returns the byte offsets at which `name` is used as a type in Cedar schema text: a whole
/// name, outside comments and strings, after `:`, `[`, `,`, `<`, `=` or `in`, and not itself
/// an attribute name (followed by `:` or `?:`).
fn other_type_uses(text: &str, name: &str) -> Vec<usize> {
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut uses = Vec::new();
    for (offset, _) in text.match_indices(name) {
        let before = &text[..offset];
        let after = &text[offset + name.len()..];
        if before.chars().next_back().is_some_and(is_name_char)
            || after.chars().next().is_some_and(is_name_char)
        {
            continue;
        }
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let line_before = &before[line_start..];
        if line_before.contains("//") || line_before.matches('"').count() % 2 == 1 {
            continue;
        }
        let after = after.trim_start();
        if after.starts_with(':') || after.starts_with("?:") {
            continue;
        }
        let before = before.trim_end();
        let after_separator = before.ends_with([':', '[', ',', '<', '=']);
        let after_in = before
            .strip_suffix("in")
            .is_some_and(|rest| !rest.chars().next_back().is_some_and(is_name_char));
        if after_separator || after_in {
            uses.push(offset);
        }
    }
    uses
}

/// Finds attributes typed `Verdict::Userset` in the fragments' JSON form.
fn relation_attributes(fragments: &[SchemaFragment]) -> FxHashMap<String, Vec<String>> {
    let mut relations: FxHashMap<String, Vec<String>> = FxHashMap::default();
    for fragment in fragments {
        let Ok(Value::Object(namespaces)) = fragment.clone().to_json_value() else {
            continue;
        };
        for (namespace, body) in &namespaces {
            let Some(Value::Object(entity_types)) = body.get("entityTypes") else {
                continue;
            };
            for (name, definition) in entity_types {
                let Some(Value::Object(attributes)) = definition
                    .get("shape")
                    .and_then(|shape| shape.get("attributes"))
                else {
                    continue;
                };
                let qualified = if namespace.is_empty() {
                    name.clone()
                } else {
                    format!("{namespace}::{name}")
                };
                for (attribute, ty) in attributes {
                    if is_userset_type(namespace, ty) {
                        relations
                            .entry(qualified.clone())
                            .or_default()
                            .push(attribute.clone());
                    }
                }
            }
        }
    }
    relations
}

fn is_userset_type(namespace: &str, ty: &Value) -> bool {
    let kind = ty.get("type").and_then(Value::as_str);
    let name = match kind {
        Some("Entity" | "EntityOrCommon") => ty.get("name").and_then(Value::as_str),
        // The JSON schema format also allows `{"type": "Verdict::Userset"}`.
        other => other,
    };
    match name {
        Some(name) => name == USERSET_TYPE || (namespace == "Verdict" && name == "Userset"),
        None => false,
    }
}

/// One relation an entity type exposes to Cedar as an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The attribute name, such as `viewer`.
    pub name: Box<str>,
    /// The relation in the tuple index, if any tuple uses it.
    pub id: Option<RelationId>,
}

/// The relations of each entity type, as Cedar attributes.
///
/// The relation `viewer` of `Document::"roadmap"` is the attribute `viewer` of that entity,
/// whose value is the userset entity `Verdict::Userset::"Document::\"roadmap\"#viewer"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationCatalog {
    by_type: FxHashMap<Box<str>, Vec<Relation>>,
    userset_type: EntityTypeName,
}

impl RelationCatalog {
    /// Starts from the schema's declared relations (or nothing).
    pub(super) fn new(schema: Option<&LoadedSchema>) -> Result<Self, String> {
        let mut by_type: FxHashMap<Box<str>, Vec<Relation>> = FxHashMap::default();
        if let Some(schema) = schema {
            for (entity_type, names) in &schema.relations {
                by_type.insert(
                    entity_type.as_str().into(),
                    names
                        .iter()
                        .map(|name| Relation {
                            name: name.as_str().into(),
                            id: None,
                        })
                        .collect(),
                );
            }
        }
        let userset_type = EntityTypeName::from_str(USERSET_TYPE).map_err(|e| error_chain(&e))?;
        Ok(Self {
            by_type,
            userset_type,
        })
    }

    /// Adds the model's relations or, without a model, the tuples' relations (only without a
    /// schema: a schema's list is complete), and resolves every relation to its id in the
    /// index.
    pub(crate) fn with_tuple_relations(
        mut self,
        index: &TupleGraph,
        model: Option<&RelationModel>,
        from_schema: bool,
    ) -> Self {
        if let (Some(model), false) = (model, from_schema) {
            for (entity_type, relations) in model.types() {
                let relations: Vec<Relation> = relations
                    .map(|name| Relation {
                        name: name.into(),
                        id: None,
                    })
                    .collect();
                if !relations.is_empty() {
                    self.by_type.insert(entity_type.into(), relations);
                }
            }
        } else if !from_schema {
            for entity_type in index.type_names() {
                let Some(type_id) = index.type_id(entity_type) else {
                    continue;
                };
                let relations = index.relations_of_type(type_id);
                if relations.is_empty() {
                    continue;
                }
                self.by_type.insert(
                    entity_type.into(),
                    relations
                        .iter()
                        .map(|&id| Relation {
                            name: index.relation_name(id).into(),
                            id: None,
                        })
                        .collect(),
                );
            }
        }
        for relations in self.by_type.values_mut() {
            for relation in relations.iter_mut() {
                relation.id = index.relation_id(&relation.name);
            }
            relations.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self
    }

    /// Returns the relations of `entity_type`, sorted by name.
    pub fn relations(&self, entity_type: &str) -> &[Relation] {
        self.by_type.get(entity_type).map_or(&[], Vec::as_slice)
    }

    /// Returns whether `name` is a relation of `entity_type`.
    pub fn is_relation(&self, entity_type: &str, name: &str) -> bool {
        self.relations(entity_type).iter().any(|r| &*r.name == name)
    }

    /// Returns the uid of the userset entity for the `relation` of `entity_type::id`.
    pub fn userset_uid(&self, entity_type: &str, id: &str, relation: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(
            self.userset_type.clone(),
            EntityId::new(userset_entity_id(entity_type, id, relation)),
        )
    }

    /// Returns the relation attributes of `entity_type::id` in Cedar's JSON entity format.
    pub fn attributes_json(&self, entity_type: &str, id: &str) -> Map<String, Value> {
        self.relations(entity_type)
            .iter()
            .map(|relation| {
                let userset = userset_entity_id(entity_type, id, &relation.name);
                (
                    relation.name.to_string(),
                    json!({"__entity": {"type": USERSET_TYPE, "id": userset}}),
                )
            })
            .collect()
    }
}

/// The id of a userset entity: the object uid as Cedar prints it, `#`, the relation. Built by
/// hand rather than with `format!` (the same text as `display_uid`): it is made for every
/// relation in a request's slice.
fn userset_entity_id(entity_type: &str, id: &str, relation: &str) -> String {
    let mut out = String::with_capacity(entity_type.len() + id.len() + relation.len() + 5);
    out.push_str(entity_type);
    out.push_str("::\"");
    out.extend(id.escape_debug());
    out.push_str("\"#");
    out.push_str(relation);
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn type_uses_are_found_but_not_declarations_attributes_or_comments() {
        let text = "entity Doc in [Team, Doc] { Doc: Long, a: Set<Doc> };\n// Doc: x\naction r appliesTo { resource: Doc, principal: [ADoc] };\n";
        let uses: Vec<(usize, usize)> = other_type_uses(text, "Doc")
            .into_iter()
            .map(|o| line_column(text, o))
            .collect();
        assert_eq!(uses, [(1, 22), (1, 47), (3, 32)]);
    }

    fn file(name: &str, text: &str) -> BundleFile {
        BundleFile {
            path: PathBuf::from(format!("b/{name}")),
            relative: name.to_owned(),
            text: text.to_owned(),
            digest: [0; 32],
        }
    }

    #[test]
    fn userset_ids_read_as_the_object_uid_and_the_relation() {
        for (entity_type, id) in [
            ("Doc", "d1"),
            ("Acme::Doc", "a \"quoted\" id\n"),
            ("T", "ünï"),
        ] {
            assert_eq!(
                userset_entity_id(entity_type, id, "viewer"),
                format!("{}#viewer", crate::relations::display_uid(entity_type, id))
            );
        }
    }

    #[test]
    fn userset_attributes_are_relations_and_the_type_is_added() {
        let mut errors = Vec::new();
        let schema = load(
            &[file(
                "s.cedarschema",
                "entity User in [Verdict::Userset];\nnamespace Acme { entity Doc { viewer: Verdict::Userset, title: String }; }",
            )],
            &mut errors,
        )
        .unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(schema.declares_relation("Acme::Doc", "viewer"));
        assert!(!schema.declares_relation("Acme::Doc", "title"));
        assert!(schema.declares_type("Verdict::Userset"));
        assert!(schema.declares_type("User"));
    }

    #[test]
    fn a_schema_may_declare_the_userset_type_itself() {
        let mut errors = Vec::new();
        let schema = load(
            &[file(
                "s.cedarschema",
                "namespace Verdict { entity Userset in [Userset]; }\nentity Doc { owner: Verdict::Userset };",
            )],
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(schema.unwrap().declares_relation("Doc", "owner"));
    }

    #[test]
    fn schema_syntax_errors_are_located() {
        let mut errors = Vec::new();
        let schema = load(
            &[file(
                "s.cedarschema",
                "entity User;\nentity Doc { owner: };\n",
            )],
            &mut errors,
        );
        assert!(schema.is_none());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("b/s.cedarschema:2:"),
            "{errors:?}"
        );
    }

    #[test]
    fn undeclared_types_are_reported_against_the_file() {
        let mut errors = Vec::new();
        let schema = load(
            &[file("s.cedarschema", "entity Doc in [Folder];")],
            &mut errors,
        );
        assert!(schema.is_none());
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "b/s.cedarschema:1:16: type `Folder` is not declared"
        );
    }

    #[test]
    fn each_use_of_a_misspelt_type_is_located_with_the_declared_name() {
        let mut errors = Vec::new();
        let a = "entity Documnet;\nentity User;\n";
        let b = "action read appliesTo { principal: User, resource: Document };\n\naction write appliesTo { principal: User, resource: [Document] };\n";
        let schema = load(
            &[file("a.cedarschema", a), file("b.cedarschema", b)],
            &mut errors,
        );
        assert!(schema.is_none());
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "b/b.cedarschema:1:52: type `Document` is not declared (did you mean `Documnet`?)",
                "b/b.cedarschema:3:54: type `Document` is not declared (did you mean `Documnet`?)",
            ]
        );
    }
}
