//! The serving state: the snapshot being served, with what telemetry derives from it, and the
//! last failed load.
//!
//! Owns: the atomic pointer ([`SnapshotHandle`]) that `reload` writes and every front-end reads,
//! and, with a relationship store (issue #19), the join of the two sources of a snapshot: the
//! last bundle snapshot `reload` stored and the store's tuples at the last revision the
//! follower applied. Either side changing builds one new merged snapshot from both: a new
//! bundle or a whole store state by indexing every tuple, a round of store revisions as an
//! overlay on the graph last served (re-indexed whole past `compaction_bound`).
//! Does not own: loading (`verdict_core`), deciding when to reload (`reload`), talking to the
//! database (`store`).
//!
//! INVARIANT: a request loads the pointer once and answers entirely from that [`Served`]
//! snapshot, so a reload never mixes old policies with new tuples, nor one snapshot's metric
//! labels with another's actions, nor half of a store revision with the rest.
//!
//! With a store, nothing is served until the store's first state is applied: a replica that
//! cannot read the store at start answers UNAVAILABLE (deny) rather than a graph missing
//! every written tuple.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use verdict_core::Snapshot;
use verdict_core::store::{StaleRevision, StoreChange, StoreTuples};

use crate::telemetry::metrics::{ActionLabels, ReloadFailureReason};

/// A snapshot being served, with its metric labels (derived once, not per request).
#[derive(Debug)]
pub struct Served {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The metric label of each action the snapshot knows (shared by the snapshots a store
    /// revision derives from this one: the same bundle, the same actions).
    pub action_labels: Arc<ActionLabels>,
}

impl Served {
    /// Returns `snapshot` ready to serve.
    pub fn new(snapshot: Snapshot) -> Self {
        let action_labels = Arc::new(ActionLabels::of(&snapshot));
        Self {
            snapshot,
            action_labels,
        }
    }

    /// Returns `snapshot`, which has the same bundle as `previous` (only tuples changed),
    /// ready to serve with `previous`'s labels.
    fn with_labels_of(snapshot: Snapshot, previous: &Self) -> Self {
        Self {
            snapshot,
            action_labels: Arc::clone(&previous.action_labels),
        }
    }
}

/// A failed load, kept for the status call while the previous snapshot keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    /// Every error, one per line. They quote the bundle (short excerpts): only admin callers
    /// see them.
    pub message: String,
    /// Why, in words that quote nothing: what other callers see.
    pub reason: ReloadFailureReason,
    /// When the load failed.
    pub at: SystemTime,
}

/// The serving state: the current snapshot (if any) and the last load failure (if any).
#[derive(Debug, Default)]
pub struct SnapshotHandle {
    current: ArcSwapOption<Served>,
    last_failure: ArcSwapOption<LoadFailure>,
    /// The relationship store's side, when one is configured.
    store: Option<StoreSide>,
}

/// The two sources of a snapshot when a relationship store is configured.
#[derive(Debug)]
struct StoreSide {
    /// The last bundle snapshot and the store's tuples. Locked only by the reloader and the
    /// store follower (on blocking threads) while they build a snapshot: never by a request.
    sources: Mutex<Sources>,
    /// The store revision being served (0 until the store's first state is applied).
    applied_tx: watch::Sender<u64>,
    /// When a store revision was last applied.
    applied_at: Mutex<Option<Instant>>,
}

#[derive(Debug, Default)]
struct Sources {
    bundle: Option<Arc<Served>>,
    store: Option<StoreTuples>,
    /// The join last served, with the number of store tuples it left out: what the next
    /// store revisions are applied to as an overlay, until the overlay is compacted.
    joined: Option<Joined>,
}

#[derive(Debug)]
struct Joined {
    served: Arc<Served>,
    rejected: usize,
}

/// The most tuple changes a served graph's overlay holds before the follower re-indexes the
/// whole graph (a full join), for a graph of `tuples` tuples. An overlay answers more slowly
/// than the frozen index (hash tries against sorted rows) and holds more memory per tuple,
/// and each full join costs time in proportion to the graph: a bound in proportion to the
/// graph keeps both small against the other, within fixed limits.
fn compaction_bound(tuples: usize) -> usize {
    (tuples / 32).clamp(4_096, 131_072)
}

/// What applying store changes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreApplied {
    /// The revision now applied.
    pub revision: u64,
    /// The number of store tuples.
    pub tuples: usize,
    /// Store tuples the bundle refuses (left out; see `Snapshot::with_store`).
    pub rejected: usize,
}

impl SnapshotHandle {
    /// Returns a handle with nothing loaded: requests get UNAVAILABLE until a store.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Returns a handle with nothing loaded that joins each bundle snapshot with a relationship
    /// store's tuples: nothing is served until both a bundle and the store's first state are
    /// in.
    pub fn with_relationship_store() -> Self {
        Self {
            store: Some(StoreSide {
                sources: Mutex::new(Sources::default()),
                applied_tx: watch::channel(0).0,
                applied_at: Mutex::new(None),
            }),
            ..Self::default()
        }
    }

    /// Returns whether a relationship store is configured.
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Returns the store revision being served, with a store.
    pub fn applied_revision(&self) -> Option<u64> {
        self.store.as_ref().map(|side| *side.applied_tx.borrow())
    }

    /// Returns a receiver of the served store revision, with a store: what a request that must
    /// be at least as fresh as a token waits on.
    pub fn subscribe_revision(&self) -> Option<watch::Receiver<u64>> {
        self.store.as_ref().map(|side| side.applied_tx.subscribe())
    }

    /// Returns how long ago a store revision was last applied, with a store that has one.
    pub fn since_store_applied(&self) -> Option<std::time::Duration> {
        let side = self.store.as_ref()?;
        let at = *side
            .applied_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        at.map(|at| at.elapsed())
    }

    /// Returns the last bundle snapshot stored, without the store's tuples: what the reloader
    /// compares a new bundle with and reuses parts of. Without a store, the snapshot served.
    pub fn load_bundle(&self) -> Option<Arc<Served>> {
        match &self.store {
            Some(side) => side
                .sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .bundle
                .clone(),
            None => self.load(),
        }
    }

    /// Serves the store's whole state at a revision (a replica's start, or a reload after it
    /// fell behind the change log's retention), joined with the last bundle snapshot.
    /// CPU-bound: call it on a blocking thread.
    pub fn replace_store(&self, state: StoreTuples) -> Option<StoreApplied> {
        let side = self.store.as_ref()?;
        let mut sources = side.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.store = Some(state);
        Some(self.publish(side, &mut sources))
    }

    /// Applies whole store revisions, in order, and serves the result as one new snapshot.
    /// A revision at or before the applied one is refused and nothing changes. The changes
    /// are added to the served graph as an overlay (time in proportion to the changes), and
    /// the graph is re-indexed whole once the overlay reaches `compaction_bound`. CPU-bound:
    /// call it on a blocking thread.
    pub fn apply_store_revisions(
        &self,
        revisions: Vec<(u64, Vec<StoreChange>)>,
    ) -> Result<Option<StoreApplied>, StaleRevision> {
        let Some(side) = &self.store else {
            return Ok(None);
        };
        let mut sources = side.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(store) = sources.store.as_mut() else {
            return Ok(None);
        };
        // Checked before anything is applied, so a refused list changes nothing.
        let mut previous = store.revision();
        for (revision, _) in &revisions {
            if *revision <= previous {
                return Err(StaleRevision {
                    applied: previous,
                    offered: *revision,
                });
            }
            previous = *revision;
        }
        let mut effective = Vec::new();
        for (revision, changes) in revisions {
            effective.extend(store.apply(revision, changes)?);
        }
        Ok(Some(self.follow(side, &mut sources, &effective)))
    }

    /// Serves the last join with `changes` (effective, in order, already applied to the
    /// store's tuples) added as an overlay; a full join when there is none to add them to, the
    /// overlay would exceed its bound, or the overlay cannot hold them.
    fn follow(
        &self,
        side: &StoreSide,
        sources: &mut Sources,
        changes: &[StoreChange],
    ) -> StoreApplied {
        let (Some(store), Some(joined)) = (&sources.store, &sources.joined) else {
            return self.publish(side, sources);
        };
        let snapshot = &joined.served.snapshot;
        if snapshot.overlay_len() + changes.len() > compaction_bound(snapshot.tuple_count()) {
            return self.publish(side, sources);
        }
        let revision = store.revision();
        let update = match snapshot.with_store_changes(changes, revision) {
            Ok(update) => update,
            Err(full) => {
                tracing::warn!(%full, revision, "the store's changes do not fit the graph's overlay; indexing the whole graph again");
                return self.publish(side, sources);
            }
        };
        let Some(snapshot) = update.snapshot else {
            return self.publish(side, sources);
        };
        if update.newly_rejected > 0 {
            tracing::warn!(
                rejected = update.newly_rejected,
                first = update
                    .first_rejections
                    .first()
                    .map_or("", |(_, why)| why.as_str()),
                "store tuples this bundle refuses are left out of the graph"
            );
        }
        let rejected =
            (joined.rejected + update.newly_rejected).saturating_sub(update.no_longer_rejected);
        let tuples = store.len();
        let served = Served::with_labels_of(snapshot, &joined.served);
        self.serve_join(side, sources, served, rejected);
        StoreApplied {
            revision,
            tuples,
            rejected,
        }
    }

    /// Serves `served`, the join of `sources` at the store's revision, and keeps it to follow
    /// the store from.
    fn serve_join(&self, side: &StoreSide, sources: &mut Sources, served: Served, rejected: usize) {
        let revision = served.snapshot.store_revision().unwrap_or_default();
        let served = Arc::new(served);
        self.current.store(Some(Arc::clone(&served)));
        sources.joined = Some(Joined { served, rejected });
        side.applied_tx.send_replace(revision);
        *side
            .applied_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Builds and serves the join of `sources`, when both sides are in, indexing every tuple;
    /// the lock on the sources is held throughout, so two builds never race to the pointer.
    fn publish(&self, side: &StoreSide, sources: &mut Sources) -> StoreApplied {
        let Some(store) = &sources.store else {
            return StoreApplied {
                revision: 0,
                tuples: 0,
                rejected: 0,
            };
        };
        let applied = StoreApplied {
            revision: store.revision(),
            tuples: store.len(),
            rejected: 0,
        };
        let Some(bundle) = &sources.bundle else {
            return applied;
        };
        match bundle.snapshot.with_store(store) {
            Ok(merge) => {
                if merge.rejected > 0 {
                    tracing::warn!(
                        rejected = merge.rejected,
                        first = merge
                            .first_rejections
                            .first()
                            .map_or("", |(_, why)| why.as_str()),
                        "store tuples this bundle refuses are left out of the graph"
                    );
                }
                self.serve_join(side, sources, Served::new(merge.snapshot), merge.rejected);
                StoreApplied {
                    rejected: merge.rejected,
                    ..applied
                }
            }
            Err(full) => {
                tracing::error!(%full, revision = store.revision(), "the store's tuples do not fit the index; the previous snapshot keeps serving");
                // The served join is behind the store now: never follow on from it.
                sources.joined = None;
                applied
            }
        }
    }

    /// Returns a handle serving `snapshot`.
    pub fn with(snapshot: Snapshot) -> Self {
        let handle = Self::empty();
        handle.store(snapshot);
        handle
    }

    /// Returns the snapshot being served; call once per request.
    pub fn load(&self) -> Option<Arc<Served>> {
        self.current.load_full()
    }

    /// Serves `snapshot` from now on and clears the last failure. With a relationship store,
    /// `snapshot` is the bundle side: what is served is its join with the store's tuples
    /// (once the store's first state is in). With a store, CPU-bound: call it on a blocking
    /// thread.
    pub fn store(&self, snapshot: Snapshot) {
        match &self.store {
            None => self.current.store(Some(Arc::new(Served::new(snapshot)))),
            Some(side) => {
                let mut sources = side.sources.lock().unwrap_or_else(PoisonError::into_inner);
                sources.bundle = Some(Arc::new(Served::new(snapshot)));
                self.publish(side, &mut sources);
            }
        }
        self.last_failure.store(None);
    }

    /// Records a failed load; the current snapshot keeps serving.
    pub fn record_failure(&self, failure: LoadFailure) {
        self.last_failure.store(Some(Arc::new(failure)));
    }

    /// Forgets the last failure (the bundle on disk is valid again).
    pub fn clear_failure(&self) {
        self.last_failure.store(None);
    }

    /// Returns the last failed load, if the most recent load failed.
    pub fn last_failure(&self) -> Option<Arc<LoadFailure>> {
        self.last_failure.load_full()
    }
}

#[cfg(test)]
mod tests;
