//! Wiring: the gRPC listener with the Authorization services (`verdict.v1` and Envoy's
//! `envoy.service.auth.v3`), health and reflection, the HTTP API listener (AuthZEN and
//! `verdict.v1` over HTTP/JSON, `http_api.rs`), the HTTP port (metrics and probes), the
//! background tasks (watch loop, SIGHUP, gauges), and shutdown.
//!
//! Owns: which services are served, how the transport is configured, and which background tasks
//! run. Does not own: request handling (`api`), loading (`bundle`) or reloading (`reload`).

mod accept;
mod admission;
mod auth;
mod grpc_metrics;
mod http;
mod http_api;
mod limits;
mod observe;
mod tls;
mod trace;

pub use tls::load_server_config;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use self::observe::Observe;
use crate::api::ext_authz::{
    self, Authenticator, EXT_AUTHZ_SERVICE_NAME, ExtAuthzServer, ExtAuthzService, ExtAuthzSettings,
};
use crate::api::proto::authorization_server::AuthorizationServer;
use crate::api::proto::relationships_server::RelationshipsServer;
use crate::api::{AuthorizationService, RelationshipsService, ReloadAnswer, ReloadControl, proto};
use crate::config::ValidConfig;
use crate::reload::{Cause, ReloadOutcome, Reloader, WatchSettings};
use crate::serving::SnapshotHandle;
use crate::telemetry::metrics::{self as telemetry_metrics, SnapshotGauges};

/// The service name health checks use for the Authorization service.
pub const AUTHORIZATION_SERVICE_NAME: &str = "verdict.v1.Authorization";

/// The name of the relationship store's service, served only with a store.
pub const RELATIONSHIPS_SERVICE_NAME: &str = "verdict.v1.Relationships";

/// The services served (besides reflection), for reflection to list.
fn served_service_names(with_store: bool) -> Vec<&'static str> {
    let mut names = vec![
        AUTHORIZATION_SERVICE_NAME,
        EXT_AUTHZ_SERVICE_NAME,
        "grpc.health.v1.Health",
    ];
    if with_store {
        names.push(RELATIONSHIPS_SERVICE_NAME);
    }
    names
}

/// The services whose health follows the snapshot: SERVING while one is loaded.
const DECISION_SERVICES: [&str; 3] = ["", AUTHORIZATION_SERVICE_NAME, EXT_AUTHZ_SERVICE_NAME];

/// The `Reload` RPC over the reloader.
#[derive(Debug)]
struct ReloadRpc(Arc<Reloader>);

#[tonic::async_trait]
impl ReloadControl for ReloadRpc {
    async fn reload(&self) -> ReloadAnswer {
        match self.0.reload(Cause::Rpc).await {
            ReloadOutcome::Updated { version } => ReloadAnswer {
                snapshot_version: Some(version),
                changed: true,
                errors: Vec::new(),
                failure: None,
            },
            ReloadOutcome::Unchanged { version } => ReloadAnswer {
                snapshot_version: Some(version),
                changed: false,
                errors: Vec::new(),
                failure: None,
            },
            ReloadOutcome::Failed {
                errors,
                reason,
                serving,
            } => ReloadAnswer {
                snapshot_version: serving,
                changed: false,
                errors: errors.errors().iter().map(ToString::to_string).collect(),
                failure: Some(reason),
            },
        }
    }
}

/// What the server serves: the snapshots, the reloader that rebuilds them, and the metrics
/// recorder's handle (when metrics are on).
#[derive(Debug)]
pub struct Served {
    /// The serving state.
    pub snapshots: Arc<SnapshotHandle>,
    /// Rebuilds `snapshots`.
    pub reloader: Arc<Reloader>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

/// Bound listeners: gRPC, and optionally the HTTP port (`/metrics`, `/healthz`, `/readyz`) and
/// the HTTP API (`--http-addr`).
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// The HTTP listener.
    pub http: Option<TcpListener>,
    /// The HTTP API listener.
    pub api: Option<TcpListener>,
}

/// How often gauges (snapshot age, counts, version) are refreshed.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

/// How often the recorder's upkeep drains the histograms' recent samples. Each sample is
/// queued when recorded and summed into buckets here: every second, on a blocking thread, so
/// no async worker stalls behind it. (Every 5 s on a worker, the drain of some 400,000
/// samples at full load held requests for tens of milliseconds: see BENCHMARKS.md.)
const METRICS_UPKEEP: Duration = Duration::from_secs(1);

/// Serves until `shutdown` completes, then drains in-flight requests.
///
/// The reloader's watch loop (per the configuration) and SIGHUP rebuild the snapshot, and so
/// does the `Reload` RPC when enabled. Health reports SERVING (overall, for
/// `verdict.v1.Authorization` and for `envoy.service.auth.v3.Authorization`) only while a
/// snapshot is loaded; on shutdown it reports NOT_SERVING, and `/readyz` fails, before the
/// listener closes.
pub async fn run(
    config: &ValidConfig,
    served: Served,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let authenticator = Arc::new(config.identity.verifier.clone());
    run_with_authenticator(config, served, listeners, authenticator, shutdown).await
}

/// [`run`], with the ext_authz front-end verifying bearer tokens with `authenticator` (tests
/// pass a fake one).
pub async fn run_with_authenticator(
    config: &ValidConfig,
    served: Served,
    listeners: Listeners,
    authenticator: Arc<dyn Authenticator>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let Served {
        snapshots,
        reloader,
        metrics,
    } = served;
    let background = CancellationToken::new();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let tls = match &config.tls.files {
        Some(files) => {
            let state = tls::TlsState::new(files.clone()).map_err(anyhow::Error::msg)?;
            state.spawn_reload(background.clone());
            Some(state)
        }
        None => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    let status = if snapshots.load().is_some() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in DECISION_SERVICES {
        health.set_service_status(service, status).await;
    }
    spawn_health_follower(health.clone(), reloader.subscribe(), background.clone());
    spawn_gauge_refresh(
        Arc::clone(&snapshots),
        reloader.subscribe(),
        background.clone(),
    );
    if let Some(handle) = &metrics {
        spawn_metrics_upkeep(handle.clone(), background.clone());
    }
    // The relationship store: follow it into the snapshots from now on.
    let store = match &config.store {
        None => None,
        Some(store_config) => {
            anyhow::ensure!(
                snapshots.has_store(),
                "a relationship store is configured but the snapshot handle does not join one \
                 (create it with SnapshotHandle::with_relationship_store)"
            );
            let store = crate::store::Store::new(store_config.clone())
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            tokio::spawn(crate::store::follow(
                Arc::clone(&store),
                Arc::clone(&snapshots),
                background.clone(),
            ));
            spawn_store_staleness_gauge(Arc::clone(&snapshots), background.clone());
            spawn_store_health(health.clone(), Arc::clone(&snapshots), background.clone());
            Some(store)
        }
    };
    if config.reload.watch || config.reload.poll_interval.is_some() {
        let settings = WatchSettings {
            watch: config.reload.watch,
            poll_interval: config.reload.poll_interval,
            debounce: config.reload.debounce,
            max_delay: config.reload.max_delay,
        };
        reloader.spawn_watch(settings, background.clone());
    }
    spawn_sighup_reload(Arc::clone(&reloader), background.clone());

    let caps = accept::fit_to_open_file_limit(
        accept::ConnectionCaps {
            grpc: config.listener.max_connections,
            http: accept::HTTP_MAX_CONNECTIONS,
            api: if listeners.api.is_some() {
                config.listener.max_connections
            } else {
                0
            },
        },
        accept::open_file_limit(),
    );
    if caps.grpc < config.listener.max_connections {
        tracing::warn!(
            max_connections = caps.grpc,
            http_max_connections = caps.http,
            http_api_max_connections = caps.api,
            "the open-file limit leaves room for fewer connections than --max-connections; raise it (ulimit -n) to allow more"
        );
    }
    let http_cancel = CancellationToken::new();
    let http_task = listeners.http.map(|listener| {
        let state = http::HttpState {
            snapshots: Arc::clone(&snapshots),
            metrics,
            shutting_down: Arc::clone(&shutting_down),
            store: store.clone(),
        };
        let acceptor = accept::Acceptor::new(listener, caps.http, "http");
        tokio::spawn(http::serve(acceptor, state, http_cancel.clone()))
    });

    // Reflection lists exactly the services served: `verdict.v1.Relationships` only with a
    // store (its descriptors are in the same file set as `verdict.v1.Authorization`).
    let reflection = |reflection_name: &str| {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_file_descriptor_set(ext_authz::file_descriptor_set());
        for name in served_service_names(store.is_some()) {
            builder = builder.with_service_name(name);
        }
        builder.with_service_name(reflection_name)
    };
    let reflection_v1 = reflection("grpc.reflection.v1.ServerReflection").build_v1()?;
    // grpcurl and grpcio's reflection clients still speak v1alpha.
    let reflection_v1alpha =
        reflection("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;

    let ext_authz_service = ExtAuthzService::new(
        Arc::clone(&snapshots),
        config.limits.request_limits(),
        authenticator,
        ExtAuthzSettings {
            peer_principal_type: config.ext_authz.peer_principal_type.clone(),
            max_body_bytes: config.ext_authz.max_body_bytes,
            deny_reasons: config.ext_authz.deny_reasons,
        },
    )
    .with_decision_log(config.decision_log);
    let relationships = match (&store, &config.store) {
        (Some(store), Some(store_config)) => Some(
            RelationshipsServer::new(RelationshipsService::new(
                Arc::clone(&snapshots),
                Arc::clone(store),
                background.clone(),
            ))
            .max_decoding_message_size(config.limits.max_message_bytes)
            .max_encoding_message_size(
                store_config
                    .max_batch
                    .saturating_mul(16 * 1024)
                    .max(4 << 20),
            ),
        ),
        _ => None,
    };
    let mut service =
        AuthorizationService::new(Arc::clone(&snapshots), config.limits.request_limits())
            .with_decision_log(config.decision_log)
            .with_tokens(config.identity.verifier.clone());
    if let (Some(store), Some(store_config)) = (&store, &config.store) {
        service = service.with_store(Arc::clone(store), store_config.consistency_timeout);
    }
    if config.reload.enable_rpc {
        service = service.with_reload(Arc::new(ReloadRpc(Arc::clone(&reloader))));
    }
    let http_verdict = service.clone();
    let authorization = admission::Admission::new(
        AuthorizationServer::new(service)
            .max_decoding_message_size(config.limits.max_message_bytes),
        admission::AdmissionSettings {
            max_concurrent_requests: config.limits.max_concurrent_requests,
            max_per_connection: config.limits.max_concurrent_requests_per_connection,
            body_timeout: config.limits.request_body_timeout,
            max_message_bytes: config.limits.max_message_bytes,
        },
        Arc::new(config.limits.request_limits()),
    );
    // Both front-ends take their request slots from the same pool.
    let ext_authz = authorization.sharing(
        ExtAuthzServer::new(ext_authz_service)
            .max_decoding_message_size(config.limits.max_message_bytes),
    );

    let shutdown_delay = config.shutdown.delay;
    let shutdown_health = health.clone();
    let draining = Arc::new(tokio::sync::Notify::new());
    let draining_started = Arc::clone(&draining);
    let identities = config
        .tls
        .files
        .as_ref()
        .filter(|files| files.client_ca.is_some())
        .map(|_| auth::IdentityPolicy {
            allowed: config.tls.allowed_clients.clone(),
            admin: config.tls.admin_clients.clone(),
        });
    let authenticator = auth::Authenticator {
        keys: Arc::clone(&config.caller_auth.api_keys),
        identities,
        open_health: config.caller_auth.open_health,
        open_reflection: config.caller_auth.open_reflection,
    };
    // The HTTP API: the same keys, certificates, request slots and limits as the gRPC port.
    let api_cancel = CancellationToken::new();
    let api_task = listeners.api.map(|listener| {
        let api = crate::api::http::HttpApi::new(
            Arc::clone(&snapshots),
            config.limits.request_limits(),
            config.decision_log,
            &config.http.settings,
            http_verdict,
            tls.is_some(),
        );
        let gate = http_api::Gate {
            router: api.router(),
            authenticator: authenticator.clone(),
            slots: authorization.slots(),
            transport: http_api::ApiTransport {
                max_body_bytes: config.http.settings.max_body_bytes,
                body_timeout: config.limits.request_body_timeout,
                request_timeout: config.limits.request_timeout,
                max_header_list_bytes: config.listener.max_header_list_bytes,
                max_concurrent_streams: config.listener.max_concurrent_streams,
                keepalive_interval: config.listener.http2_keepalive_interval,
                keepalive_timeout: config.listener.http2_keepalive_timeout,
                idle_timeout: config.listener.idle_timeout,
            },
        };
        let acceptor = accept::Acceptor::new(listener, caps.api, "http_api");
        tokio::spawn(http_api::serve(
            acceptor,
            tls.clone(),
            gate,
            api_cancel.clone(),
            config.shutdown.grace,
        ))
    });
    let api_stop = api_cancel.clone();
    let request_timeout = config.limits.request_timeout;
    let mut builder = tonic::transport::Server::builder();
    if let Some(age) = config.listener.max_connection_age {
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(config.shutdown.grace);
    }
    let router = builder
        .max_concurrent_streams(config.listener.max_concurrent_streams)
        .http2_max_header_list_size(config.listener.max_header_list_bytes)
        .http2_keepalive_interval(config.listener.http2_keepalive_interval)
        .http2_keepalive_timeout(Some(config.listener.http2_keepalive_timeout))
        // Outermost first: count the request as in progress on its connection, and time it
        // (both until its response body ends); trace it (OpenTelemetry, when on); authenticate, answering refusals; turn tonic's
        // decoding errors into plain answers; bound the time to an answer.
        .layer(
            tower::ServiceBuilder::new()
                .layer_fn(|inner| Observe::new(inner, limits::track_request))
                .layer_fn(|inner| Observe::new(inner, grpc_metrics::GrpcCall::start))
                .layer_fn(trace::Traced::new)
                .map_result(auth::answer_refusal)
                .filter(authenticator)
                .map_response(limits::rewrite_decoding_errors)
                .map_future(move |response| limits::within_deadline(request_timeout, response)),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(authorization)
        .add_service(ext_authz)
        .add_optional_service(relationships);
    let stop_accepting = async move {
        shutdown.await;
        shutting_down.store(true, Ordering::Relaxed);
        background.cancel();
        tracing::info!("shutting down: health is NOT_SERVING, draining in-flight requests");
        for service in DECISION_SERVICES {
            shutdown_health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        // Keep answering while load balancers take the pod out of rotation.
        if !shutdown_delay.is_zero() {
            tracing::info!(
                delay = %humantime::format_duration(shutdown_delay),
                "still answering until the listener closes"
            );
            tokio::time::sleep(shutdown_delay).await;
        }
        draining_started.notify_one();
        api_stop.cancel();
    };
    let idle = config.listener.idle_timeout;
    let acceptor = accept::Acceptor::new(listeners.grpc, caps.grpc, "grpc");
    // The TLS accept loop ends when the server drops its incoming stream, or at the very end.
    let accept_cancel = CancellationToken::new();
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                tls.incoming(acceptor, idle, accept_cancel.clone()),
                stop_accepting,
            )),
            None => Box::pin(router.serve_with_incoming_shutdown(
                tokio_stream::StreamExt::map(acceptor, move |accepted| {
                    accepted.map(|stream| {
                        let _ = stream.get_ref().set_nodelay(true);
                        limits::IdleTimeout::new(stream, idle)
                    })
                }),
                stop_accepting,
            )),
        };
    // Draining waits for every connection to finish its streams; a client holding a stream
    // open (a health Watch) must not hold the process past the grace period.
    let grace = config.shutdown.grace;
    let served = tokio::select! {
        served = serve => served,
        () = async {
            draining.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "shutdown grace period over; closing the remaining connections"
            );
            Ok(())
        }
    };
    accept_cancel.cancel();
    api_cancel.cancel();
    if let Some(task) = api_task
        && let Err(error) = task.await
    {
        tracing::warn!(%error, "http api task failed");
    }
    http_cancel.cancel();
    if let Some(task) = http_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "http port failed"),
            Err(error) => tracing::warn!(%error, "http port task failed"),
        }
    }
    served?;
    Ok(())
}

/// Refreshes the relationship store's staleness gauge (seconds since a revision was applied)
/// until `cancel` fires.
fn spawn_store_staleness_gauge(snapshots: Arc<SnapshotHandle>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(GAUGE_REFRESH);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {
                    if let Some(since) = snapshots.since_store_applied() {
                        telemetry_metrics::set_store_staleness(since);
                    }
                }
            }
        }
    });
}

/// Runs the recorder's upkeep every [`METRICS_UPKEEP`] on a blocking thread.
fn spawn_metrics_upkeep(handle: PrometheusHandle, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let handle = handle.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || handle.run_upkeep()).await {
                tracing::warn!(%error, "metrics upkeep failed");
            }
        }
    });
}

/// Keeps the snapshot gauges current: at once (so the first scrape after startup has them),
/// right after each swap, and every few seconds (so the snapshot age moves and an old
/// version's series expires).
fn spawn_gauge_refresh(
    snapshots: Arc<SnapshotHandle>,
    mut serving: tokio::sync::watch::Receiver<Option<String>>,
    cancel: CancellationToken,
) {
    let mut last_version = refresh_gauges(&snapshots, None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_REFRESH);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
                changed = serving.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            last_version = refresh_gauges(&snapshots, last_version.as_deref());
        }
    });
}

/// Records the serving snapshot's gauges, retiring the previous version's info series when
/// the version changed; returns the version now serving.
fn refresh_gauges(snapshots: &SnapshotHandle, previous: Option<&str>) -> Option<String> {
    let snapshot = snapshots.load();
    let version = snapshot.as_ref().map(|s| s.snapshot.version().to_owned());
    if let Some(previous) = previous
        && version.as_deref() != Some(previous)
    {
        telemetry_metrics::retire_snapshot_version(previous);
    }
    let gauges = snapshot.as_deref().map(|served| SnapshotGauges {
        version: served.snapshot.version(),
        loaded_at: served.snapshot.loaded_at(),
        policies: served.snapshot.policy_count(),
        tuples: served.snapshot.tuple_count(),
        entities: served.snapshot.entity_count(),
    });
    telemetry_metrics::record_snapshot(gauges.as_ref());
    version
}

/// Reports SERVING as soon as a first snapshot is swapped in (after a start without a valid
/// bundle). A snapshot is never removed, so health never goes back because of a reload.
fn spawn_health_follower(
    health: tonic_health::server::HealthReporter,
    mut serving: tokio::sync::watch::Receiver<Option<String>>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = serving.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            if serving.borrow_and_update().is_some() {
                for service in DECISION_SERVICES {
                    health
                        .set_service_status(service, ServingStatus::Serving)
                        .await;
                }
            }
        }
    });
}

/// With a relationship store, nothing is served until the store's first state is applied,
/// which no bundle reload announces: reports SERVING once it is.
fn spawn_store_health(
    health: tonic_health::server::HealthReporter,
    snapshots: Arc<SnapshotHandle>,
    cancel: CancellationToken,
) {
    let Some(mut applied) = snapshots.subscribe_revision() else {
        return;
    };
    tokio::spawn(async move {
        while snapshots.load().is_none() {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
        for service in DECISION_SERVICES {
            health
                .set_service_status(service, ServingStatus::Serving)
                .await;
        }
    });
}

/// Reloads on SIGHUP.
fn spawn_sighup_reload(reloader: Arc<Reloader>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload on signal is off");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the bundle");
                    reloader.reload(Cause::Signal).await;
                }
            }
        }
    });
}
