//! Proposals on their way into Raft: admission, the queue they wait in, and the hand-off.
//!
//! ```text
//!  request task ─Propose{seq}─▶ admit? ──no──▶ "too many requests"
//!                                 │yes
//!                                 ▼
//!                              waiting ──(a leader is known)──▶ RawNode.propose ──▶ log, apply
//!                                 │  ▲                              │ dropped by raft-rs
//!                                 │  └─ a membership change while   ▼
//!                                 │     one is pending (leader)   refused(seq, error)
//!                                 └─ withdrawn when its caller gives up
//! ```
//!
//! The queue holds only sequence numbers and payloads: whoever waits for the answer is the
//! shell's business, filed under the same number. Invariant: a sequence number is in the queue
//! at most once, and leaves it exactly once (handed to Raft, refused, or withdrawn).

use std::time::Instant;

use bytes::Bytes;
use raft::eraftpb::ConfChange;

use crate::api::error::ServerError;

/// Most committed entries that may wait to be applied before new proposals are refused (etcd's
/// maxGapBetweenApplyAndCommitIndex): a member whose apply falls behind sheds load instead of
/// queueing without bound.
pub const MAX_APPLY_LAG: u64 = 5_000;

/// Most proposals that may wait for a leader (or for the driver's next turn) before new ones
/// are refused: without a leader nothing drains the queue, and each waiting proposal holds its
/// request.
pub const MAX_WAITING_PROPOSALS: usize = 16_384;

/// Bytes of entries the leader may hold uncommitted before raft-rs drops new proposals (etcd's
/// MaxUncommittedEntriesSize); they are answered "too many requests".
pub const MAX_UNCOMMITTED_BYTES: u64 = 1 << 30;

/// Admission of a new proposal, given the committed and applied indexes and how many
/// proposals are already waiting.
pub fn admit(committed: u64, applied: u64, waiting: usize) -> Result<(), ServerError> {
    if committed > applied.saturating_add(MAX_APPLY_LAG) || waiting >= MAX_WAITING_PROPOSALS {
        return Err(ServerError::TooManyRequests);
    }
    Ok(())
}

/// What a request hands the replica to propose.
#[derive(Clone, Debug)]
pub enum Proposal {
    /// A normal entry's data (`entry::encode_proposal`).
    Entry(Bytes),
    /// A membership change (its context an encoded proposal).
    Change(ConfChange),
}

/// A proposal waiting for Raft.
#[derive(Debug)]
pub struct Waiting {
    /// The number its answer is filed under.
    pub sequence: u64,
    /// What to propose.
    pub proposal: Proposal,
    /// When it was queued (for the proposal-queueing stage).
    pub queued_at: Instant,
}

/// Proposals not yet handed to Raft, oldest first.
#[derive(Debug, Default)]
pub struct ProposalQueue {
    waiting: Vec<Waiting>,
}

impl ProposalQueue {
    /// Queues a proposal.
    pub fn push(&mut self, waiting: Waiting) {
        debug_assert!(self.waiting.iter().all(|w| w.sequence != waiting.sequence));
        self.waiting.push(waiting);
    }

    /// Forgets a proposal whose caller gave up; true if it was still waiting (it will never
    /// be proposed).
    pub fn withdraw(&mut self, sequence: u64) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| w.sequence != sequence);
        self.waiting.len() != before
    }

    /// Proposals waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when none wait.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// True when something could be handed to Raft now: an entry, or a membership change
    /// unless changes are held (the leader has one in flight).
    pub fn has_work(&self, changes_held: bool) -> bool {
        self.waiting
            .iter()
            .any(|w| matches!(w.proposal, Proposal::Entry(_)) || !changes_held)
    }

    /// Takes every waiting proposal, oldest first.
    pub fn take(&mut self) -> Vec<Waiting> {
        std::mem::take(&mut self.waiting)
    }

    /// Puts back proposals held for later, ahead of any queued meanwhile.
    pub fn hold(&mut self, mut held: Vec<Waiting>) {
        held.append(&mut self.waiting);
        self.waiting = held;
    }

    /// Empties the queue (the member stops); answers the sequence numbers dropped.
    pub fn clear(&mut self) -> Vec<u64> {
        self.take().into_iter().map(|w| w.sequence).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_refused_while_apply_lags_commit_too_far() {
        assert!(admit(0, 0, 0).is_ok());
        assert!(admit(MAX_APPLY_LAG + 10, 10, 0).is_ok());
        let refused = admit(MAX_APPLY_LAG + 11, 10, 0).unwrap_err();
        assert_eq!(refused.to_string(), "etcdserver: too many requests");
        assert_eq!(
            refused.grpc_code(),
            crate::api::native::GRPC_RESOURCE_EXHAUSTED
        );
        // Applied ahead of committed (a snapshot installed) is never refused.
        assert!(admit(5, 100, 0).is_ok());
    }

    #[test]
    fn proposals_are_refused_while_too_many_wait() {
        assert!(admit(0, 0, MAX_WAITING_PROPOSALS - 1).is_ok());
        let refused = admit(0, 0, MAX_WAITING_PROPOSALS).unwrap_err();
        assert_eq!(refused.to_string(), "etcdserver: too many requests");
    }

    fn entry(sequence: u64, now: Instant) -> Waiting {
        Waiting {
            sequence,
            proposal: Proposal::Entry(Bytes::from_static(b"x")),
            queued_at: now,
        }
    }

    fn change(sequence: u64, now: Instant) -> Waiting {
        Waiting {
            sequence,
            proposal: Proposal::Change(ConfChange::default()),
            queued_at: now,
        }
    }

    #[test]
    fn held_changes_are_no_work_until_released_and_keep_their_place() {
        let now = Instant::now();
        let mut queue = ProposalQueue::default();
        queue.push(change(1, now));
        assert!(!queue.has_work(true));
        assert!(queue.has_work(false));
        let held = queue.take();
        queue.push(entry(2, now));
        queue.hold(held);
        let order: Vec<u64> = queue.take().iter().map(|w| w.sequence).collect();
        assert_eq!(order, [1, 2]);
    }

    #[test]
    fn a_withdrawn_proposal_leaves_once() {
        let now = Instant::now();
        let mut queue = ProposalQueue::default();
        queue.push(entry(1, now));
        queue.push(entry(2, now));
        assert!(queue.withdraw(1));
        assert!(!queue.withdraw(1));
        assert_eq!(queue.clear(), [2]);
        assert!(queue.is_empty());
    }
}
