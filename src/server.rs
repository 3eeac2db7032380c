//! Wiring: the gRPC listener with the Authorization, health and reflection services, and
//! shutdown.
//!
//! Owns: which services are served and how the transport is configured. Does not own: request
//! handling (`api`) or loading (`bundle`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::codegen::http;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tonic_health::ServingStatus;

use crate::api::proto::authorization_server::AuthorizationServer;
use crate::api::{AuthorizationService, Limits, proto};
use crate::bundle::SnapshotHandle;
use crate::config::ValidConfig;

/// The service name health checks use for the Authorization service.
pub const AUTHORIZATION_SERVICE_NAME: &str = "verdict.v1.Authorization";

/// Serves gRPC on `listener` until `shutdown` completes, then drains in-flight requests.
///
/// Health reports SERVING (overall and for `verdict.v1.Authorization`) only while a snapshot
/// is loaded.
pub async fn run(
    config: &ValidConfig,
    snapshots: Arc<SnapshotHandle>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
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
    };
    let authorization = AuthorizationServer::new(AuthorizationService::new(snapshots, limits))
        .max_decoding_message_size(config.max_message_bytes);

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
