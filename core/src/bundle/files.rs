//! Finding and reading a bundle's files, and hashing them into the snapshot version.
//!
//! The walk is recursive and follows symlinks, because Kubernetes mounts a ConfigMap as
//! symlinks through `..data` into a hidden timestamped directory, and git-sync swaps a symlinked
//! checkout. Entries whose name starts with `.` are skipped: each ConfigMap file is then read
//! once, through its visible name, and `.git` is never walked.
//!
//! Only what a bundle is gets read (issue 15, hostile bundles). A bundle file (a name the loader
//! reads) must be a regular file, or a symlink that resolves to a regular file inside the bundle
//! directory (resolved, so a symlinked bundle directory and `..data` keep working). Anything
//! else under a bundle name is refused with an error naming it, never skipped: a FIFO, socket
//! or device, a symlink (to a file or a directory) that leads out of the bundle directory. A
//! refused file fails the whole load, as a broken one does, so a mistake is seen instead of
//! silently changing what is served. Entries with other names are never opened, whatever
//! they are.
//!
//! No read can block or run away:
//! - the type is checked with `lstat`/`stat` before anything is opened, and listing and
//!   fingerprinting only ever stat;
//! - files are opened with `O_NONBLOCK`, so a FIFO swapped in between the check and the open
//!   does not block the open, and the opened file is checked again (`fstat`): it must be a
//!   regular file and the very file that was listed (same device and inode), or the load fails
//!   and the reload reads again;
//! - sizes are capped per file and per bundle ([`ReadLimits`]): a file over its cap is refused
//!   from its listed size before it is opened, and every read is bounded with `Read::take`, so a
//!   file that grows while it is read cannot take more than the cap either.

use std::collections::HashSet;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{InvalidBundle, LoadError, LoadErrorKind};
use crate::diagnostics::io_reason;

/// Size caps on what a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadLimits {
    /// The largest file, in bytes.
    pub(crate) max_file_bytes: u64,
    /// The most bytes of all files together.
    pub(crate) max_bundle_bytes: u64,
}

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
    /// SHA-256 of `text`: what the snapshot version and the reload's reuse keys are made of.
    pub(super) digest: [u8; 32],
}

/// The bundle's files by kind, each list sorted by relative path.
#[derive(Debug, Default)]
pub(super) struct BundleFiles {
    pub(super) policies: Vec<BundleFile>,
    pub(super) schemas: Vec<BundleFile>,
    pub(super) tuples: Vec<BundleFile>,
    pub(super) entities: Vec<BundleFile>,
    pub(super) routes: Vec<BundleFile>,
    pub(super) revocations: Vec<BundleFile>,
    /// The relation model's files (`*.fga`).
    pub(super) models: Vec<BundleFile>,
    /// Content hash of every file read, in path order.
    pub(super) version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Policies,
    Schema,
    Tuples,
    Entities,
    Routes,
    Revocations,
    Model,
}

/// The endings of the names the loader reads (besides `routes.yaml` and `revocations.txt`),
/// for "did you mean" hints; [`classify`] is the rule.
pub(super) const KNOWN_SUFFIXES: &[&str] = &[
    ".cedar",
    ".cedarschema",
    ".cedarschema.json",
    ".tuples",
    ".entities.json",
    ".fga",
    ".routes.yaml",
    ".revocations.txt",
];

/// Returns whether the loader reads a file of this name (by suffix).
pub fn is_bundle_file_name(name: &str) -> bool {
    classify(name).is_some()
}

/// Returns whether a file of this name is a route file: `routes.yaml` or `*.routes.yaml`.
pub fn is_route_file_name(name: &str) -> bool {
    name == "routes.yaml" || name.ends_with(".routes.yaml")
}

/// Returns whether a file of this name is a revocation list: `revocations.txt` or
/// `*.revocations.txt`.
pub fn is_revocation_file_name(name: &str) -> bool {
    name == "revocations.txt" || name.ends_with(".revocations.txt")
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
    } else if is_route_file_name(name) {
        Some(FileKind::Routes)
    } else if is_revocation_file_name(name) {
        Some(FileKind::Revocations)
    } else if name.ends_with(".fga") {
        Some(FileKind::Model)
    } else {
        None
    }
}

/// A bundle file found by the walk, not read yet.
struct Found {
    kind: FileKind,
    path: PathBuf,
    relative: String,
    /// The metadata of the regular file the path resolves to.
    metadata: Metadata,
}

/// What the walk needs to know about the bundle directory.
struct Root<'a> {
    /// The directory as given: what paths in errors start with.
    given: &'a Path,
    /// The directory with every symlink resolved: symlinks must resolve below it.
    real: PathBuf,
    /// The largest file, in bytes.
    max_file_bytes: u64,
}

/// Lists the bundle's files below `dir`, sorted by relative path, and every entry that could
/// not be listed or is refused. Never opens a file. Files over `max_file_bytes` are refused
/// here, from their size.
fn list_bundle_dir(
    dir: &Path,
    max_file_bytes: u64,
) -> Result<(Vec<Found>, Vec<LoadError>), InvalidBundle> {
    let cannot_read = |e: std::io::Error| {
        LoadError::file(
            dir,
            format!("cannot read bundle directory: {}", io_reason(&e)),
        )
        .with_kind(LoadErrorKind::Unreadable)
    };
    let metadata = std::fs::metadata(dir).map_err(cannot_read)?;
    if !metadata.is_dir() {
        return Err(LoadError::file(dir, "the bundle must be a directory")
            .with_kind(LoadErrorKind::Unreadable)
            .into());
    }
    let root = Root {
        given: dir,
        real: std::fs::canonicalize(dir).map_err(cannot_read)?,
        max_file_bytes,
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut seen_dirs = HashSet::new();
    walk(&root, dir, 0, &mut seen_dirs, &mut found, &mut errors);
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok((found, errors))
}

/// Reads every bundle file below `dir`, within `limits`.
pub(super) fn read_bundle_dir(
    dir: &Path,
    limits: ReadLimits,
) -> Result<BundleFiles, InvalidBundle> {
    let mut files = BundleFiles::default();
    let (found, mut errors) = list_bundle_dir(dir, limits.max_file_bytes)?;
    let listed_bytes = found
        .iter()
        .map(|f| f.metadata.len())
        .fold(0u64, u64::saturating_add);
    if listed_bytes > limits.max_bundle_bytes {
        errors.push(
            LoadError::file(
                dir,
                format!(
                    "the bundle's files are {listed_bytes} bytes, over the limit of {} bytes per bundle",
                    limits.max_bundle_bytes
                ),
            )
            .with_kind(LoadErrorKind::TooLarge),
        );
        return Err(InvalidBundle::new(errors));
    }
    let mut hasher = Sha256::new();
    let mut read_bytes = 0u64;
    for found in found {
        let budget = Budget {
            max_file_bytes: limits.max_file_bytes,
            bundle_left: limits.max_bundle_bytes.saturating_sub(read_bytes),
            max_bundle_bytes: limits.max_bundle_bytes,
        };
        let text = match read_bundle_file(&found, budget) {
            // A byte-order mark is invisible in editors; columns count from after it.
            Ok(text) => match text.strip_prefix('\u{feff}') {
                Some(rest) => rest.to_owned(),
                None => text,
            },
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        read_bytes = read_bytes.saturating_add(text.len() as u64);
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        hasher.update((found.relative.len() as u64).to_le_bytes());
        hasher.update(found.relative.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(digest);
        let file = BundleFile {
            path: found.path,
            relative: found.relative,
            text,
            digest,
        };
        match found.kind {
            FileKind::Policies => files.policies.push(file),
            FileKind::Schema => files.schemas.push(file),
            FileKind::Tuples => files.tuples.push(file),
            FileKind::Entities => files.entities.push(file),
            FileKind::Routes => files.routes.push(file),
            FileKind::Revocations => files.revocations.push(file),
            FileKind::Model => files.models.push(file),
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

/// What one file may still take: the smaller of the per-file cap and what is left of the
/// bundle's.
#[derive(Debug, Clone, Copy)]
struct Budget {
    max_file_bytes: u64,
    bundle_left: u64,
    max_bundle_bytes: u64,
}

/// Returns the type of a file that is not a regular file or a directory, for errors.
fn special_file_type(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn not_a_regular_file(path: &Path, metadata: &Metadata) -> LoadError {
    LoadError::file(
        path,
        format!(
            "is {}; a bundle file must be a regular file",
            special_file_type(metadata)
        ),
    )
    .with_kind(LoadErrorKind::Unreadable)
}

/// Reads one listed file: opened without blocking, checked to be the regular file that was
/// listed, read up to its budget, and decoded as UTF-8.
fn read_bundle_file(found: &Found, budget: Budget) -> Result<String, LoadError> {
    let cannot_read = |e: std::io::Error| {
        LoadError::file(&found.path, format!("cannot read: {}", io_reason(&e)))
            .with_kind(LoadErrorKind::Unreadable)
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever. It
    // changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&found.path)
        .map_err(cannot_read)?;
    let opened = file.metadata().map_err(cannot_read)?;
    if !opened.is_file() {
        return Err(not_a_regular_file(&found.path, &opened));
    }
    // A symlink swapped between the listing and the open could lead anywhere: only the file
    // whose type and place were checked is read. A legitimate swap (an editor's rename, a
    // `..data` swap) changes the fingerprint as well, and the reload reads again.
    if (opened.dev(), opened.ino()) != (found.metadata.dev(), found.metadata.ino()) {
        return Err(LoadError::file(
            &found.path,
            "changed while the bundle was being read; it is read again on the next change",
        )
        .with_kind(LoadErrorKind::Unreadable));
    }
    let limit = budget.max_file_bytes.min(budget.bundle_left);
    let capacity = opened.len().min(limit);
    let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > limit {
        let message = if limit == budget.max_file_bytes {
            format!(
                "the file is over the limit of {} bytes per file",
                budget.max_file_bytes
            )
        } else {
            format!(
                "the bundle's files are over the limit of {} bytes per bundle",
                budget.max_bundle_bytes
            )
        };
        return Err(LoadError::file(&found.path, message).with_kind(LoadErrorKind::TooLarge));
    }
    String::from_utf8(bytes).map_err(|_| {
        LoadError::file(&found.path, "cannot read: not valid utf-8 text")
            .with_kind(LoadErrorKind::Unreadable)
    })
}

/// Returns a cheap fingerprint of the bundle's files: where the directory resolves to, and each
/// file's name, where it resolves to, size, modification time and inode. It changes when a
/// file is written, added, removed or swapped in through a symlink, without reading any file; a
/// directory that cannot be listed has a fingerprint too, so a fix is noticed.
///
/// The resolved path matters: kubelet writes every ConfigMap update into a new timestamped
/// directory, so two updates land on different paths even when the filesystem reuses inode
/// numbers and its timestamps are too coarse to tell them apart.
///
/// It only lists and stats, never opens a file: a FIFO in the bundle cannot block it.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(dir).ok().hash(&mut hasher);
    // No size cap here: the fingerprint hashes sizes, and the load applies the caps.
    match list_bundle_dir(dir, u64::MAX) {
        Ok((found, errors)) => {
            for error in &errors {
                error.to_string().hash(&mut hasher);
            }
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

/// Walks `dir` by hand rather than with walkdir: walkdir opens a directory (and lists it, when
/// sorted) before `filter_entry` can refuse it, so a symlink leading out of the bundle or a
/// hidden directory would be opened first; this walk decides from `lstat`/`stat` before it
/// opens anything.
fn walk(
    root: &Root<'_>,
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
            errors.push(
                LoadError::file(dir, format!("cannot read directory: {}", io_reason(&e)))
                    .with_kind(LoadErrorKind::Unreadable),
            );
            return;
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(
                LoadError::file(dir, format!("cannot read directory: {}", io_reason(&e)))
                    .with_kind(LoadErrorKind::Unreadable),
            );
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(
                    LoadError::file(dir, format!("cannot list directory: {}", io_reason(&e)))
                        .with_kind(LoadErrorKind::Unreadable),
                );
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
        let kind = classify(name);
        let refuse = |message: &str, error_kind: LoadErrorKind| {
            LoadError::file(&path, message).with_kind(error_kind)
        };
        let cannot_read = |e: std::io::Error| {
            refuse(
                &format!("cannot read: {}", io_reason(&e)),
                LoadErrorKind::Unreadable,
            )
        };
        // `lstat` first: a symlink must resolve inside the bundle directory.
        let is_symlink = match entry.file_type() {
            Ok(file_type) => file_type.is_symlink(),
            Err(e) => {
                if kind.is_some() {
                    errors.push(cannot_read(e));
                }
                continue;
            }
        };
        // `stat` follows symlinks: a ConfigMap's visible names are symlinks.
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) => {
                if kind.is_some() {
                    errors.push(cannot_read(e));
                }
                continue;
            }
        };
        if is_symlink && (kind.is_some() || metadata.is_dir()) {
            match std::fs::canonicalize(&path) {
                Ok(real) if real.starts_with(&root.real) => {}
                Ok(_) => {
                    errors.push(refuse(
                        "is a symlink that leads out of the bundle directory; only symlinks \
                         that resolve inside it are followed",
                        LoadErrorKind::Unreadable,
                    ));
                    continue;
                }
                Err(e) => {
                    errors.push(cannot_read(e));
                    continue;
                }
            }
        }
        if metadata.is_dir() {
            if depth + 1 > MAX_DIR_DEPTH {
                errors.push(refuse(
                    &format!("directories nested deeper than {MAX_DIR_DEPTH} levels are not read"),
                    LoadErrorKind::Invalid,
                ));
                continue;
            }
            walk(root, &path, depth + 1, seen_dirs, found, errors);
            continue;
        }
        let Some(kind) = kind else {
            // Not a name the loader reads: never opened, whatever it is.
            continue;
        };
        if !metadata.is_file() {
            errors.push(not_a_regular_file(&path, &metadata));
            continue;
        }
        if metadata.len() > root.max_file_bytes {
            errors.push(refuse(
                &format!(
                    "the file is {} bytes, over the limit of {} bytes per file",
                    metadata.len(),
                    root.max_file_bytes
                ),
                LoadErrorKind::TooLarge,
            ));
            continue;
        }
        let relative = path
            .strip_prefix(root.given)
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
mod tests;
