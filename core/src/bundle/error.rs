//! Load errors: each names its file and, where the problem has one, its line and column, and
//! says what kind of problem it is.
//!
//! A message quotes at most a short excerpt of the file (`diagnostics::shorten_quotes`): every
//! constructor shortens it, so no parser can forget to.

use std::fmt;
use std::path::PathBuf;

use crate::diagnostics::{one_line, shorten_quotes};

/// What kind of problem a [`LoadError`] is: a closed set, for metrics and for callers that
/// treat some kinds differently (match on it, never on the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoadErrorKind {
    /// The content is invalid: a parse or validation error (the default).
    Invalid,
    /// A file could not be read, or is not one a bundle may hold: a FIFO, socket or device, a
    /// symlink that leads out of the bundle directory, text that is not UTF-8.
    Unreadable,
    /// A file, or the bundle as a whole, is over its size limit.
    TooLarge,
    /// The bundle has no policies and empty bundles are not allowed.
    Empty,
}

impl LoadErrorKind {
    /// Returns a short name: `invalid`, `unreadable`, `too_large` or `empty`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Unreadable => "unreadable",
            Self::TooLarge => "too_large",
            Self::Empty => "empty",
        }
    }
}

/// One problem found in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file, as the bundle directory joined with its relative path.
    pub path: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// 1-based column in characters, when the problem has one.
    pub column: Option<usize>,
    /// What is wrong, lowercase, one line, quoting at most a short excerpt of the file.
    pub message: String,
    /// What kind of problem it is.
    pub kind: LoadErrorKind,
}

impl LoadError {
    /// Returns an error about a whole file.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            column: None,
            message: one_line(shorten_quotes(message.into())),
            kind: LoadErrorKind::Invalid,
        }
    }

    /// Returns this error as a problem of `kind`.
    #[must_use]
    pub fn with_kind(self, kind: LoadErrorKind) -> Self {
        Self { kind, ..self }
    }

    /// Returns an error at a line and column of a file.
    pub fn at(
        path: impl Into<PathBuf>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            line: Some(line),
            column: Some(column),
            message: one_line(shorten_quotes(message.into())),
            kind: LoadErrorKind::Invalid,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A bundle that cannot be served, with every error found (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidBundle {
    errors: Vec<LoadError>,
}

impl InvalidBundle {
    /// Wraps the errors, sorted by file and position.
    pub fn new(mut errors: Vec<LoadError>) -> Self {
        errors.sort_by(|a, b| {
            (&a.path, a.line, a.column, &a.message).cmp(&(&b.path, b.line, b.column, &b.message))
        });
        errors.dedup();
        Self { errors }
    }

    /// Returns the errors, sorted by file and position.
    pub fn errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// Returns the kind that best says why the bundle was refused, for a metric label: the
    /// highest of its errors' kinds in the order invalid < unreadable < too large < empty.
    pub fn kind(&self) -> LoadErrorKind {
        self.errors
            .iter()
            .map(|e| e.kind)
            .max()
            .unwrap_or(LoadErrorKind::Invalid)
    }
}

impl From<LoadError> for InvalidBundle {
    fn from(error: LoadError) -> Self {
        Self::new(vec![error])
    }
}

impl fmt::Display for InvalidBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for error in &self.errors {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_column_message() {
        let e = LoadError::at("policies/a.tuples", 12, 5, "expected `#` after the object");
        assert_eq!(
            e.to_string(),
            "policies/a.tuples:12:5: expected `#` after the object"
        );
        let e = LoadError::file("policies/a.cedar", "cannot read: permission denied");
        assert_eq!(
            e.to_string(),
            "policies/a.cedar: cannot read: permission denied"
        );
    }

    #[test]
    fn errors_are_sorted_and_deduplicated() {
        let bundle = InvalidBundle::new(vec![
            LoadError::at("b", 1, 1, "x"),
            LoadError::at("a", 9, 1, "y"),
            LoadError::at("a", 2, 1, "z"),
            LoadError::at("a", 2, 1, "z"),
        ]);
        assert_eq!(bundle.to_string(), "a:2:1: z\na:9:1: y\nb:1:1: x");
        assert_eq!(bundle.kind(), LoadErrorKind::Invalid);
    }

    #[test]
    fn the_kind_of_a_bundle_is_its_most_telling_error() {
        let bundle = InvalidBundle::new(vec![
            LoadError::at("a", 1, 1, "x"),
            LoadError::file("b", "y").with_kind(LoadErrorKind::TooLarge),
            LoadError::file("c", "z").with_kind(LoadErrorKind::Unreadable),
        ]);
        assert_eq!(bundle.kind(), LoadErrorKind::TooLarge);
    }

    #[test]
    fn messages_quote_a_short_excerpt_of_the_file() {
        let line = "x".repeat(5_000);
        let e = LoadError::at(
            "a.tuples",
            1,
            1,
            format!("`{line}` is not a valid object type"),
        );
        assert!(e.message.len() < 100, "{}", e.message);
        assert!(e.message.contains("…`"), "{}", e.message);
    }
}
