//! Hostile clients against the real `verdict serve` binary (issue 15): each test is an
//! attacker's client, raw HTTP/2 frames (the `h2` crate) or raw TCP, on loopback, bounded in
//! count and in time, with the server's own `/metrics` as the witness.
//!
//! | finding | test |
//! |---|---|
//! | 1. header-only streams starve everyone | `header_only_streams_do_not_starve_a_normal_client`, `one_connection_cannot_hold_every_request_slot` |
//! | 3. open-file limit: accept spins, probes time out | `idle_connections_past_the_open_file_limit_leave_the_server_calm_and_ready` |
//! | 7. wrong status codes | `malformed_framing_is_invalid_argument`, `cancels_drops_and_client_deadlines_are_counted_as_such` |
//! | 8. the HTTP port keeps slow clients | `the_http_port_closes_a_slowloris_connection` |

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{Verdict, http_get, try_http_get};
use common::{ALLOW, check, example_bundle};
use serde_json::json;
use tonic::Code;
use tonic::codegen::http;

const CHECK_PATH: &str = "/verdict.v1.Authorization/Check";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn good() -> verdict::api::proto::CheckRequest {
    check(
        ("User", "bob"),
        "read",
        ("Document", "roadmap"),
        json!({"scopes": ["documents:read"]}),
    )
}

/// A Check request's headers, as a gRPC client sends them, plus `extra`.
fn check_headers(addr: SocketAddr, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// An HTTP/2 connection with its driver running in the background.
async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let (send, _, _) = h2_connect_with_ping(addr).await;
    send
}

/// An HTTP/2 connection with its driver in the background, a ping to learn that the server
/// has read what was sent, and the driver's handle (aborting it drops the connection).
async fn h2_connect_with_ping(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::PingPong,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let ping = connection.ping_pong().unwrap();
    let driver = tokio::spawn(connection);
    (send, ping, driver)
}

/// Returns once the server has read every frame queued before the call: h2 may write a ping
/// ahead of queued stream frames, but those go out in the same write, so the second ping
/// follows them and its answer proves they arrived.
async fn server_has_read(ping: &mut h2::PingPong) {
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), ping.ping(h2::Ping::opaque()))
            .await
            .expect("no answer to a ping")
            .unwrap();
    }
}

/// The grpc-status of an answer: from its headers (trailers-only) or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> Option<String> {
    let response = response.await.ok()?;
    if let Some(status) = response.headers().get("grpc-status") {
        return Some(status.to_str().ok()?.to_owned());
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.ok()??;
    Some(trailers.get("grpc-status")?.to_str().ok()?.to_owned())
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn metric(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most 20 s) until `/metrics` shows `name{labels}` at `at_least`; returns the text.
fn wait_for_metric(verdict: &Verdict, name: &str, labels: &[&str], at_least: f64) -> String {
    let started = Instant::now();
    loop {
        let (_, text) = http_get(verdict.metrics, "/metrics");
        if metric(&text, name, labels) >= at_least {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}{labels:?} never reached {at_least}:\n{}",
            text.lines()
                .filter(|line| line.starts_with(name))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding 1. Five connections keep as many streams open as the server allows, each with
/// headers and never a message; the server's request slots are set well below their number
/// (64 against 5 × 100 streams), so admission at the headers would shed everyone. A normal
/// client polling alongside gets its answers, none slower than the body timeout plus a margin.
#[test]
fn header_only_streams_do_not_starve_a_normal_client() {
    let verdict = Verdict::start(
        &example_bundle(),
        &[
            "--max-concurrent-requests",
            "64",
            "--request-body-timeout",
            "1s",
        ],
    );
    let runtime = runtime();
    let addr = verdict.grpc;
    let attack = Duration::from_secs(5);
    let opened = Arc::new(AtomicUsize::new(0));
    let (ok, slowest, failures) = runtime.block_on(async {
        let attack_ends = tokio::time::Instant::now() + attack;
        let mut attackers = Vec::new();
        for _ in 0..5 {
            let opened = Arc::clone(&opened);
            attackers.push(tokio::spawn(async move {
                let send = h2_connect(addr).await;
                let mut streams = 0;
                // At most 5000 streams per connection, for `attack`.
                while tokio::time::Instant::now() < attack_ends && streams < 5000 {
                    let ready =
                        tokio::time::timeout(Duration::from_millis(100), send.clone().ready())
                            .await;
                    let mut ready = match ready {
                        Ok(Ok(ready)) => ready,
                        Ok(Err(_)) => break,
                        // No stream free: wait for the server to answer some.
                        Err(_) => continue,
                    };
                    let Ok((response, body)) = ready.send_request(check_headers(addr, &[]), false)
                    else {
                        break;
                    };
                    streams += 1;
                    opened.fetch_add(1, Ordering::Relaxed);
                    // Hold the stream open, message never sent, until the server answers.
                    tokio::spawn(async move {
                        let _body = body;
                        let _ = tokio::time::timeout(Duration::from_secs(10), response).await;
                    });
                }
            }));
        }
        // Let the attackers fill their connections first.
        while opened.load(Ordering::Relaxed) < 400 {
            assert!(
                tokio::time::Instant::now() < attack_ends,
                "the attack never got going"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client =
            verdict::api::proto::authorization_client::AuthorizationClient::new(channel);
        let (mut ok, mut slowest, mut failures) = (0, Duration::ZERO, Vec::new());
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..60 {
            tick.tick().await;
            let started = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(10), client.check(good())).await;
            slowest = slowest.max(started.elapsed());
            match answer {
                Ok(Ok(answer)) if answer.get_ref().decision == ALLOW => ok += 1,
                Ok(Ok(answer)) => failures.push(format!("{:?}", answer.into_inner())),
                Ok(Err(status)) => failures.push(format!("{:?}", status.code())),
                Err(_) => failures.push("no answer in 10 s".to_owned()),
            }
        }
        for attacker in attackers {
            attacker.await.unwrap();
        }
        (ok, slowest, failures)
    });
    let opened = opened.load(Ordering::Relaxed);
    assert!(
        opened >= 500,
        "only {opened} header-only streams were opened"
    );
    assert!(
        ok >= 60 * 99 / 100,
        "{ok} of 60 answered; failures: {failures:?}"
    );
    assert!(
        slowest < Duration::from_secs(1) + Duration::from_secs(2),
        "a normal request waited {slowest:?}"
    );
    let metrics = wait_for_metric(
        &verdict,
        "verdict_limit_rejections_total",
        &[r#"limit="body_timeout""#],
        1.0,
    );
    assert_eq!(
        metric(
            &metrics,
            "verdict_limit_rejections_total",
            &[r#"limit="concurrency""#]
        ),
        0.0,
        "header-only streams took request slots"
    );
    verdict.stop();
}

/// A request that takes milliseconds (in a debug build): many properties, each a full
/// evaluation.
fn slow_request() -> verdict::api::proto::CheckRequest {
    let mut request = check(("User", "carol"), "readProfile", ("User", "bob"), json!({}));
    request.properties = (0..100).map(|i| format!("field{i}")).collect();
    request
}

/// Fairness: one connection may hold `--max-concurrent-requests-per-connection` request slots,
/// not more, while another connection is still served.
#[test]
fn one_connection_cannot_hold_every_request_slot() {
    let verdict = Verdict::start(
        &example_bundle(),
        &["--max-concurrent-requests-per-connection", "1"],
    );
    let runtime = runtime();
    runtime.block_on(async {
        let greedy = verdict.client_async().await;
        let mut shed_message = None;
        // Bursts of 8 requests at once on one connection, at most 50 bursts, until one is shed.
        for _ in 0..50 {
            let burst: Vec<_> = (0..8)
                .map(|_| {
                    let mut client = greedy.clone();
                    tokio::spawn(async move { client.check(slow_request()).await })
                })
                .collect();
            for answer in burst {
                if let Err(status) = answer.await.unwrap() {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    shed_message = Some(status.message().to_owned());
                }
            }
            if shed_message.is_some() {
                break;
            }
        }
        let message = shed_message.expect("8 requests at once on one connection were never shed");
        assert!(message.contains("on this connection"), "{message}");
        // Another connection is still answered.
        let answer = verdict.client_async().await.check(good()).await.unwrap();
        assert_eq!(answer.into_inner().decision, ALLOW);
    });
    let metrics = wait_for_metric(
        &verdict,
        "verdict_limit_rejections_total",
        &[r#"limit="connection_concurrency""#],
        1.0,
    );
    assert_eq!(
        metric(
            &metrics,
            "verdict_limit_rejections_total",
            &[r#"limit="concurrency""#]
        ),
        0.0
    );
    verdict.stop();
}

/// CPU time (user + system) of process `pid`, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Finding 3. Under an open-file limit of 128, 300 idle connections: the server caps its
/// gRPC connections to fit (closing the rest as they come), so `/readyz` still answers, no
/// accept loop spins, and no reload fails for want of a file descriptor.
#[test]
fn idle_connections_past_the_open_file_limit_leave_the_server_calm_and_ready() {
    let verdict = Verdict::start_with_open_files(&example_bundle(), &[], 128);
    let pid = verdict.child.id();
    let mut idle = Vec::new();
    for _ in 0..300 {
        // Connections past the cap are accepted and closed by the server; keep them anyway.
        if let Ok(stream) =
            std::net::TcpStream::connect_timeout(&verdict.grpc, Duration::from_secs(2))
        {
            idle.push(stream);
        }
    }
    assert!(idle.len() >= 128, "only {} connections opened", idle.len());
    let metrics = wait_for_metric(
        &verdict,
        "verdict_limit_rejections_total",
        &[r#"limit="connections""#],
        1.0,
    );
    assert_eq!(
        metric(&metrics, "verdict_reloads_total", &[r#"result="failed""#]),
        0.0
    );

    // Over a few seconds (the poll reload runs every 2 s and opens the bundle's files), the
    // server stays under half a core and keeps answering its probes.
    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    let watch = Duration::from_secs(3);
    while wall_before.elapsed() < watch {
        let (status, body) =
            try_http_get(verdict.metrics, "/readyz").expect("/readyz did not answer");
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu = cpu_time(pid) - cpu_before;
    let wall = wall_before.elapsed();
    assert!(
        cpu < wall / 2,
        "the server used {cpu:?} of CPU in {wall:?} with idle connections held"
    );
    let (_, metrics) = http_get(verdict.metrics, "/metrics");
    assert_eq!(
        metric(&metrics, "verdict_reloads_total", &[r#"result="failed""#]),
        0.0,
        "a reload failed while the connections were held"
    );

    // Once they go, new clients are served again.
    drop(idle);
    let runtime = runtime();
    let started = Instant::now();
    loop {
        let answer = runtime.block_on(async {
            let mut client = verdict.client_async().await;
            client.check(good()).await
        });
        if answer.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer after the idle connections closed: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    verdict.stop();
}

/// Finding 7, malformed framing: each is INVALID_ARGUMENT (a compression flag with an encoding
/// the server does not accept is UNIMPLEMENTED, as gRPC says), counted as `decoding`.
#[test]
fn malformed_framing_is_invalid_argument() {
    let verdict = Verdict::start(&example_bundle(), &[]);
    let runtime = runtime();
    // (case, body, extra headers, expected grpc-status)
    type Case<'a> = (&'a str, &'a [u8], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 6] = [
        (
            "length prefix longer than the data",
            &[0, 0, 0, 0, 10, 1, 2],
            &[],
            "3",
        ),
        ("3-byte prefix", &[0, 0, 0], &[], "3"),
        ("empty body", &[], &[], "3"),
        (
            "compressed flag without an encoding",
            &[1, 0, 0, 0, 0],
            &[],
            "3",
        ),
        ("two messages", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], "3"),
        (
            "compressed in an encoding not accepted",
            &[1, 0, 0, 0, 0],
            &[("grpc-encoding", "snappy")],
            "12",
        ),
    ];
    runtime.block_on(async {
        let send = h2_connect(verdict.grpc).await;
        for (case, body, headers, expected) in cases {
            let mut send = send.clone().ready().await.unwrap();
            let (response, mut stream) = send
                .send_request(check_headers(verdict.grpc, headers), body.is_empty())
                .unwrap();
            if !body.is_empty() {
                stream
                    .send_data(Bytes::copy_from_slice(body), true)
                    .unwrap();
            }
            let status = tokio::time::timeout(Duration::from_secs(10), grpc_status(response))
                .await
                .unwrap_or_else(|_| panic!("{case}: no answer"));
            assert_eq!(status.as_deref(), Some(expected), "{case}");
        }
    });
    let metrics = wait_for_metric(
        &verdict,
        "verdict_grpc_requests_total",
        &[
            &format!(r#"method="{}""#, &CHECK_PATH[1..]),
            r#"code="INVALID_ARGUMENT""#,
        ],
        5.0,
    );
    assert_eq!(
        metric(
            &metrics,
            "verdict_grpc_requests_total",
            &[r#"code="INTERNAL""#]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "verdict_limit_rejections_total",
            &[r#"limit="decoding""#]
        ),
        6.0
    );
    verdict.stop();
}

/// Finding 7, the client's end: a stream reset with CANCEL and a dropped TCP connection are
/// CANCELLED, a client deadline (`grpc-timeout`) that passes is DEADLINE_EXCEEDED, each in
/// `verdict_grpc_requests_total`.
#[test]
fn cancels_drops_and_client_deadlines_are_counted_as_such() {
    let verdict = Verdict::start(&example_bundle(), &[]);
    let runtime = runtime();
    let check_label = format!(r#"method="{}""#, &CHECK_PATH[1..]);
    let partial: &[u8] = &[0, 0, 0, 0, 10, 1];
    runtime.block_on(async {
        // RST_STREAM(CANCEL) after part of the message.
        let (send, mut ping, _driver) = h2_connect_with_ping(verdict.grpc).await;
        let mut ready = send.ready().await.unwrap();
        let (_response, mut stream) = ready
            .send_request(check_headers(verdict.grpc, &[]), false)
            .unwrap();
        stream
            .send_data(Bytes::from_static(partial), false)
            .unwrap();
        server_has_read(&mut ping).await;
        stream.send_reset(h2::Reason::CANCEL);
        server_has_read(&mut ping).await;
    });
    wait_for_metric(
        &verdict,
        "verdict_grpc_requests_total",
        &[&check_label, r#"code="CANCELLED""#],
        1.0,
    );
    runtime.block_on(async {
        // The TCP connection dropped after part of the message.
        let (send, mut ping, driver) = h2_connect_with_ping(verdict.grpc).await;
        let mut ready = send.ready().await.unwrap();
        let (_response, mut stream) = ready
            .send_request(check_headers(verdict.grpc, &[]), false)
            .unwrap();
        stream
            .send_data(Bytes::from_static(partial), false)
            .unwrap();
        server_has_read(&mut ping).await;
        // Dropping the driver drops the TCP connection, with no GOAWAY or reset.
        driver.abort();
        let _ = driver.await;
    });
    wait_for_metric(
        &verdict,
        "verdict_grpc_requests_total",
        &[&check_label, r#"code="CANCELLED""#],
        2.0,
    );
    runtime.block_on(async {
        // A client deadline of 200 ms, and no message before it.
        let send = h2_connect(verdict.grpc).await;
        let mut ready = send.ready().await.unwrap();
        let (response, _stream) = ready
            .send_request(
                check_headers(verdict.grpc, &[("grpc-timeout", "200m")]),
                false,
            )
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), grpc_status(response)).await;
    });
    let metrics = wait_for_metric(
        &verdict,
        "verdict_grpc_requests_total",
        &[&check_label, r#"code="DEADLINE_EXCEEDED""#],
        1.0,
    );
    for code in ["UNKNOWN", "INTERNAL", "OK"] {
        assert_eq!(
            metric(
                &metrics,
                "verdict_grpc_requests_total",
                &[&check_label, &format!(r#"code="{code}""#)]
            ),
            0.0,
            "{code}"
        );
    }
    verdict.stop();
}

/// Finding 8: a client that sends part of a header line and then nothing is closed within the
/// HTTP port's header timeout (5 s) plus a margin, while the port keeps answering others.
#[test]
fn the_http_port_closes_a_slowloris_connection() {
    let verdict = Verdict::start(&example_bundle(), &[]);
    let mut slow = std::net::TcpStream::connect(verdict.metrics).unwrap();
    slow.write_all(b"GET /readyz HTTP/1.1\r\nHost: verd")
        .unwrap();
    let mut idle = std::net::TcpStream::connect(verdict.metrics).unwrap();
    let started = Instant::now();
    // Others are served meanwhile.
    assert_eq!(http_get(verdict.metrics, "/readyz").0, 200);
    // The header timeout plus a generous margin.
    let bound = Duration::from_secs(5) + Duration::from_secs(10);
    for (name, stream) in [("slowloris", &mut slow), ("silent", &mut idle)] {
        stream
            .set_read_timeout(Some(bound.saturating_sub(started.elapsed())))
            .unwrap();
        let mut rest = Vec::new();
        if let Err(error) = stream.read_to_end(&mut rest) {
            assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the {name} connection was still open after {:?}",
                started.elapsed()
            );
        }
    }
    verdict.stop();
}
