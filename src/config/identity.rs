//! Bearer tokens: the issuers whose JWTs Verdict verifies (docs/tokens.md).

use std::path::PathBuf;

use super::ConfigError;
use crate::identity::TokenVerifier;

/// Where the token issuers are configured.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// YAML file listing the JWT issuers whose tokens `Check.token` (and gateways) accept:
    /// issuer, audiences, algorithms, keys (JWKS file or URL) and the claims → principal
    /// mapping (docs/tokens.md). Without it, every token is refused.
    #[arg(long, env = "VERDICT_JWT_ISSUERS")]
    pub jwt_issuers: Option<PathBuf>,
}

/// The token settings, validated: the one verifier every front-end shares.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Verifies bearer tokens; disabled without `--jwt-issuers`.
    pub verifier: TokenVerifier,
}

impl IdentityArgs {
    /// Reads the issuers file and every JWKS file it names; errors name the file and line (or
    /// the setting), never a secret. `env` reads the variables `hmac_secret_env` names.
    pub fn validate(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IdentityConfig, ConfigError> {
        let verifier = match &self.jwt_issuers {
            Some(path) => {
                TokenVerifier::from_file(path, env).map_err(|reason| ConfigError::Invalid {
                    arg: arg_id!(Self, jwt_issuers),
                    reason,
                })?
            }
            None => TokenVerifier::disabled(),
        };
        Ok(IdentityConfig { verifier })
    }
}
