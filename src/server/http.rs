//! The HTTP port: `/metrics` for Prometheus, `/healthz` (alive) and `/readyz` (a snapshot is
//! serving and the server is not shutting down), for probes that do not speak gRPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serving::SnapshotHandle;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) snapshots: Arc<SnapshotHandle>,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) shutting_down: Arc<AtomicBool>,
}

/// The classic Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(handle) = state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    // Rendering drains every histogram's recent samples: off the async workers, so a scrape
    // does not hold up requests.
    match tokio::task::spawn_blocking(move || handle.render()).await {
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

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.shutting_down.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if state.snapshots.load().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "no policy bundle loaded\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Serves the HTTP port until `cancel` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    state: HttpState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
