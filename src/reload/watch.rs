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
//! The poll fingerprint in the watch loop is the backstop for filesystems without inotify.

use std::path::{Path, PathBuf};

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
            || event.paths.iter().any(|path| {
                self.roots.iter().any(|root| path.starts_with(root)) || self.steps.contains(path)
            })
    }
}

/// The live watches for one configured bundle path.
pub(super) struct BundleWatch {
    configured: PathBuf,
    identity: Identity,
    events_tx: mpsc::Sender<()>,
    _watcher: RecommendedWatcher,
}

impl BundleWatch {
    /// Watches `configured` (made absolute) and its ancestors; each relevant event sends `()`.
    pub(super) fn new(configured: &Path, events_tx: mpsc::Sender<()>) -> notify::Result<Self> {
        let configured = std::path::absolute(configured)?;
        let identity = identity(&configured);
        let watcher = Self::watch(&configured, &identity, events_tx.clone())?;
        Ok(Self {
            configured,
            identity,
            events_tx,
            _watcher: watcher,
        })
    }

    fn watch(
        configured: &Path,
        identity: &Identity,
        events_tx: mpsc::Sender<()>,
    ) -> notify::Result<RecommendedWatcher> {
        let relevance = Relevance::new(configured, identity);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            let matters = match &event {
                Ok(event) => relevance.matters(event),
                Err(error) => {
                    tracing::warn!(%error, "bundle watch error; rebuilding to be safe");
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

    /// Sets the watches up anew if the configured path now leads to another directory.
    pub(super) fn refresh(&mut self) {
        let now = identity(&self.configured);
        if now == self.identity {
            return;
        }
        match Self::watch(&self.configured, &now, self.events_tx.clone()) {
            Ok(watcher) => {
                tracing::info!(
                    path = %self.configured.display(),
                    target = ?now.as_ref().map(|(real, _)| real.display().to_string()),
                    "bundle path moved; watching the new target"
                );
                self._watcher = watcher;
                self.identity = now;
            }
            Err(error) => {
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
}
