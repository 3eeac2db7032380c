//! `verdict test --watch`: run, then run again after every change to the bundle or its
//! decision tables, until interrupted (Ctrl-C). Changes are noticed by the serving reload's
//! watch and debounced the same way ([`crate::reload::on_changes`]), with its default timings.

use std::time::Duration;

use verdict_core::LoadOptions;

use super::{EXIT_FAILURE, TestArgs, out, run_once};
use crate::config::{DEFAULT_POLL_INTERVAL, DEFAULT_RELOAD_DEBOUNCE, DEFAULT_RELOAD_MAX_DELAY};
use crate::duration::parse_duration;
use crate::reload::{WatchSettings, on_changes};

/// Runs the cases, then again on every change; returns the last run's exit code.
pub(super) fn run(args: &TestArgs, options: &LoadOptions) -> u8 {
    let default = |text: &str, fallback: Duration| parse_duration(text).unwrap_or(fallback);
    let settings = WatchSettings {
        watch: true,
        poll_interval: Some(default(DEFAULT_POLL_INTERVAL, Duration::from_secs(2))),
        debounce: default(DEFAULT_RELOAD_DEBOUNCE, Duration::from_millis(200)),
        max_delay: default(DEFAULT_RELOAD_MAX_DELAY, Duration::from_secs(1)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the watch: {error}");
            return EXIT_FAILURE;
        }
    };
    let mut code = run_once(args, options);
    runtime.block_on(on_changes(
        &args.dir,
        settings,
        || {
            out!(
                "watching {} for changes (Ctrl-C to stop)",
                args.dir.display()
            )
        },
        || {
            out!("\n--- change detected, running again");
            code = run_once(args, options);
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ));
    code
}
