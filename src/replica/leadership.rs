//! Who leads, as this member sees it: leader changes, and saying why when there is none.
//!
//! ```text
//!  soft state from raft-rs ─▶ leader L' ≠ L ─▶ changes_seen += 1 (L' ≠ 0)
//!                                           ├─▶ reads asked of L fail ("leader changed")
//!                                           └─▶ L' = self: leases get an election timeout more
//!  tick with no leader ─▶ since t0 ─▶ after 5 election timeouts, every 5: one warning naming
//!                                     the peers found unreachable meanwhile
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a change of leader means, for the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader before (0: none).
    pub from: u64,
    /// The leader now (0: none).
    pub to: u64,
}

/// A warning that no leader has been known for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaderless {
    /// For how long.
    pub for_: Duration,
    /// The peers found unreachable since the last warning.
    pub unreachable: BTreeSet<u64>,
}

/// The leadership this member has seen.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: u64,
    changes_seen: u64,
    unreachable: BTreeSet<u64>,
    /// Since when no leader has been known, and when that was last reported.
    leaderless: Option<(Instant, Instant)>,
}

impl Leadership {
    /// The leader as of the last soft state (0: none).
    pub fn leader(&self) -> u64 {
        self.leader
    }

    /// Times a new leader was seen (etcd's `etcd_server_leader_changes_seen_total`).
    pub fn changes_seen(&self) -> u64 {
        self.changes_seen
    }

    /// raft-rs's soft state names `leader`: the change, if it is one.
    pub fn observe(&mut self, leader: u64) -> Option<LeaderChange> {
        let from = std::mem::replace(&mut self.leader, leader);
        if from == leader {
            return None;
        }
        if leader != 0 {
            self.changes_seen += 1;
        }
        Some(LeaderChange { from, to: leader })
    }

    /// A peer could not be reached.
    pub fn unreachable(&mut self, peer: u64) {
        self.unreachable.insert(peer);
    }

    /// A tick at `now` with `leader_known` or not: a warning when one is due.
    pub fn tick(
        &mut self,
        now: Instant,
        leader_known: bool,
        election_timeout: Duration,
    ) -> Option<Leaderless> {
        if leader_known {
            self.leaderless = None;
            self.unreachable.clear();
            return None;
        }
        let Some((since, reported)) = self.leaderless else {
            self.leaderless = Some((now, now));
            return None;
        };
        let patience = 5 * election_timeout;
        if now.duration_since(since) < patience || now.duration_since(reported) < patience {
            return None;
        }
        self.leaderless = Some((since, now));
        Some(Leaderless {
            for_: now.duration_since(since),
            unreachable: std::mem::take(&mut self.unreachable),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_leader_counts_as_a_change() {
        let mut leadership = Leadership::default();
        assert_eq!(leadership.observe(0), None);
        assert_eq!(leadership.observe(3), Some(LeaderChange { from: 0, to: 3 }));
        assert_eq!(leadership.observe(3), None);
        assert_eq!(leadership.observe(0), Some(LeaderChange { from: 3, to: 0 }));
        assert_eq!(leadership.observe(2), Some(LeaderChange { from: 0, to: 2 }));
        assert_eq!(leadership.changes_seen(), 2);
    }

    #[test]
    fn no_leader_is_reported_after_five_timeouts_then_every_five() {
        let timeout = Duration::from_secs(1);
        let start = Instant::now();
        let mut leadership = Leadership::default();
        assert!(leadership.tick(start, false, timeout).is_none());
        leadership.unreachable(9);
        assert!(leadership
            .tick(start + Duration::from_secs(4), false, timeout)
            .is_none());
        let report = leadership
            .tick(start + Duration::from_secs(5), false, timeout)
            .unwrap();
        assert_eq!(report.unreachable, BTreeSet::from([9]));
        assert!(leadership
            .tick(start + Duration::from_secs(9), false, timeout)
            .is_none());
        assert!(leadership
            .tick(start + Duration::from_secs(10), false, timeout)
            .is_some());
        assert!(leadership
            .tick(start + Duration::from_secs(11), true, timeout)
            .is_none());
        assert!(leadership
            .tick(start + Duration::from_secs(12), false, timeout)
            .is_none());
    }
}
