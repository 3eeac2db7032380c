//! `verdict test DIR`: run the decision test cases kept with a bundle.

use std::path::PathBuf;

use super::{EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, EXIT_USAGE, out};
use verdict_core::{DEFAULT_MAX_RELATION_DEPTH, Snapshot, cases};

use crate::config::BundleArgs;

/// Arguments of `verdict test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The bundle directory; cases are read from DIR/tests/*.yaml.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub dir: PathBuf,
    /// Case files to run instead of DIR/tests/*.yaml.
    #[arg(long = "cases")]
    pub case_files: Vec<PathBuf>,
    /// Print every case, not only failures.
    #[arg(long, short)]
    pub verbose: bool,
    /// What a bundle may be, as `serve` would accept it.
    #[command(flatten)]
    pub bundle: BundleArgs,
}

pub(super) fn run(args: TestArgs) -> u8 {
    let options = match args.bundle.clone().validate() {
        Ok(bundle) => bundle.load_options(DEFAULT_MAX_RELATION_DEPTH),
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    let snapshot = match Snapshot::load(&args.dir, &options) {
        Ok(snapshot) => snapshot,
        Err(invalid) => {
            eprintln!("{invalid}");
            return EXIT_INVALID_BUNDLE;
        }
    };
    let files = if args.case_files.is_empty() {
        match cases::discover(&args.dir) {
            Ok(files) => files,
            Err(error) => {
                eprintln!("{error}");
                return EXIT_FAILURE;
            }
        }
    } else {
        args.case_files
    };
    if files.is_empty() {
        eprintln!(
            "{}: no test cases (expected tests/*.yaml)",
            args.dir.display()
        );
        return EXIT_FAILURE;
    }
    let (mut passed, mut failed, mut unreadable) = (0usize, 0usize, 0usize);
    for file in &files {
        let results = match cases::run_file(&snapshot, file) {
            Ok(results) => results,
            Err(error) => {
                // A file whose cases cannot be read is not a failed case: it is counted on its
                // own, so the summary never reads like a normal run.
                eprintln!("error: {error}");
                unreadable += 1;
                continue;
            }
        };
        for result in results {
            match &result.failure {
                None => {
                    passed += 1;
                    if args.verbose {
                        out!(
                            "ok   {}:{}: {}",
                            result.path.display(),
                            result.line,
                            result.name
                        );
                    }
                }
                Some(why) => {
                    failed += 1;
                    out!("FAIL {}: {}: {why}", result.location(), result.name);
                }
            }
        }
    }
    out!("{}", summary(passed, failed, unreadable, files.len()));
    if failed == 0 && unreadable == 0 {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// Returns the last line of a run: `12 passed, 1 failed`, and the files that could not be run.
fn summary(passed: usize, failed: usize, unreadable: usize, files: usize) -> String {
    let mut text = format!("{passed} passed, {failed} failed");
    if unreadable > 0 {
        text.push_str(&format!(
            "; {unreadable} of {files} test files could not be read, their cases did not run"
        ));
    }
    text
}
