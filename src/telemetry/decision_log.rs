//! The decision log: one structured record per decision (sampled), on its own tracing target
//! (`verdict::decision`) so a log pipeline can route it apart from operational logs.
//!
//! What a record holds: request id, principal, action, resource, decision, determining
//! policies, the ids of policies that errored, per-property decisions, snapshot version,
//! latency, and whether a relation search hit the depth bound.
//!
//! What it never holds: the context, entity attributes, or anything else the caller sent beyond
//! the three uids. Those three are printed through [`redact`], which replaces an id that looks
//! like a credential (a bearer token, a JWT, a well-known API key format, a long random-looking
//! token, `password=…`) by `[redacted]`, in case a caller puts a token where an id belongs.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::Duration;

use cedar_policy::EntityUid;

/// The tracing target of decision records.
pub const TARGET: &str = "verdict::decision";

/// Default share of denies that are logged.
pub const DEFAULT_DENY_RATE: f64 = 1.0;
/// Default share of allows that are logged.
pub const DEFAULT_ALLOW_RATE: f64 = 0.01;

/// How many decisions are logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionLogSettings {
    /// Share of denies logged, 0 to 1.
    pub deny_rate: f64,
    /// Share of allows logged, 0 to 1.
    pub allow_rate: f64,
}

impl Default for DecisionLogSettings {
    fn default() -> Self {
        Self {
            deny_rate: DEFAULT_DENY_RATE,
            allow_rate: DEFAULT_ALLOW_RATE,
        }
    }
}

impl DecisionLogSettings {
    /// Logs nothing.
    pub const OFF: Self = Self {
        deny_rate: 0.0,
        allow_rate: 0.0,
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
        uniform() < rate
    }
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let address = &nanos as *const u64 as u64;
    (nanos ^ address.rotate_left(32)) | 1
}

/// A number in [0, 1) from a per-thread xorshift generator: sampling needs speed, not secrecy.
fn uniform() -> f64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// One decision, as the decision log records it.
#[derive(Debug, Clone)]
pub struct DecisionRecord<'a> {
    /// The caller's `x-request-id`, or one Verdict made up.
    pub request_id: &'a str,
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
}

/// Writes one record to the decision log target.
pub fn log(record: &DecisionRecord<'_>) {
    let properties = record
        .properties
        .iter()
        .map(|(name, decision)| format!("{}={decision}", redact(name)))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        target: TARGET,
        request_id = %redact(record.request_id),
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
        "decision"
    );
}

fn redacted_uid(uid: &EntityUid) -> String {
    let id = uid.id().unescaped();
    match redact(id) {
        Cow::Borrowed(_) => uid.to_string(),
        Cow::Owned(redacted) => format!("{}::\"{redacted}\"", uid.type_name()),
    }
}

/// Prefixes of well-known credential formats (API keys, tokens, private keys).
const CREDENTIAL_PREFIXES: [&str; 16] = [
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "pk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "akia",
    "asia",
    "aiza",
    "-----begin",
    "eyj",
];

/// Words that mark a credential when written as `word=value` or `word: value`.
const CREDENTIAL_WORDS: [&str; 6] = ["password", "passwd", "token", "secret", "apikey", "api_key"];

/// Returns `text`, or `[redacted]` when it looks like a credential.
pub fn redact(text: &str) -> Cow<'_, str> {
    if looks_like_credential(text) {
        Cow::Owned("[redacted]".to_owned())
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `text` looks like a credential rather than an identifier.
pub fn looks_like_credential(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("basic ") || lower.starts_with("token ") {
        return true;
    }
    if CREDENTIAL_PREFIXES.iter().any(|p| lower.starts_with(p)) && text.len() >= 16 {
        return true;
    }
    let assigned = CREDENTIAL_WORDS.iter().any(|word| {
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
    looks_random(text)
}

/// A long run of token characters mixing letters and digits, that is not a UUID.
fn looks_random(text: &str) -> bool {
    if text.len() < 32 {
        return false;
    }
    let token_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.'));
    let letters = text.chars().filter(char::is_ascii_alphabetic).count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let uppercase = text.chars().filter(char::is_ascii_uppercase).count();
    let is_uuid = text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    // Mixed case and digits in a long unbroken run: random, not a name someone chose.
    token_chars && !is_uuid && letters > 0 && digits > 0 && uppercase > 0 && uppercase < letters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised() {
        for secret in [
            "Bearer abc.def.ghi",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sgn-abcdefgh",
            "sk_live_51H8xkQ2eZvKYlo2C0XYZ",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "AKIAIOSFODNN7EXAMPLE",
            "password=hunter2",
            "db token: s3cr3t",
            "q8Zr2LxV7mN4pK9wT1yB6cF3hJ5dG0sA",
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
        ] {
            assert!(!looks_like_credential(id), "{id}");
        }
    }

    #[test]
    fn sampling_follows_the_rates() {
        let settings = DecisionLogSettings {
            deny_rate: 1.0,
            allow_rate: 0.0,
        };
        assert!(settings.sample(false));
        assert!(!settings.sample(true));
        let half = DecisionLogSettings {
            deny_rate: 0.5,
            allow_rate: 0.5,
        };
        let logged = (0..10_000).filter(|_| half.sample(true)).count();
        assert!((4_000..6_000).contains(&logged), "{logged}");
    }
}
