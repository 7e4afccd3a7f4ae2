//! Recovery policy: what the bytes of each segment mean after a crash. Pure: it reads byte
//! slices and decides; the caller does the I/O.
//!
//! The writer's discipline makes the policy decidable:
//! - a write places records starting at the durable end left by the previous sync, and every
//!   record names that start (its `batch_start`);
//! - a write is synced before the next write to the same segment begins, and a segment is synced
//!   before the next segment receives its first record;
//! - segment space past the last record is zero-filled.
//!
//! So, scanning a segment, the first position that is not a valid record is one of:
//! - the clean end: an all-zero header with nothing but zeros after it;
//! - a torn last write (newest segment only): no valid record after it belongs to a later
//!   write (every valid record after it has `batch_start <= position`), so the write that
//!   put bytes here was never synced and nothing in it was acknowledged. The bytes from here
//!   to the last non-zero byte are cleared and the log continues from here;
//! - corruption: anything else, in particular a damaged record followed by a record of a later
//!   write (which proves the damaged one had been synced), or any damage in a segment that is
//!   not the newest (those were fully synced before the next one began). Recovery stops with
//!   the file and offset; nothing is repaired silently.

use super::format::{
    align_up, decode_record, HardState, HeaderFault, RecordFault, RecordHeader, RecordKind,
    SegmentHeader, PAGE_SIZE, RECORDS_START, RECORD_HEADER_SIZE,
};
use super::index::{EntryLocation, LogIndex};
use std::fmt;

/// One valid record found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the segment.
    pub offset: u64,
    /// The decoded header.
    pub header: RecordHeader,
}

/// How the written part of a segment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Zeros from the end of the last record to the end of the file.
    Clean,
    /// The last write was torn: bytes in `at..dirty_end` must be cleared before appending.
    TornTail {
        /// Offset of the first invalid record.
        at: u64,
        /// Why it is invalid.
        fault: RecordFault,
        /// Page-aligned end of the non-zero bytes after `at`.
        dirty_end: u64,
    },
}

/// Why a segment cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanFault {
    /// The segment header is unusable.
    Header(HeaderFault),
    /// The header names another sequence number than the file name.
    SequenceMismatch {
        /// Sequence in the file name.
        expected: u64,
        /// Sequence in the header.
        found: u64,
    },
    /// The file is not as long as its header says.
    SizeMismatch {
        /// Size in the header.
        header: u64,
        /// Size of the file.
        file: u64,
    },
    /// Damage at `offset`.
    Record {
        /// Offset of the damaged record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

impl ScanFault {
    /// The offset the fault is at.
    pub fn offset(&self) -> u64 {
        match self {
            ScanFault::Record { offset, .. } => *offset,
            _ => 0,
        }
    }
}

impl fmt::Display for ScanFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanFault::Header(fault) => fault.fmt(f),
            ScanFault::SequenceMismatch { expected, found } => write!(
                f,
                "header names segment {found} but the file name says {expected}"
            ),
            ScanFault::SizeMismatch { header, file } => write!(
                f,
                "header says {header} bytes but the file has {file} bytes"
            ),
            ScanFault::Record { reason, .. } => f.write_str(reason),
        }
    }
}

/// The outcome of scanning one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The segment header.
    pub header: SegmentHeader,
    /// Valid records in order.
    pub records: Vec<ScannedRecord>,
    /// Offset just past the last valid record: where the next record goes.
    pub end: u64,
    /// How the written part ends.
    pub tail: SegmentEnd,
}

/// Scans a whole segment file. `newest` says whether this is the last segment of the log,
/// the only one allowed a torn tail.
pub fn scan_segment(
    bytes: &[u8],
    expected_sequence: u64,
    newest: bool,
) -> Result<SegmentScan, ScanFault> {
    let header = SegmentHeader::decode(bytes).map_err(ScanFault::Header)?;
    if header.sequence != expected_sequence {
        return Err(ScanFault::SequenceMismatch {
            expected: expected_sequence,
            found: header.sequence,
        });
    }
    if header.segment_size != bytes.len() as u64 {
        return Err(ScanFault::SizeMismatch {
            header: header.segment_size,
            file: bytes.len() as u64,
        });
    }
    let sequence = header.sequence;
    let mut records = Vec::new();
    let mut position = RECORDS_START;
    let fault = loop {
        match decode_record(&bytes[position as usize..], sequence) {
            Ok(record) => {
                let batch_start = u64::from(record.batch_start);
                if batch_start < RECORDS_START || batch_start > position {
                    break RecordFault::Malformed;
                }
                records.push(ScannedRecord {
                    offset: position,
                    header: record,
                });
                position += record.size() as u64;
                if position == bytes.len() as u64 {
                    break RecordFault::Zero;
                }
            }
            Err(fault) => break fault,
        }
    };
    let rest = &bytes[position as usize..];
    let dirty_end = last_nonzero_end(rest).map(|end| align_up(position + end as u64, PAGE_SIZE));
    let tail = match (fault, dirty_end) {
        (RecordFault::Zero, None) => SegmentEnd::Clean,
        _ => {
            if let Some((later_offset, later)) =
                first_record_of_later_write(bytes, position, sequence)
            {
                return Err(ScanFault::Record {
                    offset: position,
                    reason: format!(
                        "{fault} at offset {position}, followed by a valid record at offset \
                         {later_offset} (index {}) written after it was synced",
                        later.index
                    ),
                });
            }
            if !newest {
                return Err(ScanFault::Record {
                    offset: position,
                    reason: format!(
                        "{fault} at offset {position} in a segment that is not the newest \
                         (its writes were all synced)"
                    ),
                });
            }
            SegmentEnd::TornTail {
                at: position,
                fault,
                dirty_end: dirty_end.unwrap_or(align_up(position, PAGE_SIZE)),
            }
        }
    };
    Ok(SegmentScan {
        header,
        records,
        end: position,
        tail,
    })
}

/// Applies the records of one scanned segment (`bytes` is the whole segment) to `index`, in
/// order. On a record that cannot follow what came before, returns its offset and why.
pub fn replay_segment(
    index: &mut LogIndex,
    sequence: u64,
    scan: &SegmentScan,
    bytes: &[u8],
) -> Result<(), (u64, String)> {
    for record in &scan.records {
        let header = record.header;
        let applied = match header.kind {
            RecordKind::HardState => {
                let start = record.offset as usize + RECORD_HEADER_SIZE;
                let payload = &bytes[start..start + header.payload_len as usize];
                // decode_record already checked the payload size.
                if let Some(hard_state) = HardState::from_payload(payload) {
                    index.apply_hard_state(hard_state);
                }
                Ok(())
            }
            RecordKind::Truncate => index.apply_truncate(header.index),
            RecordKind::Compact => index.apply_compact(header.index, header.term),
            kind => index.apply_entry(
                header.index,
                EntryLocation {
                    segment: sequence,
                    offset: record.offset as u32,
                    payload_len: header.payload_len,
                    term: header.term,
                    kind,
                },
            ),
        };
        applied.map_err(|fault| (record.offset, format!("{} record: {fault}", header.kind)))?;
    }
    Ok(())
}

/// End (exclusive) of the last non-zero byte of `bytes`, if any byte is non-zero.
///
/// Reads forward a page at a time, comparing against a zero page (a memcmp): the bytes usually
/// come from a mapping, where forward reads get the kernel's readahead.
fn last_nonzero_end(bytes: &[u8]) -> Option<usize> {
    const ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
    let mut last_dirty = None;
    for (number, page) in bytes.chunks(PAGE_SIZE as usize).enumerate() {
        if page != &ZEROS[..page.len()] {
            last_dirty = Some(number);
        }
    }
    let number = last_dirty?;
    let start = number * PAGE_SIZE as usize;
    let page = &bytes[start..(start + PAGE_SIZE as usize).min(bytes.len())];
    page.iter().rposition(|&b| b != 0).map(|at| start + at + 1)
}

/// The first valid record after `position` that was carried by a write that began after
/// `position`, i.e. a write issued only once everything before it had been synced.
fn first_record_of_later_write(
    bytes: &[u8],
    position: u64,
    sequence: u64,
) -> Option<(u64, RecordHeader)> {
    let mut candidate = position as usize + 8;
    while candidate + RECORD_HEADER_SIZE <= bytes.len() {
        let head = &bytes[candidate..candidate + RECORD_HEADER_SIZE];
        if head.iter().any(|&b| b != 0) {
            if let Ok(record) = decode_record(&bytes[candidate..], sequence) {
                if u64::from(record.batch_start) > position {
                    return Some((candidate as u64, record));
                }
            }
        }
        candidate += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{encode_record, record_size, RecordKind, SEGMENT_SIZE_MIN};

    const SEQ: u64 = 4;

    struct Builder {
        bytes: Vec<u8>,
        end: usize,
    }

    impl Builder {
        fn new() -> Builder {
            let mut bytes = vec![0u8; SEGMENT_SIZE_MIN as usize];
            SegmentHeader {
                sequence: SEQ,
                segment_size: SEGMENT_SIZE_MIN,
            }
            .encode(&mut bytes);
            Builder {
                bytes,
                end: RECORDS_START as usize,
            }
        }

        /// Appends records as one write; returns their offsets.
        fn write(&mut self, payloads: &[&[u8]]) -> Vec<usize> {
            let batch_start = self.end as u32;
            let mut offsets = vec![];
            for payload in payloads {
                let index = self.records() + 1;
                let header = RecordHeader {
                    kind: RecordKind::EntryNormal,
                    term: 1,
                    index,
                    payload_len: payload.len() as u32,
                    batch_start,
                };
                offsets.push(self.end);
                self.end += encode_record(&mut self.bytes[self.end..], SEQ, &header, payload);
            }
            offsets
        }

        fn records(&self) -> u64 {
            scan_segment(&self.bytes, SEQ, true).map_or(0, |s| s.records.len() as u64)
        }
    }

    #[test]
    fn clean_segment_scans_every_record() {
        let mut b = Builder::new();
        b.write(&[b"a", b"bb"]);
        b.write(&[b"ccc"]);
        let scan = scan_segment(&b.bytes, SEQ, false).unwrap();
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.tail, SegmentEnd::Clean);
        assert_eq!(scan.end as usize, b.end);
    }

    #[test]
    fn torn_last_write_is_a_torn_tail_only_in_the_newest_segment() {
        let mut b = Builder::new();
        b.write(&[b"synced"]);
        let offsets = b.write(&[&[7u8; 600], &[8u8; 600]]);
        // The first record of the last write lost its second sector; the second survived.
        let hole = offsets[0] + 512;
        b.bytes[hole..hole + 64].fill(0);
        let scan = scan_segment(&b.bytes, SEQ, true).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert!(matches!(scan.tail, SegmentEnd::TornTail { at, .. } if at as usize == offsets[0]));
        assert!(scan_segment(&b.bytes, SEQ, false).is_err());
    }

    #[test]
    fn damage_followed_by_a_later_write_is_corruption() {
        let mut b = Builder::new();
        let first = b.write(&[b"one"]);
        b.write(&[b"two"]);
        b.bytes[first[0] + RECORD_HEADER_SIZE] ^= 0x10;
        let fault = scan_segment(&b.bytes, SEQ, true).unwrap_err();
        assert_eq!(fault.offset() as usize, first[0]);
    }

    #[test]
    fn zeroed_synced_record_before_a_later_write_is_corruption() {
        let mut b = Builder::new();
        let first = b.write(&[b"one"]);
        b.write(&[b"two"]);
        let size = record_size(3);
        b.bytes[first[0]..first[0] + size].fill(0);
        assert!(scan_segment(&b.bytes, SEQ, true).is_err());
    }

    #[test]
    fn garbage_after_the_end_of_the_newest_segment_is_torn() {
        let mut b = Builder::new();
        b.write(&[b"one"]);
        let end = b.end;
        b.bytes[end + 100] = 0xff;
        let scan = scan_segment(&b.bytes, SEQ, true).unwrap();
        assert_eq!(
            scan.tail,
            SegmentEnd::TornTail {
                at: end as u64,
                fault: RecordFault::Zero,
                dirty_end: align_up(end as u64 + 101, PAGE_SIZE),
            }
        );
    }

    #[test]
    fn last_nonzero_byte_is_found_across_pages() {
        let mut bytes = vec![0u8; 3 * PAGE_SIZE as usize + 100];
        assert_eq!(last_nonzero_end(&bytes), None);
        bytes[5] = 1;
        assert_eq!(last_nonzero_end(&bytes), Some(6));
        bytes[2 * PAGE_SIZE as usize + 7] = 9;
        assert_eq!(last_nonzero_end(&bytes), Some(2 * PAGE_SIZE as usize + 8));
        let last = bytes.len() - 1;
        bytes[last] = 3;
        assert_eq!(last_nonzero_end(&bytes), Some(bytes.len()));
    }

    #[test]
    fn header_faults_are_reported() {
        let mut b = Builder::new();
        assert!(matches!(
            scan_segment(&b.bytes, SEQ + 1, true),
            Err(ScanFault::SequenceMismatch { .. })
        ));
        assert!(matches!(
            scan_segment(&b.bytes[..8192], SEQ, true),
            Err(ScanFault::SizeMismatch { .. })
        ));
        b.bytes[3] = 0;
        assert!(matches!(
            scan_segment(&b.bytes, SEQ, true),
            Err(ScanFault::Header(HeaderFault::BadMagic))
        ));
    }
}
