//! Shutdown settings: how long to keep answering, and how long to drain, after SIGTERM.

use std::time::Duration;

use super::{ConfigError, in_range, parse_duration};

/// Default longest drain after SIGTERM before remaining connections are closed.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// Default time between reporting NOT_SERVING and closing the listener on SIGTERM.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "0s";

/// How `serve` stops.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// Longest drain after SIGTERM before the remaining connections are closed.
    #[arg(long, env = "VERDICT_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Time between reporting NOT_SERVING and closing the listener on SIGTERM, so load
    /// balancers stop routing first; requests keep being answered meanwhile.
    #[arg(long, env = "VERDICT_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}

/// The shutdown settings, validated.
#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    /// Longest drain after SIGTERM.
    pub grace: Duration,
    /// Time between NOT_SERVING and closing the listener.
    pub delay: Duration,
}

impl ShutdownArgs {
    /// Checks both durations; the first problem found is returned.
    pub fn validate(self) -> Result<ShutdownConfig, ConfigError> {
        Ok(ShutdownConfig {
            grace: in_range(
                self.shutdown_grace,
                Duration::ZERO,
                Duration::from_secs(3600),
                arg_id!(Self, shutdown_grace),
            )?,
            delay: in_range(
                self.shutdown_delay,
                Duration::ZERO,
                Duration::from_secs(600),
                arg_id!(Self, shutdown_delay),
            )?,
        })
    }
}
