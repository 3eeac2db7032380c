//! `Check.token`: a bearer token in place of a principal (like Verified Permissions'
//! IsAuthorizedWithToken), for services that receive a JWT and should not parse it.
//!
//! Two steps around the conversion of a `CheckRequest`, so `convert.rs` stays unaware of
//! tokens: [`verify`] (async: the issuer's keys may need a fetch) takes the token out of the
//! message, checks that the message leaves the principal and `context.scopes` to it, verifies
//! it and names the token's principal in the message; [`attach`] then gives the converted input
//! the trusted principal entity (attributes, groups) and the scopes, after checking the
//! revocation list of the snapshot that decides.
//!
//! The token itself is dropped once verified: it never reaches an error message, a log line
//! or a metric (refusals are counted by their bounded label).

use serde_json::Value;
use verdict_core::{CheckInput, Snapshot};

use super::convert::{Item, ProtocolError};
use super::error::ApiError;
use super::proto;
use crate::identity::{TokenRefusal, TokenVerifier, VerifiedPrincipal};
use crate::telemetry::metrics as telemetry_metrics;

/// The context key the token's scopes go to.
pub const SCOPES_CONTEXT_KEY: &str = "scopes";

/// What one check's token gave: no token (`None`), or the principal it verified. A refusal, or
/// a request that also sets what the token provides, is that check's error.
pub type Presented = Result<Option<VerifiedPrincipal>, ApiError>;

/// Takes the token out of `request` and verifies it; `item` prefixes field names in errors.
/// With a token, `principal` must be unset and the context must not carry `scopes`; once the
/// token verifies, `principal` is set to the token's, for the conversion.
pub async fn verify(
    verifier: &TokenVerifier,
    request: &mut proto::CheckRequest,
    item: Item,
) -> Presented {
    let token = std::mem::take(&mut request.token);
    if token.is_empty() {
        return Ok(None);
    }
    if request.principal.is_some() {
        return Err(ProtocolError::Invalid {
            field: format!("{item}principal"),
            reason: "must be unset when `token` is set: the principal comes from the token"
                .to_owned(),
        }
        .into());
    }
    if request
        .context
        .as_ref()
        .is_some_and(|context| context.fields.contains_key(SCOPES_CONTEXT_KEY))
    {
        return Err(ProtocolError::Invalid {
            field: format!("{item}context.{SCOPES_CONTEXT_KEY}"),
            reason: "must be unset when `token` is set: the scopes come from the token".to_owned(),
        }
        .into());
    }
    let verified = verifier.verify(&token).await.map_err(refused)?;
    drop(token);
    let uid = &verified.entity.uid;
    request.principal = Some(proto::EntityRef {
        r#type: uid.entity_type.clone(),
        id: uid.id.clone(),
    });
    Ok(Some(verified))
}

/// Gives the converted `input` the token's principal entity (trusted: its groups may be roles
/// the bundle manages) and its scopes as `context.scopes`, unless `snapshot`'s revocation list
/// names the token.
pub fn attach(
    input: &mut CheckInput,
    verified: VerifiedPrincipal,
    snapshot: &Snapshot,
) -> Result<(), ApiError> {
    verified.check_revocation(snapshot).map_err(refused)?;
    let VerifiedPrincipal { entity, scopes, .. } = verified;
    if !scopes.is_empty() {
        input.context.insert(
            SCOPES_CONTEXT_KEY.to_owned(),
            Value::Array(scopes.into_iter().map(Value::String).collect()),
        );
    }
    input.verified_principal = Some(entity);
    Ok(())
}

/// Counts a refusal by its label and makes it the check's error.
fn refused(refusal: TokenRefusal) -> ApiError {
    tracing::debug!(reason = refusal.label(), "bearer token refused");
    telemetry_metrics::record_token_refusal(refusal.label());
    ApiError::Token(refusal)
}
