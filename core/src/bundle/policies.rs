//! Cedar policy files: splitting, parsing, ids, and strict validation against the schema.
//!
//! A file is split into policies at each top-level `;` (outside string literals and `//`
//! comments), which gives every policy its own source offset, so that errors, validation
//! messages and position-based ids all point at file:line. Consecutive policies of a file are
//! then parsed in groups, one `PolicySet::from_str` per group: Cedar's parser has a fixed cost
//! per call (its lexer's automaton warms up again), so a group of 64 policies parses about 3.5×
//! faster than 64 calls of `Policy::parse`. `PolicySet::from_str` names a group's policies
//! `policy0`, `policy1`, … in the order written, which maps them back to their chunks. A group
//! that does not parse cleanly into exactly one policy per chunk is parsed again one chunk at a
//! time, so errors are reported exactly as for a policy parsed on its own.

use std::path::PathBuf;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::error::LoadError;
use super::files::BundleFile;
use crate::diagnostics::{LineIndex, line_column, located_messages};

/// Where a policy was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLocation {
    /// The policy file.
    pub path: PathBuf,
    /// 1-based line of the policy's first token (its first annotation, or its effect).
    pub line: usize,
}

/// One policy's text within its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    /// Byte offset where the chunk's text starts (after the previous `;`).
    start: usize,
    /// Byte offset just past the chunk's `;`, or the end of the file.
    end: usize,
    /// Byte offset of the first character that is neither whitespace nor comment.
    first_token: usize,
}

/// Splits policy text at top-level semicolons; chunks with nothing but comments are dropped.
fn split_policies(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_token = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' if chars.peek().is_some_and(|&(_, next)| next == '/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                first_token.get_or_insert(i);
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            ';' => {
                let end = i + 1;
                chunks.push(Chunk {
                    start,
                    end,
                    first_token: first_token.unwrap_or(i),
                });
                start = end;
                first_token = None;
            }
            c if c.is_whitespace() => {}
            _ => {
                first_token.get_or_insert(i);
            }
        }
    }
    if let Some(first_token) = first_token {
        chunks.push(Chunk {
            start,
            end: text.len(),
            first_token,
        });
    }
    chunks
}

/// Where a parsed policy came from, for locating validation errors.
struct Origin<'a> {
    file: &'a BundleFile,
    chunk: Chunk,
    /// Byte offset in the file that the policy's own source locations count from: the start of
    /// the text it was parsed from (its chunk, or its group of chunks).
    base: usize,
}

/// At most this many consecutive policies of a file are parsed by one call of Cedar's parser.
const GROUP: usize = 64;

/// A policy parsed from its file, with the offset its source locations count from.
struct Parsed {
    policy: Policy,
    base: usize,
}

/// Parses every policy file and validates the set against the schema when there is one.
/// Returns the policies, their locations and the validator's warnings.
///
/// Policies are parsed in parallel (one rayon task per group of consecutive policies of a file:
/// Cedar's parser is the bulk of loading a large policy bundle), then given their ids
/// and added to the set in file order, so duplicate ids and errors are reported exactly as a
/// sequential load reports them. Validation runs in parallel too, on slices of the set: strict
/// validation looks at one policy at a time.
pub(super) fn load(
    files: &[BundleFile],
    schema: Option<&Schema>,
    errors: &mut Vec<LoadError>,
) -> (PolicySet, FxHashMap<String, PolicyLocation>, Vec<String>) {
    let pieces: Vec<(&BundleFile, Chunk)> = files
        .iter()
        .flat_map(|file| {
            split_policies(&file.text)
                .into_iter()
                .map(move |chunk| (file, chunk))
        })
        .collect();
    let group = share_of(pieces.len()).min(GROUP);
    let groups: Vec<&[(&BundleFile, Chunk)]> = pieces
        .chunk_by(|(a, _), (b, _)| std::ptr::eq(*a, *b))
        .flat_map(|same_file| same_file.chunks(group))
        .collect();
    let parsed: Vec<Result<Parsed, Vec<LoadError>>> = groups
        .par_iter()
        .map(|pieces| parse_group(pieces))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();

    let line_indexes: Vec<LineIndex<'_>> = files
        .iter()
        .map(|file| LineIndex::new(&file.text))
        .collect();
    let lines_of = |file: &BundleFile| {
        files
            .iter()
            .position(|f| std::ptr::eq(f, file))
            .and_then(|i| line_indexes.get(i))
    };
    let mut set = PolicySet::new();
    let mut accepted: Vec<Policy> = Vec::with_capacity(pieces.len());
    let mut locations: FxHashMap<String, PolicyLocation> = FxHashMap::default();
    let mut origins: FxHashMap<String, Origin<'_>> = FxHashMap::default();
    for (&(file, chunk), policy) in pieces.iter().zip(parsed) {
        let Parsed { policy, base } = match policy {
            Ok(parsed) => parsed,
            Err(parse_errors) => {
                errors.extend(parse_errors);
                continue;
            }
        };
        let (line, column) = match lines_of(file) {
            Some(lines) => lines.line_column(chunk.first_token),
            None => line_column(&file.text, chunk.first_token),
        };
        let id = match policy.annotation("id") {
            Some("") => {
                errors.push(LoadError::at(
                    &file.path,
                    line,
                    column,
                    "`@id` annotation must not be empty",
                ));
                continue;
            }
            Some(id) => id.to_owned(),
            None => format!("{}:{line}", file.relative),
        };
        if let Some(first) = locations.get(&id) {
            errors.push(LoadError::at(
                &file.path,
                line,
                column,
                format!(
                    "duplicate policy id `{id}`, first used at {}:{}",
                    first.path.display(),
                    first.line
                ),
            ));
            continue;
        }
        let policy = policy.new_id(PolicyId::new(&id));
        if let Err(e) = set.add(policy.clone()) {
            errors.push(LoadError::at(&file.path, line, column, e.to_string()));
            continue;
        }
        accepted.push(policy);
        locations.insert(
            id.clone(),
            PolicyLocation {
                path: file.path.clone(),
                line,
            },
        );
        origins.insert(id, Origin { file, chunk, base });
    }

    let mut warnings = Vec::new();
    if let Some(schema) = schema {
        validate(&accepted, schema, &origins, errors, &mut warnings);
    }
    (set, locations, warnings)
}

/// The size of the slices `len` items are cut into for rayon: four per worker thread, so that
/// a slow slice does not leave the other threads idle, and at least one item.
fn share_of(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads() * 4).max(1)
}

/// Parses consecutive chunks of one file with one call of Cedar's parser, one result per chunk;
/// when that call fails or does not give exactly one policy per chunk (a template, say), each
/// chunk is parsed on its own so that every error is reported as for that chunk alone.
fn parse_group(pieces: &[(&BundleFile, Chunk)]) -> Vec<Result<Parsed, Vec<LoadError>>> {
    let one_by_one = || {
        pieces
            .iter()
            .map(|&(file, chunk)| parse_chunk(file, chunk))
            .collect()
    };
    let (Some(&(file, first)), Some(&(_, last))) = (pieces.first(), pieces.last()) else {
        return Vec::new();
    };
    if pieces.len() == 1 {
        return one_by_one();
    }
    let Some(source) = file.text.get(first.start..last.end) else {
        return one_by_one();
    };
    let Ok(mut set) = source.parse::<PolicySet>() else {
        return one_by_one();
    };
    if set.templates().next().is_some() || set.policies().count() != pieces.len() {
        return one_by_one();
    }
    let mut parsed = Vec::with_capacity(pieces.len());
    for i in 0..pieces.len() {
        match set.remove_static(PolicyId::new(format!("policy{i}"))) {
            Ok(policy) => parsed.push(Ok(Parsed {
                policy,
                base: first.start,
            })),
            Err(_) => return one_by_one(),
        }
    }
    parsed
}

/// Parses one policy's text; errors point into its file.
fn parse_chunk(file: &BundleFile, chunk: Chunk) -> Result<Parsed, Vec<LoadError>> {
    let source = file.text.get(chunk.start..chunk.end).unwrap_or_default();
    Policy::parse(None, source)
        .map(|policy| Parsed {
            policy,
            base: chunk.start,
        })
        .map_err(|parse_errors| {
            located_messages(&parse_errors)
                .into_iter()
                .map(|located| {
                    let (line, column) = line_column(
                        &file.text,
                        chunk.start + located.offset.unwrap_or(chunk.first_token - chunk.start),
                    );
                    LoadError::at(&file.path, line, column, located.message)
                })
                .collect()
        })
}

/// Validates `policies` against `schema` in strict mode, on slices of the set in parallel;
/// errors and warnings come back in the policies' order.
fn validate(
    policies: &[Policy],
    schema: &Schema,
    origins: &FxHashMap<String, Origin<'_>>,
    errors: &mut Vec<LoadError>,
    warnings: &mut Vec<String>,
) {
    let validator = Validator::new(schema.clone());
    let slice_len = share_of(policies.len());
    let results: Vec<(Vec<LoadError>, Vec<String>)> = policies
        .par_chunks(slice_len)
        .map(|slice| {
            let mut slice_errors = Vec::new();
            let mut slice_warnings = Vec::new();
            let set = match PolicySet::from_policies(slice.iter().cloned()) {
                Ok(set) => set,
                Err(e) => {
                    slice_errors.push(LoadError::file("<policies>", e.to_string()));
                    return (slice_errors, slice_warnings);
                }
            };
            let result = validator.validate(&set, ValidationMode::Strict);
            for error in result.validation_errors() {
                // The id as written: `Display` escapes it.
                let origin = origins.get(AsRef::<str>::as_ref(error.policy_id()));
                for located in located_messages(error) {
                    slice_errors.push(locate(origin, located.offset, located.message));
                }
            }
            for warning in result.validation_warnings() {
                let origin = origins.get(AsRef::<str>::as_ref(warning.policy_id()));
                for located in located_messages(warning) {
                    slice_warnings.push(format!(
                        "{}: warning: {}",
                        origin_prefix(origin, located.offset),
                        located.message
                    ));
                }
            }
            (slice_errors, slice_warnings)
        })
        .collect();
    for (slice_errors, slice_warnings) in results {
        errors.extend(slice_errors);
        warnings.extend(slice_warnings);
    }
}

fn locate(origin: Option<&Origin<'_>>, offset: Option<usize>, message: String) -> LoadError {
    match origin {
        Some(origin) => {
            let offset = offset.map_or(origin.chunk.first_token, |offset| origin.base + offset);
            let (line, column) = line_column(&origin.file.text, offset);
            LoadError::at(&origin.file.path, line, column, message)
        }
        None => LoadError::file("<policies>", message),
    }
}

fn origin_prefix(origin: Option<&Origin<'_>>, offset: Option<usize>) -> String {
    let error = locate(origin, offset, String::new());
    let text = error.to_string();
    text.trim_end_matches(": ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> BundleFile {
        BundleFile {
            path: PathBuf::from("policies/p.cedar"),
            relative: "p.cedar".to_owned(),
            text: text.to_owned(),
            digest: [0; 32],
        }
    }

    fn load_one(text: &str) -> (PolicySet, Vec<String>) {
        let mut errors = Vec::new();
        let (set, _, _) = load(&[file(text)], None, &mut errors);
        (set, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn split_respects_strings_and_comments() {
        let text = "// a; comment\npermit(principal, action, resource) when { \"x;y\" == \"\\\";\" };\n\n  forbid(principal, action, resource);\n// trailing;";
        let chunks = split_policies(text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            &text[chunks[0].first_token..chunks[0].first_token + 6],
            "permit"
        );
        assert_eq!(
            &text[chunks[1].first_token..chunks[1].first_token + 6],
            "forbid"
        );
        assert!(text[chunks[1].start..chunks[1].end].ends_with(';'));
    }

    #[test]
    fn ids_come_from_annotation_or_file_and_line() {
        let (set, errors) = load_one(
            "@id(\"owner-read\")\npermit(principal, action, resource);\n\nforbid(principal, action, resource);\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let mut ids: Vec<_> = set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["owner-read", "p.cedar:4"]);
    }

    #[test]
    fn duplicate_ids_name_both_places() {
        let (_, errors) = load_one(
            "@id(\"a\")\npermit(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);",
        );
        assert_eq!(
            errors,
            ["policies/p.cedar:3:1: duplicate policy id `a`, first used at policies/p.cedar:1"]
        );
    }

    #[test]
    fn parse_errors_point_into_the_file() {
        let (_, errors) = load_one(
            "permit(principal, action, resource);\n\npermit(principal, action, resource)\n  when { principal.x == };\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("policies/p.cedar:4:25: unexpected token `}`"),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_final_semicolon_is_reported_at_the_end() {
        let (_, errors) = load_one("permit(principal, action, resource)");
        assert_eq!(
            errors,
            ["policies/p.cedar:1:36: unexpected end of input: expected `;` or identifier"]
        );
    }

    #[test]
    fn templates_and_empty_ids_are_rejected() {
        let (_, errors) = load_one("permit(principal == ?principal, action, resource);");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("expected a static policy"), "{errors:?}");
        let (_, errors) = load_one("@id(\"\")\npermit(principal, action, resource);");
        assert_eq!(
            errors,
            ["policies/p.cedar:1:1: `@id` annotation must not be empty"]
        );
    }

    /// A file large enough to be parsed in groups, two lines per policy: policy `i` is written
    /// on lines `2 * i + 1` (a comment, unless `odd` gives it) and `2 * i + 2`.
    fn many(n: usize, odd: impl Fn(usize) -> Option<String>) -> String {
        (0..n)
            .map(|i| {
                odd(i).unwrap_or_else(|| {
                    format!(
                        "// policy {i}; a comment\npermit(principal, action, resource) when {{ resource.n == {i} }};\n"
                    )
                })
            })
            .collect()
    }

    #[test]
    fn grouped_parsing_gives_each_policy_as_parsed_alone() {
        let text = many(300, |i| {
            (i % 7 == 0).then(|| format!("@id(\"p{i}\")\nforbid(principal, action, resource);\n"))
        });
        let file = file(&text);
        let mut errors = Vec::new();
        let (set, locations, _) = load(std::slice::from_ref(&file), None, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let chunks = split_policies(&text);
        assert_eq!(chunks.len(), 300);
        assert_eq!(set.policies().count(), 300);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let alone = parse_chunk(&file, chunk).unwrap().policy;
            let line = if i % 7 == 0 { 2 * i + 1 } else { 2 * i + 2 };
            let id = match alone.annotation("id") {
                Some(id) => id.to_owned(),
                None => format!("p.cedar:{line}"),
            };
            let grouped = set.policy(&PolicyId::new(&id)).expect(&id);
            assert_eq!(locations[&id].line, line, "{id}");
            // Parsed in a group: a policy's own text starts at its first token, where a chunk
            // parsed alone keeps the comment before it.
            assert!(grouped.to_cedar().unwrap().starts_with(['@', 'p']), "{id}");
            if i % 7 != 0 {
                let alone = alone.to_cedar().unwrap();
                assert!(alone.trim_start().starts_with("// policy"), "{id}: {alone}");
            }
            assert_eq!(
                grouped.to_json().unwrap(),
                alone.new_id(PolicyId::new(&id)).to_json().unwrap(),
                "{id}"
            );
        }
    }

    #[test]
    fn errors_inside_a_group_point_where_they_would_alone() {
        let text = many(300, |i| match i {
            150 => Some("permit(principal, action, resource)\n  when { principal.x == };\n".into()),
            200 => Some("permit(principal == ?principal, action, resource);\n".into()),
            _ => None,
        });
        let (set, errors) = load_one(&text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("policies/p.cedar:302:25: unexpected token `}`"),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("policies/p.cedar:401:"), "{errors:?}");
        assert!(errors[1].contains("expected a static policy"), "{errors:?}");
        assert_eq!(set.policies().count(), 298);

        let schema: Schema = "entity User; entity Doc { n: Long }; \
            action read appliesTo { principal: User, resource: Doc };"
            .parse()
            .unwrap();
        let text = many(300, |i| {
            (i == 250).then(|| {
                "permit(principal, action, resource) when { resource.nope == 1 };\n\n".into()
            })
        });
        let mut errors = Vec::new();
        let (_, locations, _) = load(&[file(&text)], Some(&schema), &mut errors);
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(locations.len(), 300);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("policies/p.cedar:501:44: "),
            "{errors:?}"
        );
    }
}
