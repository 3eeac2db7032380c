//! The HTTP port: `/metrics` for Prometheus, `/healthz` (alive) and `/readyz` (a snapshot is
//! serving and the server is not shutting down), for probes that do not speak gRPC.
//!
//! Served with hyper's HTTP/1 directly rather than `axum::serve`, which sets no timer and so no
//! timeout at all (issue 15, finding 8: 500 connections sending nothing held for good). Here:
//!
//! - at most [`super::accept::HTTP_MAX_CONNECTIONS`] connections, with the accept backoff of
//!   [`super::accept`];
//! - a request's headers must arrive within [`HEADER_READ_TIMEOUT`] (a slowloris client that
//!   sends part of a header line and then nothing is closed), and hyper arms the same timer
//!   while a kept-alive connection waits for its next request, so it is the idle timeout too:
//!   a scraper reconnects when its interval is longer, which costs nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::accept::Acceptor;
use crate::serving::SnapshotHandle;

/// The longest a client may take to send a request's headers, or to start its next request on
/// a kept-alive connection.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) snapshots: Arc<SnapshotHandle>,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) shutting_down: Arc<AtomicBool>,
    /// The relationship store, when one is configured: readiness follows its connection.
    pub(crate) store: Option<Arc<crate::store::Store>>,
}

/// The classic Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(handle) = state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    // Rendering reads /proc and drains every histogram's recent samples: off the async
    // workers, so a scrape does not hold up requests.
    match tokio::task::spawn_blocking(move || crate::telemetry::metrics::render(&handle)).await {
        Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "rendering metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, Cow<'static, str>) {
    let unavailable = |text: &'static str| (StatusCode::SERVICE_UNAVAILABLE, Cow::Borrowed(text));
    if state.shutting_down.load(Ordering::Relaxed) {
        return unavailable("shutting down\n");
    }
    if state.snapshots.load().is_none() {
        if state.store.is_some() && state.snapshots.load_bundle().is_some() {
            return unavailable("the relationship store's state is not loaded yet\n");
        }
        return unavailable("no policy bundle loaded\n");
    }
    if let Some(store) = &state.store {
        let served = state.snapshots.applied_revision().unwrap_or(0);
        if let Some(away) = store.health().disconnected_for()
            && away >= store.config().max_staleness
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Cow::Owned(format!(
                    "the relationship store is unreachable; serving store revision {served}\n"
                )),
            );
        }
        let lag = store.health().head().saturating_sub(served);
        return (
            StatusCode::OK,
            Cow::Owned(format!("ready (store revision {served}, {lag} behind)\n")),
        );
    }
    (StatusCode::OK, Cow::Borrowed("ready\n"))
}

/// Serves the HTTP port until `cancel` fires, then lets the requests in progress finish.
pub(crate) async fn serve(
    mut acceptor: Acceptor,
    state: HttpState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let connection = tokio::select! {
            () = cancel.cancelled() => break,
            connection = acceptor.accept() => connection,
        };
        let service = TowerToHyperService::new(router.clone());
        let served = graceful.watch(http.serve_connection(TokioIo::new(connection), service));
        tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
    drop(acceptor);
    graceful.shutdown().await;
    Ok(())
}
