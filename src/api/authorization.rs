//! The `verdict.v1.Authorization` service.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tonic::{Request, Response, Status};

use verdict_core::{Decision, Limits};

use super::convert::{Item, check_input, check_response};
use super::error::ApiError;
use super::proto;
use super::proto::authorization_server::Authorization;
use super::record::{Asked, FrontEnd, RequestId, record_decision};
use super::relation_questions;
use super::token::{self, Presented};
use crate::identity::TokenVerifier;
use crate::serving::{Served, SnapshotHandle};
use crate::telemetry::decision_log::DecisionLogSettings;
use crate::telemetry::metrics::{self as telemetry_metrics, Rejection, ReloadFailureReason};

/// Batches with at least this many checks (or this heavy) are split across blocking threads.
const PARALLEL_BATCH_THRESHOLD: usize = 32;

/// Entities plus properties beyond which work moves off the async workers.
const HEAVY_WEIGHT: usize = 32;

/// A request this heavy is decided on a blocking thread rather than on an async worker.
/// Contextual tuples always are: the core re-indexes the snapshot's tuples with them.
fn is_heavy(request: &proto::CheckRequest) -> bool {
    request.entities.len() + request.properties.len() > HEAVY_WEIGHT / 2
        || !request.contextual_tuples.is_empty()
}

/// The caller a request was authenticated as (an API key's name): put in the request's
/// extensions by the server's authentication layer, read for the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Whether the authenticated caller holds the admin role: put in the request's extensions by
/// the server's authentication layer when authentication is on. `Status` and `Reload` show a
/// load error's details to admins only (they quote the bundle, and a hostile bundle may be a
/// symlink away from a file that is not meant to be shown, issue 15); everyone else gets the
/// reason in words that quote nothing. Without authentication there is no admin: nobody gets
/// the details over the API, which are in the server's log.
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
    /// Why the reload failed, when it did.
    pub failure: Option<ReloadFailureReason>,
}

/// Returns whether the caller may see a load error's details: an authenticated admin only.
fn may_see_load_details<T>(request: &Request<T>) -> bool {
    request
        .extensions()
        .get::<CallerIsAdmin>()
        .is_some_and(|admin| admin.0)
}

/// What a caller who may not see a load error's details is told instead.
fn load_failure_summary(reason: ReloadFailureReason) -> String {
    format!(
        "the last load failed: {}; its details quote the bundle and are shown to admin callers \
         only (and in the server log)",
        reason.describe()
    )
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
    limits: Arc<Limits>,
    decision_log: DecisionLogSettings,
    reload: Option<Arc<dyn ReloadControl>>,
    /// Verifies `CheckRequest.token`; disabled (every token refused) unless configured.
    tokens: TokenVerifier,
    /// One permit per core for deciding large batches on blocking threads (see
    /// [`decide_in_parallel`]).
    batch_workers: Arc<tokio::sync::Semaphore>,
    /// The label decisions are recorded with: `grpc`, or `http` when the HTTP API calls it.
    front_end: FrontEnd,
    /// The relationship store, for `fully_consistent` (its head revision), and how long a
    /// request may wait for this replica to be as fresh as it asks.
    store: Option<(Arc<crate::store::Store>, std::time::Duration)>,
}

impl AuthorizationService {
    /// Returns a service answering from `snapshots`, with the default decision log sampling
    /// and the `Reload` RPC disabled.
    pub fn new(snapshots: Arc<SnapshotHandle>, limits: Limits) -> Self {
        Self {
            snapshots,
            limits: Arc::new(limits),
            decision_log: DecisionLogSettings::default(),
            reload: None,
            tokens: TokenVerifier::disabled(),
            batch_workers: Arc::new(tokio::sync::Semaphore::new(cores())),
            front_end: FrontEnd::Grpc,
            store: None,
        }
    }

    /// Records decisions as the HTTP API's (`front_end="http"`): the same handlers answer
    /// `POST /v1/check` and `/v1/batch-check`.
    pub(crate) fn for_http(mut self) -> Self {
        self.front_end = FrontEnd::Http;
        self
    }

    /// Honours `Consistency` with `store`: a request waits up to `timeout` for this replica
    /// to serve the revision it asks for.
    pub fn with_store(
        mut self,
        store: Arc<crate::store::Store>,
        timeout: std::time::Duration,
    ) -> Self {
        self.store = Some((store, timeout));
        self
    }

    /// Returns the snapshot to answer from, once it is as fresh as `consistency` asks: the one
    /// served now for `minimize_latency` (or none asked), one that includes the token's revision
    /// for `at_least_as_fresh`, one that includes the store's latest revision for
    /// `fully_consistent`. Waits at most the configured time, then UNAVAILABLE.
    async fn fresh_snapshot(
        &self,
        consistency: Option<&proto::Consistency>,
    ) -> Result<Arc<Served>, ApiError> {
        use proto::consistency::Requirement;
        let wanted = match consistency.and_then(|c| c.requirement.as_ref()) {
            None | Some(Requirement::MinimizeLatency(_)) => None,
            Some(Requirement::AtLeastAsFresh(token)) => {
                let revision =
                    super::relationships::parse_token(token, "consistency.at_least_as_fresh")?;
                if self.store.is_none() {
                    return Err(ApiError::InvalidField(
                        "consistency.at_least_as_fresh: no relationship store is configured, \
                         so there is no revision to be fresh as"
                            .to_owned(),
                    ));
                }
                Some(revision)
            }
            Some(Requirement::FullyConsistent(_)) => match &self.store {
                // Without a store the bundle is all there is: what is served is the latest.
                None => None,
                Some((store, _)) => Some(store.head().await?),
            },
        };
        if let (Some(revision), Some((_, timeout)), Some(mut applied)) =
            (wanted, &self.store, self.snapshots.subscribe_revision())
        {
            let caught_up =
                tokio::time::timeout(*timeout, applied.wait_for(|applied| *applied >= revision))
                    .await
                    .is_ok_and(|waited| waited.is_ok());
            if !caught_up {
                let now = *applied.borrow();
                telemetry_metrics::record_rejection(Rejection::Unavailable);
                return Err(ApiError::Unavailable(format!(
                    "consistency: this replica serves store revision {}, not yet the {} asked                      for, after waiting {}; retry, or ask with minimize_latency",
                    verdict_core::store::ConsistencyToken::new(now),
                    verdict_core::store::ConsistencyToken::new(revision),
                    humantime::format_duration(*timeout)
                )));
            }
        }
        self.snapshot()
    }

    /// Sets how many decisions the decision log records.
    pub fn with_decision_log(mut self, settings: DecisionLogSettings) -> Self {
        self.decision_log = settings;
        self
    }

    /// Sets the verifier for `CheckRequest.token`.
    pub fn with_tokens(mut self, verifier: TokenVerifier) -> Self {
        self.tokens = verifier;
        self
    }

    /// Enables the `Reload` RPC.
    pub fn with_reload(mut self, control: Arc<dyn ReloadControl>) -> Self {
        self.reload = Some(control);
        self
    }

    fn snapshot(&self) -> Result<Arc<Served>, ApiError> {
        self.snapshots.load().ok_or_else(|| {
            telemetry_metrics::record_rejection(Rejection::Unavailable);
            ApiError::NoSnapshot
        })
    }

    fn call<T>(&self, served: Arc<Served>, request: &Request<T>) -> Call {
        Call {
            served,
            limits: Arc::clone(&self.limits),
            decision_log: self.decision_log,
            request_id: RequestId::from_given(
                request
                    .metadata()
                    .get("x-request-id")
                    .and_then(|value| value.to_str().ok()),
            ),
            caller: request
                .extensions()
                .get::<Caller>()
                .map(|caller| Arc::from(caller.0.as_str())),
            front_end: self.front_end,
        }
    }
}

/// Everything deciding needs besides the request itself.
#[derive(Debug, Clone)]
struct Call {
    /// The one snapshot that answers the request (every check of a batch).
    served: Arc<Served>,
    limits: Arc<Limits>,
    decision_log: DecisionLogSettings,
    request_id: RequestId,
    /// The API key's name, when keys are on.
    caller: Option<Arc<str>>,
    front_end: FrontEnd,
}

/// Decides one request and records it (metrics, decision log); `item` says which check of a
/// batch it is, `presented` what its token (if any) gave.
fn decide(
    call: &Call,
    mut request: proto::CheckRequest,
    item: Item,
    presented: Presented,
) -> Result<proto::CheckResponse, ApiError> {
    let started = Instant::now();
    let contextual = std::mem::take(&mut request.contextual_tuples);
    // The item's field prefix only names a contextual tuple's errors: not made for a plain
    // check (the decision path).
    let prefix = if contextual.is_empty() {
        String::new()
    } else {
        item.to_string()
    };
    let scoped = super::convert::contextual_tuples(contextual, &prefix)
        .map_err(ApiError::from)
        .and_then(|texts| {
            call.served
                .snapshot
                .with_contextual_tuples(texts)
                .map_err(|error| ApiError::Request(error.with_field_prefix(&item.to_string())))
        });
    let scoped = match scoped {
        Ok(scoped) => scoped,
        Err(error) => {
            record_rejection(&error);
            return Err(error);
        }
    };
    let input = presented.and_then(|verified| {
        let mut input = check_input(request, item, &call.limits)?;
        if let Some(verified) = verified {
            token::attach(&mut input, verified, &call.served.snapshot)?;
        }
        Ok(input)
    });
    let decided = input.and_then(|input| {
        scoped
            .check(input, &call.limits)
            .map_err(|error| ApiError::Request(error.with_field_prefix(&item.to_string())))
    });
    match decided {
        Ok(decision) => {
            observe(call, item, &decision, started.elapsed());
            Ok(check_response(
                decision,
                call.served.snapshot.served_version(),
            ))
        }
        Err(error) => {
            record_rejection(&error);
            Err(error)
        }
    }
}

/// Counts a rejected request, and the limit it broke if that is why.
fn record_rejection(error: &ApiError) {
    if let ApiError::Request(error) = error
        && let Some(limit) = error.limit()
    {
        telemetry_metrics::record_limit_breach(limit.into());
    }
    let rejection = match error.code() {
        tonic::Code::Internal => Rejection::Internal,
        tonic::Code::Unauthenticated => Rejection::Unauthenticated,
        _ => Rejection::Invalid,
    };
    telemetry_metrics::record_rejection(rejection);
}

/// Records one decision: metrics always, the decision log when sampled.
fn observe(call: &Call, item: Item, decision: &Decision, elapsed: std::time::Duration) {
    let request_id = ItemId {
        request: &call.request_id,
        item,
    };
    let asked = Asked {
        served: &call.served,
        decision_log: call.decision_log,
        request_id: &request_id,
        caller: call.caller.as_deref(),
        front_end: call.front_end,
        route: None,
    };
    record_decision(&asked, decision, decision.is_allowed(), elapsed);
}

/// The request id of one check: the request's, and `/checks[i]` for a batch item.
struct ItemId<'a> {
    request: &'a RequestId,
    item: Item,
}

impl std::fmt::Display for ItemId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.item {
            Item::Single => write!(f, "{}", self.request),
            Item::Batch(i) => write!(f, "{}/checks[{i}]", self.request),
        }
    }
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

/// The client's deadline, from its `grpc-timeout`.
fn deadline<T>(request: &Request<T>) -> Option<Instant> {
    let timeout = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    Some(Instant::now() + super::grpc_timeout(timeout)?)
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    #[tracing::instrument(name = "CheckRelation", level = "debug", skip_all)]
    async fn check_relation(
        &self,
        request: Request<proto::CheckRelationRequest>,
    ) -> Result<Response<proto::CheckRelationResponse>, Status> {
        let served = self
            .fresh_snapshot(request.get_ref().consistency.as_ref())
            .await?;
        // INVARIANT: one snapshot answers, contextual tuples included (the core re-indexes
        // them with its tuples, off the async workers when there are any).
        let request = request.into_inner();
        let response = if request.contextual_tuples.is_empty() {
            relation_questions::check_relation(&served, request)
        } else {
            tokio::task::spawn_blocking(move || {
                relation_questions::check_relation(&served, request)
            })
            .await
            .map_err(|e| ApiError::Internal(format!("check worker failed: {e}")))?
        };
        response.map(Response::new).map_err(|error| {
            record_rejection(&error);
            error.into()
        })
    }

    type LookupResourcesStream = relation_questions::PageStream<proto::LookupResourcesResponse>;

    #[tracing::instrument(name = "LookupResources", level = "debug", skip_all)]
    async fn lookup_resources(
        &self,
        request: Request<proto::LookupResourcesRequest>,
    ) -> Result<Response<Self::LookupResourcesStream>, Status> {
        let served = self
            .fresh_snapshot(request.get_ref().consistency.as_ref())
            .await?;
        let deadline = deadline(&request);
        let lookup = relation_questions::resources_question(request.into_inner())?;
        let stream = relation_questions::stream(
            served,
            lookup,
            deadline,
            relation_questions::resources_page,
        )
        .await
        .inspect_err(record_rejection)?;
        Ok(Response::new(stream))
    }

    type LookupSubjectsStream = relation_questions::PageStream<proto::LookupSubjectsResponse>;

    #[tracing::instrument(name = "LookupSubjects", level = "debug", skip_all)]
    async fn lookup_subjects(
        &self,
        request: Request<proto::LookupSubjectsRequest>,
    ) -> Result<Response<Self::LookupSubjectsStream>, Status> {
        let served = self
            .fresh_snapshot(request.get_ref().consistency.as_ref())
            .await?;
        let deadline = deadline(&request);
        let lookup = relation_questions::subjects_question(request.into_inner())?;
        let stream =
            relation_questions::stream(served, lookup, deadline, relation_questions::subjects_page)
                .await
                .inspect_err(record_rejection)?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(name = "Check", level = "debug", skip_all)]
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let served = self
            .fresh_snapshot(request.get_ref().consistency.as_ref())
            .await?;
        let call = self.call(served, &request);
        let mut request = request.into_inner();
        let presented = token::verify(&self.tokens, &mut request, Item::Single).await;
        // A plain check takes microseconds and runs inline; one with many entities or
        // properties could hold an async worker for milliseconds.
        let response = if is_heavy(&request) {
            tokio::task::spawn_blocking(move || decide(&call, request, Item::Single, presented))
                .await
                .map_err(|e| ApiError::Internal(format!("check worker failed: {e}")))??
        } else {
            decide(&call, request, Item::Single, presented)?
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(name = "BatchCheck", level = "debug", skip_all, fields(checks))]
    async fn batch_check(
        &self,
        request: Request<proto::BatchCheckRequest>,
    ) -> Result<Response<proto::BatchCheckResponse>, Status> {
        let served = self
            .fresh_snapshot(request.get_ref().consistency.as_ref())
            .await?;
        let call = self.call(served, &request);
        let proto::BatchCheckRequest {
            mut checks,
            consistency: _,
        } = request.into_inner();
        tracing::Span::current().record("checks", checks.len());
        if let Err(error) = self.limits.check_batch_len(checks.len()) {
            let error = ApiError::Request(error);
            record_rejection(&error);
            return Err(error.into());
        }
        telemetry_metrics::record_batch_size(checks.len());
        // Tokens first (verifying may wait for an issuer's keys); each item keeps its own
        // outcome, so one refused token fails only its item.
        let mut presented = Vec::with_capacity(checks.len());
        for (i, check) in checks.iter_mut().enumerate() {
            presented.push(token::verify(&self.tokens, check, Item::Batch(i)).await);
        }
        let checks: Vec<_> = checks.into_iter().zip(presented).collect();
        // INVARIANT: one snapshot (loaded above, into `call`) answers every item; each item
        // goes through the same door as a single Check (`decide`), on this thread or a
        // blocking one.
        let weight: usize = checks
            .iter()
            .map(|(c, _)| {
                1 + c.entities.len()
                    + c.properties.len()
                    + if c.contextual_tuples.is_empty() {
                        0
                    } else {
                        HEAVY_WEIGHT
                    }
            })
            .sum();
        let results = if checks.len() < PARALLEL_BATCH_THRESHOLD && weight < HEAVY_WEIGHT {
            checks
                .into_iter()
                .enumerate()
                .map(|(i, (check, presented))| {
                    batch_result(decide(&call, check, Item::Batch(i), presented))
                })
                .collect()
        } else {
            decide_in_parallel(&call, checks, &self.batch_workers).await?
        };
        Ok(Response::new(proto::BatchCheckResponse {
            results,
            snapshot_version: call.served.snapshot.served_version().to_owned(),
        }))
    }

    #[tracing::instrument(name = "Status", skip_all)]
    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let served = self.snapshots.load();
        let details = may_see_load_details(&request);
        let last_load_error = self
            .snapshots
            .last_failure()
            .map(|failure| proto::LoadFailure {
                message: if details {
                    failure.message.clone()
                } else {
                    load_failure_summary(failure.reason)
                },
                at: Some(timestamp(failure.at)),
            });
        let response = match served.as_deref().map(|served| &served.snapshot) {
            Some(snapshot) => proto::StatusResponse {
                snapshot_version: snapshot.served_version().to_owned(),
                loaded_at: Some(timestamp(snapshot.loaded_at())),
                policies: snapshot.policy_count() as u64,
                tuples: snapshot.tuple_count() as u64,
                entities: snapshot.entity_count() as u64,
                schema: snapshot.has_schema(),
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
        request: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        let control = self.reload.as_ref().ok_or(ApiError::ReloadDisabled)?;
        let details = may_see_load_details(&request);
        let ReloadAnswer {
            snapshot_version,
            changed,
            errors,
            failure,
        } = control.reload().await;
        let errors = match failure {
            Some(reason) if !details => vec![load_failure_summary(reason)],
            _ => errors,
        };
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
    checks: Vec<(proto::CheckRequest, Presented)>,
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
                .map(|(i, (check, presented))| {
                    batch_result(decide(&call, check, Item::Batch(i), presented))
                })
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
    use verdict_core::{LoadOptions, Snapshot};

    use super::*;

    fn entity(t: &str, id: &str) -> proto::EntityRef {
        proto::EntityRef {
            r#type: t.to_owned(),
            id: id.to_owned(),
        }
    }

    fn request() -> proto::CheckRequest {
        proto::CheckRequest {
            contextual_tuples: Default::default(),
            principal: Some(entity("User", "u")),
            action: "read".to_owned(),
            resource: Some(entity("Document", "d")),
            context: None,
            entities: vec![proto::Entity {
                uid: Some(entity("Team", "t")),
                attrs: None,
                parents: vec![entity("Org", "o"), entity("Org", "o")],
            }],
            properties: Vec::new(),
            token: String::new(),
            consistency: None,
        }
    }

    #[tokio::test]
    async fn an_overlong_name_is_named_with_its_batch_item() {
        let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
        let snapshot = Snapshot::load(policies.as_ref(), &LoadOptions::default()).unwrap();
        let limits = Limits {
            max_string_bytes: 8,
            ..Limits::default()
        };
        let service = AuthorizationService::new(Arc::new(SnapshotHandle::with(snapshot)), limits);
        let mut overlong = request();
        overlong.entities[0].parents[1].id = "o".repeat(9);
        let checks = vec![request(), request(), request(), overlong];
        let response = service
            .batch_check(Request::new(proto::BatchCheckRequest {
                checks,
                consistency: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let Some(proto::batch_check_result::Result::Error(error)) = &response.results[3].result
        else {
            panic!("the overlong check is rejected: {:?}", response.results[3]);
        };
        assert_eq!(
            error.message,
            "checks[3].entities[0].parents[1].id: 9 bytes exceed the limit of 8"
        );
        assert_eq!(error.code, tonic::Code::InvalidArgument as i32);
    }
}
