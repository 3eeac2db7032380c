//! OpenTelemetry traces (`--otlp-endpoint`): one server span per gRPC call and HTTP API
//! request, continuing the caller's W3C `traceparent`, exported by OTLP over gRPC.
//!
//! Off unless an endpoint is configured, and then nothing of OpenTelemetry is installed: the
//! transport layers ask [`enabled`] (one relaxed atomic load) and make no span. When on, the
//! spans are `tracing` spans on the [`TARGET`] target, which only the OpenTelemetry layer
//! listens to (the log filter does not decide what is traced); `tracing-opentelemetry` turns
//! them into OpenTelemetry spans and the SDK's batch processor exports them from its own
//! thread, dropping spans when its queue is full rather than slowing requests.
//!
//! What a span carries: the RPC or route and its status, the snapshot version, and one
//! `decision` event per decision (its outcome and action). Never a principal, resource,
//! context value or token: traces often go to a different, wider audience than the decision
//! log.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tonic::codegen::http;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the spans exported to OpenTelemetry.
pub const TARGET: &str = "verdict::otel";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported: whether the transport layers make spans.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where and how much to export.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The OTLP/gRPC collector, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// The share of new traces sampled (0 to 1); a caller's sampling decision in its
    /// `traceparent` is always followed.
    pub sample_ratio: f64,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint}: {reason}")]
pub struct OtlpError {
    endpoint: String,
    reason: String,
}

impl OtlpError {
    fn new(endpoint: &str, reason: String) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            reason,
        }
    }
}

/// Builds the tracer provider exporting to `settings.endpoint`. Must run inside a Tokio
/// runtime that outlives the provider (the gRPC channel lives on it).
pub(super) fn provider(settings: &OtlpSettings) -> Result<SdkTracerProvider, OtlpError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| OtlpError::new(&settings.endpoint, e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "verdict".to_owned()),
        )
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The `tracing` layer feeding `provider`'s tracer; marks traces as enabled.
pub(super) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    ENABLED.store(true, Ordering::Relaxed);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("verdict"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
}

/// Reads W3C trace context from HTTP headers (gRPC metadata included).
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` continue the trace of the caller's `traceparent` (and `tracestate`), if
/// it sent a valid one; otherwise the span starts a new trace.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Only fails when the span is disabled or already started: then there is nothing to
        // continue.
        let _ = span.set_parent(parent);
    }
}

/// The trace id of the current span, when traces are exported and the span is sampled.
pub fn current_trace_id() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
