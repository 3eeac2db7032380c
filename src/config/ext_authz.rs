//! Envoy ext_authz settings: the entity type of an mTLS peer, the largest request body checked
//! for properties, and whether denials say why.

use clap::ArgAction;

use super::{ConfigError, in_range};

/// Default entity type of a route's `principal: mtls` (the peer's SPIFFE id is its id).
pub const DEFAULT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE: &str = "Service";
/// Default largest request body read for `properties_from_body`: 64 KiB.
pub const DEFAULT_EXT_AUTHZ_MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest `--ext-authz-max-body-bytes`: the body travels inside one gRPC message, which
/// `--max-message-bytes` bounds too.
const MAX_BODY_BYTES_CEILING: usize = 64 * 1024 * 1024;

/// How the Envoy ext_authz front-end maps requests and answers.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtAuthzArgs {
    /// Entity type of the principal of a `principal: mtls` route: its id is the peer's
    /// identity as Envoy sends it (`source.principal`, a SPIFFE id).
    #[arg(long, env = "VERDICT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE", default_value = DEFAULT_EXT_AUTHZ_PEER_PRINCIPAL_TYPE)]
    pub ext_authz_peer_principal_type: String,
    /// Largest request body (bytes) read for a `properties_from_body` route; a larger body is
    /// denied (403).
    #[arg(long, env = "VERDICT_EXT_AUTHZ_MAX_BODY_BYTES", default_value_t = DEFAULT_EXT_AUTHZ_MAX_BODY_BYTES)]
    pub ext_authz_max_body_bytes: usize,
    /// Put the reason for a denial in the denied response's JSON body (`reason`). Off by
    /// default: a client learns only the status and the request id; the decision log has the
    /// reason.
    #[arg(long, env = "VERDICT_EXT_AUTHZ_DENY_REASONS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub ext_authz_deny_reasons: bool,
}

/// The ext_authz settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAuthzConfig {
    /// Entity type of an mTLS peer principal.
    pub peer_principal_type: String,
    /// Largest body read for properties.
    pub max_body_bytes: usize,
    /// Whether denied responses carry the reason.
    pub deny_reasons: bool,
}

impl ExtAuthzArgs {
    /// Checks the entity type's syntax and the body limit's range.
    pub fn validate(self) -> Result<ExtAuthzConfig, ConfigError> {
        let peer_type = self.ext_authz_peer_principal_type.trim();
        if let Err(error) = verdict_core::relations::parse_entity_type(peer_type) {
            return Err(ConfigError::Invalid {
                arg: arg_id!(Self, ext_authz_peer_principal_type),
                reason: format!("`{peer_type}` is not an entity type: {}", error.reason),
            });
        }
        Ok(ExtAuthzConfig {
            peer_principal_type: peer_type.to_owned(),
            max_body_bytes: in_range(
                self.ext_authz_max_body_bytes,
                1,
                MAX_BODY_BYTES_CEILING,
                arg_id!(Self, ext_authz_max_body_bytes),
            )?,
            deny_reasons: self.ext_authz_deny_reasons,
        })
    }
}
