//! Telemetry: log setup, metric names and recording, and the decision log.
//!
//! Logs go through `tracing`, lowercase messages with structured fields. Never log tokens,
//! context values or other caller secrets: the decision log records uids only, redacted when
//! they look like credentials.

pub mod decision_log;
pub mod metrics;
pub mod otel;

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

/// Keeps the log writer and the trace exporter running; dropping it flushes both: the queued
/// log lines (waiting at most a second) and the spans not yet exported.
pub struct TelemetryGuard {
    _log: tracing_appender::non_blocking::WorkerGuard,
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// How long a shutdown waits for the last spans to be exported: a collector that is down
/// must not hold the exit.
const TRACE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl TelemetryGuard {
    /// Exports the spans still queued and stops exporting, waiting at most 2 s. Call it while
    /// the runtime the exporter's channel lives on still runs; dropping the guard does it too.
    pub fn finish_traces(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(error) = provider.shutdown_with_timeout(TRACE_FLUSH_TIMEOUT)
        {
            tracing::warn!(%error, "exporting the last spans failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.finish_traces();
    }
}

/// Installs the global tracing subscriber, writing to stderr through a background thread,
/// and, with `otlp`, the OpenTelemetry layer exporting the [`otel::TARGET`] spans (call it
/// inside the Tokio runtime that serves: the exporter's channel lives there). `filter` is an
/// `EnvFilter` directive string (from `VERDICT_LOG` or `RUST_LOG`); `None` means `info`.
///
/// Lines are handed to `tracing-appender`'s non-blocking writer in its lossy mode: when stderr
/// is not drained (a stalled log collector) lines are dropped instead of blocking the thread
/// that logs, which may be an async worker answering requests. Keep the returned guard until
/// the process ends.
pub fn init_tracing(
    format: LogFormat,
    filter: Option<&str>,
    otlp: Option<&otel::OtlpSettings>,
) -> Result<TelemetryGuard, otel::OtlpError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    // The spans for OpenTelemetry are not log lines, whatever the filter says.
    let quiet_traces = format!("{}=off", otel::TARGET);
    let filter = EnvFilter::try_new(format!(
        "{},{quiet_traces}",
        filter.unwrap_or(DEFAULT_LOG_FILTER)
    ))
    .unwrap_or_else(|_| EnvFilter::new(format!("{DEFAULT_LOG_FILTER},{quiet_traces}")));
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let Some(otlp) = otlp else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(stderr);
        // A second initialisation (tests) keeps the first subscriber.
        let _ = match format {
            LogFormat::Text => builder.try_init(),
            // Flat: the event's fields beside `timestamp`, `level`, `target` and `message`,
            // not nested under `fields`, so log pipelines index them without a JSON path.
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
        return Ok(TelemetryGuard {
            _log: guard,
            traces: None,
        });
    };
    let provider = otel::provider(otlp)?;
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(stderr);
    let lines: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
        match format {
            LogFormat::Text => lines.boxed(),
            LogFormat::Json => lines.json().flatten_event(true).boxed(),
        };
    let traces = otel::layer(&provider).with_filter(
        tracing_subscriber::filter::Targets::new().with_target(otel::TARGET, tracing::Level::INFO),
    );
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traces)
        .try_init();
    Ok(TelemetryGuard {
        _log: guard,
        traces: Some(provider),
    })
}
