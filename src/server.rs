//! Wiring: the gRPC listener with the Authorization, health and reflection services, the
//! background reload tasks (watch loop, SIGHUP), and shutdown.
//!
//! Owns: which services are served, how the transport is configured, and which background tasks
//! run. Does not own: request handling (`api`), loading (`bundle`) or reloading (`reload`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tonic_health::ServingStatus;

use tokio_util::sync::CancellationToken;

use crate::api::proto::authorization_server::AuthorizationServer;
use crate::api::{AuthorizationService, Limits, ReloadAnswer, ReloadControl, proto};
use crate::bundle::SnapshotHandle;
use crate::config::ValidConfig;
use crate::reload::{Cause, ReloadOutcome, Reloader, WatchSettings};

/// The service name health checks use for the Authorization service.
pub const AUTHORIZATION_SERVICE_NAME: &str = "verdict.v1.Authorization";

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
            },
            ReloadOutcome::Unchanged { version } => ReloadAnswer {
                snapshot_version: Some(version),
                changed: false,
                errors: Vec::new(),
            },
            ReloadOutcome::Failed { errors, serving } => ReloadAnswer {
                snapshot_version: serving,
                changed: false,
                errors: errors.errors().iter().map(ToString::to_string).collect(),
            },
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` completes, then drains in-flight requests.
///
/// `reloader` rebuilds `snapshots`: the watch loop (per the configuration) and SIGHUP trigger
/// it, and so does the `Reload` RPC when enabled. Health reports SERVING (overall and for
/// `verdict.v1.Authorization`) only while a snapshot is loaded.
pub async fn run(
    config: &ValidConfig,
    snapshots: Arc<SnapshotHandle>,
    reloader: Arc<Reloader>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let background = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    let status = if snapshots.load().is_some() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health
        .set_service_status(AUTHORIZATION_SERVICE_NAME, status)
        .await;
    spawn_health_follower(health.clone(), reloader.subscribe(), background.clone());
    if config.watch || config.poll_interval.is_some() {
        let settings = WatchSettings {
            watch: config.watch,
            poll_interval: config.poll_interval,
            debounce: config.reload_debounce,
            max_delay: config.reload_max_delay,
        };
        reloader.spawn_watch(settings, background.clone());
    }
    spawn_sighup_reload(Arc::clone(&reloader), background.clone());

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl and grpcio's reflection clients still speak v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let limits = Limits {
        max_batch: config.max_batch,
        max_json_depth: config.max_json_depth,
        max_request_entities: config.max_request_entities,
        max_entity_parents: config.max_entity_parents,
        max_properties: config.max_properties,
    };
    let mut service = AuthorizationService::new(snapshots, limits);
    if config.enable_reload_rpc {
        service = service.with_reload(Arc::new(ReloadRpc(Arc::clone(&reloader))));
    }
    let authorization =
        AuthorizationServer::new(service).max_decoding_message_size(config.max_message_bytes);

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown_health = health.clone();
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversized_message_is_invalid_argument,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(authorization)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            background.cancel();
            tracing::info!("shutting down: health is NOT_SERVING, draining in-flight requests");
            shutdown_health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            shutdown_health
                .set_service_status(AUTHORIZATION_SERVICE_NAME, ServingStatus::NotServing)
                .await;
        })
        .await?;
    Ok(())
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
                health.set_service_status("", ServingStatus::Serving).await;
                health
                    .set_service_status(AUTHORIZATION_SERVICE_NAME, ServingStatus::Serving)
                    .await;
            }
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

/// tonic rejects a request message over the size limit with OUT_OF_RANGE; for a caller that is
/// a malformed request, so it becomes INVALID_ARGUMENT with a plain message. Our handlers never
/// return OUT_OF_RANGE, so nothing else is rewritten.
fn oversized_message_is_invalid_argument(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    if status.code() != Code::OutOfRange || !status.message().contains("message length too large") {
        return response;
    }
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let message = match numbers.as_slice() {
        [size, limit] => {
            format!("request message is {size} bytes, over the limit of {limit} bytes")
        }
        _ => "request message is over the size limit".to_owned(),
    };
    Status::invalid_argument(message).into_http()
}
