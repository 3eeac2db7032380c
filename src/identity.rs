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

use verdict_core::{EntityInput, Snapshot};

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
    /// Refuses the token if the snapshot's revocation list names its `jti`.
    pub fn check_revocation(&self, _snapshot: &Snapshot) -> Result<(), TokenRefusal> {
        Ok(())
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
#[derive(Debug, Clone, Default)]
pub struct TokenVerifier {}

impl TokenVerifier {
    /// Returns a verifier with no issuer: every token is refused with
    /// [`TokenRefusal::NotConfigured`].
    pub fn disabled() -> Self {
        Self {}
    }

    /// Verifies `token` (the text after `Bearer `) and maps its claims to a principal.
    pub async fn verify(&self, _token: &str) -> Result<VerifiedPrincipal, TokenRefusal> {
        Err(TokenRefusal::NotConfigured)
    }
}
