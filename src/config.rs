//! Configuration of `verdict serve`: flags, `VERDICT_*` environment variables and defaults.
//!
//! Each setting is one clap argument with its environment variable and a `const` default: the
//! single source of truth, listed by `verdict serve --help`. [`ServeArgs::validate`] turns the
//! raw arguments into a [`ValidConfig`], the only thing the server accepts.
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--policies` | `VERDICT_POLICIES` | `./policies` |
//! | `--grpc-addr` | `VERDICT_GRPC_ADDR` | `127.0.0.1:50051` |
//! | `--max-relation-depth` | `VERDICT_MAX_RELATION_DEPTH` | 32 |
//! | `--max-batch` | `VERDICT_MAX_BATCH` | 100 |
//! | `--max-message-bytes` | `VERDICT_MAX_MESSAGE_BYTES` | 4194304 |
//! | `--max-json-depth` | `VERDICT_MAX_JSON_DEPTH` | 32 |
//! | `--max-request-entities` | `VERDICT_MAX_REQUEST_ENTITIES` | 100 |
//! | `--max-entity-parents` | `VERDICT_MAX_ENTITY_PARENTS` | 32 |
//! | `--max-properties` | `VERDICT_MAX_PROPERTIES` | 100 |
//! | `--log-format` | `VERDICT_LOG_FORMAT` | `text` |
//! | (filter) | `VERDICT_LOG`, else `RUST_LOG` | `info` |
//! | `--watch` | `VERDICT_WATCH` | `true` |
//! | `--poll-interval` | `VERDICT_POLL_INTERVAL` | `2s` (`0` turns polling off) |
//! | `--reload-debounce` | `VERDICT_RELOAD_DEBOUNCE` | `200ms` |
//! | `--reload-max-delay` | `VERDICT_RELOAD_MAX_DELAY` | `1s` |
//! | `--enable-reload-rpc` | `VERDICT_ENABLE_RELOAD_RPC` | `false` |
//! | `--start-without-bundle` | `VERDICT_START_WITHOUT_BUNDLE` | `false` |
//! | `--metrics-addr` | `VERDICT_METRICS_ADDR` | `127.0.0.1:9180` (`off` turns it off) |
//! | `--shutdown-grace` | `VERDICT_SHUTDOWN_GRACE` | `10s` |
//! | `--shutdown-delay` | `VERDICT_SHUTDOWN_DELAY` | `0s` |
//! | `--max-concurrent-requests` | `VERDICT_MAX_CONCURRENT_REQUESTS` | 1024 |
//! | `--request-timeout` | `VERDICT_REQUEST_TIMEOUT` | `5s` |
//! | `--max-concurrent-streams` | `VERDICT_MAX_CONCURRENT_STREAMS` | 256 |
//! | `--max-header-list-bytes` | `VERDICT_MAX_HEADER_LIST_BYTES` | 16384 |
//! | `--http2-keepalive-interval` | `VERDICT_HTTP2_KEEPALIVE_INTERVAL` | `30s` (`0` off) |
//! | `--http2-keepalive-timeout` | `VERDICT_HTTP2_KEEPALIVE_TIMEOUT` | `10s` |
//! | `--idle-timeout` | `VERDICT_IDLE_TIMEOUT` | `5m` (`0` off) |
//! | `--max-connection-age` | `VERDICT_MAX_CONNECTION_AGE` | `0` (off) |
//! | `--max-string-bytes` | `VERDICT_MAX_STRING_BYTES` | 1024 |
//! | `--api-keys-file` | `VERDICT_API_KEYS_FILE` | none (no keys: the port is open) |
//! | (inline keys) | `VERDICT_API_KEYS` | none |
//! | `--auth-open-health` | `VERDICT_AUTH_OPEN_HEALTH` | `true` |
//! | `--auth-open-reflection` | `VERDICT_AUTH_OPEN_REFLECTION` | `true` |
//! | `--tls-cert`, `--tls-key` | `VERDICT_TLS_CERT`, `VERDICT_TLS_KEY` | none (both set: TLS on) |
//! | `--tls-client-ca` | `VERDICT_TLS_CLIENT_CA` | none (set: client certificates required) |
//! | `--tls-allowed-clients` | `VERDICT_TLS_ALLOWED_CLIENTS` | any verified client |
//! | `--tls-admin-clients` | `VERDICT_TLS_ADMIN_CLIENTS` | none |
//! | `--decision-log-deny-rate` | `VERDICT_DECISION_LOG_DENY_RATE` | `1` |
//! | `--decision-log-allow-rate` | `VERDICT_DECISION_LOG_ALLOW_RATE` | `0.01` |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;

mod api_keys;

pub use api_keys::{Key, KeyRing, Role};

use crate::bundle::DEFAULT_MAX_RELATION_DEPTH;
use crate::engine::DEFAULT_MAX_JSON_DEPTH;
use crate::telemetry::LogFormat;
use crate::telemetry::decision_log::{DEFAULT_ALLOW_RATE, DEFAULT_DENY_RATE};

/// Default bundle directory.
pub const DEFAULT_POLICIES: &str = "./policies";
/// Default gRPC listen address: loopback only, so a default start exposes nothing.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// Default address of the HTTP port (`/metrics`, `/healthz`, `/readyz`): loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9180";
/// Default batch limit.
pub const DEFAULT_MAX_BATCH: usize = 100;
/// Default largest request message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default most entities in one request.
pub const DEFAULT_MAX_REQUEST_ENTITIES: usize = 100;
/// Default most parents of one request entity.
pub const DEFAULT_MAX_ENTITY_PARENTS: usize = 32;
/// Default most properties in one request.
pub const DEFAULT_MAX_PROPERTIES: usize = 100;

const MAX_BATCH_CEILING: usize = 10_000;
const MAX_MESSAGE_BYTES_CEILING: usize = 64 * 1024 * 1024;
const MAX_RELATION_DEPTH_CEILING: u32 = 1_000;
const MAX_JSON_DEPTH_CEILING: usize = 64;
/// Default poll interval of the reload fingerprint backstop.
pub const DEFAULT_POLL_INTERVAL: &str = "2s";
/// Default quiet time after the last file event before a rebuild.
pub const DEFAULT_RELOAD_DEBOUNCE: &str = "200ms";
/// Default longest wait from the first file event to its rebuild.
pub const DEFAULT_RELOAD_MAX_DELAY: &str = "1s";
/// Default longest drain after SIGTERM before remaining connections are closed.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// Default time between reporting NOT_SERVING and closing the listener on SIGTERM.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "0s";
/// Default most Authorization requests in flight before shedding.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// Default deadline of one request.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "5s";
/// Default most HTTP/2 streams per connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default largest header list, in bytes.
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Default HTTP/2 keepalive ping interval.
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: &str = "30s";
/// Default wait for a keepalive ping's answer.
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: &str = "10s";
/// Default idle time after which a connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: &str = "5m";
/// Default `--max-connection-age`.
pub const DEFAULT_MAX_CONNECTION_AGE: &str = "0";
/// Default longest type, id, action, property or attribute name, in bytes.
pub const DEFAULT_MAX_STRING_BYTES: usize = 1024;
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_RELOAD_DELAY: Duration = Duration::from_secs(60);

/// Parses `0`, `250ms`, `2s`, `1m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `250ms`, `2s` or `1m`"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        _ => Err(format!(
            "`{text}` is not a duration such as `250ms`, `2s` or `1m`"
        )),
    }
}

/// Settings for `verdict serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Policy bundle directory (policies, schema, tuples, entities).
    #[arg(long, env = "VERDICT_POLICIES", default_value = DEFAULT_POLICIES)]
    pub policies: PathBuf,
    /// Address of the gRPC listener.
    #[arg(long, env = "VERDICT_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: String,
    /// Most nested usersets one relation search follows; deeper searches deny and say so.
    #[arg(long, env = "VERDICT_MAX_RELATION_DEPTH", default_value_t = DEFAULT_MAX_RELATION_DEPTH)]
    pub max_relation_depth: u32,
    /// Most checks in one BatchCheck.
    #[arg(long, env = "VERDICT_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Largest request message, in bytes.
    #[arg(long, env = "VERDICT_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Deepest nesting of lists and records in context and entity attributes.
    #[arg(long, env = "VERDICT_MAX_JSON_DEPTH", default_value_t = DEFAULT_MAX_JSON_DEPTH)]
    pub max_json_depth: usize,
    /// Most entities in one request.
    #[arg(long, env = "VERDICT_MAX_REQUEST_ENTITIES", default_value_t = DEFAULT_MAX_REQUEST_ENTITIES)]
    pub max_request_entities: usize,
    /// Most parents of one request entity.
    #[arg(long, env = "VERDICT_MAX_ENTITY_PARENTS", default_value_t = DEFAULT_MAX_ENTITY_PARENTS)]
    pub max_entity_parents: usize,
    /// Most properties decided in one request.
    #[arg(long, env = "VERDICT_MAX_PROPERTIES", default_value_t = DEFAULT_MAX_PROPERTIES)]
    pub max_properties: usize,
    /// Log format.
    #[arg(long, env = "VERDICT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
    /// Serve the admin `Reload` RPC.
    #[arg(long, env = "VERDICT_ENABLE_RELOAD_RPC", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_reload_rpc: bool,
    /// Address of the HTTP port serving /metrics, /healthz and /readyz; `off` turns it off.
    #[arg(long, env = "VERDICT_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
    /// Longest drain after SIGTERM before the remaining connections are closed.
    #[arg(long, env = "VERDICT_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Time between reporting NOT_SERVING and closing the listener on SIGTERM, so load
    /// balancers stop routing first; requests keep being answered meanwhile.
    #[arg(long, env = "VERDICT_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Most Authorization requests in flight across all connections; more are shed with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "VERDICT_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Deadline of one request (DEADLINE_EXCEEDED after it).
    #[arg(long, env = "VERDICT_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Most HTTP/2 streams per connection.
    #[arg(long, env = "VERDICT_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// Largest header list of a request, in bytes.
    #[arg(long, env = "VERDICT_MAX_HEADER_LIST_BYTES", default_value_t = DEFAULT_MAX_HEADER_LIST_BYTES)]
    pub max_header_list_bytes: u32,
    /// HTTP/2 keepalive ping interval (`0` turns pings off).
    #[arg(long, env = "VERDICT_HTTP2_KEEPALIVE_INTERVAL", default_value = DEFAULT_HTTP2_KEEPALIVE_INTERVAL, value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "VERDICT_HTTP2_KEEPALIVE_TIMEOUT", default_value = DEFAULT_HTTP2_KEEPALIVE_TIMEOUT, value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,
    /// Close a connection with no request in progress for this long (`0` never); keepalive
    /// pings do not count as activity, an open stream does.
    #[arg(long, env = "VERDICT_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Ask clients to reconnect (HTTP/2 GOAWAY) once a connection is this old (`0` never), so
    /// a removed CA or an expired client certificate stops being served and new pods get
    /// traffic; in-flight requests get `--shutdown-grace` to finish. A request that races the
    /// GOAWAY can fail on the client, so pair it with a client retry.
    #[arg(long, env = "VERDICT_MAX_CONNECTION_AGE", default_value = DEFAULT_MAX_CONNECTION_AGE, value_parser = parse_duration)]
    pub max_connection_age: Duration,
    /// Longest type, id, action, property or attribute name, in bytes.
    #[arg(long, env = "VERDICT_MAX_STRING_BYTES", default_value_t = DEFAULT_MAX_STRING_BYTES)]
    pub max_string_bytes: usize,
    /// File of API keys, one `name role key` per line (`role` is `check` or `admin`). With
    /// keys, every RPC but health and reflection needs `authorization: Bearer <key>`.
    #[arg(long, env = "VERDICT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// API keys inline, `name role key` entries separated by newlines or `;` (prefer the file).
    #[arg(long, env = "VERDICT_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Let the gRPC health service answer without a key.
    #[arg(long, env = "VERDICT_AUTH_OPEN_HEALTH", default_value_t = true, action = ArgAction::Set)]
    pub auth_open_health: bool,
    /// Let server reflection answer without a key.
    #[arg(long, env = "VERDICT_AUTH_OPEN_REFLECTION", default_value_t = true, action = ArgAction::Set)]
    pub auth_open_reflection: bool,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key).
    #[arg(long, env = "VERDICT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the gRPC port (with --tls-cert).
    #[arg(long, env = "VERDICT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mTLS).
    #[arg(long, env = "VERDICT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Client identities (SAN DNS names or URIs; `*.suffix` and `prefix/*` patterns) allowed the
    /// decision RPCs, comma-separated; empty allows any client the CA verifies.
    #[arg(long, env = "VERDICT_TLS_ALLOWED_CLIENTS", value_delimiter = ',')]
    pub tls_allowed_clients: Vec<String>,
    /// Client identities allowed the admin RPCs (Reload), comma-separated; empty allows none.
    #[arg(long, env = "VERDICT_TLS_ADMIN_CLIENTS", value_delimiter = ',')]
    pub tls_admin_clients: Vec<String>,
    /// Share of denied decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_DENY_RATE", default_value_t = DEFAULT_DENY_RATE)]
    pub decision_log_deny_rate: f64,
    /// Share of allowed decisions written to the decision log (0 to 1).
    #[arg(long, env = "VERDICT_DECISION_LOG_ALLOW_RATE", default_value_t = DEFAULT_ALLOW_RATE)]
    pub decision_log_allow_rate: f64,
    /// Start even if the bundle is invalid: answer UNAVAILABLE and report NOT_SERVING until a
    /// valid bundle appears.
    #[arg(long, env = "VERDICT_START_WITHOUT_BUNDLE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub start_without_bundle: bool,
}

/// A configuration that passed validation.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Policy bundle directory.
    pub policies: PathBuf,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Relation search depth bound.
    pub max_relation_depth: u32,
    /// Batch limit.
    pub max_batch: usize,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
    /// Most entities in one request.
    pub max_request_entities: usize,
    /// Most parents of one request entity.
    pub max_entity_parents: usize,
    /// Most properties in one request.
    pub max_properties: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Watch the bundle directory with inotify.
    pub watch: bool,
    /// Poll fingerprint interval; `None` is off.
    pub poll_interval: Option<Duration>,
    /// Quiet time before a rebuild.
    pub reload_debounce: Duration,
    /// Longest wait before a rebuild.
    pub reload_max_delay: Duration,
    /// Serve the `Reload` RPC.
    pub enable_reload_rpc: bool,
    /// Start with no snapshot when the bundle is invalid.
    pub start_without_bundle: bool,
    /// The HTTP port's address; `None` is off.
    pub metrics_addr: Option<SocketAddr>,
    /// Longest drain after SIGTERM.
    pub shutdown_grace: Duration,
    /// Time between NOT_SERVING and closing the listener.
    pub shutdown_delay: Duration,
    /// Most Authorization requests in flight.
    pub max_concurrent_requests: usize,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Most HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest header list, in bytes.
    pub max_header_list_bytes: u32,
    /// Keepalive ping interval; `None` is off.
    pub http2_keepalive_interval: Option<Duration>,
    /// Keepalive ping timeout.
    pub http2_keepalive_timeout: Duration,
    /// Idle connection timeout; `None` is off.
    pub idle_timeout: Option<Duration>,
    /// Connection age after which clients are asked to reconnect; `None` is off.
    pub max_connection_age: Option<Duration>,
    /// Longest name, in bytes.
    pub max_string_bytes: usize,
    /// API keys; empty means the gRPC port is open.
    pub api_keys: std::sync::Arc<KeyRing>,
    /// Health answers without a key.
    pub auth_open_health: bool,
    /// Reflection answers without a key.
    pub auth_open_reflection: bool,
    /// TLS files; `None` is plaintext.
    pub tls: Option<TlsFiles>,
    /// Client identities allowed the decision RPCs (mTLS).
    pub tls_allowed_clients: Vec<String>,
    /// Client identities allowed the admin RPCs (mTLS).
    pub tls_admin_clients: Vec<String>,
    /// Share of denies in the decision log.
    pub decision_log_deny_rate: f64,
    /// Share of allows in the decision log.
    pub decision_log_allow_rate: f64,
}

/// A setting with a value Verdict cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value is malformed or out of range.
    #[error("{flag} ({env}): {reason}")]
    Invalid {
        /// The command-line flag.
        flag: &'static str,
        /// The environment variable.
        env: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn in_range<T: PartialOrd + std::fmt::Debug + Copy>(
    value: T,
    min: T,
    max: T,
    flag: &'static str,
    env: &'static str,
) -> Result<T, ConfigError> {
    // Written so that NaN, which compares false with everything, is rejected too.
    if !(value >= min && value <= max) {
        return Err(ConfigError::Invalid {
            flag,
            env,
            reason: format!("`{value:?}` is outside {min:?}..={max:?}"),
        });
    }
    Ok(value)
}

/// Where the TLS certificate, key and (for mTLS) client CA bundle are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; set means a client certificate signed by it is required.
    pub client_ca: Option<PathBuf>,
}

fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(ConfigError::Invalid {
            flag: "--tls-client-ca",
            env: "VERDICT_TLS_CLIENT_CA",
            reason: "client certificates need TLS: set --tls-cert and --tls-key too".to_owned(),
        }),
        (Some(_), None) => Err(ConfigError::Invalid {
            flag: "--tls-key",
            env: "VERDICT_TLS_KEY",
            reason: "--tls-cert is set but --tls-key is not; TLS needs both".to_owned(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            flag: "--tls-cert",
            env: "VERDICT_TLS_CERT",
            reason: "--tls-key is set but --tls-cert is not; TLS needs both".to_owned(),
        }),
    }
}

/// Client identity patterns; they only mean something when client certificates are required,
/// so setting them without `--tls-client-ca` is an error rather than a silent no-op. A pattern
/// is an exact SAN value, `*.suffix` (DNS names) or `prefix/*` (URIs); anything else with a
/// `*`, or a list that holds only separators, is refused rather than read as "anyone".
fn client_patterns(
    values: Vec<String>,
    mtls: bool,
    flag: &'static str,
    env: &'static str,
) -> Result<Vec<String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { flag, env, reason };
    let given = !values.is_empty();
    let patterns: Vec<String> = values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if given && patterns.is_empty() {
        return Err(invalid(
            "the list has no identities; unset it instead (an empty list is not \"anyone\")"
                .to_owned(),
        ));
    }
    if !patterns.is_empty() && !mtls {
        return Err(invalid(
            "client identities need client certificates: set --tls-client-ca (and \
             --tls-cert, --tls-key) too"
                .to_owned(),
        ));
    }
    for pattern in &patterns {
        let core = if let Some(suffix) = pattern.strip_prefix("*.") {
            suffix
        } else if let Some(prefix) = pattern.strip_suffix("/*") {
            prefix
        } else {
            pattern
        };
        if core.is_empty() || core.contains('*') || pattern.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "`{pattern}`: a client identity is an exact SAN value, `*.suffix` (DNS names) \
                 or `prefix/*` (URIs)"
            )));
        }
    }
    Ok(patterns)
}

/// Reads the API keys from the file and the inline variable; errors name the file and line,
/// never a key.
fn load_api_keys(
    file: Option<&std::path::Path>,
    inline: Option<&str>,
) -> Result<KeyRing, ConfigError> {
    let mut ring = KeyRing::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            flag: "--api-keys-file",
            env: "VERDICT_API_KEYS_FILE",
            reason: format!("{}: {}", path.display(), crate::diagnostics::io_reason(&e)),
        })?;
        ring.add(&text, &path.display().to_string())
            .map_err(|reason| ConfigError::Invalid {
                flag: "--api-keys-file",
                env: "VERDICT_API_KEYS_FILE",
                reason,
            })?;
    }
    if let Some(inline) = inline {
        ring.add(&inline.replace(';', "\n"), "VERDICT_API_KEYS")
            .map_err(|reason| ConfigError::Invalid {
                flag: "--api-keys",
                env: "VERDICT_API_KEYS",
                reason,
            })?;
    }
    Ok(ring)
}

impl ServeArgs {
    /// Checks every setting; the first problem found is returned.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let grpc_addr = self
            .grpc_addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                flag: "--grpc-addr",
                env: "VERDICT_GRPC_ADDR",
                reason: format!("`{}` is not an ip:port address", self.grpc_addr),
            })?;
        let mtls = self.tls_client_ca.is_some();
        Ok(ValidConfig {
            policies: self.policies,
            grpc_addr,
            max_relation_depth: in_range(
                self.max_relation_depth,
                1,
                MAX_RELATION_DEPTH_CEILING,
                "--max-relation-depth",
                "VERDICT_MAX_RELATION_DEPTH",
            )?,
            max_batch: in_range(
                self.max_batch,
                1,
                MAX_BATCH_CEILING,
                "--max-batch",
                "VERDICT_MAX_BATCH",
            )?,
            max_message_bytes: in_range(
                self.max_message_bytes,
                1024,
                MAX_MESSAGE_BYTES_CEILING,
                "--max-message-bytes",
                "VERDICT_MAX_MESSAGE_BYTES",
            )?,
            max_json_depth: in_range(
                self.max_json_depth,
                1,
                MAX_JSON_DEPTH_CEILING,
                "--max-json-depth",
                "VERDICT_MAX_JSON_DEPTH",
            )?,
            max_request_entities: in_range(
                self.max_request_entities,
                0,
                MAX_BATCH_CEILING,
                "--max-request-entities",
                "VERDICT_MAX_REQUEST_ENTITIES",
            )?,
            max_entity_parents: in_range(
                self.max_entity_parents,
                0,
                1_000,
                "--max-entity-parents",
                "VERDICT_MAX_ENTITY_PARENTS",
            )?,
            max_properties: in_range(
                self.max_properties,
                0,
                MAX_BATCH_CEILING,
                "--max-properties",
                "VERDICT_MAX_PROPERTIES",
            )?,
            log_format: self.log_format,
            watch: self.watch,
            poll_interval: if self.poll_interval.is_zero() {
                None
            } else {
                Some(in_range(
                    self.poll_interval,
                    MIN_POLL_INTERVAL,
                    Duration::from_secs(3600),
                    "--poll-interval",
                    "VERDICT_POLL_INTERVAL",
                )?)
            },
            reload_debounce: in_range(
                self.reload_debounce,
                Duration::ZERO,
                MAX_RELOAD_DELAY,
                "--reload-debounce",
                "VERDICT_RELOAD_DEBOUNCE",
            )?,
            reload_max_delay: in_range(
                self.reload_max_delay,
                self.reload_debounce,
                MAX_RELOAD_DELAY,
                "--reload-max-delay",
                "VERDICT_RELOAD_MAX_DELAY",
            )?,
            enable_reload_rpc: self.enable_reload_rpc,
            start_without_bundle: self.start_without_bundle,
            metrics_addr: match self.metrics_addr.as_str() {
                "off" | "" => None,
                text => Some(
                    text.parse::<SocketAddr>()
                        .map_err(|_| ConfigError::Invalid {
                            flag: "--metrics-addr",
                            env: "VERDICT_METRICS_ADDR",
                            reason: format!("`{text}` is not an ip:port address or `off`"),
                        })?,
                ),
            },
            shutdown_grace: in_range(
                self.shutdown_grace,
                Duration::ZERO,
                Duration::from_secs(3600),
                "--shutdown-grace",
                "VERDICT_SHUTDOWN_GRACE",
            )?,
            shutdown_delay: in_range(
                self.shutdown_delay,
                Duration::ZERO,
                Duration::from_secs(600),
                "--shutdown-delay",
                "VERDICT_SHUTDOWN_DELAY",
            )?,
            max_concurrent_requests: in_range(
                self.max_concurrent_requests,
                1,
                1_000_000,
                "--max-concurrent-requests",
                "VERDICT_MAX_CONCURRENT_REQUESTS",
            )?,
            request_timeout: in_range(
                self.request_timeout,
                Duration::from_millis(1),
                Duration::from_secs(3600),
                "--request-timeout",
                "VERDICT_REQUEST_TIMEOUT",
            )?,
            max_concurrent_streams: in_range(
                self.max_concurrent_streams,
                1,
                100_000,
                "--max-concurrent-streams",
                "VERDICT_MAX_CONCURRENT_STREAMS",
            )?,
            max_header_list_bytes: in_range(
                self.max_header_list_bytes,
                1024,
                1 << 20,
                "--max-header-list-bytes",
                "VERDICT_MAX_HEADER_LIST_BYTES",
            )?,
            http2_keepalive_interval: (!self.http2_keepalive_interval.is_zero())
                .then_some(self.http2_keepalive_interval),
            http2_keepalive_timeout: in_range(
                self.http2_keepalive_timeout,
                Duration::from_millis(100),
                Duration::from_secs(3600),
                "--http2-keepalive-timeout",
                "VERDICT_HTTP2_KEEPALIVE_TIMEOUT",
            )?,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_connection_age: if self.max_connection_age.is_zero() {
                None
            } else {
                Some(in_range(
                    self.max_connection_age,
                    Duration::from_secs(10),
                    Duration::from_secs(7 * 24 * 3600),
                    "--max-connection-age",
                    "VERDICT_MAX_CONNECTION_AGE",
                )?)
            },
            max_string_bytes: in_range(
                self.max_string_bytes,
                16,
                1 << 20,
                "--max-string-bytes",
                "VERDICT_MAX_STRING_BYTES",
            )?,
            api_keys: std::sync::Arc::new(load_api_keys(
                self.api_keys_file.as_deref(),
                self.api_keys.as_deref(),
            )?),
            auth_open_health: self.auth_open_health,
            auth_open_reflection: self.auth_open_reflection,
            tls: tls_files(self.tls_cert, self.tls_key, self.tls_client_ca)?,
            tls_allowed_clients: client_patterns(
                self.tls_allowed_clients,
                mtls,
                "--tls-allowed-clients",
                "VERDICT_TLS_ALLOWED_CLIENTS",
            )?,
            tls_admin_clients: client_patterns(
                self.tls_admin_clients,
                mtls,
                "--tls-admin-clients",
                "VERDICT_TLS_ADMIN_CLIENTS",
            )?,
            decision_log_deny_rate: in_range(
                self.decision_log_deny_rate,
                0.0,
                1.0,
                "--decision-log-deny-rate",
                "VERDICT_DECISION_LOG_DENY_RATE",
            )?,
            decision_log_allow_rate: in_range(
                self.decision_log_allow_rate,
                0.0,
                1.0,
                "--decision-log-allow-rate",
                "VERDICT_DECISION_LOG_ALLOW_RATE",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ValidConfig, ConfigError> {
        let mut argv = vec!["verdict"];
        argv.extend_from_slice(args);
        Harness::try_parse_from(argv).unwrap().serve.validate()
    }

    #[test]
    fn defaults_are_loopback_and_the_example_bundle() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.policies, PathBuf::from("./policies"));
        assert_eq!(config.grpc_addr, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(config.max_batch, 100);
        assert_eq!(config.max_relation_depth, 32);
        assert!(config.watch);
        assert_eq!(config.poll_interval, Some(Duration::from_secs(2)));
        assert_eq!(config.reload_debounce, Duration::from_millis(200));
        assert!(!config.enable_reload_rpc);
        assert!(!config.start_without_bundle);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9180".parse().unwrap()));
        assert_eq!(config.decision_log_deny_rate, 1.0);
        assert_eq!(config.decision_log_allow_rate, 0.01);
        let off = parse(&["--metrics-addr", "off"]).unwrap();
        assert_eq!(off.metrics_addr, None);
        assert!(parse(&["--decision-log-allow-rate", "2"]).is_err());
        assert!(parse(&["--decision-log-deny-rate", "NaN"]).is_err());
    }

    #[test]
    fn api_key_problems_name_the_source_not_the_key() {
        let missing = parse(&["--api-keys-file", "/nonexistent/keys.txt"]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--api-keys-file (VERDICT_API_KEYS_FILE): /nonexistent/keys.txt: no such file or directory"
        );
        let weak = parse(&["--api-keys", "gw check hunter2"])
            .unwrap_err()
            .to_string();
        assert!(
            weak.contains("VERDICT_API_KEYS:1: the key of `gw` is 7 characters"),
            "{weak}"
        );
        assert!(!weak.contains("hunter2"));
        let two = parse(&[
            "--api-keys",
            "a check 0123456789abcdef0123456789abcdef;b admin fedcba9876543210fedcba9876543210",
        ])
        .unwrap();
        assert_eq!(two.api_keys.len(), 2);
    }

    #[test]
    fn reload_settings_parse() {
        let config = parse(&[
            "--watch",
            "false",
            "--poll-interval",
            "0",
            "--enable-reload-rpc",
            "--start-without-bundle=true",
        ])
        .unwrap();
        assert!(!config.watch);
        assert_eq!(config.poll_interval, None);
        assert!(config.enable_reload_rpc);
        assert!(config.start_without_bundle);
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2 hours").is_err());
        assert_eq!(
            parse(&["--reload-debounce", "2s", "--reload-max-delay", "1s"])
                .unwrap_err()
                .to_string(),
            "--reload-max-delay (VERDICT_RELOAD_MAX_DELAY): `1s` is outside 2s..=60s"
        );
    }

    #[test]
    fn tls_settings_must_be_complete() {
        assert!(parse(&[]).unwrap().tls.is_none());
        let mtls = parse(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-ca=ca.pem",
            "--tls-allowed-clients= spiffe://td/ns/gw/* ,,*.internal",
        ])
        .unwrap();
        assert_eq!(
            mtls.tls_allowed_clients,
            vec!["spiffe://td/ns/gw/*".to_owned(), "*.internal".to_owned()]
        );
        let half = parse(&["--tls-cert=c.pem"]).unwrap_err().to_string();
        assert!(half.starts_with("--tls-key (VERDICT_TLS_KEY)"), "{half}");
        let ca_only = parse(&["--tls-client-ca=ca.pem"]).unwrap_err().to_string();
        assert!(ca_only.starts_with("--tls-client-ca"), "{ca_only}");
        // Identity lists without client certificates would be silently ignored: refuse them.
        let no_mtls = parse(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-admin-clients=ops",
        ])
        .unwrap_err()
        .to_string();
        assert!(no_mtls.starts_with("--tls-admin-clients"), "{no_mtls}");
        let star = parse(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-ca=ca.pem",
            "--tls-allowed-clients=a*b",
        ])
        .unwrap_err()
        .to_string();
        assert!(star.contains("`a*b`"), "{star}");
        let mtls_with = |flag: &str| {
            parse(&[
                "--tls-cert=c.pem",
                "--tls-key=k.pem",
                "--tls-client-ca=ca.pem",
                flag,
            ])
        };
        for bad in [
            "--tls-admin-clients=*",
            "--tls-allowed-clients=*gateway.svc",
            "--tls-allowed-clients=spiffe://td/ns/gw*",
            "--tls-allowed-clients=/*",
            "--tls-allowed-clients= , ",
        ] {
            assert!(mtls_with(bad).is_err(), "{bad} accepted");
        }
        let good = mtls_with("--tls-admin-clients=*.ops.svc,spiffe://td/ns/ops/*").unwrap();
        assert_eq!(good.tls_admin_clients.len(), 2);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_variable() {
        assert_eq!(
            parse(&["--grpc-addr", "localhost"])
                .unwrap_err()
                .to_string(),
            "--grpc-addr (VERDICT_GRPC_ADDR): `localhost` is not an ip:port address"
        );
        assert_eq!(
            parse(&["--max-batch", "0"]).unwrap_err().to_string(),
            "--max-batch (VERDICT_MAX_BATCH): `0` is outside 1..=10000"
        );
    }
}
