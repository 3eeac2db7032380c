//! Caller authentication by preshared API keys: where the keys come from, and which services
//! answer without one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ArgAction;

use super::{ConfigError, KeyRing, env_var};

/// Who may call: API keys, and the services open without one.
#[derive(Clone, clap::Args)]
pub struct CallerAuthArgs {
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
}

impl fmt::Debug for CallerAuthArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inline keys are secrets: say whether they are set, never what they are.
        f.debug_struct("CallerAuthArgs")
            .field("api_keys_file", &self.api_keys_file)
            .field("api_keys", &self.api_keys.as_ref().map(|_| "[redacted]"))
            .field("auth_open_health", &self.auth_open_health)
            .field("auth_open_reflection", &self.auth_open_reflection)
            .finish()
    }
}

/// The caller authentication settings, validated.
#[derive(Debug, Clone)]
pub struct CallerAuthConfig {
    /// API keys; empty means the gRPC port is open.
    pub api_keys: Arc<KeyRing>,
    /// Health answers without a key.
    pub open_health: bool,
    /// Reflection answers without a key.
    pub open_reflection: bool,
}

impl CallerAuthArgs {
    /// Reads the keys from the file and the inline variable; errors name the file and line,
    /// never a key.
    pub fn validate(self) -> Result<CallerAuthConfig, ConfigError> {
        let mut ring = KeyRing::default();
        if let Some(path) = self.api_keys_file.as_deref() {
            add_file(&mut ring, path)?;
        }
        if let Some(inline) = self.api_keys.as_deref() {
            let arg = arg_id!(Self, api_keys);
            ring.add(&inline.replace(';', "\n"), &env_var(arg))
                .map_err(|reason| ConfigError::Invalid { arg, reason })?;
        }
        Ok(CallerAuthConfig {
            api_keys: Arc::new(ring),
            open_health: self.auth_open_health,
            open_reflection: self.auth_open_reflection,
        })
    }
}

fn add_file(ring: &mut KeyRing, path: &Path) -> Result<(), ConfigError> {
    let arg = arg_id!(CallerAuthArgs, api_keys_file);
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        arg,
        reason: format!("{}: {}", path.display(), verdict_core::io_reason(&e)),
    })?;
    ring.add(&text, &path.display().to_string())
        .map_err(|reason| ConfigError::Invalid { arg, reason })
}
