//! Test harness: bundle directory -> running server on 127.0.0.1:0 -> real tonic client, with an
//! injected shutdown.

#![allow(
    dead_code,
    reason = "each test crate uses a different part of the harness"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use verdict::api::proto::{self, authorization_client::AuthorizationClient};
use verdict::config::{ServeArgs, ValidConfig};
use verdict::reload::{ReloadOutcome, Reloader};
use verdict::serving::SnapshotHandle;

pub mod http1;
pub mod jwt;
pub mod pki;
pub mod postgres;
pub mod process;

/// The example bundle shipped in `policies/`.
pub fn example_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The configuration `serve` would use by default, on an ephemeral loopback port and with the
/// HTTP port off. The defaults are clap's (environment variables ignored), so they are stated
/// once, in `verdict::config`.
pub fn test_config(policies: &Path) -> ValidConfig {
    use clap::{Args, FromArgMatches};
    let command =
        ServeArgs::augment_args(clap::Command::new("verdict")).mut_args(|arg| arg.env(None));
    let matches = command.try_get_matches_from(["verdict"]).unwrap();
    let mut config = ServeArgs::from_arg_matches(&matches)
        .unwrap()
        .validate()
        .unwrap();
    config.policies = policies.to_path_buf();
    config.listener.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.telemetry.metrics_addr = None;
    config
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The HTTP port, when the configuration turns it on.
    pub http_addr: Option<SocketAddr>,
    /// The HTTP API (`--http-addr`), when the configuration turns it on.
    pub api_addr: Option<SocketAddr>,
    pub snapshots: Arc<SnapshotHandle>,
    pub reloader: Arc<Reloader>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Loads `bundle` and serves it with the default configuration.
    pub async fn start(bundle: &Path) -> Self {
        let config = test_config(bundle);
        Self::start_with(config).await
    }

    /// Loads the configured bundle (it must be valid unless `start_without_bundle`) and serves
    /// it, the way `verdict serve` does.
    pub async fn start_with(config: ValidConfig) -> Self {
        let snapshots = Arc::new(SnapshotHandle::empty());
        let reloader = Reloader::new(
            &config.policies,
            config.load_options(),
            config.reload.max_drop,
            Arc::clone(&snapshots),
        );
        let outcome = reloader.load_initial();
        if !config.start_without_bundle {
            assert!(
                matches!(outcome, ReloadOutcome::Updated { .. }),
                "{outcome:?}"
            );
        }
        Self::serve(config, snapshots, reloader).await
    }

    /// Serves whatever `snapshots` holds (possibly nothing), reloading with `reloader`.
    pub async fn serve(
        config: ValidConfig,
        snapshots: Arc<SnapshotHandle>,
        reloader: Arc<Reloader>,
    ) -> Self {
        Self::serve_with(config, snapshots, reloader, None).await
    }

    /// Loads `bundle` and serves it, with ext_authz verifying tokens with `authenticator`.
    pub async fn start_with_authenticator(
        config: ValidConfig,
        authenticator: Arc<dyn verdict::api::ext_authz::Authenticator>,
    ) -> Self {
        let snapshots = Arc::new(SnapshotHandle::empty());
        let reloader = Reloader::new(
            &config.policies,
            config.load_options(),
            config.reload.max_drop,
            Arc::clone(&snapshots),
        );
        let outcome = reloader.load_initial();
        assert!(
            matches!(outcome, ReloadOutcome::Updated { .. }),
            "{outcome:?}"
        );
        Self::serve_with(config, snapshots, reloader, Some(authenticator)).await
    }

    /// [`Self::serve`], with `authenticator` for ext_authz (the server's own when `None`).
    pub async fn serve_with(
        config: ValidConfig,
        snapshots: Arc<SnapshotHandle>,
        reloader: Arc<Reloader>,
        authenticator: Option<Arc<dyn verdict::api::ext_authz::Authenticator>>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(config.listener.grpc_addr)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let http = match config.telemetry.metrics_addr {
            Some(http_addr) => Some(tokio::net::TcpListener::bind(http_addr).await.unwrap()),
            None => None,
        };
        let http_addr = http.as_ref().map(|l| l.local_addr().unwrap());
        let api = match config.http.addr {
            Some(api_addr) => Some(tokio::net::TcpListener::bind(api_addr).await.unwrap()),
            None => None,
        };
        let api_addr = api.as_ref().map(|l| l.local_addr().unwrap());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let handle = Arc::clone(&snapshots);
        let task_reloader = Arc::clone(&reloader);
        let watching = config.reload.watch || config.reload.poll_interval.is_some();
        let task = tokio::spawn(async move {
            let served = verdict::server::Served {
                snapshots: handle,
                reloader: task_reloader,
                metrics: None,
            };
            let listeners = verdict::server::Listeners {
                grpc: listener,
                http,
                api,
            };
            let shutdown = async {
                let _ = shutdown_rx.await;
            };
            match authenticator {
                Some(authenticator) => {
                    verdict::server::run_with_authenticator(
                        &config,
                        served,
                        listeners,
                        authenticator,
                        shutdown,
                    )
                    .await
                }
                None => verdict::server::run(&config, served, listeners, shutdown).await,
            }
        });
        let server = Self {
            addr,
            http_addr,
            api_addr,
            snapshots,
            reloader,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        };
        // Tests change files only once they would be noticed: the watch loop is running.
        if watching {
            tokio::time::timeout(Duration::from_secs(30), server.reloader.watching())
                .await
                .expect("the watch loop did not start");
        }
        server
    }

    /// Returns a connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Opens a health `Watch` stream on all services, which stays open until the server
    /// closes it, and returns it with its first answer.
    pub async fn watch_health(
        &self,
    ) -> (
        tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
        tonic_health::pb::HealthCheckResponse,
    ) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut stream = HealthClient::new(self.channel().await)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        (stream, first)
    }

    /// Returns a connected channel that counts its TCP connections (reconnects included), so
    /// a test can tell a kept connection from a silently replaced one.
    pub async fn counting_channel(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> (Channel, Arc<std::sync::atomic::AtomicUsize>) {
        let dials = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&dials);
        let addr = self.addr;
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
                }
            }))
            .await
            .unwrap();
        (channel, dials)
    }

    /// Returns a connected Authorization client.
    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::new(self.channel().await)
    }

    /// Shuts the server down and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Converts JSON to a protobuf `Struct`.
pub fn to_struct(value: serde_json::Value) -> prost_types::Struct {
    let serde_json::Value::Object(fields) = value else {
        panic!("a Struct is a JSON object");
    };
    prost_types::Struct {
        fields: fields.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(to_struct(value)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Returns an entity reference.
pub fn entity(entity_type: &str, id: &str) -> proto::EntityRef {
    proto::EntityRef {
        r#type: entity_type.to_owned(),
        id: id.to_owned(),
    }
}

/// Returns a check request.
pub fn check(
    principal: (&str, &str),
    action: &str,
    resource: (&str, &str),
    context: serde_json::Value,
) -> proto::CheckRequest {
    proto::CheckRequest {
        contextual_tuples: Default::default(),
        principal: Some(entity(principal.0, principal.1)),
        action: action.to_owned(),
        resource: Some(entity(resource.0, resource.1)),
        context: Some(to_struct(context)),
        entities: Vec::new(),
        properties: Vec::new(),
        token: String::new(),
        consistency: None,
    }
}

/// The decision code for ALLOW.
pub const ALLOW: i32 = proto::Decision::Allow as i32;
/// The decision code for DENY.
pub const DENY: i32 = proto::Decision::Deny as i32;

/// A plain HTTP/1.0 GET on loopback, async (the server may share the test's runtime).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}
