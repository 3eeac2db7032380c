//! Cedar policy files: splitting, parsing, ids, and strict validation against the schema.
//!
//! A file is split into policies at each top-level `;` (outside string literals and `//`
//! comments) and each policy is parsed on its own. That gives every policy its own source
//! offset, which Cedar does not expose, so that errors, validation messages and position-based
//! ids all point at file:line. Parsing a whole file with `PolicySet::from_str` would also
//! renumber the policies `policy0`, `policy1`, … whatever their `@id`.

use std::path::PathBuf;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use rustc_hash::FxHashMap;

use super::error::LoadError;
use super::files::BundleFile;
use crate::diagnostics::{line_column, located_messages};

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
}

/// Parses every policy file and validates the set against the schema when there is one.
/// Returns the policies, their locations and the validator's warnings.
pub(super) fn load(
    files: &[BundleFile],
    schema: Option<&Schema>,
    errors: &mut Vec<LoadError>,
) -> (PolicySet, FxHashMap<String, PolicyLocation>, Vec<String>) {
    let mut set = PolicySet::new();
    let mut locations: FxHashMap<String, PolicyLocation> = FxHashMap::default();
    let mut origins: FxHashMap<String, Origin<'_>> = FxHashMap::default();
    for file in files {
        for chunk in split_policies(&file.text) {
            let source = file.text.get(chunk.start..chunk.end).unwrap_or_default();
            let at = |offset: usize| line_column(&file.text, offset);
            let policy = match Policy::parse(None, source) {
                Ok(policy) => policy,
                Err(parse_errors) => {
                    for located in located_messages(&parse_errors) {
                        let (line, column) =
                            at(chunk.start
                                + located.offset.unwrap_or(chunk.first_token - chunk.start));
                        errors.push(LoadError::at(&file.path, line, column, located.message));
                    }
                    continue;
                }
            };
            let (line, column) = at(chunk.first_token);
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
            if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
                errors.push(LoadError::at(&file.path, line, column, e.to_string()));
                continue;
            }
            locations.insert(
                id.clone(),
                PolicyLocation {
                    path: file.path.clone(),
                    line,
                },
            );
            origins.insert(id, Origin { file, chunk });
        }
    }

    let mut warnings = Vec::new();
    if let Some(schema) = schema {
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in result.validation_errors() {
            // The id as written: `Display` escapes it.
            let origin = origins.get(AsRef::<str>::as_ref(error.policy_id()));
            for located in located_messages(error) {
                errors.push(locate(origin, located.offset, located.message));
            }
        }
        for warning in result.validation_warnings() {
            let origin = origins.get(AsRef::<str>::as_ref(warning.policy_id()));
            for located in located_messages(warning) {
                warnings.push(format!(
                    "{}: warning: {}",
                    origin_prefix(origin, located.offset),
                    located.message
                ));
            }
        }
    }
    (set, locations, warnings)
}

fn locate(origin: Option<&Origin<'_>>, offset: Option<usize>, message: String) -> LoadError {
    match origin {
        Some(origin) => {
            let offset = origin.chunk.start
                + offset.unwrap_or(origin.chunk.first_token - origin.chunk.start);
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
}
