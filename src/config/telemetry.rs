//! Telemetry settings: the log format and the HTTP port serving metrics and probes.

use std::net::SocketAddr;

use super::ConfigError;
use crate::telemetry::LogFormat;

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
}

/// The telemetry settings, validated.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Log format.
    pub log_format: LogFormat,
    /// The HTTP port's address; `None` is off.
    pub metrics_addr: Option<SocketAddr>,
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
            metrics_addr,
        })
    }
}
