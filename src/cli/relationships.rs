//! `verdict relationships import FILE` and `verdict relationships export`: bulk loads into and
//! out of the relationship store, in the syntax of a tuple file.
//!
//! Import validates every line against the bundle first (as a write through the API is:
//! schema, relation model, not a tuple the bundle's files define) and writes nothing when a
//! line is bad, listing each with `file:line`. Then it writes chunks of [`IMPORT_CHUNK`]
//! lines with PostgreSQL's `COPY`, each chunk one transaction and one revision, tuples that
//! already exist left as they are; a run stopped half-way is resumed by running it again.
//! Export prints every store tuple, one per line, in key order.

use std::io::Write as _;
use std::path::PathBuf;

use verdict_core::relations::parse_tuple_line;
use verdict_core::store::ConsistencyToken;
use verdict_core::{DEFAULT_MAX_RELATION_DEPTH, Snapshot};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, out};
use crate::config::{BundleArgs, StoreArgs, StoreConfig};
use crate::store::{ReadFilter, Store, TupleRow};

/// At most this many bad lines are listed; the rest are counted.
const MAX_LISTED_ERRORS: usize = 50;

/// Lines written per revision by `import`: large enough that COPY's per-transaction cost
/// vanishes, small enough that a replica following the change log holds a bounded round.
const IMPORT_CHUNK: usize = 50_000;

/// Tuples read per page by `export`.
const EXPORT_PAGE: usize = 10_000;

/// Arguments of `verdict relationships`.
#[derive(Debug, clap::Args)]
pub struct RelationshipsArgs {
    #[command(subcommand)]
    command: RelationshipsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RelationshipsCommand {
    /// Write every tuple of a tuple file to the store (validated against the bundle first).
    Import(ImportArgs),
    /// Print every tuple of the store, one per line.
    Export(ExportArgs),
}

/// Arguments of `verdict relationships import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The tuple file (`-` for stdin).
    file: PathBuf,
    /// The bundle the tuples must be valid for.
    #[arg(long, env = "VERDICT_POLICIES", default_value = crate::config::DEFAULT_POLICIES)]
    policies: PathBuf,
    /// What a bundle may be, as `serve` would accept it.
    #[command(flatten)]
    bundle: BundleArgs,
    /// The relationship store.
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `verdict relationships export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The relationship store.
    #[command(flatten)]
    store: StoreArgs,
}

pub(super) fn run(args: RelationshipsArgs) -> u8 {
    match args.command {
        RelationshipsCommand::Import(args) => import(args),
        RelationshipsCommand::Export(args) => export(args),
    }
}

fn store_config(args: StoreArgs) -> Result<StoreConfig, u8> {
    match args.validate() {
        Ok(Some(config)) => Ok(config),
        Ok(None) => {
            eprintln!(
                "error: no relationship store: set --store-url (VERDICT_STORE_URL) or \
                 --store-url-file (VERDICT_STORE_URL_FILE)"
            );
            Err(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Err(EXIT_USAGE)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the async runtime: {error}");
            EXIT_FAILURE
        })
}

fn import(args: ImportArgs) -> u8 {
    let config = match store_config(args.store) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let options = match args.bundle.validate() {
        Ok(bundle) => bundle.load_options(DEFAULT_MAX_RELATION_DEPTH),
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_USAGE;
        }
    };
    let snapshot = match Snapshot::load(&args.policies, &options) {
        Ok(snapshot) => snapshot,
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!("error: the bundle {} is invalid", args.policies.display());
            return EXIT_FAILURE;
        }
    };
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(&args.file)
    };
    let text = match text {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "error: cannot read {}: {}",
                args.file.display(),
                verdict_core::io_reason(&error)
            );
            return EXIT_FAILURE;
        }
    };

    // Every line first: nothing is written unless all are valid. The rows are built again,
    // a chunk at a time, when they are written: 10^7 of them at once would not fit well.
    let mut valid = 0usize;
    let mut errors = 0usize;
    for (index, line) in text.lines().enumerate() {
        let at = format!("{}:{}", args.file.display(), index + 1);
        let problem = match parse_tuple_line(line) {
            Ok(None) => continue,
            Err(error) => Some(format!("{at}:{}: {}", error.column, error.reason)),
            Ok(Some(tuple)) => match snapshot.validate_store_tuple(&tuple) {
                Err(reason) => Some(format!("{at}: {reason}")),
                Ok(()) if snapshot.bundle_defines(&tuple) => Some(format!(
                    "{at}: `{tuple}` is defined by the bundle's tuple files; it stays there"
                )),
                Ok(()) => {
                    valid += 1;
                    None
                }
            },
        };
        if let Some(problem) = problem {
            errors += 1;
            if errors <= MAX_LISTED_ERRORS {
                eprintln!("{problem}");
            }
        }
    }
    if errors > 0 {
        if errors > MAX_LISTED_ERRORS {
            eprintln!("… and {} more", errors - MAX_LISTED_ERRORS);
        }
        eprintln!(
            "error: {}: {errors} invalid tuple(s); nothing was written",
            args.file.display()
        );
        return EXIT_FAILURE;
    }

    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let lines: Vec<&str> = text.lines().collect();
    let result = runtime.block_on(async {
        let store = Store::new(config)?;
        let mut last = None;
        let mut new = 0;
        for chunk in lines.chunks(IMPORT_CHUNK) {
            // Validated above: every line here is a tuple or blank.
            let rows: Vec<TupleRow> = chunk
                .iter()
                .filter_map(|line| parse_tuple_line(line).ok().flatten())
                .map(|tuple| TupleRow::of(&tuple))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let (revision, inserted) = store.import(&rows).await?;
            last = Some(revision);
            new += inserted;
        }
        Ok::<_, crate::store::StoreError>((last, new))
    });
    match result {
        Ok((last, new)) => {
            out!(
                "{}: {valid} tuple(s) imported, {new} of them new{}",
                args.file.display(),
                last.map(|revision| format!("; written_at {}", ConsistencyToken::new(revision)))
                    .unwrap_or_default()
            );
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_FAILURE
        }
    }
}

fn export(args: ExportArgs) -> u8 {
    let config = match store_config(args.store) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let store = Store::new(config)?;
        let mut after = String::new();
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        // Bounded: each page starts strictly after the previous one's last key.
        loop {
            let page = store
                .read(&ReadFilter::default(), &after, EXPORT_PAGE)
                .await?;
            for tuple in &page.tuples {
                if writeln!(out, "{tuple}").is_err() {
                    // A closed pipe (`| head`): stop quietly.
                    return Ok(());
                }
            }
            match page.tuples.last() {
                Some(last) if page.more => after.clone_from(last),
                _ => break,
            }
        }
        let _ = out.flush();
        Ok::<_, crate::store::StoreError>(())
    });
    match result {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_FAILURE
        }
    }
}
