//! TLS on the gRPC port (rustls), with optional client certificates (mTLS), reloaded when the
//! files change.
//!
//! The certificate, key and client CA bundle are read from files (`--tls-cert`, `--tls-key`,
//! `--tls-client-ca`). cert-manager and Kubernetes Secrets rotate them in place, through the
//! same `..data` symlink swap as ConfigMaps, so the files are fingerprinted (where they
//! resolve, size, modification time, inode) every [`RELOAD_INTERVAL`] and the whole rustls
//! configuration is rebuilt when they change. Each handshake takes the configuration current
//! at that moment: new connections get the new certificate, established ones keep theirs and
//! are not dropped. A rotation that fails to load (a half-written file, a key that does not
//! match) keeps the previous configuration and logs why.
//!
//! Handshakes run in their own tasks with a timeout, so a client that stalls mid-handshake
//! holds neither the accept loop nor a request slot; at most [`MAX_PENDING_HANDSHAKES`] run at
//! once, at most [`MAX_PENDING_HANDSHAKES_PER_IP`] of them from one address (so one host
//! opening idle connections cannot take every slot), and connections beyond that are closed at
//! once rather than queued. Connections come from [`Acceptor`], with its cap on open
//! connections and its backoff when accepting fails.
//!
//! `verdict_tls_certificate_expiry_timestamp_seconds` reports the serving certificate's
//! expiry (alert on it: a rotation that silently stopped shows here first),
//! `verdict_tls_reloads_total` the rotations, `verdict_tls_handshake_failures_total` the
//! handshakes that did not complete.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::accept::{Acceptor, Admitted};
use super::limits::IdleTimeout;
use crate::config::TlsFiles;
use crate::telemetry::metrics;

/// How often the certificate files are checked for a rotation.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most handshakes in progress at once.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The most handshakes in progress at once from one IP address.
pub(crate) const MAX_PENDING_HANDSHAKES_PER_IP: usize = 64;

/// Handshakes in progress per peer address.
#[derive(Debug, Default)]
struct PendingByPeer(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One handshake counted against its peer; uncounted when dropped.
struct PeerSlot {
    pending: Arc<PendingByPeer>,
    ip: std::net::IpAddr,
}

impl PendingByPeer {
    fn try_take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= MAX_PENDING_HANDSHAKES_PER_IP {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            pending: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self
            .pending
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The files' fingerprint and path list (the settings themselves live in the configuration).
trait TlsFilesExt {
    fn paths(&self) -> impl Iterator<Item = &Path>;
    fn fingerprint(&self) -> u64;
}

impl TlsFilesExt for TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// Fingerprint of the files as they are on disk now.
    fn fingerprint(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for path in self.paths() {
            std::fs::canonicalize(path).ok().hash(&mut hasher);
            if let Ok(metadata) = std::fs::metadata(path) {
                metadata.len().hash(&mut hasher);
                metadata.ino().hash(&mut hasher);
                metadata.mtime().hash(&mut hasher);
                metadata.mtime_nsec().hash(&mut hasher);
            }
        }
        hasher.finish()
    }
}

/// Reads the files into a rustls configuration; errors name the file.
pub fn load_server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    load(files).map(|(config, _)| config)
}

/// When the certificate expires, in seconds since the Unix epoch.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The configuration, and the expiry of the certificate it serves.
fn load(files: &TlsFiles) -> Result<(ServerConfig, Option<i64>), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "{}: cannot read a PEM certificate chain: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            files.cert.display()
        ));
    }
    let expiry = not_after(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "{}: cannot read a PEM private key: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: cannot read a PEM CA bundle: {e}", ca.display()))?;
            for cert in cas {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate in the file", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {}: the certificate and key do not make a usable pair: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, expiry))
}

/// Warns about a certificate that has expired: clients will refuse it.
fn warn_if_expired(files: &TlsFiles, expiry: Option<i64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if expiry.is_some_and(|expiry| expiry <= now) {
        tracing::warn!(
            cert = %files.cert.display(),
            "the TLS certificate has expired; clients will refuse it"
        );
    }
}

/// The current TLS configuration, swapped on rotation.
#[derive(Debug)]
pub(crate) struct TlsState {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The current certificate's expiry (Unix seconds; 0 if it could not be read).
    expiry: std::sync::atomic::AtomicI64,
    handshakes: Arc<tokio::sync::Semaphore>,
    by_peer: Arc<PendingByPeer>,
}

impl TlsState {
    pub(crate) fn new(files: TlsFiles) -> Result<Arc<Self>, String> {
        let (config, expiry) = load(&files)?;
        warn_if_expired(&files, expiry);
        metrics::init_tls_metrics();
        if let Some(expiry) = expiry {
            metrics::record_tls_expiry(expiry);
        }
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(config),
            expiry: std::sync::atomic::AtomicI64::new(expiry.unwrap_or(0)),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES)),
            by_peer: Arc::default(),
        }))
    }

    /// Watches the files and swaps in a new configuration when they change.
    pub(crate) fn spawn_reload(self: &Arc<Self>, cancel: CancellationToken) {
        let state = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = state.files.fingerprint();
            // The fingerprint that last failed to load: warned about once, retried when the
            // files change again (a rotation may be caught half written).
            let mut failed = None;
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // Refreshed every tick, so the gauge never goes stale and expires.
                let expiry = state.expiry.load(std::sync::atomic::Ordering::Relaxed);
                if expiry != 0 {
                    metrics::record_tls_expiry(expiry);
                }
                let files = state.files.clone();
                let Ok(now) = tokio::task::spawn_blocking(move || files.fingerprint()).await else {
                    continue;
                };
                if now == seen || Some(now) == failed {
                    continue;
                }
                let files = state.files.clone();
                let Ok(loaded) = tokio::task::spawn_blocking(move || load(&files)).await else {
                    continue;
                };
                match loaded {
                    Ok((config, expiry)) => {
                        warn_if_expired(&state.files, expiry);
                        state.current.store(Arc::new(config));
                        state
                            .expiry
                            .store(expiry.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
                        if let Some(expiry) = expiry {
                            metrics::record_tls_expiry(expiry);
                        }
                        seen = now;
                        failed = None;
                        metrics::record_tls_reload(true);
                        tracing::info!(cert = %state.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(error) => {
                        failed = Some(now);
                        metrics::record_tls_reload(false);
                        tracing::warn!(%error, "TLS files changed but do not load; keeping the previous certificate");
                    }
                }
            }
        });
    }

    /// Accepts TCP connections from `acceptor` and completes their handshakes, yielding the
    /// established TLS connections; stops when the stream is dropped or `cancel` fires.
    pub(crate) fn incoming(
        self: &Arc<Self>,
        acceptor: Acceptor,
        idle: Option<Duration>,
        cancel: CancellationToken,
    ) -> ReceiverStream<io::Result<TlsStream<IdleTimeout<Admitted<TcpStream>>>>> {
        self.incoming_with_alpn(acceptor, idle, cancel, None)
    }

    /// [`Self::incoming`], offering `alpn` instead of the configuration's protocols (`h2`):
    /// the HTTP API offers `h2` and `http/1.1`.
    pub(crate) fn incoming_with_alpn(
        self: &Arc<Self>,
        mut acceptor: Acceptor,
        idle: Option<Duration>,
        cancel: CancellationToken,
        alpn: Option<Vec<Vec<u8>>>,
    ) -> ReceiverStream<io::Result<TlsStream<IdleTimeout<Admitted<TcpStream>>>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(128);
        let state = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tx.closed() => return,
                    stream = acceptor.accept() => stream,
                };
                let peer = stream.peer();
                // Dropping the stream closes it: shed rather than queue.
                let Some(peer_slot) = state.by_peer.try_take(peer.ip()) else {
                    metrics::record_tls_handshake_failure("overload");
                    tracing::debug!(%peer, "too many TLS handshakes pending from this address; connection closed");
                    continue;
                };
                let Ok(permit) = Arc::clone(&state.handshakes).try_acquire_owned() else {
                    metrics::record_tls_handshake_failure("overload");
                    tracing::debug!(%peer, "too many TLS handshakes pending; connection closed");
                    continue;
                };
                let _ = stream.get_ref().set_nodelay(true);
                let config = match &alpn {
                    None => state.current.load_full(),
                    Some(protocols) => {
                        let mut config = ServerConfig::clone(&state.current.load());
                        config.alpn_protocols.clone_from(protocols);
                        Arc::new(config)
                    }
                };
                let acceptor = TlsAcceptor::from(config);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let stream = IdleTimeout::new(stream, idle);
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    drop(peer_slot);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => {
                            metrics::record_tls_handshake_failure("failed");
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::record_tls_handshake_failure("timeout");
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}
