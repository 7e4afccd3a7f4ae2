//! Offline decoding of a log directory for `lodectl log inspect`. Reads files with plain
//! `std::fs` and never writes: it reports torn tails and corruption instead of repairing them.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use super::format::{HardState, RecordKind, RECORD_HEADER_SIZE};
use super::index::LogIndex;
use super::io::LOCK_FILE;
use super::recovery::{replay_segment, scan_segment, ScannedRecord, SegmentEnd};
use super::{is_prepared_file_name, parse_segment_file_name, WalError};

/// What one segment file holds.
#[derive(Debug)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Sequence number from the file name.
    pub sequence: u64,
    /// File size in bytes.
    pub size: u64,
    /// Valid records, in order.
    pub records: Vec<ScannedRecord>,
    /// Hard states found, by record offset.
    pub hard_states: Vec<(u64, HardState)>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// `clean`, `torn tail ...` or `CORRUPT ...`.
    pub verdict: String,
    /// False when the segment cannot be trusted.
    pub ok: bool,
}

/// What a log directory holds.
#[derive(Debug)]
pub struct LogReport {
    /// The directory.
    pub path: PathBuf,
    /// Segment reports, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Files that are not segments (lock and prepared files are listed here too).
    pub other_files: Vec<String>,
    /// The log as recovery would rebuild it, or why it would refuse.
    pub replay: Result<LogIndex, String>,
}

impl LogReport {
    /// True when recovery would accept the log.
    pub fn is_healthy(&self) -> bool {
        self.replay.is_ok() && self.segments.iter().all(|segment| segment.ok)
    }
}

/// Decodes every segment of the log in `dir`.
pub fn inspect_dir(dir: &Path) -> Result<LogReport, WalError> {
    let io = |operation, source| WalError::Io {
        operation,
        path: dir.to_path_buf(),
        source,
    };
    let mut sequences = Vec::new();
    let mut other_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io("reading directory", source))? {
        let name = entry
            .map_err(|source| io("reading directory", source))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        match parse_segment_file_name(&name) {
            Some(sequence) => sequences.push(sequence),
            None => other_files.push(name),
        }
    }
    sequences.sort_unstable();
    other_files.sort();
    let mut segments = Vec::new();
    let mut index = LogIndex::for_replay();
    let mut replay: Result<(), String> = Ok(());
    for (position, &sequence) in sequences.iter().enumerate() {
        let path = dir.join(super::segment_file_name(sequence));
        let bytes = fs::read(&path).map_err(|source| WalError::Io {
            operation: "reading",
            path: path.clone(),
            source,
        })?;
        let newest = position + 1 == sequences.len();
        if position > 0 && sequences[position - 1] + 1 != sequence && replay.is_ok() {
            replay = Err(format!(
                "segment {} is missing",
                sequences[position - 1] + 1
            ));
        }
        let mut report = SegmentReport {
            path: path.clone(),
            sequence,
            size: bytes.len() as u64,
            records: Vec::new(),
            hard_states: Vec::new(),
            end: 0,
            verdict: String::new(),
            ok: true,
        };
        match scan_segment(&bytes, sequence, newest) {
            Ok(scan) => {
                report.verdict = match scan.tail {
                    SegmentEnd::Clean => "clean".to_string(),
                    SegmentEnd::TornTail { at, fault, dirty_end } => format!(
                        "torn tail at offset {at} ({fault}); recovery clears bytes up to {dirty_end}"
                    ),
                };
                for record in &scan.records {
                    if record.header.kind == RecordKind::HardState {
                        let start = record.offset as usize + RECORD_HEADER_SIZE;
                        if let Some(hs) = HardState::from_payload(&bytes[start..start + 24]) {
                            report.hard_states.push((record.offset, hs));
                        }
                    }
                }
                if replay.is_ok() {
                    replay = replay_segment(&mut index, sequence, &scan, &bytes).map_err(
                        |(offset, reason)| format!("{} offset {offset}: {reason}", path.display()),
                    );
                }
                report.end = scan.end;
                report.records = scan.records;
            }
            Err(fault) => {
                report.ok = false;
                report.verdict = format!("CORRUPT at offset {}: {fault}", fault.offset());
                if replay.is_ok() {
                    replay = Err(format!("{}: {}", path.display(), report.verdict));
                }
            }
        }
        segments.push(report);
    }
    let replay = match replay {
        Ok(()) if sequences.is_empty() => Err("no segments: the directory holds no log".into()),
        Ok(()) => index
            .finish_replay()
            .map(|()| index)
            .map_err(|fault| fault.to_string()),
        Err(why) => Err(why),
    };
    Ok(LogReport {
        path: dir.to_path_buf(),
        segments,
        other_files,
        replay,
    })
}

/// Renders a report as text; with `records`, one line per record.
pub fn render(report: &LogReport, records: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "log directory {}", report.path.display());
    for segment in &report.segments {
        let entries = segment
            .records
            .iter()
            .filter(|r| r.header.kind.is_entry())
            .count();
        let first = segment.records.iter().find(|r| r.header.kind.is_entry());
        let last = segment
            .records
            .iter()
            .rev()
            .find(|r| r.header.kind.is_entry());
        let _ = writeln!(
            out,
            "segment {} ({} bytes): {} records, {} entries{}, records end at {}: {}",
            segment.path.display(),
            segment.size,
            segment.records.len(),
            entries,
            match (first, last) {
                (Some(f), Some(l)) => format!(
                    " (index {}..={}, term {}..={})",
                    f.header.index, l.header.index, f.header.term, l.header.term
                ),
                _ => String::new(),
            },
            segment.end,
            segment.verdict
        );
        if records {
            for record in &segment.records {
                let h = record.header;
                let extra = match h.kind {
                    RecordKind::HardState => segment
                        .hard_states
                        .iter()
                        .find(|(offset, _)| *offset == record.offset)
                        .map(|(_, hs)| {
                            format!(" term={} vote={} commit={}", hs.term, hs.vote, hs.commit)
                        })
                        .unwrap_or_default(),
                    _ => format!(" term={} index={}", h.term, h.index),
                };
                let _ = writeln!(
                    out,
                    "  @{:<10} {:<20} len={:<8} batch@{}{} crc=ok",
                    record.offset,
                    h.kind.to_string(),
                    h.payload_len,
                    h.batch_start,
                    extra
                );
            }
        }
    }
    for name in &report.other_files {
        let note = if name == LOCK_FILE {
            "lock file"
        } else if is_prepared_file_name(name) {
            "prepared segment, not yet part of the log (removed on open)"
        } else {
            "NOT a lode log file: lode refuses to open this directory"
        };
        let _ = writeln!(out, "file {name}: {note}");
    }
    match &report.replay {
        Ok(index) => {
            let hs = index.hard_state();
            let (compacted_index, compacted_term) = index.compacted();
            let _ = writeln!(
                out,
                "log: entries {}..={} ({} live), last term {}, compacted to {} (term {}), \
                 hard state term={} vote={} commit={}",
                index.first_index(),
                index.last_index(),
                index.len(),
                index.last_term(),
                compacted_index,
                compacted_term,
                hs.term,
                hs.vote,
                hs.commit
            );
        }
        Err(why) => {
            let _ = writeln!(out, "log: recovery would refuse to start: {why}");
        }
    }
    out
}
