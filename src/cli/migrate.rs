//! `verdict migrate`: brings the relationship store's schema up to date, then exits.
//!
//! Safe to run from several places at once (a Helm pre-install Job and replicas started with
//! `--migrate`): the migrations run under an advisory lock, each once.

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, out};
use crate::config::{StoreArgs, StoreTarget};

/// Arguments of `verdict migrate`: the store's connection settings.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The relationship store.
    #[command(flatten)]
    pub store: StoreArgs,
}

pub(super) fn run(args: MigrateArgs) -> u8 {
    let config = match args.store.validate() {
        Ok(Some(config)) => config,
        Ok(None) => {
            eprintln!(
                "error: no relationship store: set --store-url (VERDICT_STORE_URL) or \
                 --store-url-file (VERDICT_STORE_URL_FILE)"
            );
            return EXIT_USAGE;
        }
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return EXIT_FAILURE;
        }
    };
    let target = StoreTarget(&config.connection).to_string();
    match runtime.block_on(crate::store::migrate(&config.connection)) {
        Ok(report) if report.applied.is_empty() => {
            out!("{target}: schema up to date (version {})", report.version);
            EXIT_OK
        }
        Ok(report) => {
            out!(
                "{target}: applied migrations {:?}; schema at version {}",
                report.applied,
                report.version
            );
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {target}: {error}");
            EXIT_FAILURE
        }
    }
}
