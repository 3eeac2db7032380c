//! The issuers file (`--jwt-issuers`, docs/tokens.md): its YAML format, and reading it into
//! checked [`IssuerSettings`].
//!
//! Every value is checked while it is parsed (algorithm names, durations, URLs, entity types),
//! so serde_yaml_ng reports a bad one with its line and column; unknown keys are errors too.
//! Checks across fields (one key source, HMAC algorithms only with a secret) run per issuer
//! and name the issuer by its index (`issuers[1]`). Secrets and JWKS files are read after the
//! file parsed; their errors name the setting and the file, never a secret.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;

use crate::duration::parse_duration;

/// The algorithms an issuer accepts when its entry names none: every asymmetric one.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// Default least time between two fetches (or reads) of an issuer's JWKS.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Default longest time one JWKS fetch may take.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default claim naming the principal.
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";
/// Default entity type of the principal.
pub const DEFAULT_PRINCIPAL_TYPE: &str = "User";
/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash's size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// The largest leeway accepted.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// One issuer, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms (never `none`).
    pub algorithms: Vec<Algorithm>,
    /// Where the issuer's public keys come from, if it has any.
    pub jwks: Option<JwksSource>,
    /// The HMAC secret, when HS256/384/512 are allowed.
    pub hmac_secret: Option<HmacSecret>,
    /// Least time between two refreshes of the JWKS.
    pub jwks_refresh_interval: Duration,
    /// Longest time one JWKS fetch may take.
    pub jwks_fetch_timeout: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim naming the principal, and its entity type.
    pub principal: ClaimToType,
    /// Claims copied to the principal's attributes: claim → attribute.
    pub attributes: BTreeMap<String, String>,
    /// The claim listing the principal's groups or roles, and their entity type.
    pub groups: Option<ClaimToType>,
}

impl std::fmt::Debug for IssuerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerSettings")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("jwks", &self.jwks)
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, read at start and again on an unknown `kid`.
    File(PathBuf),
    /// A JWKS URL, fetched on first use and on an unknown `kid`.
    Url(hyper::Uri),
}

/// An HMAC secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacSecret(pub Vec<u8>);

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSecret([redacted])")
    }
}

/// A claim and the entity type its values name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToType {
    /// The claim.
    pub claim: String,
    /// The Cedar entity type.
    #[serde(rename = "type")]
    pub entity_type: EntityTypeName,
}

/// A Cedar entity type name, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EntityTypeName(pub String);

impl TryFrom<String> for EntityTypeName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        verdict_core::relations::parse_entity_type(&name)
            .map_err(|e| format!("`{name}` is not a Cedar entity type: {}", e.reason))?;
        let basename = name.rsplit("::").next().unwrap_or(&name);
        if basename == "Action" || name == "Verdict::Userset" {
            return Err(format!("`{name}` cannot be a principal or group type"));
        }
        Ok(Self(name))
    }
}

/// The file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuersFile {
    issuers: Vec<IssuerEntry>,
}

/// One issuer's entry, as written; values are checked as they are parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerEntry {
    issuer: NonEmpty,
    audiences: Vec<NonEmpty>,
    #[serde(default)]
    algorithms: Option<Vec<AlgorithmName>>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    jwks_url: Option<JwksUrl>,
    #[serde(default)]
    jwks_refresh_interval: Option<YamlDuration>,
    #[serde(default)]
    jwks_fetch_timeout: Option<YamlDuration>,
    #[serde(default)]
    leeway: Option<YamlDuration>,
    #[serde(default)]
    principal: Option<PrincipalEntry>,
    #[serde(default)]
    attributes: BTreeMap<NonEmpty, NonEmpty>,
    #[serde(default)]
    groups: Option<ClaimToType>,
    #[serde(default)]
    hmac_secret_file: Option<PathBuf>,
    #[serde(default)]
    hmac_secret_env: Option<NonEmpty>,
}

/// `principal`, with both fields defaulted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    #[serde(default)]
    claim: Option<NonEmpty>,
    #[serde(default, rename = "type")]
    entity_type: Option<EntityTypeName>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct NonEmpty(String);

impl TryFrom<String> for NonEmpty {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, &'static str> {
        if text.trim().is_empty() {
            return Err("must not be empty");
        }
        Ok(Self(text))
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct AlgorithmName(Algorithm);

impl TryFrom<String> for AlgorithmName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if name.eq_ignore_ascii_case("none") {
            return Err("`none` is never accepted: every token must be signed".to_owned());
        }
        name.parse::<Algorithm>().map(Self).map_err(|_| {
            format!(
                "`{name}` is not a JWT signature algorithm: use RS256, RS384, RS512, PS256, \
                 PS384, PS512, ES256, ES384, EdDSA, or HS256, HS384, HS512 with a secret"
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct YamlDuration(Duration);

impl TryFrom<String> for YamlDuration {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        parse_duration(&text).map(Self)
    }
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct JwksUrl(hyper::Uri);

impl TryFrom<String> for JwksUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let uri: hyper::Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => Ok(Self(uri)),
            Some("http") if is_loopback_ip(host) => Ok(Self(uri)),
            Some("http") => Err(format!(
                "`{text}`: a JWKS URL must be https (plain http only to a loopback address such \
                 as 127.0.0.1, for tests)"
            )),
            _ => Err(format!("`{text}` is not an https URL")),
        }
    }
}

/// Whether `host` (as a URI gives it, IPv6 in brackets) is a loopback IP address.
fn is_loopback_ip(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Reads the issuers file at `path`. `env` reads an environment variable (a parameter, so tests
/// pass a map). Errors start with the file (and line, where the problem has one).
pub fn read_issuers_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<IssuerSettings>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{shown}: {}", verdict_core::io_reason(&e)))?;
    parse_issuers(&text, &shown.to_string(), env)
}

/// Parses the issuers file's `text`; `source` names it in errors.
pub fn parse_issuers(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<IssuerSettings>, String> {
    let file: IssuersFile = serde_yaml_ng::from_str(text).map_err(|e| {
        let reason = e.to_string();
        let reason = reason
            .find(" at line ")
            .map_or(reason.as_str(), |i| &reason[..i]);
        match e.location() {
            Some(at) => format!("{source}:{}:{}: {reason}", at.line(), at.column()),
            None => format!("{source}: {reason}"),
        }
    })?;
    if file.issuers.is_empty() {
        return Err(format!("{source}: `issuers` lists no issuer"));
    }
    let mut out: Vec<IssuerSettings> = Vec::with_capacity(file.issuers.len());
    for (i, entry) in file.issuers.into_iter().enumerate() {
        let at = format!("{source}: issuers[{i}]");
        let settings = check_entry(entry, env).map_err(|reason| format!("{at}.{reason}"))?;
        if out.iter().any(|other| other.issuer == settings.issuer) {
            return Err(format!(
                "{at}.issuer: `{}` is configured twice",
                settings.issuer
            ));
        }
        out.push(settings);
    }
    Ok(out)
}

/// Checks one entry across its fields, reads its secret and fills in defaults. Errors start
/// with the field's name.
fn check_entry(
    entry: IssuerEntry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IssuerSettings, String> {
    let IssuerEntry {
        issuer,
        audiences,
        algorithms,
        jwks_file,
        jwks_url,
        jwks_refresh_interval,
        jwks_fetch_timeout,
        leeway,
        principal,
        attributes,
        groups,
        hmac_secret_file,
        hmac_secret_env,
    } = entry;
    if audiences.is_empty() {
        return Err("audiences: list at least one audience".to_owned());
    }
    let algorithms = match algorithms {
        Some(names) if names.is_empty() => {
            return Err("algorithms: list at least one algorithm".to_owned());
        }
        Some(names) => names.into_iter().map(|a| a.0).collect(),
        None => DEFAULT_ALGORITHMS.to_vec(),
    };
    let jwks = match (jwks_file, jwks_url) {
        (Some(_), Some(_)) => {
            return Err("jwks_file: set `jwks_file` or `jwks_url`, not both".to_owned());
        }
        (Some(file), None) => Some(JwksSource::File(file)),
        (None, Some(url)) => Some(JwksSource::Url(url.0)),
        (None, None) => None,
    };
    let hmac_secret = match (hmac_secret_file, hmac_secret_env) {
        (Some(_), Some(_)) => {
            return Err(
                "hmac_secret_file: set `hmac_secret_file` or `hmac_secret_env`, not both"
                    .to_owned(),
            );
        }
        (Some(path), None) => Some(read_secret_file(&path)?),
        (None, Some(name)) => Some(read_secret_env(&name.0, env)?),
        (None, None) => None,
    };
    let symmetric = algorithms
        .iter()
        .any(|a| a.family() == AlgorithmFamily::Hmac);
    let asymmetric = algorithms
        .iter()
        .any(|a| a.family() != AlgorithmFamily::Hmac);
    match (symmetric, &hmac_secret) {
        (true, None) => {
            return Err(
                "algorithms: HS256, HS384 and HS512 need a secret: set `hmac_secret_file` or \
                 `hmac_secret_env`"
                    .to_owned(),
            );
        }
        (false, Some(_)) => {
            return Err(
                "algorithms: a secret is configured but no HMAC algorithm (HS256, HS384, HS512) \
                 is allowed"
                    .to_owned(),
            );
        }
        _ => {}
    }
    if asymmetric && jwks.is_none() {
        return Err(
            "jwks_file: asymmetric algorithms need public keys: set `jwks_file` or `jwks_url`"
                .to_owned(),
        );
    }
    if !asymmetric && jwks.is_some() {
        return Err(
            "algorithms: public keys are configured but only HMAC algorithms are allowed"
                .to_owned(),
        );
    }
    let leeway = leeway.map_or(DEFAULT_LEEWAY, |d| d.0);
    if leeway > MAX_LEEWAY {
        return Err(format!(
            "leeway: `{leeway:?}` is more than the {MAX_LEEWAY:?} allowed"
        ));
    }
    let jwks_refresh_interval =
        jwks_refresh_interval.map_or(DEFAULT_JWKS_REFRESH_INTERVAL, |d| d.0);
    if jwks_refresh_interval < Duration::from_secs(1) {
        return Err("jwks_refresh_interval: must be at least `1s`".to_owned());
    }
    let jwks_fetch_timeout = jwks_fetch_timeout.map_or(DEFAULT_JWKS_FETCH_TIMEOUT, |d| d.0);
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&jwks_fetch_timeout) {
        return Err(format!(
            "jwks_fetch_timeout: `{jwks_fetch_timeout:?}` is outside 100ms..=60s"
        ));
    }
    let principal = ClaimToType {
        claim: principal
            .as_ref()
            .and_then(|p| p.claim.clone())
            .map_or_else(|| DEFAULT_PRINCIPAL_CLAIM.to_owned(), |c| c.0),
        entity_type: principal
            .and_then(|p| p.entity_type)
            .unwrap_or_else(|| EntityTypeName(DEFAULT_PRINCIPAL_TYPE.to_owned())),
    };
    let mut attribute_names = std::collections::BTreeSet::new();
    for name in attributes.values() {
        if !attribute_names.insert(name.0.as_str()) {
            return Err(format!(
                "attributes: two claims map to the attribute `{}`",
                name.0
            ));
        }
    }
    Ok(IssuerSettings {
        issuer: issuer.0,
        audiences: audiences.into_iter().map(|a| a.0).collect(),
        algorithms,
        jwks,
        hmac_secret,
        jwks_refresh_interval,
        jwks_fetch_timeout,
        leeway,
        principal,
        attributes: attributes.into_iter().map(|(c, a)| (c.0, a.0)).collect(),
        groups,
    })
}

fn read_secret_file(path: &Path) -> Result<HmacSecret, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "hmac_secret_file: {}: {}",
            path.display(),
            verdict_core::io_reason(&e)
        )
    })?;
    // A trailing newline from `echo` or an editor is not part of the secret.
    let text_end = bytes
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    check_secret(bytes[..text_end].to_vec(), "hmac_secret_file")
}

fn read_secret_env(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<HmacSecret, String> {
    let value =
        env(name).ok_or_else(|| format!("hmac_secret_env: the variable `{name}` is not set"))?;
    check_secret(value.into_bytes(), "hmac_secret_env")
}

fn check_secret(secret: Vec<u8>, field: &str) -> Result<HmacSecret, String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "{field}: the secret is {} bytes; use at least {MIN_HMAC_SECRET_BYTES} (e.g. \
             `openssl rand -hex 32`)",
            secret.len()
        ));
    }
    Ok(HmacSecret(secret))
}
