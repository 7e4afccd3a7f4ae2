//! Whether this member's log disk has room, and when to try writing again once it had none.
//!
//! ```text
//!  a write fails: no space ─▶ full since t0 ─▶ a leader hands leadership over at once (when
//!        │                                     the other active voters can elect without it)
//!        │                ─▶ retry due at t0 + 500 ms, then twice as long after each failed
//!        │                   retry, at most 5 s apart (never a hot loop)
//!        ▼
//!  a retried write succeeds ─▶ room again: the schedule starts over at the next failure
//! ```
//!
//! A full disk is a definite failure, not a slowness: unlike a hung sync (`LogSyncStalled`,
//! five election timeouts), nothing is gained by waiting before a leader steps down. The shell
//! carries out the writes; this only decides when.

use std::time::{Duration, Instant};

/// First pause before retrying a write that found no space.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Longest pause between retries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// The log disk's room, as the writes found it.
#[derive(Debug, Default)]
pub struct LogSpace {
    full: Option<Full>,
}

#[derive(Debug, Clone, Copy)]
struct Full {
    since: Instant,
    next_retry: Instant,
    pause: Duration,
}

impl LogSpace {
    /// True from a write that found no space until a retried one succeeds.
    pub fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// Since when the disk has been full.
    pub fn full_since(&self) -> Option<Instant> {
        self.full.map(|full| full.since)
    }

    /// A write (first or retried) found no space at `now`: the next retry is due later.
    /// Answers true when the disk was not known full before.
    pub fn no_space(&mut self, now: Instant) -> bool {
        match &mut self.full {
            Some(full) => {
                full.pause = (full.pause * 2).min(LONGEST_RETRY);
                full.next_retry = now + full.pause;
                false
            }
            None => {
                self.full = Some(Full {
                    since: now,
                    next_retry: now + FIRST_RETRY,
                    pause: FIRST_RETRY,
                });
                true
            }
        }
    }

    /// A write succeeded: answers how long the disk was full, if it was.
    pub fn written(&mut self, now: Instant) -> Option<Duration> {
        self.full
            .take()
            .map(|full| now.saturating_duration_since(full.since))
    }

    /// True when the disk is full and a retry is due at `now` (the shell retries only when
    /// no write is in flight).
    pub fn retry_due(&self, now: Instant) -> bool {
        self.full.is_some_and(|full| now >= full.next_retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_start_over_after_a_success() {
        let start = Instant::now();
        let mut space = LogSpace::default();
        assert!(!space.is_full() && !space.retry_due(start));
        assert!(space.no_space(start));
        assert_eq!(space.full_since(), Some(start));
        assert!(!space.retry_due(start + Duration::from_millis(499)));
        assert!(space.retry_due(start + FIRST_RETRY));
        let mut at = start + FIRST_RETRY;
        let mut pauses = Vec::new();
        for _ in 0..6 {
            assert!(!space.no_space(at), "already full");
            let mut next = at;
            while !space.retry_due(next) {
                next += Duration::from_millis(100);
            }
            pauses.push(next - at);
            at = next;
        }
        assert_eq!(
            pauses,
            [1000, 2000, 4000, 5000, 5000, 5000].map(Duration::from_millis)
        );
        assert_eq!(space.written(at), Some(at - start));
        assert!(!space.is_full());
        assert_eq!(space.written(at), None);
        assert!(space.no_space(at), "a new episode");
        assert!(space.retry_due(at + FIRST_RETRY));
    }
}
