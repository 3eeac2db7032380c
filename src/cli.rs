//! The command line: `serve` (the default), `check`, `validate`, `test`, `fmt`, `migrate`,
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
mod fmt;
mod migrate;
mod relation;
mod relationships;
mod serve;
mod test;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use check::CheckArgs;
pub use fmt::FmtArgs;
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
    /// Format the bundle's Cedar policy files with Cedar's formatter (`--check` for CI).
    Fmt(FmtArgs),
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
///
/// With `--config FILE` (or `VERDICT_CONFIG`) for the server, the file's settings join the
/// command line as the flags they name (`crate::config::file`), before clap parses it.
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
    let mut given: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let origins = match with_config_file(&mut given) {
        Ok(origins) => origins,
        Err(message) => {
            return Err(Cli::command().error(clap::error::ErrorKind::InvalidValue, message));
        }
    };
    let matches = command.try_get_matches_from(&given).map_err(|error| {
        // A refused value from the file: say where it is written.
        let flag = match error.get(clap::error::ContextKind::InvalidArg) {
            Some(clap::error::ContextValue::String(arg)) => {
                arg.split_whitespace().next().unwrap_or_default().to_owned()
            }
            _ => String::new(),
        };
        let at = origins.locate_flag(&flag);
        if at.is_empty() {
            error
        } else {
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Cli::command().error(
                error.kind(),
                format!("{at}{}", first.trim_start_matches("error: ")),
            )
        }
    })?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    match &mut cli.command {
        Some(Command::Serve(args)) => args.origins = origins,
        None => cli.serve.origins = origins,
        Some(_) => {}
    }
    Ok(cli)
}

/// Inserts the settings of the server's configuration file (`--config FILE`, else
/// `VERDICT_CONFIG`) into `args`, after `serve` (or the program name when `verdict` alone
/// serves); other subcommands take no configuration file.
fn with_config_file(
    args: &mut Vec<std::ffi::OsString>,
) -> Result<crate::config::file::ConfigOrigins, String> {
    use clap::Args as _;
    let serves = match args.get(1).and_then(|a| a.to_str()) {
        Some("serve") => Some(2),
        Some(first) if first.starts_with('-') => Some(1),
        None => Some(1),
        Some(_) => None,
    };
    let Some(at) = serves else {
        return Ok(crate::config::file::ConfigOrigins::default());
    };
    let path = args.iter().enumerate().find_map(|(i, arg)| {
        let arg = arg.to_str()?;
        match arg.strip_prefix("--config") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(std::ffi::OsString::from),
            None => None,
        }
    });
    let Some(path) = path.or_else(|| std::env::var_os("VERDICT_CONFIG")) else {
        return Ok(crate::config::file::ConfigOrigins::default());
    };
    let command = ServeArgs::augment_args(clap::Command::new("verdict"));
    let from_file =
        crate::config::file::read(std::path::Path::new(&path), &command, args, &|name| {
            std::env::var_os(name).is_some()
        })?;
    let at = at.min(args.len());
    args.splice(at..at, from_file.arguments);
    Ok(from_file.origins)
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
        Some(Command::Fmt(args)) => fmt::run(args),
        Some(Command::Migrate(args)) => migrate::run(args),
        Some(Command::Relationships(args)) => relationships::run(args),
        Some(Command::Relation(args)) => relation::run(args),
    };
    ExitCode::from(code)
}
