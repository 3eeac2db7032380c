//! Decision log settings: the share of denies and allows recorded.

use super::{ConfigError, in_range};
use crate::telemetry::decision_log::{DEFAULT_ALLOW_RATE, DEFAULT_DENY_RATE, DecisionLogSettings};

/// How many decisions are logged.
#[derive(Debug, Clone, clap::Args)]
pub struct DecisionLogArgs {
    /// Share of denied decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_DENY_RATE", default_value_t = DEFAULT_DENY_RATE)]
    pub decision_log_deny_rate: f64,
    /// Share of allowed decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_ALLOW_RATE", default_value_t = DEFAULT_ALLOW_RATE)]
    pub decision_log_allow_rate: f64,
}

impl DecisionLogArgs {
    /// Checks that both rates are between 0 and 1 (NaN is not).
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
        })
    }
}
