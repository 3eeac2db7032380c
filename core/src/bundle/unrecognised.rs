//! Files in a bundle directory that Verdict neither loads nor knows (`documents.ceder`), for
//! `verdict validate`: the loader skips them by design (a bundle directory may hold anything),
//! so an author's misnamed file would otherwise be ignored without a word.
//!
//! Known without being loaded: the decision tables (`tests/*.yaml`, `tests/*.yml`) and
//! documentation (`*.md`, `README*`, `LICENSE*`). Entries whose name starts with `.` are
//! skipped as the loader skips them. The walk follows symlinks as the loader does, never opens
//! a file (it only stats), and stops at the loader's depth bound.

use std::path::{Path, PathBuf};

use super::files::{KNOWN_SUFFIXES, is_bundle_file_name};
use crate::diagnostics::{io_reason, nearest};

/// Directories nested deeper than this are not looked into (the loader reports them).
const MAX_DIR_DEPTH: usize = 16;

/// A file of a bundle directory that is neither loaded nor known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecognisedFile {
    /// The bundle directory joined with the file's relative path.
    pub path: PathBuf,
    /// A loaded name near this one (`documents.cedar` for `documents.ceder`), if any.
    pub suggestion: Option<String>,
}

impl UnrecognisedFile {
    /// Returns what is wrong, without the path.
    pub fn message(&self) -> String {
        match &self.suggestion {
            Some(name) => format!("not a bundle file, not loaded (did you mean `{name}`?)"),
            None => format!(
                "not a bundle file, not loaded (bundle files end in {}; decision tables are \
                 tests/*.yaml)",
                KNOWN_SUFFIXES
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::fmt::Display for UnrecognisedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message())
    }
}

/// Returns the files below `dir` that Verdict neither loads nor knows, sorted by path; an
/// entry that cannot be listed is returned as the error's text.
pub fn unrecognised_files(dir: &Path) -> Result<Vec<UnrecognisedFile>, String> {
    let mut found = Vec::new();
    walk(dir, Path::new(""), 0, &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn walk(
    root: &Path,
    relative: &Path,
    depth: usize,
    found: &mut Vec<UnrecognisedFile>,
) -> Result<(), String> {
    if depth > MAX_DIR_DEPTH {
        return Ok(());
    }
    let dir = root.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "{}: cannot read directory: {}",
            dir.display(),
            io_reason(&e)
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {}", dir.display(), io_reason(&e)))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // Not UTF-8: no bundle file has such a name.
            found.push(UnrecognisedFile {
                path: entry.path(),
                suggestion: None,
            });
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follows a symlink, as the loader does; a dangling one is reported by the loader when
        // its name is a bundle file's, and here otherwise.
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        let child = relative.join(name);
        if is_dir {
            walk(root, &child, depth + 1, found)?;
        } else if !is_known(&child, name) {
            found.push(UnrecognisedFile {
                path: root.join(&child),
                suggestion: suggest(name),
            });
        }
    }
    Ok(())
}

fn is_known(relative: &Path, name: &str) -> bool {
    let in_tests = relative.parent() == Some(Path::new("tests"));
    let is_table = in_tests && (name.ends_with(".yaml") || name.ends_with(".yml"));
    let is_doc = name.ends_with(".md") || name.starts_with("README") || name.starts_with("LICENSE");
    is_bundle_file_name(name) || is_table || is_doc
}

/// Suggests the loaded name nearest to `name`, comparing what follows its first `.` with the
/// suffixes the loader reads.
fn suggest(name: &str) -> Option<String> {
    let (stem, suffix) = match name.find('.') {
        Some(at) => name.split_at(at),
        None => return None,
    };
    let near = nearest(suffix, KNOWN_SUFFIXES.iter().copied())?;
    Some(format!("{stem}{near}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misnamed_files_get_the_near_loaded_name() {
        assert_eq!(
            suggest("documents.ceder").as_deref(),
            Some("documents.cedar")
        );
        assert_eq!(
            suggest("people.entities.jsn").as_deref(),
            Some("people.entities.json")
        );
        assert_eq!(suggest("teams.tuple").as_deref(), Some("teams.tuples"));
        assert_eq!(suggest("notes.txt"), None);
        assert_eq!(suggest("Makefile"), None);
    }

    #[test]
    fn only_files_neither_loaded_nor_known_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        for name in [
            "a.cedar",
            "README.md",
            "documents.ceder",
            "tests/x.yaml",
            "tests/notes.txt",
            ".git/config",
            "stray.yaml",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let found: Vec<String> = unrecognised_files(dir.path())
            .unwrap()
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(found, ["documents.ceder", "stray.yaml", "tests/notes.txt"]);
    }
}
