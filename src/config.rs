//! Configuration of `verdict serve`: flags, `VERDICT_*` environment variables and defaults.
//!
//! Each setting is one clap argument with its environment variable and a `const` default: the
//! single source of truth, listed by `verdict serve --help`. The settings come in groups, one
//! per subsystem and file, each a clap `Args` flattened into [`ServeArgs`] with its own
//! `validate` into its own checked struct; [`ServeArgs::validate`] runs them all and returns a
//! [`ValidConfig`] made of the checked groups, the only thing the server accepts. Validation
//! errors name a setting by its clap id and print clap's own flag and variable for it, so
//! neither name is written twice.
//!
//! | group (file) | settings |
//! |---|---|
//! | this file | `--policies`, `--start-without-bundle` |
//! | [`BundleArgs`] (`bundle.rs`) | `--max-bundle-file-bytes`, `--max-bundle-bytes`, `--allow-empty-bundle` |
//! | [`ListenerArgs`] (`listener.rs`) | `--grpc-addr` and the HTTP/2 connection settings |
//! | [`HttpArgs`] (`http.rs`) | `--http-addr`, `--http-max-body-bytes`, `--authzen-*` (the HTTP/JSON API) |
//! | [`LimitsArgs`] (`limits.rs`) | `--max-*` request limits, `--request-timeout` |
//! | [`TelemetryArgs`] (`telemetry.rs`) | `--log-format`, `--metrics-addr` |
//! | [`ReloadArgs`] (`reload.rs`) | `--watch`, `--poll-interval`, `--reload-*`, `--enable-reload-rpc` |
//! | [`ShutdownArgs`] (`shutdown.rs`) | `--shutdown-grace`, `--shutdown-delay` |
//! | [`CallerAuthArgs`] (`caller_auth.rs`) | `--api-keys-file`, `--api-keys`, `--auth-open-*` |
//! | [`TlsArgs`] (`tls.rs`) | `--tls-*` |
//! | [`DecisionLogArgs`] (`decision_log.rs`) | `--decision-log-*` |
//! | [`IdentityArgs`] (`identity.rs`) | `--jwt-issuers` |
//! | [`ExtAuthzArgs`] (`ext_authz.rs`) | `--ext-authz-*` (the Envoy ext_authz front-end) |
//! | [`StoreArgs`] (`store.rs`) | `--store-*`, `--migrate` (the relationship store, docs/store.md) |
//!
//! The settings, in `--help` order:
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--policies` | `VERDICT_POLICIES` | `./policies` |
//! | `--max-bundle-file-bytes` | `VERDICT_MAX_BUNDLE_FILE_BYTES` | 1073741824 (1 GiB) |
//! | `--max-bundle-bytes` | `VERDICT_MAX_BUNDLE_BYTES` | 4294967296 (4 GiB) |
//! | `--allow-empty-bundle` | `VERDICT_ALLOW_EMPTY_BUNDLE` | `false` |
//! | `--grpc-addr` | `VERDICT_GRPC_ADDR` | `127.0.0.1:50051` |
//! | `--max-concurrent-streams` | `VERDICT_MAX_CONCURRENT_STREAMS` | 100 |
//! | `--max-connections` | `VERDICT_MAX_CONNECTIONS` | 1024 |
//! | `--max-header-list-bytes` | `VERDICT_MAX_HEADER_LIST_BYTES` | 16384 |
//! | `--http2-keepalive-interval` | `VERDICT_HTTP2_KEEPALIVE_INTERVAL` | `30s` (`0` off) |
//! | `--http2-keepalive-timeout` | `VERDICT_HTTP2_KEEPALIVE_TIMEOUT` | `10s` |
//! | `--idle-timeout` | `VERDICT_IDLE_TIMEOUT` | `5m` (`0` off) |
//! | `--max-connection-age` | `VERDICT_MAX_CONNECTION_AGE` | `0` (off) |
//! | `--http-addr` | `VERDICT_HTTP_ADDR` | none (the HTTP API is off) |
//! | `--http-max-body-bytes` | `VERDICT_HTTP_MAX_BODY_BYTES` | 1048576 (1 MiB) |
//! | `--authzen-types` | `VERDICT_AUTHZEN_TYPES` | none (types as written) |
//! | `--authzen-action-type` | `VERDICT_AUTHZEN_ACTION_TYPE` | `Action` |
//! | `--authzen-reasons` | `VERDICT_AUTHZEN_REASONS` | `false` |
//! | `--authzen-max-page` | `VERDICT_AUTHZEN_MAX_PAGE` | 1000 |
//! | `--authzen-pdp-url` | `VERDICT_AUTHZEN_PDP_URL` | the metadata request's scheme and `Host` |
//! | `--max-relation-depth` | `VERDICT_MAX_RELATION_DEPTH` | 32 |
//! | `--max-batch` | `VERDICT_MAX_BATCH` | 100 |
//! | `--max-message-bytes` | `VERDICT_MAX_MESSAGE_BYTES` | 4194304 |
//! | `--max-json-depth` | `VERDICT_MAX_JSON_DEPTH` | 32 |
//! | `--max-request-entities` | `VERDICT_MAX_REQUEST_ENTITIES` | 100 |
//! | `--max-entity-parents` | `VERDICT_MAX_ENTITY_PARENTS` | 32 |
//! | `--max-properties` | `VERDICT_MAX_PROPERTIES` | 100 |
//! | `--max-concurrent-requests` | `VERDICT_MAX_CONCURRENT_REQUESTS` | 1024 |
//! | `--max-concurrent-requests-per-connection` | `VERDICT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION` | 64 |
//! | `--request-timeout` | `VERDICT_REQUEST_TIMEOUT` | `5s` |
//! | `--request-body-timeout` | `VERDICT_REQUEST_BODY_TIMEOUT` | `1s` |
//! | `--max-string-bytes` | `VERDICT_MAX_STRING_BYTES` | 1024 |
//! | `--log-format` | `VERDICT_LOG_FORMAT` | `text` |
//! | (filter) | `VERDICT_LOG`, else `RUST_LOG` | `info` |
//! | `--metrics-addr` | `VERDICT_METRICS_ADDR` | `127.0.0.1:9180` (`off` turns it off) |
//! | `--otlp-endpoint` | `VERDICT_OTLP_ENDPOINT` | unset (no traces exported) |
//! | `--otlp-sample-ratio` | `VERDICT_OTLP_SAMPLE_RATIO` | `1.0` |
//! | `--watch` | `VERDICT_WATCH` | `true` |
//! | `--poll-interval` | `VERDICT_POLL_INTERVAL` | `2s` (`0` turns polling off) |
//! | `--reload-debounce` | `VERDICT_RELOAD_DEBOUNCE` | `200ms` |
//! | `--reload-max-delay` | `VERDICT_RELOAD_MAX_DELAY` | `1s` |
//! | `--max-reload-drop` | `VERDICT_MAX_RELOAD_DROP` | none (off) |
//! | `--enable-reload-rpc` | `VERDICT_ENABLE_RELOAD_RPC` | `false` |
//! | `--shutdown-grace` | `VERDICT_SHUTDOWN_GRACE` | `10s` |
//! | `--shutdown-delay` | `VERDICT_SHUTDOWN_DELAY` | `0s` |
//! | `--api-keys-file` | `VERDICT_API_KEYS_FILE` | none (no keys: the port is open) |
//! | `--api-keys` (prefer the file) | `VERDICT_API_KEYS` | none |
//! | `--auth-open-health` | `VERDICT_AUTH_OPEN_HEALTH` | `true` |
//! | `--auth-open-reflection` | `VERDICT_AUTH_OPEN_REFLECTION` | `true` |
//! | `--tls-cert`, `--tls-key` | `VERDICT_TLS_CERT`, `VERDICT_TLS_KEY` | none (both set: TLS on) |
//! | `--tls-client-ca` | `VERDICT_TLS_CLIENT_CA` | none (set: client certificates required) |
//! | `--tls-allowed-clients` | `VERDICT_TLS_ALLOWED_CLIENTS` | any verified client |
//! | `--tls-admin-clients` | `VERDICT_TLS_ADMIN_CLIENTS` | none |
//! | `--decision-log-deny-rate` | `VERDICT_DECISION_LOG_DENY_RATE` | `1` |
//! | `--decision-log-allow-rate` | `VERDICT_DECISION_LOG_ALLOW_RATE` | `0.01` |
//! | `--jwt-issuers` | `VERDICT_JWT_ISSUERS` | none (every bearer token is refused; docs/tokens.md) |
//! | `--ext-authz-peer-principal-type` | `VERDICT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE` | `Service` |
//! | `--ext-authz-max-body-bytes` | `VERDICT_EXT_AUTHZ_MAX_BODY_BYTES` | 65536 (64 KiB) |
//! | `--ext-authz-deny-reasons` | `VERDICT_EXT_AUTHZ_DENY_REASONS` | `false` |
//! | `--decision-log-queue` | `VERDICT_DECISION_LOG_QUEUE` | 8192 |
//! | `--start-without-bundle` | `VERDICT_START_WITHOUT_BUNDLE` | `false` |
//! | `--store-url` (or `--store-url-file`) | `VERDICT_STORE_URL` (`VERDICT_STORE_URL_FILE`) | none (no store) |
//! | `--store-password-file` | `VERDICT_STORE_PASSWORD_FILE` | none |
//! | `--migrate` | `VERDICT_MIGRATE` | `false` |
//! | `--store-max-batch` | `VERDICT_STORE_MAX_BATCH` | 1000 |
//! | `--store-poll-interval` | `VERDICT_STORE_POLL_INTERVAL` | `1s` |
//! | `--store-consistency-timeout` | `VERDICT_STORE_CONSISTENCY_TIMEOUT` | `5s` |
//! | `--store-changelog-retention` | `VERDICT_STORE_CHANGELOG_RETENTION` | `24h` |
//! | `--store-max-staleness` | `VERDICT_STORE_MAX_STALENESS` | `30s` |

use std::path::PathBuf;

use clap::{ArgAction, Args};

/// The clap id of a field of a settings group: the field's name, which is the id clap's derive
/// gives it, checked by the compiler so that renaming the field cannot leave a stale id.
macro_rules! arg_id {
    ($group:ty, $field:ident) => {{
        let _ = |args: &$group| {
            let _ = &args.$field;
        };
        stringify!($field)
    }};
}

mod api_keys;
mod bundle;
mod caller_auth;
mod decision_log;
mod ext_authz;
pub mod file;
mod http;
mod identity;
mod limits;
mod listener;
mod reload;
mod shutdown;
mod store;
mod telemetry;
mod tls;

pub use api_keys::{Key, KeyRing, Role};
pub use bundle::{
    BundleArgs, BundleConfig, DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_BUNDLE_FILE_BYTES,
};
pub use caller_auth::{CallerAuthArgs, CallerAuthConfig};
pub use decision_log::DecisionLogArgs;
pub use ext_authz::{
    DEFAULT_EXT_AUTHZ_MAX_BODY_BYTES, DEFAULT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE, ExtAuthzArgs,
    ExtAuthzConfig,
};
pub use http::{
    DEFAULT_AUTHZEN_ACTION_TYPE, DEFAULT_AUTHZEN_MAX_PAGE, DEFAULT_HTTP_MAX_BODY_BYTES, HttpArgs,
    HttpConfig,
};
pub use identity::{IdentityArgs, IdentityConfig};
pub use limits::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION, DEFAULT_MAX_ENTITY_PARENTS,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PROPERTIES, DEFAULT_MAX_REQUEST_ENTITIES,
    DEFAULT_MAX_STRING_BYTES, DEFAULT_REQUEST_BODY_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, LimitsArgs,
    LimitsConfig,
};
pub use listener::{
    DEFAULT_GRPC_ADDR, DEFAULT_HTTP2_KEEPALIVE_INTERVAL, DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTION_AGE,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_LIST_BYTES, ListenerArgs, ListenerConfig,
};
pub use reload::{
    DEFAULT_POLL_INTERVAL, DEFAULT_RELOAD_DEBOUNCE, DEFAULT_RELOAD_MAX_DELAY, ReloadArgs,
    ReloadConfig,
};
pub use shutdown::{DEFAULT_SHUTDOWN_DELAY, DEFAULT_SHUTDOWN_GRACE, ShutdownArgs, ShutdownConfig};
pub use store::{
    DEFAULT_STORE_CHANGELOG_RETENTION, DEFAULT_STORE_CONSISTENCY_TIMEOUT, DEFAULT_STORE_MAX_BATCH,
    DEFAULT_STORE_MAX_STALENESS, DEFAULT_STORE_POLL_INTERVAL, StoreArgs, StoreConfig, StoreTarget,
};
pub use telemetry::{DEFAULT_METRICS_ADDR, TelemetryArgs, TelemetryConfig};
pub use tls::{TlsArgs, TlsConfig, TlsFiles};

pub use crate::duration::parse_duration;
use crate::telemetry::decision_log::DecisionLogSettings;

/// Default bundle directory.
pub const DEFAULT_POLICIES: &str = "./policies";

/// Settings for `verdict serve`: the bundle, and one flattened group per subsystem.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A YAML file of these settings by their flag names (`grpc-addr: 0.0.0.0:50051`); flags
    /// and `VERDICT_*` variables override it.
    #[arg(long, env = "VERDICT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where settings read from the configuration file came from (set by the command line's
    /// parser, for errors).
    #[arg(skip)]
    pub origins: file::ConfigOrigins,
    /// Policy bundle directory (policies, schema, tuples, entities).
    #[arg(long, env = "VERDICT_POLICIES", default_value = DEFAULT_POLICIES)]
    pub policies: PathBuf,
    /// What a bundle may be.
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// The gRPC listener.
    #[command(flatten)]
    pub listener: ListenerArgs,
    /// The HTTP/JSON API listener and the AuthZEN mapping.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Request limits.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Logs and metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Reloading the bundle.
    #[command(flatten)]
    pub reload: ReloadArgs,
    /// Stopping.
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// API keys.
    #[command(flatten)]
    pub caller_auth: CallerAuthArgs,
    /// TLS and client certificates.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Decision log sampling.
    #[command(flatten)]
    pub decision_log: DecisionLogArgs,
    /// Bearer token issuers.
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// The Envoy ext_authz front-end.
    #[command(flatten)]
    pub ext_authz: ExtAuthzArgs,
    /// The relationship store (PostgreSQL).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Start even if the bundle is invalid: answer UNAVAILABLE and report NOT_SERVING until a
    /// valid bundle appears.
    #[arg(long, env = "VERDICT_START_WITHOUT_BUNDLE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub start_without_bundle: bool,
}

/// A configuration that passed validation: the checked groups.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Policy bundle directory.
    pub policies: PathBuf,
    /// What a bundle may be.
    pub bundle: BundleConfig,
    /// The gRPC listener.
    pub listener: ListenerConfig,
    /// The HTTP/JSON API listener and the AuthZEN mapping.
    pub http: HttpConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Logs and metrics.
    pub telemetry: TelemetryConfig,
    /// Reloading the bundle.
    pub reload: ReloadConfig,
    /// Stopping.
    pub shutdown: ShutdownConfig,
    /// API keys.
    pub caller_auth: CallerAuthConfig,
    /// TLS and client certificates.
    pub tls: TlsConfig,
    /// Decision log sampling.
    pub decision_log: DecisionLogSettings,
    /// Bearer token issuers: the verifier every front-end shares.
    pub identity: IdentityConfig,
    /// The Envoy ext_authz front-end.
    pub ext_authz: ExtAuthzConfig,
    /// The relationship store; `None` when none is configured (the bundle alone).
    pub store: Option<StoreConfig>,
    /// Start with no snapshot when the bundle is invalid.
    pub start_without_bundle: bool,
}

/// A setting with a value Verdict cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value is malformed or out of range. Shown as `--flag (VARIABLE): reason`, with the
    /// names clap has for the setting.
    #[error("{} ({}): {reason}", flag(.arg), env_var(.arg))]
    Invalid {
        /// The setting's clap id (its field name in its group).
        arg: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The command-line flag of the setting at fault, `--grpc-addr`.
    pub fn flag(&self) -> String {
        let Self::Invalid { arg, .. } = self;
        flag(arg)
    }

    /// The environment variable of the setting at fault, `VERDICT_GRPC_ADDR`.
    pub fn env(&self) -> String {
        let Self::Invalid { arg, .. } = self;
        env_var(arg)
    }
}

/// Clap's definition of the `serve` setting whose id is `id`.
fn with_arg<T>(id: &str, read: impl FnOnce(Option<&clap::Arg>) -> T) -> T {
    let command = ServeArgs::augment_args(clap::Command::new("verdict"));
    read(command.get_arguments().find(|arg| arg.get_id() == id))
}

/// The flag of the setting `id` as clap spells it: `--grpc-addr`.
fn flag(id: &str) -> String {
    with_arg(id, |arg| match arg.and_then(clap::Arg::get_long) {
        Some(long) => format!("--{long}"),
        None => id.to_owned(),
    })
}

/// The environment variable of the setting `id` as clap spells it: `VERDICT_GRPC_ADDR`.
fn env_var(id: &str) -> String {
    with_arg(id, |arg| {
        arg.and_then(clap::Arg::get_env)
            .map_or_else(String::new, |env| env.to_string_lossy().into_owned())
    })
}

fn in_range<T: PartialOrd + std::fmt::Debug + Copy>(
    value: T,
    min: T,
    max: T,
    arg: &'static str,
) -> Result<T, ConfigError> {
    // Written so that NaN, which compares false with everything, is rejected too.
    if !(value >= min && value <= max) {
        return Err(ConfigError::Invalid {
            arg,
            reason: format!("`{value:?}` is outside {min:?}..={max:?}"),
        });
    }
    Ok(value)
}

impl ValidConfig {
    /// Returns the options every load of the bundle runs with.
    pub fn load_options(&self) -> verdict_core::LoadOptions {
        self.bundle.load_options(self.limits.max_relation_depth)
    }
}

impl ServeArgs {
    /// Checks every group in turn; the first problem found is returned. Variables a setting
    /// names (an issuer's `hmac_secret_env`) are read from the process environment.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        self.validate_with_env(&|name| std::env::var(name).ok())
    }

    /// [`Self::validate`], reading variables a setting names through `env`.
    pub fn validate_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ValidConfig, ConfigError> {
        Ok(ValidConfig {
            policies: self.policies,
            bundle: self.bundle.validate()?,
            listener: self.listener.validate()?,
            http: self.http.validate()?,
            limits: self.limits.validate()?,
            telemetry: self.telemetry.validate()?,
            reload: self.reload.validate()?,
            shutdown: self.shutdown.validate()?,
            caller_auth: self.caller_auth.validate()?,
            tls: self.tls.validate()?,
            decision_log: self.decision_log.validate()?,
            identity: self.identity.validate(env)?,
            ext_authz: self.ext_authz.validate()?,
            store: self.store.validate()?,
            start_without_bundle: self.start_without_bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert_eq!(
            config.listener.grpc_addr,
            "127.0.0.1:50051".parse().unwrap()
        );
        assert_eq!(config.limits.max_batch, 100);
        assert_eq!(config.limits.max_relation_depth, 32);
        assert!(config.reload.watch);
        assert_eq!(config.reload.poll_interval, Some(Duration::from_secs(2)));
        assert_eq!(config.reload.debounce, Duration::from_millis(200));
        assert!(!config.reload.enable_rpc);
        assert!(!config.start_without_bundle);
        assert_eq!(
            config.load_options(),
            verdict_core::LoadOptions::default(),
            "serve loads as the library does by default"
        );
        assert_eq!(config.reload.max_drop, None);
        assert_eq!(
            config.telemetry.metrics_addr,
            Some("127.0.0.1:9180".parse().unwrap())
        );
        assert_eq!(config.decision_log.deny_rate, 1.0);
        assert_eq!(config.decision_log.allow_rate, 0.01);
        assert_eq!(config.decision_log.queue, 8192);
        assert_eq!(
            parse(&["--decision-log-queue", "0"])
                .unwrap_err()
                .to_string(),
            "--decision-log-queue (VERDICT_DECISION_LOG_QUEUE): `0` is outside 1..=1048576"
        );
        let off = parse(&["--metrics-addr", "off"]).unwrap();
        assert_eq!(off.telemetry.metrics_addr, None);
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
        assert_eq!(two.caller_auth.api_keys.len(), 2);
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
        assert!(!config.reload.watch);
        assert_eq!(config.reload.poll_interval, None);
        assert!(config.reload.enable_rpc);
        assert!(config.start_without_bundle);
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "2", "-1s", "2 fortnights", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&["--reload-debounce", "2s", "--reload-max-delay", "1s"])
                .unwrap_err()
                .to_string(),
            "--reload-max-delay (VERDICT_RELOAD_MAX_DELAY): `1s` is outside 2s..=60s"
        );
    }

    #[test]
    fn bundle_settings_parse_and_are_checked() {
        let config = parse(&[
            "--max-bundle-file-bytes",
            "1024",
            "--max-bundle-bytes=4096",
            "--allow-empty-bundle",
            "--max-reload-drop",
            "0.5",
        ])
        .unwrap();
        let options = config.load_options();
        assert_eq!(
            (
                options.max_file_bytes,
                options.max_bundle_bytes,
                options.allow_empty
            ),
            (1024, 4096, true)
        );
        assert_eq!(config.reload.max_drop, Some(0.5));
        assert_eq!(
            parse(&["--max-bundle-file-bytes", "0"])
                .unwrap_err()
                .to_string(),
            "--max-bundle-file-bytes (VERDICT_MAX_BUNDLE_FILE_BYTES): `0` is outside 1..=18446744073709551615"
        );
        assert_eq!(
            parse(&["--max-reload-drop", "1.5"])
                .unwrap_err()
                .to_string(),
            "--max-reload-drop (VERDICT_MAX_RELOAD_DROP): `1.5` is outside 0.0..=1.0"
        );
    }

    #[test]
    fn tls_settings_must_be_complete() {
        assert!(parse(&[]).unwrap().tls.files.is_none());
        let mtls = parse(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-ca=ca.pem",
            "--tls-allowed-clients= spiffe://td/ns/gw/* ,,*.internal",
        ])
        .unwrap();
        assert_eq!(
            mtls.tls.allowed_clients,
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
        assert_eq!(good.tls.admin_clients.len(), 2);
    }

    #[test]
    fn every_setting_is_named_after_its_id() {
        // Errors name a setting by its clap id (the field name, see `arg_id!`) and print the
        // flag and variable clap has for that id: every setting needs both.
        let command = ServeArgs::augment_args(clap::Command::new("verdict"));
        let mut count = 0;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
            let env = format!("VERDICT_{}", id.to_uppercase());
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&env)), "{id}");
            assert_eq!(flag(id), format!("--{}", id.replace('_', "-")));
            assert_eq!(env_var(id), env);
            count += 1;
        }
        // 62, the relationship store's 9 (`config/store.rs`), OpenTelemetry's 2 and --config.
        assert_eq!(count, 74);
    }

    #[test]
    fn each_group_names_its_settings_with_clap_names() {
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert_eq!(
            message(&["--http2-keepalive-timeout", "1ms"]),
            "--http2-keepalive-timeout (VERDICT_HTTP2_KEEPALIVE_TIMEOUT): `1ms` is outside \
             100ms..=3600s"
        );
        assert_eq!(
            message(&["--max-string-bytes", "1"]),
            "--max-string-bytes (VERDICT_MAX_STRING_BYTES): `1` is outside 16..=1048576"
        );
        assert_eq!(
            message(&["--metrics-addr", "nowhere"]),
            "--metrics-addr (VERDICT_METRICS_ADDR): `nowhere` is not an ip:port address or `off`"
        );
        assert_eq!(
            message(&["--shutdown-delay", "1h"]),
            "--shutdown-delay (VERDICT_SHUTDOWN_DELAY): `3600s` is outside 0ns..=600s"
        );
        assert_eq!(
            message(&["--tls-client-ca=ca.pem"]),
            "--tls-client-ca (VERDICT_TLS_CLIENT_CA): client certificates need TLS: set \
             --tls-cert and --tls-key too"
        );
        assert_eq!(
            message(&[
                "--tls-cert=c.pem",
                "--tls-key=k.pem",
                "--tls-allowed-clients=gw"
            ]),
            "--tls-allowed-clients (VERDICT_TLS_ALLOWED_CLIENTS): client identities need client \
             certificates: set --tls-client-ca (and --tls-cert, --tls-key) too"
        );
        assert_eq!(
            message(&["--decision-log-deny-rate=-1"]),
            "--decision-log-deny-rate (VERDICT_DECISION_LOG_DENY_RATE): `-1.0` is outside \
             0.0..=1.0"
        );
        let error = parse(&["--max-batch", "0"]).unwrap_err();
        assert_eq!(error.flag(), "--max-batch");
        assert_eq!(error.env(), "VERDICT_MAX_BATCH");
    }

    #[test]
    fn debug_output_never_shows_an_api_key() {
        let key = "0123456789abcdef0123456789abcdef";
        let argv = ["verdict", "--api-keys", &format!("gw check {key}")];
        let args = Harness::try_parse_from(argv).unwrap().serve;
        let shown = format!("{args:?}");
        assert!(shown.contains("api_keys: Some(\"[redacted]\")"), "{shown}");
        assert!(!shown.contains(key), "{shown}");
        let config = args.validate().unwrap();
        assert_eq!(config.caller_auth.api_keys.len(), 1);
        let shown = format!("{config:?}");
        assert!(shown.contains("gw"), "{shown}");
        assert!(!shown.contains(key), "{shown}");
    }

    #[test]
    fn jwt_issuers_are_read_at_validation() {
        assert!(!parse(&[]).unwrap().identity.verifier.is_enabled());
        let missing = parse(&["--jwt-issuers", "/nonexistent/issuers.yaml"]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--jwt-issuers (VERDICT_JWT_ISSUERS): /nonexistent/issuers.yaml: no such file or directory"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuers.yaml");
        std::fs::write(
            &path,
            "issuers:\n  - issuer: https://idp.test/\n    audiences: [verdict]\n    jwks_url: https://idp.test/jwks\n    algorithms: [none]\n",
        )
        .unwrap();
        let shown = path.display().to_string();
        let bad = parse(&["--jwt-issuers", &shown]).unwrap_err().to_string();
        assert!(
            bad.starts_with(&format!("--jwt-issuers (VERDICT_JWT_ISSUERS): {shown}:5:")),
            "{bad}"
        );
        std::fs::write(
            &path,
            "issuers:\n  - issuer: https://idp.test/\n    audiences: [verdict]\n    jwks_url: https://idp.test/jwks\n",
        )
        .unwrap();
        let config = parse(&["--jwt-issuers", &shown]).unwrap();
        assert!(config.identity.verifier.is_enabled());
    }

    #[test]
    fn ext_authz_settings_parse_and_are_checked() {
        let defaults = parse(&[]).unwrap().ext_authz;
        assert_eq!(
            defaults,
            ExtAuthzConfig {
                peer_principal_type: "Service".to_owned(),
                max_body_bytes: 65_536,
                deny_reasons: false,
            }
        );
        let set = parse(&[
            "--ext-authz-peer-principal-type",
            "Acme::Workload",
            "--ext-authz-max-body-bytes=1024",
            "--ext-authz-deny-reasons",
        ])
        .unwrap()
        .ext_authz;
        assert_eq!(set.peer_principal_type, "Acme::Workload");
        assert_eq!(set.max_body_bytes, 1024);
        assert!(set.deny_reasons);
        let bad_type = parse(&["--ext-authz-peer-principal-type", "Not A Type"])
            .unwrap_err()
            .to_string();
        assert!(
            bad_type.starts_with(
                "--ext-authz-peer-principal-type (VERDICT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE): \
                 `Not A Type` is not an entity type"
            ),
            "{bad_type}"
        );
        assert_eq!(
            parse(&["--ext-authz-max-body-bytes", "0"])
                .unwrap_err()
                .to_string(),
            "--ext-authz-max-body-bytes (VERDICT_EXT_AUTHZ_MAX_BODY_BYTES): `0` is outside \
             1..=67108864"
        );
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
