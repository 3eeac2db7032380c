//! The gateway benchmark (issue 16): what Envoy's ext_authz filter asking Verdict costs.
//!
//! ```sh
//! cargo bench --bench gateway                  # 5 s per scenario
//! GATEWAY_SECONDS=10 GATEWAY_IN_FLIGHT=16 cargo bench --bench gateway
//! ```
//!
//! In one run, against the same release `verdict` (the example bundle, a JWT issuer with the
//! test keys, the decision log as shipped) and a real Envoy 1.39.3 (installed into `.tools/`
//! like `tests/it/envoy.rs` does), closed loop with `GATEWAY_IN_FLIGHT` (default 8) requests in
//! flight, each on its own keep-alive connection:
//!
//! 1. `envoy`: HTTP/1.1 through Envoy **without** the ext_authz filter to an echo upstream;
//! 2. `envoy+ext_authz`: the same requests through Envoy **with** the filter asking Verdict;
//! 3. `ext_authz`: Envoy's `CheckRequest` for the same HTTP request, sent directly to Verdict
//!    (envoy-types' tonic client), token verified, route matched;
//! 4. `check`: Verdict's own `Check` for the same question, with the same token;
//! 5. `envoy+constant`: through Envoy with the filter asking a constant-answer ext_authz server
//!    (a few lines of tonic in this process, always OK): what any external authorizer costs on
//!    this machine, so that what Verdict itself adds can be told apart from the filter's hop;
//! 6. `constant`: the `CheckRequest` directly to that constant server.
//!
//! The request: bob reads the roadmap (`GET /v1/documents/roadmap`, bearer token), allowed.
//! Every answer is checked (status 200 / OK / ALLOW); any other fails the run. Envoy, Verdict,
//! the upstream and the generator share the machine's two cores: the ratios measured in the
//! same run are the result, not the absolute figures. `cargo test --benches` runs a smoke
//! version (0.3 s per scenario).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benches"
)]

#[allow(dead_code, reason = "the harness also serves tests/it/envoy.rs")]
#[path = "../tests/envoy/harness.rs"]
mod harness;
#[allow(dead_code, reason = "shared with the tests")]
#[path = "../tests/common/jwt.rs"]
mod jwt;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as Attributes,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient as ExtAuthzClient;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use serde_json::json;
use verdict::api::proto;
use verdict::api::proto::authorization_client::AuthorizationClient;

use harness::{EchoUpstream, Envoy, EnvoyConfig};

const ISSUER: &str = "https://idp.acme.test/";
const PATH: &str = "/v1/documents/roadmap";

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A verdict process, stopped on drop.
struct Verdict {
    child: Child,
    grpc: SocketAddr,
}

impl Drop for Verdict {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_verdict(issuers: &Path) -> Verdict {
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
        ])
        .arg("--policies")
        .arg(&bundle)
        .arg("--jwt-issuers")
        .arg(issuers)
        .env_remove("RUST_LOG")
        .env_remove("VERDICT_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains("grpc listening") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let grpc = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("verdict reports its address");
    Verdict { child, grpc }
}

/// The issuers file over a JWKS file with the test RSA key, and a token for bob.
fn issuer_and_token(dir: &Path) -> (std::path::PathBuf, String) {
    let issuers = jwt::issuers_file(dir, ISSUER, "acme-api", "");
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "aud": "acme-api", "sub": "bob", "iat": now, "exp": now + 3600,
        "scope": "documents:read",
    });
    (issuers, jwt::mint(&claims, jwt::RSA_PRIVATE, jwt::KID))
}

/// What one scenario measured.
struct Measured {
    requests: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index] as f64
    }
}

/// One keep-alive HTTP/1.1 GET with the token; returns the status.
fn http_get(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request: &[u8],
) -> std::io::Result<u16> {
    writer.write_all(request)?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

/// Closed loop through Envoy: `in_flight` threads, each with its own connection.
fn through_envoy(envoy: SocketAddr, token: &str, in_flight: usize, seconds: f64) -> Measured {
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nhost: api.acme.test\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .into_bytes();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..in_flight)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(envoy).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut latencies = Vec::new();
                // Bounded in time and in count.
                while Instant::now() < deadline && latencies.len() < 10_000_000 {
                    let sent = Instant::now();
                    let status = http_get(&mut reader, &mut writer, &request).unwrap();
                    assert_eq!(status, 200, "through Envoy");
                    latencies.push(sent.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for thread in threads {
        latencies_us.extend(thread.join().unwrap());
    }
    Measured {
        requests: latencies_us.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        latencies_us,
    }
}

/// The baseline authorizer: answers OK to every `CheckRequest` without looking at it.
struct Constant;

#[tonic::async_trait]
impl Authorization for Constant {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(RpcStatus {
                code: 0,
                ..RpcStatus::default()
            }),
            ..CheckResponse::default()
        }))
    }
}

/// Serves [`Constant`] on 127.0.0.1 from a thread of its own with a one-worker runtime (the
/// same shape as a small sidecar); lives as long as the benchmark.
fn start_constant() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(AuthorizationServer::new(Constant))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    addr
}

fn ext_authz_request(token: &str) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":method", "GET"),
        (":path", PATH),
        (":authority", "api.acme.test"),
        ("authorization", &format!("Bearer {token}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Attributes {
                time: None,
                http: Some(HttpRequest {
                    method: "GET".to_owned(),
                    path: PATH.to_owned(),
                    host: "api.acme.test".to_owned(),
                    headers,
                    protocol: "HTTP/1.1".to_owned(),
                    ..HttpRequest::default()
                }),
            }),
            ..AttributeContext::default()
        }),
    }
}

fn verdict_check(token: &str) -> proto::CheckRequest {
    proto::CheckRequest {
        action: "read".to_owned(),
        resource: Some(proto::EntityRef {
            r#type: "Document".to_owned(),
            id: "roadmap".to_owned(),
        }),
        token: token.to_owned(),
        ..proto::CheckRequest::default()
    }
}

/// Closed loop over gRPC: `in_flight` tasks on one connection each.
fn over_grpc(
    grpc: SocketAddr,
    token: &str,
    ext_authz: bool,
    in_flight: usize,
    seconds: f64,
) -> Measured {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let endpoint = format!("http://{grpc}");
            let token = token.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                if ext_authz {
                    let mut client = ExtAuthzClient::connect(endpoint).await.unwrap();
                    let request = ext_authz_request(&token);
                    while Instant::now() < deadline && latencies.len() < 10_000_000 {
                        let sent = Instant::now();
                        let answer = client.check(request.clone()).await.unwrap().into_inner();
                        assert_eq!(answer.status.map(|s| s.code), Some(0), "ext_authz allows");
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                } else {
                    let mut client = AuthorizationClient::connect(endpoint).await.unwrap();
                    let request = verdict_check(&token);
                    while Instant::now() < deadline && latencies.len() < 10_000_000 {
                        let sent = Instant::now();
                        let answer = client.check(request.clone()).await.unwrap().into_inner();
                        assert_eq!(
                            answer.decision,
                            proto::Decision::Allow as i32,
                            "Check allows"
                        );
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                }
                latencies
            }));
        }
        let mut latencies_us = Vec::new();
        for task in tasks {
            latencies_us.extend(task.await.unwrap());
        }
        Measured {
            requests: latencies_us.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
            latencies_us,
        }
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a smoke run.
    let full = std::env::args().any(|arg| arg == "--bench");
    let seconds = if full {
        env_number("GATEWAY_SECONDS", 5.0)
    } else {
        0.3
    };
    let in_flight = if full {
        env_number("GATEWAY_IN_FLIGHT", 8.0) as usize
    } else {
        2
    };
    let keys = tempfile::tempdir().unwrap();
    let (issuers, token) = issuer_and_token(keys.path());
    let verdict = start_verdict(&issuers);
    let upstream = EchoUpstream::start();
    let plain = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: None,
    });
    let filtered = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: Some(verdict.grpc),
    });
    let constant = start_constant();
    let baseline = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: Some(constant),
    });
    // Warm-up: connections, JWKS, caches.
    let warm = seconds.min(1.0);
    through_envoy(plain.listener, &token, in_flight, warm);
    through_envoy(filtered.listener, &token, in_flight, warm);
    through_envoy(baseline.listener, &token, in_flight, warm);

    let results = [
        (
            "envoy",
            through_envoy(plain.listener, &token, in_flight, seconds),
        ),
        (
            "envoy+ext_authz",
            through_envoy(filtered.listener, &token, in_flight, seconds),
        ),
        (
            "ext_authz",
            over_grpc(verdict.grpc, &token, true, in_flight, seconds),
        ),
        (
            "check",
            over_grpc(verdict.grpc, &token, false, in_flight, seconds),
        ),
        (
            "envoy+constant",
            through_envoy(baseline.listener, &token, in_flight, seconds),
        ),
        (
            "constant",
            over_grpc(constant, &token, true, in_flight, seconds),
        ),
    ];
    println!(
        "gateway: {seconds} s per scenario, {in_flight} in flight, Envoy 1.39.3, everything on 2 shared cores"
    );
    println!("| scenario | requests/s | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    for (name, m) in &results {
        assert!(m.requests > 0, "{name} answered nothing");
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            m.rate(),
            m.percentile(0.5),
            m.percentile(0.9),
            m.percentile(0.99)
        );
    }
    let [
        (_, plain),
        (_, filtered),
        (_, ext_authz),
        (_, check),
        (_, baseline),
        (_, constant),
    ] = &results;
    println!(
        "ext_authz adds {:.0} µs at p50 and {:.0} µs at p99 (through Envoy, same load); \
         throughput with the filter {:.2}× without; ext_authz decisions/s {:.2}× Verdict's own Check",
        filtered.percentile(0.5) - plain.percentile(0.5),
        filtered.percentile(0.99) - plain.percentile(0.99),
        filtered.rate() / plain.rate(),
        ext_authz.rate() / check.rate(),
    );
    println!(
        "a constant-answer authorizer adds {:.0} µs at p50 and {:.0} µs at p99 through Envoy; \
         Verdict adds {:.0} µs at p50 and {:.0} µs at p99 beyond it; direct round trip: \
         Verdict {:.0} µs p50, constant {:.0} µs p50",
        baseline.percentile(0.5) - plain.percentile(0.5),
        baseline.percentile(0.99) - plain.percentile(0.99),
        filtered.percentile(0.5) - baseline.percentile(0.5),
        filtered.percentile(0.99) - baseline.percentile(0.99),
        ext_authz.percentile(0.5),
        constant.percentile(0.5),
    );
}
