//! Verified tokens, remembered until they expire: verifying an RS256 signature costs hundreds
//! of microseconds, and a gateway sees the same bearer token on every request of a session.
//!
//! The key is the SHA-256 of the token's exact text, so any other token (one byte changed, a
//! tampered payload, another signature) misses and is verified in full. A hit is only
//! returned while the token's own `exp` (plus the issuer's leeway) has not passed and its
//! `nbf` (minus the leeway) has, and for at most [`MAX_AGE`] after it was verified, so a key
//! the issuer withdraws stops vouching for cached tokens within that time. The revocation
//! list is not cached: front-ends check it against the serving snapshot on every request.
//! At most [`CAPACITY`] tokens are kept; when full, expired entries are dropped, and if that
//! frees nothing, everything is.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::VerifiedPrincipal;

/// Tokens remembered at most.
pub(super) const CAPACITY: usize = 10_000;

/// The longest a verification is trusted without verifying the signature again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);

/// One verified token.
#[derive(Debug)]
struct Entry {
    principal: VerifiedPrincipal,
    /// Seconds since the epoch from which the token is valid (`nbf` − leeway, or 0).
    valid_from: u64,
    /// Seconds since the epoch until which it is valid (`exp` + leeway).
    valid_until: u64,
    verified_at: Instant,
}

/// The cache; shared by every clone of the verifier.
#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<FxHashMap<[u8; 32], Entry>>,
}

/// The cache key of a token.
pub(super) fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    /// Returns the principal of `key`'s token if it was verified and is still valid at `now`
    /// (seconds since the epoch).
    pub(super) fn get(&self, key: &[u8; 32], now: u64) -> Option<VerifiedPrincipal> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        if now >= entry.valid_from
            && now < entry.valid_until
            && entry.verified_at.elapsed() < MAX_AGE
        {
            return Some(entry.principal.clone());
        }
        entries.remove(key);
        None
    }

    /// Remembers a token that verified, valid from `valid_from` until `valid_until`.
    pub(super) fn insert(
        &self,
        key: [u8; 32],
        principal: VerifiedPrincipal,
        valid_from: u64,
        valid_until: u64,
        now: u64,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now < e.valid_until && e.verified_at.elapsed() < MAX_AGE);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                principal,
                valid_from,
                valid_until,
                verified_at: Instant::now(),
            },
        );
    }

    /// The number of tokens remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }
}
