//! `Check.token` through the real server with a stock tonic client: a JWT minted here with the
//! test keys (tests/fixtures/jwt/) names the principal, its roles and its scopes; the example
//! bundle decides. Forged, conflicting and revoked tokens are refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use crate::common;

use std::path::Path;

use serde_json::{Value, json};
use tonic::Code;
use verdict::api::proto;
use verdict::identity::TokenVerifier;
use verdict::reload::Cause;

use common::{ALLOW, DENY, TestServer, check, entity, test_config, to_struct};

use common::jwt::{KID, RSA_PRIVATE, RSA2_PRIVATE};
const ISSUER: &str = "https://idp.acme.test/";

/// The example bundle, copied so a test can add a revocation list.
fn copy_of_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::example_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// An issuers file over a JWKS file with the test RSA key, mapping `roles` to `Role` parents
/// (the example schema's roles).
fn issuers_file(dir: &Path) -> std::path::PathBuf {
    common::jwt::issuers_file(
        dir,
        ISSUER,
        "verdict",
        "    algorithms: [RS256]\n    groups: {claim: roles, type: Role}\n",
    )
}

fn mint(claims: &Value, key: &[u8]) -> String {
    common::jwt::mint(claims, key, KID)
}

fn claims(sub: &str, scope: &str, roles: &[&str], jti: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": ISSUER,
        "aud": "verdict",
        "sub": sub,
        "exp": now + 600,
        "iat": now,
        "jti": jti,
        "scope": scope,
        "roles": roles,
    })
}

/// A check whose principal is the token's.
fn with_token(token: &str, action: &str, resource: (&str, &str)) -> proto::CheckRequest {
    proto::CheckRequest {
        principal: None,
        context: None,
        token: token.to_owned(),
        ..check(("", ""), action, resource, json!({}))
    }
}

async fn start(bundle: &Path, config_dir: &Path) -> TestServer {
    let mut config = test_config(bundle);
    config.identity.verifier = TokenVerifier::from_file(&issuers_file(config_dir), &|_| None)
        .expect("the issuers file is valid");
    TestServer::start_with(config).await
}

#[tokio::test]
async fn a_token_names_the_principal_its_roles_and_its_scopes() {
    let keys = tempfile::tempdir().unwrap();
    let server = start(&common::example_bundle(), keys.path()).await;
    let mut client = server.client().await;

    // bob may read the roadmap when his token carries `documents:read`: the example bundle's
    // own decision for User::"bob" with that scope.
    let reader = mint(&claims("bob", "documents:read", &[], "t-1"), RSA_PRIVATE);
    let answer = client
        .check(with_token(&reader, "read", ("Document", "roadmap")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, ALLOW, "{answer:?}");
    assert_eq!(answer.determining_policies, ["document-read"]);
    // The same without the scope: the scopes are the token's, and the policy needs it.
    let no_scope = mint(&claims("bob", "profile", &[], "t-2"), RSA_PRIVATE);
    let answer = client
        .check(with_token(&no_scope, "read", ("Document", "roadmap")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, DENY);

    // bob is no admin in the bundle; his token's `roles` make him one, which request entities
    // could never do (request entity trust is `attributes`).
    let admin = mint(&claims("bob", "", &["admin"], "t-3"), RSA_PRIVATE);
    let answer = client
        .check(with_token(&admin, "ListUsers", ("Api", "admin")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision, ALLOW, "{answer:?}");
    assert_eq!(answer.determining_policies, ["admin-api-admins"]);
    let mut claimed = check(("User", "bob"), "ListUsers", ("Api", "admin"), json!({}));
    claimed.entities = vec![proto::Entity {
        uid: Some(entity("User", "bob")),
        attrs: None,
        parents: vec![entity("Role", "admin")],
    }];
    let refused = client.check(claimed).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn forged_conflicting_and_unconfigured_tokens_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let server = start(&common::example_bundle(), keys.path()).await;
    let mut client = server.client().await;
    let good = mint(&claims("bob", "documents:read", &[], "t-1"), RSA_PRIVATE);

    // Signed by another key (a forgery), and a tampered payload: UNAUTHENTICATED, saying why,
    // never quoting the token.
    let forged = mint(
        &claims("bob", "documents:read", &["admin"], "t-1"),
        RSA2_PRIVATE,
    );
    let mut parts: Vec<&str> = good.split('.').collect();
    let elevated = mint(&claims("erin", "documents:read", &[], "t-1"), RSA_PRIVATE);
    let elevated_payload = elevated.split('.').nth(1).unwrap().to_owned();
    parts[1] = &elevated_payload;
    let tampered = parts.join(".");
    for token in [&forged, &tampered] {
        let status = client
            .check(with_token(token, "read", ("Document", "roadmap")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "token: the token's signature is invalid");
        assert!(!status.message().contains(token.as_str()));
    }
    let expired = {
        let mut claims = claims("bob", "documents:read", &[], "t-1");
        claims["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
        mint(&claims, RSA_PRIVATE)
    };
    let status = client
        .check(with_token(&expired, "read", ("Document", "roadmap")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token: the token has expired")
    );

    // A token and a principal, or a token and `context.scopes`: INVALID_ARGUMENT naming the
    // field.
    let mut both = with_token(&good, "read", ("Document", "roadmap"));
    both.principal = Some(entity("User", "erin"));
    let status = client.check(both).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("principal: must be unset when `token` is set")
    );
    let mut scoped = with_token(&good, "read", ("Document", "roadmap"));
    scoped.context = Some(to_struct(json!({"scopes": ["documents:write"]})));
    let status = client.check(scoped).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("context.scopes: must be unset")
    );

    // BatchCheck: each item answers for its own token.
    let mut conflicting = with_token(&good, "read", ("Document", "roadmap"));
    conflicting.principal = Some(entity("User", "bob"));
    let checks = vec![
        with_token(&good, "read", ("Document", "roadmap")),
        with_token(&forged, "read", ("Document", "roadmap")),
        conflicting,
        check(
            ("User", "bob"),
            "read",
            ("Document", "roadmap"),
            json!({"scopes": ["documents:read"]}),
        ),
    ];
    let batch = client
        .batch_check(proto::BatchCheckRequest {
            checks,
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    use proto::batch_check_result::Result as Item;
    let outcome: Vec<Result<i32, (i32, String)>> = batch
        .results
        .into_iter()
        .map(|r| match r.result.unwrap() {
            Item::Response(response) => Ok(response.decision),
            Item::Error(error) => Err((error.code, error.message)),
        })
        .collect();
    assert_eq!(outcome[0], Ok(ALLOW));
    assert_eq!(
        outcome[1],
        Err((
            Code::Unauthenticated as i32,
            "token: the token's signature is invalid".to_owned()
        ))
    );
    let Err((code, message)) = &outcome[2] else {
        panic!("{:?}", outcome[2]);
    };
    assert_eq!(*code, Code::InvalidArgument as i32);
    assert!(
        message.starts_with("checks[2].principal: must be unset"),
        "{message}"
    );
    assert_eq!(outcome[3], Ok(ALLOW));
    server.stop().await;

    // A server without issuers refuses every token.
    let server = TestServer::start(&common::example_bundle()).await;
    let status = server
        .client()
        .await
        .check(with_token(&good, "read", ("Document", "roadmap")))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "token: no token issuer is configured"
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_jti_is_refused_once_the_bundle_reloads() {
    let bundle = copy_of_example();
    let keys = tempfile::tempdir().unwrap();
    let server = start(bundle.path(), keys.path()).await;
    let mut client = server.client().await;
    let token = mint(
        &claims("bob", "documents:read", &[], "leaked-7"),
        RSA_PRIVATE,
    );
    let request = || with_token(&token, "read", ("Document", "roadmap"));
    assert_eq!(
        client.check(request()).await.unwrap().into_inner().decision,
        ALLOW
    );
    let before = server
        .snapshots
        .load()
        .unwrap()
        .snapshot
        .version()
        .to_owned();
    std::fs::write(
        bundle.path().join("revocations.txt"),
        "# incident 2026-12-02\nleaked-7\n",
    )
    .unwrap();
    // The watcher may pick the file up first; the explicit reload makes it certain.
    server.reloader.reload(Cause::Signal).await;
    let after = server.snapshots.load().unwrap();
    assert_ne!(after.snapshot.version(), before);
    assert_eq!(after.snapshot.revocation_count(), 1);
    let status = client.check(request()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "token: the token has been revoked")
    );
    // Other tokens of the same user still work.
    let fresh = mint(
        &claims("bob", "documents:read", &[], "fresh-8"),
        RSA_PRIVATE,
    );
    assert_eq!(
        client
            .check(with_token(&fresh, "read", ("Document", "roadmap")))
            .await
            .unwrap()
            .into_inner()
            .decision,
        ALLOW
    );
    server.stop().await;
}
