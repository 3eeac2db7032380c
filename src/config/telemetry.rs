//! Telemetry settings: the log format and the HTTP port serving metrics and probes.

use std::net::SocketAddr;

use super::ConfigError;
use crate::telemetry::LogFormat;
use crate::telemetry::otel::OtlpSettings;

/// Default address of the HTTP port (`/metrics`, `/healthz`, `/readyz`): loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9180";

/// Where logs and metrics go.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, env = "VERDICT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the HTTP port serving /metrics, /healthz and /readyz; `off` turns it off.
    #[arg(long, env = "VERDICT_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// OpenTelemetry: export a span per request by OTLP/gRPC to this collector
    /// (`http://host:4317`, or `https://`), continuing the caller's `traceparent`; unset is off.
    #[arg(long, env = "VERDICT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces sampled (0 to 1); a caller's sampled flag is always followed.
    #[arg(long, env = "VERDICT_OTLP_SAMPLE_RATIO", default_value_t = 1.0)]
    pub otlp_sample_ratio: f64,
}

impl TelemetryArgs {
    /// The OpenTelemetry export settings, checked; `None` when off. Read before the rest of
    /// the configuration is validated, since tracing starts first.
    pub fn otlp(&self) -> Result<Option<OtlpSettings>, ConfigError> {
        let Some(endpoint) = self.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let uri: Result<tonic::codegen::http::Uri, _> = endpoint.parse();
        let usable = uri.is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !usable {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, otlp_endpoint),
                reason: format!("`{endpoint}` is not an http:// or https:// collector address"),
            });
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, otlp_sample_ratio),
                reason: format!("{} is not between 0 and 1", self.otlp_sample_ratio),
            });
        }
        Ok(Some(OtlpSettings {
            endpoint: endpoint.to_owned(),
            sample_ratio: self.otlp_sample_ratio,
        }))
    }
}

/// The telemetry settings, validated.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// The HTTP port's address; `None` is off.
    pub metrics_addr: Option<SocketAddr>,
    /// OpenTelemetry export; `None` is off.
    pub otlp: Option<OtlpSettings>,
}

impl TelemetryArgs {
    /// Checks the metrics address.
    pub fn validate(self) -> Result<TelemetryConfig, ConfigError> {
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" | "" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        arg: arg_id!(Self, metrics_addr),
                        reason: format!("`{text}` is not an ip:port address or `off`"),
                    })?,
            ),
        };
        Ok(TelemetryConfig {
            log_format: self.log_format,
            otlp: self.otlp()?,
            metrics_addr,
        })
    }
}
