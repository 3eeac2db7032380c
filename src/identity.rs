//! Bearer tokens → principals (issue 16): a front-end (Envoy ext_authz, `Check.token`) hands
//! over a token and gets a verified principal or a refusal that means 401.
//!
//! Owns: verifying JWTs against the issuers the server is configured with (keys, algorithms,
//! `iss`, `aud`, `exp`/`nbf`), and mapping a verified token's claims to a principal entity,
//! its parents and `context.scopes`.
//!
//! Does not own: the revocation list (a bundle file, in the snapshot: see
//! [`VerifiedPrincipal::check_revocation`]), deciding (the principal goes into a `CheckInput`).
//!
//! Tokens never reach logs or metrics: a refusal says why in words that quote nothing of the
//! token, and no type here prints a token.
//!
//! INTERFACE CONTRACT (the ext_authz front-end and `Check.token` rely on it): `TokenVerifier`
//! is cheap to clone and shared by every front-end; `verify` never panics and never blocks a
//! worker on I/O for longer than its configured fetch timeout; every `TokenRefusal` maps to 401.

mod cache;
mod keys;
mod mapping;
mod settings;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use serde_json::{Map, Value};
use verdict_core::{EntityInput, Snapshot};

use keys::{JwksCache, VerificationKey};
pub use settings::{
    DEFAULT_ALGORITHMS, DEFAULT_JWKS_FETCH_TIMEOUT, DEFAULT_JWKS_REFRESH_INTERVAL, DEFAULT_LEEWAY,
    DEFAULT_PRINCIPAL_CLAIM, DEFAULT_PRINCIPAL_TYPE, IssuerSettings, JwksSource, parse_issuers,
    read_issuers_file,
};

/// The longest token accepted, in bytes: real ones are a few hundred bytes to a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token that verified: the principal it names, with what the claims say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedPrincipal {
    /// The principal entity: its uid from the configured claim and type, attributes from the
    /// mapped claims, parents from the groups/roles claim. Trusted: the server verified it, so
    /// its parents may be entities the bundle knows (unlike a caller's request entities).
    pub entity: EntityInput,
    /// `scope` (space-separated) or `scp` (a list), for `context.scopes`.
    pub scopes: Vec<String>,
    /// The token's `jti`, for the revocation list.
    pub jti: Option<String>,
    /// The issuer that verified it (configuration, not a secret): for logs and metrics.
    pub issuer: String,
}

impl VerifiedPrincipal {
    /// Refuses the token if the snapshot's revocation list names its `jti`. A token without a
    /// `jti` cannot be revoked this way.
    pub fn check_revocation(&self, snapshot: &Snapshot) -> Result<(), TokenRefusal> {
        match &self.jti {
            Some(jti) if snapshot.is_revoked(jti) => Err(TokenRefusal::Revoked),
            _ => Ok(()),
        }
    }
}

/// Why a token was refused: each means 401 with `WWW-Authenticate: Bearer`. The text quotes
/// nothing of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No token where one is needed.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT (three base64url parts, JSON header and claims).
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// No issuer is configured: tokens cannot be verified.
    #[error("no token issuer is configured")]
    NotConfigured,
    /// `iss` is missing or names no configured issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// `alg` is not on the issuer's allow-list, or does not fit the key's family (`none`
    /// never is).
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No key of the issuer has the token's `kid`.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway), or is missing.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` is missing or names none of the issuer's audiences.
    #[error("the token is not for this audience")]
    WrongAudience,
    /// A claim the mapping needs is missing or has the wrong type.
    #[error("the token lacks the claim `{0}`")]
    MissingClaim(String),
    /// The token's `jti` is on the revocation list.
    #[error("the token has been revoked")]
    Revoked,
}

impl TokenRefusal {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::NotConfigured => "not_configured",
            Self::UnknownIssuer => "unknown_issuer",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::Revoked => "revoked",
        }
    }
}

/// Verifies tokens for every front-end; cheap to clone.
#[derive(Clone, Default)]
pub struct TokenVerifier {
    issuers: Arc<[Issuer]>,
    /// Tokens verified recently (`cache.rs`).
    verified: Arc<cache::VerifiedTokens>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The issuers' names only: no keys, no secrets.
        f.debug_struct("TokenVerifier")
            .field("issuers", &self.issuers().collect::<Vec<_>>())
            .finish()
    }
}

/// One configured issuer: its settings and its keys.
#[derive(Debug)]
struct Issuer {
    settings: IssuerSettings,
    jwks: Option<JwksCache>,
    hmac: Option<Arc<VerificationKey>>,
}

impl TokenVerifier {
    /// Returns a verifier with no issuer: every token is refused with
    /// [`TokenRefusal::NotConfigured`].
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Reads the issuers file (`--jwt-issuers`, docs/tokens.md) and every JWKS file it names.
    /// Errors name the file and line, or the setting; never a secret.
    pub fn from_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let issuers = read_issuers_file(path, env)?;
        Self::new(issuers).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Returns a verifier for `issuers`: JWKS files are read now, JWKS URLs on first use.
    pub fn new(issuers: Vec<IssuerSettings>) -> Result<Self, String> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err("no JWT crypto provider is built in".to_owned());
        }
        let needs_client = issuers
            .iter()
            .any(|i| matches!(i.jwks, Some(JwksSource::Url(_))));
        let client = if needs_client {
            Some(keys::http_client()?)
        } else {
            None
        };
        let issuers = issuers
            .into_iter()
            .enumerate()
            .map(|(i, settings)| {
                let jwks = settings
                    .jwks
                    .clone()
                    .map(|source| {
                        JwksCache::new(
                            source,
                            client.clone(),
                            settings.jwks_refresh_interval,
                            settings.jwks_fetch_timeout,
                        )
                    })
                    .transpose()
                    .map_err(|e| format!("issuers[{i}].jwks_file: {e}"))?;
                let hmac = settings
                    .hmac_secret
                    .as_ref()
                    .map(|secret| VerificationKey::hmac(&secret.0).map(Arc::new))
                    .transpose()
                    .map_err(|e| format!("issuers[{i}]: {e}"))?;
                Ok(Issuer {
                    settings,
                    jwks,
                    hmac,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            issuers: issuers.into(),
            verified: Arc::default(),
        })
    }

    /// Returns whether any issuer is configured.
    pub fn is_enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Returns the configured issuers (`iss` values), for the startup log.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.settings.issuer.as_str())
    }

    /// Returns how many times the keys of `issuer` were refreshed (read or fetched) since
    /// start; `None` for an issuer without a JWKS.
    pub fn jwks_refresh_attempts(&self, issuer: &str) -> Option<u64> {
        self.issuers
            .iter()
            .find(|i| i.settings.issuer == issuer)
            .and_then(|i| i.jwks.as_ref())
            .map(JwksCache::refresh_attempts)
    }

    /// Verifies `token` (the text after `Bearer `) and maps its claims to a principal.
    ///
    /// In order: the token's shape and header (`Malformed`; an algorithm that is not a
    /// signature algorithm, `none` included, is `AlgorithmNotAllowed`), its issuer (read
    /// before verifying only to pick the issuer's keys: `UnknownIssuer`), the issuer's
    /// algorithm allow-list, the key (`UnknownKey`; it must fit the algorithm's family), then
    /// jsonwebtoken verifies the signature and `exp`, `nbf`, `iss`, `aud`, and the claims are
    /// mapped. The revocation list is the snapshot's: see
    /// [`VerifiedPrincipal::check_revocation`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedPrincipal, TokenRefusal> {
        if self.issuers.is_empty() {
            return Err(TokenRefusal::NotConfigured);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenRefusal::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRefusal::Malformed);
        }
        let cache_key = cache::key(token);
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(principal) = self.verified.get(&cache_key, now) {
            return Ok(principal);
        }
        let header = header(token)?;
        let claimed: UnverifiedIssuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenRefusal::Malformed)?;
        let issuer = claimed
            .iss
            .and_then(|iss| self.issuers.iter().find(|i| i.settings.issuer == iss))
            .ok_or(TokenRefusal::UnknownIssuer)?;
        let algorithm = header.alg;
        if !issuer.settings.algorithms.contains(&algorithm) {
            return Err(TokenRefusal::AlgorithmNotAllowed);
        }
        // INVARIANT: an HMAC algorithm only ever meets the configured secret, and any other
        // only the JWKS's public keys; `fits` checks the family again (and the JWK's `alg`).
        let key = if algorithm.family() == AlgorithmFamily::Hmac {
            issuer.hmac.clone()
        } else {
            match &issuer.jwks {
                Some(jwks) => jwks.find(header.kid.as_deref(), algorithm).await,
                None => None,
            }
        }
        .ok_or(TokenRefusal::UnknownKey)?;
        if !key.fits(algorithm) {
            return Err(TokenRefusal::AlgorithmNotAllowed);
        }
        let validation = validation(&issuer.settings, algorithm);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        let leeway = issuer.settings.leeway.as_secs();
        let seconds = |name: &str| claims.get(name).and_then(Value::as_u64);
        // jsonwebtoken checked both; `exp` is required.
        let valid_from = seconds("nbf").map_or(0, |nbf| nbf.saturating_sub(leeway));
        let valid_until = seconds("exp").map_or(0, |exp| exp.saturating_add(leeway));
        let principal = mapping::principal(&issuer.settings, claims)?;
        self.verified
            .insert(cache_key, principal.clone(), valid_from, valid_until, now);
        Ok(principal)
    }
}

/// The only claim read before the signature is verified: to pick the issuer's keys.
#[derive(serde::Deserialize)]
struct UnverifiedIssuer {
    #[serde(default)]
    iss: Option<String>,
}

/// The header: `alg` must name a signature algorithm jsonwebtoken knows (so `none` is refused
/// here, as `AlgorithmNotAllowed`); anything else wrong with it is `Malformed`.
fn header(token: &str) -> Result<jsonwebtoken::Header, TokenRefusal> {
    #[derive(serde::Deserialize)]
    struct Alg {
        alg: String,
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let alg: Alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(TokenRefusal::Malformed)?;
    if alg.alg.parse::<Algorithm>().is_err() {
        return Err(TokenRefusal::AlgorithmNotAllowed);
    }
    jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)
}

/// What jsonwebtoken checks besides the signature, for one issuer and the token's algorithm.
fn validation(settings: &IssuerSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&settings.audiences);
    validation
}

/// The refusal for an error jsonwebtoken reports.
fn refusal(kind: &ErrorKind) -> TokenRefusal {
    let claim = |claim: &str| match claim {
        "exp" => TokenRefusal::Expired,
        "nbf" => TokenRefusal::NotYetValid,
        "aud" => TokenRefusal::WrongAudience,
        "iss" => TokenRefusal::UnknownIssuer,
        other => TokenRefusal::MissingClaim(other.to_owned()),
    };
    match kind {
        ErrorKind::InvalidSignature => TokenRefusal::BadSignature,
        ErrorKind::ExpiredSignature => TokenRefusal::Expired,
        ErrorKind::ImmatureSignature => TokenRefusal::NotYetValid,
        ErrorKind::InvalidAudience => TokenRefusal::WrongAudience,
        ErrorKind::InvalidIssuer => TokenRefusal::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(name) | ErrorKind::InvalidClaimFormat(name) => claim(name),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenRefusal::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => TokenRefusal::Malformed,
        // A key that cannot check this signature (a wrong curve, a malformed key): the token
        // is not proven, whatever it says.
        _ => TokenRefusal::BadSignature,
    }
}
