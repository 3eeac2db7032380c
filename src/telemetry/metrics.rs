//! Metric names, help texts, buckets, and the functions that record them: the single list of
//! what Verdict measures.
//!
//! Recorded through the `metrics` facade; [`install`] sets up the Prometheus recorder that the
//! server's `/metrics` endpoint renders (classic text format). Without it (unit tests, the CLI)
//! recording is a no-op. Label values come from closed sets or from the snapshot (action names,
//! policy ids), never from request ids: the number of series is bounded by the bundle, not by
//! traffic.

use std::hash::Hash;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram, SharedString};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Decisions by `decision` (`allow`/`deny`), `action` (the bundle's actions; `other` for
/// actions the bundle does not know) and `front_end` (`grpc` for `verdict.v1`, `ext_authz`,
/// `http` for the HTTP API).
pub const DECISIONS_TOTAL: &str = "verdict_decisions_total";
/// Time to decide one request (validation, slice, relation search, evaluation).
pub const DECISION_DURATION_SECONDS: &str = "verdict_decision_duration_seconds";
/// Policies that failed while evaluating, by `policy` id.
pub const EVALUATION_ERRORS_TOTAL: &str = "verdict_evaluation_errors_total";
/// Relation searches that hit the depth bound.
pub const RELATION_DEPTH_EXCEEDED_TOTAL: &str = "verdict_relation_depth_exceeded_total";
/// Requests (and batch items) Verdict's handlers answer with an error instead of a decision,
/// by `reason` (`invalid`, `unauthenticated`, `unavailable`, `internal`). Messages tonic rejects before they reach
/// a handler (undecodable, over the size limit) show in [`GRPC_REQUESTS_TOTAL`] and
/// [`LIMIT_REJECTIONS_TOTAL`] instead.
pub const REJECTED_REQUESTS_TOTAL: &str = "verdict_rejected_requests_total";
/// Requests (or connections) refused by a limit, by `limit`: `message_size`, `decoding`,
/// `deadline`, `body_timeout`, `concurrency`, `connection_concurrency`, `connections`,
/// `idle_connection`, `batch`, `entities`, `parents`, `properties`, `json_depth`,
/// `string_length`.
pub const LIMIT_REJECTIONS_TOTAL: &str = "verdict_limit_rejections_total";
/// Envoy ext_authz requests denied before a decision, by `kind` and `reason` (closed sets:
/// [`ExtAuthzRefusal`]): no route, no identity or a refused token, a body that cannot be
/// checked, or an error.
pub const EXT_AUTHZ_REFUSALS_TOTAL: &str = "verdict_ext_authz_refusals_total";
/// Requests that needed credentials, by `caller` (the key's name, `anonymous`, or
/// `certificate` for a client identity the mTLS allow-lists refused) and `result` (`ok`,
/// `unauthenticated`, `permission_denied`).
pub const AUTH_REQUESTS_TOTAL: &str = "verdict_auth_requests_total";
/// Bearer tokens refused, by `reason` (`TokenRefusal::label`: `missing`, `malformed`,
/// `not_configured`, `unknown_issuer`, `algorithm_not_allowed`, `unknown_key`,
/// `bad_signature`, `expired`, `not_yet_valid`, `wrong_audience`, `missing_claim`, `revoked`).
pub const TOKEN_REFUSALS_TOTAL: &str = "verdict_token_refusals_total";
/// Checks per BatchCheck.
pub const BATCH_SIZE: &str = "verdict_batch_size";
/// gRPC requests by `method` and `code`.
pub const GRPC_REQUESTS_TOTAL: &str = "verdict_grpc_requests_total";
/// gRPC request latency by `method`, until the last byte of the response.
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "verdict_grpc_request_duration_seconds";
/// The conventional gRPC server families (go-grpc-prometheus, grpc-ecosystem's
/// `grpc_prometheus`), so existing dashboards and alerts work unchanged: RPCs started, by
/// `grpc_type` (`unary`, `server_stream`), `grpc_service` and `grpc_method` (`other` for
/// methods Verdict does not serve, so labels stay bounded)...
pub const GRPC_SERVER_STARTED_TOTAL: &str = "grpc_server_started_total";
/// ... RPCs completed, with `grpc_code` in Go's spelling (`OK`, `PermissionDenied`, ...) ...
pub const GRPC_SERVER_HANDLED_TOTAL: &str = "grpc_server_handled_total";
/// ... and their latency until the response is complete.
pub const GRPC_SERVER_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// HTTP API requests by `route` (the route template, such as `/access/v1/evaluation`, or
/// `other`) and `status` (the HTTP status code).
pub const HTTP_REQUESTS_TOTAL: &str = "verdict_http_requests_total";
/// HTTP API request latency by `route`, until the response is ready.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "verdict_http_request_duration_seconds";
/// Bundle reloads by `result`: `updated`, `unchanged` or `failed`.
pub const RELOADS_TOTAL: &str = "verdict_reloads_total";
/// Failed bundle loads (the first one and reloads) by `reason`: `invalid`, `unreadable`,
/// `too_large`, `empty`, `dropped`, `unstable` or `internal` ([`ReloadFailureReason`]).
pub const RELOAD_FAILURES_TOTAL: &str = "verdict_reload_failures_total";
/// Always 1, labelled with the serving snapshot's `version`.
pub const SNAPSHOT_INFO: &str = "verdict_snapshot_info";
/// When the serving snapshot was loaded, in seconds since the Unix epoch.
pub const SNAPSHOT_LOADED_TIMESTAMP_SECONDS: &str = "verdict_snapshot_loaded_timestamp_seconds";
/// Age of the serving snapshot.
pub const SNAPSHOT_AGE_SECONDS: &str = "verdict_snapshot_age_seconds";
/// Policies in the serving snapshot.
pub const SNAPSHOT_POLICIES: &str = "verdict_snapshot_policies";
/// Relationship tuples in the serving snapshot.
pub const SNAPSHOT_TUPLES: &str = "verdict_snapshot_tuples";
/// Entities in the serving snapshot's entity files.
pub const SNAPSHOT_ENTITIES: &str = "verdict_snapshot_entities";
/// 1 while a snapshot is being served, 0 before the first one.
pub const READY: &str = "verdict_ready";
/// Always 1, labelled with `version` and `git_commit`.
pub const BUILD_INFO: &str = "verdict_build_info";
/// When the serving TLS certificate expires, in seconds since the Unix epoch (TLS only).
pub const TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: &str =
    "verdict_tls_certificate_expiry_timestamp_seconds";
/// Reloads of the TLS files by `result`: `updated` or `failed` (TLS only).
pub const TLS_RELOADS_TOTAL: &str = "verdict_tls_reloads_total";
/// TLS handshakes that did not complete, by `reason`: `failed` (bad certificate, not TLS,
/// ...), `timeout`, or `overload` (too many handshakes pending; the connection is closed).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "verdict_tls_handshake_failures_total";

/// Decision log records dropped: the queue was full (the writer could not keep up, or its
/// output is blocked) or writing them failed.
pub const DECISION_LOG_DROPPED_TOTAL: &str = "verdict_decision_log_dropped_total";

/// 1 while the relationship store follower is connected, 0 while it is not (only with a
/// store).
pub const STORE_CONNECTED: &str = "verdict_store_connected";
/// The relationship store revision this replica serves.
pub const STORE_REVISION: &str = "verdict_store_revision";
/// The store's last committed revision this replica has seen.
pub const STORE_HEAD_REVISION: &str = "verdict_store_head_revision";
/// Revisions the store has that this replica does not serve yet (head minus served).
pub const STORE_LAG_REVISIONS: &str = "verdict_store_lag_revisions";
/// Seconds since this replica last applied a store revision.
pub const STORE_SECONDS_SINCE_APPLIED: &str = "verdict_store_seconds_since_applied";
/// Tuples from the store in the serving graph.
pub const STORE_TUPLES: &str = "verdict_store_tuples";
/// Store tuples the serving bundle refuses (its schema or model changed since they were
/// written): left out of the graph.
pub const STORE_REJECTED_TUPLES: &str = "verdict_store_rejected_tuples";
/// `WriteRelationships` calls by `result`: `ok`, `invalid`, `conflict` (exists, missing, a
/// precondition), `unavailable`, `internal`.
pub const STORE_WRITES_TOTAL: &str = "verdict_store_writes_total";

/// The `action` label for actions the bundle does not know.
pub const OTHER_ACTION: &str = "other";

/// Latency buckets from 5 µs to 100 ms: decisions take microseconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Batch size buckets, up to the largest batch limit.
const BATCH_BUCKETS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0, 10_000.0,
];

/// Gauges not refreshed for this long disappear from `/metrics` (an old snapshot's version).
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs the global Prometheus recorder and describes every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DECISION_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(GRPC_REQUEST_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(GRPC_SERVER_HANDLING_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.to_owned()), &BATCH_BUCKETS)?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        .install_recorder()?;
    describe();
    process_collector().describe();
    // Counters with closed label sets start at 0, so `increase()` sees their first event.
    for result in [
        ReloadResult::Updated,
        ReloadResult::Unchanged,
        ReloadResult::Failed,
    ] {
        metrics::counter!(RELOADS_TOTAL, "result" => result.as_str()).absolute(0);
    }
    for reason in ReloadFailureReason::ALL {
        metrics::counter!(RELOAD_FAILURES_TOTAL, "reason" => reason.as_str()).absolute(0);
    }
    for reason in ["invalid", "unavailable", "internal"] {
        metrics::counter!(REJECTED_REQUESTS_TOTAL, "reason" => reason).absolute(0);
    }
    metrics::counter!(RELATION_DEPTH_EXCEEDED_TOTAL).absolute(0);
    metrics::counter!(DECISION_LOG_DROPPED_TOTAL).absolute(0);
    for breach in LimitBreach::ALL {
        metrics::counter!(LIMIT_REJECTIONS_TOTAL, "limit" => breach.as_str()).absolute(0);
    }
    Ok(handle)
}

/// The `process_*` metrics (CPU seconds, resident and virtual memory, open and maximum file
/// descriptors, threads, start time), read from `/proc` by `metrics-process` at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Renders every metric in the Prometheus text format, the `process_*` gauges read just
/// before. Blocking (it reads `/proc` and drains histograms): call it off the async workers.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

/// Registers the help text of every metric (the `# HELP` lines).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        DECISIONS_TOTAL,
        "Decisions by result, action and front-end."
    );
    describe_counter!(
        GRPC_SERVER_STARTED_TOTAL,
        "Total number of RPCs started on the server."
    );
    describe_counter!(
        GRPC_SERVER_HANDLED_TOTAL,
        "Total number of RPCs completed on the server, regardless of success or failure."
    );
    describe_histogram!(
        GRPC_SERVER_HANDLING_SECONDS,
        Unit::Seconds,
        "Response latency of gRPC calls handled by the server, until the response is complete."
    );
    describe_counter!(
        EXT_AUTHZ_REFUSALS_TOTAL,
        "Envoy ext_authz requests denied before a decision, by kind and reason."
    );
    describe_histogram!(
        DECISION_DURATION_SECONDS,
        Unit::Seconds,
        "Time to decide one request: validation, entity slice, relation search, evaluation."
    );
    describe_counter!(
        EVALUATION_ERRORS_TOTAL,
        "Policies that failed while evaluating (and were skipped), by policy id."
    );
    describe_counter!(
        RELATION_DEPTH_EXCEEDED_TOTAL,
        "Decisions denied because a relation search hit the depth bound."
    );
    describe_counter!(
        REJECTED_REQUESTS_TOTAL,
        "Requests and batch items the handlers answered with an error instead of a decision, by reason."
    );
    describe_histogram!(BATCH_SIZE, "Checks per BatchCheck request.");
    describe_counter!(
        AUTH_REQUESTS_TOTAL,
        "Requests that needed credentials, by caller (key name, anonymous, or certificate) and result."
    );
    describe_counter!(
        TOKEN_REFUSALS_TOTAL,
        "Bearer tokens refused (answered UNAUTHENTICATED), by reason."
    );
    describe_counter!(
        LIMIT_REJECTIONS_TOTAL,
        "Requests (or connections) refused by a limit, by limit."
    );
    describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC requests by method and status code."
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "gRPC request latency by method, until the response is complete."
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP API requests by route and status code."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP API request latency by route, until the response is ready."
    );
    describe_counter!(
        RELOADS_TOTAL,
        "Bundle reloads by result: updated, unchanged or failed."
    );
    describe_counter!(
        RELOAD_FAILURES_TOTAL,
        "Failed bundle loads by reason: invalid, unreadable, too_large, empty, dropped, unstable or internal."
    );
    describe_counter!(
        DECISION_LOG_DROPPED_TOTAL,
        "Decision log records dropped because the queue was full or the write failed."
    );
    describe_gauge!(SNAPSHOT_INFO, "The serving snapshot's version (always 1).");
    describe_gauge!(
        SNAPSHOT_LOADED_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "When the serving snapshot was loaded, as a Unix timestamp."
    );
    describe_gauge!(
        SNAPSHOT_AGE_SECONDS,
        Unit::Seconds,
        "Age of the serving snapshot."
    );
    describe_gauge!(SNAPSHOT_POLICIES, "Policies in the serving snapshot.");
    describe_gauge!(
        SNAPSHOT_TUPLES,
        "Relationship tuples in the serving snapshot."
    );
    describe_gauge!(
        SNAPSHOT_ENTITIES,
        "Entities in the serving snapshot's entity files."
    );
    describe_gauge!(
        READY,
        "1 while a snapshot is being served, 0 before the first one."
    );
    describe_gauge!(BUILD_INFO, "Build information (always 1).");
    describe_gauge!(
        TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "When the serving TLS certificate expires, since the Unix epoch."
    );
    describe_counter!(TLS_RELOADS_TOTAL, "Reloads of the TLS files by result.");
    describe_gauge!(
        STORE_CONNECTED,
        "1 while the relationship store is reachable, 0 while it is not."
    );
    describe_gauge!(STORE_REVISION, "The relationship store revision served.");
    describe_gauge!(
        STORE_HEAD_REVISION,
        "The relationship store's last committed revision seen."
    );
    describe_gauge!(
        STORE_LAG_REVISIONS,
        "Store revisions committed but not served yet."
    );
    describe_gauge!(
        STORE_SECONDS_SINCE_APPLIED,
        Unit::Seconds,
        "Seconds since a relationship store revision was last applied."
    );
    describe_gauge!(STORE_TUPLES, "Tuples from the relationship store served.");
    describe_gauge!(
        STORE_REJECTED_TUPLES,
        "Store tuples the serving bundle refuses, left out of the graph."
    );
    describe_counter!(STORE_WRITES_TOTAL, "WriteRelationships calls by result.");
    describe_counter!(
        TLS_HANDSHAKE_FAILURES_TOTAL,
        "TLS handshakes that did not complete, by reason."
    );
}

/// One decision, as metrics see it.
#[derive(Debug, Clone)]
pub struct DecisionMetrics<'a> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The front-end: `grpc` or `ext_authz`.
    pub front_end: &'static str,
    /// The action's label: a bundle action or [`OTHER_ACTION`].
    pub action: SharedString,
    /// Time spent deciding.
    pub duration: Duration,
    /// Ids of the policies that failed while evaluating.
    pub errored_policies: &'a [&'a str],
    /// Whether a relation search hit the depth bound.
    pub relation_depth_exceeded: bool,
}

/// The `action` label of every action a snapshot knows, derived once per snapshot: `read` for
/// `Action::"read"`, the full uid for namespaced actions. Other actions are [`OTHER_ACTION`],
/// so label values stay bounded by what the bundle declares whatever callers send.
#[derive(Debug, Default)]
pub struct ActionLabels {
    by_action: rustc_hash::FxHashMap<cedar_policy::EntityUid, Arc<str>>,
}

impl ActionLabels {
    /// Derives the labels of `snapshot`'s known actions.
    pub fn of(snapshot: &verdict_core::Snapshot) -> Self {
        let by_action = snapshot
            .known_actions()
            .iter()
            .map(|uid| {
                let label: Arc<str> = if uid.type_name().to_string() == "Action" {
                    uid.id().unescaped().into()
                } else {
                    uid.to_string().into()
                };
                (uid.clone(), label)
            })
            .collect();
        Self { by_action }
    }

    /// Returns the label of `action`: its own for a known action, [`OTHER_ACTION`] otherwise.
    /// Allocates nothing.
    pub fn get(&self, action: &cedar_policy::EntityUid) -> SharedString {
        self.by_action
            .get(action)
            .map_or(SharedString::const_str(OTHER_ACTION), |label| {
                SharedString::from(Arc::clone(label))
            })
    }
}

/// Metric handles by label values, registered with the recorder on first use.
///
/// `metrics::counter!(name, labels)` builds the key, hashes it and looks it up under a lock on
/// every call; per decision (and per gRPC request) that cost showed in profiles. The label
/// sets cached here are bounded (closed sets, and the bundle's actions), so the cache is too.
///
/// INVARIANT: the recorder is installed before the first request is answered (`serve` calls
/// [`install`] before binding). A handle registered before that would stay a no-op.
struct HandleCache<K, H> {
    handles: LazyLock<RwLock<rustc_hash::FxHashMap<K, H>>>,
}

impl<K: Hash + Eq + Clone, H: Clone> HandleCache<K, H> {
    const fn new() -> Self {
        Self {
            handles: LazyLock::new(Default::default),
        }
    }

    fn get(&self, key: &K, register: impl FnOnce() -> H) -> H {
        if let Ok(handles) = self.handles.read()
            && let Some(handle) = handles.get(key)
        {
            return handle.clone();
        }
        let handle = register();
        if let Ok(mut handles) = self.handles.write() {
            handles.entry(key.clone()).or_insert_with(|| handle.clone());
        }
        handle
    }
}

/// Records one decision.
pub fn record_decision(decision: &DecisionMetrics<'_>) {
    static DECISIONS: HandleCache<(&'static str, SharedString, &'static str), Counter> =
        HandleCache::new();
    static DURATION: OnceLock<Histogram> = OnceLock::new();
    let key = (
        decision.decision,
        decision.action.clone(),
        decision.front_end,
    );
    DECISIONS
        .get(&key, || {
            metrics::counter!(
                DECISIONS_TOTAL,
                "decision" => decision.decision,
                "action" => decision.action.clone(),
                "front_end" => decision.front_end
            )
        })
        .increment(1);
    DURATION
        .get_or_init(|| metrics::histogram!(DECISION_DURATION_SECONDS))
        .record(decision.duration.as_secs_f64());
    for policy in decision.errored_policies {
        metrics::counter!(EVALUATION_ERRORS_TOTAL, "policy" => (*policy).to_owned()).increment(1);
    }
    if decision.relation_depth_exceeded {
        metrics::counter!(RELATION_DEPTH_EXCEEDED_TOTAL).increment(1);
    }
}

/// Why an ext_authz request was denied before a decision: `kind` and `reason` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtAuthzRefusal {
    /// `route`, `identity`, `token`, `body` or `error`.
    pub kind: &'static str,
    /// Within the kind: a route refusal (`no_route`, ...), a token refusal's label, ...
    pub reason: &'static str,
}

/// Records one ext_authz request denied before a decision.
pub fn record_ext_authz_refusal(refusal: ExtAuthzRefusal) {
    metrics::counter!(
        EXT_AUTHZ_REFUSALS_TOTAL,
        "kind" => refusal.kind,
        "reason" => refusal.reason
    )
    .increment(1);
}

/// Counts decision log records dropped (queue full, or the write failed).
pub fn record_decision_log_dropped(records: u64) {
    static DROPPED: OnceLock<Counter> = OnceLock::new();
    DROPPED
        .get_or_init(|| metrics::counter!(DECISION_LOG_DROPPED_TOTAL))
        .increment(records);
}

/// Why a request got an error instead of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed or over a limit.
    Invalid,
    /// A bearer token that does not verify.
    Unauthenticated,
    /// No snapshot loaded.
    Unavailable,
    /// A bug or an environment failure.
    Internal,
}

/// Records a request (or batch item) answered with an error.
pub fn record_rejection(rejection: Rejection) {
    let reason = match rejection {
        Rejection::Invalid => "invalid",
        Rejection::Unauthenticated => "unauthenticated",
        Rejection::Unavailable => "unavailable",
        Rejection::Internal => "internal",
    };
    metrics::counter!(REJECTED_REQUESTS_TOTAL, "reason" => reason).increment(1);
}

/// Records a refused bearer token; `reason` is its bounded label (never the token).
pub fn record_token_refusal(reason: &'static str) {
    metrics::counter!(TOKEN_REFUSALS_TOTAL, "reason" => reason).increment(1);
}

/// A limit a request (or connection) ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitBreach {
    /// The message is larger than `--max-message-bytes`.
    MessageSize,
    /// The message could not be decoded (malformed, or nested beyond prost's limit).
    Decoding,
    /// No answer within `--request-timeout`.
    Deadline,
    /// The message did not arrive within `--request-body-timeout` of the headers.
    BodyTimeout,
    /// More requests in flight than `--max-concurrent-requests`: shed.
    Concurrency,
    /// More requests in flight on one connection than
    /// `--max-concurrent-requests-per-connection`: shed.
    ConnectionConcurrency,
    /// More open connections than a listener allows (`--max-connections` on the gRPC port):
    /// the connection is closed as it is accepted.
    Connections,
    /// A connection idle longer than `--idle-timeout`: closed.
    IdleConnection,
    /// More checks than `--max-batch`.
    Batch,
    /// More entities than `--max-request-entities`.
    Entities,
    /// More parents than `--max-entity-parents`.
    Parents,
    /// More properties than `--max-properties`.
    Properties,
    /// JSON nested deeper than `--max-json-depth`.
    JsonDepth,
    /// A type, id, action, property or attribute name longer than `--max-string-bytes`.
    StringLength,
    /// A set or record with more elements than `--max-collection-elements`.
    CollectionElements,
    /// More values, entities and properties than `--max-request-work`.
    RequestWork,
}

impl From<verdict_core::Limit> for LimitBreach {
    fn from(limit: verdict_core::Limit) -> Self {
        use verdict_core::Limit;
        match limit {
            Limit::Batch => Self::Batch,
            Limit::JsonDepth => Self::JsonDepth,
            Limit::Entities => Self::Entities,
            Limit::Parents => Self::Parents,
            Limit::Properties => Self::Properties,
            Limit::StringBytes => Self::StringLength,
            Limit::CollectionElements => Self::CollectionElements,
            Limit::Work => Self::RequestWork,
        }
    }
}

impl LimitBreach {
    /// Every limit, for initialising the counters.
    pub const ALL: [Self; 16] = [
        Self::MessageSize,
        Self::Decoding,
        Self::Deadline,
        Self::BodyTimeout,
        Self::Concurrency,
        Self::ConnectionConcurrency,
        Self::Connections,
        Self::IdleConnection,
        Self::Batch,
        Self::Entities,
        Self::Parents,
        Self::Properties,
        Self::JsonDepth,
        Self::StringLength,
        Self::CollectionElements,
        Self::RequestWork,
    ];

    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageSize => "message_size",
            Self::Decoding => "decoding",
            Self::Deadline => "deadline",
            Self::BodyTimeout => "body_timeout",
            Self::Concurrency => "concurrency",
            Self::ConnectionConcurrency => "connection_concurrency",
            Self::Connections => "connections",
            Self::IdleConnection => "idle_connection",
            Self::Batch => "batch",
            Self::Entities => "entities",
            Self::Parents => "parents",
            Self::Properties => "properties",
            Self::JsonDepth => "json_depth",
            Self::StringLength => "string_length",
            Self::CollectionElements => "collection_elements",
            Self::RequestWork => "request_work",
        }
    }
}

/// Records one request (or connection) refused by a limit.
pub fn record_limit_breach(breach: LimitBreach) {
    metrics::counter!(LIMIT_REJECTIONS_TOTAL, "limit" => breach.as_str()).increment(1);
}

/// The outcome of checking a request's API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// A valid key with the rights the RPC needs.
    Ok,
    /// No key, or not a key Verdict knows.
    Unauthenticated,
    /// A valid key without the rights the RPC needs.
    PermissionDenied,
}

/// Records one authenticated (or refused) request; `caller` is a key name or `anonymous`.
pub fn record_auth(caller: &str, result: AuthResult) {
    let result = match result {
        AuthResult::Ok => "ok",
        AuthResult::Unauthenticated => "unauthenticated",
        AuthResult::PermissionDenied => "permission_denied",
    };
    metrics::counter!(AUTH_REQUESTS_TOTAL, "caller" => caller.to_owned(), "result" => result)
        .increment(1);
}

/// Records the size of one BatchCheck.
pub fn record_batch_size(checks: usize) {
    static SIZES: OnceLock<Histogram> = OnceLock::new();
    SIZES
        .get_or_init(|| metrics::histogram!(BATCH_SIZE))
        .record(checks as f64);
}

/// Records one finished gRPC request.
pub fn record_grpc(method: &'static str, code: &'static str, duration: Duration) {
    static REQUESTS: HandleCache<(&'static str, &'static str), Counter> = HandleCache::new();
    static DURATIONS: HandleCache<&'static str, Histogram> = HandleCache::new();
    static HANDLED: HandleCache<(&'static str, &'static str), Counter> = HandleCache::new();
    static HANDLING: HandleCache<&'static str, Histogram> = HandleCache::new();
    let (kind, service, name) = grpc_labels(method);
    HANDLED
        .get(&(method, code), || {
            metrics::counter!(
                GRPC_SERVER_HANDLED_TOTAL,
                "grpc_type" => kind,
                "grpc_service" => service,
                "grpc_method" => name,
                "grpc_code" => go_code_name(code),
            )
        })
        .increment(1);
    HANDLING
        .get(&method, || {
            metrics::histogram!(
                GRPC_SERVER_HANDLING_SECONDS,
                "grpc_type" => kind,
                "grpc_service" => service,
                "grpc_method" => name,
            )
        })
        .record(duration.as_secs_f64());
    REQUESTS
        .get(
            &(method, code),
            || metrics::counter!(GRPC_REQUESTS_TOTAL, "method" => method, "code" => code),
        )
        .increment(1);
    DURATIONS
        .get(
            &method,
            || metrics::histogram!(GRPC_REQUEST_DURATION_SECONDS, "method" => method),
        )
        .record(duration.as_secs_f64());
}

/// Records the start of one gRPC call (`method` as for [`record_grpc`]).
pub fn record_grpc_started(method: &'static str) {
    static STARTED: HandleCache<&'static str, Counter> = HandleCache::new();
    let (kind, service, name) = grpc_labels(method);
    STARTED
        .get(&method, || {
            metrics::counter!(
                GRPC_SERVER_STARTED_TOTAL,
                "grpc_type" => kind,
                "grpc_service" => service,
                "grpc_method" => name,
            )
        })
        .increment(1);
}

/// The conventional labels of a method label (`service/Method` or `other`): its type, service
/// and method.
fn grpc_labels(method: &'static str) -> (&'static str, &'static str, &'static str) {
    let (service, name) = method.split_once('/').unwrap_or(("other", "other"));
    let kind = match name {
        // Reflection is a bidirectional stream; Go's interceptor reports it as such.
        "ServerReflectionInfo" => "bidi_stream",
        "Watch" | "WatchRelationships" | "LookupResources" | "LookupSubjects" => "server_stream",
        _ => "unary",
    };
    (kind, service, name)
}

/// A gRPC status code name (`PERMISSION_DENIED`) as Go's `codes.Code.String()` spells it
/// (`PermissionDenied`), which the conventional families use.
fn go_code_name(code: &'static str) -> &'static str {
    match code {
        "OK" => "OK",
        "CANCELLED" => "Canceled",
        "INVALID_ARGUMENT" => "InvalidArgument",
        "DEADLINE_EXCEEDED" => "DeadlineExceeded",
        "NOT_FOUND" => "NotFound",
        "ALREADY_EXISTS" => "AlreadyExists",
        "PERMISSION_DENIED" => "PermissionDenied",
        "RESOURCE_EXHAUSTED" => "ResourceExhausted",
        "FAILED_PRECONDITION" => "FailedPrecondition",
        "ABORTED" => "Aborted",
        "OUT_OF_RANGE" => "OutOfRange",
        "UNIMPLEMENTED" => "Unimplemented",
        "INTERNAL" => "Internal",
        "UNAVAILABLE" => "Unavailable",
        "DATA_LOSS" => "DataLoss",
        "UNAUTHENTICATED" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Records one HTTP API request: `route` is a route template or `other`, `status` a status
/// code from [`http_status_label`].
pub fn record_http(route: &'static str, status: &'static str, duration: Duration) {
    static REQUESTS: HandleCache<(&'static str, &'static str), Counter> = HandleCache::new();
    static DURATIONS: HandleCache<&'static str, Histogram> = HandleCache::new();
    REQUESTS
        .get(
            &(route, status),
            || metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route, "status" => status),
        )
        .increment(1);
    DURATIONS
        .get(
            &route,
            || metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route),
        )
        .record(duration.as_secs_f64());
}

/// Returns the label of an HTTP status code: the codes the HTTP API answers with, else
/// `other`, so the label set stays closed.
pub fn http_status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        431 => "431",
        500 => "500",
        501 => "501",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// Records one finished reload.
pub fn record_reload(result: ReloadResult) {
    metrics::counter!(RELOADS_TOTAL, "result" => result.as_str()).increment(1);
}

/// The outcome of a reload, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new snapshot is serving.
    Updated,
    /// The bundle's content did not change; nothing was swapped.
    Unchanged,
    /// The bundle is invalid; the previous snapshot keeps serving.
    Failed,
}

impl ReloadResult {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
        }
    }
}

/// Records one failed load (counted in [`RELOADS_TOTAL`] as `failed` too) and why.
pub fn record_reload_failure(reason: ReloadFailureReason) {
    metrics::counter!(RELOADS_TOTAL, "result" => ReloadResult::Failed.as_str()).increment(1);
    metrics::counter!(RELOAD_FAILURES_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// Why a load failed, as a label value: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadFailureReason {
    /// A parse or validation error.
    Invalid,
    /// A file cannot be read, or is not one a bundle may hold (FIFO, device, link out).
    Unreadable,
    /// A file or the bundle is over its size cap.
    TooLarge,
    /// The bundle has no policies and empty bundles are not allowed.
    Empty,
    /// The reload drops more policies or tuples than `--max-reload-drop` allows.
    Dropped,
    /// The bundle kept changing while it was read.
    Unstable,
    /// The rebuild did not finish (it panicked or was cancelled).
    Internal,
}

impl ReloadFailureReason {
    /// Every reason, for registering the counters at 0.
    pub const ALL: [Self; 7] = [
        Self::Invalid,
        Self::Unreadable,
        Self::TooLarge,
        Self::Empty,
        Self::Dropped,
        Self::Unstable,
        Self::Internal,
    ];

    /// Returns the reason a bundle's errors make.
    pub fn of(errors: &verdict_core::InvalidBundle) -> Self {
        match errors.kind() {
            verdict_core::LoadErrorKind::Invalid => Self::Invalid,
            verdict_core::LoadErrorKind::Unreadable => Self::Unreadable,
            verdict_core::LoadErrorKind::TooLarge => Self::TooLarge,
            verdict_core::LoadErrorKind::Empty => Self::Empty,
        }
    }

    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Unreadable => "unreadable",
            Self::TooLarge => "too_large",
            Self::Empty => "empty",
            Self::Dropped => "dropped",
            Self::Unstable => "unstable",
            Self::Internal => "internal",
        }
    }

    /// Returns the reason as a phrase that quotes nothing from the bundle: what callers who
    /// may not see the details are told.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Invalid => "the bundle is invalid",
            Self::Unreadable => {
                "a bundle file cannot be read or is not a regular file inside the bundle"
            }
            Self::TooLarge => "a bundle file or the bundle is over its size limit",
            Self::Empty => "the bundle has no policies and empty bundles are not allowed",
            Self::Dropped => {
                "the new bundle drops more policies or tuples than --max-reload-drop allows"
            }
            Self::Unstable => "the bundle kept changing while it was read",
            Self::Internal => "the rebuild did not finish",
        }
    }
}

/// The serving snapshot, as the periodic gauges report it.
#[derive(Debug, Clone)]
pub struct SnapshotGauges<'a> {
    /// Its version.
    pub version: &'a str,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
    /// Policies.
    pub policies: usize,
    /// Tuples.
    pub tuples: usize,
    /// Entities.
    pub entities: usize,
}

/// Sets the info series of a version that no longer serves to 0 (it expires later).
pub fn retire_snapshot_version(version: &str) {
    metrics::gauge!(SNAPSHOT_INFO, "version" => version.to_owned()).set(0.0);
}

/// Refreshes the gauges (called periodically, so that an old version's series expire).
pub fn record_snapshot(snapshot: Option<&SnapshotGauges<'_>>) {
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "git_commit" => env!("VERDICT_GIT_COMMIT")
    )
    .set(1.0);
    let Some(snapshot) = snapshot else {
        metrics::gauge!(READY).set(0.0);
        return;
    };
    metrics::gauge!(READY).set(1.0);
    metrics::gauge!(SNAPSHOT_INFO, "version" => snapshot.version.to_owned()).set(1.0);
    let loaded = snapshot
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    metrics::gauge!(SNAPSHOT_LOADED_TIMESTAMP_SECONDS).set(loaded.as_secs_f64());
    let age = snapshot.loaded_at.elapsed().unwrap_or_default();
    metrics::gauge!(SNAPSHOT_AGE_SECONDS).set(age.as_secs_f64());
    metrics::gauge!(SNAPSHOT_POLICIES).set(snapshot.policies as f64);
    metrics::gauge!(SNAPSHOT_TUPLES).set(snapshot.tuples as f64);
    metrics::gauge!(SNAPSHOT_ENTITIES).set(snapshot.entities as f64);
}

/// Starts the TLS counters at 0 (called when TLS is configured).
pub fn init_tls_metrics() {
    for result in ["updated", "failed"] {
        metrics::counter!(TLS_RELOADS_TOTAL, "result" => result).absolute(0);
    }
    for reason in ["failed", "timeout", "overload"] {
        metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "reason" => reason).absolute(0);
    }
}

/// Records the serving certificate's expiry (refreshed periodically, so it does not expire).
pub fn record_tls_expiry(not_after_unix: i64) {
    metrics::gauge!(TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS).set(not_after_unix as f64);
}

/// Records one reload of the TLS files.
pub fn record_tls_reload(updated: bool) {
    let result = if updated { "updated" } else { "failed" };
    metrics::counter!(TLS_RELOADS_TOTAL, "result" => result).increment(1);
}

/// Records one TLS handshake that did not complete: `failed`, `timeout` or `overload`.
pub fn record_tls_handshake_failure(reason: &'static str) {
    metrics::counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "reason" => reason).increment(1);
}

/// Records whether the relationship store follower is connected.
pub fn set_store_connected(connected: bool) {
    metrics::gauge!(STORE_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// Records the store revision served and the store's head.
pub fn set_store_revisions(served: u64, head: u64) {
    metrics::gauge!(STORE_REVISION).set(served as f64);
    metrics::gauge!(STORE_HEAD_REVISION).set(head.max(served) as f64);
    metrics::gauge!(STORE_LAG_REVISIONS).set(head.saturating_sub(served) as f64);
    metrics::gauge!(STORE_CONNECTED).set(1.0);
}

/// Records the store tuples served and those left out.
pub fn set_store_tuples(tuples: usize, rejected: usize) {
    metrics::gauge!(STORE_TUPLES).set(tuples as f64);
    metrics::gauge!(STORE_REJECTED_TUPLES).set(rejected as f64);
}

/// Records the time since a store revision was last applied.
pub fn set_store_staleness(since_applied: Duration) {
    metrics::gauge!(STORE_SECONDS_SINCE_APPLIED).set(since_applied.as_secs_f64());
}

/// What a `WriteRelationships` call came to, for [`STORE_WRITES_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreWriteResult {
    /// Committed.
    Ok,
    /// Refused before the database: a malformed or invalid item.
    Invalid,
    /// Refused by the database's state: exists, missing, a precondition.
    Conflict,
    /// The store was unreachable.
    Unavailable,
    /// Anything else.
    Internal,
}

impl StoreWriteResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// Counts one `WriteRelationships` call.
pub fn record_store_write(result: StoreWriteResult) {
    metrics::counter!(STORE_WRITES_TOTAL, "result" => result.as_str()).increment(1);
}
