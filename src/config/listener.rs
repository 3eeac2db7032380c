//! The gRPC listener: its address and the HTTP/2 connection settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ConfigError, in_range, parse_duration};

/// Default gRPC listen address: loopback only, so a default start exposes nothing.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// Default most HTTP/2 streams per connection: well below `--max-concurrent-requests` (1024),
/// so a connection's open streams are a tenth of the server's request slots at most (and
/// grpc-go's and Envoy's usual 100).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default most open connections on a listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default largest header list, in bytes.
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Default HTTP/2 keepalive ping interval.
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: &str = "30s";
/// Default wait for a keepalive ping's answer.
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: &str = "10s";
/// Default idle time after which a connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: &str = "5m";
/// Default `--max-connection-age`.
pub const DEFAULT_MAX_CONNECTION_AGE: &str = "0";

/// Settings of the gRPC listener and its connections.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenerArgs {
    /// Address of the gRPC listener.
    #[arg(long, env = "VERDICT_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: String,
    /// Most HTTP/2 streams per connection.
    #[arg(long, env = "VERDICT_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,
    /// Most open connections on the gRPC listener; more are closed as they are accepted.
    /// Lowered at startup to fit the open-file limit (`ulimit -n`).
    #[arg(long, env = "VERDICT_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Largest header list of a request, in bytes.
    #[arg(long, env = "VERDICT_MAX_HEADER_LIST_BYTES", default_value_t = DEFAULT_MAX_HEADER_LIST_BYTES)]
    pub max_header_list_bytes: u32,
    /// HTTP/2 keepalive ping interval (`0` turns pings off).
    #[arg(long, env = "VERDICT_HTTP2_KEEPALIVE_INTERVAL", default_value = DEFAULT_HTTP2_KEEPALIVE_INTERVAL, value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "VERDICT_HTTP2_KEEPALIVE_TIMEOUT", default_value = DEFAULT_HTTP2_KEEPALIVE_TIMEOUT, value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,
    /// Close a connection with no request in progress for this long (`0` never), on the gRPC
    /// port and the HTTP API's; keepalive pings do not count as activity, an open stream does.
    #[arg(long, env = "VERDICT_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Ask clients to reconnect (HTTP/2 GOAWAY) once a connection is this old (`0` never), so
    /// a removed CA or an expired client certificate stops being served and new pods get
    /// traffic; in-flight requests get `--shutdown-grace` to finish. A request that races the
    /// GOAWAY can fail on the client, so pair it with a client retry.
    #[arg(long, env = "VERDICT_MAX_CONNECTION_AGE", default_value = DEFAULT_MAX_CONNECTION_AGE, value_parser = parse_duration)]
    pub max_connection_age: Duration,
}

/// The gRPC listener's settings, validated.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Most HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Most open connections on the gRPC listener.
    pub max_connections: usize,
    /// Largest header list, in bytes.
    pub max_header_list_bytes: u32,
    /// Keepalive ping interval; `None` is off.
    pub http2_keepalive_interval: Option<Duration>,
    /// Keepalive ping timeout.
    pub http2_keepalive_timeout: Duration,
    /// Idle connection timeout; `None` is off.
    pub idle_timeout: Option<Duration>,
    /// Connection age after which clients are asked to reconnect; `None` is off.
    pub max_connection_age: Option<Duration>,
}

impl ListenerArgs {
    /// Checks the listener settings; the first problem found is returned.
    pub fn validate(self) -> Result<ListenerConfig, ConfigError> {
        let grpc_addr = self
            .grpc_addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                arg: arg_id!(Self, grpc_addr),
                reason: format!("`{}` is not an ip:port address", self.grpc_addr),
            })?;
        Ok(ListenerConfig {
            grpc_addr,
            max_concurrent_streams: in_range(
                self.max_concurrent_streams,
                1,
                100_000,
                arg_id!(Self, max_concurrent_streams),
            )?,
            max_connections: in_range(
                self.max_connections,
                1,
                1_000_000,
                arg_id!(Self, max_connections),
            )?,
            max_header_list_bytes: in_range(
                self.max_header_list_bytes,
                1024,
                1 << 20,
                arg_id!(Self, max_header_list_bytes),
            )?,
            http2_keepalive_interval: (!self.http2_keepalive_interval.is_zero())
                .then_some(self.http2_keepalive_interval),
            http2_keepalive_timeout: in_range(
                self.http2_keepalive_timeout,
                Duration::from_millis(100),
                Duration::from_secs(3600),
                arg_id!(Self, http2_keepalive_timeout),
            )?,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_connection_age: if self.max_connection_age.is_zero() {
                None
            } else {
                Some(in_range(
                    self.max_connection_age,
                    Duration::from_secs(10),
                    Duration::from_secs(7 * 24 * 3600),
                    arg_id!(Self, max_connection_age),
                )?)
            },
        })
    }
}
