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
//!
//! A round's context is this queue's random tag followed by its number, so it is unique
//! across members and across restarts of one member. raft-rs's leader keeps one pending round
//! per context (a second with the same bytes is dropped), and its answer to a round asked
//! before a restart can arrive after it: with counters alone, every member's first round would
//! be `0`, and a late answer to the round `0` of a member's previous life (an index read
//! before the new round began, still pending on a leader waiting for heartbeat answers) would
//! answer the new one: a stale read.

use std::collections::BTreeMap;

/// One ReadIndex round in flight.
#[derive(Debug)]
struct Round {
    /// The leader it was asked of.
    asked_of: u64,
    /// Its readers.
    readers: Vec<u64>,
}

/// Readers waiting for a read index.
#[derive(Debug)]
pub struct ReadQueue {
    tag: u64,
    waiting: Vec<u64>,
    rounds: BTreeMap<u64, Round>,
    next_context: u64,
}

impl ReadQueue {
    /// An empty queue whose contexts carry `tag` (random, drawn at each start).
    pub fn new(tag: u64) -> ReadQueue {
        ReadQueue {
            tag,
            waiting: Vec::new(),
            rounds: BTreeMap::new(),
            next_context: 0,
        }
    }

    /// The bytes raft-rs carries for round `context`.
    pub fn context_bytes(&self, context: u64) -> Vec<u8> {
        let mut bytes = self.tag.to_le_bytes().to_vec();
        bytes.extend_from_slice(&context.to_le_bytes());
        bytes
    }

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
        let Ok(bytes) = <[u8; 16]>::try_from(context) else {
            return Vec::new();
        };
        let (tag, number) = bytes.split_at(8);
        let (Ok(tag), Ok(number)) = (<[u8; 8]>::try_from(tag), <[u8; 8]>::try_from(number)) else {
            return Vec::new();
        };
        if u64::from_le_bytes(tag) != self.tag {
            return Vec::new(); // another member's, or an earlier life's
        }
        self.rounds
            .remove(&u64::from_le_bytes(number))
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
        self.rounds
            .iter_mut()
            .map(|(context, round)| {
                round.asked_of = leader;
                *context
            })
            .collect()
    }

    /// Every reader, waiting or in a round (the member stops); the queue is left empty.
    pub fn clear(&mut self) -> Vec<u64> {
        let mut all = std::mem::take(&mut self.waiting);
        for (_, mut round) in std::mem::take(&mut self.rounds) {
            all.append(&mut round.readers);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_bytes(context: u64) -> Vec<u8> {
        ReadQueue::new(5).context_bytes(context)
    }

    #[test]
    fn an_answer_to_another_life_or_member_answers_nobody() {
        let mut reads = ReadQueue::new(5);
        reads.push(1);
        let context = reads.start_round(7).unwrap();
        assert!(reads
            .answered(&ReadQueue::new(6).context_bytes(context))
            .is_empty());
        assert_eq!(reads.answered(&reads.context_bytes(context)), [1]);
    }

    #[test]
    fn one_round_answers_every_reader_waiting_when_it_started() {
        let mut reads = ReadQueue::new(5);
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
        let mut reads = ReadQueue::new(5);
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
        let mut reads = ReadQueue::new(5);
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
