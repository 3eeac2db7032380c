//! The real `verdict serve` binary as a child process, with its stderr lines collected, and a
//! blocking HTTP GET for its `/metrics`, `/healthz` and `/readyz`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;
use verdict::api::proto::authorization_client::AuthorizationClient;

/// A running `verdict serve`, with its stderr lines collected.
pub struct Verdict {
    pub child: Child,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
    /// With [`Verdict::start_with_stalled_stderr`]: the read end of the stderr pipe, kept open
    /// and never read again once the server said where it listens.
    stalled_stderr: Option<Receiver<BufReader<ChildStderr>>>,
}

impl Verdict {
    pub fn start(policies: &Path, extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_verdict")),
            policies,
            extra,
            false,
        )
    }

    /// Starts `verdict serve` with its stderr into a pipe that nobody reads once both
    /// listening addresses have been read from it: a stalled log collector. Once the pipe's
    /// buffer (64 KiB on Linux) is full, every write to stderr blocks.
    pub fn start_with_stalled_stderr(policies: &Path, extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_verdict")),
            policies,
            extra,
            true,
        )
    }

    /// Starts `verdict serve` with at most `open_files` open file descriptors (`ulimit -n`,
    /// soft and hard, set by a shell that then execs the binary).
    pub fn start_with_open_files(policies: &Path, extra: &[&str], open_files: u32) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_verdict"));
        Self::spawn(command, policies, extra, false)
    }

    fn spawn(mut command: Command, policies: &Path, extra: &[&str], stall: bool) -> Self {
        let mut child = command
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .arg("--policies")
            .arg(policies)
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("VERDICT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stalled_tx, stalled_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut listening = 0;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                if line.contains("grpc listening") || line.contains("metrics listening") {
                    listening += 1;
                }
                if tx.send(line).is_err() {
                    break;
                }
                if stall && listening == 2 {
                    // Keep the pipe open, unread, for as long as the test holds the receiver.
                    let _ = stalled_tx.send(reader);
                    break;
                }
            }
        });
        let mut verdict = Self {
            child,
            grpc: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            lines: rx,
            seen: Vec::new(),
            stalled_stderr: stall.then_some(stalled_rx),
        };
        let (mut grpc, mut metrics) = (None, None);
        let started = Instant::now();
        while grpc.is_none() || metrics.is_none() {
            let line = verdict
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("verdict did not report its addresses");
            // Text logs say `addr=127.0.0.1:1234`, JSON logs `"addr":"127.0.0.1:1234"`.
            let addr = |line: &str| -> Option<SocketAddr> {
                if let Ok(json) = serde_json::from_str::<Value>(line) {
                    return json["addr"].as_str()?.parse().ok();
                }
                let rest = line.split("addr=").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            };
            if line.contains("grpc listening") {
                grpc = addr(&line);
            } else if line.contains("metrics listening") {
                metrics = addr(&line);
            }
            verdict.seen.push(line);
            assert!(started.elapsed() < Duration::from_secs(60));
        }
        verdict.grpc = grpc.unwrap();
        verdict.metrics = metrics.unwrap();
        verdict
    }

    pub fn client(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> AuthorizationClient<tonic::transport::Channel> {
        runtime
            .block_on(AuthorizationClient::connect(format!(
                "http://{}",
                self.grpc
            )))
            .unwrap()
    }

    /// A client on a new connection, for a test's own runtime.
    pub async fn client_async(&self) -> AuthorizationClient<tonic::transport::Channel> {
        AuthorizationClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// Stops the process and returns everything it wrote to stderr.
    pub fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback; returns (status, body), `None` if nothing answers.
pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("nothing answers GET {path} on {addr}"))
}
