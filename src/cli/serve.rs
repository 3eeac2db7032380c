//! `verdict serve`, in the order of a script: tracing, config, first snapshot, bind, serve
//! until a signal, drain.

use std::sync::Arc;

use super::{EXIT_FAILURE, EXIT_INVALID_BUNDLE, EXIT_OK, EXIT_USAGE};
use crate::config::ServeArgs;
use crate::reload::{ReloadOutcome, Reloader};
use crate::serving::SnapshotHandle;
use crate::{server, telemetry};

pub(super) fn run(args: ServeArgs) -> u8 {
    // 0. The async runtime first: the OpenTelemetry exporter's channel lives on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return EXIT_FAILURE;
        }
    };
    // 1. Tracing. The filter is read here, in CLI glue: VERDICT_LOG, else RUST_LOG.
    let filter = std::env::var("VERDICT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let otlp = match args.telemetry.otlp() {
        Ok(otlp) => otlp,
        Err(error) => {
            eprintln!("error: {}{error}", args.origins.locate_flag(&error.flag()));
            return EXIT_USAGE;
        }
    };
    // Held to the end, and dropped before the runtime: dropping it flushes the queued log
    // lines and exports the last spans.
    let mut telemetry_guard = {
        let _entered = runtime.enter();
        match telemetry::init_tracing(args.telemetry.log_format, filter.as_deref(), otlp.as_ref()) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_USAGE;
            }
        }
    };

    // 2. Config, before anything is bound.
    let origins = args.origins.clone();
    let config = match args.validate() {
        Ok(config) => config,
        Err(error) => {
            let at = origins.locate_flag(&error.flag());
            tracing::error!(%error, location = %at.trim_end_matches([':', ' ']), "invalid configuration");
            eprintln!("error: {at}{error}");
            return EXIT_USAGE;
        }
    };
    tracing::info!(
        policies = %config.policies.display(),
        grpc_addr = %config.listener.grpc_addr,
        max_relation_depth = config.limits.max_relation_depth,
        max_batch = config.limits.max_batch,
        max_message_bytes = config.limits.max_message_bytes,
        max_json_depth = config.limits.max_json_depth,
        max_bundle_file_bytes = config.bundle.max_file_bytes,
        max_bundle_bytes = config.bundle.max_bundle_bytes,
        allow_empty_bundle = config.bundle.allow_empty,
        max_reload_drop = config.reload.max_drop.unwrap_or(1.0),
        "starting verdict {}",
        env!("CARGO_PKG_VERSION")
    );

    // The decision log's writer thread, off the request path.
    if let Err(error) = telemetry::decision_log::install(
        Box::new(std::io::stderr()),
        config.telemetry.log_format,
        config.decision_log.queue,
    ) {
        eprintln!("error: cannot start the decision log writer: {error}");
        return EXIT_FAILURE;
    }

    // Metrics: the global recorder, before anything records.
    let metrics = if config.telemetry.metrics_addr.is_some() {
        match telemetry::metrics::install() {
            Ok(handle) => Some(handle),
            Err(error) => {
                eprintln!("error: cannot set up metrics: {error}");
                return EXIT_FAILURE;
            }
        }
    } else {
        None
    };

    if let Some(files) = &config.tls.files {
        if let Err(error) = server::load_server_config(files) {
            tracing::error!(%error, "invalid TLS configuration");
            eprintln!("error: TLS: {error}");
            return EXIT_USAGE;
        }
        tracing::info!(
            cert = %files.cert.display(),
            client_certificates = files.client_ca.is_some(),
            "TLS on the gRPC port"
        );
    } else if !config.listener.grpc_addr.ip().is_loopback() {
        tracing::warn!(
            addr = %config.listener.grpc_addr,
            "serving plaintext gRPC on a non-loopback address: set --tls-cert and --tls-key, or terminate TLS in front of Verdict"
        );
    }
    let client_certificates = config
        .tls
        .files
        .as_ref()
        .is_some_and(|files| files.client_ca.is_some());
    let api_keys = &config.caller_auth.api_keys;
    if !config.listener.grpc_addr.ip().is_loopback()
        && !api_keys.is_enabled()
        && !client_certificates
    {
        tracing::warn!(
            "no caller authentication (no API keys, no client certificates): any client that reaches the port can ask for decisions"
        );
        if config.reload.enable_rpc {
            tracing::warn!(
                "the Reload RPC is enabled without caller authentication: any client that reaches the port can call it"
            );
        }
    }
    if api_keys.is_enabled() {
        tracing::info!(keys = api_keys.len(), "API keys required");
    }
    let tokens = &config.identity.verifier;
    if tokens.is_enabled() {
        let issuers: Vec<&str> = tokens.issuers().collect();
        tracing::info!(issuers = %issuers.join(","), "bearer tokens accepted from these issuers");
    }
    if let Some(otlp) = &config.telemetry.otlp {
        tracing::info!(
            endpoint = %otlp.endpoint,
            sample_ratio = otlp.sample_ratio,
            "exporting a span per request by OTLP"
        );
    }

    // 3. The first snapshot; an invalid bundle stops here with every error, unless asked to
    //    start without one (UNAVAILABLE and NOT_SERVING until the watch finds a valid bundle).
    // With a relationship store, the handle joins each bundle snapshot with the store's
    // tuples; nothing is served until the store's first state is in.
    let snapshots = Arc::new(match &config.store {
        Some(store) => {
            tracing::info!(
                store = %crate::config::StoreTarget(&store.connection),
                migrate = store.migrate,
                "relationship store configured"
            );
            SnapshotHandle::with_relationship_store()
        }
        None => SnapshotHandle::empty(),
    });
    let reloader = Reloader::new(
        &config.policies,
        config.load_options(),
        config.reload.max_drop,
        Arc::clone(&snapshots),
    );
    if let ReloadOutcome::Failed { errors, .. } = reloader.load_initial() {
        if config.start_without_bundle {
            tracing::warn!(
                policies = %config.policies.display(),
                "starting without a valid bundle: UNAVAILABLE until it is fixed"
            );
        } else {
            eprintln!(
                "error: the bundle {} is invalid, not serving:\n{errors}",
                config.policies.display()
            );
            return EXIT_INVALID_BUNDLE;
        }
    }

    let code = runtime.block_on(async {
        // 3b. The relationship store's schema, when asked to migrate at start.
        if let Some(store) = config.store.as_ref().filter(|store| store.migrate) {
            match crate::store::migrate(&store.connection).await {
                Ok(report) => tracing::info!(
                    applied = %report
                        .applied
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    version = report.version,
                    "relationship store schema up to date"
                ),
                Err(error) => {
                    tracing::error!(%error, "relationship store migrations failed");
                    eprintln!("error: {error}");
                    return EXIT_FAILURE;
                }
            }
        }
        // 4. Bind, and say where.
        let Some(grpc) = bind(config.listener.grpc_addr, "grpc").await else {
            return EXIT_FAILURE;
        };
        let http = match config.telemetry.metrics_addr {
            Some(addr) => match bind(addr, "metrics").await {
                Some(listener) => Some(listener),
                None => return EXIT_FAILURE,
            },
            None => None,
        };
        let api = match config.http.addr {
            Some(addr) => match bind(addr, "http api").await {
                Some(listener) => Some(listener),
                None => return EXIT_FAILURE,
            },
            None => None,
        };
        let served = server::Served {
            snapshots,
            reloader,
            metrics,
        };
        let listeners = server::Listeners { grpc, http, api };
        // 5. Serve until SIGINT or SIGTERM, then drain.
        match server::run(&config, served, listeners, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                EXIT_OK
            }
            Err(error) => {
                tracing::error!(%error, "server failed");
                EXIT_FAILURE
            }
        }
    });
    // The last spans, while the exporter's channel still has its runtime.
    telemetry_guard.finish_traces();
    // Dropping the runtime would wait for every blocking task, and a bundle rebuild in
    // progress (seconds for a large bundle) would hold the exit past the shutdown timing the
    // chart relies on; the rebuild's result is not needed any more.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    // Every request has been answered: write the decision records still queued.
    if telemetry::decision_log::close(DECISION_LOG_FLUSH_TIMEOUT)
        == Some(telemetry::decision_log::CloseOutcome::TimedOut)
    {
        tracing::warn!(
            timeout = %humantime::format_duration(DECISION_LOG_FLUSH_TIMEOUT),
            "the decision log could not be flushed in time (its output is blocked); queued records are lost"
        );
    }
    code
}

/// How long shutdown waits for the decision log's queued records to be written: long enough
/// for a full queue to drain into a live output, short enough that a blocked one (a log
/// collector that stopped reading) does not hold the exit.
const DECISION_LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds `addr` and logs the bound address (`<what> listening addr=…`).
async fn bind(addr: std::net::SocketAddr, what: &str) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            match listener.local_addr() {
                Ok(bound) => tracing::info!(addr = %bound, "{what} listening"),
                Err(error) => tracing::warn!(%error, "cannot read the bound address"),
            }
            Some(listener)
        }
        Err(error) => {
            tracing::error!(%addr, %error, "cannot bind the {what} listener");
            eprintln!("error: cannot listen on {addr} ({what}): {error}");
            None
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
