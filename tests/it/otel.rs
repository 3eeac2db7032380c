//! OpenTelemetry traces through the real binary: a loopback OTLP/gRPC receiver (the
//! collector's own `TraceService`, from `opentelemetry-proto`) gets one server span per call,
//! continuing the caller's W3C `traceparent`, with the RPC's attributes and a `decision`
//! event; decision-log records carry the trace id; a bad endpoint is a usage error.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::Verdict;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use verdict::api::proto::CheckRequest;

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(value: Option<&any_value::Value>) -> Option<&str> {
    match value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ALLOWED: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_DENIED: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traced(request: CheckRequest, trace_id: &str) -> tonic::Request<CheckRequest> {
    let mut request = tonic::Request::new(request);
    let traceparent = format!("00-{trace_id}-{CALLER_SPAN}-01");
    request
        .metadata_mut()
        .insert("traceparent", MetadataValue::try_from(traceparent).unwrap());
    request
}

fn read(user: &str) -> CheckRequest {
    common::check(
        ("User", user),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["documents:read"]}),
    )
}

#[test]
fn spans_continue_the_callers_trace_and_reach_an_otlp_receiver() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let collector: SocketAddr = listener.local_addr().unwrap();
    let serving = receiver.clone();
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let endpoint = format!("http://{collector}");
    let verdict = Verdict::start(
        &common::example_bundle(),
        &["--otlp-endpoint", &endpoint, "--log-format", "json"],
    );
    let mut client = verdict.client(&runtime);
    runtime.block_on(async {
        let allowed = client
            .check(traced(read("bob"), TRACE_ALLOWED))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(allowed.decision, common::ALLOW);
        let denied = client
            .check(traced(read("dave"), TRACE_DENIED))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(denied.decision, common::DENY);
        // No traceparent: a trace of its own.
        client.check(read("bob")).await.unwrap();
    });
    // A graceful stop exports what is still queued.
    let lines = verdict.stop();

    let started = Instant::now();
    let spans = loop {
        let spans = receiver.0.lock().unwrap().clone();
        let checks = spans
            .iter()
            .filter(|s| s.name == "verdict.v1.Authorization/Check")
            .count();
        if checks >= 3 || started.elapsed() > Duration::from_secs(20) {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let checks: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "verdict.v1.Authorization/Check")
        .collect();
    assert_eq!(
        checks.len(),
        3,
        "spans received: {spans:#?}\nlog: {lines:#?}"
    );

    let allowed = checks
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ALLOWED)
        .unwrap_or_else(|| panic!("no span in the caller's trace: {checks:#?}"));
    assert_eq!(hex(&allowed.parent_span_id), CALLER_SPAN);
    assert_eq!(allowed.kind, 2, "SPAN_KIND_SERVER");
    let attributes = &allowed.attributes;
    assert_eq!(string(attribute(attributes, "rpc.system")), Some("grpc"));
    assert_eq!(
        string(attribute(attributes, "rpc.service")),
        Some("verdict.v1.Authorization")
    );
    assert_eq!(string(attribute(attributes, "rpc.method")), Some("Check"));
    assert_eq!(
        attribute(attributes, "rpc.grpc.status_code"),
        Some(&any_value::Value::IntValue(0))
    );
    assert!(
        string(attribute(attributes, "verdict.snapshot_version")).is_some_and(|v| v.len() == 16),
        "{attributes:?}"
    );
    let decision = allowed
        .events
        .iter()
        .find(|e| e.name == "decision")
        .unwrap_or_else(|| panic!("no decision event: {allowed:#?}"));
    assert_eq!(
        string(attribute(&decision.attributes, "decision")),
        Some("allow")
    );
    // Nothing about who asked or about what.
    let everything = format!("{spans:?}");
    for secret in ["bob", "dave", "roadmap", "documents:read"] {
        assert!(!everything.contains(secret), "`{secret}` in a span");
    }

    let denied = checks
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_DENIED)
        .expect("no span in the second caller's trace");
    assert_eq!(hex(&denied.parent_span_id), CALLER_SPAN);
    let own = checks
        .iter()
        .find(|s| ![TRACE_ALLOWED, TRACE_DENIED].contains(&hex(&s.trace_id).as_str()))
        .expect("no span for the call without a traceparent");
    assert!(own.parent_span_id.is_empty(), "a root span: {own:#?}");

    // Every deny is logged: its record names the trace it belongs to.
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "verdict::decision")
        .collect();
    let deny = records
        .iter()
        .find(|r| r["decision"] == "deny")
        .unwrap_or_else(|| panic!("no deny record in {lines:#?}"));
    assert_eq!(deny["trace_id"], TRACE_DENIED);
}

#[test]
fn a_bad_otlp_endpoint_is_a_usage_error() {
    for (endpoint, why) in [
        ("localhost:4317", "not an http:// or https://"),
        ("ftp://127.0.0.1:4317", "not an http:// or https://"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
            .args(["serve", "--policies"])
            .arg(common::example_bundle())
            .args(["--otlp-endpoint", endpoint])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{endpoint}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--otlp-endpoint") && stderr.contains(why),
            "{endpoint}: {stderr}"
        );
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["serve", "--policies"])
        .arg(common::example_bundle())
        .args([
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
            "--otlp-sample-ratio",
            "1.5",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("between 0 and 1"));
}
