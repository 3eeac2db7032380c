//! Reload settings: watching the bundle directory, polling, debouncing, the guard against a
//! reload that drops most of the bundle, and the `Reload` RPC.

use std::time::Duration;

use clap::ArgAction;

use super::{ConfigError, in_range, parse_duration};

/// Default poll interval of the reload fingerprint backstop.
pub const DEFAULT_POLL_INTERVAL: &str = "2s";
/// Default quiet time after the last file event before a rebuild.
pub const DEFAULT_RELOAD_DEBOUNCE: &str = "200ms";
/// Default longest wait from the first file event to its rebuild.
pub const DEFAULT_RELOAD_MAX_DELAY: &str = "1s";

const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_RELOAD_DELAY: Duration = Duration::from_secs(60);

/// When the bundle is rebuilt.
#[derive(Debug, Clone, clap::Args)]
pub struct ReloadArgs {
    /// Watch the bundle directory and reload on changes (inotify).
    #[arg(long, env = "VERDICT_WATCH", default_value_t = true, action = ArgAction::Set)]
    pub watch: bool,
    /// Also compare a fingerprint of the bundle's files this often (`0` turns it off), for
    /// filesystems where inotify does not work.
    #[arg(long, env = "VERDICT_POLL_INTERVAL", default_value = DEFAULT_POLL_INTERVAL, value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Quiet time after the last file event before a rebuild.
    #[arg(long, env = "VERDICT_RELOAD_DEBOUNCE", default_value = DEFAULT_RELOAD_DEBOUNCE, value_parser = parse_duration)]
    pub reload_debounce: Duration,
    /// Longest wait from the first file event of a burst to its rebuild.
    #[arg(long, env = "VERDICT_RELOAD_MAX_DELAY", default_value = DEFAULT_RELOAD_MAX_DELAY, value_parser = parse_duration)]
    pub reload_max_delay: Duration,
    /// Refuse a reload that drops more than this share (0 to 1) of the serving policies or of
    /// its tuples, such as `0.5`; unset, any drop is accepted.
    #[arg(long, env = "VERDICT_MAX_RELOAD_DROP")]
    pub max_reload_drop: Option<f64>,
    /// Serve the admin `Reload` RPC.
    #[arg(long, env = "VERDICT_ENABLE_RELOAD_RPC", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_reload_rpc: bool,
}

/// The reload settings, validated.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Watch the bundle directory with inotify.
    pub watch: bool,
    /// Poll fingerprint interval; `None` is off.
    pub poll_interval: Option<Duration>,
    /// Quiet time before a rebuild.
    pub debounce: Duration,
    /// Longest wait before a rebuild.
    pub max_delay: Duration,
    /// Serve the `Reload` RPC.
    pub enable_rpc: bool,
    /// The largest share of policies or tuples a reload may drop; `None` is no limit.
    pub max_drop: Option<f64>,
}

impl ReloadArgs {
    /// Checks the intervals; the first problem found is returned.
    pub fn validate(self) -> Result<ReloadConfig, ConfigError> {
        Ok(ReloadConfig {
            watch: self.watch,
            poll_interval: if self.poll_interval.is_zero() {
                None
            } else {
                Some(in_range(
                    self.poll_interval,
                    MIN_POLL_INTERVAL,
                    Duration::from_secs(3600),
                    arg_id!(Self, poll_interval),
                )?)
            },
            debounce: in_range(
                self.reload_debounce,
                Duration::ZERO,
                MAX_RELOAD_DELAY,
                arg_id!(Self, reload_debounce),
            )?,
            max_delay: in_range(
                self.reload_max_delay,
                self.reload_debounce,
                MAX_RELOAD_DELAY,
                arg_id!(Self, reload_max_delay),
            )?,
            enable_rpc: self.enable_reload_rpc,
            max_drop: self
                .max_reload_drop
                .map(|share| in_range(share, 0.0, 1.0, arg_id!(Self, max_reload_drop)))
                .transpose()?,
        })
    }
}
