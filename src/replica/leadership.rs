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

use crate::ids::MemberId;

/// What a change of leader means, for the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader before ([`MemberId::NONE`]: none).
    pub from: MemberId,
    /// The leader now ([`MemberId::NONE`]: none).
    pub to: MemberId,
}

/// A warning that no leader has been known for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaderless {
    /// For how long.
    pub for_: Duration,
    /// The peers found unreachable since the last warning.
    pub unreachable: BTreeSet<MemberId>,
}

/// The leadership this member has seen.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: MemberId,
    changes_seen: u64,
    unreachable: BTreeSet<MemberId>,
    /// Since when no leader has been known, and when that was last reported.
    leaderless: Option<(Instant, Instant)>,
}

impl Leadership {
    /// The leader as of the last soft state ([`MemberId::NONE`]: none).
    pub fn leader(&self) -> MemberId {
        self.leader
    }

    /// Times a new leader was seen (etcd's `etcd_server_leader_changes_seen_total`).
    pub fn changes_seen(&self) -> u64 {
        self.changes_seen
    }

    /// raft-rs's soft state names `leader`: the change, if it is one.
    pub fn observe(&mut self, leader: MemberId) -> Option<LeaderChange> {
        let from = std::mem::replace(&mut self.leader, leader);
        if from == leader {
            return None;
        }
        if !leader.is_none() {
            self.changes_seen += 1;
        }
        Some(LeaderChange { from, to: leader })
    }

    /// A peer could not be reached.
    pub fn unreachable(&mut self, peer: MemberId) {
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
        let id = MemberId::new;
        let change = |from, to| {
            Some(LeaderChange {
                from: id(from),
                to: id(to),
            })
        };
        assert_eq!(leadership.observe(id(0)), None);
        assert_eq!(leadership.observe(id(3)), change(0, 3));
        assert_eq!(leadership.observe(id(3)), None);
        assert_eq!(leadership.observe(id(0)), change(3, 0));
        assert_eq!(leadership.observe(id(2)), change(0, 2));
        assert_eq!(leadership.changes_seen(), 2);
    }

    #[test]
    fn no_leader_is_reported_after_five_timeouts_then_every_five() {
        let timeout = Duration::from_secs(1);
        let start = Instant::now();
        let mut leadership = Leadership::default();
        assert!(leadership.tick(start, false, timeout).is_none());
        leadership.unreachable(MemberId::new(9));
        assert!(leadership
            .tick(start + Duration::from_secs(4), false, timeout)
            .is_none());
        let report = leadership
            .tick(start + Duration::from_secs(5), false, timeout)
            .unwrap();
        assert_eq!(report.unreachable, BTreeSet::from([MemberId::new(9)]));
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
