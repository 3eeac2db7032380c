//! Finding and reading a bundle's files, and hashing them into the snapshot version.
//!
//! The walk is recursive and follows symlinks, because Kubernetes mounts a ConfigMap as
//! symlinks through `..data` into a hidden timestamped directory, and git-sync swaps a symlinked
//! checkout. Entries whose name starts with `.` are skipped: each ConfigMap file is then read
//! once, through its visible name, and `.git` is never walked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{InvalidBundle, LoadError};
use crate::diagnostics::io_reason;

/// Directories nested deeper than this are reported rather than walked.
const MAX_DIR_DEPTH: usize = 16;

/// One file of the bundle, read into memory.
#[derive(Debug, Clone)]
pub(super) struct BundleFile {
    /// The bundle directory joined with the relative path: what errors print.
    pub(super) path: PathBuf,
    /// The path relative to the bundle directory, with `/` separators.
    pub(super) relative: String,
    pub(super) text: String,
}

/// The bundle's files by kind, each list sorted by relative path.
#[derive(Debug, Default)]
pub(super) struct BundleFiles {
    pub(super) policies: Vec<BundleFile>,
    pub(super) schemas: Vec<BundleFile>,
    pub(super) tuples: Vec<BundleFile>,
    pub(super) entities: Vec<BundleFile>,
    /// Content hash of every file read, in path order.
    pub(super) version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Policies,
    Schema,
    Tuples,
    Entities,
}

/// Returns whether the loader reads a file of this name (by suffix).
pub fn is_bundle_file_name(name: &str) -> bool {
    classify(name).is_some()
}

fn classify(name: &str) -> Option<FileKind> {
    if name.ends_with(".cedarschema") || name.ends_with(".cedarschema.json") {
        Some(FileKind::Schema)
    } else if name.ends_with(".cedar") {
        Some(FileKind::Policies)
    } else if name.ends_with(".tuples") {
        Some(FileKind::Tuples)
    } else if name.ends_with(".entities.json") {
        Some(FileKind::Entities)
    } else {
        None
    }
}

/// A bundle file found by the walk, not read yet.
struct Found {
    kind: FileKind,
    path: PathBuf,
    relative: String,
    metadata: std::fs::Metadata,
}

/// Lists the bundle's files below `dir`, sorted by relative path, and every entry that could
/// not be listed.
fn list_bundle_dir(dir: &Path) -> Result<(Vec<Found>, Vec<LoadError>), InvalidBundle> {
    let metadata = std::fs::metadata(dir).map_err(|e| {
        LoadError::file(
            dir,
            format!("cannot read bundle directory: {}", io_reason(&e)),
        )
    })?;
    if !metadata.is_dir() {
        return Err(LoadError::file(dir, "the bundle must be a directory").into());
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut seen_dirs = HashSet::new();
    walk(dir, dir, 0, &mut seen_dirs, &mut found, &mut errors);
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok((found, errors))
}

/// Reads every bundle file below `dir`.
pub(super) fn read_bundle_dir(dir: &Path) -> Result<BundleFiles, InvalidBundle> {
    let mut files = BundleFiles::default();
    let (found, mut errors) = list_bundle_dir(dir)?;
    let mut hasher = Sha256::new();
    for found in found {
        let text = match std::fs::read_to_string(&found.path) {
            // A byte-order mark is invisible in editors; columns count from after it.
            Ok(text) => match text.strip_prefix('\u{feff}') {
                Some(rest) => rest.to_owned(),
                None => text,
            },
            Err(e) => {
                errors.push(LoadError::file(
                    &found.path,
                    format!("cannot read: {}", io_reason(&e)),
                ));
                continue;
            }
        };
        hasher.update((found.relative.len() as u64).to_le_bytes());
        hasher.update(found.relative.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        let file = BundleFile {
            path: found.path,
            relative: found.relative,
            text,
        };
        match found.kind {
            FileKind::Policies => files.policies.push(file),
            FileKind::Schema => files.schemas.push(file),
            FileKind::Tuples => files.tuples.push(file),
            FileKind::Entities => files.entities.push(file),
        }
    }
    if !errors.is_empty() {
        return Err(InvalidBundle::new(errors));
    }
    files.version = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(files)
}

/// Returns a cheap fingerprint of the bundle's files: where the directory resolves to, and each
/// file's name, where it resolves to, size, modification time and inode. It changes when a
/// file is written, added, removed or swapped in through a symlink, without reading any file; a
/// directory that cannot be listed has a fingerprint too, so a fix is noticed.
///
/// The resolved path matters: kubelet writes every ConfigMap update into a new timestamped
/// directory, so two updates land on different paths even when the filesystem reuses inode
/// numbers and its timestamps are too coarse to tell them apart.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(dir).ok().hash(&mut hasher);
    match list_bundle_dir(dir) {
        Ok((found, errors)) => {
            errors.len().hash(&mut hasher);
            for file in found {
                file.relative.hash(&mut hasher);
                std::fs::canonicalize(&file.path).ok().hash(&mut hasher);
                file.metadata.len().hash(&mut hasher);
                file.metadata.ino().hash(&mut hasher);
                file.metadata.mtime().hash(&mut hasher);
                file.metadata.mtime_nsec().hash(&mut hasher);
            }
        }
        Err(error) => error.to_string().hash(&mut hasher),
    }
    hasher.finish()
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    seen_dirs: &mut HashSet<PathBuf>,
    found: &mut Vec<Found>,
    errors: &mut Vec<LoadError>,
) {
    // A symlink loop would revisit a directory: walk each real directory once.
    match std::fs::canonicalize(dir) {
        Ok(real) => {
            if !seen_dirs.insert(real) {
                return;
            }
        }
        Err(e) => {
            errors.push(LoadError::file(
                dir,
                format!("cannot read directory: {}", io_reason(&e)),
            ));
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError::file(
                dir,
                format!("cannot read directory: {}", io_reason(&e)),
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(LoadError::file(
                    dir,
                    format!("cannot list directory: {}", io_reason(&e)),
                ));
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // A name that is not UTF-8 cannot be one of ours (all our suffixes are ASCII).
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks: a ConfigMap's visible names are symlinks.
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) => {
                if classify(name).is_some() {
                    errors.push(LoadError::file(
                        &path,
                        format!("cannot read: {}", io_reason(&e)),
                    ));
                }
                continue;
            }
        };
        if metadata.is_dir() {
            if depth + 1 > MAX_DIR_DEPTH {
                errors.push(LoadError::file(
                    &path,
                    format!("directories nested deeper than {MAX_DIR_DEPTH} levels are not read"),
                ));
                continue;
            }
            walk(root, &path, depth + 1, seen_dirs, found, errors);
            continue;
        }
        let Some(kind) = classify(name) else {
            continue;
        };
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        found.push(Found {
            kind,
            path,
            relative,
            metadata,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_classified_by_suffix() {
        assert_eq!(classify("a.cedar"), Some(FileKind::Policies));
        assert_eq!(classify("a.cedarschema"), Some(FileKind::Schema));
        assert_eq!(classify("a.cedarschema.json"), Some(FileKind::Schema));
        assert_eq!(classify("a.tuples"), Some(FileKind::Tuples));
        assert_eq!(classify("a.entities.json"), Some(FileKind::Entities));
        assert_eq!(classify("package.json"), None);
        assert_eq!(classify("README.md"), None);
        assert_eq!(classify("cases.yaml"), None);
    }

    #[test]
    fn hidden_entries_are_skipped_and_version_tracks_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "permit(principal, action, resource);",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/x.cedar"), "garbage").unwrap();
        std::fs::write(dir.path().join(".hidden.tuples"), "garbage").unwrap();
        let first = read_bundle_dir(dir.path()).unwrap();
        assert_eq!(first.policies.len(), 1);
        assert!(first.tuples.is_empty());
        assert_eq!(first.version.len(), 16);

        let again = read_bundle_dir(dir.path()).unwrap();
        assert_eq!(first.version, again.version);
        std::fs::write(
            dir.path().join("a.cedar"),
            "forbid(principal, action, resource);",
        )
        .unwrap();
        let changed = read_bundle_dir(dir.path()).unwrap();
        assert_ne!(first.version, changed.version);
    }

    #[test]
    fn fingerprint_changes_with_content_and_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tuples"), "x").unwrap();
        let first = fingerprint(dir.path());
        assert_eq!(first, fingerprint(dir.path()));
        std::fs::write(dir.path().join("a.tuples"), "xy").unwrap();
        let written = fingerprint(dir.path());
        assert_ne!(first, written);
        std::fs::rename(dir.path().join("a.tuples"), dir.path().join("b.tuples")).unwrap();
        assert_ne!(written, fingerprint(dir.path()));
        // Files the loader ignores do not count.
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("notes.md"), "x").unwrap();
        assert_eq!(before, fingerprint(dir.path()));
    }

    #[test]
    fn a_byte_order_mark_is_not_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.tuples"),
            "\u{feff}Team::\"t\"#member@User::\"u\"\n",
        )
        .unwrap();
        let files = read_bundle_dir(dir.path()).unwrap();
        assert!(files.tuples[0].text.starts_with("Team::"));
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let err = read_bundle_dir(Path::new("/nonexistent/verdict-bundle")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/verdict-bundle: cannot read bundle directory: no such file or directory"
        );
    }
}
