//! Coalescing a burst of file events into one rebuild.
//!
//! Trailing edge with a cooldown: a rebuild starts once no event has arrived for `quiet`, so a
//! `git checkout` that touches 500 files is one rebuild, not 500. A steady stream of events
//! cannot postpone it forever: `max_delay` after the first event of a burst, it starts anyway.
//!
//! ```text
//! a burst:        x  x x   x
//!                          |<-- quiet -->|
//! rebuild:                               R
//!
//! a steady stream: x x x x x x x x x x x x x x x x x ...
//!                  |<-------- max_delay -------->|
//! rebuild:                                       R    (the next burst starts a new window)
//! ```
//!
//! Kept by hand rather than notify-debouncer-full: that crate debounces each path on its own
//! timer (one event per file) with no deadline for a whole burst, where a reload needs one
//! rebuild per burst of the whole tree and a `max_delay` a steady stream cannot postpone.

use std::time::Duration;

use tokio::time::Instant;

/// The pending-rebuild state of the watch loop.
#[derive(Debug, Clone)]
pub(super) struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    pub(super) fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay: max_delay.max(quiet),
            first: None,
            last: None,
        }
    }

    /// Records an event.
    pub(super) fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Returns when the pending rebuild is due, if one is pending.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.max_delay))
    }

    /// Forgets the burst (its rebuild is starting).
    pub(super) fn clear(&mut self) {
        self.first = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_is_due_without_events() {
        assert_eq!(Debounce::new(200 * MS, 1000 * MS).deadline(), None);
    }

    #[test]
    fn a_burst_is_due_quiet_after_its_last_event() {
        let start = Instant::now();
        let mut debounce = Debounce::new(200 * MS, 1000 * MS);
        for i in 0..500 {
            debounce.note(start + i * MS / 10);
        }
        let last = start + 499 * MS / 10;
        assert_eq!(debounce.deadline(), Some(last + 200 * MS));
        debounce.clear();
        assert_eq!(debounce.deadline(), None);
    }

    #[test]
    fn a_steady_stream_is_due_at_max_delay() {
        let start = Instant::now();
        let mut debounce = Debounce::new(200 * MS, 1000 * MS);
        for i in 0..100 {
            debounce.note(start + i * 50 * MS);
        }
        assert_eq!(debounce.deadline(), Some(start + 1000 * MS));
    }
}
