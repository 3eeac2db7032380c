//! Graceful shutdown of the real binary: SIGTERM while Checks are in flight.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use verdict::api::proto::authorization_client::AuthorizationClient;

#[test]
fn sigterm_reports_not_serving_first_drains_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
            "--shutdown-delay",
            "1s",
        ])
        .arg("--policies")
        .arg(common::example_bundle())
        .env_remove("RUST_LOG")
        .env_remove("VERDICT_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("grpc listening")
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next())
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no address reported")
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let channel = runtime.block_on(async {
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    });

    // Callers that stop sending new checks once health says NOT_SERVING, like a load balancer.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = AuthorizationClient::new(channel.clone());
            let stop = Arc::clone(&stop);
            runtime.spawn(async move {
                let mut answers = Vec::new();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && answers.len() < 100_000
                    && started.elapsed() < Duration::from_secs(60)
                {
                    let request = common::check(
                        ("User", "bob"),
                        "read",
                        ("Document", "roadmap"),
                        json!({"scopes": ["documents:read"]}),
                    );
                    answers.push(client.check(request).await.map(|r| r.into_inner().decision));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Health flips to NOT_SERVING while the listener still accepts connections.
    let (not_serving_while_accepting, closed) = runtime.block_on(async {
        let mut health = HealthClient::new(channel.clone());
        let started = Instant::now();
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status);
            if status.ok() == Some(ServingStatus::NotServing as i32) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "health never said NOT_SERVING"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let accepting = tokio::net::TcpStream::connect(addr).await.is_ok();
        // Then the listener closes.
        let started = Instant::now();
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(30) {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (accepting, closed)
    });
    assert!(
        not_serving_while_accepting,
        "the listener closed before health said NOT_SERVING"
    );
    assert!(closed, "the listener never closed");

    let mut total = 0;
    for worker in workers {
        for answer in runtime.block_on(worker).unwrap() {
            total += 1;
            assert_eq!(
                answer.expect("a request in flight failed during shutdown"),
                common::ALLOW
            );
        }
    }
    assert!(total > 0);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
