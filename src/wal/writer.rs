//! The writing half of [`Wal`]: validation against the speculative log, staging, group commit,
//! segment rolls and preparation, compaction's segment removal.
//!
//! Flow of one batch:
//!
//! ```text
//!  append/truncate/compact/...      (any task on the log's core)
//!    | validate against Speculative; encode records into staging chunks
//!    v
//!  staging Batch --- first waiter finding no flush in progress becomes the flusher
//!    | take the batch (new work now stages into the next one)
//!    v
//!  write_chunks: per chunk  [roll: rename prepared segment, fsync dir]
//!                           write from the durable end's page, made durable
//!                           (`write_and_sync`: one RWF_DSYNC write on a real disk)
//!    v
//!  apply IndexOps to the durable LogIndex, finish the BatchOutcome, wake the next batch
//! ```
//!
//! Invariant: at most one flush runs at a time (`Wal::flushing`), so writes to a segment are
//! strictly write, sync, write, sync: the property recovery's torn-tail rule relies on.

use std::cell::RefCell;
use std::future::poll_fn;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::format::{
    align_down, align_up, encode_record, record_size, HardState, RecordHeader, RecordKind,
    PAGE_SIZE, RECORDS_START,
};
use super::index::{check_term, EntryLocation, LogIndex, SequenceFault};
use super::io::{LogDir, SegmentFile, WriteSyncError};
use super::{
    io_error, prepared_file_name, segment_file_name, LogEntry, RecentChunk, Result, Segment, State,
    Wal, WalError,
};

/// A change to the index that takes effect when its batch is durable.
#[derive(Clone, Copy, Debug)]
pub(super) enum IndexOp {
    Entry { index: u64, location: EntryLocation },
    Truncate(u64),
    Compact { index: u64, term: u64 },
    HardState(HardState),
}

/// Records bound for one segment in one batch.
pub(super) struct Chunk {
    sequence: u64,
    /// Offset where this chunk's records begin: the durable end of the segment before the
    /// write (the `batch_start` of every record in it).
    start: u64,
    bytes: Vec<u8>,
}

/// How a batch ended, shared by everyone waiting for it.
#[derive(Default)]
pub(super) struct BatchOutcome {
    result: RefCell<Option<std::result::Result<(), FailureKind>>>,
    waiters: RefCell<Vec<Waker>>,
}

#[derive(Clone, Debug)]
pub(super) enum FailureKind {
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
pub(super) struct Batch {
    chunks: Vec<Chunk>,
    ops: Vec<IndexOp>,
    outcome: Rc<BatchOutcome>,
}

impl Batch {
    pub(super) fn new(sequence: u64, start: u64) -> Batch {
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
pub(super) struct Speculative {
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

impl Speculative {
    /// The speculative log when nothing is staged or in flight: the durable one, with the next
    /// record going to `end` of segment `sequence`.
    pub(super) fn of_durable(index: &LogIndex, sequence: u64, end: u64) -> Speculative {
        let (compacted_index, compacted_term) = index.compacted();
        Speculative {
            first_index: index.first_index(),
            last_index: index.last_index(),
            last_term: index.last_term(),
            compacted_index,
            compacted_term,
            hard_state: index.hard_state(),
            sequence,
            end,
        }
    }
}

/// An append staged by [`Wal::stage_append`], not yet known durable.
pub struct StagedAppend(Rc<BatchOutcome>);

impl<D: LogDir> Wal<D> {
    // ----- writes -----

    /// Appends entries (with an optional new hard state, stored atomically with them) and
    /// resolves once they are durable. Entries must be contiguous with non-decreasing terms; an
    /// entry at or below the last index replaces it and everything after it.
    pub async fn append(&self, entries: &[LogEntry], hard_state: Option<HardState>) -> Result<()> {
        self.submit(|state| {
            self.stage_entries(state, entries)?;
            if let Some(hard_state) = hard_state {
                self.stage_hard_state(state, hard_state);
            }
            Ok(true)
        })
        .await
    }

    /// Stages an append like [`Wal::append`] at once (appends are ordered by this call) and
    /// returns what [`Wal::wait_staged`] waits on until it is durable; `None` when there was
    /// nothing to write. Reads do not see the entries before they are durable.
    pub fn stage_append(
        &self,
        entries: &[LogEntry],
        hard_state: Option<HardState>,
    ) -> Result<Option<StagedAppend>> {
        let mut state = self.state.borrow_mut();
        Self::check_usable(&state)?;
        if entries.is_empty() && hard_state.is_none() {
            return Ok(None);
        }
        self.stage_entries(&mut state, entries)?;
        if let Some(hard_state) = hard_state {
            self.stage_hard_state(&mut state, hard_state);
        }
        Ok(Some(StagedAppend(state.staging.outcome.clone())))
    }

    /// How many batches have failed (full disk) so far, each taking the speculative log back
    /// to the durable one: an append staged after a failure does not follow what was staged
    /// before it, so a caller staging in order checks this first.
    pub fn failed_batches(&self) -> u64 {
        self.state.borrow().failed_batches
    }

    /// Resolves once a staged append is durable (flushing batches itself when no one else is).
    pub async fn wait_staged(&self, staged: StagedAppend) -> Result<()> {
        self.wait_durable(staged.0).await
    }

    /// Stores a new hard state durably.
    pub async fn set_hard_state(&self, hard_state: HardState) -> Result<()> {
        self.submit(|state| {
            self.stage_hard_state(state, hard_state);
            Ok(true)
        })
        .await
    }

    /// Discards every entry with index >= `index` (a follower's conflicting suffix).
    pub async fn truncate_suffix(&self, index: u64) -> Result<()> {
        self.submit(|state| {
            let spec = state.speculative;
            if index < spec.first_index {
                return Err(WalError::Compacted {
                    index,
                    first: spec.first_index,
                });
            }
            if index > spec.last_index {
                return Ok(false);
            }
            let previous_term =
                Self::speculative_term(state, index - 1).unwrap_or(spec.compacted_term);
            self.stage_record(state, RecordKind::Truncate, 0, index, &[]);
            state.staging.ops.push(IndexOp::Truncate(index));
            state.speculative.last_index = index - 1;
            state.speculative.last_term = previous_term;
            Ok(true)
        })
        .await
    }

    /// Discards every entry with index <= `index` (covered by a snapshot) and removes the
    /// segments that then hold no live entry.
    pub async fn compact(&self, index: u64) -> Result<()> {
        self.submit(|state| {
            let spec = state.speculative;
            if index <= spec.compacted_index {
                return Ok(false);
            }
            let unavailable = WalError::Unavailable {
                index,
                last: spec.last_index,
            };
            if index > spec.last_index {
                return Err(unavailable);
            }
            let term = Self::speculative_term(state, index).ok_or(unavailable)?;
            self.stage_compact(state, index, term);
            Ok(true)
        })
        .await?;
        self.remove_dead_segments().await
    }

    /// Replaces the whole log with a snapshot point: every entry is discarded and the next entry
    /// is `index + 1`.
    pub async fn reset_to_snapshot(&self, index: u64, term: u64) -> Result<()> {
        self.submit(|state| {
            let spec = state.speculative;
            if index <= spec.compacted_index {
                return Err(WalError::SnapshotOutOfDate {
                    index,
                    compacted: spec.compacted_index,
                });
            }
            if spec.last_index >= spec.first_index {
                self.stage_record(state, RecordKind::Truncate, 0, spec.first_index, &[]);
                state.staging.ops.push(IndexOp::Truncate(spec.first_index));
            }
            state.speculative.last_index = spec.first_index - 1;
            self.stage_compact(state, index, term);
            Ok(true)
        })
        .await?;
        self.remove_dead_segments().await
    }

    /// Stages records under one borrow of the state, then waits until they are durable.
    /// `stage` validates first and stages nothing on error; `Ok(false)` means nothing to write.
    async fn submit(&self, stage: impl FnOnce(&mut State<D::File>) -> Result<bool>) -> Result<()> {
        let outcome = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if !stage(&mut state)? {
                return Ok(());
            }
            state.staging.outcome.clone()
        };
        self.wait_durable(outcome).await
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
        let result = self.write_chunks(chunks, &mut buffer).await;
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
                self.want_preparation_when_due();
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
                state.speculative = Speculative::of_durable(&state.index, active, active_end);
                state.failed_batches += 1;
                drop(state);
                outcome.finish(Err(failure.clone()));
                staged.outcome.finish(Err(failure));
            }
        }
    }

    /// Writes the chunks of one batch, each made durable (`write_and_sync`), rolling segments
    /// between.
    async fn write_chunks(
        &self,
        chunks: Vec<Chunk>,
        buffer: &mut Vec<u8>,
    ) -> std::result::Result<(), FailureKind> {
        let count = chunks.len();
        if chunks.len() > 1 {
            // Make sure the next segment exists before writing anything, so a full disk fails
            // the batch with nothing written.
            self.ensure_prepared().await?;
        }
        for (position, chunk) in chunks.into_iter().enumerate() {
            if position > 0 {
                self.roll_segment(chunk.sequence).await?;
                if position + 1 < count {
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
            match file.write_and_sync(buffer, write_start).await {
                Ok(()) => {}
                Err(WriteSyncError::Write(error)) => {
                    return Err(if io_error("writing", path(), error).is_no_space() {
                        FailureKind::NoSpace(path())
                    } else {
                        FailureKind::Poisoned(format!("write to {} failed", path().display()))
                    });
                }
                Err(WriteSyncError::Sync(error)) => {
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
            }
            let mut state = self.state.borrow_mut();
            state.active_end = end;
            let page_start = align_down(end, PAGE_SIZE);
            let from = (page_start - write_start) as usize;
            state.tail_page = Bytes::copy_from_slice(&buffer[from..(end - write_start) as usize]);
            state.recent_bytes += chunk.bytes.len();
            state.recent.push_back(RecentChunk {
                sequence: chunk.sequence,
                start: chunk.start,
                bytes: Bytes::from(chunk.bytes),
            });
            while state.recent_bytes > self.options.recent_window_bytes {
                if let Some(oldest) = state.recent.pop_front() {
                    state.recent_bytes -= oldest.bytes.len();
                }
            }
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
        self.preparation_urgent.set(true);
        let prepared = self.prepare_next_segment().await;
        self.preparation_urgent.set(false);
        match prepared {
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
            // Paced while the active segment has room and no roll waits for this one.
            let pace = || {
                let state = self.state.borrow();
                let room = state
                    .segments
                    .back()
                    .is_some_and(|active| state.active_end < active.file.size() / 4 * 3);
                room && !self.preparation_urgent.get()
            };
            let prepared =
                Self::prepare_file(&self.dir, sequence, self.options.segment_size, &pace).await;
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

    /// Keeps the next segment prepared (created once the active one is an eighth full) until the log
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

    pub(super) fn want_preparation_when_due(&self) {
        let state = self.state.borrow();
        // An eighth in: an idle log does not take a second segment's space at once, and the
        // paced preparation (over a second for 64 MiB) is done well before a busy log needs it.
        let due = state
            .segments
            .back()
            .is_some_and(|active| state.active_end > active.file.size() / 8);
        if due && state.prepared.is_none() && !state.preparing {
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
            match self.dir.remove(&name).await {
                Ok(()) => {}
                // A concurrent compaction removed it first.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(io_error("removing", self.dir.path().join(&name), source));
                }
            }
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
