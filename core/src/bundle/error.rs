//! Load errors: each names its file and, where the problem has one, its line and column.

use std::fmt;
use std::path::PathBuf;

use crate::diagnostics::one_line;

/// One problem found in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file, as the bundle directory joined with its relative path.
    pub path: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// 1-based column in characters, when the problem has one.
    pub column: Option<usize>,
    /// What is wrong, lowercase, one line.
    pub message: String,
}

impl LoadError {
    /// Returns an error about a whole file.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            column: None,
            message: one_line(message.into()),
        }
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
            message: one_line(message.into()),
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
    }
}
