//! The HTTP API's transport and `verdict.v1` over HTTP: hostile clients (malformed JSON, wrong
//! content types, huge and slow bodies, deep nesting, slowloris, pipelining, header floods)
//! get a clear 4xx and the service keeps answering; the same check over gRPC and HTTP gets the
//! same decision from the same snapshot; every served route is in the OpenAPI document; caller
//! keys apply as on the gRPC port. The client is a plain `std::net` HTTP/1.1 client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use common::TestServer;
use common::http1::{HttpResponse, connect, get, post_json, read_response, request};
use verdict::api::proto;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_with(
    runtime: &tokio::runtime::Runtime,
    bundle: &Path,
    adjust: impl FnOnce(&mut verdict::config::ValidConfig),
) -> (TestServer, SocketAddr) {
    let mut config = common::test_config(bundle);
    config.http.addr = Some("127.0.0.1:0".parse().unwrap());
    config.reload.watch = false;
    config.reload.poll_interval = None;
    adjust(&mut config);
    let server = runtime.block_on(TestServer::start_with(config));
    let addr = server.api_addr.unwrap();
    (server, addr)
}

fn todo_bundle() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/authzen/todo")
}

/// An evaluation that is allowed in the todo example.
fn allowed_evaluation() -> Value {
    json!({
        "subject": {"type": "identity", "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": "/todos"}
    })
}

/// Asserts the service still answers a normal request.
fn still_answers(addr: SocketAddr) {
    let response = post_json(addr, "/access/v1/evaluation", &allowed_evaluation());
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.json(), json!({"decision": true}));
}

fn assert_error(response: &HttpResponse, status: u16, message_start: &str) {
    assert_eq!(
        response.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["error"]["status"], status);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(message_start), "{message}");
}

#[test]
fn malformed_json_wrong_content_types_and_deep_nesting_are_clear_4xx() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    let path = "/access/v1/evaluation";
    let json_type = [("Content-Type", "application/json")];
    assert_error(
        &request(addr, "POST", path, &json_type, b"{\"subject\": {"),
        400,
        "body: not valid JSON",
    );
    assert_error(
        &request(addr, "POST", path, &json_type, b"[\"subject\"]"),
        400,
        "body: expected a JSON object, found an array",
    );
    assert_error(
        &request(addr, "POST", path, &json_type, &[0xff, 0xfe, 0x00]),
        400,
        "body: not valid JSON",
    );
    let body = allowed_evaluation().to_string();
    assert_error(
        &request(
            addr,
            "POST",
            path,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        ),
        415,
        "content-type: expected `application/json`, found `text/plain`",
    );
    assert_error(
        &request(addr, "POST", path, &[], body.as_bytes()),
        415,
        "content-type: expected `application/json`, found none",
    );
    assert_error(
        &request(
            addr,
            "POST",
            "/v1/check",
            &[("Content-Type", "application/xml")],
            b"<a/>",
        ),
        415,
        "content-type: ",
    );
    // 10,000 nested arrays in the context: refused before parsing.
    let deep = format!(
        "{{\"subject\": {{\"type\": \"identity\", \"id\": \"x\"}}, \"action\": {{\"name\": \"GET\"}}, \
         \"resource\": {{\"type\": \"route\", \"id\": \"/todos\"}}, \"context\": {{\"a\": {}1{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_error(
        &request(addr, "POST", path, &json_type, deep.as_bytes()),
        400,
        "body: JSON nested deeper than the limit",
    );
    // Within the body's bound but beyond the context's: the core names the field.
    let nested = json!({"subject": {"type": "identity", "id": "x"}, "action": {"name": "GET"},
        "resource": {"type": "route", "id": "/todos"},
        "context": {"a": serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(35), "]".repeat(35))).unwrap()}});
    assert_error(&post_json(addr, path, &nested), 400, "context.a");
    // Unknown routes and methods.
    assert_error(
        &get(addr, "/access/v2/evaluation"),
        404,
        "path: no such route",
    );
    assert_error(&get(addr, "/access/v1/evaluation"), 405, "method: ");
    still_answers(addr);
    runtime.block_on(server.stop());
}

/// Sends headers announcing (or streaming) a body, then as much of the body as the server
/// reads; returns the response.
fn send_large(addr: SocketAddr, head: &str, body: &[u8]) -> Option<HttpResponse> {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes()).ok()?;
    let mut writer = stream.try_clone().ok()?;
    let body = body.to_vec();
    // The server may answer and close before reading it all: a failed write is expected.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let response = read_response(&mut BufReader::new(stream));
    let _ = sender.join();
    response
}

#[test]
fn ten_megabyte_bodies_are_refused_with_413() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    let body = vec![b' '; 10 << 20];
    // Announced: refused from its length, before it is read.
    let head = format!(
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let response = send_large(addr, &head, &body).expect("an answer");
    assert_error(&response, 413, "body: over the limit of 1048576 bytes");
    // Chunked, with no length: refused once the limit is passed.
    let mut chunked = Vec::new();
    for chunk in body.chunks(1 << 16) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let response = send_large(addr, head, &chunked).expect("an answer");
    assert_error(&response, 413, "body: over the limit");
    still_answers(addr);
    runtime.block_on(server.stop());
}

#[test]
fn slow_clients_are_cut_off_and_others_keep_being_answered() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    // Slowloris: half a header line, then nothing. The server closes the connection (after
    // its header timeout); meanwhile everyone else is answered.
    let mut slow = connect(addr);
    slow.write_all(b"POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .unwrap();
    let mut slow_connections: Vec<_> = (0..20)
        .map(|_| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /openapi.json HTTP/1.1\r\nHo")
                .unwrap();
            stream
        })
        .collect();
    still_answers(addr);
    let mut rest = Vec::new();
    // Either closed without an answer, or answered 408 and closed: never left open.
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "{read:?}");
    if !rest.is_empty() {
        assert!(
            String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
            "{rest:?}"
        );
    }
    for stream in &mut slow_connections {
        let mut rest = Vec::new();
        assert!(stream.read_to_end(&mut rest).is_ok());
    }
    // A body that never finishes: 408 once --request-body-timeout passes, holding no slot.
    let mut stream = connect(addr);
    stream
        .write_all(
            b"POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"subject\"",
        )
        .unwrap();
    let response = read_response(&mut BufReader::new(stream)).expect("an answer");
    assert_error(&response, 408, "body: not received within");
    still_answers(addr);
    runtime.block_on(server.stop());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    let allowed = allowed_evaluation().to_string();
    let mut denied = allowed_evaluation();
    denied["action"]["name"] = json!("DELETE");
    let denied = denied.to_string();
    let mut pipeline = Vec::new();
    for (i, body) in [&allowed, &denied, "{", &allowed].iter().enumerate() {
        pipeline.extend_from_slice(
            format!(
                "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 X-Request-ID: pipelined-{i}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let mut stream = connect(addr);
    stream.write_all(&pipeline).unwrap();
    let mut reader = BufReader::new(stream);
    let answers: Vec<HttpResponse> = (0..4)
        .map(|i| read_response(&mut reader).unwrap_or_else(|| panic!("answer {i}")))
        .collect();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.header("x-request-id"),
            Some(&*format!("pipelined-{i}"))
        );
    }
    assert_eq!(answers[0].json(), json!({"decision": true}));
    assert_eq!(answers[1].json(), json!({"decision": false}));
    assert_eq!(answers[2].status, 400);
    assert_eq!(answers[3].json(), json!({"decision": true}));
    runtime.block_on(server.stop());
}

#[test]
fn header_floods_are_refused_and_the_service_keeps_answering() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    for (count, size) in [(2000, 8), (64, 1024), (1, 64 * 1024)] {
        let mut head = String::from("GET /openapi.json HTTP/1.1\r\nHost: x\r\n");
        for i in 0..count {
            head.push_str(&format!("X-Flood-{i}: {}\r\n", "a".repeat(size)));
        }
        head.push_str("\r\n");
        let mut stream = connect(addr);
        // The server may close before reading everything.
        let _ = stream.write_all(head.as_bytes());
        // Closed without an answer is refused too.
        if let Some(response) = read_response(&mut BufReader::new(stream)) {
            assert_eq!(response.status, 431, "{count} x {size}");
        }
        still_answers(addr);
    }
    runtime.block_on(server.stop());
}

/// A decision table request (`policies/tests/*.yaml`) as a `verdict.v1` JSON request.
fn check_json(input: &verdict_core::CheckInput) -> Value {
    let entity = |e: &verdict_core::EntityRef| json!({"type": e.entity_type, "id": e.id});
    json!({
        "principal": entity(&input.principal),
        "action": input.action,
        "resource": entity(&input.resource),
        "context": Value::Object(input.context.clone()),
        "entities": input.entities.iter().map(|e| json!({
            "uid": entity(&e.uid),
            "attrs": Value::Object(e.attrs.clone()),
            "parents": e.parents.iter().map(entity).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "properties": input.properties,
    })
}

fn to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    fn value(v: &Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(items) => Kind::ListValue(prost_types::ListValue {
                values: items.iter().map(value).collect(),
            }),
            Value::Object(fields) => Kind::StructValue(to_struct(fields)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    prost_types::Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
    }
}

fn check_proto(input: &verdict_core::CheckInput) -> proto::CheckRequest {
    let entity = |e: &verdict_core::EntityRef| proto::EntityRef {
        r#type: e.entity_type.clone(),
        id: e.id.clone(),
    };
    proto::CheckRequest {
        principal: Some(entity(&input.principal)),
        action: input.action.clone(),
        resource: Some(entity(&input.resource)),
        context: Some(to_struct(&input.context)),
        entities: input
            .entities
            .iter()
            .map(|e| proto::Entity {
                uid: Some(entity(&e.uid)),
                attrs: Some(to_struct(&e.attrs)),
                parents: e.parents.iter().map(entity).collect(),
            })
            .collect(),
        properties: input.properties.clone(),
        token: String::new(),
        ..proto::CheckRequest::default()
    }
}

#[test]
fn every_example_request_gets_the_same_answer_over_grpc_and_http() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &common::example_bundle(), |_| {});
    let mut client = runtime.block_on(server.client());
    let tests = common::example_bundle().join("tests");
    let mut compared = 0;
    let mut batch_json = Vec::new();
    let mut batch_proto = Vec::new();
    for file in std::fs::read_dir(&tests).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        let cases: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        for case in cases["cases"].as_sequence().unwrap() {
            let input: verdict_core::CheckInput =
                serde_yaml_ng::from_value(case["request"].clone()).unwrap();
            let over_http = post_json(addr, "/v1/check", &check_json(&input));
            let over_grpc = runtime.block_on(client.check(check_proto(&input)));
            match over_grpc {
                Ok(response) => {
                    let response = response.into_inner();
                    assert_eq!(over_http.status, 200, "{:?}", over_http.json());
                    let body = over_http.json();
                    let decision = match response.decision {
                        1 => "DECISION_ALLOW",
                        _ => "DECISION_DENY",
                    };
                    assert_eq!(body["decision"], decision, "{input:?}");
                    assert_eq!(body["snapshotVersion"], response.snapshot_version);
                    assert_eq!(
                        over_http.header("x-verdict-snapshot-version"),
                        Some(response.snapshot_version.as_str())
                    );
                    let policies: Vec<String> = body["determiningPolicies"]
                        .as_array()
                        .map(|p| p.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default();
                    assert_eq!(policies, response.determining_policies, "{input:?}");
                    assert_eq!(
                        body["properties"].as_array().map_or(0, Vec::len),
                        response.properties.len()
                    );
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{input:?}");
                    assert_eq!(over_http.status, 400, "{input:?}");
                    assert_eq!(over_http.error_message(), status.message());
                }
            }
            batch_json.push(check_json(&input));
            batch_proto.push(check_proto(&input));
            compared += 1;
        }
    }
    assert!(compared >= 40, "{compared}");
    // The batch, in pieces of the batch limit, both ways: the same results in the same order.
    for (json_chunk, proto_chunk) in batch_json.chunks(100).zip(batch_proto.chunks(100)) {
        let over_http = post_json(addr, "/v1/batch-check", &json!({"checks": json_chunk}));
        let over_grpc = runtime
            .block_on(client.batch_check(proto::BatchCheckRequest {
                checks: proto_chunk.to_vec(),
                ..proto::BatchCheckRequest::default()
            }))
            .unwrap()
            .into_inner();
        let body = over_http.json();
        assert_eq!(body["snapshotVersion"], over_grpc.snapshot_version);
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), over_grpc.results.len());
        for (http, grpc) in results.iter().zip(&over_grpc.results) {
            use proto::batch_check_result::Result as Item;
            match grpc.result.as_ref().unwrap() {
                Item::Response(r) => {
                    let allowed = r.decision == proto::Decision::Allow as i32;
                    assert_eq!(http["response"]["decision"] == "DECISION_ALLOW", allowed);
                }
                Item::Error(e) => {
                    assert_eq!(http["error"]["message"], e.message);
                    assert_eq!(http["error"]["code"], e.code);
                }
            }
        }
    }
    runtime.block_on(server.stop());
}

#[test]
fn verdict_json_is_strict_and_names_fields() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &common::example_bundle(), |_| {});
    let cases = [
        (
            json!({"principle": {"type": "User", "id": "bob"}}),
            "principle: unknown field",
        ),
        (
            json!({"principal": {"type": "User", "id": "bob"}, "action": 3}),
            "action: expected a string, found a number",
        ),
        (
            json!({"action": "read", "resource": {"type": "Document", "id": "d"}}),
            "principal: required field is missing",
        ),
        (
            json!({"principal": {"type": "User", "id": "bob"}, "action": "read",
                "resource": {"type": "Document", "id": "roadmap"}, "context": {"n": 1.5}}),
            "context.n: `1.5` is not an integer",
        ),
    ];
    for (body, expected) in cases {
        let response = post_json(addr, "/v1/check", &body);
        assert_error(&response, 400, expected);
    }
    let batch = post_json(
        addr,
        "/v1/batch-check",
        &json!({"checks": [{"principal": 1}]}),
    );
    assert_error(
        &batch,
        400,
        "checks[0].principal: expected an object, found a number",
    );
    runtime.block_on(server.stop());
}

#[test]
fn every_served_route_is_in_the_openapi_document() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    let response = get(addr, "/openapi.json");
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        document, on_disk,
        "served /openapi.json is docs/openapi.json"
    );
    for (method, path) in verdict::api::http::ROUTES {
        assert!(
            document["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        // And it is really served: anything but 404.
        let answer = request(
            addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert_ne!(answer.status, 404, "{method} {path}");
    }
    // And nothing is documented that is not served.
    let documented = document["paths"].as_object().unwrap();
    for (path, operations) in documented {
        for method in operations.as_object().unwrap().keys() {
            assert!(
                verdict::api::http::ROUTES
                    .iter()
                    .any(|(m, p)| p == path && m.eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not served"
            );
        }
    }
    runtime.block_on(server.stop());
}

#[test]
fn api_keys_guard_the_http_api_as_they_guard_grpc() {
    let runtime = runtime();
    let key = "0123456789abcdef0123456789abcdef";
    let (server, addr) = start_with(&runtime, &todo_bundle(), |config| {
        let ring =
            verdict::config::KeyRing::parse(&format!("gateway check {key}"), "test").unwrap();
        config.caller_auth.api_keys = std::sync::Arc::new(ring);
    });
    let body = allowed_evaluation().to_string();
    let json_type = ("Content-Type", "application/json");
    assert_error(
        &request(
            addr,
            "POST",
            "/access/v1/evaluation",
            &[json_type],
            body.as_bytes(),
        ),
        401,
        "missing or invalid API key",
    );
    assert_error(
        &request(
            addr,
            "POST",
            "/access/v1/evaluation",
            &[json_type, ("Authorization", "Bearer wrong")],
            body.as_bytes(),
        ),
        401,
        "missing or invalid API key",
    );
    let bearer = format!("Bearer {key}");
    let allowed = request(
        addr,
        "POST",
        "/access/v1/evaluation",
        &[json_type, ("Authorization", &bearer)],
        body.as_bytes(),
    );
    assert_eq!(allowed.json(), json!({"decision": true}));
    // Metadata stays open.
    assert_eq!(get(addr, "/.well-known/authzen-configuration").status, 200);
    runtime.block_on(server.stop());
}

#[test]
fn h2c_prior_knowledge_is_served() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |_| {});
    let status = runtime.block_on(async move {
        let (status, body, _connection, _client) = h2c_evaluation(addr).await;
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    });
    assert_eq!(status, (200, json!({"decision": true})));
    runtime.block_on(server.stop());
}

/// Sends the allowed evaluation over a new h2c (prior knowledge) connection; returns the
/// status, the body, the connection's task (it ends when the connection closes) and the
/// client's handle (dropping it closes the connection from the client's side).
async fn h2c_evaluation(
    addr: SocketAddr,
) -> (
    u16,
    Vec<u8>,
    tokio::task::JoinHandle<()>,
    h2::client::SendRequest<bytes::Bytes>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/access/v1/evaluation"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(allowed_evaluation().to_string().into(), true)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes, connection, client)
}

/// An h2c connection that answered one request and then sends nothing but answers to the
/// server's keepalive pings is closed after `--idle-timeout`, as on the gRPC port (hyper's
/// header timer closes only idle HTTP/1 connections); others keep being answered.
#[test]
fn an_idle_h2c_connection_is_closed_after_the_idle_timeout() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |config| {
        config.listener.idle_timeout = Some(Duration::from_millis(800));
        config.listener.http2_keepalive_interval = Some(Duration::from_millis(100));
    });
    runtime.block_on(async move {
        // The client stays open: only the server can close the connection.
        let (status, _, connection, _client) = h2c_evaluation(addr).await;
        assert_eq!(status, 200);
        // Then nothing but pings and their answers: the server closes the connection.
        let closed = tokio::time::timeout(Duration::from_secs(20), connection).await;
        assert!(
            closed.is_ok(),
            "an h2c connection with no request for 20 s was still open"
        );
    });
    still_answers(addr);
    runtime.block_on(server.stop());
}

#[test]
fn http_decisions_are_counted_and_logged_as_the_http_front_end() {
    let mut verdict = common::process::Verdict::start(
        &todo_bundle(),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--decision-log-allow-rate",
            "1",
        ],
    );
    let api: SocketAddr = loop {
        let line = match verdict
            .seen
            .iter()
            .find(|l| l.contains("http api listening"))
        {
            Some(line) => line.clone(),
            None => {
                let line = verdict
                    .lines
                    .recv_timeout(Duration::from_secs(60))
                    .expect("the HTTP API address");
                verdict.seen.push(line.clone());
                continue;
            }
        };
        let addr = line
            .split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next();
        break addr.unwrap().parse().unwrap();
    };
    let answer = request(
        api,
        "POST",
        "/access/v1/evaluation",
        &[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "observed-1"),
        ],
        allowed_evaluation().to_string().as_bytes(),
    );
    assert_eq!(answer.json(), json!({"decision": true}));
    let (status, metrics) = common::process::http_get(verdict.metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("verdict_decisions_total")
                && l.contains("front_end=\"http\"")
                && l.contains("decision=\"allow\"")
                && l.contains("GET")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("verdict_http_requests_total")
                && l.contains("route=\"/access/v1/evaluation\"")
                && l.contains("status=\"200\"")),
        "{metrics}"
    );
    let lines = verdict.stop();
    let record = lines
        .iter()
        .find(|l| l.contains("observed-1"))
        .unwrap_or_else(|| panic!("no decision record: {lines:#?}"));
    assert!(record.contains("http"), "{record}");
    assert!(record.contains("gateway-read"), "{record}");
}

/// One HTTP/1.1 request over TLS (ALPN `http/1.1`), with `client` as the client certificate;
/// `None` if the handshake or the exchange fails.
async fn https_request(
    addr: SocketAddr,
    ca: &common::pki::Ca,
    client: &common::pki::Leaf,
    body: &str,
) -> Option<HttpResponse> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(client.cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap(),
    )
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()?;
    let head = format!(
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.ok()?;
    let mut bytes = Vec::new();
    let _ = tls.read_to_end(&mut bytes).await;
    read_response(&mut BufReader::new(bytes.as_slice()))
}

#[test]
fn the_http_api_serves_tls_with_the_client_certificate_allow_lists() {
    use common::pki::{Ca, write};
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let server_leaf = ca.server();
    let paths = write(
        dir.path(),
        &[
            ("tls.crt", &server_leaf.cert),
            ("tls.key", &server_leaf.key),
            ("ca.crt", &ca.pem()),
        ],
    );
    let (server, addr) = start_with(&runtime, &todo_bundle(), |config| {
        config.tls.files = Some(verdict::config::TlsFiles {
            cert: paths[0].clone(),
            key: paths[1].clone(),
            client_ca: Some(paths[2].clone()),
        });
        config.tls.allowed_clients = vec!["spiffe://test/ns/edge/*".to_owned()];
    });
    let body = allowed_evaluation().to_string();
    let gateway = ca.client("spiffe://test/ns/edge/sa/gateway");
    let answer = runtime
        .block_on(https_request(addr, &ca, &gateway, &body))
        .expect("an answer over TLS");
    assert_eq!(answer.json(), json!({"decision": true}));
    let other = ca.client("spiffe://test/ns/other/sa/x");
    let refused = runtime
        .block_on(https_request(addr, &ca, &other, &body))
        .expect("an answer over TLS");
    assert_error(
        &refused,
        403,
        "client identity (spiffe://test/ns/other/sa/x)",
    );
    // A client certificate from another CA does not complete the handshake; plaintext HTTP is
    // not served.
    let stranger = Ca::new("Other CA").client("spiffe://test/ns/edge/sa/gateway");
    let refused = runtime.block_on(https_request(addr, &ca, &stranger, &body));
    assert!(refused.is_none(), "{refused:?}");
    let mut plain = connect(addr);
    let _ = plain.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert!(!rest.starts_with(b"HTTP/1.1 200"), "{rest:?}");
    runtime.block_on(server.stop());
}

#[test]
fn shutdown_lets_a_request_in_progress_finish_and_refuses_new_connections() {
    let runtime = runtime();
    let (server, addr) = start_with(&runtime, &todo_bundle(), |config| {
        // Room for the test to finish sending its body while the server drains.
        config.limits.request_body_timeout = Duration::from_secs(60);
    });
    let body = allowed_evaluation().to_string();
    let mut stream = connect(addr);
    // `Expect: 100-continue`: the server says `100 Continue` once the handler reads the body,
    // so the request is known to be in progress before the shutdown starts.
    stream
        .write_all(
            format!(
                "POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let interim = read_response(&mut reader).expect("100 Continue");
    assert_eq!(interim.status, 100);
    let stopped = runtime.spawn(server.stop());
    // Wait (bounded) until the listener is closed: new connections are refused or dropped.
    let mut closed = false;
    for _ in 0..600 {
        match std::net::TcpStream::connect(addr) {
            Err(_) => closed = true,
            Ok(mut probe) => {
                probe
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let _ = probe.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut answer = [0u8; 1];
                closed = !matches!(probe.read(&mut answer), Ok(1));
            }
        }
        if closed {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "the listener still accepts after shutdown");
    // The request that was in progress completes.
    stream.write_all(body.as_bytes()).unwrap();
    let answer = read_response(&mut reader).expect("the answer");
    assert_eq!(answer.json(), json!({"decision": true}));
    runtime.block_on(stopped).unwrap();
}
