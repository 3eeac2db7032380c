//! Tuple files: every line parsed, checked against Cedar's type syntax and the schema, indexed.

use std::str::FromStr;

use cedar_policy::EntityTypeName;
use rayon::prelude::*;
use rustc_hash::FxHashSet;

use super::error::LoadError;
use super::files::BundleFile;
use super::schema::LoadedSchema;
use crate::diagnostics::nearest;
use crate::relations::{
    RelationModel, SubjectText, TupleIndex, TupleIndexBuilder, TupleText, parse_tuple_line,
};

/// A file with more errors than this reports the first ones and a count of the rest.
const MAX_ERRORS_PER_FILE: usize = 50;

/// Bytes of tuple text one parsing task takes (whole lines): small enough to spread a single
/// large file over every core, large enough that a task is worth scheduling.
const PIECE_BYTES: usize = 256 * 1024;

/// Pieces parsed at once before their tuples are added to the index: bounds the memory held
/// by parsed-but-not-indexed tuples to a few MiB whatever the bundle's size.
const PIECES_PER_WAVE: usize = 16;

/// A run of whole lines of one tuple file.
struct Piece<'a> {
    file: &'a BundleFile,
    text: &'a str,
    /// 1-based number of the piece's first line in its file.
    first_line: usize,
}

/// What parsing a piece found: its tuples in order, and its bad lines.
struct ParsedPiece<'a> {
    tuples: Vec<TupleText<'a>>,
    /// (line, column, message) of each bad line, in order.
    problems: Vec<(usize, usize, String)>,
}

impl<'a> AsRef<[TupleText<'a>]> for ParsedPiece<'a> {
    fn as_ref(&self) -> &[TupleText<'a>] {
        &self.tuples
    }
}

/// Parses every tuple file into one index; bad lines are reported, never skipped silently.
///
/// Files are cut into pieces of whole lines that are parsed and checked in parallel (rayon),
/// a wave of pieces at a time; each wave's tuples are then added to the index builder in file
/// order, interned in parallel too (`TupleIndexBuilder::add_runs`: entities and usersets are
/// numbered in first-seen order all the same, so the index is the same as a sequential load's).
///
/// With a relation model, every tuple must be one the model allows (as OpenFGA refuses to
/// write any other).
pub(super) fn load(
    files: &[BundleFile],
    schema: Option<&LoadedSchema>,
    model: Option<&RelationModel>,
    errors: &mut Vec<LoadError>,
) -> TupleIndex {
    let pieces: Vec<Piece<'_>> = files.iter().flat_map(split_into_pieces).collect();
    let mut builder = TupleIndexBuilder::new();
    // Bad lines per file, by the file's position in `files`.
    let mut file_errors = vec![0usize; files.len()];
    let file_index = |file: &BundleFile| {
        files
            .iter()
            .position(|f| std::ptr::eq(f, file))
            .unwrap_or_default()
    };
    for wave in pieces.chunks(PIECES_PER_WAVE) {
        let mut parsed: Vec<ParsedPiece<'_>> = wave
            .par_iter()
            .map(|piece| parse_piece(piece, schema, model))
            .collect();
        builder.add_runs(&parsed);
        for (piece, parsed) in wave.iter().zip(&mut parsed) {
            let count = &mut file_errors[file_index(piece.file)];
            for (line, column, message) in parsed.problems.drain(..) {
                *count += 1;
                if *count <= MAX_ERRORS_PER_FILE {
                    errors.push(LoadError::at(&piece.file.path, line, column, message));
                }
            }
        }
    }
    for (file, count) in files.iter().zip(file_errors) {
        if count > MAX_ERRORS_PER_FILE {
            errors.push(LoadError::file(
                &file.path,
                format!(
                    "{} more invalid tuples not shown",
                    count - MAX_ERRORS_PER_FILE
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

/// Checks one tuple that does not come from a file (a write to the relationship store)
/// exactly as a tuple file's line is checked: Cedar's type syntax, the schema, and the
/// relation model's type restrictions when there is one.
pub(crate) fn check_one(
    tuple: &TupleText<'_>,
    schema: Option<&LoadedSchema>,
    model: Option<&RelationModel>,
) -> Result<(), String> {
    let mut valid_types = FxHashSet::default();
    check(tuple, schema, &mut valid_types).map_err(|(_, message)| message)?;
    model.map_or(Ok(()), |model| model.check_tuple(tuple))
}

/// Cuts a file into runs of whole lines of about [`PIECE_BYTES`] each.
fn split_into_pieces(file: &BundleFile) -> Vec<Piece<'_>> {
    let text = file.text.as_str();
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut first_line) = (0, 1);
    while start < bytes.len() {
        let cut = (start + PIECE_BYTES).min(bytes.len());
        // Just past the next newline: always a character boundary.
        let end = bytes[cut..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |at| cut + at + 1);
        let piece = text.get(start..end).unwrap_or_default();
        pieces.push(Piece {
            file,
            text: piece,
            first_line,
        });
        first_line += piece.bytes().filter(|&b| b == b'\n').count();
        start = end;
    }
    pieces
}

/// Parses and checks one piece's lines.
fn parse_piece<'a>(
    piece: &Piece<'a>,
    schema: Option<&LoadedSchema>,
    model: Option<&RelationModel>,
) -> ParsedPiece<'a> {
    let mut valid_types: FxHashSet<&str> = FxHashSet::default();
    let mut parsed = ParsedPiece {
        tuples: Vec::with_capacity(piece.text.len() / 40),
        problems: Vec::new(),
    };
    for (line_index, line) in piece.text.lines().enumerate() {
        let line_number = piece.first_line + line_index;
        let problem = match parse_tuple_line(line) {
            Ok(None) => continue,
            Ok(Some(tuple)) => match check(&tuple, schema, &mut valid_types)
                .map_err(|(part, message)| (column_of(line, part), message))
                .and_then(|()| model.map_or(Ok(()), |m| m.check_tuple(&tuple).map_err(|e| (1, e))))
            {
                Ok(()) => {
                    parsed.tuples.push(tuple);
                    continue;
                }
                Err(problem) => problem,
            },
            Err(e) => (e.column, e.reason),
        };
        parsed.problems.push((line_number, problem.0, problem.1));
    }
    parsed
}

/// Checks what the syntax cannot: entity types Cedar accepts and, under a schema, declared
/// types and relations. An error carries the part of the tuple it is about (a slice of the
/// tuple's text, for its column) and a "did you mean" when a declared name is near.
fn check<'a>(
    tuple: &TupleText<'a>,
    schema: Option<&LoadedSchema>,
    valid_types: &mut FxHashSet<&'a str>,
) -> Result<(), (&'a str, String)> {
    let (subject_type, subject_relation) = match &tuple.subject {
        SubjectText::Entity(uid) => (uid.entity_type, None),
        SubjectText::Userset { object, relation } => (object.entity_type, Some(*relation)),
        SubjectText::Wildcard { entity_type } => (*entity_type, None),
    };
    for entity_type in [tuple.object.entity_type, subject_type] {
        if !valid_types.contains(entity_type) {
            EntityTypeName::from_str(entity_type).map_err(|_| {
                (
                    entity_type,
                    format!("`{entity_type}` is not a valid Cedar entity type"),
                )
            })?;
            valid_types.insert(entity_type);
        }
    }
    let Some(schema) = schema else {
        return Ok(());
    };
    for entity_type in [tuple.object.entity_type, subject_type] {
        if !schema.declares_type(entity_type) {
            // Sorted, so a tie between two near names is broken the same way every time.
            let mut declared: Vec<&str> = schema.entity_types().collect();
            declared.sort_unstable();
            let hint = match nearest(entity_type, declared) {
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => String::new(),
            };
            return Err((
                entity_type,
                format!("entity type `{entity_type}` is not declared in the schema{hint}"),
            ));
        }
    }
    let undeclared = |entity_type: &str, relation: &'a str| {
        let hint = match nearest(relation, schema.relations_of(entity_type)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("declare `{relation}: Verdict::Userset` on `{entity_type}`"),
        };
        (
            relation,
            format!(
                "relation `{relation}` of `{entity_type}` is not declared in the schema ({hint})"
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

/// Returns the 1-based column, in characters, at which `part` starts in `line`, when `part` is
/// a slice of `line` (the parser's output always is); 1 otherwise.
fn column_of(line: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    let inside = offset
        .checked_add(part.len())
        .is_some_and(|end| end <= line.len());
    match line.get(..offset) {
        Some(before) if inside => before.chars().count() + 1,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_point_at_the_part_of_the_line() {
        let line = "Doc::\"é\"#viewer@User::\"a\"";
        let tuple = parse_tuple_line(line).unwrap().unwrap();
        assert_eq!(column_of(line, tuple.object.entity_type), 1);
        assert_eq!(column_of(line, tuple.relation), 10);
        assert_eq!(column_of(line, "elsewhere"), 1);
    }
}
