//! Every refusal, every mapping, and the JWKS cache against a loopback server. Tokens are
//! minted here with the test keys in `tests/fixtures/jwt/` (made for these tests only).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verdict_core::EntityRef;

use super::settings::{ClaimToType, EntityTypeName, HmacSecret};
use super::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa-public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa2-private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec-public.pem");

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "verdict";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hmac";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn rsa_jwk(kid: &str, pin: Option<Algorithm>) -> Jwk {
    let key = DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap();
    let mut jwk = Jwk::from_decoding_key(&key, pin).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn ec_jwk(kid: &str) -> Jwk {
    let key = DecodingKey::from_ec_pem(EC_PUBLIC).unwrap();
    let mut jwk = Jwk::from_decoding_key(&key, Some(Algorithm::ES256)).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn jwks(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// An issuer over a JWKS file with an RSA key (`rsa-1`) and an EC key (`ec-1`), mapping the
/// claims the way the docs' example does.
fn settings(dir: &tempfile::TempDir) -> IssuerSettings {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(vec![rsa_jwk("rsa-1", None), ec_jwk("ec-1")])).unwrap();
    IssuerSettings {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned(), "other-api".to_owned()],
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
        jwks: Some(JwksSource::File(path)),
        hmac_secret: None,
        jwks_refresh_interval: Duration::from_secs(3600),
        jwks_fetch_timeout: Duration::from_secs(5),
        leeway: Duration::from_secs(30),
        principal: ClaimToType {
            claim: "sub".to_owned(),
            entity_type: EntityTypeName("User".to_owned()),
        },
        attributes: BTreeMap::from([
            ("email".to_owned(), "email".to_owned()),
            ("dept".to_owned(), "department".to_owned()),
            ("level".to_owned(), "level".to_owned()),
            ("staff".to_owned(), "staff".to_owned()),
            ("teams".to_owned(), "teams".to_owned()),
        ]),
        groups: Some(ClaimToType {
            claim: "groups".to_owned(),
            entity_type: EntityTypeName("Role".to_owned()),
        }),
    }
}

fn verifier(dir: &tempfile::TempDir) -> TokenVerifier {
    TokenVerifier::new(vec![settings(dir)]).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": now() + 600,
        "nbf": now() - 10,
        "iat": now() - 10,
        "jti": "token-1",
        "email": "alice@example.com",
        "dept": "eng",
        "level": 3,
        "staff": true,
        "teams": ["infra", "web"],
        "groups": ["admin", "support"],
        "scope": "documents:read documents:write",
        "ignored": {"nested": [1.5]},
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        claims,
    )
}

fn b64(json: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

#[tokio::test]
async fn a_valid_rs256_token_maps_to_principal_attributes_parents_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let verified = verifier(&dir).verify(&rs256(&claims())).await.unwrap();
    assert_eq!(verified.entity.uid, EntityRef::new("User", "alice"));
    assert_eq!(
        Value::Object(verified.entity.attrs.clone()),
        json!({
            "email": "alice@example.com",
            "department": "eng",
            "level": 3,
            "staff": true,
            "teams": ["infra", "web"],
        })
    );
    assert_eq!(
        verified.entity.parents,
        [
            EntityRef::new("Role", "admin"),
            EntityRef::new("Role", "support")
        ]
    );
    assert_eq!(verified.scopes, ["documents:read", "documents:write"]);
    assert_eq!(verified.jti.as_deref(), Some("token-1"));
    assert_eq!(verified.issuer, ISSUER);
}

#[tokio::test]
async fn a_valid_es256_token_verifies_with_the_ec_key() {
    let dir = tempfile::tempdir().unwrap();
    let claims = with(
        without(without(claims(), "groups"), "scope"),
        "scp",
        json!(["orders:read", "orders:read", "profile"]),
    );
    let token = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        &claims,
    );
    let verified = verifier(&dir).verify(&token).await.unwrap();
    assert_eq!(verified.entity.uid, EntityRef::new("User", "alice"));
    assert!(verified.entity.parents.is_empty());
    assert_eq!(verified.scopes, ["orders:read", "profile"]);
    // Without a `kid`, the only key of the algorithm's family is used.
    let token = sign(
        Algorithm::ES256,
        None,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        &claims,
    );
    assert!(verifier(&dir).verify(&token).await.is_ok());
}

/// Every refusal the issue names, without Envoy.
#[tokio::test]
async fn every_refusal_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = verifier(&dir);
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let valid = rs256(&claims());
    let mut parts = valid.split('.');
    let (header, _, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let tampered = format!(
        "{header}.{}.{signature}",
        b64(&with(claims(), "sub", json!("mallory")))
    );
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    let unsigned_upper = format!(
        "{}.{}.",
        b64(&json!({"alg": "NONE", "typ": "JWT"})),
        b64(&claims())
    );
    // HS256 "signed" with the RSA public key's bytes as the HMAC secret: the classic
    // algorithm confusion. The PEM text and the DER bytes both.
    let der = pem_der(RSA_PUBLIC);
    let confused_pem = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        &claims(),
    );
    let confused_der = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(&der).unwrap(),
        &claims(),
    );
    let other_key = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap(),
        &claims(),
    );
    let cases: Vec<(&str, String, TokenRefusal)> = vec![
        ("no token", String::new(), TokenRefusal::Missing),
        ("blank token", "  ".to_owned(), TokenRefusal::Missing),
        ("not a JWT", "not-a-jwt".to_owned(), TokenRefusal::Malformed),
        ("two parts", "a.b".to_owned(), TokenRefusal::Malformed),
        (
            "bad base64",
            "@@@.@@@.@@@".to_owned(),
            TokenRefusal::Malformed,
        ),
        (
            "oversized",
            format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b"),
            TokenRefusal::Malformed,
        ),
        (
            "expired",
            rs256(&with(claims(), "exp", json!(now() - 3600))),
            TokenRefusal::Expired,
        ),
        (
            "no exp",
            rs256(&without(claims(), "exp")),
            TokenRefusal::Expired,
        ),
        (
            "not yet valid",
            rs256(&with(claims(), "nbf", json!(now() + 3600))),
            TokenRefusal::NotYetValid,
        ),
        (
            "wrong audience",
            rs256(&with(claims(), "aud", json!("billing"))),
            TokenRefusal::WrongAudience,
        ),
        (
            "wrong audiences",
            rs256(&with(claims(), "aud", json!(["billing", "crm"]))),
            TokenRefusal::WrongAudience,
        ),
        (
            "missing aud",
            rs256(&without(claims(), "aud")),
            TokenRefusal::WrongAudience,
        ),
        (
            "wrong issuer",
            rs256(&with(claims(), "iss", json!("https://evil.test/"))),
            TokenRefusal::UnknownIssuer,
        ),
        (
            "issuer differs by a slash",
            rs256(&with(claims(), "iss", json!("https://idp.test"))),
            TokenRefusal::UnknownIssuer,
        ),
        (
            "missing iss",
            rs256(&without(claims(), "iss")),
            TokenRefusal::UnknownIssuer,
        ),
        ("alg none", unsigned, TokenRefusal::AlgorithmNotAllowed),
        (
            "alg NONE",
            unsigned_upper,
            TokenRefusal::AlgorithmNotAllowed,
        ),
        (
            "HS256 signed with the RSA public key (PEM)",
            confused_pem,
            TokenRefusal::AlgorithmNotAllowed,
        ),
        (
            "HS256 signed with the RSA public key (DER)",
            confused_der,
            TokenRefusal::AlgorithmNotAllowed,
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("rsa-9"), &rsa, &claims()),
            TokenRefusal::UnknownKey,
        ),
        ("tampered payload", tampered, TokenRefusal::BadSignature),
        (
            "signed by another key",
            other_key,
            TokenRefusal::BadSignature,
        ),
        (
            "no principal claim",
            rs256(&without(claims(), "sub")),
            TokenRefusal::MissingClaim("sub".to_owned()),
        ),
        (
            "principal claim not a string",
            rs256(&with(claims(), "sub", json!(42))),
            TokenRefusal::MissingClaim("sub".to_owned()),
        ),
        (
            "an attribute of an unmapped type",
            rs256(&with(claims(), "level", json!(2.5))),
            TokenRefusal::MissingClaim("level".to_owned()),
        ),
        (
            "groups not strings",
            rs256(&with(claims(), "groups", json!([{"name": "admin"}]))),
            TokenRefusal::MissingClaim("groups".to_owned()),
        ),
        (
            "scope not a string",
            rs256(&with(claims(), "scope", json!(["a"]))),
            TokenRefusal::MissingClaim("scope".to_owned()),
        ),
    ];
    for (name, token, expected) in cases {
        let refused = verifier.verify(&token).await.map(|_| ());
        assert_eq!(refused, Err(expected.clone()), "{name}");
        let text = expected.to_string();
        assert!(
            token.is_empty() || !text.contains(&token),
            "{name}: the refusal quotes the token"
        );
    }
    assert_eq!(
        TokenVerifier::disabled().verify(&valid).await.unwrap_err(),
        TokenRefusal::NotConfigured
    );
}

#[tokio::test]
async fn algorithms_are_limited_to_the_allow_list_and_the_key_s_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut only_rs256 = settings(&dir);
    only_rs256.algorithms = vec![Algorithm::RS256];
    let verifier = TokenVerifier::new(vec![only_rs256]).unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    for (name, token) in [
        (
            "PS256",
            sign(Algorithm::PS256, Some("rsa-1"), &rsa, &claims()),
        ),
        (
            "RS512",
            sign(Algorithm::RS512, Some("rsa-1"), &rsa, &claims()),
        ),
        (
            "ES256",
            sign(Algorithm::ES256, Some("ec-1"), &ec, &claims()),
        ),
    ] {
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            TokenRefusal::AlgorithmNotAllowed,
            "{name}"
        );
    }
    // An RS256 token naming the EC key: the key's family does not fit.
    let dir = tempfile::tempdir().unwrap();
    let verifier = TokenVerifier::new(vec![settings(&dir)]).unwrap();
    let wrong_key = sign(Algorithm::RS256, Some("ec-1"), &rsa, &claims());
    assert_eq!(
        verifier.verify(&wrong_key).await.unwrap_err(),
        TokenRefusal::AlgorithmNotAllowed
    );
    // A JWK that names its algorithm is used with that one only.
    let dir = tempfile::tempdir().unwrap();
    let mut pinned = settings(&dir);
    let path = dir.path().join("pinned.json");
    std::fs::write(&path, jwks(vec![rsa_jwk("rsa-1", Some(Algorithm::RS256))])).unwrap();
    pinned.jwks = Some(JwksSource::File(path));
    let verifier = TokenVerifier::new(vec![pinned]).unwrap();
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    let rs384 = sign(Algorithm::RS384, Some("rsa-1"), &rsa, &claims());
    assert_eq!(
        verifier.verify(&rs384).await.unwrap_err(),
        TokenRefusal::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn hmac_tokens_only_ever_meet_the_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut both = settings(&dir);
    both.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
    both.hmac_secret = Some(HmacSecret(SECRET.to_vec()));
    let verifier = TokenVerifier::new(vec![both]).unwrap();
    let good = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET).unwrap(),
        &claims(),
    );
    assert_eq!(
        verifier.verify(&good).await.unwrap().entity.uid,
        EntityRef::new("User", "alice")
    );
    // Even with HS256 allowed, a token "signed" with the RSA public key fails: the secret is
    // the only HMAC key, whatever `kid` the token names.
    for secret in [RSA_PUBLIC.to_vec(), pem_der(RSA_PUBLIC)] {
        let confused = sign(
            Algorithm::HS256,
            Some("rsa-1"),
            &EncodingKey::from_secret(&secret).unwrap(),
            &claims(),
        );
        assert_eq!(
            verifier.verify(&confused).await.unwrap_err(),
            TokenRefusal::BadSignature
        );
    }
    // HS384 is not on this allow-list.
    let hs384 = sign(
        Algorithm::HS384,
        None,
        &EncodingKey::from_secret(SECRET).unwrap(),
        &claims(),
    );
    assert_eq!(
        verifier.verify(&hs384).await.unwrap_err(),
        TokenRefusal::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn leeway_applies_to_exp_and_nbf() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = verifier(&dir);
    // 30 s of leeway: a token 10 s past its `exp` or 10 s before its `nbf` still verifies, one
    // 120 s past or before does not.
    assert!(
        verifier
            .verify(&rs256(&with(claims(), "exp", json!(now() - 10))))
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&rs256(&with(claims(), "nbf", json!(now() + 10))))
            .await
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify(&rs256(&with(claims(), "exp", json!(now() - 120))))
            .await
            .unwrap_err(),
        TokenRefusal::Expired
    );
    assert_eq!(
        verifier
            .verify(&rs256(&with(claims(), "exp", json!("tomorrow"))))
            .await
            .unwrap_err(),
        TokenRefusal::Expired
    );
}

#[tokio::test]
async fn a_revoked_jti_is_refused_by_the_snapshot_s_list() {
    let dir = tempfile::tempdir().unwrap();
    let verified = verifier(&dir).verify(&rs256(&claims())).await.unwrap();
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("p.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let load = || Snapshot::load(bundle.path(), &verdict_core::LoadOptions::default()).unwrap();
    assert_eq!(verified.check_revocation(&load()), Ok(()));
    std::fs::write(bundle.path().join("revocations.txt"), "# leaked\ntoken-1\n").unwrap();
    assert_eq!(
        verified.check_revocation(&load()),
        Err(TokenRefusal::Revoked)
    );
    let no_jti = VerifiedPrincipal {
        jti: None,
        ..verified
    };
    assert_eq!(no_jti.check_revocation(&load()), Ok(()));
}

#[test]
fn every_refusal_has_a_distinct_label() {
    let all = [
        TokenRefusal::Missing,
        TokenRefusal::Malformed,
        TokenRefusal::NotConfigured,
        TokenRefusal::UnknownIssuer,
        TokenRefusal::AlgorithmNotAllowed,
        TokenRefusal::UnknownKey,
        TokenRefusal::BadSignature,
        TokenRefusal::Expired,
        TokenRefusal::NotYetValid,
        TokenRefusal::WrongAudience,
        TokenRefusal::MissingClaim("x".to_owned()),
        TokenRefusal::Revoked,
    ];
    let labels: std::collections::BTreeSet<_> = all.iter().map(TokenRefusal::label).collect();
    assert_eq!(labels.len(), all.len());
}

/// The DER bytes inside a PEM file.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

// --- the issuers file -------------------------------------------------------------------

fn parse(yaml: &str) -> Result<Vec<IssuerSettings>, String> {
    parse_issuers(yaml, "issuers.yaml", &|name| {
        (name == "HMAC_SECRET").then(|| String::from_utf8_lossy(SECRET).into_owned())
    })
}

#[test]
fn the_issuers_file_fills_in_defaults() {
    let issuers = parse(
        "issuers:\n  - issuer: https://idp.test/\n    audiences: [verdict]\n    jwks_url: https://idp.test/jwks\n",
    )
    .unwrap();
    let issuer = &issuers[0];
    assert_eq!(issuer.algorithms, DEFAULT_ALGORITHMS);
    assert_eq!(issuer.leeway, DEFAULT_LEEWAY);
    assert_eq!(issuer.jwks_refresh_interval, Duration::from_secs(300));
    assert_eq!(issuer.jwks_fetch_timeout, Duration::from_secs(5));
    assert_eq!(issuer.principal.claim, "sub");
    assert_eq!(issuer.principal.entity_type.0, "User");
    assert!(issuer.groups.is_none() && issuer.attributes.is_empty());
    let full = parse(
        "issuers:
  - issuer: https://idp.test/
    audiences: [verdict, api]
    algorithms: [RS256, ES256]
    jwks_url: http://127.0.0.1:8080/jwks
    jwks_refresh_interval: 1m
    jwks_fetch_timeout: 2s
    leeway: 10s
    principal: {claim: email, type: Acme::User}
    attributes: {dept: department}
    groups: {claim: roles, type: Role}
  - issuer: internal
    audiences: [verdict]
    algorithms: [HS256]
    hmac_secret_env: HMAC_SECRET
",
    )
    .unwrap();
    assert_eq!(full.len(), 2);
    assert_eq!(full[0].principal.entity_type.0, "Acme::User");
    assert_eq!(full[0].leeway, Duration::from_secs(10));
    assert_eq!(full[1].hmac_secret, Some(HmacSecret(SECRET.to_vec())));
    assert!(!format!("{:?}", full[1]).contains("0123456789abcdef"));
}

#[test]
fn bad_issuers_files_name_the_line_or_the_setting() {
    let base = "issuers:\n  - issuer: https://idp.test/\n    audiences: [verdict]\n";
    let cases = [
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    algorithms: [RS256, none]\n"),
            "issuers.yaml:5:",
            "`none` is never accepted: every token must be signed",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    algorithms: [RS257]\n"),
            "issuers.yaml:5:",
            "`RS257` is not a JWT signature algorithm",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    audience: x\n"),
            "issuers.yaml:5:",
            "unknown field `audience`",
        ),
        (
            format!("{base}    jwks_url: http://idp.test/jwks\n"),
            // serde_yaml_ng places a bad value of a mapping at the mapping's start.
            "issuers.yaml:2:5: issuers[0]:",
            "a JWKS URL must be https (plain http only to a loopback address",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    leeway: soon\n"),
            "issuers.yaml:2:5: issuers[0]:",
            "is not a duration",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    principal: {{type: Action}}\n"),
            "issuers.yaml:5:",
            "`Action` cannot be a principal or group type",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    jwks_file: k.json\n"),
            "issuers.yaml: issuers[0].jwks_file:",
            "set `jwks_file` or `jwks_url`, not both",
        ),
        (
            base.to_owned(),
            "issuers.yaml: issuers[0].jwks_file:",
            "asymmetric algorithms need public keys",
        ),
        (
            format!("{base}    algorithms: [HS256]\n"),
            "issuers.yaml: issuers[0].algorithms:",
            "HS256, HS384 and HS512 need a secret",
        ),
        (
            format!(
                "{base}    jwks_url: https://idp.test/jwks\n    hmac_secret_env: HMAC_SECRET\n"
            ),
            "issuers.yaml: issuers[0].algorithms:",
            "a secret is configured but no HMAC algorithm",
        ),
        (
            format!("{base}    algorithms: [HS256]\n    hmac_secret_env: UNSET\n"),
            "issuers.yaml: issuers[0].hmac_secret_env:",
            "the variable `UNSET` is not set",
        ),
        (
            format!("{base}    jwks_url: https://idp.test/jwks\n    leeway: 1h\n"),
            "issuers.yaml: issuers[0].leeway:",
            "more than the 300s allowed",
        ),
        (
            "issuers:\n  - issuer: a\n    audiences: []\n    jwks_url: https://a/\n".to_owned(),
            "issuers.yaml: issuers[0].audiences:",
            "list at least one audience",
        ),
        (
            "issuers: []\n".to_owned(),
            "issuers.yaml:",
            "`issuers` lists no issuer",
        ),
        (
            format!(
                "{base}    jwks_url: https://idp.test/jwks\n{}    jwks_url: https://idp.test/jwks\n",
                &base[8..]
            ),
            "issuers.yaml: issuers[1].issuer:",
            "`https://idp.test/` is configured twice",
        ),
    ];
    let mut wrong = Vec::new();
    for (yaml, at, reason) in cases {
        let error = parse(&yaml).unwrap_err();
        if !error.starts_with(at) || !error.contains(reason) {
            wrong.push(format!("{error}\n--- for:\n{yaml}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_short_secret_or_a_bad_jwks_file_fails_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "hunter2\n").unwrap();
    let yaml = format!(
        "issuers:\n  - issuer: a\n    audiences: [v]\n    algorithms: [HS256]\n    hmac_secret_file: {}\n",
        secret.display()
    );
    let error = parse(&yaml).unwrap_err();
    assert!(
        error.contains("the secret is 7 bytes; use at least 32"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, "{\"keys\": [\n  {\"kty\": \"RSA\",}\n]}").unwrap();
    let issuers = dir.path().join("issuers.yaml");
    std::fs::write(
        &issuers,
        format!(
            "issuers:\n  - issuer: a\n    audiences: [v]\n    jwks_file: {}\n",
            jwks.display()
        ),
    )
    .unwrap();
    let error = TokenVerifier::from_file(&issuers, &|_| None).unwrap_err();
    assert!(error.contains(&format!("{}:2:", jwks.display())), "{error}");
    std::fs::write(&jwks, jwks_with_only_a_secret()).unwrap();
    let error = TokenVerifier::from_file(&issuers, &|_| None).unwrap_err();
    assert!(error.contains("no usable signature key"), "{error}");
}

/// A JWKS whose only key is symmetric: never used, so the file has no usable key.
fn jwks_with_only_a_secret() -> String {
    json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]})
        .to_string()
}

// --- JWKS URLs ---------------------------------------------------------------------------

/// A loopback HTTP server answering every request with the current JWKS (or a 500 when
/// there is none), counting requests. Stopped when dropped.
struct JwksServer {
    url: String,
    body: Arc<std::sync::Mutex<Option<String>>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(std::sync::Mutex::new(body));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let current = served.lock().unwrap().clone();
                let response = match current {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Self {
            url,
            body,
            requests,
            task,
        }
    }

    fn serve(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn url_settings(url: &str, interval: Duration) -> IssuerSettings {
    let dir = tempfile::tempdir().unwrap();
    IssuerSettings {
        jwks: Some(JwksSource::Url(url.parse().unwrap())),
        jwks_refresh_interval: interval,
        jwks_fetch_timeout: Duration::from_millis(500),
        ..settings(&dir)
    }
}

#[tokio::test]
async fn unknown_kids_fetch_at_most_once_per_interval() {
    let server = JwksServer::start(Some(jwks(vec![rsa_jwk("rsa-1", None)]))).await;
    let verifier =
        TokenVerifier::new(vec![url_settings(&server.url, Duration::from_secs(3600))]).unwrap();
    // Nothing is fetched before a token needs it.
    assert_eq!(server.requests(), 0);
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    assert_eq!(server.requests(), 1);
    // Known keys need no fetch; a flood of made-up kids within the interval costs none either.
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    for i in 0..20 {
        assert!(verifier.verify(&rs256(&claims())).await.is_ok());
        let unknown = sign(
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &rsa,
            &claims(),
        );
        assert_eq!(
            verifier.verify(&unknown).await.unwrap_err(),
            TokenRefusal::UnknownKey
        );
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(verifier.jwks_refresh_attempts(ISSUER), Some(1));
}

#[tokio::test]
async fn concurrent_first_tokens_share_one_fetch() {
    let server = JwksServer::start(Some(jwks(vec![rsa_jwk("rsa-1", None)]))).await;
    let verifier =
        TokenVerifier::new(vec![url_settings(&server.url, Duration::from_secs(3600))]).unwrap();
    let token = rs256(&claims());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_a_failing_url_keeps_the_last_good_keys() {
    let server = JwksServer::start(Some(jwks(vec![rsa_jwk("rsa-1", None)]))).await;
    // No minimum interval: every unknown kid may refresh (the gate's other side).
    let verifier = TokenVerifier::new(vec![url_settings(&server.url, Duration::ZERO)]).unwrap();
    assert!(verifier.verify(&rs256(&claims())).await.is_ok());
    // The issuer adds a key: a token naming it triggers a refresh and verifies.
    server.serve(Some(jwks(vec![rsa_jwk("rsa-1", None), ec_jwk("ec-2")])));
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let ec_token = sign(Algorithm::ES256, Some("ec-2"), &ec, &claims());
    assert!(verifier.verify(&ec_token).await.is_ok());
    assert_eq!(server.requests(), 2);
    // The URL fails (HTTP 500, then not JSON): unknown kids stay unknown, known keys keep
    // verifying.
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    for failure in [None, Some("<html>oops</html>".to_owned())] {
        server.serve(failure);
        let unknown = sign(Algorithm::RS256, Some("rsa-new"), &rsa, &claims());
        assert_eq!(
            verifier.verify(&unknown).await.unwrap_err(),
            TokenRefusal::UnknownKey
        );
        assert!(verifier.verify(&rs256(&claims())).await.is_ok());
        assert!(verifier.verify(&ec_token).await.is_ok());
    }
    assert_eq!(server.requests(), 4);
    // The server goes away entirely: the same.
    let url = server.url.clone();
    drop(server);
    let unknown = sign(Algorithm::RS256, Some("rsa-new"), &rsa, &claims());
    assert_eq!(
        verifier.verify(&unknown).await.unwrap_err(),
        TokenRefusal::UnknownKey
    );
    assert!(verifier.verify(&rs256(&claims())).await.is_ok(), "{url}");
}

#[tokio::test]
async fn a_jwks_url_that_never_answers_times_out() {
    // Accepts connections and never answers: the fetch gives up after its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut settings = url_settings(&url, Duration::from_secs(3600));
    settings.jwks_fetch_timeout = Duration::from_millis(100);
    let verifier = TokenVerifier::new(vec![settings]).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(30), verifier.verify(&rs256(&claims())))
        .await
        .expect("the fetch timeout bounds verification");
    assert_eq!(refused.unwrap_err(), TokenRefusal::UnknownKey);
    hold.abort();
}

#[test]
fn key_algorithm_names_round_trip() {
    // The JWK `alg` names jsonwebtoken reads are the header's.
    assert_eq!(
        Algorithm::try_from(KeyAlgorithm::RS256).unwrap(),
        Algorithm::RS256
    );
}

#[tokio::test]
async fn a_verified_token_is_remembered_and_any_other_text_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = verifier(&dir);
    let token = rs256(&claims());
    let first = verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.verified.len(), 1);
    assert_eq!(verifier.verify(&token).await.unwrap(), first);
    assert_eq!(verifier.verified.len(), 1);
    // The same signature over other claims is not the cached token: verified, and refused.
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(claims(), "sub", json!("mallory"))),
        parts[2]
    );
    assert_eq!(
        verifier.verify(&tampered).await.unwrap_err(),
        TokenRefusal::BadSignature
    );
    // Refusals are never remembered.
    assert_eq!(verifier.verified.len(), 1);
    // Clones share the cache.
    assert_eq!(verifier.clone().verify(&token).await.unwrap(), first);
}

#[test]
fn a_remembered_token_is_only_valid_within_its_own_times_and_the_cache_is_bounded() {
    use super::cache::{CAPACITY, VerifiedTokens, key};
    let principal = VerifiedPrincipal {
        entity: verdict_core::EntityInput {
            uid: verdict_core::EntityRef::new("User", "alice"),
            attrs: serde_json::Map::new(),
            parents: Vec::new(),
        },
        scopes: Vec::new(),
        jti: None,
        issuer: ISSUER.to_owned(),
    };
    let cache = VerifiedTokens::default();
    cache.insert(key("t"), principal.clone(), 100, 200, 150);
    assert_eq!(cache.get(&key("t"), 150).as_ref(), Some(&principal));
    assert_eq!(cache.get(&key("other"), 150), None);
    assert_eq!(cache.get(&key("t"), 99), None, "before nbf − leeway");
    assert_eq!(cache.get(&key("t"), 200), None, "at exp + leeway");
    // An expired entry is dropped on the miss.
    assert_eq!(cache.len(), 0);

    // Full of expired tokens: inserting drops them rather than growing.
    for i in 0..CAPACITY {
        cache.insert(key(&i.to_string()), principal.clone(), 0, 10, 5);
    }
    assert_eq!(cache.len(), CAPACITY);
    cache.insert(key("fresh"), principal.clone(), 0, 1_000, 500);
    assert_eq!(cache.len(), 1);
    // Full of valid tokens: everything goes, and the new one stays.
    for i in 0..CAPACITY {
        cache.insert(key(&i.to_string()), principal.clone(), 0, 1_000, 500);
    }
    assert!(cache.len() <= CAPACITY);
    cache.insert(key("last"), principal.clone(), 0, 1_000, 500);
    assert!(cache.len() <= CAPACITY);
    assert!(cache.get(&key("last"), 500).is_some());
}
