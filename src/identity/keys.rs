//! An issuer's verification keys: parsing a JWKS, and keeping it fresh.
//!
//! The key set is immutable and replaced whole (`ArcSwap`), so a request reads it without a
//! lock and a refresh never shows a half-updated set; a key the issuer dropped disappears at
//! the next refresh. (DESIGN.md suggests a concurrent map keyed by `kid`; a map updated key by
//! key would, during a refresh, briefly miss keys the issuer still publishes.)
//!
//! Refreshing (re-reading a `jwks_file`, fetching a `jwks_url`) happens only when a token names
//! a key the set lacks, at most once per `jwks_refresh_interval` per issuer, whatever the
//! traffic: a flood of tokens with made-up `kid`s costs one fetch per interval. Requests that
//! arrive during a refresh wait for it (never longer than `jwks_fetch_timeout`) instead of
//! starting their own. A failed refresh keeps the last good keys. A JWKS URL is first fetched
//! by the first token that needs it.
//!
//! ```text
//!   unknown kid ──► lock refresh ──► another request refreshed meanwhile? ──► use its keys
//!                        │ no
//!                        ▼
//!            last attempt < interval ago? ──yes──► UnknownKey (no fetch)
//!                        │ no
//!                        ▼
//!        fetch (≤ timeout) ──ok──► swap in the new set
//!                        └─fail─► log, keep the last good set
//! ```
//!
//! Only public keys of the asymmetric families are read from a JWKS: symmetric (`oct`) keys
//! and encryption keys (`use: enc`) are skipped, so a JWKS can never hand out an HMAC secret.
//! A key is only used with its own family, and with its own `alg` when the JWK names one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::settings::JwksSource;

/// The largest JWKS accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The HTTP(S) client JWKS URLs are fetched with.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// Builds the client: rustls (ring) with the system's root certificates; plain http is only
/// reachable because the settings allow it for loopback addresses alone. Redirects are not
/// followed.
pub fn http_client() -> Result<HttpClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// One verification key.
#[derive(Debug)]
pub struct VerificationKey {
    pub(super) key: DecodingKey,
    /// The algorithm the JWK pins it to, if it names one.
    pub(super) algorithm: Option<Algorithm>,
}

impl VerificationKey {
    /// Returns the key for an HMAC secret.
    pub fn hmac(secret: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("unusable secret: {e}"))?;
        Ok(Self {
            key,
            algorithm: None,
        })
    }

    /// Returns whether this key may verify a token signed with `algorithm`: its family, and
    /// its own algorithm when it names one.
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        self.key.family() == algorithm.family() && self.algorithm.is_none_or(|a| a == algorithm)
    }
}

/// An issuer's public keys, immutable.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    all: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot sign tokens here are skipped; a document with
    /// no usable key is an error. JSON errors carry their line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| {
            format!(
                "{}:{}: not a JWKS document: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )
        })?;
        let mut keys = Self::default();
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            if !matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_)
                    | AlgorithmParameters::EllipticCurve(_)
                    | AlgorithmParameters::OctetKeyPair(_)
            ) {
                continue;
            }
            let algorithm = match jwk.common.key_algorithm {
                Some(alg) => match Algorithm::try_from(alg) {
                    Ok(alg) => Some(alg),
                    Err(_) => continue,
                },
                None => None,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            if key.family() == AlgorithmFamily::Hmac {
                continue;
            }
            let key = Arc::new(VerificationKey { key, algorithm });
            if let Some(kid) = &jwk.common.key_id
                && !keys.by_kid.contains_key(kid)
            {
                keys.by_kid.insert(kid.clone(), Arc::clone(&key));
            }
            keys.all.push(key);
        }
        if keys.all.is_empty() {
            return Err("the JWKS has no usable signature key (RSA, EC or OKP)".to_owned());
        }
        Ok(keys)
    }

    /// Returns the key for a token's `kid`; without one, the only key that fits `algorithm`.
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&Arc<VerificationKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => {
                let mut fitting = self.all.iter().filter(|k| k.fits(algorithm));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }
}

/// serde_json appends ` at line L column C`; the caller prints the position its own way.
fn strip_position(text: &str) -> &str {
    text.find(" at line ").map_or(text, |i| &text[..i])
}

/// Reads a JWKS file; errors name the file (and line).
pub fn read_jwks_file(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {}", path.display(), verdict_core::io_reason(&e)))?;
    KeySet::parse(&text).map_err(|e| {
        if e.starts_with(|c: char| c.is_ascii_digit()) {
            format!("{}:{e}", path.display())
        } else {
            format!("{}: {e}", path.display())
        }
    })
}

/// An issuer's JWKS: the current set, where it comes from, and the refresh gate.
#[derive(Debug)]
pub struct JwksCache {
    source: JwksSource,
    client: Option<HttpClient>,
    current: ArcSwap<KeySet>,
    /// When the last refresh started; held while one runs.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    interval: Duration,
    timeout: Duration,
    /// Refreshes attempted (fetches or reads), for tests and logs.
    attempts: AtomicU64,
}

impl JwksCache {
    /// Returns a cache over `source`: a file is read now (an error is returned), a URL is
    /// fetched by the first token that needs it.
    pub fn new(
        source: JwksSource,
        client: Option<HttpClient>,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (initial, last_attempt) = match &source {
            JwksSource::File(path) => (read_jwks_file(path)?, Some(Instant::now())),
            JwksSource::Url(_) => (KeySet::default(), None),
        };
        if matches!(source, JwksSource::Url(_)) && client.is_none() {
            return Err("a JWKS URL needs an HTTP client".to_owned());
        }
        Ok(Self {
            source,
            client,
            current: ArcSwap::from_pointee(initial),
            last_attempt: tokio::sync::Mutex::new(last_attempt),
            interval,
            timeout,
            attempts: AtomicU64::new(0),
        })
    }

    /// Returns the key for `kid` (see [`KeySet::find`]), refreshing the set first when it
    /// lacks one and the refresh gate allows.
    pub async fn find(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Option<Arc<VerificationKey>> {
        if let Some(key) = self.current.load().find(kid, algorithm) {
            return Some(Arc::clone(key));
        }
        let mut last_attempt = self.last_attempt.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        if let Some(key) = self.current.load().find(kid, algorithm) {
            return Some(Arc::clone(key));
        }
        if last_attempt.is_some_and(|at| at.elapsed() < self.interval) {
            return None;
        }
        *last_attempt = Some(Instant::now());
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match self.load().await {
            Ok(keys) => {
                tracing::info!(source = %self.source_name(), keys = keys.len(), "token keys refreshed");
                self.current.store(Arc::new(keys));
            }
            Err(error) => {
                tracing::warn!(
                    source = %self.source_name(),
                    %error,
                    "token keys could not be refreshed; keeping the last good keys"
                );
            }
        }
        drop(last_attempt);
        self.current.load().find(kid, algorithm).map(Arc::clone)
    }

    /// Returns how many refreshes were attempted since start.
    pub fn refresh_attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn source_name(&self) -> String {
        match &self.source {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url(uri) => uri.to_string(),
        }
    }

    async fn load(&self) -> Result<KeySet, String> {
        match &self.source {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_jwks_file(&path))
                    .await
                    .map_err(|e| format!("reading the JWKS file failed: {e}"))?
            }
            JwksSource::Url(uri) => {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| "no HTTP client".to_owned())?;
                let text = tokio::time::timeout(self.timeout, fetch(client, uri))
                    .await
                    .map_err(|_| format!("no answer within {:?}", self.timeout))??;
                KeySet::parse(&text)
            }
        }
    }
}

/// GETs `uri`: a 200 answer of at most [`MAX_JWKS_BYTES`], as text.
async fn fetch(client: &HttpClient, uri: &hyper::Uri) -> Result<String, String> {
    let response = client
        .get(uri.clone())
        .await
        .map_err(|e| format!("request failed: {}", verdict_core::error_chain(&e)))?;
    let status = response.status();
    if status != hyper::StatusCode::OK {
        return Err(format!("answered HTTP {status}"));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_owned())
}
