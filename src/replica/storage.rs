//! The log as raft-rs's `Storage`. Reads only: raft's writes arrive through the Ready protocol
//! and are made durable by the consensus driver.
//!
//! The driver persists asynchronously (it stages each Ready's entries in the log and goes on
//! while the sync runs, so ticks, heartbeats and votes never wait behind a disk sync), and
//! raft-rs reads entries back from this storage as soon as a Ready is handed back. Entries
//! staged but not yet durable are therefore kept here too (`in_flight`) and served ahead of the
//! log for their indexes, until the log holds them durably.
//!
//! Invariant: `in_flight`, when not empty, is contiguous and ends at the logical end of the
//! log (every staged append runs to the new end, replacing any suffix it overlaps).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, HardState as RaftHardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::entry::to_raft_entry;
use crate::wal::io::LogDir;
use crate::wal::{Wal, WalError};

/// raft's view of lode's log.
pub struct LogStorage<D: LogDir> {
    wal: Rc<Wal<D>>,
    conf_state: RefCell<ConfState>,
    /// Index of the snapshot the node started from: everything up to it is committed, whatever
    /// commit index the log's hard state recorded (commit-only hard states are not synced).
    commit_floor: u64,
    /// The newest durable snapshot, offered to a member that needs entries the log no longer
    /// has. The transport streams the file itself; Raft's message carries only this.
    newest_snapshot: RefCell<Option<SnapshotMetadata>>,
    /// Raft asked for a snapshot the newest cannot serve (it predates the recipient joining,
    /// or is older than asked): the member should take a new one now.
    snapshot_wanted: Cell<bool>,
    /// Entries staged in the log but not yet durable, ascending.
    in_flight: RefCell<VecDeque<Entry>>,
}

impl<D: LogDir> LogStorage<D> {
    /// Storage over `wal` for a group whose membership is `conf_state`.
    pub fn new(wal: Rc<Wal<D>>, conf_state: ConfState, commit_floor: u64) -> LogStorage<D> {
        LogStorage {
            wal,
            conf_state: RefCell::new(conf_state),
            commit_floor,
            newest_snapshot: RefCell::new(None),
            snapshot_wanted: Cell::new(false),
            in_flight: RefCell::new(VecDeque::new()),
        }
    }

    /// Records entries just staged in the log (not yet durable): they replace any in-flight
    /// entries at or after their first index.
    pub fn stage(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut in_flight = self.in_flight.borrow_mut();
        while in_flight.back().is_some_and(|e| e.index >= first.index) {
            in_flight.pop_back();
        }
        if in_flight
            .back()
            .is_some_and(|last| last.index + 1 != first.index)
        {
            // Not contiguous with what is in flight: everything before `first` is durable.
            in_flight.clear();
        }
        in_flight.extend(entries.iter().cloned());
    }

    /// Forgets in-flight entries the log now holds durably (the same index and term).
    pub fn persisted(&self) {
        let mut in_flight = self.in_flight.borrow_mut();
        while let Some(entry) = in_flight.front() {
            let durable = entry.index <= self.wal.last_index()
                && self.wal.term(entry.index).ok() == Some(entry.term);
            if durable {
                in_flight.pop_front();
            } else {
                break;
            }
        }
    }

    /// Forgets every in-flight entry (a snapshot replaced the log).
    pub fn clear_in_flight(&self) {
        self.in_flight.borrow_mut().clear();
    }

    fn in_flight_first(&self) -> Option<u64> {
        self.in_flight.borrow().front().map(|e| e.index)
    }

    /// True once since Raft asked for a snapshot the newest could not serve.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Records the newest durable snapshot (its file is `snapshot_file_name(index)`).
    pub fn set_newest_snapshot(&self, metadata: SnapshotMetadata) {
        let mut newest = self.newest_snapshot.borrow_mut();
        if newest.as_ref().is_none_or(|n| n.index < metadata.index) {
            *newest = Some(metadata);
        }
    }

    /// Records a membership change applied from the log.
    pub fn set_conf_state(&self, conf_state: ConfState) {
        *self.conf_state.borrow_mut() = conf_state;
    }
}

fn store_error(error: WalError) -> raft::Error {
    match error {
        WalError::Compacted { .. } => raft::Error::Store(StorageError::Compacted),
        WalError::Unavailable { .. } => raft::Error::Store(StorageError::Unavailable),
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}

impl<D: LogDir> raft::Storage for LogStorage<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let mut hard_state: RaftHardState = self.wal.hard_state().into();
        hard_state.commit = hard_state.commit.max(self.commit_floor);
        Ok(RaftState::new(hard_state, self.conf_state.borrow().clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        // Indexes from `split` on are served from the in-flight entries, the rest from the log.
        let split = self.in_flight_first().unwrap_or(u64::MAX).max(low);
        let durable_end = split.min(high);
        let mut entries: Vec<Entry> = Vec::new();
        if low < durable_end {
            entries = self
                .wal
                .entries(low, durable_end, max_size)
                .map_err(store_error)?
                .into_iter()
                .map(to_raft_entry)
                .collect();
            if (entries.len() as u64) < durable_end - low {
                return Ok(entries); // the size limit was reached
            }
        }
        if high > split {
            let in_flight = self.in_flight.borrow();
            let mut bytes: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
            for entry in in_flight
                .iter()
                .filter(|e| e.index >= split && e.index < high)
            {
                bytes += entry.data.len() as u64;
                if !entries.is_empty() && max_size.is_some_and(|max| bytes > max) {
                    break;
                }
                entries.push(entry.clone());
            }
            if entries.is_empty() {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if let Some(entry) = self
            .in_flight
            .borrow()
            .iter()
            .find(|entry| entry.index == index)
        {
            return Ok(entry.term);
        }
        if self.in_flight_first().is_some_and(|first| index >= first) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.wal.term(index).map_err(store_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.wal.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self
            .in_flight
            .borrow()
            .back()
            .map_or(self.wal.last_index(), |entry| entry.index))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        match &*self.newest_snapshot.borrow() {
            Some(metadata)
                if metadata.index >= request_index && configures(metadata.get_conf_state(), to) =>
            {
                Ok(Snapshot {
                    data: metadata.index.to_le_bytes().to_vec().into(),
                    metadata: Some(metadata.clone()).into(),
                    ..Default::default()
                })
            }
            // None yet (the log was not compacted), older than asked for, or taken before the
            // recipient joined (it would refuse one whose configuration leaves it out, and a
            // quiet cluster may not take another for a long time): a new one is asked for,
            // and Raft asks again.
            _ => {
                self.snapshot_wanted.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

/// Whether `conf_state` has `member` as a voter or a learner (raft-rs refuses to restore a
/// snapshot whose configuration leaves the restoring member out).
fn configures(conf_state: &ConfState, member: u64) -> bool {
    [
        &conf_state.voters,
        &conf_state.learners,
        &conf_state.voters_outgoing,
        &conf_state.learners_next,
    ]
    .iter()
    .any(|set| set.contains(&member))
}
