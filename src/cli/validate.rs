//! `verdict validate DIR`: load a bundle as `serve` would and report every problem, check its
//! decision tables (`tests/*.yaml`) without running them, and warn about files it would not
//! load (errors with `--strict`).

use std::path::{Path, PathBuf};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, out};
use verdict_core::{DEFAULT_MAX_RELATION_DEPTH, Snapshot, cases, unrecognised_files};

use crate::config::BundleArgs;

/// Arguments of `verdict validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The bundle directory.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub dir: PathBuf,
    /// Treat warnings (files the bundle holds but Verdict does not load) as errors.
    #[arg(long)]
    pub strict: bool,
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
    let loaded = Snapshot::load(&args.dir, &options);
    let extras = check_beside_the_bundle(&args.dir, args.strict);
    let mut error_count = extras.errors.len();
    match &loaded {
        Ok(snapshot) => {
            for warning in snapshot.warnings() {
                eprintln!("{warning}");
            }
        }
        Err(invalid) => {
            eprintln!("{invalid}");
            error_count += invalid.errors().len();
        }
    }
    for warning in &extras.warnings {
        eprintln!("{warning}");
    }
    for error in &extras.errors {
        eprintln!("{error}");
    }
    match loaded {
        Ok(snapshot) if error_count == 0 => {
            out!(
                "{}: valid: {} policies, {} tuples, {} entities, {}, {} test cases ({} case files), version {}",
                args.dir.display(),
                snapshot.policy_count(),
                snapshot.tuple_count(),
                snapshot.entity_count(),
                if snapshot.has_schema() {
                    "validated against the schema"
                } else {
                    "no schema"
                },
                extras.case_count,
                extras.case_files,
                snapshot.version()
            );
            EXIT_OK
        }
        _ => {
            eprintln!("{}: invalid: {error_count} error(s)", args.dir.display());
            EXIT_FAILURE
        }
    }
}

/// What `validate` finds beside the loaded bundle.
#[derive(Debug, Default)]
struct Extras {
    errors: Vec<String>,
    warnings: Vec<String>,
    case_files: usize,
    case_count: usize,
}

/// Checks the decision tables and lists the files Verdict would not load.
fn check_beside_the_bundle(dir: &Path, strict: bool) -> Extras {
    let mut extras = Extras::default();
    let tests_dir = dir.join("tests");
    // No `tests/` directory is no tables, not an error; anything else `discover` reports.
    let has_tests = std::fs::metadata(&tests_dir).is_ok_and(|m| m.is_dir());
    let files = if has_tests {
        cases::discover(dir).unwrap_or_else(|error| {
            extras.errors.push(error.to_string());
            Vec::new()
        })
    } else {
        Vec::new()
    };
    for file in &files {
        match cases::check_file(file) {
            Ok(count) => {
                extras.case_files += 1;
                extras.case_count += count;
            }
            Err(error) => extras.errors.push(error.to_string()),
        }
    }
    match unrecognised_files(dir) {
        Ok(found) => {
            for file in found {
                if strict {
                    extras.errors.push(file.to_string());
                } else {
                    extras.warnings.push(format!(
                        "{}: warning: {}",
                        file.path.display(),
                        file.message()
                    ));
                }
            }
        }
        Err(error) => extras.errors.push(error),
    }
    extras
}
