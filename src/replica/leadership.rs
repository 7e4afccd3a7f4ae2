//! Who leads, as this member sees it: leader changes, and saying why when there is none.
//!
//! ```text
//!  soft state from raft-rs ─▶ leader L' ≠ L ─▶ changes_seen += 1 (L' ≠ 0)
//!                                           ├─▶ reads asked of L fail ("leader changed")
//!                                           └─▶ L' = self: leases get an election timeout more
//!  tick with no leader ─▶ since t0 ─▶ after 5 election timeouts, every 5: one warning naming
//!                                     the peers found unreachable meanwhile
//! ```
//!
//! Each change says why, as far as this member can tell: a leadership transfer (this member
//! asked for one, was told to campaign by `MsgTimeoutNow`, or was asked for its vote in a
//! transfer's campaign), a leader that lost its quorum (this member led and stepped down with
//! no transfer under way), or an election timeout (anything else: a leader stopped being heard).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::ids::MemberId;

/// What a change of leader means, for the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader before ([`MemberId::NONE`]: none).
    pub from: MemberId,
    /// The leader now ([`MemberId::NONE`]: none).
    pub to: MemberId,
    /// Why, as this member saw it.
    pub reason: ChangeReason,
    /// The Raft term it was seen in.
    pub term: u64,
}

/// Why leadership moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeReason {
    /// A leadership transfer (etcd's move-leader, or a leader handing over).
    Transfer,
    /// This member led and lost its quorum.
    LostQuorum,
    /// The leader stopped being heard and an election followed.
    ElectionTimeout,
}

impl ChangeReason {
    /// How the dashboard and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            ChangeReason::Transfer => "transfer",
            ChangeReason::LostQuorum => "lost quorum",
            ChangeReason::ElectionTimeout => "election timeout",
        }
    }
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
    /// A transfer is under way (until the next change).
    transferring: bool,
    /// The latest changes (at most `CHANGES_KEPT`), numbered from 0 since start, for the
    /// dashboard's timeline.
    recent: VecDeque<(u64, Instant, LeaderChange)>,
    changes_observed: u64,
}

/// Leader changes kept for the dashboard.
pub const CHANGES_KEPT: usize = 100;

impl Leadership {
    /// The leader as of the last soft state ([`MemberId::NONE`]: none).
    pub fn leader(&self) -> MemberId {
        self.leader
    }

    /// Times a new leader was seen (etcd's `etcd_server_leader_changes_seen_total`).
    pub fn changes_seen(&self) -> u64 {
        self.changes_seen
    }

    /// A leadership transfer is under way: the next change is its doing.
    pub fn transfer_under_way(&mut self) {
        self.transferring = true;
    }

    /// raft-rs's soft state names `leader` in `term`, as seen by member `own`: the change, if
    /// it is one.
    pub fn observe(&mut self, own: MemberId, leader: MemberId, term: u64) -> Option<LeaderChange> {
        let from = std::mem::replace(&mut self.leader, leader);
        if from == leader {
            return None;
        }
        if !leader.is_none() {
            self.changes_seen += 1;
        }
        let reason = if self.transferring {
            ChangeReason::Transfer
        } else if from == own && !from.is_none() {
            ChangeReason::LostQuorum
        } else {
            ChangeReason::ElectionTimeout
        };
        // A transfer ends with a new leader; the step down before it is part of it.
        if !leader.is_none() {
            self.transferring = false;
        }
        Some(LeaderChange {
            from,
            to: leader,
            reason,
            term,
        })
    }

    /// Keeps `change`, seen at `now`, for the timeline.
    pub fn record(&mut self, now: Instant, change: LeaderChange) {
        if self.recent.len() == CHANGES_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back((self.changes_observed, now, change));
        self.changes_observed += 1;
    }

    /// The changes kept numbered `from` on, with their number and when they were seen.
    pub fn changes_since(&self, from: u64) -> Vec<(u64, Instant, LeaderChange)> {
        self.recent
            .iter()
            .filter(|(number, ..)| *number >= from)
            .copied()
            .collect()
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
        let own = id(1);
        let change = |from, to, reason| {
            Some(LeaderChange {
                from: id(from),
                to: id(to),
                reason,
                term: 7,
            })
        };
        use ChangeReason::*;
        assert_eq!(leadership.observe(own, id(0), 7), None);
        assert_eq!(
            leadership.observe(own, id(3), 7),
            change(0, 3, ElectionTimeout)
        );
        assert_eq!(leadership.observe(own, id(3), 7), None);
        assert_eq!(
            leadership.observe(own, id(0), 7),
            change(3, 0, ElectionTimeout)
        );
        assert_eq!(
            leadership.observe(own, id(2), 7),
            change(0, 2, ElectionTimeout)
        );
        assert_eq!(leadership.changes_seen(), 2);
    }

    #[test]
    fn a_change_says_why() {
        let mut leadership = Leadership::default();
        let id = MemberId::new;
        let own = id(1);
        use ChangeReason::*;
        assert_eq!(
            leadership.observe(own, id(1), 7).map(|c| c.reason),
            Some(ElectionTimeout)
        );
        // The leader steps down with no transfer: it lost its quorum.
        assert_eq!(
            leadership.observe(own, id(0), 7).map(|c| c.reason),
            Some(LostQuorum)
        );
        assert_eq!(
            leadership.observe(own, id(1), 7).map(|c| c.reason),
            Some(ElectionTimeout)
        );
        // A transfer: the step down and the new leader are both its doing, and it ends there.
        leadership.transfer_under_way();
        assert_eq!(
            leadership.observe(own, id(0), 7).map(|c| c.reason),
            Some(Transfer)
        );
        assert_eq!(
            leadership.observe(own, id(2), 7).map(|c| c.reason),
            Some(Transfer)
        );
        assert_eq!(
            leadership.observe(own, id(0), 7).map(|c| c.reason),
            Some(ElectionTimeout)
        );
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
