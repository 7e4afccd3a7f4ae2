//! lode's durable log: the Raft log and hard state, in segmented, preallocated, checksummed
//! files written with io_uring and read through memory maps.
//!
//! Layers (see ARCHITECTURE.md for the on-disk format and the reasoning):
//! - [`format`]: byte layout of segments and records (pure);
//! - [`index`]: where each live entry sits, the compaction point, the hard state (pure);
//! - [`recovery`]: what a segment's bytes mean after a crash (pure);
//! - [`io`]: the file seam and its glommio implementation; [`sim`]: the simulated disk;
//! - this module: [`Wal`], the group-committing writer and the reader;
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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};

use self::format::{
    align_down, align_up, encode_record, record_size, HardState, RecordHeader, RecordKind,
    SegmentHeader, PAGE_SIZE, RECORDS_START, RECORD_HEADER_SIZE, SEGMENT_SIZE_MAX,
    SEGMENT_SIZE_MIN,
};
use self::index::{check_term, EntryLocation, LogIndex, SequenceFault};
use self::io::{LogDir, SegmentFile, LOCK_FILE};
use self::recovery::{replay_segment, scan_segment, ScanFault, SegmentEnd};

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
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            create_if_missing: false,
            abort_on_sync_failure: true,
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

/// A change to the index that takes effect when its batch is durable.
#[derive(Clone, Copy, Debug)]
enum IndexOp {
    Entry { index: u64, location: EntryLocation },
    Truncate(u64),
    Compact { index: u64, term: u64 },
    HardState(HardState),
}

/// Records bound for one segment in one batch.
struct Chunk {
    sequence: u64,
    /// Offset where this chunk's records begin: the durable end of the segment before the
    /// write (the `batch_start` of every record in it).
    start: u64,
    bytes: Vec<u8>,
}

/// How a batch ended, shared by everyone waiting for it.
#[derive(Default)]
struct BatchOutcome {
    result: RefCell<Option<std::result::Result<(), FailureKind>>>,
    waiters: RefCell<Vec<Waker>>,
}

#[derive(Clone, Debug)]
enum FailureKind {
    NoSpace(PathBuf),
    Poisoned(String),
    SyncFailed(PathBuf, String),
}

impl FailureKind {
    fn to_error(&self) -> WalError {
        match self {
            FailureKind::NoSpace(path) => WalError::NoSpace {
                operation: "appending",
                path: path.clone(),
            },
            FailureKind::Poisoned(why) => WalError::Poisoned(why.clone()),
            FailureKind::SyncFailed(path, why) => WalError::SyncFailed {
                path: path.clone(),
                source: std::io::Error::other(why.clone()),
            },
        }
    }
}

impl BatchOutcome {
    fn finish(&self, result: std::result::Result<(), FailureKind>) {
        *self.result.borrow_mut() = Some(result);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    fn wake_all(&self) {
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// Records accepted but not yet durable.
struct Batch {
    chunks: Vec<Chunk>,
    ops: Vec<IndexOp>,
    outcome: Rc<BatchOutcome>,
}

impl Batch {
    fn new(sequence: u64, start: u64) -> Batch {
        Batch {
            chunks: vec![Chunk {
                sequence,
                start,
                bytes: Vec::new(),
            }],
            ops: Vec::new(),
            outcome: Rc::new(BatchOutcome::default()),
        }
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The log as it will be once everything accepted is durable: what new input is checked against.
#[derive(Clone, Copy, Debug)]
struct Speculative {
    first_index: u64,
    last_index: u64,
    last_term: u64,
    compacted_index: u64,
    compacted_term: u64,
    hard_state: HardState,
    /// Segment and offset where the next record goes.
    sequence: u64,
    end: u64,
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
    write_buffer: Vec<u8>,
}

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
        };
        wal.want_preparation_if_half_full();
        Ok(wal)
    }

    async fn create_first_segment(dir: &D, options: &WalOptions) -> Result<State<D::File>> {
        let file = Self::prepare_file(dir, 1, options.segment_size).await?;
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
        let (compacted_index, compacted_term) = index.compacted();
        let speculative = Speculative {
            first_index: index.first_index(),
            last_index: index.last_index(),
            last_term: index.last_term(),
            compacted_index,
            compacted_term,
            hard_state: index.hard_state(),
            sequence: active,
            end: active_end,
        };
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
            write_buffer: Vec::new(),
        }
    }

    /// Creates `NNN.wal.prep`, zero-filled, with its header written and synced.
    async fn prepare_file(dir: &D, sequence: u64, size: u64) -> Result<D::File> {
        let name = prepared_file_name(sequence);
        let path = dir.path().join(&name);
        let file = dir
            .create_segment(&name, size)
            .await
            .map_err(|source| io_error("creating segment", path.clone(), source))?;
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

    // ----- writes -----

    /// Appends entries (with an optional new hard state, stored atomically with them) and
    /// resolves once they are durable. Entries must be contiguous with non-decreasing terms; an
    /// entry at or below the last index replaces it and everything after it.
    pub async fn append(&self, entries: &[LogEntry], hard_state: Option<HardState>) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            self.stage_entries(&mut state, entries)?;
            if let Some(hard_state) = hard_state {
                self.stage_hard_state(&mut state, hard_state);
            }
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await
    }

    /// Stores a new hard state durably.
    pub async fn set_hard_state(&self, hard_state: HardState) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            self.stage_hard_state(&mut state, hard_state);
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await
    }

    /// Discards every entry with index >= `index` (a follower's conflicting suffix).
    pub async fn truncate_suffix(&self, index: u64) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            let spec = state.speculative;
            if index < spec.first_index {
                return Err(WalError::Compacted {
                    index,
                    first: spec.first_index,
                });
            }
            if index > spec.last_index {
                return Ok(());
            }
            let previous_term =
                Self::speculative_term(&state, index - 1).unwrap_or(spec.compacted_term);
            self.stage_record(&mut state, RecordKind::Truncate, 0, index, &[]);
            state.staging.ops.push(IndexOp::Truncate(index));
            state.speculative.last_index = index - 1;
            state.speculative.last_term = previous_term;
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await
    }

    /// Discards every entry with index <= `index` (covered by a snapshot) and removes the
    /// segments that then hold no live entry.
    pub async fn compact(&self, index: u64) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            let spec = state.speculative;
            if index <= spec.compacted_index {
                return Ok(());
            }
            if index > spec.last_index {
                return Err(WalError::Unavailable {
                    index,
                    last: spec.last_index,
                });
            }
            let term = Self::speculative_term(&state, index).ok_or(WalError::Unavailable {
                index,
                last: spec.last_index,
            })?;
            self.stage_compact(&mut state, index, term);
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await?;
        self.remove_dead_segments().await
    }

    /// Replaces the whole log with a snapshot point: every entry is discarded and the next entry
    /// is `index + 1`.
    pub async fn reset_to_snapshot(&self, index: u64, term: u64) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            let spec = state.speculative;
            if index <= spec.compacted_index {
                return Err(WalError::SnapshotOutOfDate {
                    index,
                    compacted: spec.compacted_index,
                });
            }
            if spec.last_index >= spec.first_index {
                self.stage_record(&mut state, RecordKind::Truncate, 0, spec.first_index, &[]);
                state.staging.ops.push(IndexOp::Truncate(spec.first_index));
            }
            state.speculative.last_index = spec.first_index - 1;
            self.stage_compact(&mut state, index, term);
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await?;
        self.remove_dead_segments().await
    }

    fn check_usable(state: &State<D::File>) -> Result<()> {
        match &state.poisoned {
            Some(why) => Err(WalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn stage_entries(&self, state: &mut State<D::File>, entries: &[LogEntry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let spec = state.speculative;
        if first.index <= spec.compacted_index {
            return Err(WalError::Compacted {
                index: first.index,
                first: spec.first_index,
            });
        }
        if first.index > spec.last_index + 1 {
            return Err(WalError::InvalidSequence(SequenceFault::Gap {
                expected: spec.last_index + 1,
                found: first.index,
            }));
        }
        let mut previous_term = if first.index == spec.last_index + 1 {
            spec.last_term
        } else {
            Self::speculative_term(state, first.index - 1).unwrap_or(spec.compacted_term)
        };
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != first.index + offset as u64 {
                return Err(WalError::InvalidSequence(SequenceFault::Gap {
                    expected: first.index + offset as u64,
                    found: entry.index,
                }));
            }
            check_term(entry.index, entry.term, previous_term)
                .map_err(WalError::InvalidSequence)?;
            previous_term = entry.term;
            if entry.payload.len() > self.options.max_entry_bytes {
                return Err(WalError::EntryTooLarge {
                    size: entry.payload.len(),
                    limit: self.options.max_entry_bytes,
                });
            }
        }
        if first.index <= spec.last_index {
            self.stage_record(state, RecordKind::Truncate, 0, first.index, &[]);
            state.staging.ops.push(IndexOp::Truncate(first.index));
        }
        for entry in entries {
            let kind = entry.kind.record_kind();
            let (segment, offset) =
                self.stage_record(state, kind, entry.term, entry.index, &entry.payload);
            state.staging.ops.push(IndexOp::Entry {
                index: entry.index,
                location: EntryLocation {
                    segment,
                    offset,
                    payload_len: entry.payload.len() as u32,
                    term: entry.term,
                    kind,
                },
            });
        }
        let last = &entries[entries.len() - 1];
        state.speculative.last_index = last.index;
        state.speculative.last_term = last.term;
        Ok(())
    }

    fn stage_hard_state(&self, state: &mut State<D::File>, hard_state: HardState) {
        self.stage_record(state, RecordKind::HardState, 0, 0, &hard_state.to_payload());
        state.staging.ops.push(IndexOp::HardState(hard_state));
        state.speculative.hard_state = hard_state;
    }

    fn stage_compact(&self, state: &mut State<D::File>, index: u64, term: u64) {
        self.stage_record(state, RecordKind::Compact, term, index, &[]);
        state.staging.ops.push(IndexOp::Compact { index, term });
        let spec = &mut state.speculative;
        spec.compacted_index = index;
        spec.compacted_term = term;
        spec.first_index = spec.first_index.max(index + 1);
        if spec.last_index < index {
            spec.last_index = index;
            spec.last_term = term;
        }
    }

    /// Term of `index` in the speculative log: staged and in-flight operations, then the index.
    fn speculative_term(state: &State<D::File>, index: u64) -> Option<u64> {
        let mut cut = u64::MAX;
        for op in state
            .staging
            .ops
            .iter()
            .rev()
            .chain(state.in_flight_ops.iter().rev())
        {
            match *op {
                IndexOp::Truncate(at) => cut = cut.min(at),
                IndexOp::Entry {
                    index: at,
                    location,
                } if at == index && at < cut => {
                    return Some(location.term);
                }
                IndexOp::Compact { index: at, term } if at == index => return Some(term),
                IndexOp::Compact { index: at, .. } if at > index => return None,
                _ => {}
            }
        }
        if index >= cut {
            return None;
        }
        state.index.term(index)
    }

    /// Encodes one record into the staging batch, opening the next segment's chunk when it does
    /// not fit in the current one. Returns where the record will sit.
    fn stage_record(
        &self,
        state: &mut State<D::File>,
        kind: RecordKind,
        term: u64,
        index: u64,
        payload: &[u8],
    ) -> (u64, u32) {
        let size = record_size(payload.len()) as u64;
        let segment_size = self.segment_size_of(state, state.speculative.sequence);
        if state.speculative.end + size > segment_size {
            let sequence = state.speculative.sequence + 1;
            state.staging.chunks.push(Chunk {
                sequence,
                start: RECORDS_START,
                bytes: Vec::new(),
            });
            state.speculative.sequence = sequence;
            state.speculative.end = RECORDS_START;
            // Every segment opens with the state in force, so older segments can be removed.
            let spec = state.speculative;
            self.encode_into_staging(
                state,
                RecordKind::HardState,
                0,
                0,
                &spec.hard_state.to_payload(),
            );
            self.encode_into_staging(
                state,
                RecordKind::Compact,
                spec.compacted_term,
                spec.compacted_index,
                &[],
            );
            // WalOptions::validate bounds entries so that one always fits after the preamble.
            assert!(state.speculative.end + size <= self.options.segment_size);
        }
        let location = (state.speculative.sequence, state.speculative.end as u32);
        self.encode_into_staging(state, kind, term, index, payload);
        location
    }

    fn encode_into_staging(
        &self,
        state: &mut State<D::File>,
        kind: RecordKind,
        term: u64,
        index: u64,
        payload: &[u8],
    ) {
        let Some(chunk) = state.staging.chunks.last_mut() else {
            unreachable!("a batch always has a chunk");
        };
        let header = RecordHeader {
            kind,
            term,
            index,
            payload_len: payload.len() as u32,
            batch_start: chunk.start as u32,
        };
        let at = chunk.bytes.len();
        chunk.bytes.resize(at + record_size(payload.len()), 0);
        encode_record(&mut chunk.bytes[at..], chunk.sequence, &header, payload);
        state.speculative.end += record_size(payload.len()) as u64;
    }

    fn segment_size_of(&self, state: &State<D::File>, sequence: u64) -> u64 {
        state
            .segments
            .back()
            .filter(|segment| segment.sequence == sequence)
            .map_or(self.options.segment_size, |segment| segment.file.size())
    }

    /// Waits until the batch with `outcome` is durable, flushing batches itself whenever no
    /// one else is: every operation that arrives during a write+sync joins the next one.
    async fn wait_durable(&self, outcome: Rc<BatchOutcome>) -> Result<()> {
        loop {
            if let Some(result) = outcome.result.borrow().as_ref() {
                return result.clone().map_err(|failure| failure.to_error());
            }
            if !self.flushing.get() {
                Self::check_usable(&self.state.borrow())?;
                self.flushing.set(true);
                let guard = FlushGuard { wal: self };
                self.flush_staged().await;
                drop(guard);
                continue;
            }
            poll_fn(|cx| {
                if outcome.result.borrow().is_some() || !self.flushing.get() {
                    Poll::Ready(())
                } else {
                    outcome.waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Writes and syncs the staging batch, then publishes it.
    async fn flush_staged(&self) {
        let (chunks, outcome, mut buffer) = {
            let mut state = self.state.borrow_mut();
            if state.staging.is_empty() {
                return;
            }
            let (sequence, end) = (state.speculative.sequence, state.speculative.end);
            let batch = std::mem::replace(&mut state.staging, Batch::new(sequence, end));
            state.in_flight_ops = batch.ops;
            state.in_flight_outcome = Some(batch.outcome.clone());
            let buffer = std::mem::take(&mut state.write_buffer);
            (batch.chunks, batch.outcome, buffer)
        };
        let result = self.write_chunks(&chunks, &mut buffer).await;
        let mut state = self.state.borrow_mut();
        state.write_buffer = buffer;
        let ops = std::mem::take(&mut state.in_flight_ops);
        state.in_flight_outcome = None;
        match result {
            Ok(()) => {
                for op in ops {
                    let applied = match op {
                        IndexOp::Entry { index, location } => {
                            state.index.apply_entry(index, location)
                        }
                        IndexOp::Truncate(index) => state.index.apply_truncate(index),
                        IndexOp::Compact { index, term } => state.index.apply_compact(index, term),
                        IndexOp::HardState(hard_state) => {
                            state.index.apply_hard_state(hard_state);
                            Ok(())
                        }
                    };
                    // Staging checked these against the speculative log; a failure here is a bug.
                    assert!(
                        applied.is_ok(),
                        "durable batch broke the index: {applied:?}"
                    );
                }
                outcome.finish(Ok(()));
                drop(state);
                self.want_preparation_if_half_full();
            }
            Err(failure) => {
                // Nothing of this batch became durable, and what was staged after it depends on
                // it: fail both and fall back to the durable state.
                match &failure {
                    FailureKind::NoSpace(_) => {}
                    FailureKind::SyncFailed(path, why) => {
                        state.poisoned.get_or_insert_with(|| {
                            format!("fdatasync of {} failed: {why}", path.display())
                        });
                    }
                    FailureKind::Poisoned(why) => {
                        state.poisoned.get_or_insert_with(|| why.clone());
                    }
                }
                let active = state.segments.back().map_or(1, |s| s.sequence);
                let active_end = state.active_end;
                let staged = std::mem::replace(&mut state.staging, Batch::new(active, active_end));
                let (compacted_index, compacted_term) = state.index.compacted();
                state.speculative = Speculative {
                    first_index: state.index.first_index(),
                    last_index: state.index.last_index(),
                    last_term: state.index.last_term(),
                    compacted_index,
                    compacted_term,
                    hard_state: state.index.hard_state(),
                    sequence: active,
                    end: active_end,
                };
                drop(state);
                outcome.finish(Err(failure.clone()));
                staged.outcome.finish(Err(failure));
            }
        }
    }

    /// Writes the chunks of one batch, each followed by fdatasync, rolling segments between.
    async fn write_chunks(
        &self,
        chunks: &[Chunk],
        buffer: &mut Vec<u8>,
    ) -> std::result::Result<(), FailureKind> {
        if chunks.len() > 1 {
            // Make sure the next segment exists before writing anything, so a full disk fails
            // the batch with nothing written.
            self.ensure_prepared().await?;
        }
        for (position, chunk) in chunks.iter().enumerate() {
            if position > 0 {
                self.roll_segment(chunk.sequence).await?;
                if position + 1 < chunks.len() {
                    self.ensure_prepared().await?;
                }
            }
            if chunk.bytes.is_empty() {
                continue;
            }
            let (file, write_start) = {
                let state = self.state.borrow();
                debug_assert_eq!(state.active_end, chunk.start);
                let Some(active) = state.segments.back() else {
                    return Err(FailureKind::Poisoned("no active segment".into()));
                };
                debug_assert_eq!(active.sequence, chunk.sequence);
                buffer.clear();
                buffer.extend_from_slice(&state.tail_page);
                buffer.extend_from_slice(&chunk.bytes);
                (active.file.clone(), align_down(state.active_end, PAGE_SIZE))
            };
            let end = chunk.start + chunk.bytes.len() as u64;
            buffer.resize(align_up(buffer.len() as u64, PAGE_SIZE) as usize, 0);
            let path = || self.dir.path().join(segment_file_name(chunk.sequence));
            if let Err(error) = file.write_at(buffer, write_start).await {
                return Err(if io_error("writing", path(), error).is_no_space() {
                    FailureKind::NoSpace(path())
                } else {
                    FailureKind::Poisoned(format!("write to {} failed", path().display()))
                });
            }
            if let Err(error) = file.sync_data().await {
                tracing::error!(file = %path().display(), %error, "fdatasync failed");
                if self.options.abort_on_sync_failure {
                    eprintln!(
                        "lode: fdatasync of {} failed ({error}); aborting: retrying a failed \
                         fsync is unsafe",
                        path().display()
                    );
                    std::process::abort();
                }
                return Err(FailureKind::SyncFailed(path(), error.to_string()));
            }
            let mut state = self.state.borrow_mut();
            state.active_end = end;
            let page_start = align_down(end, PAGE_SIZE);
            let from = (page_start - write_start) as usize;
            state.tail_page = Bytes::copy_from_slice(&buffer[from..(end - write_start) as usize]);
        }
        Ok(())
    }

    /// Makes the prepared segment the active one, durably.
    async fn roll_segment(&self, sequence: u64) -> std::result::Result<(), FailureKind> {
        let prepared = self.state.borrow_mut().prepared.take();
        let Some(file) = prepared else {
            return Err(FailureKind::Poisoned(
                "no prepared segment to roll to".into(),
            ));
        };
        let name = segment_file_name(sequence);
        let path = self.dir.path().join(&name);
        let renamed = async {
            self.dir
                .rename(&prepared_file_name(sequence), &name)
                .await?;
            self.dir.sync_dir().await
        }
        .await;
        if let Err(error) = renamed {
            return Err(FailureKind::Poisoned(format!(
                "rolling to {} failed: {error}",
                path.display()
            )));
        }
        let mut state = self.state.borrow_mut();
        state.segments.push_back(Segment { sequence, file });
        state.active_end = RECORDS_START;
        state.tail_page = Bytes::new();
        Ok(())
    }

    /// Prepares the segment after the active one unless it exists.
    async fn ensure_prepared(&self) -> std::result::Result<(), FailureKind> {
        match self.prepare_next_segment().await {
            Ok(()) => Ok(()),
            Err(WalError::NoSpace { path, .. }) => Err(FailureKind::NoSpace(path)),
            Err(error) => Err(FailureKind::Poisoned(error.to_string())),
        }
    }

    /// Creates the next segment ahead of need (zero-filled, header synced) unless it exists.
    /// Running this off the commit path keeps segment rolls cheap.
    pub async fn prepare_next_segment(&self) -> Result<()> {
        loop {
            let sequence = {
                let mut state = self.state.borrow_mut();
                if state.prepared.is_some() {
                    return Ok(());
                }
                if state.preparing {
                    None
                } else {
                    state.preparing = true;
                    Some(state.segments.back().map_or(1, |s| s.sequence) + 1)
                }
            };
            let Some(sequence) = sequence else {
                // Another task is creating it: wait for that to finish, then look again.
                poll_fn(|cx| {
                    if self.state.borrow().preparing {
                        self.prepared_waiters.borrow_mut().push(cx.waker().clone());
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                continue;
            };
            let prepared = Self::prepare_file(&self.dir, sequence, self.options.segment_size).await;
            let mut state = self.state.borrow_mut();
            state.preparing = false;
            let result = prepared.map(|file| state.prepared = Some(Rc::new(file)));
            drop(state);
            for waker in self.prepared_waiters.borrow_mut().drain(..) {
                waker.wake();
            }
            return result;
        }
    }

    /// Keeps the next segment prepared (created once the active one is half full) until the log
    /// is dropped or poisoned. Spawn it on the log's executor, in a background task queue;
    /// without it, segments are prepared inline when a roll needs one. It holds the log only
    /// while it works, so dropping the last `Rc` closes the log and ends the task.
    pub async fn run_preparer(wal: std::rc::Weak<Wal<D>>) {
        loop {
            {
                let Some(strong) = wal.upgrade() else { return };
                if strong.state.borrow().poisoned.is_some() {
                    return;
                }
                if strong.preparer_wanted.replace(false) {
                    if let Err(error) = strong.prepare_next_segment().await {
                        tracing::warn!(%error, "could not prepare the next log segment");
                    }
                }
            }
            let alive = poll_fn(|cx| {
                let Some(strong) = wal.upgrade() else {
                    return Poll::Ready(false);
                };
                if strong.preparer_wanted.get() {
                    Poll::Ready(true)
                } else {
                    *strong.preparer_task.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            if !alive {
                return;
            }
        }
    }

    fn want_preparation_if_half_full(&self) {
        let state = self.state.borrow();
        let half_full = state
            .segments
            .back()
            .is_some_and(|active| state.active_end > active.file.size() / 2);
        if half_full && state.prepared.is_none() && !state.preparing {
            drop(state);
            self.preparer_wanted.set(true);
            if let Some(waker) = self.preparer_task.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Removes the oldest segments that hold no live entry (never the active one).
    async fn remove_dead_segments(&self) -> Result<()> {
        let doomed: Vec<u64> = {
            let state = self.state.borrow();
            let active = state.segments.back().map_or(0, |s| s.sequence);
            let keep_from = state.index.first_segment().unwrap_or(active).min(active);
            state
                .segments
                .iter()
                .map(|segment| segment.sequence)
                .take_while(|&sequence| sequence < keep_from)
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for &sequence in &doomed {
            let name = segment_file_name(sequence);
            self.dir
                .remove(&name)
                .await
                .map_err(|source| io_error("removing", self.dir.path().join(&name), source))?;
            let mut state = self.state.borrow_mut();
            if state
                .segments
                .front()
                .is_some_and(|s| s.sequence == sequence)
            {
                state.segments.pop_front();
            }
        }
        self.dir
            .sync_dir()
            .await
            .map_err(|source| io_error("syncing", self.dir.path().to_path_buf(), source))
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

/// Ends a flush: clears the flushing flag and wakes the next batch's waiters, one of which
/// takes over. If the flushing future was dropped midway, the log's state on disk is unknown:
/// the batch fails and the log is poisoned.
struct FlushGuard<'a, D: LogDir> {
    wal: &'a Wal<D>,
}

impl<D: LogDir> Drop for FlushGuard<'_, D> {
    fn drop(&mut self) {
        let wal = self.wal;
        wal.flushing.set(false);
        let Ok(mut state) = wal.state.try_borrow_mut() else {
            return;
        };
        if let Some(abandoned) = state.in_flight_outcome.take() {
            let why = "a flush was abandoned midway".to_string();
            state.poisoned.get_or_insert_with(|| why.clone());
            state.in_flight_ops.clear();
            drop(state);
            abandoned.finish(Err(FailureKind::Poisoned(why)));
            let Ok(state) = wal.state.try_borrow() else {
                return;
            };
            let next = state.staging.outcome.clone();
            drop(state);
            next.wake_all();
            return;
        }
        let next = state.staging.outcome.clone();
        drop(state);
        next.wake_all();
    }
}
