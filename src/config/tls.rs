//! TLS on the gRPC port: the certificate and key, and for mTLS the client CA and the client
//! identities allowed the decision and admin RPCs.

use std::path::PathBuf;

use super::{ConfigError, flag};

/// TLS and client certificate settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
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

/// The TLS settings, validated.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// TLS files; `None` is plaintext.
    pub files: Option<TlsFiles>,
    /// Client identities allowed the decision RPCs (mTLS).
    pub allowed_clients: Vec<String>,
    /// Client identities allowed the admin RPCs (mTLS).
    pub admin_clients: Vec<String>,
}

impl TlsArgs {
    /// Checks that the files come as a set and the identity patterns are well formed.
    pub fn validate(self) -> Result<TlsConfig, ConfigError> {
        let mtls = self.tls_client_ca.is_some();
        let cert = arg_id!(Self, tls_cert);
        let key = arg_id!(Self, tls_key);
        let files = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: self.tls_client_ca,
            }),
            (None, None) if self.tls_client_ca.is_none() => None,
            (None, None) => {
                return Err(ConfigError::Invalid {
                    arg: arg_id!(Self, tls_client_ca),
                    reason: format!(
                        "client certificates need TLS: set {} and {} too",
                        flag(cert),
                        flag(key)
                    ),
                });
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    arg: key,
                    reason: format!(
                        "{} is set but {} is not; TLS needs both",
                        flag(cert),
                        flag(key)
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    arg: cert,
                    reason: format!(
                        "{} is set but {} is not; TLS needs both",
                        flag(key),
                        flag(cert)
                    ),
                });
            }
        };
        Ok(TlsConfig {
            files,
            allowed_clients: client_patterns(
                self.tls_allowed_clients,
                mtls,
                arg_id!(Self, tls_allowed_clients),
            )?,
            admin_clients: client_patterns(
                self.tls_admin_clients,
                mtls,
                arg_id!(Self, tls_admin_clients),
            )?,
        })
    }
}

/// Client identity patterns; they only mean something when client certificates are required,
/// so setting them without `--tls-client-ca` is an error rather than a silent no-op. A pattern
/// is an exact SAN value, `*.suffix` (DNS names) or `prefix/*` (URIs); anything else with a
/// `*`, or a list that holds only separators, is refused rather than read as "anyone".
fn client_patterns(
    values: Vec<String>,
    mtls: bool,
    arg: &'static str,
) -> Result<Vec<String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { arg, reason };
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
        return Err(invalid(format!(
            "client identities need client certificates: set {} (and {}, {}) too",
            flag(arg_id!(TlsArgs, tls_client_ca)),
            flag(arg_id!(TlsArgs, tls_cert)),
            flag(arg_id!(TlsArgs, tls_key)),
        )));
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
