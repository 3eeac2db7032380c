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
/// entry that cannot be listed is returned as the error's text. walkdir follows symlinks as
/// the loader does, and a symlink loop is reported once by walkdir and skipped here (the
/// loader walks each directory once too). (walkdir opens a directory before its filter can
/// skip it, which is why the loader's own walk is not walkdir; this walk never opens a file.)
pub fn unrecognised_files(dir: &Path) -> Result<Vec<UnrecognisedFile>, String> {
    let hidden = |entry: &walkdir::DirEntry| {
        entry.depth() > 0
            && entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.'))
    };
    let mut found = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .max_depth(MAX_DIR_DEPTH + 1)
        .into_iter()
        .filter_entry(|entry| !hidden(entry));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                let under_hidden = error.path().is_some_and(|path| {
                    path.strip_prefix(dir).is_ok_and(|relative| {
                        relative
                            .components()
                            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                    })
                });
                if error.loop_ancestor().is_some() || under_hidden {
                    continue;
                }
                // What cannot be stat-ed (a dangling symlink) is not a directory: reported by
                // the loader when its name is a bundle file's, and here otherwise.
                if let Some(path) = error.path()
                    && error.depth() > 0
                    && !std::fs::metadata(path).is_ok_and(|m| m.is_dir())
                {
                    push_unless_known(dir, path, &mut found);
                    continue;
                }
                return Err(match (error.path(), error.io_error()) {
                    (Some(path), Some(io)) => {
                        format!(
                            "{}: cannot read directory: {}",
                            path.display(),
                            io_reason(io)
                        )
                    }
                    _ => format!("{}: {error}", dir.display()),
                });
            }
        };
        if entry.depth() == 0 || entry.file_type().is_dir() {
            continue;
        }
        push_unless_known(dir, entry.path(), &mut found);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Adds `path` (below `root`) unless Verdict loads or knows it.
fn push_unless_known(root: &Path, path: &Path, found: &mut Vec<UnrecognisedFile>) {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        // Not UTF-8: no bundle file has such a name.
        found.push(UnrecognisedFile {
            path: path.to_path_buf(),
            suggestion: None,
        });
        return;
    };
    if !is_known(relative, name) {
        found.push(UnrecognisedFile {
            path: path.to_path_buf(),
            suggestion: suggest(name),
        });
    }
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

    /// Symlinks are followed as the loader follows them: a loop is walked once and reported
    /// nowhere, a dangling link is a file like any other, a symlinked ConfigMap layout lists
    /// each file once.
    #[test]
    fn symlinks_loops_and_dangling_links() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("..2026/sub")).unwrap();
        std::fs::write(root.join("..2026/policy.cedar"), "").unwrap();
        std::fs::write(root.join("..2026/notes.txt"), "").unwrap();
        symlink("..2026", root.join("..data")).unwrap();
        symlink("..data/policy.cedar", root.join("policy.cedar")).unwrap();
        symlink("..data/notes.txt", root.join("notes.txt")).unwrap();
        std::fs::create_dir(root.join("nested")).unwrap();
        symlink("..", root.join("nested/loop")).unwrap();
        symlink("missing.cedar", root.join("nested/dangling.cedr")).unwrap();
        let found: Vec<String> = unrecognised_files(root)
            .unwrap()
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["nested/dangling.cedr", "notes.txt"]);
    }
}
