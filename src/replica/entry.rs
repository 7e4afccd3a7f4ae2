//! What lode puts in a Raft entry, and conversion between raft's entries and the log's. Pure.
//!
//! A normal entry's data is a proposal:
//!
//! ```text
//! 0   u64 LE  proposer: member ID of the node that proposed it
//! 8   u64 LE  proposer's boot nonce (random per process start)
//! 16  u64 LE  proposal sequence number within that boot; its top bit set: a client's request,
//!             and the auth revision it was authorized at follows
//! 24  u64 LE  (only with that bit) the auth revision (0: no user; auth was off, or no
//!             credentials)
//! 24|32 ...   a native-protocol RequestFrame flatbuffer holding the write request
//! ```
//!
//! The (proposer, nonce, sequence) triple lets the proposing node answer its waiting client when
//! the entry is applied; entries replayed after a restart match no waiter. Empty entries (a new
//! leader's) carry no data. A client's request carries the auth revision it was authorized at,
//! so that every member refuses it alike if the auth store moved on before it was applied
//! (etcd's `AuthRevision` in its request header); the server's own writes (lease renewals and
//! expiries, auto-compaction, alarms) carry none and are never refused for auth. Entries written
//! before the stamp existed have the bit clear (sequences never reach 2^63).

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

/// The sequence word's bit that says an auth revision follows the header.
const STAMPED: u64 = 1 << 63;

/// A proposal as its entry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedProposal {
    pub id: ProposalId,
    /// The auth revision a client's request was authorized at; `None` for the server's own.
    pub auth_revision: Option<u64>,
    /// The request frame.
    pub frame: Bytes,
}

/// Builds a proposal's entry data; `auth_revision` is the auth revision a client's request was
/// authorized at (`None` for the server's own writes).
pub fn encode_proposal(id: ProposalId, auth_revision: Option<u64>, request_frame: &[u8]) -> Bytes {
    let stamp = if auth_revision.is_some() { 8 } else { 0 };
    let mut out = BytesMut::with_capacity(PROPOSAL_HEADER_SIZE + stamp + request_frame.len());
    out.put_u64_le(id.proposer);
    out.put_u64_le(id.nonce);
    match auth_revision {
        Some(revision) => {
            out.put_u64_le(id.sequence | STAMPED);
            out.put_u64_le(revision);
        }
        None => out.put_u64_le(id.sequence),
    }
    out.put_slice(request_frame);
    out.freeze()
}

/// Splits a proposal's entry data; `None` when it is too short to be one.
pub fn decode_proposal(data: &Bytes) -> Option<DecodedProposal> {
    if data.len() < PROPOSAL_HEADER_SIZE {
        return None;
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(data.get(at..at + 8)?);
        Some(u64::from_le_bytes(bytes))
    };
    let sequence = word(16)?;
    let id = ProposalId {
        proposer: word(0)?,
        nonce: word(8)?,
        sequence: sequence & !STAMPED,
    };
    if sequence & STAMPED == 0 {
        return Some(DecodedProposal {
            id,
            auth_revision: None,
            frame: data.slice(PROPOSAL_HEADER_SIZE..),
        });
    }
    Some(DecodedProposal {
        id,
        auth_revision: Some(word(PROPOSAL_HEADER_SIZE)?),
        frame: data.slice(PROPOSAL_HEADER_SIZE + 8..),
    })
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
        let data = encode_proposal(id, None, b"frame");
        assert_eq!(
            decode_proposal(&data),
            Some(DecodedProposal {
                id,
                auth_revision: None,
                frame: Bytes::from_static(b"frame")
            })
        );
        // A client's request, stamped with its auth revision (0 included).
        for revision in [0, 7, u64::MAX] {
            let stamped = encode_proposal(id, Some(revision), b"frame");
            assert_eq!(stamped.len(), data.len() + 8);
            assert_eq!(
                decode_proposal(&stamped),
                Some(DecodedProposal {
                    id,
                    auth_revision: Some(revision),
                    frame: Bytes::from_static(b"frame")
                })
            );
        }
        // Stamped but cut before the revision: not a proposal.
        let cut = encode_proposal(id, Some(7), b"").slice(..28);
        assert_eq!(decode_proposal(&cut), None);
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
