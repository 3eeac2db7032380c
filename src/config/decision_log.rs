//! Decision log settings: the share of denies and allows recorded, and the writer's queue.

use super::{ConfigError, in_range};
use crate::telemetry::decision_log::{
    DEFAULT_ALLOW_RATE, DEFAULT_DENY_RATE, DEFAULT_QUEUE, DecisionLogSettings,
};

/// The largest `--decision-log-queue`: records are a few hundred bytes each while queued.
pub const MAX_QUEUE: usize = 1 << 20;

/// How many decisions are logged.
#[derive(Debug, Clone, clap::Args)]
pub struct DecisionLogArgs {
    /// Share of denied decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_DENY_RATE", default_value_t = DEFAULT_DENY_RATE)]
    pub decision_log_deny_rate: f64,
    /// Share of allowed decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_ALLOW_RATE", default_value_t = DEFAULT_ALLOW_RATE)]
    pub decision_log_allow_rate: f64,
    /// Decision log records that may wait for the background writer; when the queue is full
    /// (the log output is slow or blocked) records are dropped and counted in
    /// verdict_decision_log_dropped_total, and requests never wait.
    #[arg(long, env = "VERDICT_DECISION_LOG_QUEUE", default_value_t = DEFAULT_QUEUE)]
    pub decision_log_queue: usize,
}

impl DecisionLogArgs {
    /// Checks that both rates are between 0 and 1 (NaN is not), and the queue's size.
    pub fn validate(self) -> Result<DecisionLogSettings, ConfigError> {
        Ok(DecisionLogSettings {
            deny_rate: in_range(
                self.decision_log_deny_rate,
                0.0,
                1.0,
                arg_id!(Self, decision_log_deny_rate),
            )?,
            allow_rate: in_range(
                self.decision_log_allow_rate,
                0.0,
                1.0,
                arg_id!(Self, decision_log_allow_rate),
            )?,
            queue: in_range(
                self.decision_log_queue,
                1,
                MAX_QUEUE,
                arg_id!(Self, decision_log_queue),
            )?,
        })
    }
}
