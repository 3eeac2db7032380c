//! `verdict test DIR`: run the decision test cases kept with a bundle, report them as text,
//! JSON or JUnit XML, optionally with coverage, once or on every change (`--watch`).
//!
//! A case file that cannot be read is not a failed case: it is counted on its own and named in
//! the summary, so a run never reads like a normal one when some cases did not run.

mod coverage;
mod report;
mod watch;

use std::path::PathBuf;

use super::{EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, EXIT_USAGE, out};
use verdict_core::{DEFAULT_MAX_RELATION_DEPTH, LoadError, LoadOptions, Snapshot, cases};

use crate::config::BundleArgs;

/// How `verdict test` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Failures (every case with `--verbose`) and a summary line.
    #[default]
    Text,
    /// One JSON document: files, cases, summary and, with `--coverage`, coverage.
    Json,
    /// JUnit XML, as CI systems read it: a test suite per file, a test case per case.
    Junit,
}

/// Arguments of `verdict test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The bundle directory; cases are read from DIR/tests/*.yaml.
    #[arg(default_value = crate::config::DEFAULT_POLICIES)]
    pub dir: PathBuf,
    /// Case files to run instead of DIR/tests/*.yaml.
    #[arg(long = "cases")]
    pub case_files: Vec<PathBuf>,
    /// Print every case, not only failures (text output).
    #[arg(long, short)]
    pub verbose: bool,
    /// The report's format.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Runs only the cases whose name, or whose file's path, contains TEXT (repeatable: any
    /// match runs the case).
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Reports which policies determined at least one case and which never did, and the
    /// actions and resource types no case touches.
    #[arg(long)]
    pub coverage: bool,
    /// Runs again whenever the bundle or its cases change, until interrupted.
    #[arg(long)]
    pub watch: bool,
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
    if args.watch {
        return watch::run(&args, &options);
    }
    run_once(&args, &options)
}

/// Loads the bundle, runs the selected cases and prints the report; returns the exit code.
fn run_once(args: &TestArgs, options: &LoadOptions) -> u8 {
    let snapshot = match Snapshot::load(&args.dir, options) {
        Ok(snapshot) => snapshot,
        Err(invalid) => {
            eprintln!("{invalid}");
            return EXIT_INVALID_BUNDLE;
        }
    };
    let files = match case_files(args) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("{error}");
            return EXIT_FAILURE;
        }
    };
    if files.is_empty() {
        eprintln!(
            "{}: no test cases (expected tests/*.yaml)",
            args.dir.display()
        );
        return EXIT_FAILURE;
    }
    let run = TestRun::execute(&snapshot, &files, &args.filter);
    let coverage = args
        .coverage
        .then(|| coverage::Coverage::of(&snapshot, &run));
    match args.output {
        OutputFormat::Text => report::text(&run, coverage.as_ref(), args.verbose),
        OutputFormat::Json => out!("{}", report::json(&run, coverage.as_ref())),
        OutputFormat::Junit => out!("{}", report::junit(&run)),
    }
    if !args.filter.is_empty() && run.selected() == 0 {
        eprintln!(
            "error: no case matches the filter ({})",
            args.filter.join(", ")
        );
        return EXIT_FAILURE;
    }
    if run.failed() == 0 && run.unreadable() == 0 {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

fn case_files(args: &TestArgs) -> Result<Vec<PathBuf>, LoadError> {
    if args.case_files.is_empty() {
        cases::discover(&args.dir)
    } else {
        Ok(args.case_files.clone())
    }
}

/// One case file's part of a run.
#[derive(Debug)]
struct FileRun {
    path: PathBuf,
    /// The cases that ran, or why the file could not be read.
    outcome: Result<Vec<cases::CaseResult>, LoadError>,
    /// Cases the filter left out.
    left_out: usize,
}

/// Every file of a run.
#[derive(Debug)]
struct TestRun {
    files: Vec<FileRun>,
}

impl TestRun {
    fn execute(snapshot: &Snapshot, files: &[PathBuf], filters: &[String]) -> Self {
        let files = files
            .iter()
            .map(|path| {
                let file_matches = matches_any(filters, &path.display().to_string());
                let keep = |name: &str| file_matches || matches_any(filters, name);
                match cases::run_file_matching(snapshot, path, keep) {
                    Ok((results, left_out)) => FileRun {
                        path: path.clone(),
                        outcome: Ok(results),
                        left_out,
                    },
                    Err(error) => FileRun {
                        path: path.clone(),
                        outcome: Err(error),
                        left_out: 0,
                    },
                }
            })
            .collect();
        Self { files }
    }

    fn results(&self) -> impl Iterator<Item = &cases::CaseResult> {
        self.files
            .iter()
            .filter_map(|file| file.outcome.as_ref().ok())
            .flatten()
    }

    fn selected(&self) -> usize {
        self.results().count()
    }

    fn passed(&self) -> usize {
        self.results().filter(|r| r.failure.is_none()).count()
    }

    fn failed(&self) -> usize {
        self.results().filter(|r| r.failure.is_some()).count()
    }

    fn unreadable(&self) -> usize {
        self.files.iter().filter(|f| f.outcome.is_err()).count()
    }

    fn left_out(&self) -> usize {
        self.files.iter().map(|f| f.left_out).sum()
    }

    /// Returns the last line of a text run: `12 passed, 1 failed`, the cases the filter left
    /// out, and the files that could not be read.
    fn summary(&self) -> String {
        let mut text = format!("{} passed, {} failed", self.passed(), self.failed());
        if self.left_out() > 0 {
            text.push_str(&format!(", {} filtered out", self.left_out()));
        }
        if self.unreadable() > 0 {
            text.push_str(&format!(
                "; {} of {} test files could not be read, their cases did not run",
                self.unreadable(),
                self.files.len()
            ));
        }
        text
    }
}

/// Returns whether no filter is given or one of them is a substring of `text`.
fn matches_any(filters: &[String], text: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| text.contains(f.as_str()))
}
