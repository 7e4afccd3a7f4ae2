//! What lode puts in a Raft entry, and conversion between raft's entries and the log's. Pure.
//!
//! A normal entry's data is a proposal:
//!
//! ```text
//! 0   u64 LE  proposer: member ID of the node that proposed it
//! 8   u64 LE  proposer's boot nonce (random per process start)
//! 16  u64 LE  proposal sequence number within that boot
//! 24  ...     a native-protocol RequestFrame flatbuffer holding the write request
//! ```
//!
//! The (proposer, nonce, sequence) triple lets the proposing node answer its waiting client when
//! the entry is applied; entries replayed after a restart match no waiter. Empty entries (a new
//! leader's) carry no data.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wal::{EntryKind, LogEntry};

/// Bytes before the request frame.
pub const PROPOSAL_HEADER_SIZE: usize = 24;

/// Identifies a proposal cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProposalId {
    /// Member ID of the proposer.
    pub proposer: u64,
    /// Random per process start of the proposer.
    pub nonce: u64,
    /// Sequence within that process.
    pub sequence: u64,
}

/// Builds a proposal's entry data.
pub fn encode_proposal(id: ProposalId, request_frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PROPOSAL_HEADER_SIZE + request_frame.len());
    out.put_u64_le(id.proposer);
    out.put_u64_le(id.nonce);
    out.put_u64_le(id.sequence);
    out.put_slice(request_frame);
    out.freeze()
}

/// Splits a proposal's entry data; `None` when it is too short to be one.
pub fn decode_proposal(data: &Bytes) -> Option<(ProposalId, Bytes)> {
    if data.len() < PROPOSAL_HEADER_SIZE {
        return None;
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let id = ProposalId {
        proposer: word(0),
        nonce: word(8),
        sequence: word(16),
    };
    Some((id, data.slice(PROPOSAL_HEADER_SIZE..)))
}

/// Why a raft entry cannot be stored.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// lode never proposes entries with a context, and stores none.
    #[error("raft entry {0} carries a context, which lode does not store")]
    Context(u64),
}

/// A raft entry as the log stores it (zero-copy: the data is shared).
pub fn to_log_entry(entry: &raft::eraftpb::Entry) -> Result<LogEntry, EntryError> {
    if !entry.context.is_empty() {
        return Err(EntryError::Context(entry.index));
    }
    let kind = match entry.entry_type {
        raft::eraftpb::EntryType::EntryNormal => EntryKind::Normal,
        raft::eraftpb::EntryType::EntryConfChange => EntryKind::ConfChange,
        raft::eraftpb::EntryType::EntryConfChangeV2 => EntryKind::ConfChangeV2,
    };
    Ok(LogEntry {
        index: entry.index,
        term: entry.term,
        kind,
        payload: entry.data.clone(),
    })
}

/// A stored entry as raft's (zero-copy).
pub fn to_raft_entry(entry: LogEntry) -> raft::eraftpb::Entry {
    raft::eraftpb::Entry {
        entry_type: match entry.kind {
            EntryKind::Normal => raft::eraftpb::EntryType::EntryNormal,
            EntryKind::ConfChange => raft::eraftpb::EntryType::EntryConfChange,
            EntryKind::ConfChangeV2 => raft::eraftpb::EntryType::EntryConfChangeV2,
        },
        term: entry.term,
        index: entry.index,
        data: entry.payload,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_and_entries_round_trip() {
        let id = ProposalId {
            proposer: 1,
            nonce: 0xdead_beef,
            sequence: 42,
        };
        let data = encode_proposal(id, b"frame");
        assert_eq!(
            decode_proposal(&data),
            Some((id, Bytes::from_static(b"frame")))
        );
        assert_eq!(decode_proposal(&Bytes::from_static(b"short")), None);
        let entry = raft::eraftpb::Entry {
            entry_type: raft::eraftpb::EntryType::EntryConfChangeV2,
            term: 3,
            index: 9,
            data: data.clone(),
            ..Default::default()
        };
        let stored = to_log_entry(&entry).unwrap();
        assert_eq!(to_raft_entry(stored), entry);
        let with_context = raft::eraftpb::Entry {
            context: Bytes::from_static(b"x"),
            ..entry
        };
        assert_eq!(to_log_entry(&with_context), Err(EntryError::Context(9)));
    }
}
