//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), paced as etcd
//! 3.5's compactors pace it. Pure: the caller ticks it with the time, the current revision and
//! whether this member leads, proposes the compactions it asks for and reports how they went.
//!
//! - `periodic`, retention P: every min(P, 1 h)/10 the current revision is sampled (the samples
//!   of the last P are kept); once P has passed since the compactor started, the revision
//!   sampled P ago is compacted, then again every min(P, 1 h). A failure is retried at the next
//!   sample.
//! - `revision`, retention N: every 5 minutes, current revision - N is compacted (unless it is
//!   not above 0 or was the last one compacted); a failure is retried 5 minutes later.
//!
//! Only the leader compacts (a compaction is a log entry every member applies); followers keep
//! sampling, so a new leader compacts on schedule.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What auto-compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// History of this long (periodic mode).
    Period(Duration),
    /// This many revisions (revision mode).
    Revisions(i64),
}

/// The mode flag's two values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Periodic,
    Revision,
}

/// How often the revision compactor looks (etcd's `revInterval`).
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The longest interval between periodic compactions.
const MAX_COMPACT_INTERVAL: Duration = Duration::from_secs(3600);

/// Reads `--auto-compaction-retention` as etcd does: a bare non-negative integer is hours in
/// periodic mode and revisions in revision mode, anything else a duration (in either mode,
/// where a duration's nanoseconds count as revisions: etcd's quirk, kept); `None`: off.
pub fn parse_retention(mode: Mode, text: &str) -> Result<Option<Retention>, String> {
    let text = text.trim();
    let text = if text.is_empty() { "0" } else { text };
    let bad = |why: String| format!("--auto-compaction-retention {text}: {why}");
    let retention = match text.parse::<i64>() {
        Ok(n) if n < 0 => return Err(bad("must not be negative".to_string())),
        Ok(0) => return Ok(None),
        Ok(n) => match mode {
            Mode::Periodic => Retention::Period(Duration::from_secs(
                u64::try_from(n)
                    .ok()
                    .and_then(|hours| hours.checked_mul(3600))
                    .ok_or_else(|| bad("too large".to_string()))?,
            )),
            Mode::Revision => Retention::Revisions(n),
        },
        Err(_) => {
            let period = crate::duration::parse_duration(text).map_err(bad)?;
            if period.is_zero() {
                return Ok(None);
            }
            match mode {
                Mode::Periodic => Retention::Period(period),
                Mode::Revision => Retention::Revisions(
                    i64::try_from(period.as_nanos()).map_err(|_| bad("too large".to_string()))?,
                ),
            }
        }
    };
    if let Retention::Period(period) = retention {
        if period < Duration::from_millis(10) {
            return Err(bad("a period shorter than 10ms".to_string()));
        }
    }
    Ok(Some(retention))
}

/// How a compaction the compactor asked for went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The revision was already compacted: as good as done.
    AlreadyCompacted,
    Failed,
}

/// One member's auto-compactor.
#[derive(Debug)]
pub struct AutoCompactor {
    retention: Retention,
    pacing: Pacing,
}

#[derive(Debug)]
enum Pacing {
    Periodic {
        sample_interval: Duration,
        compact_interval: Duration,
        samples: VecDeque<i64>,
        keep: usize,
        /// Wait this long after `last_success` before the next compaction: the period at
        /// first, then the compaction interval.
        wait: Duration,
        last_success: Instant,
    },
    Revision {
        last_compacted: i64,
    },
}

impl AutoCompactor {
    /// A compactor started at `now`, when the revision was `current_revision`.
    pub fn new(retention: Retention, now: Instant, current_revision: i64) -> AutoCompactor {
        let pacing = match retention {
            Retention::Period(period) => {
                let compact_interval = period.min(MAX_COMPACT_INTERVAL);
                let sample_interval = compact_interval / 10;
                let keep = usize::try_from(period.as_nanos() / sample_interval.as_nanos().max(1))
                    .unwrap_or(usize::MAX)
                    .saturating_add(1);
                Pacing::Periodic {
                    sample_interval,
                    compact_interval,
                    // Grown as samples come (a retention of years must not allocate at start).
                    samples: VecDeque::from([current_revision]),
                    keep,
                    wait: period,
                    last_success: now,
                }
            }
            Retention::Revisions(_) => Pacing::Revision { last_compacted: 0 },
        };
        AutoCompactor { retention, pacing }
    }

    /// What it keeps.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// How long to wait between ticks.
    pub fn interval(&self) -> Duration {
        match &self.pacing {
            Pacing::Periodic {
                sample_interval, ..
            } => *sample_interval,
            Pacing::Revision { .. } => REVISION_CHECK_INTERVAL,
        }
    }

    /// One tick, an `interval` after the previous: the revision to compact now, if any.
    pub fn tick(&mut self, now: Instant, current_revision: i64, leader: bool) -> Option<i64> {
        match &mut self.pacing {
            Pacing::Periodic {
                samples,
                keep,
                wait,
                last_success,
                compact_interval,
                ..
            } => {
                // Decided on the samples up to the previous tick, as etcd's compactor decides
                // after sleeping: the oldest is about a period and a sample interval old.
                let due = leader && now.saturating_duration_since(*last_success) >= *wait;
                let target = if due {
                    *wait = *compact_interval;
                    samples.front().copied().filter(|revision| *revision > 0)
                } else {
                    None
                };
                samples.push_back(current_revision);
                while samples.len() > *keep {
                    samples.pop_front();
                }
                target
            }
            Pacing::Revision { last_compacted } => {
                let Retention::Revisions(keep) = self.retention else {
                    return None;
                };
                let target = current_revision.saturating_sub(keep);
                (leader && target > 0 && target != *last_compacted).then_some(target)
            }
        }
    }

    /// Reports how the compaction of `revision` asked for at `now` went.
    pub fn finished(&mut self, now: Instant, revision: i64, outcome: Outcome) {
        if outcome == Outcome::Failed {
            return;
        }
        match &mut self.pacing {
            Pacing::Periodic { last_success, .. } => *last_success = now,
            Pacing::Revision { last_compacted } => *last_compacted = revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_as_etcds() {
        let hours = |n: u64| Some(Retention::Period(Duration::from_secs(n * 3600)));
        assert_eq!(parse_retention(Mode::Periodic, "1"), Ok(hours(1)));
        assert_eq!(parse_retention(Mode::Periodic, "72"), Ok(hours(72)));
        assert_eq!(
            parse_retention(Mode::Periodic, "30m"),
            Ok(Some(Retention::Period(Duration::from_secs(1800))))
        );
        assert_eq!(parse_retention(Mode::Periodic, "0"), Ok(None));
        assert_eq!(parse_retention(Mode::Periodic, ""), Ok(None));
        assert_eq!(
            parse_retention(Mode::Revision, "1000"),
            Ok(Some(Retention::Revisions(1000)))
        );
        for bad in ["-1", "1.5", "soon", "1ms"] {
            assert!(parse_retention(Mode::Periodic, bad).is_err(), "{bad}");
        }
    }

    /// Ticks every interval from `start` for `ticks` ticks with the revision growing by 10 a
    /// tick; returns (tick number, revision compacted) for each compaction, all succeeding.
    fn run(
        compactor: &mut AutoCompactor,
        start: Instant,
        ticks: u32,
        leader: bool,
    ) -> Vec<(u32, i64)> {
        let mut compacted = Vec::new();
        for n in 1..=ticks {
            let now = start + compactor.interval() * n;
            if let Some(revision) = compactor.tick(now, i64::from(n) * 10, leader) {
                compacted.push((n, revision));
                compactor.finished(now, revision, Outcome::Done);
            }
        }
        compacted
    }

    #[test]
    fn periodic_compacts_what_was_current_a_period_ago_every_period() {
        let start = Instant::now();
        let mut compactor =
            AutoCompactor::new(Retention::Period(Duration::from_secs(10)), start, 1);
        assert_eq!(compactor.interval(), Duration::from_secs(1));
        // Nothing in the first period; then every 10 ticks, what was current 11 ticks before
        // (a period and a sample interval, as etcd keeps).
        assert_eq!(
            run(&mut compactor, start, 35, true),
            vec![(10, 1), (20, 90), (30, 190)]
        );
    }

    #[test]
    fn periodic_over_an_hour_compacts_hourly_keeping_the_whole_period() {
        let start = Instant::now();
        let period = Duration::from_secs(4 * 3600);
        let mut compactor = AutoCompactor::new(Retention::Period(period), start, 1);
        assert_eq!(compactor.interval(), Duration::from_secs(360));
        let compacted = run(&mut compactor, start, 60, true);
        // First at 4 h (tick 40), then hourly; each keeps about 4 h 6 min of history.
        assert_eq!(compacted, vec![(40, 1), (50, 90), (60, 190)]);
    }

    #[test]
    fn a_follower_never_compacts_and_a_failure_is_retried_at_the_next_sample() {
        let start = Instant::now();
        let mut compactor =
            AutoCompactor::new(Retention::Period(Duration::from_secs(10)), start, 1);
        assert!(run(&mut compactor, start, 30, false).is_empty());
        let now = start + Duration::from_secs(31);
        let first = compactor.tick(now, 310, true).expect("due");
        compactor.finished(now, first, Outcome::Failed);
        let later = now + compactor.interval();
        let retried = compactor.tick(later, 320, true).expect("retried");
        assert!(retried > first, "a fresher sample: {retried} after {first}");
        compactor.finished(later, retried, Outcome::AlreadyCompacted);
        assert_eq!(
            compactor.tick(later + compactor.interval(), 330, true),
            None
        );
    }

    #[test]
    fn a_retention_of_centuries_starts_without_allocating_for_it() {
        let period = parse_retention(Mode::Periodic, "1000000000")
            .expect("parsed")
            .expect("on");
        let compactor = AutoCompactor::new(period, Instant::now(), 1);
        assert_eq!(compactor.interval(), Duration::from_secs(360));
    }

    #[test]
    fn revision_mode_keeps_the_last_n_and_skips_repeats() {
        let start = Instant::now();
        let mut compactor = AutoCompactor::new(Retention::Revisions(25), start, 1);
        assert_eq!(compactor.interval(), REVISION_CHECK_INTERVAL);
        assert_eq!(compactor.tick(start, 20, true), None, "not above 0");
        assert_eq!(compactor.tick(start, 100, false), None, "followers do not");
        assert_eq!(compactor.tick(start, 100, true), Some(75));
        compactor.finished(start, 75, Outcome::Done);
        assert_eq!(compactor.tick(start, 100, true), None, "already done");
        assert_eq!(compactor.tick(start, 101, true), Some(76));
        compactor.finished(start, 76, Outcome::Failed);
        assert_eq!(compactor.tick(start, 101, true), Some(76), "retried");
    }
}
