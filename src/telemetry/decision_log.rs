//! The decision log: one structured record per decision (sampled), on its own tracing target
//! (`verdict::decision`) so a log pipeline can route it apart from operational logs.
//!
//! What a record holds: request id, the front-end that asked (`grpc` for `verdict.v1`,
//! `ext_authz` for Envoy) and, for a gateway request, the route's name, principal, action,
//! resource, decision, determining policies, the ids of policies that errored, per-property
//! decisions, snapshot version, latency, and whether a relation search hit the depth bound.
//!
//! What it never holds: the context, entity attributes, or anything else the caller sent beyond
//! the three uids. Those three are printed through [`redact`], which replaces an id that looks
//! like a credential (a bearer token, a JWT, a well-known API key format, a long random-looking
//! token, `password=…`) by `[redacted]`, in case a caller puts a token where an id belongs.
//!
//! Off the request path: `verdict serve` [`install`]s a [`DecisionLogWriter`] (`writer.rs`), a
//! bounded queue drained by a background thread that formats and writes the records to stderr
//! (JSON lines under `--log-format json`). [`log`] only copies the record into the queue, and
//! drops it (counted in `verdict_decision_log_dropped_total`) when the queue is full: a slow or
//! blocked log consumer never slows a request. Without an installed writer (library use, unit
//! tests, benches) [`log`] emits the record as a `tracing` event on the caller's thread.

mod writer;

pub use writer::{CloseOutcome, DecisionLogWriter};

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use cedar_policy::EntityUid;

use super::LogFormat;

/// The tracing target of decision records.
pub const TARGET: &str = "verdict::decision";

/// Default share of denies that are logged.
pub const DEFAULT_DENY_RATE: f64 = 1.0;
/// Default share of allows that are logged.
pub const DEFAULT_ALLOW_RATE: f64 = 0.01;
/// Default number of records that may wait for the writer (`--decision-log-queue`): about a
/// quarter of a second of an all-deny load at full speed on two cores, and at most a few MiB.
pub const DEFAULT_QUEUE: usize = 8192;

/// How many decisions are logged, and how many may wait to be written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionLogSettings {
    /// Share of denies logged, 0 to 1.
    pub deny_rate: f64,
    /// Share of allows logged, 0 to 1.
    pub allow_rate: f64,
    /// Records the queue holds before it drops them.
    pub queue: usize,
}

impl Default for DecisionLogSettings {
    fn default() -> Self {
        Self {
            deny_rate: DEFAULT_DENY_RATE,
            allow_rate: DEFAULT_ALLOW_RATE,
            queue: DEFAULT_QUEUE,
        }
    }
}

impl DecisionLogSettings {
    /// Logs nothing.
    pub const OFF: Self = Self {
        deny_rate: 0.0,
        allow_rate: 0.0,
        queue: DEFAULT_QUEUE,
    };

    /// Decides whether to log a decision (a cheap per-thread random draw).
    pub fn sample(&self, allowed: bool) -> bool {
        let rate = if allowed {
            self.allow_rate
        } else {
            self.deny_rate
        };
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        // fastrand's per-thread generator: sampling needs speed, not secrecy.
        fastrand::f64() < rate
    }
}

/// One decision, as the decision log records it.
#[derive(Debug, Clone)]
pub struct DecisionRecord<'a> {
    /// The caller's `x-request-id`, or one Verdict made up.
    pub request_id: &'a str,
    /// The name of the API key the request came with, if keys are on.
    pub caller: Option<&'a str>,
    /// The front-end the request came through: `grpc` (`verdict.v1`) or `ext_authz`.
    pub front_end: &'static str,
    /// The route a gateway request matched (its name, a bounded label), if any.
    pub route: Option<&'a str>,
    /// Who asked.
    pub principal: &'a EntityUid,
    /// The action.
    pub action: &'a EntityUid,
    /// What was asked about.
    pub resource: &'a EntityUid,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The determining policies.
    pub determining_policies: &'a [String],
    /// Policies that failed while evaluating.
    pub errored_policies: &'a [&'a str],
    /// Property names with `allow` or `deny`.
    pub properties: &'a [(&'a str, &'static str)],
    /// The snapshot that answered.
    pub snapshot_version: &'a str,
    /// Time spent deciding.
    pub latency: Duration,
    /// Whether a relation search hit the depth bound.
    pub relation_depth_exceeded: bool,
    /// The OpenTelemetry trace the request belongs to, when traces are exported.
    pub trace_id: Option<&'a str>,
}

/// The installed writer, and whether the log filter lets decision records through.
static INSTALLED: OnceLock<Installed> = OnceLock::new();

#[derive(Debug)]
struct Installed {
    writer: DecisionLogWriter,
    /// `false` when `VERDICT_LOG` turns the `verdict::decision` target off.
    enabled: bool,
}

/// Starts the process's decision log writer: records are written to `output` (stderr in
/// `verdict serve`) in `format`, with room for `queue` records waiting. Call after the tracing
/// subscriber is set up (its filter still decides whether the `verdict::decision` target is
/// on). A second call changes nothing.
pub fn install(
    output: Box<dyn std::io::Write + Send>,
    format: LogFormat,
    queue: usize,
) -> std::io::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let enabled = tracing::enabled!(target: TARGET, tracing::Level::INFO);
    let writer = DecisionLogWriter::spawn(output, format, queue)?;
    let _ = INSTALLED.set(Installed { writer, enabled });
    Ok(())
}

/// Writes the records still queued and flushes, waiting at most `timeout` (graceful shutdown);
/// `None` when no writer is installed.
pub fn close(timeout: Duration) -> Option<CloseOutcome> {
    INSTALLED
        .get()
        .map(|installed| installed.writer.close(timeout))
}

/// Records one decision: into the installed writer's queue (never blocking), or, without
/// one, as a `tracing` event.
pub fn log(record: &DecisionRecord<'_>) {
    match INSTALLED.get() {
        Some(installed) if installed.enabled => installed.writer.submit(record),
        Some(_) => {}
        None => log_through_tracing(record),
    }
}

/// Writes one record as a `tracing` event on the caller's thread.
fn log_through_tracing(record: &DecisionRecord<'_>) {
    let properties = record
        .properties
        .iter()
        .map(|(name, decision)| format!("{}={decision}", redact(name)))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        target: TARGET,
        request_id = %redact(record.request_id),
        caller = record.caller.unwrap_or("anonymous"),
        front_end = record.front_end,
        route = record.route.unwrap_or(""),
        principal = %redacted_uid(record.principal),
        action = %redacted_uid(record.action),
        resource = %redacted_uid(record.resource),
        decision = record.decision,
        determining_policies = %record.determining_policies.join(","),
        errored_policies = %record.errored_policies.join(","),
        properties = %properties,
        snapshot_version = record.snapshot_version,
        latency_us = record.latency.as_micros() as u64,
        relation_depth_exceeded = record.relation_depth_exceeded,
        trace_id = record.trace_id.unwrap_or(""),
        "decision"
    );
}

fn redacted_uid(uid: &EntityUid) -> String {
    // `Type::"id"`, the id escaped: a type name has no `"`, so the first `"` follows its `::`.
    let text = uid_text(uid);
    let type_name = text
        .bytes()
        .position(|b| b == b'"')
        .and_then(|quote| text.get(..quote.saturating_sub(2)))
        .unwrap_or(&text);
    if looks_like_credential(type_name) {
        return "[redacted]".to_owned();
    }
    match redact(uid.id().unescaped()) {
        Cow::Borrowed(_) => text,
        Cow::Owned(redacted) => format!("{type_name}::\"{redacted}\""),
    }
}

/// `uid` as Cedar writes it (`Namespace::Type::"id"`, the id escaped as `str::escape_debug`
/// does), without Cedar's `Display` when the id needs no escaping (most ids): that goes through
/// the formatting machinery three times per uid and was a quarter of a record's cost.
fn uid_text(uid: &EntityUid) -> String {
    let id = uid.id().unescaped();
    let plain = id
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'\''));
    if !plain {
        return uid.to_string();
    }
    let type_name = uid.type_name();
    let mut text = String::with_capacity(type_name.basename().len() + id.len() + 16);
    for part in type_name.namespace_components() {
        text.push_str(part);
        text.push_str("::");
    }
    text.push_str(type_name.basename());
    text.push_str("::\"");
    text.push_str(id);
    text.push('"');
    text
}

/// Prefixes of well-known credential formats (API keys, tokens, private keys), case-sensitive.
const CREDENTIAL_PREFIXES: [&str; 24] = [
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "npm_",
    "SG.",
    "-----BEGIN",
    "AGE-SECRET-KEY-",
    "hvs.",
    "dop_v1_",
    "shpat_",
];

/// Words that mark a credential when written as `word=value` or `word: value`.
const CREDENTIAL_WORDS: [&str; 12] = [
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "private_key",
    "credential",
];

/// Authorization schemes that precede a credential (`Authorization: Bearer …`).
const AUTH_SCHEMES: [&str; 4] = ["bearer", "basic", "digest", "negotiate"];

/// Returns `text`, or `[redacted]` when it looks like a credential.
pub fn redact(text: &str) -> Cow<'_, str> {
    if looks_like_credential(text) {
        Cow::Owned("[redacted]".to_owned())
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `text` looks like a credential rather than an identifier.
///
/// Runs on the decision log's writer thread for every id of every record, so the substring
/// searches (an authorization scheme needs a space after it, `password=`-style assignments an
/// `=` or `:`) only run on text that has those characters: most ids have neither, and those
/// searches were most of a record's cost (callgrind, BENCHMARKS.md).
pub fn looks_like_credential(text: &str) -> bool {
    // Ids of letters, digits, `-` and `_` alone (names, numbers, UUIDs, ULIDs: most ids) have
    // no space, `=`, `:` or `.`, so only a prefixed key, a cloud key or a random run can match.
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return text.len() >= 11
            && (has_credential_prefix(text)
                || is_cloud_key(text)
                || (text.len() >= 32 && looks_random(text)));
    }
    looks_like_credential_in_general(text)
}

/// [`looks_like_credential`] without its shortcut for plain ids.
fn looks_like_credential_in_general(text: &str) -> bool {
    let trimmed = text.trim();
    let has_space = trimmed.contains(char::is_whitespace);
    let has_assignment = trimmed.contains(['=', ':']);
    if has_space || has_assignment {
        let lower = trimmed.to_ascii_lowercase();
        let scheme = has_space
            && AUTH_SCHEMES.iter().any(|scheme| {
                lower.match_indices(scheme).any(|(i, _)| {
                    let before_ok = i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric();
                    let after = &lower[i + scheme.len()..];
                    before_ok && after.starts_with(char::is_whitespace) && !after.trim().is_empty()
                })
            });
        if scheme || (has_assignment && lower.contains("authorization:")) {
            return true;
        }
        let assigned = has_assignment
            && CREDENTIAL_WORDS.iter().any(|word| {
                lower.match_indices(word).any(|(i, _)| {
                    matches!(
                        lower[i + word.len()..].trim_start().chars().next(),
                        Some('=' | ':')
                    )
                })
            });
        if assigned {
            return true;
        }
    }
    // Every form below is at least 11 characters long but a JSON Web Token: most ids stop here.
    if trimmed.len() < 11 {
        return is_jwt(trimmed);
    }
    has_credential_prefix(trimmed)
        || is_cloud_key(trimmed)
        || is_jwt(trimmed)
        || looks_random(trimmed)
}

/// A well-known credential prefix followed by at least 8 more characters.
fn has_credential_prefix(text: &str) -> bool {
    let Some(&first) = text.as_bytes().first() else {
        return false;
    };
    CREDENTIAL_PREFIXES.iter().any(|p| {
        p.as_bytes().first() == Some(&first) && text.starts_with(p) && text.len() >= p.len() + 8
    })
}

/// AWS access key ids (`AKIA` or `ASIA` and 16 upper-case letters or digits) and Google API
/// keys (`AIza` and 35 more characters).
fn is_cloud_key(text: &str) -> bool {
    let upper_alnum = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    ((text.starts_with("AKIA") || text.starts_with("ASIA"))
        && text.len() == 20
        && upper_alnum(&text[4..]))
        || (text.starts_with("AIza") && text.len() == 39 && text.chars().all(token_char))
}

/// Three base64url segments, the first starting `eyJ` (`{"`): a JSON Web Token.
fn is_jwt(text: &str) -> bool {
    if text.bytes().filter(|&b| b == b'.').count() != 2 {
        return false;
    }
    let segments: Vec<&str> = text.split('.').collect();
    segments.len() == 3
        && segments[0].starts_with("eyJ")
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=')
        })
}

/// A run of 32 or more letters and digits with no separator, mixing both: generated, not a
/// name someone chose (names break into words; UUIDs into groups of at most 12).
fn looks_random(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/')
        .any(|run| {
            run.len() >= 32
                && run.chars().any(|c| c.is_ascii_alphabetic())
                && run.chars().any(|c| c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_written_as_cedar_writes_them() {
        for (type_name, id) in [
            ("User", "alice"),
            ("Acme::Docs::Document", "d-1 (draft) @v2"),
            ("User", "quote \" and backslash \\ and tab \t"),
            ("User", "it's"),
            ("User", "émilie ❤"),
            ("User", ""),
        ] {
            let uid = EntityUid::from_type_name_and_id(
                type_name.parse().unwrap(),
                cedar_policy::EntityId::new(id),
            );
            assert_eq!(uid_text(&uid), uid.to_string(), "{type_name} {id}");
        }
    }

    #[test]
    fn the_shortcut_for_plain_ids_answers_as_the_general_checks() {
        const ALPHABET: &[u8] = b"abcXYZ0189-_";
        let mut rng = fastrand::Rng::with_seed(20);
        let mut ids: Vec<String> = (0..20_000)
            .map(|_| {
                let len = rng.usize(0..48);
                (0..len)
                    .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
                    .collect()
            })
            .collect();
        ids.extend(CREDENTIAL_PREFIXES.iter().flat_map(|p| {
            [
                format!("{p}abcdefgh"),
                format!("{p}abcdefg"),
                format!("{p}a1b2c3d4e5"),
            ]
        }));
        ids.extend([
            "AKIAIOSFODNN7EXAMPLE".to_owned(),
            "01JEXAMPLE0ULID0000000000".to_owned(),
        ]);
        for id in ids {
            assert_eq!(
                looks_like_credential(&id),
                looks_like_credential_in_general(&id),
                "{id}"
            );
        }
    }

    #[test]
    fn credentials_are_recognised() {
        for secret in [
            "Bearer abc.def.ghi",
            "Authorization: Bearer abc",
            "bearer\tabc",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sgn-abcdefgh",
            "sk_live_51H8xkQ2eZvKYlo2C0XYZ",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
            "npm_a1b2c3d4e5f6g7h8i9j0",
            "xoxa-2-1234567890-abcdef",
            "SG.abcdefghijklmnopqrstuv.wxyz0123456789abcdefghijklmnopqrstuvwxyz012",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "password=hunter2",
            "pwd=hunter2",
            "db token: s3cr3t",
            "q8Zr2LxV7mN4pK9wT1yB6cF3hJ5dG0sA",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP2K",
            "k3j4h5g6f7d8s9a0p1o2i3u4y5t6r7e8w9q0",
        ] {
            assert!(looks_like_credential(secret), "{secret}");
            assert_eq!(redact(secret), "[redacted]");
        }
    }

    #[test]
    fn ordinary_ids_are_kept() {
        for id in [
            "alice",
            "roadmap",
            "secret-plans",
            "o-100",
            "550e8400-e29b-41d4-a716-446655440000",
            "tokens",
            "user@example.com",
            "a-very-long-but-readable-document-name-2024",
            "Akiane Kramarik fan club 2024",
            "01HZX9K3M4N5P6Q7R8S9T0V1W2",
            "basic-plan",
        ] {
            assert!(!looks_like_credential(id), "{id}");
        }
    }

    #[test]
    fn sampling_follows_the_rates() {
        let settings = DecisionLogSettings {
            deny_rate: 1.0,
            allow_rate: 0.0,
            queue: 1,
        };
        assert!(settings.sample(false));
        assert!(!settings.sample(true));
        let half = DecisionLogSettings {
            deny_rate: 0.5,
            allow_rate: 0.5,
            queue: 1,
        };
        let logged = (0..10_000).filter(|_| half.sample(true)).count();
        assert!((4_000..6_000).contains(&logged), "{logged}");
    }
}
