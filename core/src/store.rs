//! The relationship store's tuples as one replica holds them, and how they join the bundle's.
//!
//! Owns: [`StoreTuples`], the set of tuples written through the API (issue #19) at one store
//! revision, changed a whole revision at a time; and [`ConsistencyToken`], the opaque encoding
//! of a revision that `WriteRelationships` answers with.
//!
//! Does not own: the database, following it, or swapping snapshots (the service does that).
//! Pure and synchronous, like the rest of this crate.
//!
//! One relation graph: a snapshot with a store ([`crate::Snapshot::with_store`]) indexes the
//! bundle's file tuples and the store's together, so a search never asks which source a
//! tuple came from. The store's tuples are kept in their canonical text (the syntax of a tuple
//! file, see `TupleText`'s `Display`): one string per tuple, hashed once, and parsed again only
//! when a snapshot is built.
//!
//! INVARIANT: a `StoreTuples` is always the state after a whole revision, never part of one;
//! [`StoreTuples::apply`] takes every change of a revision at once and refuses to go back.

use std::fmt;

use rustc_hash::FxHashSet;

/// What one change does to one tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The tuple now exists.
    Write,
    /// The tuple no longer exists.
    Delete,
}

/// One change of a revision: a tuple (canonical text) written or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChange {
    /// Write or delete.
    pub kind: ChangeKind,
    /// The tuple's canonical text.
    pub tuple: String,
}

/// A revision older than the one already applied: the store's change log went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revision {offered} is not after the applied revision {applied}")]
pub struct StaleRevision {
    /// The revision already applied.
    pub applied: u64,
    /// The revision offered.
    pub offered: u64,
}

/// The store's tuples at one revision.
#[derive(Debug, Default, Clone)]
pub struct StoreTuples {
    revision: u64,
    tuples: FxHashSet<Box<str>>,
}

impl StoreTuples {
    /// Returns the store's state at `revision`, holding `tuples` (canonical text each): a
    /// replica's starting point, read from the database in one consistent transaction.
    pub fn at(revision: u64, tuples: impl IntoIterator<Item = String>) -> Self {
        Self {
            revision,
            tuples: tuples.into_iter().map(String::into_boxed_str).collect(),
        }
    }

    /// Returns the revision this state is at (0: nothing written yet).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Returns the number of tuples.
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// Returns whether there are no tuples.
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// Returns whether `tuple` (canonical text) is in the store.
    pub fn contains(&self, tuple: &str) -> bool {
        self.tuples.contains(tuple)
    }

    /// Returns every tuple, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.tuples.iter().map(AsRef::as_ref)
    }

    /// Applies every change of `revision`, in order, and moves to it; returns the changes that
    /// were effective (a write of a tuple not held, a delete of one held), in order: what a
    /// graph built from the previous state needs to follow. A revision at or before the
    /// current one is refused and changes nothing (a change is never applied twice).
    pub fn apply(
        &mut self,
        revision: u64,
        changes: impl IntoIterator<Item = StoreChange>,
    ) -> Result<Vec<StoreChange>, StaleRevision> {
        if revision <= self.revision {
            return Err(StaleRevision {
                applied: self.revision,
                offered: revision,
            });
        }
        let mut effective = Vec::new();
        for change in changes {
            let changed = match change.kind {
                ChangeKind::Write => {
                    !self.tuples.contains(change.tuple.as_str())
                        && self.tuples.insert(change.tuple.clone().into_boxed_str())
                }
                ChangeKind::Delete => self.tuples.remove(change.tuple.as_str()),
            };
            if changed {
                effective.push(change);
            }
        }
        self.revision = revision;
        Ok(effective)
    }
}

/// A consistency token: an opaque encoding of a store revision (Zanzibar's zookie, SpiceDB's
/// zedtoken). `WriteRelationships` answers with one; a check that passes it back is answered
/// from a state at least that fresh.
///
/// The text is a format prefix (`vr1_`) and the revision in 16 hex digits: callers must treat
/// it as opaque, so the encoding can change with the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken(u64);

/// Why a token is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a consistency token issued by Verdict (a `written_at` value)")]
pub struct InvalidToken;

const TOKEN_PREFIX: &str = "vr1_";

impl ConsistencyToken {
    /// Returns the token naming `revision`.
    pub fn new(revision: u64) -> Self {
        Self(revision)
    }

    /// Returns the revision the token names.
    pub fn revision(self) -> u64 {
        self.0
    }

    /// Reads a token, or the store part of a `snapshot_version` (`bundle@token`).
    pub fn parse(text: &str) -> Result<Self, InvalidToken> {
        let token = text.rsplit_once('@').map_or(text, |(_, token)| token);
        let digits = token.strip_prefix(TOKEN_PREFIX).ok_or(InvalidToken)?;
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidToken);
        }
        u64::from_str_radix(digits, 16)
            .map(Self)
            .map_err(|_| InvalidToken)
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests;
