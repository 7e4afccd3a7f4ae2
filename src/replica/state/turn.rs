//! The Ready protocol's turn, one at a time: messages out first (a leader persists in
//! parallel with replication), a leader's snapshot installed, committed entries handed out to
//! apply in index order, entries and hard state staged, the Ready handed back with the number
//! the shell reports as `Persisted` once the log synced it.

use std::time::Instant;

use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};

use super::Replica;
use crate::api::error::ServerError;
use crate::ids::{LogIndex, MemberId};
use crate::members::Members;
use crate::replica::entry::to_log_entry;
use crate::replica::persist;
use crate::wal::format::HardState;
use crate::wal::io::LogDir;
use crate::wal::LogEntry;

/// What a turn stages in the log.
#[derive(Debug)]
pub struct PersistPlan {
    /// Entries to append (replacing any suffix they overlap).
    pub entries: Vec<LogEntry>,
    /// The hard state to write with them.
    pub hard_state: Option<HardState>,
}

/// One turn of raft-rs's Ready protocol in progress.
pub struct Turn {
    ready: raft::Ready,
    snapshot: Option<Snapshot>,
    /// The hard state `persist_plan` staged.
    hard_state: Option<HardState>,
    /// When it began.
    began: Instant,
}

impl Turn {
    /// A snapshot the leader sent, to install before the rest of the turn.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
}

impl<D: LogDir> Replica<D> {
    /// Starts a turn of the Ready protocol: messages to peers go out first (a leader persists
    /// in parallel with replication).
    pub fn begin_turn(&mut self, now: Instant) -> Option<Turn> {
        if !self.raw.has_ready() {
            return None;
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages(), now);
        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        Some(Turn {
            ready,
            snapshot,
            hard_state: None,
            began: now,
        })
    }

    /// The snapshot of this turn replaces the log: forgets entries staged before it (the shell
    /// made every earlier Ready durable first).
    pub fn snapshot_installing(&mut self) {
        debug_assert_eq!(self.persistence.in_flight(), 0);
        self.raw.store().clear_in_flight();
    }

    /// A snapshot at `metadata`, `bytes` long, was installed, with `members` its registry.
    pub fn snapshot_installed(
        &mut self,
        metadata: &SnapshotMetadata,
        bytes: u64,
        members: Option<Members>,
    ) {
        if let Some(members) = members {
            self.members = members;
        }
        self.applied = metadata.index;
        self.snapshots.installed(metadata.index, bytes);
        self.raw
            .store()
            .set_conf_state(metadata.get_conf_state().clone());
        self.raw.store().set_newest_snapshot(metadata.clone());
    }

    /// The turn's leadership news and read states (into the outputs), and its committed
    /// entries, to apply in order.
    pub fn take_committed(&mut self, turn: &mut Turn) -> Vec<Entry> {
        if turn.ready.ss().is_some() {
            // A new role or leader: the heartbeat schedule starts afresh.
            self.peer_health.reset();
            let leader = self.raw.raft.leader_id;
            if let Some(change) = self.leadership.observe(
                self.config.member_id,
                MemberId::new(leader),
                self.raw.raft.term,
            ) {
                // Rounds asked of another leader will never be answered: their readers fail
                // at once with etcd's "leader changed" and may retry.
                for reader in self.reads.leader_changed(leader) {
                    self.out
                        .reads_failed
                        .push((reader, ServerError::LeaderChanged));
                }
                self.leadership.record(turn.began, change);
                self.out.leader_changes.push(change);
            }
        }
        for state in turn.ready.take_read_states() {
            for reader in self.reads.answered(&state.request_ctx) {
                self.out
                    .reads_ready
                    .push((reader, LogIndex::new(state.index)));
            }
        }
        turn.ready.take_committed_entries()
    }

    /// What the shell stages in the log for this turn: its entries and the hard state to
    /// write with them (`None`: nothing to stage).
    pub fn persist_plan(&mut self, turn: &mut Turn) -> Result<Option<PersistPlan>, ServerError> {
        let entries = turn
            .ready
            .entries()
            .iter()
            .map(to_log_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let hard_state = turn.ready.hs().map(|hs| HardState::from(hs.clone()));
        let staged = self.persistence.plan(!entries.is_empty(), hard_state);
        turn.hard_state = staged;
        if entries.is_empty() && staged.is_none() {
            return Ok(None);
        }
        Ok(Some(PersistPlan {
            entries,
            hard_state: staged,
        }))
    }

    /// Hands the turn's Ready back to raft-rs; answers its number, to report as
    /// [`Input::Persisted`] once what `persist_plan` staged is durable (at once if nothing
    /// was). Votes and a follower's acknowledgements wait for that; a heartbeat response goes
    /// now when its term is already durable.
    pub fn end_turn(&mut self, mut turn: Turn, now: Instant) -> u64 {
        let number = turn.ready.number();
        let term_durable = self
            .persistence
            .term_durable(self.raw.raft.term, self.raw.raft.vote);
        let (now_messages, later) =
            persist::split_persisted(turn.ready.take_persisted_messages(), term_durable);
        self.send(now_messages, now);
        let installs_snapshot = turn.snapshot.is_some();
        if !installs_snapshot {
            // raft-rs reads these entries back before they are durable.
            self.raw.store().stage(turn.ready.entries());
        }
        self.raw.advance_append_async(turn.ready);
        // raft-rs counts a snapshot applied only once it is persisted.
        if !installs_snapshot {
            self.raw.advance_apply();
        }
        self.persistence
            .push(number, later, turn.hard_state, installs_snapshot);
        self.after_input();
        number
    }

    /// Readies handed back whose writes are not yet durable.
    pub fn persists_in_flight(&self) -> usize {
        self.persistence.in_flight()
    }

    /// Entry `index`, `bytes` long, was applied.
    pub fn applied_entry(&mut self, index: LogIndex, bytes: u64) {
        let index = index.get();
        assert!(
            index > self.applied,
            "entry {index} applied after {}: out of order",
            self.applied
        );
        assert!(
            index <= self.committed().get(),
            "entry {index} applied beyond the commit index {}",
            self.committed()
        );
        self.applied = index;
        self.snapshots.applied(bytes);
    }
}
