//! Hot reload: rebuild the snapshot when the bundle changes, off the request path, and swap it in
//! atomically.
//!
//! Owns: the [`Reloader`] (one rebuild at a time, compare versions, swap or keep the last good
//! snapshot and say why) and the watch loop that triggers it (notify events, a poll fingerprint
//! backstop, debouncing). SIGHUP and the `Reload` RPC call [`Reloader::reload`] directly.
//!
//! Does not own: evaluation or parsing. A rebuild is [`Snapshot::reload`] (with the serving
//! snapshot lending the policies or the tuple index when their files did not change) on a
//! blocking thread; requests keep answering from the snapshot they loaded.
//!
//! A reload, whatever triggered it:
//! 1. takes the rebuild lock (rebuilds never overlap),
//! 2. loads and validates the whole bundle on a blocking thread,
//! 3. if it is valid and its version differs, stores it (requests in flight finish on the old
//!    one); if its version is the one serving, changes nothing,
//!    Unless a bundle without policies is allowed, an empty one is invalid (the load refuses it);
//!    with `--max-reload-drop`, a valid bundle that drops more than that share of the serving
//!    snapshot's policies or tuples is refused here, as if it were invalid,
//! 4. if it is invalid, keeps the last good snapshot, logs every error with file:line, records
//!    the failure for the status call and counts `result="failed"` and its `reason`.

mod debounce;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, mpsc, watch as state};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use verdict_core::{InvalidBundle, LoadError, LoadOptions, Snapshot};

use crate::serving::{LoadFailure, SnapshotHandle};
use crate::telemetry::metrics::{
    ReloadFailureReason, ReloadResult, record_reload, record_reload_failure,
};

/// What started a reload, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The first load at startup.
    Startup,
    /// A file event or a changed poll fingerprint.
    Watch,
    /// SIGHUP.
    Signal,
    /// The `Reload` RPC.
    Rpc,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Watch => "watch",
            Self::Signal => "signal",
            Self::Rpc => "rpc",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot is serving.
    Updated {
        /// Its version.
        version: String,
    },
    /// The bundle's content equals the serving snapshot's; nothing was swapped.
    Unchanged {
        /// The serving version.
        version: String,
    },
    /// The bundle is invalid, or refused; the previous snapshot (if any) keeps serving.
    Failed {
        /// Every error found.
        errors: InvalidBundle,
        /// Why, as a closed set.
        reason: ReloadFailureReason,
        /// The version still serving, if any.
        serving: Option<String>,
    },
}

/// Reload counters, for tests and the status of the reload machinery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Rebuilds started (every trigger that reached a load).
    pub rebuilds: u64,
    /// Rebuilds that swapped in a new snapshot.
    pub updated: u64,
    /// Rebuilds that found the serving content.
    pub unchanged: u64,
    /// Rebuilds that found an invalid bundle.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rebuilds: AtomicU64,
    updated: AtomicU64,
    unchanged: AtomicU64,
    failed: AtomicU64,
}

/// How the watch loop notices changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Watch the directory with inotify (notify).
    pub watch: bool,
    /// Compare a fingerprint of the files this often; `None` turns polling off.
    pub poll_interval: Option<Duration>,
    /// Quiet time after the last event before a rebuild.
    pub debounce: Duration,
    /// Longest wait from the first event of a burst to its rebuild.
    pub max_delay: Duration,
}

/// Rebuilds and swaps snapshots for one bundle directory.
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    options: LoadOptions,
    /// The largest share of policies or tuples a reload may drop; `None` is no limit.
    max_drop: Option<f64>,
    snapshots: Arc<SnapshotHandle>,
    counters: Counters,
    rebuild_lock: Mutex<()>,
    serving_tx: state::Sender<Option<String>>,
    /// The fingerprint of the files as they were just before the last load started: a change
    /// made after that is seen as a difference, even one made before the watch was set up.
    loaded_fingerprint: AtomicU64,
    /// True once the watch loop watches (and polls): changes from then on are noticed.
    watching_tx: state::Sender<bool>,
}

impl Reloader {
    /// Returns a reloader for `dir` that loads with `options`, refuses a reload that drops
    /// more than `max_drop` (a share, 0 to 1) of the serving policies or tuples, and stores
    /// into `snapshots`.
    pub fn new(
        dir: &Path,
        options: LoadOptions,
        max_drop: Option<f64>,
        snapshots: Arc<SnapshotHandle>,
    ) -> Arc<Self> {
        let serving = snapshots
            .load_bundle()
            .map(|s| s.snapshot.version().to_owned());
        let (serving_tx, _) = state::channel(serving);
        Arc::new(Self {
            dir: dir.to_path_buf(),
            options,
            max_drop,
            snapshots,
            counters: Counters::default(),
            rebuild_lock: Mutex::new(()),
            serving_tx,
            loaded_fingerprint: AtomicU64::new(0),
            watching_tx: state::channel(false).0,
        })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the bundle once, synchronously, before serving (blocking I/O).
    pub fn load_initial(&self) -> ReloadOutcome {
        self.load_and_apply(Cause::Startup)
    }

    /// Rebuilds now (waiting for a rebuild in progress to finish first) and swaps if changed.
    ///
    /// The rebuild runs to its end in a task of its own, holding the rebuild lock throughout:
    /// a caller that gives up (a cancelled RPC) never leaves a rebuild running unlocked. Loading,
    /// swapping and dropping snapshots all happen on a blocking thread.
    pub async fn reload(self: &Arc<Self>, cause: Cause) -> ReloadOutcome {
        let reloader = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _one_at_a_time = reloader.rebuild_lock.lock().await;
            let blocking = Arc::clone(&reloader);
            tokio::task::spawn_blocking(move || blocking.load_and_apply(cause)).await
        });
        match task.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) | Err(error) => {
                let errors = InvalidBundle::from(LoadError::file(
                    &self.dir,
                    format!("the rebuild did not finish: {error}"),
                ));
                let serving = self
                    .snapshots
                    .load_bundle()
                    .map(|s| s.snapshot.version().to_owned());
                let reason = ReloadFailureReason::Internal;
                self.fail(&errors, reason, cause, serving.as_deref());
                ReloadOutcome::Failed {
                    errors,
                    reason,
                    serving,
                }
            }
        }
    }

    /// Loads, swaps if changed, and drops whatever snapshot is no longer needed, all on the
    /// calling (blocking) thread.
    fn load_and_apply(&self, cause: Cause) -> ReloadOutcome {
        let started = Instant::now();
        // The serving snapshot lends the parts of the bundle that did not change; it is only
        // read, and keeps serving throughout. (With a relationship store, the bundle side of
        // it: a reload never takes the store's tuples for the bundle's.)
        let serving = self.snapshots.load_bundle();
        let previous = serving.as_deref().map(|served| &served.snapshot);
        let (fingerprint, result) = fingerprint_and_load(&self.dir, self.options, previous);
        drop(serving);
        self.loaded_fingerprint
            .store(fingerprint, Ordering::Relaxed);
        let result = result.and_then(|snapshot| self.refuse_a_large_drop(snapshot));
        self.apply(result, cause, started)
    }

    /// Refuses `snapshot` when it drops more than `max_drop` of the serving snapshot's
    /// policies or tuples (`--max-reload-drop`): a half-synced checkout or a ConfigMap that lost
    /// a key looks valid and would deny most requests.
    fn refuse_a_large_drop(
        &self,
        snapshot: Snapshot,
    ) -> Result<Snapshot, (InvalidBundle, ReloadFailureReason)> {
        let (Some(max_drop), Some(serving)) = (self.max_drop, self.snapshots.load_bundle()) else {
            return Ok(snapshot);
        };
        let old = &serving.snapshot;
        let counts = [
            ("policies", old.policy_count(), snapshot.policy_count()),
            ("tuples", old.tuple_count(), snapshot.tuple_count()),
        ];
        for (what, before, after) in counts {
            let dropped = before.saturating_sub(after) as f64 / before.max(1) as f64;
            if dropped > max_drop {
                let error = LoadError::file(
                    &self.dir,
                    format!(
                        "the new bundle has {after} {what} where the serving one has {before}, a drop of {:.0}%, more than the {:.0}% allowed; refused as a likely mistake",
                        dropped * 100.0,
                        max_drop * 100.0
                    ),
                );
                return Err((error.into(), ReloadFailureReason::Dropped));
            }
        }
        Ok(snapshot)
    }

    /// Keeps the last good snapshot after a failed load: logs every error, records the failure
    /// for the status call and counts it with its reason.
    fn fail(
        &self,
        errors: &InvalidBundle,
        reason: ReloadFailureReason,
        cause: Cause,
        serving: Option<&str>,
    ) {
        for error in errors.errors() {
            tracing::warn!(
                cause = cause.as_str(),
                reason = reason.as_str(),
                %error,
                serving = serving.unwrap_or("none"),
                "bundle rejected; the last good snapshot keeps serving"
            );
        }
        self.snapshots.record_failure(LoadFailure {
            message: errors.to_string(),
            reason,
            at: SystemTime::now(),
        });
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        record_reload_failure(reason);
    }

    /// Waits until the watch loop watches and polls, so a change made from now on is noticed.
    pub async fn watching(&self) {
        let mut watching = self.watching_tx.subscribe();
        let _ = watching.wait_for(|ready| *ready).await;
    }

    fn apply(
        &self,
        result: Result<Snapshot, (InvalidBundle, ReloadFailureReason)>,
        cause: Cause,
        started: Instant,
    ) -> ReloadOutcome {
        self.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let serving = self
            .snapshots
            .load_bundle()
            .map(|s| s.snapshot.version().to_owned());
        match result {
            Ok(snapshot) if serving.as_deref() == Some(snapshot.version()) => {
                // A reverted broken edit lands here: the failure is over.
                self.snapshots.clear_failure();
                self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
                record_reload(ReloadResult::Unchanged);
                tracing::debug!(cause = cause.as_str(), version = %snapshot.version(), elapsed_ms, "bundle unchanged");
                ReloadOutcome::Unchanged {
                    version: snapshot.version().to_owned(),
                }
            }
            Ok(snapshot) => {
                let version = snapshot.version().to_owned();
                for warning in snapshot.warnings() {
                    tracing::warn!(%warning, "policy validation warning");
                }
                tracing::info!(
                    cause = cause.as_str(),
                    %version,
                    previous = serving.as_deref().unwrap_or("none"),
                    policies = snapshot.policy_count(),
                    tuples = snapshot.tuple_count(),
                    entities = snapshot.entity_count(),
                    elapsed_ms,
                    "bundle loaded"
                );
                self.snapshots.store(snapshot);
                self.counters.updated.fetch_add(1, Ordering::Relaxed);
                record_reload(ReloadResult::Updated);
                self.serving_tx.send_replace(Some(version.clone()));
                ReloadOutcome::Updated { version }
            }
            Err((errors, reason)) => {
                self.fail(&errors, reason, cause, serving.as_deref());
                ReloadOutcome::Failed {
                    errors,
                    reason,
                    serving,
                }
            }
        }
    }

    /// Returns the reload counters.
    pub fn counts(&self) -> ReloadCounts {
        ReloadCounts {
            rebuilds: self.counters.rebuilds.load(Ordering::Relaxed),
            updated: self.counters.updated.load(Ordering::Relaxed),
            unchanged: self.counters.unchanged.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    /// Returns a receiver of the serving version, updated on every swap.
    pub fn subscribe(&self) -> state::Receiver<Option<String>> {
        self.serving_tx.subscribe()
    }

    /// Starts the watch loop; it stops when `cancel` is cancelled.
    pub fn spawn_watch(
        self: &Arc<Self>,
        settings: WatchSettings,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let reloader = Arc::clone(self);
        tokio::spawn(watch_loop(reloader, settings, cancel))
    }
}

/// Attempts at reading a bundle that keeps changing under the reader.
const STABLE_READ_ATTEMPTS: usize = 3;

/// Fingerprints the files, loads them, and fingerprints them again. Files are read one by one,
/// so a change in between (an edit, a ConfigMap `..data` swap, a git-sync checkout) could mix
/// old and new files; a changed fingerprint discards the load and reads again. The fingerprint
/// taken first is returned: any change after it shows up as a difference later, so none is
/// missed. (The poll backstop compares this same fingerprint rather than running notify's
/// `PollWatcher`: a watcher's events cannot bracket a load, which the fingerprint must.)
fn fingerprint_and_load(
    dir: &Path,
    options: LoadOptions,
    previous: Option<&Snapshot>,
) -> (u64, Result<Snapshot, (InvalidBundle, ReloadFailureReason)>) {
    let mut before = verdict_core::fingerprint(dir);
    for _ in 0..STABLE_READ_ATTEMPTS {
        let result = match previous {
            Some(previous) => Snapshot::reload(dir, &options, previous),
            None => Snapshot::load(dir, &options),
        };
        let after = verdict_core::fingerprint(dir);
        if after == before {
            let result = result.map_err(|errors| {
                let reason = ReloadFailureReason::of(&errors);
                (errors, reason)
            });
            return (before, result);
        }
        drop(result);
        before = after;
    }
    let unstable = LoadError::file(
        dir,
        format!(
            "the bundle changed while it was being read, {STABLE_READ_ATTEMPTS} times in a row; the last good snapshot keeps serving and the next change is read again"
        ),
    );
    (
        before,
        Err((InvalidBundle::from(unstable), ReloadFailureReason::Unstable)),
    )
}

async fn fingerprint(dir: &Path) -> u64 {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || verdict_core::fingerprint(&dir))
        .await
        .unwrap_or_default()
}

async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn watch_loop(reloader: Arc<Reloader>, settings: WatchSettings, cancel: CancellationToken) {
    let (events_tx, mut events_rx) = mpsc::channel::<()>(64);
    let mut bundle_watch = if settings.watch {
        // Setting up a recursive watch walks the tree: a blocking thread's job.
        let dir = reloader.dir.clone();
        let created =
            tokio::task::spawn_blocking(move || watch::BundleWatch::new(&dir, events_tx)).await;
        match created {
            Ok(Ok(bundle_watch)) => Some(bundle_watch),
            Ok(Err(error)) => {
                tracing::warn!(
                    path = %reloader.dir.display(),
                    %error,
                    "cannot watch the bundle; relying on polling"
                );
                None
            }
            Err(error) => {
                tracing::warn!(%error, "setting up the bundle watch failed; relying on polling");
                None
            }
        }
    } else {
        None
    };
    let mut poll = settings.poll_interval.map(|period| {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut debounce = debounce::Debounce::new(settings.debounce, settings.max_delay);
    // Changes made between the last load and now (before the watch existed) count too.
    let mut seen = reloader.loaded_fingerprint.load(Ordering::Relaxed);
    if fingerprint(&reloader.dir).await != seen {
        debounce.note(tokio::time::Instant::now());
    }
    reloader.watching_tx.send_replace(true);
    loop {
        let deadline = debounce.deadline();
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(()) = events_rx.recv() => debounce.note(tokio::time::Instant::now()),
            () = tick(&mut poll) => {
                let now = fingerprint(&reloader.dir).await;
                if now != seen {
                    seen = now;
                    debounce.note(tokio::time::Instant::now());
                }
            }
            () = async {
                if let Some(deadline) = deadline {
                    tokio::time::sleep_until(deadline).await;
                }
            }, if deadline.is_some() => {
                debounce.clear();
                reloader.reload(Cause::Watch).await;
                seen = reloader.loaded_fingerprint.load(Ordering::Relaxed);
                if let Some(mut current) = bundle_watch.take() {
                    bundle_watch = tokio::task::spawn_blocking(move || {
                        current.refresh();
                        current
                    })
                    .await
                    .ok();
                }
            }
        }
    }
    tracing::debug!("bundle watch stopped");
}

/// Calls `ready` once the watch is set up, then `on_change` after each burst of changes to the files below `dir` (bundle files and
/// decision tables), debounced as the serving reload is, until `stop` completes: what
/// `verdict test --watch` re-runs on. Uses the same watch (inotify with symlink swaps), and the
/// poll fingerprint when the watch cannot be set up.
pub async fn on_changes(
    dir: &Path,
    settings: WatchSettings,
    ready: impl FnOnce(),
    mut on_change: impl FnMut(),
    stop: impl std::future::Future<Output = ()>,
) {
    let (events_tx, mut events_rx) = mpsc::channel::<()>(64);
    let mut bundle_watch = match watch::BundleWatch::new(dir, events_tx) {
        Ok(bundle_watch) => Some(bundle_watch),
        Err(error) => {
            tracing::warn!(path = %dir.display(), %error, "cannot watch the bundle; relying on polling");
            None
        }
    };
    let mut poll = settings.poll_interval.map(|period| {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut debounce = debounce::Debounce::new(settings.debounce, settings.max_delay);
    let mut seen = fingerprint(dir).await;
    ready();
    tokio::pin!(stop);
    loop {
        let deadline = debounce.deadline();
        tokio::select! {
            () = &mut stop => break,
            Some(()) = events_rx.recv() => debounce.note(tokio::time::Instant::now()),
            () = tick(&mut poll) => {
                let now = fingerprint(dir).await;
                if now != seen {
                    seen = now;
                    debounce.note(tokio::time::Instant::now());
                }
            }
            () = async {
                if let Some(deadline) = deadline {
                    tokio::time::sleep_until(deadline).await;
                }
            }, if deadline.is_some() => {
                debounce.clear();
                on_change();
                seen = fingerprint(dir).await;
                if let Some(current) = bundle_watch.as_mut() {
                    current.refresh();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[tokio::test]
    async fn a_reload_of_changed_tuples_reuses_the_serving_policy_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "@id(\"viewers\")\npermit (principal, action, resource) when { principal in resource.viewer };\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"a\"\n",
        )
        .unwrap();
        let snapshots = Arc::new(SnapshotHandle::empty());
        let reloader = Reloader::new(
            dir.path(),
            LoadOptions::default(),
            None,
            Arc::clone(&snapshots),
        );
        assert!(matches!(
            reloader.load_initial(),
            ReloadOutcome::Updated { .. }
        ));
        let first = snapshots.load().unwrap();
        std::fs::write(
            dir.path().join("docs.tuples"),
            "Doc::\"d\"#viewer@User::\"b\"\n",
        )
        .unwrap();
        assert!(matches!(
            reloader.reload(Cause::Rpc).await,
            ReloadOutcome::Updated { .. }
        ));
        let second = snapshots.load().unwrap();
        assert_ne!(first.snapshot.version(), second.snapshot.version());
        assert!(second.snapshot.shares_policies_with(&first.snapshot));
        assert!(!second.snapshot.shares_tuples_with(&first.snapshot));
    }
}
