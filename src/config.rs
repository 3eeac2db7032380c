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
//! | `--log-format` | `VERDICT_LOG_FORMAT` | `text` |
//! | (filter) | `VERDICT_LOG`, else `RUST_LOG` | `info` |

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::bundle::DEFAULT_MAX_RELATION_DEPTH;
use crate::engine::DEFAULT_MAX_JSON_DEPTH;

/// Default bundle directory.
pub const DEFAULT_POLICIES: &str = "./policies";
/// Default gRPC listen address: loopback only, so a default start exposes nothing.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// Default batch limit.
pub const DEFAULT_MAX_BATCH: usize = 100;
/// Default largest request message, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

const MAX_BATCH_CEILING: usize = 10_000;
const MAX_MESSAGE_BYTES_CEILING: usize = 64 * 1024 * 1024;
const MAX_RELATION_DEPTH_CEILING: u32 = 1_000;
const MAX_JSON_DEPTH_CEILING: usize = 64;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
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
    /// Log format.
    #[arg(long, env = "VERDICT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Log format.
    pub log_format: LogFormat,
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

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: T,
    min: T,
    max: T,
    flag: &'static str,
    env: &'static str,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            flag,
            env,
            reason: format!("`{value}` is outside {min}..={max}"),
        });
    }
    Ok(value)
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
            log_format: self.log_format,
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
