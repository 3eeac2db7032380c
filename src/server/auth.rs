//! Caller authentication with preshared API keys (SpiceDB's model), as a tower filter.
//!
//! Keys come from `--api-keys-file` and/or `VERDICT_API_KEYS`, one per line, `name role key`:
//!
//! ```text
//! # name          role    key
//! gateway-2026a   check   6f1c0d2e8a9b4c3d2e1f0a9b8c7d6e5f
//! gateway-2026b   check   0a1b2c3d4e5f60718293a4b5c6d7e8f9      (rotation: both valid)
//! ops             admin   9e8d7c6b5a4938271605f4e3d2c1b0a9
//! ```
//!
//! A `check` key may call Check, BatchCheck and Status; an `admin` key may call everything,
//! Reload and the relationship store's `verdict.v1.Relationships` RPCs included. A request presents its key as `authorization: Bearer <key>`. Without keys
//! configured, the gRPC port is open (serve warns when that port is not on loopback).
//!
//! Keys are kept only as SHA-256 digests and compared in constant time against every key, so
//! neither the comparison nor which key matched leaks through timing. A key's name, never the
//! key, appears in logs, metrics and the decision log.

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tower::BoxError;
use tower::filter::Predicate;

use crate::api::{Caller, CallerIsAdmin};
use crate::config::{KeyRing, Role};
use crate::telemetry::metrics::{AuthResult, record_auth};

/// Which RPCs need which role; `None` means open to anyone.
fn required_role(path: &str, open_health: bool, open_reflection: bool) -> Option<Role> {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "grpc.health.v1.Health" if open_health => None,
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection"
            if open_reflection =>
        {
            None
        }
        _ if path.ends_with("/Reload") => Some(Role::Admin),
        // The relationship store's API: writes, and reads of data checks only use.
        "verdict.v1.Relationships" => Some(Role::Admin),
        _ => Some(Role::Check),
    }
}

/// Which client certificate identities (SAN DNS names or URIs, such as SPIFFE ids) may call
/// which RPCs, when client certificates are required.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityPolicy {
    /// Identities allowed decision RPCs; empty means any verified client. Admins may too.
    pub(crate) allowed: Vec<String>,
    /// Identities allowed admin RPCs; empty means none.
    pub(crate) admin: Vec<String>,
}

/// One identity from a client certificate's subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A DNS name, such as `gateway.edge.svc`.
    Dns(String),
    /// A URI, such as `spiffe://cluster.local/ns/edge/sa/gateway`.
    Uri(String),
}

impl Identity {
    fn as_str(&self) -> &str {
        match self {
            Self::Dns(name) | Self::Uri(name) => name,
        }
    }
}

/// Whether `identity` matches `pattern`: equal; or, for a pattern `*.suffix`, a DNS name
/// ending in `.suffix`; or, for a pattern `prefix/*`, a URI starting with `prefix/`. Keeping
/// each wildcard to one kind of name means a DNS pattern never matches a URI that happens to
/// end the same way (`spiffe://td/ns/evil/sa/x.gateway.svc` is not `*.gateway.svc`), and a URI
/// pattern always ends at a path segment (`…/ns/gw/*` does not match `…/ns/gwevil/…`).
/// [`crate::config`] refuses any other use of `*`.
fn matches(pattern: &str, identity: &Identity) -> bool {
    if let Some(suffix) = pattern.strip_prefix('*') {
        suffix.starts_with('.')
            && matches!(identity, Identity::Dns(name) if name.len() > suffix.len() && name.ends_with(suffix))
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        prefix.ends_with('/')
            && matches!(identity, Identity::Uri(uri) if uri.starts_with(prefix) && uri.len() > prefix.len())
    } else {
        pattern == identity.as_str()
    }
}

impl IdentityPolicy {
    /// Returns the identity that grants `role`, or every identity presented if none does.
    /// An admin identity may call the decision RPCs too.
    fn check(&self, identities: &[Identity], role: Role) -> Result<String, Vec<String>> {
        let matching = |patterns: &[String]| {
            identities
                .iter()
                .find(|identity| patterns.iter().any(|p| matches(p, identity)))
                .map(|identity| identity.as_str().to_owned())
        };
        let granted = match role {
            Role::Admin => matching(&self.admin),
            Role::Check if self.allowed.is_empty() => Some(
                identities
                    .first()
                    .map(|identity| identity.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            Role::Check => matching(&self.allowed).or_else(|| matching(&self.admin)),
        };
        granted.ok_or_else(|| identities.iter().map(|i| i.as_str().to_owned()).collect())
    }
}

/// The client certificate chain of an HTTP API connection, put in each request's extensions
/// by the HTTP API listener (tonic puts its own connection info there on the gRPC port).
#[derive(Debug, Clone)]
pub(crate) struct ClientCertificates(
    pub(crate) std::sync::Arc<Vec<rustls_pki_types::CertificateDer<'static>>>,
);

/// The SAN DNS names and URIs of the client's certificate.
fn client_identities<B>(request: &http::Request<B>) -> Vec<Identity> {
    use tonic::transport::server::TlsConnectInfo;
    if let Some(ClientCertificates(certs)) = request.extensions().get::<ClientCertificates>() {
        return certs
            .first()
            .map_or_else(Vec::new, |leaf| leaf_identities(leaf.as_ref()));
    }
    let Some(certs) = request
        .extensions()
        .get::<super::limits::TlsInfo>()
        .and_then(TlsConnectInfo::peer_certs)
    else {
        return Vec::new();
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    leaf_identities(leaf.as_ref())
}

/// The SAN DNS names and URIs of a DER certificate.
fn leaf_identities(leaf: &[u8]) -> Vec<Identity> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let Ok(Some(names)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(Identity::Dns((*dns).to_owned())),
            GeneralName::URI(uri) => Some(Identity::Uri((*uri).to_owned())),
            _ => None,
        })
        .collect()
}

/// Who may call what: requests need a key when the ring has any, and an allowed client
/// identity when client certificates are required.
///
/// A tower filter predicate (`ServiceBuilder::filter`): an allowed request goes on with its
/// caller in its extensions; a refusal comes back as an error, which [`answer_refusal`] turns
/// into the answer.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    pub(crate) keys: std::sync::Arc<KeyRing>,
    pub(crate) identities: Option<IdentityPolicy>,
    pub(crate) open_health: bool,
    pub(crate) open_reflection: bool,
}

impl Authenticator {
    /// Returns `request` with its caller noted, or the status that refuses it.
    pub(crate) fn authorize<B>(
        &self,
        mut request: http::Request<B>,
    ) -> Result<http::Request<B>, Status> {
        let keys = &self.keys;
        let path = request.uri().path().to_owned();
        let path = path.as_str();
        let Some(required) = required_role(path, self.open_health, self.open_reflection) else {
            return Ok(request);
        };
        // Admin only if every configured mechanism says so.
        let mut admin: Option<bool> = None;
        if let Some(policy) = &self.identities {
            let presented = client_identities(&request);
            admin = Some(policy.check(&presented, Role::Admin).is_ok());
            if let Err(presented) = policy.check(&presented, required) {
                record_auth("certificate", AuthResult::PermissionDenied);
                tracing::warn!(identities = %presented.join(","), path, "client identity not allowed");
                let shown = if presented.is_empty() {
                    "a certificate without SAN identities".to_owned()
                } else {
                    presented.join(", ")
                };
                return Err(Status::permission_denied(format!(
                    "client identity ({shown}) may not call {path}"
                )));
            }
        }
        if !keys.is_enabled() {
            if let Some(admin) = admin {
                request.extensions_mut().insert(CallerIsAdmin(admin));
            }
            return Ok(request);
        }
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match presented.and_then(|token| keys.find(token)) {
            None => {
                record_auth("anonymous", AuthResult::Unauthenticated);
                tracing::warn!(path, "request without a valid API key");
                Err(Status::unauthenticated(
                    "missing or invalid API key (send `authorization: Bearer <key>`)",
                ))
            }
            Some(key) if key.role == Role::Check && required == Role::Admin => {
                record_auth(&key.name, AuthResult::PermissionDenied);
                tracing::warn!(caller = %key.name, path, "API key without admin rights");
                Err(Status::permission_denied(format!(
                    "API key `{}` may not call {path}: it needs an admin key",
                    key.name
                )))
            }
            Some(key) => {
                record_auth(&key.name, AuthResult::Ok);
                let key_admin = key.role == Role::Admin;
                request
                    .extensions_mut()
                    .insert(CallerIsAdmin(key_admin && admin.unwrap_or(true)));
                request.extensions_mut().insert(Caller(key.name.clone()));
                Ok(request)
            }
        }
    }
}

impl<B> Predicate<http::Request<B>> for Authenticator {
    type Request = http::Request<B>;

    fn check(&mut self, request: http::Request<B>) -> Result<Self::Request, BoxError> {
        self.authorize(request).map_err(BoxError::from)
    }
}

/// Answers a request [`Authenticator`] refused with its status; passes anything else on.
pub(crate) fn answer_refusal(
    result: Result<http::Response<Body>, BoxError>,
) -> Result<http::Response<Body>, BoxError> {
    result.or_else(|error| {
        error
            .downcast::<Status>()
            .map(|refusal| refusal.into_http())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str) -> Identity {
        Identity::Dns(name.to_owned())
    }

    fn uri(name: &str) -> Identity {
        Identity::Uri(name.to_owned())
    }

    #[test]
    fn identity_patterns_match_exactly_or_by_kind_specific_wildcards() {
        let gateway = "spiffe://cluster.local/ns/gw/sa/gateway";
        assert!(matches(gateway, &uri(gateway)));
        assert!(
            matches(gateway, &dns(gateway)),
            "exact values match either kind"
        );
        assert!(matches(
            "spiffe://cluster.local/ns/gw/*",
            &uri("spiffe://cluster.local/ns/gw/sa/x")
        ));
        assert!(!matches(
            "spiffe://cluster.local/ns/gw/*",
            &uri("spiffe://cluster.local/ns/other/sa/x")
        ));
        // A URI wildcard ends at a path segment, and never matches a DNS name.
        assert!(!matches(
            "spiffe://cluster.local/ns/gw*",
            &uri("spiffe://cluster.local/ns/gwevil/sa/x")
        ));
        assert!(!matches(
            "spiffe://cluster.local/ns/gw/*",
            &dns("spiffe://cluster.local/ns/gw/x")
        ));
        assert!(!matches(
            "spiffe://cluster.local/ns/gw/*",
            &uri("spiffe://cluster.local/ns/gw/")
        ));
        // A DNS wildcard needs a dot, and never matches a URI that ends the same way.
        assert!(matches("*.gateway.svc", &dns("a.gateway.svc")));
        assert!(!matches("*.gateway.svc", &dns(".gateway.svc")));
        assert!(!matches(
            "*.gateway.svc",
            &uri("spiffe://td/ns/evil/sa/x.gateway.svc")
        ));
        assert!(!matches("*gateway.svc", &dns("evilgateway.svc")));
        assert!(!matches("gateway.svc", &dns("evil-gateway.svc")));
    }

    #[test]
    fn roles_come_from_the_lists_and_admins_may_also_check() {
        let policy = IdentityPolicy {
            allowed: vec!["gateway.internal".to_owned()],
            admin: vec!["spiffe://td/ns/ops/*".to_owned()],
        };
        assert!(
            policy
                .check(&[dns("gateway.internal")], Role::Check)
                .is_ok()
        );
        assert!(policy.check(&[dns("other")], Role::Check).is_err());
        assert!(
            policy
                .check(&[dns("gateway.internal")], Role::Admin)
                .is_err()
        );
        let ops = uri("spiffe://td/ns/ops/sa/admin");
        assert!(
            policy
                .check(std::slice::from_ref(&ops), Role::Admin)
                .is_ok()
        );
        assert!(policy.check(&[ops], Role::Check).is_ok());
        assert_eq!(
            policy.check(&[dns("a"), uri("b")], Role::Check),
            Err(vec!["a".to_owned(), "b".to_owned()])
        );
        let open = IdentityPolicy::default();
        assert!(open.check(&[dns("anyone")], Role::Check).is_ok());
        assert!(open.check(&[], Role::Check).is_ok());
        assert!(open.check(&[dns("anyone")], Role::Admin).is_err());
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        let keys = KeyRing::parse(&format!("gateway check {KEY}"), "test").unwrap();
        Authenticator {
            keys: std::sync::Arc::new(keys),
            identities: None,
            open_health: true,
            open_reflection: true,
        }
    }

    fn request(path: &str, key: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
            .body(())
            .unwrap()
    }

    #[test]
    fn an_allowed_request_goes_on_with_its_caller() {
        let passed = authenticator()
            .check(request("/verdict.v1.Authorization/Check", KEY))
            .unwrap();
        assert_eq!(passed.extensions().get::<Caller>().unwrap().0, "gateway");
        assert!(!passed.extensions().get::<CallerIsAdmin>().unwrap().0);
    }

    #[test]
    fn a_refused_request_is_answered_with_its_status() {
        let mut authenticator = authenticator();
        let wrong_key = authenticator
            .check(request("/verdict.v1.Authorization/Check", "nope"))
            .unwrap_err();
        let answer = answer_refusal(Err(wrong_key)).unwrap();
        assert_eq!(answer.headers()["grpc-status"], "16", "UNAUTHENTICATED");
        let not_admin = authenticator
            .check(request("/verdict.v1.Authorization/Reload", KEY))
            .unwrap_err();
        let answer = answer_refusal(Err(not_admin)).unwrap();
        assert_eq!(answer.headers()["grpc-status"], "7", "PERMISSION_DENIED");
    }

    #[test]
    fn roles_follow_the_rpc() {
        assert_eq!(
            required_role("/verdict.v1.Authorization/Check", true, true),
            Some(Role::Check)
        );
        assert_eq!(
            required_role("/verdict.v1.Authorization/Reload", true, true),
            Some(Role::Admin)
        );
        // The relationship store: writes and reads alike are admin operations.
        for rpc in [
            "WriteRelationships",
            "ReadRelationships",
            "WatchRelationships",
        ] {
            assert_eq!(
                required_role(&format!("/verdict.v1.Relationships/{rpc}"), true, true),
                Some(Role::Admin),
                "{rpc}"
            );
        }
        assert_eq!(
            required_role("/grpc.health.v1.Health/Check", true, true),
            None
        );
        assert_eq!(
            required_role("/grpc.health.v1.Health/Check", false, true),
            Some(Role::Check)
        );
        assert_eq!(
            required_role(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                true,
                true
            ),
            None
        );
        assert_eq!(
            required_role(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                true,
                false
            ),
            Some(Role::Check)
        );
    }
}
