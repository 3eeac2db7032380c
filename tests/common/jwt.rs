//! Test JWTs: the fixture RSA keys (`tests/fixtures/jwt/`), a JWKS file and an issuers file
//! over them, and RS256 tokens minted with them. Shared by the token tests, the Envoy tests and
//! the gateway benchmark.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::Value;

pub const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/jwt/rsa-private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/jwt/rsa-public.pem");
pub const RSA2_PRIVATE: &[u8] = include_bytes!("../fixtures/jwt/rsa2-private.pem");
/// The `kid` the JWKS gives the fixture RSA public key.
pub const KID: &str = "acme-1";

/// Writes `jwks.json` (the fixture RSA public key as [`KID`]) and `issuers.yaml` with one
/// issuer over it into `dir`, and returns the issuers file. `extra` is added to the issuer's
/// entry: YAML lines indented by four spaces, each ending with a newline.
pub fn issuers_file(dir: &Path, issuer: &str, audience: &str, extra: &str) -> PathBuf {
    let mut jwk = Jwk::from_decoding_key(
        &DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
        Some(Algorithm::RS256),
    )
    .unwrap();
    jwk.common.key_id = Some(KID.to_owned());
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let issuers = dir.join("issuers.yaml");
    std::fs::write(
        &issuers,
        format!(
            "issuers:\n  - issuer: {issuer}\n    audiences: [{audience}]\n    jwks_file: {}\n{extra}",
            jwks.display()
        ),
    )
    .unwrap();
    issuers
}

/// An RS256 token over `claims`, signed with `key` (a PEM private key), naming `kid`.
pub fn mint(claims: &Value, key: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
}
