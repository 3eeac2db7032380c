//! Tuple files: every line parsed, checked against Cedar's type syntax and the schema, indexed.

use std::str::FromStr;

use cedar_policy::EntityTypeName;
use rustc_hash::FxHashSet;

use super::error::LoadError;
use super::files::BundleFile;
use super::schema::LoadedSchema;
use crate::relations::{
    RelationModel, SubjectText, TupleIndex, TupleIndexBuilder, TupleText, parse_tuple_line,
};

/// A file with more errors than this reports the first ones and a count of the rest.
const MAX_ERRORS_PER_FILE: usize = 50;

/// Parses every tuple file into one index; bad lines are reported, never skipped silently.
/// With a relation model, every tuple must be one the model allows (as OpenFGA refuses to
/// write any other).
pub(super) fn load(
    files: &[BundleFile],
    schema: Option<&LoadedSchema>,
    model: Option<&RelationModel>,
    errors: &mut Vec<LoadError>,
) -> TupleIndex {
    let mut builder = TupleIndexBuilder::new();
    let mut valid_types: FxHashSet<String> = FxHashSet::default();
    for file in files {
        let mut file_errors = 0usize;
        for (line_index, line) in file.text.lines().enumerate() {
            let line_number = line_index + 1;
            let problem = match parse_tuple_line(line) {
                Ok(None) => continue,
                Ok(Some(tuple)) => match check(&tuple, schema, &mut valid_types).and_then(|()| {
                    model.map_or(Ok(()), |m| m.check_tuple(&tuple).map_err(|e| (1, e)))
                }) {
                    Ok(()) => {
                        builder.add(&tuple);
                        continue;
                    }
                    Err(problem) => problem,
                },
                Err(e) => (e.column, e.reason),
            };
            file_errors += 1;
            if file_errors <= MAX_ERRORS_PER_FILE {
                errors.push(LoadError::at(&file.path, line_number, problem.0, problem.1));
            }
        }
        if file_errors > MAX_ERRORS_PER_FILE {
            errors.push(LoadError::file(
                &file.path,
                format!(
                    "{} more invalid tuples not shown",
                    file_errors - MAX_ERRORS_PER_FILE
                ),
            ));
        }
    }
    match builder.finish() {
        Ok(index) => index,
        Err(full) => {
            let path = files.first().map(|f| f.path.clone()).unwrap_or_default();
            errors.push(LoadError::file(path, full.to_string()));
            TupleIndex::default()
        }
    }
}

/// Checks what the syntax cannot: entity types Cedar accepts and, under a schema, declared
/// types and relations. Errors carry a column (always 1: the tuple as a whole).
fn check(
    tuple: &TupleText<'_>,
    schema: Option<&LoadedSchema>,
    valid_types: &mut FxHashSet<String>,
) -> Result<(), (usize, String)> {
    let (subject_type, subject_relation) = match &tuple.subject {
        SubjectText::Entity(uid) => (uid.entity_type, None),
        SubjectText::Userset { object, relation } => (object.entity_type, Some(*relation)),
        SubjectText::Wildcard { entity_type } => (*entity_type, None),
    };
    for entity_type in [tuple.object.entity_type, subject_type] {
        if !valid_types.contains(entity_type) {
            EntityTypeName::from_str(entity_type).map_err(|_| {
                (
                    1,
                    format!("`{entity_type}` is not a valid Cedar entity type"),
                )
            })?;
            valid_types.insert(entity_type.to_owned());
        }
    }
    let Some(schema) = schema else {
        return Ok(());
    };
    for entity_type in [tuple.object.entity_type, subject_type] {
        if !schema.declares_type(entity_type) {
            return Err((
                1,
                format!("entity type `{entity_type}` is not declared in the schema"),
            ));
        }
    }
    let undeclared = |entity_type: &str, relation: &str| {
        (
            1,
            format!(
                "relation `{relation}` of `{entity_type}` is not declared in the schema \
                 (declare `{relation}: Verdict::Userset` on `{entity_type}`)"
            ),
        )
    };
    if !schema.declares_relation(tuple.object.entity_type, tuple.relation) {
        return Err(undeclared(tuple.object.entity_type, tuple.relation));
    }
    if let Some(relation) = subject_relation
        && !schema.declares_relation(subject_type, relation)
    {
        return Err(undeclared(subject_type, relation));
    }
    Ok(())
}
