//! The in-memory index of the log: where every live entry sits, the compaction point and the
//! hard state. Pure: no I/O.
//!
//! The same `apply_*` rules rebuild the index from the records found at recovery and advance it
//! when a written batch becomes durable, so what a restart sees is what the running log saw.
//!
//! Invariants (after every successful `apply_*`):
//! - live entries are contiguous: `entries[k]` holds index `first_index + k`;
//! - terms never decrease along the live entries, and the first live term is at least the
//!   compacted term;
//! - `compacted_index < first_index` (equal to `first_index - 1` unless a start gap is open);
//! - entry locations increase with the index (a later entry is in the same or a later segment,
//!   at a higher offset), so the segments holding no live entry form a prefix.

use std::collections::VecDeque;
use std::fmt;

use super::format::{HardState, RecordKind};

/// Where one live entry's record sits on disk, and the facts about it that need no payload read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLocation {
    /// Sequence number of the segment holding the record.
    pub segment: u64,
    /// Offset of the record header within that segment.
    pub offset: u32,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// The entry's term.
    pub term: u64,
    /// The entry's kind.
    pub kind: RecordKind,
}

/// A record sequence that a correct writer can never have produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceFault {
    /// An entry does not follow the previous one.
    Gap {
        /// The index that should have come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// An entry's term is lower than the term before it.
    TermRegression {
        /// The entry's index.
        index: u64,
        /// The entry's term.
        term: u64,
        /// The term of the entry (or compaction point) before it.
        previous: u64,
    },
    /// A truncation outside the live entries.
    TruncateOutOfRange {
        /// First index the truncation would remove.
        index: u64,
        /// First live index.
        first: u64,
        /// Last live index.
        last: u64,
    },
    /// A compaction point below an earlier one.
    CompactBackwards {
        /// The new point.
        index: u64,
        /// The earlier point.
        compacted: u64,
    },
    /// A compaction point whose term disagrees with the entry at that index.
    CompactTermMismatch {
        /// The compaction index.
        index: u64,
        /// The term the compaction record names.
        term: u64,
        /// The term of the entry at that index.
        entry_term: u64,
    },
    /// The oldest remaining segment starts after an index no compaction covers: segments are
    /// missing at the start of the log.
    MissingStart {
        /// First entry index found.
        first_found: u64,
        /// Highest compacted index known.
        compacted: u64,
    },
}

impl fmt::Display for SequenceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceFault::Gap { expected, found } => {
                write!(f, "entry index {found} where {expected} was expected")
            }
            SequenceFault::TermRegression {
                index,
                term,
                previous,
            } => write!(
                f,
                "entry {index} has term {term}, lower than the preceding term {previous}"
            ),
            SequenceFault::TruncateOutOfRange { index, first, last } => write!(
                f,
                "truncation at {index} outside the live entries {first}..={last}"
            ),
            SequenceFault::CompactBackwards { index, compacted } => write!(
                f,
                "compaction to {index} below the earlier compaction point {compacted}"
            ),
            SequenceFault::CompactTermMismatch {
                index,
                term,
                entry_term,
            } => write!(
                f,
                "compaction to {index} names term {term} but that entry has term {entry_term}"
            ),
            SequenceFault::MissingStart {
                first_found,
                compacted,
            } => write!(
                f,
                "oldest entry found is {first_found} but only entries up to {compacted} were \
                 compacted: segments are missing"
            ),
        }
    }
}

/// The live entries, compaction point and hard state of a log.
#[derive(Clone, Debug)]
pub struct LogIndex {
    first_index: u64,
    entries: VecDeque<EntryLocation>,
    compacted_index: u64,
    compacted_term: u64,
    hard_state: HardState,
    /// While replaying a log whose oldest segments were removed by compaction, the first entry
    /// seen may start after `compacted_index + 1`; a later compaction record must then reach
    /// this index or the log is missing segments.
    start_gap_until: Option<u64>,
    /// True until the first entry is applied during replay: only then may a start gap open.
    replay_start_open: bool,
}

impl Default for LogIndex {
    fn default() -> Self {
        LogIndex::new()
    }
}

impl LogIndex {
    /// An empty log: nothing compacted, the next entry is index 1.
    pub fn new() -> LogIndex {
        LogIndex {
            first_index: 1,
            entries: VecDeque::new(),
            compacted_index: 0,
            compacted_term: 0,
            hard_state: HardState::default(),
            start_gap_until: None,
            replay_start_open: false,
        }
    }

    /// An index about to be rebuilt from records whose oldest segments may have been removed.
    pub fn for_replay() -> LogIndex {
        LogIndex {
            replay_start_open: true,
            ..LogIndex::new()
        }
    }

    /// Ends a replay: fails when segments are missing at the start of the log.
    pub fn finish_replay(&mut self) -> Result<(), SequenceFault> {
        self.replay_start_open = false;
        match self.start_gap_until {
            Some(needed) if self.compacted_index < needed => Err(SequenceFault::MissingStart {
                first_found: needed + 1,
                compacted: self.compacted_index,
            }),
            _ => {
                self.start_gap_until = None;
                Ok(())
            }
        }
    }

    /// First live index (one past the compaction point when the log is empty).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Last live index (`first_index - 1` when there are no live entries).
    pub fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    /// Term of the last live entry, or the compacted term when there is none.
    pub fn last_term(&self) -> u64 {
        self.entries
            .back()
            .map_or(self.compacted_term, |entry| entry.term)
    }

    /// The compaction point: index and term of the last discarded entry.
    pub fn compacted(&self) -> (u64, u64) {
        (self.compacted_index, self.compacted_term)
    }

    /// The latest hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Term of `index`: a live entry's term, or the compacted term for the compaction point.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.compacted_index {
            return Some(self.compacted_term);
        }
        self.location(index).map(|entry| entry.term)
    }

    /// Location of a live entry.
    pub fn location(&self, index: u64) -> Option<&EntryLocation> {
        let offset = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Segment of the oldest live entry, if any.
    pub fn first_segment(&self) -> Option<u64> {
        self.entries.front().map(|entry| entry.segment)
    }

    /// Appends one entry.
    pub fn apply_entry(
        &mut self,
        index: u64,
        location: EntryLocation,
    ) -> Result<(), SequenceFault> {
        let expected = self.last_index() + 1;
        if self.replay_start_open && self.entries.is_empty() && index > expected {
            // The segments before this one were removed after a compaction that a later record
            // will name; finish_replay checks that it does.
            self.first_index = index;
            self.start_gap_until = Some(index - 1);
        } else if index != expected {
            return Err(SequenceFault::Gap {
                expected,
                found: index,
            });
        } else if self.start_gap_until.is_none() || !self.entries.is_empty() {
            check_term(index, location.term, self.last_term())?;
        }
        self.replay_start_open = false;
        self.entries.push_back(location);
        Ok(())
    }

    /// Discards every entry with index >= `index`.
    pub fn apply_truncate(&mut self, index: u64) -> Result<(), SequenceFault> {
        let last = self.last_index();
        if self.replay_start_open && self.entries.is_empty() && index > last + 1 {
            // The oldest remaining segment opens with the truncation of entries that lived in
            // removed segments; a later compaction must cover them (checked by finish_replay).
            self.first_index = index;
            self.start_gap_until = Some(index - 1);
            return Ok(());
        }
        if index < self.first_index && self.start_gap_until.is_some() {
            // Inside an open start gap the truncated entries lived in removed segments.
            self.entries.clear();
            self.first_index = index;
            self.start_gap_until = Some(index - 1);
            return Ok(());
        }
        if index < self.first_index || index > last + 1 {
            return Err(SequenceFault::TruncateOutOfRange {
                index,
                first: self.first_index,
                last,
            });
        }
        self.entries.truncate((index - self.first_index) as usize);
        Ok(())
    }

    /// Discards every entry with index <= `index`; `term` is that entry's term.
    pub fn apply_compact(&mut self, index: u64, term: u64) -> Result<(), SequenceFault> {
        if index < self.compacted_index {
            return Err(SequenceFault::CompactBackwards {
                index,
                compacted: self.compacted_index,
            });
        }
        if let Some(entry_term) = self.term(index) {
            if entry_term != term {
                return Err(SequenceFault::CompactTermMismatch {
                    index,
                    term,
                    entry_term,
                });
            }
        }
        if index >= self.first_index {
            let drop = (index - self.first_index + 1).min(self.entries.len() as u64) as usize;
            self.entries.drain(..drop);
            self.first_index = index + 1;
        } else if self.start_gap_until.is_none() {
            self.first_index = self.first_index.max(index + 1);
        }
        self.compacted_index = index;
        self.compacted_term = term;
        if self.start_gap_until.is_some_and(|needed| index >= needed) {
            self.start_gap_until = None;
        }
        Ok(())
    }

    /// Replaces the hard state.
    pub fn apply_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }
}

/// Terms never decrease along a Raft log.
pub fn check_term(index: u64, term: u64, previous: u64) -> Result<(), SequenceFault> {
    if term < previous {
        return Err(SequenceFault::TermRegression {
            index,
            term,
            previous,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(segment: u64, term: u64) -> EntryLocation {
        EntryLocation {
            segment,
            offset: 4096,
            payload_len: 0,
            term,
            kind: RecordKind::EntryNormal,
        }
    }

    #[test]
    fn entries_must_be_contiguous_with_non_decreasing_terms() {
        let mut index = LogIndex::new();
        index.apply_entry(1, loc(1, 1)).unwrap();
        index.apply_entry(2, loc(1, 2)).unwrap();
        assert_eq!(
            index.apply_entry(4, loc(1, 2)),
            Err(SequenceFault::Gap {
                expected: 3,
                found: 4
            })
        );
        assert!(matches!(
            index.apply_entry(3, loc(1, 1)),
            Err(SequenceFault::TermRegression { .. })
        ));
        assert_eq!(index.last_index(), 2);
        assert_eq!(index.term(2), Some(2));
    }

    #[test]
    fn truncate_then_reappend_with_lower_term_than_the_replaced_entry() {
        let mut index = LogIndex::new();
        for i in 1..=5 {
            index
                .apply_entry(i, loc(1, if i < 3 { 1 } else { 3 }))
                .unwrap();
        }
        index.apply_truncate(3).unwrap();
        index.apply_entry(3, loc(1, 2)).unwrap();
        assert_eq!(index.last_index(), 3);
        assert_eq!(index.term(3), Some(2));
        assert!(index.apply_truncate(5).is_err());
    }

    #[test]
    fn compaction_drops_the_prefix_and_checks_the_term() {
        let mut index = LogIndex::new();
        for i in 1..=5 {
            index.apply_entry(i, loc(1, 1)).unwrap();
        }
        assert!(matches!(
            index.apply_compact(3, 9),
            Err(SequenceFault::CompactTermMismatch { .. })
        ));
        index.apply_compact(3, 1).unwrap();
        assert_eq!(index.first_index(), 4);
        assert_eq!(index.term(3), Some(1));
        assert_eq!(index.term(2), None);
        assert!(matches!(
            index.apply_compact(2, 1),
            Err(SequenceFault::CompactBackwards { .. })
        ));
        // A snapshot point beyond the log empties it.
        index.apply_compact(10, 4).unwrap();
        assert!(index.is_empty());
        assert_eq!(index.first_index(), 11);
        assert_eq!(index.last_index(), 10);
        assert_eq!(index.last_term(), 4);
        assert!(index.apply_entry(11, loc(2, 3)).is_err());
        index.apply_entry(11, loc(2, 4)).unwrap();
    }

    #[test]
    fn replay_accepts_removed_oldest_segments_only_when_compaction_covers_them() {
        let mut index = LogIndex::for_replay();
        index.apply_compact(0, 0).unwrap();
        index.apply_entry(11, loc(2, 2)).unwrap();
        index.apply_entry(12, loc(2, 2)).unwrap();
        index.apply_compact(11, 2).unwrap();
        index.finish_replay().unwrap();
        assert_eq!(index.first_index(), 12);

        let mut missing = LogIndex::for_replay();
        missing.apply_entry(11, loc(2, 2)).unwrap();
        assert!(matches!(
            missing.finish_replay(),
            Err(SequenceFault::MissingStart { .. })
        ));
    }

    #[test]
    fn replay_accepts_a_truncation_of_entries_in_removed_segments() {
        // Segment 1 (removed) held entries up to 90; segment 2 opens with the compaction point
        // in force (78), truncates at 86, appends from 86, and later compacts past 86.
        let mut index = LogIndex::for_replay();
        index.apply_compact(78, 1).unwrap();
        index.apply_truncate(86).unwrap();
        index.apply_entry(86, loc(2, 2)).unwrap();
        index.apply_entry(87, loc(2, 2)).unwrap();
        index.apply_compact(86, 2).unwrap();
        index.finish_replay().unwrap();
        assert_eq!(index.first_index(), 87);
        assert_eq!(index.last_index(), 87);

        let mut uncovered = LogIndex::for_replay();
        uncovered.apply_compact(78, 1).unwrap();
        uncovered.apply_truncate(86).unwrap();
        uncovered.apply_entry(86, loc(2, 2)).unwrap();
        assert!(uncovered.finish_replay().is_err());
        // Outside replay the same truncation is out of range.
        let mut live = LogIndex::new();
        assert!(live.apply_truncate(5).is_err());
    }

    #[test]
    fn a_live_log_never_opens_a_start_gap() {
        let mut index = LogIndex::new();
        assert!(index.apply_entry(5, loc(1, 1)).is_err());
    }
}
