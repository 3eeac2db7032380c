//! The serving state: the snapshot being served, with what telemetry derives from it, and the
//! last failed load.
//!
//! Owns: the atomic pointer ([`SnapshotHandle`]) that `reload` writes and every front-end reads.
//! Does not own: loading (`verdict_core`), deciding when to reload (`reload`).
//!
//! INVARIANT: a request loads the pointer once and answers entirely from that [`Served`]
//! snapshot, so a reload never mixes old policies with new tuples, nor one snapshot's metric
//! labels with another's actions.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use verdict_core::Snapshot;

use crate::telemetry::metrics::{ActionLabels, ReloadFailureReason};

/// A snapshot being served, with its metric labels (derived once, not per request).
#[derive(Debug)]
pub struct Served {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The metric label of each action the snapshot knows.
    pub action_labels: ActionLabels,
}

impl Served {
    /// Returns `snapshot` ready to serve.
    pub fn new(snapshot: Snapshot) -> Self {
        let action_labels = ActionLabels::of(&snapshot);
        Self {
            snapshot,
            action_labels,
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
}

impl SnapshotHandle {
    /// Returns a handle with nothing loaded: requests get UNAVAILABLE until a store.
    pub fn empty() -> Self {
        Self::default()
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

    /// Serves `snapshot` from now on and clears the last failure.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(Served::new(snapshot))));
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
