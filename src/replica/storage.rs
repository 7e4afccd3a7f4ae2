//! The log as raft-rs's `Storage`. Reads only: raft's writes arrive through the Ready protocol
//! and are made durable by the consensus driver with `Wal::append`, so everything this storage
//! returns is durable.

use std::cell::RefCell;
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
}

impl<D: LogDir> LogStorage<D> {
    /// Storage over `wal` for a group whose membership is `conf_state`.
    pub fn new(wal: Rc<Wal<D>>, conf_state: ConfState, commit_floor: u64) -> LogStorage<D> {
        LogStorage {
            wal,
            conf_state: RefCell::new(conf_state),
            commit_floor,
            newest_snapshot: RefCell::new(None),
        }
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
        let entries = self
            .wal
            .entries(low, high, max_size.into())
            .map_err(store_error)?;
        Ok(entries.into_iter().map(to_raft_entry).collect())
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.wal.term(index).map_err(store_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.wal.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.wal.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match &*self.newest_snapshot.borrow() {
            Some(metadata) if metadata.index >= request_index => Ok(Snapshot {
                data: metadata.index.to_le_bytes().to_vec().into(),
                metadata: Some(metadata.clone()).into(),
                ..Default::default()
            }),
            // None yet (the log was not compacted), or older than asked for: one is coming.
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}
