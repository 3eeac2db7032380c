//! `verdict validate DIR`: load a bundle as `serve` would and report every problem.

use std::path::PathBuf;

use super::{EXIT_FAILURE, EXIT_OK, out};
use verdict_core::{LoadOptions, Snapshot};

/// Arguments of `verdict validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The bundle directory.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub dir: PathBuf,
}

pub(super) fn run(args: ValidateArgs) -> u8 {
    match Snapshot::load(&args.dir, &LoadOptions::default()) {
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
