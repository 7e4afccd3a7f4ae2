//! This member's place in the cluster as every core reads it: the leader it knows and whether
//! it is a learner. The consensus core publishes both after each turn of its loop (and at once
//! when it applies a membership change); the cores' admission (`server::admission`) reads them
//! with two atomic loads instead of asking the consensus core, and `Status` reports the same
//! values, so a client that saw "no leader" or "learner" in `Status` is refused accordingly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::ids::MemberId;

/// The leader this member knows and whether it is a learner, shared by every core.
#[derive(Debug, Default)]
pub struct SharedRole {
    leader: AtomicU64,
    learner: AtomicBool,
}

impl SharedRole {
    /// A member that knows no leader yet, a learner or not (as its identity says at start).
    pub fn new(learner: bool) -> SharedRole {
        SharedRole {
            leader: AtomicU64::new(MemberId::NONE.get()),
            learner: AtomicBool::new(learner),
        }
    }

    /// The leader this member knows ([`MemberId::NONE`]: none).
    pub fn leader(&self) -> MemberId {
        MemberId::new(self.leader.load(Ordering::Acquire))
    }

    /// True while this member knows a leader.
    pub fn has_leader(&self) -> bool {
        !self.leader().is_none()
    }

    /// True while this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Acquire)
    }

    /// Publishes what the consensus core knows now.
    pub(super) fn publish(&self, leader: MemberId, learner: bool) {
        self.leader.store(leader.get(), Ordering::Release);
        self.learner.store(learner, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_the_leader_and_the_learner_flag() {
        let role = SharedRole::new(true);
        assert!(role.is_learner() && !role.has_leader());
        role.publish(MemberId::new(7), false);
        assert_eq!(role.leader(), MemberId::new(7));
        assert!(role.has_leader() && !role.is_learner());
        role.publish(MemberId::NONE, false);
        assert!(!role.has_leader());
    }
}
