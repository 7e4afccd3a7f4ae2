//! Linearizable reads: ReadIndex rounds, batched.
//!
//! ```text
//!  reader ─Read{id}─▶ waiting ──(a leader is known)──▶ one round: context c, asked of leader L
//!                                                          │
//!            raft-rs read state (c, index) ◀───────────────┤  every reader of the batch is
//!            ready(id, index) ─▶ reader waits applied ≥ index, then reads
//!                                                          │
//!            leader changes to L' ≠ L ─────────────────────┴─▶ failed(id, "leader changed")
//!            a tick passes unanswered ─▶ asked again (a read state is lost across elections)
//! ```
//!
//! Every reader waiting when a round starts rides in it: one heartbeat round confirms
//! leadership for all of them. Invariant: a reader is in at most one place (waiting or one
//! round) and leaves exactly once (ready, failed or withdrawn).

use std::collections::HashMap;

/// One ReadIndex round in flight.
#[derive(Debug)]
struct Round {
    /// The leader it was asked of.
    asked_of: u64,
    /// Its readers.
    readers: Vec<u64>,
}

/// Readers waiting for a read index.
#[derive(Debug, Default)]
pub struct ReadQueue {
    waiting: Vec<u64>,
    rounds: HashMap<u64, Round>,
    next_context: u64,
}

/// The bytes raft-rs carries for a round.
pub fn context_bytes(context: u64) -> Vec<u8> {
    context.to_le_bytes().to_vec()
}

impl ReadQueue {
    /// Queues a reader.
    pub fn push(&mut self, reader: u64) {
        self.waiting.push(reader);
    }

    /// True when readers wait for a round.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Forgets readers that gave up.
    pub fn withdraw(&mut self, gone: &[u64]) {
        if gone.is_empty() {
            return;
        }
        self.waiting.retain(|reader| !gone.contains(reader));
        self.rounds.retain(|_, round| {
            round.readers.retain(|reader| !gone.contains(reader));
            !round.readers.is_empty()
        });
    }

    /// Starts a round with every waiting reader, asked of `leader`; its context, or `None`
    /// when no reader waits.
    pub fn start_round(&mut self, leader: u64) -> Option<u64> {
        if self.waiting.is_empty() {
            return None;
        }
        let context = self.next_context;
        self.next_context += 1;
        let readers = std::mem::take(&mut self.waiting);
        self.rounds.insert(
            context,
            Round {
                asked_of: leader,
                readers,
            },
        );
        Some(context)
    }

    /// The readers of the round raft-rs answered with `context` (none if it is unknown: its
    /// readers left or the bytes are not one of ours).
    pub fn answered(&mut self, context: &[u8]) -> Vec<u64> {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else {
            return Vec::new();
        };
        self.rounds
            .remove(&u64::from_le_bytes(bytes))
            .map(|round| round.readers)
            .unwrap_or_default()
    }

    /// Leadership moved to `leader`: rounds asked of another will never be answered (raft-rs
    /// drops them with the old leadership); answers their readers. A round may already have
    /// gone to the new leader (it was known from its messages first): it stays.
    pub fn leader_changed(&mut self, leader: u64) -> Vec<u64> {
        let mut abandoned = Vec::new();
        self.rounds.retain(|_, round| {
            if round.asked_of == leader {
                return true;
            }
            abandoned.append(&mut round.readers);
            false
        });
        abandoned
    }

    /// Rounds still unanswered, to ask again of `leader`: their contexts.
    pub fn reissue(&mut self, leader: u64) -> Vec<u64> {
        let mut contexts: Vec<u64> = self
            .rounds
            .iter_mut()
            .map(|(context, round)| {
                round.asked_of = leader;
                *context
            })
            .collect();
        contexts.sort_unstable();
        contexts
    }

    /// Every reader, waiting or in a round (the member stops); the queue is left empty.
    pub fn clear(&mut self) -> Vec<u64> {
        let mut all = std::mem::take(&mut self.waiting);
        for (_, mut round) in self.rounds.drain() {
            all.append(&mut round.readers);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_answers_every_reader_waiting_when_it_started() {
        let mut reads = ReadQueue::default();
        reads.push(1);
        reads.push(2);
        let context = reads.start_round(7).unwrap();
        reads.push(3);
        assert_eq!(reads.answered(&context_bytes(context)), [1, 2]);
        assert!(reads.answered(&context_bytes(context)).is_empty());
        assert!(reads.has_waiting());
        assert!(reads.answered(b"not eight").is_empty());
    }

    #[test]
    fn a_leader_change_fails_rounds_asked_of_another_leader_only() {
        let mut reads = ReadQueue::default();
        reads.push(1);
        let old = reads.start_round(7).unwrap();
        reads.push(2);
        let new = reads.start_round(8).unwrap();
        assert_eq!(reads.leader_changed(8), [1]);
        assert!(reads.answered(&context_bytes(old)).is_empty());
        assert_eq!(reads.answered(&context_bytes(new)), [2]);
    }

    #[test]
    fn reissued_rounds_belong_to_the_new_leader_and_withdrawn_readers_leave() {
        let mut reads = ReadQueue::default();
        reads.push(1);
        reads.push(2);
        let context = reads.start_round(7).unwrap();
        assert_eq!(reads.reissue(8), [context]);
        assert!(reads.leader_changed(8).is_empty());
        reads.withdraw(&[1]);
        assert_eq!(reads.clear(), [2]);
        reads.push(3);
        reads.withdraw(&[3]);
        assert!(reads.start_round(8).is_none());
    }
}
