//! `verdict validate DIR`: load a bundle as `serve` would and report every problem.

use std::path::PathBuf;

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, out};
use verdict_core::{DEFAULT_MAX_RELATION_DEPTH, Snapshot};

use crate::config::BundleArgs;

/// Arguments of `verdict validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The bundle directory.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub dir: PathBuf,
    /// What a bundle may be, as `serve` would accept it.
    #[command(flatten)]
    pub bundle: BundleArgs,
}

pub(super) fn run(args: ValidateArgs) -> u8 {
    let options = match args.bundle.validate() {
        Ok(bundle) => bundle.load_options(DEFAULT_MAX_RELATION_DEPTH),
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    match Snapshot::load(&args.dir, &options) {
        Ok(snapshot) => {
            for warning in snapshot.warnings() {
                eprintln!("{warning}");
            }
            out!(
                "{}: valid: {} policies, {} tuples, {} entities, {}, version {}",
                args.dir.display(),
                snapshot.policy_count(),
                snapshot.tuple_count(),
                snapshot.entity_count(),
                if snapshot.has_schema() {
                    "validated against the schema"
                } else {
                    "no schema"
                },
                snapshot.version()
            );
            EXIT_OK
        }
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!(
                "{}: invalid: {} error(s)",
                args.dir.display(),
                invalid.errors().len()
            );
            EXIT_FAILURE
        }
    }
}
