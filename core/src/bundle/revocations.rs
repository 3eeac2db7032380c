//! Revocation lists: the token ids (`jti`) a front-end must refuse even though their tokens
//! verify (issue 16). Files named `revocations.txt` or `*.revocations.txt`, anywhere in the
//! bundle, together form one list; they are hashed into the version and reloaded with the rest
//! of the bundle, so revoking a token is a commit (or a ConfigMap edit) like any policy change.
//!
//! Format: one `jti` per line, surrounding whitespace trimmed; blank lines and lines starting
//! with `#` are ignored. A line longer than [`MAX_LINE_BYTES`] or with a control character in
//! its id fails the load with `file:line:column`, like any other bundle error: a list that is
//! only partly read could let a revoked token through.

use rustc_hash::FxHashSet;

use super::error::LoadError;
use super::files::BundleFile;

/// The longest line of a revocation file, in bytes.
pub(crate) const MAX_LINE_BYTES: usize = 256;

/// A file with more errors than this reports the first ones and a count of the rest.
const MAX_ERRORS_PER_FILE: usize = 50;

/// The revoked token ids of one bundle. Immutable once loaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Revocations {
    ids: FxHashSet<String>,
}

impl Revocations {
    /// Returns whether `jti` is revoked (exact, case-sensitive match).
    pub(crate) fn contains(&self, jti: &str) -> bool {
        self.ids.contains(jti)
    }

    /// Returns the number of distinct revoked ids.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Reads every revocation file into one list; a bad line is reported, never skipped.
pub(super) fn load(files: &[BundleFile], errors: &mut Vec<LoadError>) -> Revocations {
    let mut ids = FxHashSet::default();
    for file in files {
        let mut file_errors = 0usize;
        for (index, line) in file.text.lines().enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some(id)) => {
                    ids.insert(id.to_owned());
                }
                Err((column, message)) => {
                    file_errors += 1;
                    if file_errors <= MAX_ERRORS_PER_FILE {
                        errors.push(LoadError::at(&file.path, index + 1, column, message));
                    }
                }
            }
        }
        if file_errors > MAX_ERRORS_PER_FILE {
            errors.push(LoadError::file(
                &file.path,
                format!(
                    "{} more invalid revocation lines not shown",
                    file_errors - MAX_ERRORS_PER_FILE
                ),
            ));
        }
    }
    Revocations { ids }
}

/// Reads one line: `Ok(None)` for a blank or comment line, the id, or the 1-based column and
/// the problem. Messages never quote the line (it may be a live token id).
fn parse_line(line: &str) -> Result<Option<&str>, (usize, String)> {
    if line.len() > MAX_LINE_BYTES {
        return Err((
            1,
            format!(
                "the line is {} bytes long; a revoked token id takes at most {MAX_LINE_BYTES}",
                line.len()
            ),
        ));
    }
    let id = line.trim();
    if id.is_empty() || id.starts_with('#') {
        return Ok(None);
    }
    let leading = line.len() - line.trim_start().len();
    if let Some((offset, _)) = id.char_indices().find(|(_, c)| c.is_control()) {
        let column = line[..leading + offset].chars().count() + 1;
        return Err((
            column,
            "a revoked token id may not contain control characters".to_owned(),
        ));
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_trimmed_and_comments_skipped() {
        assert_eq!(parse_line("  abc-123 \t"), Ok(Some("abc-123")));
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# revoked 2026-12-01"), Ok(None));
        assert_eq!(parse_line("  # indented comment"), Ok(None));
        assert_eq!(parse_line("a#b"), Ok(Some("a#b")));
    }

    #[test]
    fn control_characters_and_long_lines_are_errors_with_their_column() {
        let (column, message) = parse_line("  ab\u{7}c").unwrap_err();
        assert_eq!(column, 5);
        assert_eq!(
            message,
            "a revoked token id may not contain control characters"
        );
        assert_eq!(parse_line("a\tb").unwrap_err().0, 2);
        assert!(parse_line(&"x".repeat(MAX_LINE_BYTES)).is_ok());
        let (column, message) = parse_line(&"x".repeat(MAX_LINE_BYTES + 1)).unwrap_err();
        assert_eq!(column, 1);
        assert_eq!(
            message,
            "the line is 257 bytes long; a revoked token id takes at most 256"
        );
    }
}
