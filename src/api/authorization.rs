//! The `verdict.v1.Authorization` service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::convert::{Item, ProtocolError, check_input, check_response};
use super::error::ApiError;
use super::proto;
use super::proto::authorization_server::Authorization;
use crate::bundle::{Snapshot, SnapshotHandle};
use crate::engine::{self, Decision};
use crate::telemetry::decision_log::{self, DecisionLogSettings, DecisionRecord};
use crate::telemetry::metrics::{
    self as telemetry_metrics, DecisionMetrics, LimitBreach, OTHER_ACTION, Rejection,
};

/// Batches with at least this many checks (or this heavy) are split across blocking threads.
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
    /// The longest type, id, action, property or attribute name, in bytes.
    pub max_string_bytes: usize,
}

impl Limits {
    /// Rejects a request over a count or length limit before any work is done on it.
    fn check(&self, request: &proto::CheckRequest, item: Item) -> Result<(), ApiError> {
        let over = |breach: LimitBreach, field: String, what: &str, count: usize, limit: usize| {
            telemetry_metrics::record_limit_breach(breach);
            Err(ApiError::Protocol(ProtocolError::Invalid {
                field: format!("{item}{field}"),
                reason: format!("{count} {what} exceed the limit of {limit}"),
            }))
        };
        if request.entities.len() > self.max_request_entities {
            return over(
                LimitBreach::Entities,
                "entities".to_owned(),
                "entities",
                request.entities.len(),
                self.max_request_entities,
            );
        }
        for (i, entity) in request.entities.iter().enumerate() {
            if entity.parents.len() > self.max_entity_parents {
                return over(
                    LimitBreach::Parents,
                    format!("entities[{i}].parents"),
                    "parents",
                    entity.parents.len(),
                    self.max_entity_parents,
                );
            }
        }
        if request.properties.len() > self.max_properties {
            return over(
                LimitBreach::Properties,
                "properties".to_owned(),
                "properties",
                request.properties.len(),
                self.max_properties,
            );
        }
        if let Some((field, length)) = overlong_name(request, self.max_string_bytes) {
            return over(
                LimitBreach::StringLength,
                field,
                "bytes",
                length,
                self.max_string_bytes,
            );
        }
        Ok(())
    }
}

/// Returns the first name in a request longer than `max` bytes, with its field and length.
/// Names are entity types and ids, the action, property names, and the names of context and
/// entity attributes (at the top level). Field names are built only for the one returned.
fn overlong_name(request: &proto::CheckRequest, max: usize) -> Option<(String, usize)> {
    let overlong = |text: &str| (text.len() > max).then_some(text.len());
    let entity = |field: &dyn Fn() -> String, entity: Option<&proto::EntityRef>| {
        let entity = entity?;
        overlong(&entity.r#type)
            .map(|length| (format!("{}.type", field()), length))
            .or_else(|| overlong(&entity.id).map(|length| (format!("{}.id", field()), length)))
    };
    entity(&|| "principal".to_owned(), request.principal.as_ref())
        .or_else(|| entity(&|| "resource".to_owned(), request.resource.as_ref()))
        .or_else(|| {
            request.entities.iter().enumerate().find_map(|(i, e)| {
                entity(&|| format!("entities[{i}].uid"), e.uid.as_ref()).or_else(|| {
                    e.parents.iter().enumerate().find_map(|(p, parent)| {
                        entity(&|| format!("entities[{i}].parents[{p}]"), Some(parent))
                    })
                })
            })
        })
        .or_else(|| overlong(&request.action).map(|length| ("action".to_owned(), length)))
        .or_else(|| {
            request
                .properties
                .iter()
                .enumerate()
                .find_map(|(i, property)| {
                    overlong(property).map(|length| (format!("properties[{i}]"), length))
                })
        })
        .or_else(|| {
            let keys = request.context.iter().flat_map(|c| c.fields.keys());
            keys.filter_map(|key| overlong(key))
                .next()
                .map(|length| ("context (a key)".to_owned(), length))
        })
        .or_else(|| {
            request.entities.iter().enumerate().find_map(|(i, e)| {
                let keys = e.attrs.iter().flat_map(|attrs| attrs.fields.keys());
                keys.filter_map(|key| overlong(key))
                    .next()
                    .map(|length| (format!("entities[{i}].attrs (a key)"), length))
            })
        })
}

/// Entities plus properties beyond which work moves off the async workers.
const HEAVY_WEIGHT: usize = 32;

/// A request this heavy is decided on a blocking thread rather than on an async worker.
fn is_heavy(request: &proto::CheckRequest) -> bool {
    request.entities.len() + request.properties.len() > HEAVY_WEIGHT / 2
}

/// The caller a request was authenticated as (an API key's name): put in the request's
/// extensions by the server's authentication layer, read for the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Whether the authenticated caller holds the admin role: put in the request's extensions by
/// the server's authentication layer when authentication is on. `Status` shows the last load
/// error's details to admins only (they quote the bundle); without authentication there is no
/// role and everyone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerIsAdmin(pub bool);

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
    decision_log: DecisionLogSettings,
    reload: Option<Arc<dyn ReloadControl>>,
    /// One permit per core for deciding large batches on blocking threads (see
    /// [`decide_in_parallel`]).
    batch_workers: Arc<tokio::sync::Semaphore>,
}

impl AuthorizationService {
    /// Returns a service answering from `snapshots`, with the default decision log sampling
    /// and the `Reload` RPC disabled.
    pub fn new(snapshots: Arc<SnapshotHandle>, limits: Limits) -> Self {
        Self {
            snapshots,
            limits,
            decision_log: DecisionLogSettings::default(),
            reload: None,
            batch_workers: Arc::new(tokio::sync::Semaphore::new(cores())),
        }
    }

    /// Sets how many decisions the decision log records.
    pub fn with_decision_log(mut self, settings: DecisionLogSettings) -> Self {
        self.decision_log = settings;
        self
    }

    /// Enables the `Reload` RPC.
    pub fn with_reload(mut self, control: Arc<dyn ReloadControl>) -> Self {
        self.reload = Some(control);
        self
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        self.snapshots.load().ok_or_else(|| {
            telemetry_metrics::record_rejection(Rejection::Unavailable);
            ApiError::NoSnapshot
        })
    }

    fn call<T>(&self, snapshot: Arc<Snapshot>, request: &Request<T>) -> Call {
        Call {
            snapshot,
            limits: self.limits,
            decision_log: self.decision_log,
            request_id: RequestId::of(request.metadata()),
            caller: request
                .extensions()
                .get::<Caller>()
                .map(|caller| Arc::from(caller.0.as_str())),
        }
    }
}

/// Everything deciding needs besides the request itself.
#[derive(Debug, Clone)]
struct Call {
    snapshot: Arc<Snapshot>,
    limits: Limits,
    decision_log: DecisionLogSettings,
    request_id: RequestId,
    /// The API key's name, when keys are on.
    caller: Option<Arc<str>>,
}

/// The id decision log records carry: the caller's `x-request-id` when it is a sane token,
/// else a number the server hands out, formatted only if a record is written.
#[derive(Debug, Clone)]
enum RequestId {
    Given(Arc<str>),
    Numbered(u64),
}

impl RequestId {
    fn of(metadata: &MetadataMap) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let given = metadata
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 128
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            });
        match given {
            Some(id) => Self::Given(Arc::from(id)),
            None => Self::Numbered(NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(id) => f.write_str(id),
            Self::Numbered(n) => write!(f, "verdict-{n:x}"),
        }
    }
}

/// Decides one request and records it (metrics, decision log); `item` says which check of a
/// batch it is.
fn decide(
    call: &Call,
    request: proto::CheckRequest,
    item: Item,
) -> Result<proto::CheckResponse, ApiError> {
    let started = Instant::now();
    let decided = (|| {
        call.limits.check(&request, item)?;
        let input = check_input(request, item)?.normalized(call.limits.max_json_depth)?;
        let request = engine::Request::prepare(input, &call.snapshot)?;
        let decision = engine::decide(&call.snapshot, &request)?;
        Ok::<_, ApiError>((request, decision))
    })();
    match decided {
        Ok((request, decision)) => {
            observe(call, item, &request, &decision, started.elapsed());
            Ok(check_response(decision, &call.snapshot.version))
        }
        Err(error) => {
            if let ApiError::Request(engine::RequestError::Invalid { reason, .. }) = &error
                && reason == "nested too deeply"
            {
                telemetry_metrics::record_limit_breach(LimitBreach::JsonDepth);
            }
            let rejection = if error.code() == tonic::Code::Internal {
                Rejection::Internal
            } else {
                Rejection::Invalid
            };
            telemetry_metrics::record_rejection(rejection);
            Err(error)
        }
    }
}

/// Records one decision: metrics always, the decision log when sampled.
fn observe(
    call: &Call,
    item: Item,
    request: &engine::Request,
    decision: &Decision,
    elapsed: std::time::Duration,
) {
    let errored: Vec<&str> = decision
        .errors
        .iter()
        .map(|e| e.policy_id.as_str())
        .collect();
    let action = call
        .snapshot
        .action_labels
        .get(request.action())
        .map_or(metrics::SharedString::const_str(OTHER_ACTION), |label| {
            metrics::SharedString::from(Arc::clone(label))
        });
    telemetry_metrics::record_decision(&DecisionMetrics {
        decision: decision.outcome.as_str(),
        action,
        duration: elapsed,
        errored_policies: &errored,
        relation_depth_exceeded: decision.relation_depth_exceeded,
    });
    if !call.decision_log.sample(decision.is_allowed()) {
        return;
    }
    let properties: Vec<(&str, &'static str)> = decision
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.outcome.as_str()))
        .collect();
    let request_id = match item {
        Item::Single => call.request_id.to_string(),
        Item::Batch(i) => format!("{}/checks[{i}]", call.request_id),
    };
    decision_log::log(&DecisionRecord {
        request_id: &request_id,
        caller: call.caller.as_deref(),
        principal: request.principal(),
        action: request.action(),
        resource: request.resource(),
        decision: decision.outcome.as_str(),
        determining_policies: &decision.determining_policies,
        errored_policies: &errored,
        properties: &properties,
        snapshot_version: &call.snapshot.version,
        latency: elapsed,
        relation_depth_exceeded: decision.relation_depth_exceeded,
    });
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
    #[tracing::instrument(name = "Check", level = "debug", skip_all)]
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let call = self.call(self.snapshot()?, &request);
        let request = request.into_inner();
        // A plain check takes microseconds and runs inline; one with many entities or
        // properties could hold an async worker for milliseconds.
        let response = if is_heavy(&request) {
            tokio::task::spawn_blocking(move || decide(&call, request, Item::Single))
                .await
                .map_err(|e| ApiError::Internal(format!("check worker failed: {e}")))??
        } else {
            decide(&call, request, Item::Single)?
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "BatchCheck", level = "debug", skip_all, fields(checks))]
    async fn batch_check(
        &self,
        request: Request<proto::BatchCheckRequest>,
    ) -> Result<Response<proto::BatchCheckResponse>, Status> {
        let snapshot = self.snapshot()?;
        let call = self.call(snapshot, &request);
        let proto::BatchCheckRequest { checks } = request.into_inner();
        tracing::Span::current().record("checks", checks.len());
        if checks.len() > self.limits.max_batch {
            telemetry_metrics::record_rejection(Rejection::Invalid);
            telemetry_metrics::record_limit_breach(LimitBreach::Batch);
            return Err(ApiError::BatchTooLarge {
                count: checks.len(),
                limit: self.limits.max_batch,
            }
            .into());
        }
        telemetry_metrics::record_batch_size(checks.len());
        // INVARIANT: one snapshot (loaded above, into `call`) answers every item.
        let weight: usize = checks
            .iter()
            .map(|c| 1 + c.entities.len() + c.properties.len())
            .sum();
        let results = if checks.len() < PARALLEL_BATCH_THRESHOLD && weight < HEAVY_WEIGHT {
            checks
                .into_iter()
                .enumerate()
                .map(|(i, check)| batch_result(decide(&call, check, Item::Batch(i))))
                .collect()
        } else {
            decide_in_parallel(&call, checks, &self.batch_workers).await?
        };
        Ok(Response::new(proto::BatchCheckResponse {
            results,
            snapshot_version: call.snapshot.version.clone(),
        }))
    }

    #[tracing::instrument(name = "Status", skip_all)]
    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let snapshot = self.snapshots.load();
        let details = request
            .extensions()
            .get::<CallerIsAdmin>()
            .is_none_or(|admin| admin.0);
        let last_load_error = self
            .snapshots
            .last_failure()
            .map(|failure| proto::LoadFailure {
                message: if details {
                    failure.message.clone()
                } else {
                    "the last load failed; its details (which quote the bundle) need an admin \
                     key or certificate"
                        .to_owned()
                },
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

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Splits a large batch into one chunk per core, each decided on a blocking thread, and
/// returns the results in request order.
///
/// A chunk starts only with one of `workers`' permits (one per core): many batches at once
/// then queue for a core instead of each starting threads that fight over the cores (with 64
/// batches in flight on one core that cost a sixth of the throughput; see BENCHMARKS.md).
async fn decide_in_parallel(
    call: &Call,
    checks: Vec<proto::CheckRequest>,
    workers: &Arc<tokio::sync::Semaphore>,
) -> Result<Vec<proto::BatchCheckResult>, ApiError> {
    let total = checks.len();
    let chunk_size = total.div_ceil(cores()).max(1);
    let mut checks = checks.into_iter().enumerate().peekable();
    let mut tasks = Vec::new();
    while checks.peek().is_some() {
        let chunk: Vec<_> = checks.by_ref().take(chunk_size).collect();
        let call = call.clone();
        let permit = Arc::clone(workers)
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(format!("batch workers closed: {e}")))?;
        tasks.push(tokio::task::spawn_blocking(move || {
            let results = chunk
                .into_iter()
                .map(|(i, check)| batch_result(decide(&call, check, Item::Batch(i))))
                .collect::<Vec<_>>();
            drop(permit);
            results
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_batch: 100,
            max_json_depth: 32,
            max_request_entities: 100,
            max_entity_parents: 32,
            max_properties: 100,
            max_string_bytes: 8,
        }
    }

    fn entity(t: &str, id: &str) -> proto::EntityRef {
        proto::EntityRef {
            r#type: t.to_owned(),
            id: id.to_owned(),
        }
    }

    fn request() -> proto::CheckRequest {
        proto::CheckRequest {
            principal: Some(entity("User", "u")),
            action: "read".to_owned(),
            resource: Some(entity("Doc", "d")),
            context: None,
            entities: vec![proto::Entity {
                uid: Some(entity("Team", "t")),
                attrs: None,
                parents: vec![entity("Org", "o"), entity("Org", "o")],
            }],
            properties: Vec::new(),
        }
    }

    fn error(request: &proto::CheckRequest, item: Item) -> String {
        match limits().check(request, item) {
            Err(error) => error.to_string(),
            Ok(()) => "accepted".to_owned(),
        }
    }

    #[test]
    fn an_overlong_name_is_named_with_its_batch_item() {
        assert_eq!(error(&request(), Item::Single), "accepted");
        let mut overlong = request();
        overlong.entities[0].parents[1].id = "o".repeat(9);
        assert_eq!(
            error(&overlong, Item::Batch(3)),
            "checks[3].entities[0].parents[1].id: 9 bytes exceed the limit of 8"
        );
        // The first overlong name in request order is the one reported.
        overlong.resource = Some(entity("Documents", "d"));
        assert_eq!(
            error(&overlong, Item::Single),
            "resource.type: 9 bytes exceed the limit of 8"
        );
    }
}
