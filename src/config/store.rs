//! Relationship store settings (issue #19): the PostgreSQL connection, migrations at start, and
//! how a replica follows the store.
//!
//! Without `--store-url` (and `--store-url-file`) there is no store: Verdict serves the bundle
//! alone, exactly as before. The connection string may carry a password; so may the password
//! file. Neither is ever printed: [`StoreConfig`]'s `Debug` shows the host, port, database and
//! user only, and no error quotes the string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ArgAction;

use super::{ConfigError, in_range, parse_duration};

/// Default largest number of updates in one `WriteRelationships` batch.
pub const DEFAULT_STORE_MAX_BATCH: usize = 1000;
/// Default polling interval of the change log (the fallback behind LISTEN/NOTIFY).
pub const DEFAULT_STORE_POLL_INTERVAL: &str = "1s";
/// Default longest wait of an `at_least_as_fresh` or `fully_consistent` request.
pub const DEFAULT_STORE_CONSISTENCY_TIMEOUT: &str = "5s";
/// Default age after which change-log revisions are garbage-collected.
pub const DEFAULT_STORE_CHANGELOG_RETENTION: &str = "24h";
/// Default longest time without the store before `/readyz` fails.
pub const DEFAULT_STORE_MAX_STALENESS: &str = "30s";

/// The relationship store.
#[derive(Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL connection string of the relationship store (`postgres://user@host:5432/db`
    /// or `host=… dbname=…`); unset, there is no store and the bundle is all there is. Prefer
    /// `--store-url-file` when it carries a password.
    #[arg(long, env = "VERDICT_STORE_URL")]
    pub store_url: Option<String>,
    /// A file holding the connection string (a mounted Secret), instead of `--store-url`.
    #[arg(long, env = "VERDICT_STORE_URL_FILE", conflicts_with = "store_url")]
    pub store_url_file: Option<PathBuf>,
    /// A file holding the database password, when the connection string has none.
    #[arg(long, env = "VERDICT_STORE_PASSWORD_FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Run the store's schema migrations at start (as `verdict migrate` does), under an
    /// advisory lock so that replicas starting together run them once.
    #[arg(long, env = "VERDICT_MIGRATE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub migrate: bool,
    /// The most updates one `WriteRelationships` batch may carry.
    #[arg(long, env = "VERDICT_STORE_MAX_BATCH", default_value_t = DEFAULT_STORE_MAX_BATCH)]
    pub store_max_batch: usize,
    /// How often the change log is polled besides LISTEN/NOTIFY.
    #[arg(long, env = "VERDICT_STORE_POLL_INTERVAL", default_value = DEFAULT_STORE_POLL_INTERVAL, value_parser = parse_duration)]
    pub store_poll_interval: Duration,
    /// The longest a request waits for this replica to reach the revision its consistency
    /// asks for; then UNAVAILABLE.
    #[arg(long, env = "VERDICT_STORE_CONSISTENCY_TIMEOUT", default_value = DEFAULT_STORE_CONSISTENCY_TIMEOUT, value_parser = parse_duration)]
    pub store_consistency_timeout: Duration,
    /// Change-log revisions older than this are deleted; a replica further behind reloads the
    /// whole store.
    #[arg(long, env = "VERDICT_STORE_CHANGELOG_RETENTION", default_value = DEFAULT_STORE_CHANGELOG_RETENTION, value_parser = parse_duration)]
    pub store_changelog_retention: Duration,
    /// `/readyz` fails once the store has been unreachable this long (`0`: as soon as it is);
    /// checks keep being answered from the last applied revision meanwhile.
    #[arg(long, env = "VERDICT_STORE_MAX_STALENESS", default_value = DEFAULT_STORE_MAX_STALENESS, value_parser = parse_duration)]
    pub store_max_staleness: Duration,
}

impl fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreArgs")
            .field("store_url", &self.store_url.as_ref().map(|_| "<redacted>"))
            .field("store_url_file", &self.store_url_file)
            .field("store_password_file", &self.store_password_file)
            .field("migrate", &self.migrate)
            .finish_non_exhaustive()
    }
}

/// The relationship store settings, validated: `None` in [`super::ValidConfig`] when no store
/// is configured.
#[derive(Clone)]
pub struct StoreConfig {
    /// The connection settings, password included (never printed).
    pub connection: tokio_postgres::Config,
    /// Run migrations at start.
    pub migrate: bool,
    /// The most updates per write batch.
    pub max_batch: usize,
    /// The change-log polling interval.
    pub poll_interval: Duration,
    /// The longest consistency wait.
    pub consistency_timeout: Duration,
    /// How long change-log revisions are kept.
    pub changelog_retention: Duration,
    /// How long the store may be unreachable before `/readyz` fails.
    pub max_staleness: Duration,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("store", &StoreTarget(&self.connection))
            .field("migrate", &self.migrate)
            .field("max_batch", &self.max_batch)
            .field("poll_interval", &self.poll_interval)
            .field("consistency_timeout", &self.consistency_timeout)
            .field("changelog_retention", &self.changelog_retention)
            .field("max_staleness", &self.max_staleness)
            .finish()
    }
}

/// Where the store is, for logs: host, port, database and user, never the password.
pub struct StoreTarget<'a>(pub &'a tokio_postgres::Config);

impl fmt::Display for StoreTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.0;
        let host = config
            .get_hosts()
            .first()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_default();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        write!(
            f,
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        )
    }
}

impl fmt::Debug for StoreTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

const MAX_BATCH_LIMIT: usize = 100_000;

impl StoreArgs {
    /// Reads the connection string (from the flag or its file) and the password file, and
    /// checks the intervals; `None` without a store.
    pub fn validate(self) -> Result<Option<StoreConfig>, ConfigError> {
        let url = match (&self.store_url, &self.store_url_file) {
            (Some(url), _) => url.trim().to_owned(),
            (None, Some(path)) => read_secret(path, arg_id!(Self, store_url_file))?,
            (None, None) => return Ok(None),
        };
        // Never quote the string or the driver's error about it: either may hold the password.
        let mut connection =
            tokio_postgres::Config::from_str(&url).map_err(|_| ConfigError::Invalid {
                arg: if self.store_url.is_some() {
                    arg_id!(Self, store_url)
                } else {
                    arg_id!(Self, store_url_file)
                },
                reason: "not a PostgreSQL connection string (`postgres://user@host:port/database` \
                         or `host=… port=… dbname=… user=…`)"
                    .to_owned(),
            })?;
        if let Some(path) = &self.store_password_file {
            let password = read_secret(path, arg_id!(Self, store_password_file))?;
            connection.password(password);
        }
        if connection.get_hosts().is_empty() {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, store_url),
                reason: "the connection string names no host".to_owned(),
            });
        }
        if connection.get_connect_timeout().is_none() {
            connection.connect_timeout(Duration::from_secs(5));
        }
        connection.application_name("verdict");
        Ok(Some(StoreConfig {
            connection,
            migrate: self.migrate,
            max_batch: in_range(
                self.store_max_batch,
                1,
                MAX_BATCH_LIMIT,
                arg_id!(Self, store_max_batch),
            )?,
            poll_interval: in_range(
                self.store_poll_interval,
                Duration::from_millis(10),
                Duration::from_secs(3600),
                arg_id!(Self, store_poll_interval),
            )?,
            consistency_timeout: in_range(
                self.store_consistency_timeout,
                Duration::ZERO,
                Duration::from_secs(300),
                arg_id!(Self, store_consistency_timeout),
            )?,
            changelog_retention: in_range(
                self.store_changelog_retention,
                Duration::from_secs(1),
                Duration::from_secs(365 * 24 * 3600),
                arg_id!(Self, store_changelog_retention),
            )?,
            max_staleness: in_range(
                self.store_max_staleness,
                Duration::ZERO,
                Duration::from_secs(24 * 3600),
                arg_id!(Self, store_max_staleness),
            )?,
        }))
    }
}

/// Reads a one-line secret file (trailing newline dropped); the error names the file, never
/// its content.
fn read_secret(path: &std::path::Path, arg: &'static str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Invalid {
        arg,
        reason: format!(
            "cannot read {}: {}",
            path.display(),
            verdict_core::io_reason(&error)
        ),
    })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(ConfigError::Invalid {
            arg,
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn parse(args: &[&str]) -> Result<Option<StoreConfig>, ConfigError> {
        let command =
            StoreArgs::augment_args(clap::Command::new("verdict")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::once("verdict").chain(args.iter().copied()))
            .unwrap();
        StoreArgs::from_arg_matches(&matches).unwrap().validate()
    }

    #[test]
    fn no_store_url_means_no_store() {
        assert!(parse(&[]).unwrap().is_none());
    }

    #[test]
    fn the_password_never_shows_in_debug_or_errors() {
        let config = parse(&[
            "--store-url",
            "postgres://verdict:s3cr3t-pw@db.internal:6543/authz",
        ])
        .unwrap()
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(
            shown.contains("postgres://verdict@db.internal:6543/authz"),
            "{shown}"
        );
        let args_shown = format!(
            "{:?}",
            StoreArgs {
                store_url: Some("postgres://u:s3cr3t-pw@h/d".to_owned()),
                store_url_file: None,
                store_password_file: None,
                migrate: false,
                store_max_batch: 1,
                store_poll_interval: Duration::from_secs(1),
                store_consistency_timeout: Duration::from_secs(1),
                store_changelog_retention: Duration::from_secs(1),
                store_max_staleness: Duration::from_secs(1),
            }
        );
        assert!(!args_shown.contains("s3cr3t-pw"), "{args_shown}");
        let error = parse(&["--store-url", "postgres://u:s3cr3t-pw@h:notaport/d"]).unwrap_err();
        assert!(!error.to_string().contains("s3cr3t-pw"), "{error}");
        assert!(error.to_string().starts_with("--store-url"), "{error}");
    }

    #[test]
    fn the_url_and_password_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("url");
        let password = dir.path().join("password");
        std::fs::write(&url, "host=127.0.0.1 port=5433 user=verdict dbname=authz\n").unwrap();
        std::fs::write(&password, "pw-from-file\n").unwrap();
        let config = parse(&[
            "--store-url-file",
            url.to_str().unwrap(),
            "--store-password-file",
            password.to_str().unwrap(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.connection.get_password(), Some(&b"pw-from-file"[..]));
        assert_eq!(config.connection.get_ports(), &[5433]);
        let missing = dir.path().join("missing");
        let error = parse(&["--store-url-file", missing.to_str().unwrap()]).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
    }
}
