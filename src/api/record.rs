//! Recording a decision, the same way for every front-end: the decision metrics always, the
//! decision log when sampled. `verdict.v1` (`authorization.rs`, over gRPC and over HTTP),
//! Envoy ext_authz (`ext_authz.rs`) and AuthZEN (`http/authzen.rs`) all call
//! [`record_decision`]; what differs is only the `front_end` label and, for a gateway request,
//! the route.
//!
//! Also the request id both use: the caller's `x-request-id` when it is a sane token, else a
//! ULID the server assigns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use verdict_core::Decision;

use crate::serving::Served;
use crate::telemetry::decision_log::{self, DecisionLogSettings, DecisionRecord};
use crate::telemetry::metrics::{self as telemetry_metrics, DecisionMetrics};
use crate::telemetry::otel;

/// The front-end a decision was asked through: a label in metrics and the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrontEnd {
    /// `verdict.v1.Authorization`.
    Grpc,
    /// `envoy.service.auth.v3.Authorization`.
    ExtAuthz,
    /// The HTTP/JSON API: AuthZEN and `verdict.v1` over HTTP.
    Http,
}

impl FrontEnd {
    /// Returns the label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::ExtAuthz => "ext_authz",
            Self::Http => "http",
        }
    }
}

/// The id decision log records carry: the caller's `x-request-id` when it is a sane token,
/// else a number the server hands out, formatted only if a record is written.
#[derive(Debug, Clone)]
pub(crate) enum RequestId {
    Given(Arc<str>),
    /// Assigned by Verdict: a ULID (time-ordered, unique across restarts and replicas, unlike a
    /// per-process counter).
    Assigned(ulid::Ulid),
}

/// The longest `x-request-id` taken as given.
const MAX_REQUEST_ID_BYTES: usize = 128;

impl RequestId {
    /// Returns `given` when it is a sane id (1 to 128 letters, digits, `-`, `_`, `.` or `:`),
    /// else a new ULID.
    pub(crate) fn from_given(given: Option<&str>) -> Self {
        let given = given.filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_BYTES
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        });
        match given {
            Some(id) => Self::Given(Arc::from(id)),
            None => Self::Assigned(ulid::Ulid::generate()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Given(id) => f.write_str(id),
            Self::Assigned(id) => write!(f, "{id}"),
        }
    }
}

/// Who asked, through which front-end: what a decision is recorded with besides itself.
#[derive(Clone, Copy)]
pub(super) struct Asked<'a> {
    /// The snapshot that answered (its version and action labels).
    pub(super) served: &'a Served,
    pub(super) decision_log: DecisionLogSettings,
    /// The record's request id; formatted only when a record is written.
    pub(super) request_id: &'a dyn fmt::Display,
    /// The API key's name, when keys are on.
    pub(super) caller: Option<&'a str>,
    pub(super) front_end: FrontEnd,
    /// The route a gateway request matched.
    pub(super) route: Option<&'a str>,
}

/// Records one decision: metrics always, the decision log when sampled. `allowed` is the
/// front-end's answer, which may be stricter than the decision's outcome (ext_authz denies a
/// body with a denied property even when the action is allowed).
pub(super) fn record_decision(
    asked: &Asked<'_>,
    decision: &Decision,
    allowed: bool,
    elapsed: Duration,
) {
    let outcome = if allowed { "allow" } else { "deny" };
    let errored: Vec<&str> = decision
        .errors
        .iter()
        .map(|e| e.policy_id.as_str())
        .collect();
    telemetry_metrics::record_decision(&DecisionMetrics {
        decision: outcome,
        front_end: asked.front_end.as_str(),
        action: asked.served.action_labels.get(&decision.action),
        duration: elapsed,
        errored_policies: &errored,
        relation_depth_exceeded: decision.relation_depth_exceeded,
    });
    let trace_id = if otel::enabled() {
        // An event on the request's span (the transport's, see `crate::server`): the
        // outcome and action only, never the principal or the resource.
        tracing::info!(
            target: otel::TARGET,
            decision = outcome,
            action = %decision.action,
            front_end = asked.front_end.as_str(),
            "decision"
        );
        tracing::Span::current().record(
            "verdict.snapshot_version",
            asked.served.snapshot.served_version(),
        );
        otel::current_trace_id()
    } else {
        None
    };
    if !asked.decision_log.sample(allowed) {
        return;
    }
    let properties: Vec<(&str, &'static str)> = decision
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.outcome.as_str()))
        .collect();
    let request_id = asked.request_id.to_string();
    decision_log::log(&DecisionRecord {
        request_id: &request_id,
        caller: asked.caller,
        front_end: asked.front_end.as_str(),
        route: asked.route,
        principal: &decision.principal,
        action: &decision.action,
        resource: &decision.resource,
        decision: outcome,
        determining_policies: &decision.determining_policies,
        errored_policies: &errored,
        properties: &properties,
        snapshot_version: asked.served.snapshot.served_version(),
        latency: elapsed,
        relation_depth_exceeded: decision.relation_depth_exceeded,
        trace_id: trace_id.as_deref(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_gets_a_ulid() {
        assert_eq!(
            RequestId::from_given(Some("abc-123_x.y:z")).to_string(),
            "abc-123_x.y:z"
        );
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("a\nb"),
            Some("Bearer xyz"),
            Some(&*"a".repeat(129)),
        ] {
            let id = RequestId::from_given(bad).to_string();
            assert!(id.parse::<ulid::Ulid>().is_ok(), "{bad:?}: {id}");
        }
        // Assigned ids differ, even within one millisecond.
        assert_ne!(
            RequestId::from_given(None).to_string(),
            RequestId::from_given(None).to_string()
        );
    }
}
