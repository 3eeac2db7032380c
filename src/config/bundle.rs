//! Bundle settings: what a load accepts (size caps, empty bundles). Shared by `serve`,
//! `validate`, `check` and `test`, so a bundle `validate` accepts is one `serve` loads.

use clap::ArgAction;
use verdict_core::LoadOptions;
pub use verdict_core::{DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_BUNDLE_FILE_BYTES};

use super::{ConfigError, in_range};

/// What a bundle may be.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// Largest bundle file, in bytes; a larger one fails the load (it is never read).
    #[arg(long, env = "VERDICT_MAX_BUNDLE_FILE_BYTES", default_value_t = DEFAULT_MAX_BUNDLE_FILE_BYTES)]
    pub max_bundle_file_bytes: u64,
    /// Most bytes of all of the bundle's files together; more fails the load.
    #[arg(long, env = "VERDICT_MAX_BUNDLE_BYTES", default_value_t = DEFAULT_MAX_BUNDLE_BYTES)]
    pub max_bundle_bytes: u64,
    /// Load a bundle without policies (it denies every request). Off, such a bundle fails the
    /// load: deleting every file is more often a git-sync or ConfigMap mistake than intended.
    #[arg(long, env = "VERDICT_ALLOW_EMPTY_BUNDLE", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_empty_bundle: bool,
}

/// The bundle settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleConfig {
    /// Largest bundle file, in bytes.
    pub max_file_bytes: u64,
    /// Most bytes of all files together.
    pub max_bundle_bytes: u64,
    /// Load a bundle without policies.
    pub allow_empty: bool,
}

impl BundleArgs {
    /// Checks the caps; the first problem found is returned.
    pub fn validate(self) -> Result<BundleConfig, ConfigError> {
        Ok(BundleConfig {
            max_file_bytes: in_range(
                self.max_bundle_file_bytes,
                1,
                u64::MAX,
                arg_id!(Self, max_bundle_file_bytes),
            )?,
            max_bundle_bytes: in_range(
                self.max_bundle_bytes,
                1,
                u64::MAX,
                arg_id!(Self, max_bundle_bytes),
            )?,
            allow_empty: self.allow_empty_bundle,
        })
    }
}

impl BundleConfig {
    /// Returns the options a load runs with: these settings and the relation depth bound.
    pub fn load_options(&self, max_relation_depth: u32) -> LoadOptions {
        LoadOptions {
            max_relation_depth,
            max_file_bytes: self.max_file_bytes,
            max_bundle_bytes: self.max_bundle_bytes,
            allow_empty: self.allow_empty,
        }
    }
}
