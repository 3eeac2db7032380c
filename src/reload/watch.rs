//! Watching the bundle directory with `notify`, including the symlink layouts of Kubernetes and
//! git-sync.
//!
//! - In-place writes, renames, new and deleted files: a recursive watch on the bundle directory.
//! - A ConfigMap update: kubelet writes a new hidden `..<timestamp>` directory and renames a new
//!   `..data` symlink over the old one, inside the mounted directory: the recursive watch sees
//!   the rename (hidden names are not filtered here; the loader skips them).
//! - git-sync, or any swapped symlink on the way to the bundle (`/git/repo -> rev-abc`): the
//!   watch on the old target sees nothing, so every ancestor of the configured path is watched
//!   too (non-recursively), and an event on the next path component towards the bundle counts.
//!   After each rebuild the path is resolved again; if it now leads elsewhere (or the directory
//!   was replaced), the watches are set up anew.
//!
//! - The bundle directory deleted and created again (`rm -rf` and a fresh clone): the old
//!   watch dies with it, and the new directory may reuse its inode, so any create or remove on
//!   a root or on the path marks the watches stale, and they are set up anew after the rebuild.
//!
//! Events on files the loader ignores (hidden names such as `.git/…` or an editor's swap file,
//! names without a bundle suffix such as `README.md`) are dropped, so a busy neighbour cannot
//! cause a rebuild storm. `..data` is the exception among hidden names: its swap is the
//! ConfigMap update.
//!
//! The poll fingerprint in the watch loop is the backstop for filesystems without inotify.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Where the configured path leads now: the real directory and its inode.
type Identity = Option<(PathBuf, u64)>;

fn identity(path: &Path) -> Identity {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(path).ok()?;
    let inode = std::fs::metadata(&real).ok()?.ino();
    Some((real, inode))
}

/// Which event paths matter for one configured bundle path.
#[derive(Debug, Clone)]
struct Relevance {
    /// The configured path and the directory it resolves to: anything below them counts.
    roots: Vec<PathBuf>,
    /// For each ancestor of the configured path, its child on the way to the bundle.
    steps: Vec<PathBuf>,
}

impl Relevance {
    fn new(configured: &Path, identity: &Identity) -> Self {
        let mut roots = vec![configured.to_path_buf()];
        if let Some((real, _)) = identity {
            roots.push(real.clone());
        }
        let steps = configured
            .ancestors()
            .filter(|a| a.parent().is_some())
            .map(Path::to_path_buf)
            .collect();
        Self { roots, steps }
    }

    fn matters(&self, event: &Event) -> bool {
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        // An event without paths (a queue overflow, a rescan) may hide anything.
        event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|path| self.steps.contains(path) || self.is_bundle_path(path))
    }

    /// Whether `path` is below a root and could be (or contain) a file the loader reads.
    fn is_bundle_path(&self, path: &Path) -> bool {
        let Some(relative) = self
            .roots
            .iter()
            .find_map(|root| path.strip_prefix(root).ok())
        else {
            return false;
        };
        let mut names = relative.components().filter_map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        });
        let all_visible = names
            .clone()
            .all(|name| !name.starts_with('.') || name == "..data");
        let Some(last) = names.next_back() else {
            // The root itself.
            return true;
        };
        let loadable = verdict_core::is_bundle_file_name(last)
            || last == "..data"
            // Decision tables (`tests/*.yaml`), for `verdict test --watch`. For the server, a
            // rebuild they trigger finds the serving version and changes nothing.
            || last.ends_with(".yaml")
            || last.ends_with(".yml")
            // A name without a dot is likely a directory (it may be gone, so no stat).
            || !last.contains('.');
        all_visible && loadable
    }

    /// Whether an event changes what the watches should be: a root, or a directory on the way
    /// to it, created, removed or renamed.
    fn moves_the_bundle(&self, event: &Event) -> bool {
        let structural = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        structural
            && event
                .paths
                .iter()
                .any(|path| self.steps.contains(path) || self.roots.contains(path))
    }
}

/// The live watches for one configured bundle path.
pub(super) struct BundleWatch {
    configured: PathBuf,
    identity: Identity,
    events_tx: mpsc::Sender<()>,
    /// Set by the watcher when a root or a directory on the path was created or removed.
    stale: Arc<AtomicBool>,
    _watcher: RecommendedWatcher,
}

impl BundleWatch {
    /// Watches `configured` (made absolute) and its ancestors; each relevant event sends `()`.
    pub(super) fn new(configured: &Path, events_tx: mpsc::Sender<()>) -> notify::Result<Self> {
        let configured = std::path::absolute(configured)?;
        let identity = identity(&configured);
        let stale = Arc::new(AtomicBool::new(false));
        let watcher = Self::watch(
            &configured,
            &identity,
            events_tx.clone(),
            Arc::clone(&stale),
        )?;
        Ok(Self {
            configured,
            identity,
            events_tx,
            stale,
            _watcher: watcher,
        })
    }

    fn watch(
        configured: &Path,
        identity: &Identity,
        events_tx: mpsc::Sender<()>,
        stale: Arc<AtomicBool>,
    ) -> notify::Result<RecommendedWatcher> {
        let relevance = Relevance::new(configured, identity);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            let matters = match &event {
                Ok(event) => {
                    if relevance.moves_the_bundle(event) {
                        stale.store(true, Ordering::Relaxed);
                    }
                    relevance.matters(event)
                }
                Err(error) => {
                    tracing::warn!(%error, "bundle watch error; rebuilding to be safe");
                    stale.store(true, Ordering::Relaxed);
                    true
                }
            };
            if matters {
                // A full queue already holds a pending rebuild: dropping is fine.
                let _ = events_tx.try_send(());
            }
        })?;
        if let Some((real, _)) = identity {
            watcher.watch(real, RecursiveMode::Recursive)?;
        }
        for ancestor in configured.ancestors().skip(1) {
            // Best effort: an ancestor we may not watch only loses the symlink-swap fast path;
            // the poll fingerprint still sees the change.
            if let Err(error) = watcher.watch(ancestor, RecursiveMode::NonRecursive) {
                tracing::debug!(path = %ancestor.display(), %error, "cannot watch ancestor");
            }
        }
        Ok(watcher)
    }

    /// Sets the watches up anew if the configured path now leads to another directory, or if a
    /// directory on it was created or removed since the watches were set up.
    pub(super) fn refresh(&mut self) {
        let now = identity(&self.configured);
        let stale = self.stale.swap(false, Ordering::Relaxed);
        if now == self.identity && !stale {
            return;
        }
        let fresh = Arc::new(AtomicBool::new(false));
        match Self::watch(
            &self.configured,
            &now,
            self.events_tx.clone(),
            Arc::clone(&fresh),
        ) {
            Ok(watcher) => {
                tracing::info!(
                    path = %self.configured.display(),
                    target = %now.as_ref().map_or_else(
                        || "(nothing there)".to_owned(),
                        |(real, _)| real.display().to_string()
                    ),
                    "bundle path moved; watching the new target"
                );
                self._watcher = watcher;
                self.stale = fresh;
                self.identity = now;
            }
            Err(error) => {
                // Try again after the next rebuild; the poll fingerprint covers the meantime.
                self.stale.store(true, Ordering::Relaxed);
                tracing::warn!(path = %self.configured.display(), %error, "cannot watch the bundle");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn events_below_the_bundle_or_on_the_way_to_it_matter() {
        let identity = Some((PathBuf::from("/git/rev-abc/policies"), 1));
        let relevance = Relevance::new(Path::new("/git/repo/policies"), &identity);
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(relevance.matters(&event(modify, "/git/rev-abc/policies/a.cedar")));
        assert!(relevance.matters(&event(modify, "/git/repo/policies/..data")));
        assert!(relevance.matters(&event(modify, "/git/repo/policies/sub")));
        // Files the loader ignores do not cause rebuilds.
        assert!(!relevance.matters(&event(modify, "/git/repo/policies/.git/index")));
        assert!(!relevance.matters(&event(modify, "/git/repo/policies/README.md")));
        assert!(!relevance.matters(&event(modify, "/git/repo/policies/.a.cedar.swp")));
        assert!(!relevance.matters(&event(modify, "/git/repo/policies/..2026_01_01/a.cedar")));
        // git-sync renames a new `repo` symlink into place.
        assert!(relevance.matters(&event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/git/repo"
        )));
        // Neighbours of the path do not.
        assert!(!relevance.matters(&event(EventKind::Create(CreateKind::File), "/git/other")));
        assert!(!relevance.matters(&event(modify, "/tmp/x")));
        // Reads are not changes; a finished write is.
        assert!(!relevance.matters(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/git/rev-abc/policies/a.cedar"
        )));
        assert!(relevance.matters(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/git/rev-abc/policies/a.cedar"
        )));
        assert!(relevance.matters(&Event::new(EventKind::Other)));
    }

    #[test]
    fn creating_or_removing_the_bundle_or_a_step_moves_it() {
        let identity = Some((PathBuf::from("/srv/policies"), 7));
        let relevance = Relevance::new(Path::new("/srv/policies"), &identity);
        let removed = Event::new(EventKind::Remove(notify::event::RemoveKind::Folder))
            .add_path(PathBuf::from("/srv/policies"));
        assert!(relevance.moves_the_bundle(&removed));
        let created =
            Event::new(EventKind::Create(CreateKind::Folder)).add_path(PathBuf::from("/srv"));
        assert!(relevance.moves_the_bundle(&created));
        let file = Event::new(EventKind::Create(CreateKind::File))
            .add_path(PathBuf::from("/srv/policies/a.cedar"));
        assert!(!relevance.moves_the_bundle(&file));
    }
}
