//! Preshared API keys: parsing the key lines and finding a presented key.
//!
//! One key per line, `name role key`; `#` starts a comment. Keys are kept only as SHA-256
//! digests and compared in constant time against every key, so neither the comparison nor
//! which key matched leaks through timing. No error message or debug output shows a key.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Check, BatchCheck and Status.
    Check,
    /// Every RPC, Reload included.
    Admin,
}

/// One key: its name and role (public), its digest (private).
pub struct Key {
    /// The key's name, for logs and metrics.
    pub name: String,
    /// What it may call.
    pub role: Role,
    digest: [u8; 32],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the digest either: it would let anyone with the logs test guesses offline.
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<Key>,
}

/// The shortest key accepted: 128 bits of hex.
const MIN_KEY_CHARS: usize = 32;

impl KeyRing {
    /// Parses key lines; `source` names them in errors (`keys.txt:3`), and no error ever
    /// quotes a key.
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let mut ring = Self::default();
        ring.add(text, source)?;
        Ok(ring)
    }

    /// Adds the keys of another source.
    pub fn add(&mut self, text: &str, source: &str) -> Result<(), String> {
        for (index, line) in text.lines().enumerate() {
            let at = format!("{source}:{}", index + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, key] = fields.as_slice() else {
                return Err(format!(
                    "{at}: expected `name role key`, found {} fields",
                    fields.len()
                ));
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!(
                    "{at}: key name `{name}` may only use letters, digits, `-`, `_` and `.`"
                ));
            }
            let role = match *role {
                "check" => Role::Check,
                "admin" => Role::Admin,
                other => return Err(format!("{at}: role `{other}` is not `check` or `admin`")),
            };
            if key.len() < MIN_KEY_CHARS {
                return Err(format!(
                    "{at}: the key of `{name}` is {} characters; use at least {MIN_KEY_CHARS} (e.g. `openssl rand -hex 32`)",
                    key.len()
                ));
            }
            if self.keys.iter().any(|k| k.name == *name) {
                return Err(format!("{at}: key name `{name}` is used twice"));
            }
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if self.keys.iter().any(|k| k.digest == digest) {
                return Err(format!("{at}: the key of `{name}` is also another key's"));
            }
            self.keys.push(Key {
                name: (*name).to_owned(),
                role,
                digest,
            });
        }
        Ok(())
    }

    /// Returns whether any key is configured (authentication is on).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key `presented` is, comparing against every key in constant time.
    pub fn find(&self, presented: &str) -> Option<&Key> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            // Every key is compared, and `subtle` keeps the compiler from turning the
            // comparison into an early exit.
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn keys_parse_and_match_by_value() {
        let ring = KeyRing::parse(
            &format!("# comment\n\ngateway check {A}\nops admin {B}\n"),
            "keys",
        )
        .unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.find(A).map(|k| k.name.as_str()), Some("gateway"));
        assert_eq!(ring.find(B).map(|k| k.role), Some(Role::Admin));
        assert!(ring.find("0123456789abcdef0123456789abcdee").is_none());
        assert!(ring.find("").is_none());
        assert!(ring.find(&A[..31]).is_none());
    }

    #[test]
    fn bad_key_lines_name_the_line_but_never_the_key() {
        let cases = [
            (
                "gateway check",
                "keys:1: expected `name role key`, found 2 fields",
            ),
            (
                "gateway reader 0123456789abcdef0123456789abcdef",
                "keys:1: role `reader` is not `check` or `admin`",
            ),
            (
                "gateway check short",
                "keys:1: the key of `gateway` is 5 characters; use at least 32 (e.g. `openssl rand -hex 32`)",
            ),
            (
                "g@te check 0123456789abcdef0123456789abcdef",
                "keys:1: key name `g@te` may only use letters, digits, `-`, `_` and `.`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(KeyRing::parse(text, "keys").unwrap_err(), expected);
        }
        let twice = KeyRing::parse(&format!("a check {A}\nb check {A}"), "keys").unwrap_err();
        assert_eq!(twice, "keys:2: the key of `b` is also another key's");
        assert!(!twice.contains(A));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let ring = KeyRing::parse(&format!("gateway check {A}"), "keys").unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("gateway"));
        assert!(!shown.contains(A));
        assert!(!shown.contains("digest"));
    }
}
