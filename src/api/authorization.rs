//! The `verdict.v1.Authorization` service.

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};

use super::convert::{ProtocolError, check_input, check_response};
use super::error::ApiError;
use super::proto;
use super::proto::authorization_server::Authorization;
use crate::bundle::{Snapshot, SnapshotHandle};
use crate::engine;

/// Batches with at least this many checks are split across blocking threads.
const PARALLEL_BATCH_THRESHOLD: usize = 32;

/// Request limits enforced before the engine sees a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most checks in one `BatchCheck`.
    pub max_batch: usize,
    /// The deepest nesting of lists and records in context and entity attributes.
    pub max_json_depth: usize,
    /// The most entities in one request.
    pub max_request_entities: usize,
    /// The most parents of one request entity.
    pub max_entity_parents: usize,
    /// The most properties in one request.
    pub max_properties: usize,
}

impl Limits {
    /// Rejects a request over a count limit before any work is done on it.
    fn check(&self, request: &proto::CheckRequest, prefix: &str) -> Result<(), ApiError> {
        let over = |field: String, what: &str, count: usize, limit: usize| {
            Err(ApiError::Protocol(ProtocolError::Invalid {
                field,
                reason: format!("{count} {what} exceed the limit of {limit}"),
            }))
        };
        if request.entities.len() > self.max_request_entities {
            return over(
                format!("{prefix}entities"),
                "entities",
                request.entities.len(),
                self.max_request_entities,
            );
        }
        for (i, entity) in request.entities.iter().enumerate() {
            if entity.parents.len() > self.max_entity_parents {
                return over(
                    format!("{prefix}entities[{i}].parents"),
                    "parents",
                    entity.parents.len(),
                    self.max_entity_parents,
                );
            }
        }
        if request.properties.len() > self.max_properties {
            return over(
                format!("{prefix}properties"),
                "properties",
                request.properties.len(),
                self.max_properties,
            );
        }
        Ok(())
    }
}

/// A request this heavy is decided on a blocking thread rather than on an async worker.
fn is_heavy(request: &proto::CheckRequest) -> bool {
    request.entities.len() + request.properties.len() > 16
}

/// What a reload did, as the `Reload` RPC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAnswer {
    /// The version serving afterwards, if any.
    pub snapshot_version: Option<String>,
    /// Whether a new snapshot was swapped in.
    pub changed: bool,
    /// Every error that kept the previous snapshot serving (empty on success).
    pub errors: Vec<String>,
}

/// Runs a reload for the `Reload` RPC; the server implements it over its reloader, so this
/// module stays independent of how reloading works.
#[tonic::async_trait]
pub trait ReloadControl: Send + Sync + std::fmt::Debug + 'static {
    /// Rebuilds now and reports the outcome.
    async fn reload(&self) -> ReloadAnswer;
}

/// The gRPC handlers; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthorizationService {
    snapshots: Arc<SnapshotHandle>,
    limits: Limits,
    reload: Option<Arc<dyn ReloadControl>>,
}

impl AuthorizationService {
    /// Returns a service answering from `snapshots`, with the `Reload` RPC disabled.
    pub fn new(snapshots: Arc<SnapshotHandle>, limits: Limits) -> Self {
        Self {
            snapshots,
            limits,
            reload: None,
        }
    }

    /// Enables the `Reload` RPC.
    pub fn with_reload(mut self, control: Arc<dyn ReloadControl>) -> Self {
        self.reload = Some(control);
        self
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        self.snapshots.load().ok_or(ApiError::NoSnapshot)
    }
}

/// Decides one converted request against one snapshot.
fn decide(
    snapshot: &Snapshot,
    request: proto::CheckRequest,
    prefix: &str,
    limits: Limits,
) -> Result<proto::CheckResponse, ApiError> {
    limits.check(&request, prefix)?;
    let input = check_input(request, prefix)?.normalized(limits.max_json_depth)?;
    let request = engine::Request::prepare(input, snapshot)?;
    let decision = engine::decide(snapshot, &request)?;
    Ok(check_response(decision, &snapshot.version))
}

fn batch_result(result: Result<proto::CheckResponse, ApiError>) -> proto::BatchCheckResult {
    use proto::batch_check_result::Result as Item;
    let item = match result {
        Ok(response) => Item::Response(response),
        Err(error) => Item::Error(proto::CheckError {
            code: error.code() as i32,
            message: error.client_message(),
        }),
    };
    proto::BatchCheckResult { result: Some(item) }
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    #[tracing::instrument(name = "Check", skip_all)]
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let snapshot = self.snapshot()?;
        let request = request.into_inner();
        let limits = self.limits;
        // A plain check takes microseconds and runs inline; one with many entities or
        // properties could hold an async worker for milliseconds.
        let response = if is_heavy(&request) {
            tokio::task::spawn_blocking(move || decide(&snapshot, request, "", limits))
                .await
                .map_err(|e| ApiError::Internal(format!("check worker failed: {e}")))??
        } else {
            decide(&snapshot, request, "", limits)?
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "BatchCheck", skip_all, fields(checks))]
    async fn batch_check(
        &self,
        request: Request<proto::BatchCheckRequest>,
    ) -> Result<Response<proto::BatchCheckResponse>, Status> {
        let proto::BatchCheckRequest { checks } = request.into_inner();
        tracing::Span::current().record("checks", checks.len());
        if checks.len() > self.limits.max_batch {
            return Err(ApiError::BatchTooLarge {
                count: checks.len(),
                limit: self.limits.max_batch,
            }
            .into());
        }
        // INVARIANT: one snapshot answers every item.
        let snapshot = self.snapshot()?;
        let limits = self.limits;
        let results = if checks.len() < PARALLEL_BATCH_THRESHOLD {
            checks
                .into_iter()
                .enumerate()
                .map(|(i, check)| {
                    batch_result(decide(&snapshot, check, &format!("checks[{i}]."), limits))
                })
                .collect()
        } else {
            decide_in_parallel(&snapshot, checks, limits).await?
        };
        Ok(Response::new(proto::BatchCheckResponse {
            results,
            snapshot_version: snapshot.version.clone(),
        }))
    }

    #[tracing::instrument(name = "Status", skip_all)]
    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let snapshot = self.snapshots.load();
        let last_load_error = self
            .snapshots
            .last_failure()
            .map(|failure| proto::LoadFailure {
                message: failure.message.clone(),
                at: Some(timestamp(failure.at)),
            });
        let response = match snapshot {
            Some(snapshot) => proto::StatusResponse {
                snapshot_version: snapshot.version.clone(),
                loaded_at: Some(timestamp(snapshot.loaded_at)),
                policies: snapshot.policy_count() as u64,
                tuples: snapshot.tuples.tuple_count() as u64,
                entities: snapshot.entity_count as u64,
                schema: snapshot.schema.is_some(),
                last_load_error,
            },
            None => proto::StatusResponse {
                last_load_error,
                ..proto::StatusResponse::default()
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "Reload", skip_all)]
    async fn reload(
        &self,
        _request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        let control = self.reload.as_ref().ok_or(ApiError::ReloadDisabled)?;
        let ReloadAnswer {
            snapshot_version,
            changed,
            errors,
        } = control.reload().await;
        Ok(Response::new(proto::ReloadResponse {
            snapshot_version: snapshot_version.unwrap_or_default(),
            changed,
            errors,
        }))
    }
}

/// Splits a large batch into one chunk per core, each decided on a blocking thread, and
/// returns the results in request order.
async fn decide_in_parallel(
    snapshot: &Arc<Snapshot>,
    checks: Vec<proto::CheckRequest>,
    limits: Limits,
) -> Result<Vec<proto::BatchCheckResult>, ApiError> {
    let total = checks.len();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk_size = total.div_ceil(workers).max(1);
    let mut checks = checks.into_iter().enumerate().peekable();
    let mut tasks = Vec::with_capacity(workers);
    while checks.peek().is_some() {
        let chunk: Vec<_> = checks.by_ref().take(chunk_size).collect();
        let snapshot = Arc::clone(snapshot);
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|(i, check)| {
                    batch_result(decide(&snapshot, check, &format!("checks[{i}]."), limits))
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut results = Vec::with_capacity(total);
    for task in tasks {
        let chunk = task
            .await
            .map_err(|e| ApiError::Internal(format!("batch worker failed: {e}")))?;
        results.extend(chunk);
    }
    Ok(results)
}
