//! Metric names and label values: the single list of what Verdict measures.
//!
//! Recorded through the `metrics` facade; until an exporter is installed (see the observability
//! issue) recording is a no-op. Label values are `&'static str` from closed sets, never ids.

/// Bundle reloads by `result`: `updated`, `unchanged` or `failed`.
pub const RELOADS_TOTAL: &str = "verdict_reloads_total";

/// Records one finished reload.
pub fn record_reload(result: ReloadResult) {
    metrics::counter!(RELOADS_TOTAL, "result" => result.as_str()).increment(1);
}

/// The outcome of a reload, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new snapshot is serving.
    Updated,
    /// The bundle's content did not change; nothing was swapped.
    Unchanged,
    /// The bundle is invalid; the previous snapshot keeps serving.
    Failed,
}

impl ReloadResult {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}
