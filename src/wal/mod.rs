//! lode's durable log: the Raft log and hard state, in segmented, preallocated, checksummed
//! files written with io_uring and read through memory maps.
//!
//! Layers (see ARCHITECTURE.md for the on-disk format and the reasoning):
//! - [`format`]: byte layout of segments and records (pure);
//! - [`index`]: where each live entry sits, the compaction point, the hard state (pure);
//! - [`recovery`]: what a segment's bytes mean after a crash (pure);
//! - [`io`]: the file seam and its glommio implementation; [`sim`]: the simulated disk;
//! - this module: [`Wal`], opening and recovery, and the reads;
//! - `writer`: staging, group commit, segment rolls and preparation;
//! - [`inspect`]: the offline decoder behind `lodectl log inspect`.
//!
//! Invariants of [`Wal`]:
//! - an operation's future resolves `Ok` only after its records are durable (written and
//!   fdatasync'd); reads see only durable state;
//! - records are written in submission order; each write starts at the page holding the durable
//!   end and is synced before the next write begins; a segment is synced before the next one
//!   receives records, and every segment begins with the hard state and compaction point in
//!   force when it was started, so removing older segments never loses either;
//! - bytes handed out by reads are never rewritten: pages below the durable end are immutable,
//!   the partial last page is served from memory;
//! - a failed fdatasync poisons the log (and, by default, aborts the process): retrying a failed
//!   fsync can report success for data the kernel already dropped.

#![allow(async_fn_in_trait)]

pub mod format;
pub mod index;
pub mod inspect;
pub mod io;
pub mod recovery;
pub mod sim;
mod writer;
pub use writer::StagedAppend;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use self::format::{
    align_down, record_size, HardState, RecordKind, SegmentHeader, PAGE_SIZE, RECORDS_START,
    RECORD_HEADER_SIZE, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN,
};
use self::index::{EntryLocation, LogIndex, SequenceFault};
use self::io::{LogDir, SegmentFile, LOCK_FILE};
use self::recovery::{replay_segment, scan_segment, ScanFault, SegmentEnd};
use self::writer::{Batch, BatchOutcome, IndexOp, Speculative};

pub use self::format::HardState as WalHardState;

/// Default segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest entry payload.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 8 << 20;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Stored bytes that a correct writer cannot have produced. lode refuses to start.
    #[error("log corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment written by another format version.
    #[error("{path}: log format version {found}; this lode reads version {supported}")]
    UnsupportedVersion {
        /// The segment.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A file in the log directory that is not part of a log.
    #[error("{path} is not a lode log file; the log directory must hold only lode's files")]
    UnexpectedFile {
        /// The file.
        path: PathBuf,
    },
    /// The directory holds no log and creation was not asked for.
    #[error("{path} holds no lode log")]
    NoLog {
        /// The directory.
        path: PathBuf,
    },
    /// The disk is full; nothing that was acknowledged is affected and the log stays usable.
    #[error("no space left on the device while {operation} in {path}; the log is intact")]
    NoSpace {
        /// What was being done.
        operation: &'static str,
        /// Where.
        path: PathBuf,
    },
    /// An I/O failure.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// fdatasync failed: the log stops accepting work (and the process aborts by default).
    #[error("fdatasync failed on {path}: {source}; the log is poisoned and lode must restart")]
    SyncFailed {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier failure stopped the log.
    #[error("the log stopped after an earlier failure ({0}); reopen it")]
    Poisoned(String),
    /// Entries that do not continue the log.
    #[error("invalid append: {0}")]
    InvalidSequence(SequenceFault),
    /// An index below the compaction point.
    #[error("index {index} is compacted (first index is {first})")]
    Compacted {
        /// Requested index.
        index: u64,
        /// First live index.
        first: u64,
    },
    /// An index past the last entry.
    #[error("index {index} is past the last index {last}")]
    Unavailable {
        /// Requested index.
        index: u64,
        /// Last live index.
        last: u64,
    },
    /// A snapshot point at or below the current compaction point.
    #[error("snapshot at {index} is not newer than the compaction point {compacted}")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// Current compaction point.
        compacted: u64,
    },
    /// An entry larger than allowed.
    #[error("entry of {size} bytes exceeds the limit of {limit} bytes")]
    EntryTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Options that cannot work.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
}

/// Result alias for the log.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Kinds of Raft entry the log stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// `EntryNormal`.
    Normal,
    /// `EntryConfChange`.
    ConfChange,
    /// `EntryConfChangeV2`.
    ConfChangeV2,
}

impl EntryKind {
    fn record_kind(self) -> RecordKind {
        match self {
            EntryKind::Normal => RecordKind::EntryNormal,
            EntryKind::ConfChange => RecordKind::EntryConfChange,
            EntryKind::ConfChangeV2 => RecordKind::EntryConfChangeV2,
        }
    }

    fn from_record(kind: RecordKind) -> EntryKind {
        match kind {
            RecordKind::EntryConfChange => EntryKind::ConfChange,
            RecordKind::EntryConfChangeV2 => EntryKind::ConfChangeV2,
            _ => EntryKind::Normal,
        }
    }
}

/// One Raft entry as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Entry type.
    pub kind: EntryKind,
    /// The entry's data; from reads, a zero-copy view of the mapped segment.
    pub payload: Bytes,
}

/// How the log is opened.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of new segment files (a multiple of 4096 between 64 KiB and 4 GiB).
    pub segment_size: u64,
    /// Largest entry payload accepted.
    pub max_entry_bytes: usize,
    /// Initialize a new log if the directory holds none.
    pub create_if_missing: bool,
    /// Abort the process when fdatasync fails (otherwise the log is only poisoned).
    pub abort_on_sync_failure: bool,
    /// Bytes of the most recent writes kept in memory for reads (0: every read goes through
    /// the mapping).
    pub recent_window_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            create_if_missing: false,
            abort_on_sync_failure: true,
            recent_window_bytes: DEFAULT_RECENT_WINDOW_BYTES,
        }
    }
}

/// Bytes of the records that open every segment after the first: hard state and compaction.
const PREAMBLE_BYTES: u64 = (record_size(format::HARD_STATE_PAYLOAD_SIZE) + record_size(0)) as u64;

impl WalOptions {
    fn validate(&self) -> Result<()> {
        let size = self.segment_size;
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&size) || size % PAGE_SIZE != 0 {
            return Err(WalError::InvalidOptions(format!(
                "segment size {size} must be a multiple of {PAGE_SIZE} between \
                 {SEGMENT_SIZE_MIN} and {SEGMENT_SIZE_MAX}"
            )));
        }
        let room = size - RECORDS_START - PREAMBLE_BYTES - RECORD_HEADER_SIZE as u64 - 8;
        if self.max_entry_bytes as u64 > room {
            return Err(WalError::InvalidOptions(format!(
                "max entry size {} does not fit a segment of {size} bytes (at most {room})",
                self.max_entry_bytes
            )));
        }
        Ok(())
    }
}

/// File name of segment `sequence`.
pub fn segment_file_name(sequence: u64) -> String {
    format!("{sequence:020}.wal")
}

/// Sequence number of a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&sequence| sequence > 0)
}

fn prepared_file_name(sequence: u64) -> String {
    format!("{sequence:020}.wal.prep")
}

fn is_prepared_file_name(name: &str) -> bool {
    name.strip_suffix(".prep")
        .and_then(parse_segment_file_name)
        .is_some()
}
struct Segment<F> {
    sequence: u64,
    file: Rc<F>,
}

struct State<F> {
    index: LogIndex,
    segments: VecDeque<Segment<F>>,
    /// Durable end of the records in the active (last) segment.
    active_end: u64,
    /// Bytes `[align_down(active_end), active_end)` of the active segment: the page the next
    /// write rewrites, so reads of it are served from here, never from the mapping.
    tail_page: Bytes,
    prepared: Option<Rc<F>>,
    preparing: bool,
    staging: Batch,
    in_flight_ops: Vec<IndexOp>,
    /// Outcome of the batch being written, if any.
    in_flight_outcome: Option<Rc<BatchOutcome>>,
    speculative: Speculative,
    poisoned: Option<String>,
    /// Batches that failed (full disk) and took the speculative log back to the durable one.
    failed_batches: u64,
    write_buffer: Vec<u8>,
    /// The records of the most recent writes, oldest first, up to
    /// [`WalOptions::recent_window_bytes`]:
    /// reads of recent entries (applying them, replicating them) are served from here, so they
    /// never fault a page in from the disk on the log's core (direct writes leave nothing in
    /// the page cache).
    recent: VecDeque<RecentChunk>,
    recent_bytes: usize,
}

/// Records written to one segment by one write, as they are on disk.
struct RecentChunk {
    sequence: u64,
    /// Offset of `bytes[0]` in the segment.
    start: u64,
    bytes: Bytes,
}

/// Default bytes of recent writes the log keeps in memory for reads.
pub const DEFAULT_RECENT_WINDOW_BYTES: usize = 8 << 20;

/// The log. Single-core: share it between tasks of one executor with `Rc`.
pub struct Wal<D: LogDir> {
    dir: D,
    options: WalOptions,
    state: RefCell<State<D::File>>,
    flushing: Cell<bool>,
    /// Tasks waiting for a segment preparation in progress.
    prepared_waiters: RefCell<Vec<Waker>>,
    /// The `run_preparer` task, when it is idle.
    preparer_task: RefCell<Option<Waker>>,
    /// Set when the next segment should be prepared.
    preparer_wanted: Cell<bool>,
    /// Set when a roll is waiting for the segment being prepared: it stops pausing.
    preparation_urgent: Cell<bool>,
}

fn io_error(operation: &'static str, path: PathBuf, source: std::io::Error) -> WalError {
    if source.raw_os_error() == Some(libc::ENOSPC)
        || source.kind() == std::io::ErrorKind::StorageFull
    {
        WalError::NoSpace { operation, path }
    } else {
        WalError::Io {
            operation,
            path,
            source,
        }
    }
}

fn scan_error(path: PathBuf, fault: ScanFault) -> WalError {
    match fault {
        ScanFault::Header(format::HeaderFault::UnsupportedVersion(found)) => {
            WalError::UnsupportedVersion {
                path,
                found,
                supported: format::FORMAT_VERSION,
            }
        }
        ScanFault::Header(format::HeaderFault::BadMagic) => WalError::UnexpectedFile { path },
        fault => WalError::Corruption {
            path,
            offset: fault.offset(),
            reason: fault.to_string(),
        },
    }
}

impl<D: LogDir> Wal<D> {
    /// Opens the log in `dir`: scans every segment, verifies every checksum, rebuilds the index,
    /// clears a torn tail of the newest segment. Creates an empty log if the directory holds
    /// none and `options.create_if_missing` is set.
    pub async fn open(dir: D, options: WalOptions) -> Result<Wal<D>> {
        options.validate()?;
        let dir_path = dir.path().to_path_buf();
        let names = dir
            .list()
            .map_err(|source| io_error("listing", dir_path.clone(), source))?;
        let mut sequences = Vec::new();
        let mut prepared_files = Vec::new();
        for name in names {
            if let Some(sequence) = parse_segment_file_name(&name) {
                sequences.push(sequence);
            } else if is_prepared_file_name(&name) {
                prepared_files.push(name);
            } else if name != LOCK_FILE {
                return Err(WalError::UnexpectedFile {
                    path: dir_path.join(name),
                });
            }
        }
        sequences.sort_unstable();
        if sequences.is_empty() && !options.create_if_missing {
            return Err(WalError::NoLog { path: dir_path });
        }
        for pair in sequences.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(WalError::Corruption {
                    path: dir_path.join(segment_file_name(pair[0] + 1)),
                    offset: 0,
                    reason: format!(
                        "segment {} is missing between {} and {}",
                        pair[0] + 1,
                        pair[0],
                        pair[1]
                    ),
                });
            }
        }

        // Everything past this point may change the directory: the checks above did not.
        for name in &prepared_files {
            dir.remove(name)
                .await
                .map_err(|source| io_error("removing", dir_path.join(name), source))?;
        }
        if !prepared_files.is_empty() {
            dir.sync_dir()
                .await
                .map_err(|source| io_error("syncing", dir_path.clone(), source))?;
        }

        let wal_state = if sequences.is_empty() {
            Self::create_first_segment(&dir, &options).await?
        } else {
            Self::recover(&dir, &sequences).await?
        };
        let wal = Wal {
            dir,
            options,
            state: RefCell::new(wal_state),
            flushing: Cell::new(false),
            prepared_waiters: RefCell::new(Vec::new()),
            preparer_task: RefCell::new(None),
            preparer_wanted: Cell::new(false),
            preparation_urgent: Cell::new(false),
        };
        wal.want_preparation_when_due();
        Ok(wal)
    }

    async fn create_first_segment(dir: &D, options: &WalOptions) -> Result<State<D::File>> {
        let file = Self::prepare_file(dir, 1, options.segment_size, &|| false).await?;
        let path = dir.path().join(segment_file_name(1));
        dir.rename(&prepared_file_name(1), &segment_file_name(1))
            .await
            .map_err(|source| io_error("renaming", path.clone(), source))?;
        dir.sync_dir()
            .await
            .map_err(|source| io_error("syncing", dir.path().to_path_buf(), source))?;
        let mut segments = VecDeque::new();
        segments.push_back(Segment {
            sequence: 1,
            file: Rc::new(file),
        });
        Ok(Self::assemble(
            LogIndex::new(),
            segments,
            RECORDS_START,
            Bytes::new(),
        ))
    }

    async fn recover(dir: &D, sequences: &[u64]) -> Result<State<D::File>> {
        let mut index = LogIndex::for_replay();
        let mut segments = VecDeque::new();
        let mut active_end = RECORDS_START;
        let mut tail_page = Bytes::new();
        for (position, &sequence) in sequences.iter().enumerate() {
            let newest = position + 1 == sequences.len();
            let name = segment_file_name(sequence);
            let path = dir.path().join(&name);
            let file = dir
                .open_segment(&name)
                .await
                .map_err(|source| io_error("opening", path.clone(), source))?;
            let bytes = file
                .read_for_scan()
                .map_err(|source| io_error("mapping", path.clone(), source))?;
            let scan =
                scan_segment(&bytes, sequence, newest).map_err(|f| scan_error(path.clone(), f))?;
            replay_segment(&mut index, sequence, &scan, &bytes).map_err(|(offset, reason)| {
                WalError::Corruption {
                    path: path.clone(),
                    offset,
                    reason,
                }
            })?;
            if newest {
                active_end = scan.end;
                let page_start = align_down(scan.end, PAGE_SIZE);
                tail_page = Bytes::copy_from_slice(&bytes[page_start as usize..scan.end as usize]);
                if let SegmentEnd::TornTail {
                    at,
                    fault,
                    dirty_end,
                } = scan.tail
                {
                    tracing::warn!(
                        file = %path.display(),
                        offset = at,
                        %fault,
                        "clearing the torn tail of the newest segment"
                    );
                    let mut zeros = vec![0u8; (dirty_end - page_start) as usize];
                    zeros[..tail_page.len()].copy_from_slice(&tail_page);
                    drop(bytes);
                    file.write_at(&zeros, page_start).await.map_err(|source| {
                        io_error("clearing torn tail of", path.clone(), source)
                    })?;
                    file.sync_data()
                        .await
                        .map_err(|source| io_error("syncing", path.clone(), source))?;
                } else {
                    drop(bytes);
                }
                file.release_cache_from(page_start);
            }
            segments.push_back(Segment {
                sequence,
                file: Rc::new(file),
            });
        }
        index
            .finish_replay()
            .map_err(|fault| WalError::Corruption {
                path: dir.path().join(segment_file_name(sequences[0])),
                offset: RECORDS_START,
                reason: fault.to_string(),
            })?;
        Ok(Self::assemble(index, segments, active_end, tail_page))
    }

    fn assemble(
        index: LogIndex,
        segments: VecDeque<Segment<D::File>>,
        active_end: u64,
        tail_page: Bytes,
    ) -> State<D::File> {
        let active = segments.back().map_or(1, |segment| segment.sequence);
        let speculative = Speculative::of_durable(&index, active, active_end);
        State {
            index,
            segments,
            active_end,
            tail_page,
            prepared: None,
            preparing: false,
            staging: Batch::new(active, active_end),
            in_flight_ops: Vec::new(),
            in_flight_outcome: None,
            speculative,
            poisoned: None,
            failed_batches: 0,
            write_buffer: Vec::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
        }
    }

    /// Creates `NNN.wal.prep`: preallocated, every byte written once as zero (in chunks, with a
    /// pause after each while `pace()` says there is time), header written and synced.
    async fn prepare_file(
        dir: &D,
        sequence: u64,
        size: u64,
        pace: &dyn Fn() -> bool,
    ) -> Result<D::File> {
        let name = prepared_file_name(sequence);
        let path = dir.path().join(&name);
        let file = dir
            .create_segment(&name, size)
            .await
            .map_err(|source| io_error("creating segment", path.clone(), source))?;
        let mut offset = 0u64;
        while offset < size {
            let len = (io::BACKGROUND_WRITE_CHUNK as u64).min(size - offset) as usize;
            if let Err(source) = file.write_zeros(offset, len).await {
                let _ = dir.remove(&name).await;
                return Err(io_error("zero-filling segment", path, source));
            }
            offset += len as u64;
            if pace() {
                dir.pause_background().await;
            }
        }
        let mut page = vec![0u8; PAGE_SIZE as usize];
        SegmentHeader {
            sequence,
            segment_size: size,
        }
        .encode(&mut page);
        let written = async {
            file.write_at(&page, 0).await?;
            file.sync_data().await
        }
        .await;
        if let Err(source) = written {
            let _ = dir.remove(&name).await;
            return Err(io_error("writing segment header", path, source));
        }
        Ok(file)
    }

    // ----- reads -----

    /// First live index.
    pub fn first_index(&self) -> u64 {
        self.state.borrow().index.first_index()
    }

    /// Last durable index (`first_index() - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.state.borrow().index.last_index()
    }

    /// Term of a live entry or of the compaction point, without reading payloads.
    pub fn term(&self, index: u64) -> Result<u64> {
        let state = self.state.borrow();
        if let Some(term) = state.index.term(index) {
            return Ok(term);
        }
        if index < state.index.first_index() {
            Err(WalError::Compacted {
                index,
                first: state.index.first_index(),
            })
        } else {
            Err(WalError::Unavailable {
                index,
                last: state.index.last_index(),
            })
        }
    }

    /// The compaction point (index, term).
    pub fn compacted(&self) -> (u64, u64) {
        self.state.borrow().index.compacted()
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.state.borrow().index.hard_state()
    }

    /// Segment sequence numbers currently in the directory, oldest first.
    pub fn segments(&self) -> Vec<u64> {
        self.state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.sequence)
            .collect()
    }

    /// Entries `low..high`, stopping once their payloads exceed `max_bytes` (at least one entry
    /// is returned). Payloads are zero-copy views of the mapped segments.
    pub fn entries(&self, low: u64, high: u64, max_bytes: Option<u64>) -> Result<Vec<LogEntry>> {
        let state = self.state.borrow();
        let first = state.index.first_index();
        let last = state.index.last_index();
        if low < first {
            return Err(WalError::Compacted { index: low, first });
        }
        if high > last + 1 || low > high {
            return Err(WalError::Unavailable {
                index: high.saturating_sub(1).max(low),
                last,
            });
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut total = 0u64;
        for index in low..high {
            let Some(location) = state.index.location(index).copied() else {
                return Err(WalError::Unavailable { index, last });
            };
            total += u64::from(location.payload_len);
            if !out.is_empty() && max_bytes.is_some_and(|max| total > max) {
                break;
            }
            let payload = self.read_payload(&state, &location)?;
            out.push(LogEntry {
                index,
                term: location.term,
                kind: EntryKind::from_record(location.kind),
                payload,
            });
        }
        Ok(out)
    }

    fn read_payload(&self, state: &State<D::File>, location: &EntryLocation) -> Result<Bytes> {
        let start = u64::from(location.offset) + RECORD_HEADER_SIZE as u64;
        let len = location.payload_len as usize;
        let end = start + len as u64;
        // Newest first: recent entries are the ones read most.
        for chunk in state.recent.iter().rev() {
            if chunk.sequence == location.segment
                && chunk.start <= start
                && end <= chunk.start + chunk.bytes.len() as u64
            {
                let from = (start - chunk.start) as usize;
                return Ok(chunk.bytes.slice(from..from + len));
            }
            if (chunk.sequence, chunk.start) < (location.segment, start) {
                break;
            }
        }
        let front = state.segments.front().map_or(0, |s| s.sequence);
        let position = location
            .segment
            .checked_sub(front)
            .map_or(usize::MAX, |p| p as usize);
        let Some(segment) = state.segments.get(position) else {
            return Err(WalError::Poisoned(format!(
                "segment {} of a live entry is gone",
                location.segment
            )));
        };
        let active = position + 1 == state.segments.len();
        let stable_end = if active {
            align_down(state.active_end, PAGE_SIZE)
        } else {
            segment.file.size()
        };
        let path = || self.dir.path().join(segment_file_name(location.segment));
        if end <= stable_end {
            return segment
                .file
                .read_stable(start, len)
                .map_err(|source| io_error("reading", path(), source));
        }
        // The entry reaches into the page the next write rewrites: take that part from memory.
        let tail_start = stable_end;
        let from_tail = |from: u64, to: u64| {
            state
                .tail_page
                .slice((from - tail_start) as usize..(to - tail_start) as usize)
        };
        if start >= stable_end {
            return Ok(from_tail(start, end));
        }
        let head = segment
            .file
            .read_stable(start, (stable_end - start) as usize)
            .map_err(|source| io_error("reading", path(), source))?;
        let mut joined = BytesMut::with_capacity(len);
        joined.extend_from_slice(&head);
        joined.extend_from_slice(&from_tail(stable_end, end));
        Ok(joined.freeze())
    }
}

impl<D: LogDir> Drop for Wal<D> {
    fn drop(&mut self) {
        // Let an idle preparer task notice that the log is gone.
        if let Some(waker) = self.preparer_task.get_mut().take() {
            waker.wake();
        }
    }
}

impl WalError {
    /// True for a full disk.
    pub fn is_no_space(&self) -> bool {
        matches!(self, WalError::NoSpace { .. })
    }
}
