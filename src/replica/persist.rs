//! What each Ready must make durable, and what may be said once it is.
//!
//! ```text
//!  Ready n ─▶ plan: entries + hard state ─▶ shell stages them in the log (no wait)
//!     │        (a commit-only hard state rides along with the next append: no sync of its own)
//!     ├─▶ heartbeat responses: sent at once if the term and vote they vouch for are durable
//!     ├─▶ proposals and read requests a follower forwards: sent at once (they vouch for nothing)
//!     └─▶ votes, append acknowledgements: held in `pending` with n
//!  shell: log synced n ─▶ durable(n) ─▶ in order, oldest first: raft-rs told n is persisted,
//!                                        the held messages released
//! ```
//!
//! Invariants: a message that vouches for a write (a vote, an acknowledgement) goes out only
//! after that write is durable; Readies complete in the order they were made; the term and
//! vote marked durable never run ahead of what the log synced.

use std::collections::VecDeque;

use raft::eraftpb::{Message, MessageType};

use crate::wal::format::HardState;

/// A Ready whose writes are being made durable.
#[derive(Debug)]
struct Pending {
    number: u64,
    messages: Vec<Message>,
    hard_state: Option<HardState>,
    durable: bool,
    /// raft-rs's `advance_apply` waits for this one (a snapshot's Ready).
    advance_apply: bool,
}

/// A Ready now durable, released in order.
#[derive(Debug)]
pub struct Completed {
    /// raft-rs's number of the Ready.
    pub number: u64,
    /// The messages that waited for it.
    pub messages: Vec<Message>,
    /// True when raft-rs's `advance_apply` waited for it.
    pub advance_apply: bool,
}

/// Durability bookkeeping of one member's Readies.
#[derive(Debug)]
pub struct Persistence {
    pending: VecDeque<Pending>,
    /// Term and vote of the newest hard state known durable.
    durable_term_vote: (u64, u64),
    /// The hard state last staged in the log.
    staged: HardState,
    /// A newer hard state differing from the staged one only in its commit index: it needs
    /// no fdatasync of its own (a lost commit index is recomputed by Raft, as etcd's
    /// `MustSync` reasons), so it rides along with the next append.
    deferred: Option<HardState>,
}

impl Persistence {
    /// Bookkeeping starting from the hard state the log holds.
    pub fn new(durable: HardState) -> Persistence {
        Persistence {
            pending: VecDeque::new(),
            durable_term_vote: (durable.term, durable.vote),
            staged: durable,
            deferred: None,
        }
    }

    /// The hard state to stage with a Ready's entries (`has_entries`) given raft-rs's new one:
    /// `None` when nothing needs writing (no entries, and the hard state changed only its
    /// commit index: deferred to the next append).
    pub fn plan(&mut self, has_entries: bool, hard_state: Option<HardState>) -> Option<HardState> {
        let mut hard_state = hard_state;
        if let Some(hs) = hard_state {
            if !has_entries && hs.term == self.staged.term && hs.vote == self.staged.vote {
                self.deferred = Some(hs);
                hard_state = None;
            }
        }
        if !has_entries && hard_state.is_none() {
            return None;
        }
        let hard_state = hard_state.or(self.deferred);
        if let Some(hs) = hard_state {
            self.staged = hs;
            self.deferred = None;
        }
        hard_state
    }

    /// True when the term and vote of raft-rs's current state are durable.
    pub fn term_durable(&self, term: u64, vote: u64) -> bool {
        self.durable_term_vote == (term, vote)
    }

    /// Files Ready `number`, whose held `messages` wait until its `hard_state` (if staged)
    /// and entries are durable.
    pub fn push(
        &mut self,
        number: u64,
        messages: Vec<Message>,
        hard_state: Option<HardState>,
        advance_apply: bool,
    ) {
        debug_assert!(self.pending.back().is_none_or(|last| last.number < number));
        self.pending.push_back(Pending {
            number,
            messages,
            hard_state,
            durable: false,
            advance_apply,
        });
    }

    /// Ready `number`'s writes are durable.
    pub fn durable(&mut self, number: u64) {
        if let Some(pending) = self.pending.iter_mut().find(|p| p.number == number) {
            pending.durable = true;
        }
    }

    /// True when the oldest Ready in flight is durable.
    pub fn has_completed(&self) -> bool {
        self.pending.front().is_some_and(|p| p.durable)
    }

    /// The oldest Ready if it is durable; its hard state's term and vote become durable.
    pub fn pop_completed(&mut self) -> Option<Completed> {
        if !self.has_completed() {
            return None;
        }
        let pending = self.pending.pop_front()?;
        if let Some(hs) = pending.hard_state {
            self.durable_term_vote = (hs.term, hs.vote);
        }
        Some(Completed {
            number: pending.number,
            messages: pending.messages,
            advance_apply: pending.advance_apply,
        })
    }

    /// Readies in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// Splits a Ready's persisted messages into those that may go now and those that wait: with
/// the term and vote durable, a heartbeat response vouches for nothing else (it carries the
/// ReadIndex context), so a slow sync of entries never costs the leader its quorum
/// (check-quorum) or delays linearizable reads. A proposal or a read request a follower
/// forwards to its leader (raft-rs hands a follower every message as a persisted one) carries
/// no term and says nothing of this member's log: it goes at once, so a member whose disk is
/// slow, or full and retrying, still reaches the leader with them.
pub fn split_persisted(messages: Vec<Message>, term_durable: bool) -> (Vec<Message>, Vec<Message>) {
    messages.into_iter().partition(|m| match m.get_msg_type() {
        MessageType::MsgPropose | MessageType::MsgReadIndex => true,
        MessageType::MsgHeartbeatResponse => term_durable,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState { term, vote, commit }
    }

    #[test]
    fn a_commit_only_hard_state_rides_with_the_next_append() {
        let mut persist = Persistence::new(hs(2, 1, 5));
        assert_eq!(persist.plan(false, Some(hs(2, 1, 6))), None);
        assert_eq!(persist.plan(false, None), None);
        assert_eq!(persist.plan(true, None), Some(hs(2, 1, 6)));
        assert_eq!(persist.plan(true, None), None);
        // A new term or vote is written at once, entries or not.
        assert_eq!(persist.plan(false, Some(hs(3, 0, 6))), Some(hs(3, 0, 6)));
    }

    #[test]
    fn readies_complete_in_order_and_their_term_becomes_durable_then() {
        let mut persist = Persistence::new(hs(1, 0, 0));
        persist.push(1, Vec::new(), Some(hs(2, 2, 0)), false);
        persist.push(2, Vec::new(), None, false);
        persist.durable(2);
        assert!(persist.pop_completed().is_none());
        assert!(!persist.term_durable(2, 2));
        persist.durable(1);
        assert_eq!(persist.pop_completed().map(|c| c.number), Some(1));
        assert!(persist.term_durable(2, 2));
        assert_eq!(persist.pop_completed().map(|c| c.number), Some(2));
        assert_eq!(persist.in_flight(), 0);
    }

    #[test]
    fn only_heartbeat_responses_skip_the_wait_and_only_with_a_durable_term() {
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeatResponse);
        let mut ack = Message::default();
        ack.set_msg_type(MessageType::MsgAppendResponse);
        let (now, later) = split_persisted(vec![heartbeat.clone(), ack.clone()], true);
        assert_eq!((now.len(), later.len()), (1, 1));
        let (now, later) = split_persisted(vec![heartbeat, ack], false);
        assert_eq!((now.len(), later.len()), (0, 2));
    }

    #[test]
    fn forwarded_proposals_and_reads_never_wait() {
        let mut propose = Message::default();
        propose.set_msg_type(MessageType::MsgPropose);
        let mut read = Message::default();
        read.set_msg_type(MessageType::MsgReadIndex);
        let mut vote = Message::default();
        vote.set_msg_type(MessageType::MsgRequestVoteResponse);
        for durable in [true, false] {
            let (now, later) =
                split_persisted(vec![propose.clone(), vote.clone(), read.clone()], durable);
            assert_eq!((now.len(), later.len()), (2, 1));
        }
    }
}
