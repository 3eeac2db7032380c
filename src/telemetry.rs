//! Telemetry: log setup, metric names and recording, and the decision log.
//!
//! Logs go through `tracing`, lowercase messages with structured fields. Never log tokens,
//! context values or other caller secrets: the decision log records uids only, redacted when
//! they look like credentials.

pub mod decision_log;
pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The filter used when neither `VERDICT_LOG` nor `RUST_LOG` is set.
const DEFAULT_LOG_FILTER: &str = "info";

/// Installs the global tracing subscriber, writing to stderr through a background thread.
/// `filter` is an `EnvFilter` directive string (from `VERDICT_LOG` or `RUST_LOG`); `None` means
/// `info`.
///
/// Lines are handed to `tracing-appender`'s non-blocking writer in its lossy mode: when stderr
/// is not drained (a stalled log collector) lines are dropped instead of blocking the thread
/// that logs, which may be an async worker answering requests. Keep the returned guard until
/// the process ends: dropping it flushes what is queued (waiting at most a second).
pub fn init_tracing(
    format: LogFormat,
    filter: Option<&str>,
) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT_LOG_FILTER))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(stderr);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // Flat: the event's fields beside `timestamp`, `level`, `target` and `message`, not
        // nested under `fields`, so log pipelines index them without a JSON path.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}
