//! The command line: `serve` (the default), `check`, `validate`, `test`, `migrate`,
//! `relationships import|export`.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok (`check`: ALLOW) |
//! | 1 | failure: `validate` found errors, `test` had failing cases, the server failed |
//! | 2 | DENY (`check`) |
//! | 3 | the bundle is invalid (`serve`, `check`, `test`) |
//! | 64 | bad usage, configuration or request |

mod check;
mod migrate;
mod relation;
mod relationships;
mod serve;
mod test;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use check::CheckArgs;
pub use migrate::MigrateArgs;
pub use relation::RelationArgs;
pub use relationships::RelationshipsArgs;
pub use test::TestArgs;
pub use validate::ValidateArgs;

use crate::config::ServeArgs;

/// Exit code: success, or ALLOW for `check`.
pub const EXIT_OK: u8 = 0;
/// Exit code: failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: DENY, for `check`.
pub const EXIT_DENY: u8 = 2;
/// Exit code: the bundle is invalid.
pub const EXIT_INVALID_BUNDLE: u8 = 3;
/// Exit code: bad usage, configuration or request (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// Verdict: a policy decision point for Cedar policies and relationship tuples.
///
/// Without a subcommand, `verdict` serves the bundle in `./policies` (like `verdict serve`).
#[derive(Debug, Parser)]
#[command(
    name = "verdict",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "`verdict serve --help` lists the server's settings (flags and VERDICT_* \
                  variables); `verdict` alone takes them too."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve decisions over gRPC.
    Serve(Box<ServeArgs>),
    /// Decide one request and print the decision and its reasons.
    Check(CheckArgs),
    /// Check a bundle; print every error with file:line:column.
    Validate(ValidateArgs),
    /// Run the decision test cases kept with a bundle (tests/*.yaml).
    Test(TestArgs),
    /// Bring the relationship store's schema up to date (PostgreSQL, --store-url).
    Migrate(MigrateArgs),
    /// Bulk import and export of the relationship store's tuples.
    Relationships(RelationshipsArgs),
    /// Ask the bundle's relation model (`*.fga`) a relation question, without a server.
    Relation(RelationArgs),
}

/// Prints a line to stdout, ignoring a closed pipe (`verdict check … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

/// Parses the command line. `verdict` without a subcommand serves, so it takes every `serve`
/// flag; they are hidden from `verdict --help`, which lists the subcommands, and shown by
/// `verdict serve --help`.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().mut_args(|arg| {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            arg
        } else {
            arg.hide(true)
        }
    });
    Cli::from_arg_matches(&command.try_get_matches()?)
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Check(args)) => check::run(args),
        Some(Command::Validate(args)) => validate::run(args),
        Some(Command::Test(args)) => test::run(args),
        Some(Command::Migrate(args)) => migrate::run(args),
        Some(Command::Relationships(args)) => relationships::run(args),
        Some(Command::Relation(args)) => relation::run(args),
    };
    ExitCode::from(code)
}
