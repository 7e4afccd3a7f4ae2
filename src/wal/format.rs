//! The byte layout of log segments and records. Pure: no I/O, no clocks.
//!
//! A segment file is `segment_size` bytes, preallocated. Page 0 holds the segment header; records
//! start at [`RECORDS_START`] and follow each other back to back, each padded to 8 bytes. The
//! bytes after the last record are zeros (the file is zero-filled when it is prepared), so an
//! all-zero record header marks the end of the written part.
//!
//! ```text
//! segment header (page 0, rest of the page zero)
//!   0  [u8; 8]  magic  b"LODELOG\0"
//!   8  u32      format version (FORMAT_VERSION)
//!  12  u32      page size the records area is aligned to (4096)
//!  16  u64      segment sequence number (1, 2, 3, ... contiguous within a log)
//!  24  u64      segment size in bytes
//!  32  u64      reserved, zero
//!  40  u32      reserved, zero
//!  44  u32      CRC32C of bytes 0..44
//!
//! record (32-byte header, payload, zero padding to a multiple of 8)
//!   0  u32      CRC32C of bytes 4..32+len, seeded with the segment sequence number
//!   4  u32      payload length `len`
//!   8  u32      batch start: offset in this segment where the write that carried this record
//!               began placing records (the durable end before that write)
//!  12  u8       kind (RecordKind)
//!  13  [u8; 3]  reserved, zero
//!  16  u64      term
//!  24  u64      index
//!  32  [u8]     payload
//! ```
//!
//! All integers are little-endian. The CRC seed makes a record copied from another segment fail
//! its check. The batch start lets recovery tell a torn last write (the record's write was never
//! synced) from damage to an earlier, synced write: see `recovery`.

use std::fmt;

/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LODELOG\0";
/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Unit of direct I/O and of mapped-read stability. Writes start and end on page boundaries.
pub const PAGE_SIZE: u64 = 4096;
/// Offset of the first record in a segment.
pub const RECORDS_START: u64 = PAGE_SIZE;
/// Bytes in a record header.
pub const RECORD_HEADER_SIZE: usize = 32;
/// Bytes of the segment header that carry data (the rest of page 0 is zero).
pub const SEGMENT_HEADER_SIZE: usize = 48;
/// Smallest segment that can hold a header page and a useful amount of records.
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;
/// Largest segment: record offsets are stored as u32.
pub const SEGMENT_SIZE_MAX: u64 = 1 << 32;
/// Payload bytes of a hard-state record.
pub const HARD_STATE_PAYLOAD_SIZE: usize = 24;

/// Rounds `value` up to a multiple of `align` (a power of two).
pub const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Bytes a record with `payload_len` payload bytes occupies, padding included.
pub const fn record_size(payload_len: usize) -> usize {
    (RECORD_HEADER_SIZE + payload_len + 7) & !7
}

/// What a record holds. Entry kinds mirror raft's `EntryType` (plus one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A Raft entry of type `EntryNormal`.
    EntryNormal = 1,
    /// A Raft entry of type `EntryConfChange`.
    EntryConfChange = 2,
    /// A Raft entry of type `EntryConfChangeV2`.
    EntryConfChangeV2 = 3,
    /// Raft hard state (term, vote, commit) in the payload; header term and index are zero.
    HardState = 16,
    /// Every entry with index >= the header index is discarded.
    Truncate = 17,
    /// Every entry with index <= the header index is discarded; header term is that entry's term.
    Compact = 18,
}

impl RecordKind {
    /// Decodes a kind byte.
    pub fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::EntryNormal,
            2 => RecordKind::EntryConfChange,
            3 => RecordKind::EntryConfChangeV2,
            16 => RecordKind::HardState,
            17 => RecordKind::Truncate,
            18 => RecordKind::Compact,
            _ => return None,
        })
    }

    /// True for the kinds that carry a Raft entry.
    pub fn is_entry(self) -> bool {
        matches!(
            self,
            RecordKind::EntryNormal | RecordKind::EntryConfChange | RecordKind::EntryConfChangeV2
        )
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RecordKind::EntryNormal => "entry",
            RecordKind::EntryConfChange => "entry-confchange",
            RecordKind::EntryConfChangeV2 => "entry-confchange-v2",
            RecordKind::HardState => "hard-state",
            RecordKind::Truncate => "truncate",
            RecordKind::Compact => "compact",
        };
        f.write_str(name)
    }
}

/// Raft's durable vote and commit state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term` (0 for none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

impl HardState {
    /// Encodes into the payload of a hard-state record.
    pub fn to_payload(self) -> [u8; HARD_STATE_PAYLOAD_SIZE] {
        let mut out = [0u8; HARD_STATE_PAYLOAD_SIZE];
        out[0..8].copy_from_slice(&self.term.to_le_bytes());
        out[8..16].copy_from_slice(&self.vote.to_le_bytes());
        out[16..24].copy_from_slice(&self.commit.to_le_bytes());
        out
    }

    /// Decodes a hard-state payload; `None` when the length is wrong.
    pub fn from_payload(payload: &[u8]) -> Option<HardState> {
        if payload.len() != HARD_STATE_PAYLOAD_SIZE {
            return None;
        }
        Some(HardState {
            term: read_u64(payload, 0),
            vote: read_u64(payload, 8),
            commit: read_u64(payload, 16),
        })
    }
}

impl From<raft::eraftpb::HardState> for HardState {
    fn from(hs: raft::eraftpb::HardState) -> Self {
        HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        }
    }
}

impl From<HardState> for raft::eraftpb::HardState {
    fn from(hs: HardState) -> Self {
        raft::eraftpb::HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            ..Default::default()
        }
    }
}

/// The decoded fixed part of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment within its log.
    pub sequence: u64,
    /// Total size of the segment file in bytes.
    pub segment_size: u64,
}

/// Why a segment header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderFault {
    /// Fewer bytes than a header.
    Truncated,
    /// The magic bytes are not lode's.
    BadMagic,
    /// The header checksum does not match.
    ChecksumMismatch,
    /// A lode segment of another format version.
    UnsupportedVersion(u32),
    /// Fields that cannot be true of a segment this build wrote.
    Invalid(&'static str),
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderFault::Truncated => f.write_str("segment header is truncated"),
            HeaderFault::BadMagic => f.write_str("not a lode log segment (bad magic)"),
            HeaderFault::ChecksumMismatch => f.write_str("segment header checksum mismatch"),
            HeaderFault::UnsupportedVersion(v) => {
                write!(
                    f,
                    "format version {v}, this build reads version {FORMAT_VERSION}"
                )
            }
            HeaderFault::Invalid(why) => write!(f, "invalid segment header: {why}"),
        }
    }
}

impl SegmentHeader {
    /// Writes the header into the first [`SEGMENT_HEADER_SIZE`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..SEGMENT_HEADER_SIZE];
        out.fill(0);
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.segment_size.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and validates a header from the start of a segment.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderFault> {
        if bytes.len() < SEGMENT_HEADER_SIZE {
            return Err(HeaderFault::Truncated);
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderFault::BadMagic);
        }
        let stored_crc = read_u32(bytes, 44);
        if crc32c::crc32c(&bytes[0..44]) != stored_crc {
            return Err(HeaderFault::ChecksumMismatch);
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderFault::UnsupportedVersion(version));
        }
        if u64::from(read_u32(bytes, 12)) != PAGE_SIZE {
            return Err(HeaderFault::Invalid("page size"));
        }
        let header = SegmentHeader {
            sequence: read_u64(bytes, 16),
            segment_size: read_u64(bytes, 24),
        };
        if header.sequence == 0 {
            return Err(HeaderFault::Invalid("sequence 0"));
        }
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&header.segment_size)
            || header.segment_size % PAGE_SIZE != 0
        {
            return Err(HeaderFault::Invalid("segment size"));
        }
        Ok(header)
    }
}

/// The header fields of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// Raft term (entries, compact); zero otherwise.
    pub term: u64,
    /// Raft index (entries, truncate, compact); zero otherwise.
    pub index: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Offset where the write that carried this record began placing records.
    pub batch_start: u32,
}

impl RecordHeader {
    /// Bytes this record occupies in the segment, padding included.
    pub fn size(&self) -> usize {
        record_size(self.payload_len as usize)
    }
}

/// Why the bytes at a position are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFault {
    /// The header is all zeros: nothing was ever written here.
    Zero,
    /// The record would run past the end of the segment.
    Overrun,
    /// The checksum does not match the bytes.
    ChecksumMismatch,
    /// The kind byte names no record kind.
    UnknownKind(u8),
    /// Reserved bytes are not zero, or a payload has the wrong size for its kind.
    Malformed,
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::Zero => f.write_str("zeroed record header"),
            RecordFault::Overrun => f.write_str("record length runs past the end of the segment"),
            RecordFault::ChecksumMismatch => f.write_str("record checksum mismatch"),
            RecordFault::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            RecordFault::Malformed => f.write_str("malformed record"),
        }
    }
}

fn crc_seed(sequence: u64) -> u32 {
    crc32c::crc32c(&sequence.to_le_bytes())
}

/// Encodes one record into the start of `out`, which must hold at least
/// `record_size(payload.len())` bytes; returns the bytes written (padding zeroed).
pub fn encode_record(
    out: &mut [u8],
    sequence: u64,
    header: &RecordHeader,
    payload: &[u8],
) -> usize {
    debug_assert_eq!(header.payload_len as usize, payload.len());
    let size = record_size(payload.len());
    let out = &mut out[..size];
    out[4..8].copy_from_slice(&header.payload_len.to_le_bytes());
    out[8..12].copy_from_slice(&header.batch_start.to_le_bytes());
    out[12] = header.kind as u8;
    out[13..16].fill(0);
    out[16..24].copy_from_slice(&header.term.to_le_bytes());
    out[24..32].copy_from_slice(&header.index.to_le_bytes());
    let payload_end = RECORD_HEADER_SIZE + payload.len();
    out[RECORD_HEADER_SIZE..payload_end].copy_from_slice(payload);
    out[payload_end..].fill(0);
    let crc = crc32c::crc32c_append(crc_seed(sequence), &out[4..payload_end]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
    size
}

/// Decodes the record at the start of `bytes` (the rest of the segment from that offset).
pub fn decode_record(bytes: &[u8], sequence: u64) -> Result<RecordHeader, RecordFault> {
    if bytes.len() < RECORD_HEADER_SIZE {
        return Err(if bytes.iter().all(|&b| b == 0) {
            RecordFault::Zero
        } else {
            RecordFault::Overrun
        });
    }
    let head = &bytes[..RECORD_HEADER_SIZE];
    if head.iter().all(|&b| b == 0) {
        return Err(RecordFault::Zero);
    }
    let payload_len = read_u32(head, 4);
    let payload_end = RECORD_HEADER_SIZE as u64 + u64::from(payload_len);
    if payload_end > bytes.len() as u64 {
        return Err(RecordFault::Overrun);
    }
    let payload_end = payload_end as usize;
    let stored_crc = read_u32(head, 0);
    if crc32c::crc32c_append(crc_seed(sequence), &bytes[4..payload_end]) != stored_crc {
        return Err(RecordFault::ChecksumMismatch);
    }
    let kind = RecordKind::from_byte(head[12]).ok_or(RecordFault::UnknownKind(head[12]))?;
    if head[13..16] != [0, 0, 0] {
        return Err(RecordFault::Malformed);
    }
    if kind == RecordKind::HardState && payload_len as usize != HARD_STATE_PAYLOAD_SIZE {
        return Err(RecordFault::Malformed);
    }
    if matches!(kind, RecordKind::Truncate | RecordKind::Compact) && payload_len != 0 {
        return Err(RecordFault::Malformed);
    }
    Ok(RecordHeader {
        kind,
        term: read_u64(head, 16),
        index: read_u64(head, 24),
        payload_len,
        batch_start: read_u32(head, 8),
    })
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: RecordKind, len: usize) -> RecordHeader {
        RecordHeader {
            kind,
            term: 7,
            index: 42,
            payload_len: len as u32,
            batch_start: 4096,
        }
    }

    #[test]
    fn record_round_trips_and_pads_to_eight() {
        for len in [0usize, 1, 7, 8, 9, 255, 256, 4000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = vec![0xAAu8; record_size(len) + 16];
            let h = header(RecordKind::EntryNormal, len);
            let n = encode_record(&mut buf, 3, &h, &payload);
            assert_eq!(n % 8, 0);
            assert_eq!(n, record_size(len));
            assert!(buf[RECORD_HEADER_SIZE + len..n].iter().all(|&b| b == 0));
            assert_eq!(decode_record(&buf[..n], 3), Ok(h));
            assert_eq!(
                &buf[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + len],
                &payload[..]
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let payload = b"hello, durable world";
        let h = header(RecordKind::EntryConfChange, payload.len());
        let mut buf = vec![0u8; record_size(payload.len())];
        let used = RECORD_HEADER_SIZE + payload.len();
        encode_record(&mut buf, 9, &h, payload);
        for bit in 0..used * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&flipped, 9).is_err(),
                "bit {bit} flip undetected"
            );
        }
    }

    #[test]
    fn record_from_another_segment_fails_its_check() {
        let h = header(RecordKind::EntryNormal, 3);
        let mut buf = vec![0u8; record_size(3)];
        encode_record(&mut buf, 1, &h, b"abc");
        assert_eq!(decode_record(&buf, 2), Err(RecordFault::ChecksumMismatch));
    }

    #[test]
    fn zero_and_overrun_are_told_apart() {
        assert_eq!(decode_record(&[0u8; 64], 1), Err(RecordFault::Zero));
        let h = header(RecordKind::EntryNormal, 100);
        let mut buf = vec![0u8; record_size(100)];
        encode_record(&mut buf, 1, &h, &[1u8; 100]);
        assert_eq!(decode_record(&buf[..60], 1), Err(RecordFault::Overrun));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            sequence: 5,
            segment_size: 1 << 20,
        };
        let mut page = vec![0u8; PAGE_SIZE as usize];
        h.encode(&mut page);
        assert_eq!(SegmentHeader::decode(&page), Ok(h));
        let mut bad = page.clone();
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderFault::BadMagic));
        let mut bad = page.clone();
        bad[20] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderFault::ChecksumMismatch)
        );
        let mut other_version = page.clone();
        other_version[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&other_version[0..44]);
        other_version[44..48].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&other_version),
            Err(HeaderFault::UnsupportedVersion(2))
        );
        assert_eq!(
            SegmentHeader::decode(&page[..10]),
            Err(HeaderFault::Truncated)
        );
    }

    #[test]
    fn hard_state_payload_round_trips() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 99,
        };
        assert_eq!(HardState::from_payload(&hs.to_payload()), Some(hs));
        assert_eq!(HardState::from_payload(&[0u8; 5]), None);
        let raft_hs: raft::eraftpb::HardState = hs.into();
        assert_eq!(HardState::from(raft_hs), hs);
    }
}
