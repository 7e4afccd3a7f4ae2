//! The sequencer's decisions, pure: turns committed write requests, in log order, into
//! revisions and per-shard writes. The threaded server (`consensus::sequencer`) delivers what
//! it decides to the cores; [`ShardedKv`](super::ShardedKv) applies it to shards in one place
//! (the reference model and the simulator). Neither decides anything on its own.
//!
//! ```text
//!   request ──plan──▶ Ready(Decided) ──────────────────────────────┐ put without options,
//!              │                                                   │ compaction, lease change
//!              └────▶ NeedsReads(read set) ─(shards answer)─▶ evaluate
//!                                                                  │
//!           Decided { writes ─▶ delivered to their shards,  settle ─▶ Sequence::settle }
//!                                                                  │
//!                                          revision, leases move; the client's answer
//! ```
//!
//! Planning changes nothing; a decision takes effect in `settle`, called once its writes are
//! delivered. So whoever reads the sequence meanwhile (a snapshot, a lease query) sees the
//! state before the write, never a revision its shards do not hold yet.
//!
//! - An unconditional put (no prev_kv, no ignore flags, no lease) gets the next revision at
//!   once and goes to its shard, which computes version and create revision itself: no round
//!   trip to read anything.
//! - Anything else is evaluated by [`exec`] against the pairs it reads, prefetched from the
//!   shards that own them (each answers after applying every write sent to it before).
//! - A lease change deletes the keys of the leases it ends in one revision, then changes the
//!   leases; every change attaches its key to the lease of its new pair (or detaches it), so
//!   each lease's key set is exact in log order.
//!
//! Invariants (asserted in `settle`): the revision only grows, by one per request that changes
//! something; the compaction point only grows; a request refused changes nothing; the
//! published watermark never passes the current revision.

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;

use super::error::KvError;
use super::exec::{self, Change, ReadView};
use super::kv::{KeyRange, KeyValue};
use super::request::{
    CompactionResponse, LeaseResponse, PutResponse, RequestOp, ResponseHeader, TxnRequest,
    WriteRequest, WriteResponse,
};
use super::validate;
use crate::ids::Revision;
use crate::lease::Lessor;

/// The shard that owns `key` among `shard_count` shards. Stable across restarts and versions:
/// it decides where a key's history lives.
pub fn shard_for_key(key: &[u8], shard_count: usize) -> usize {
    (crc32c::crc32c(key) as usize) % shard_count.max(1)
}

/// What one shard applies, in the order the sequencer hands them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardWrite {
    /// An unconditional put: the shard computes the pair's version and create revision.
    Put {
        revision: Revision,
        key: Bytes,
        value: Bytes,
        lease: i64,
    },
    /// A write's changes owned by this shard: (sub revision, key, pair or `None` to delete).
    Changes {
        revision: Revision,
        changes: Vec<(i64, Bytes, Option<KeyValue>)>,
    },
    /// Drop history below this revision.
    Compact(Revision),
}

/// A decided write: what each shard applies (by shard number, in order), and what the
/// sequence settles to once they have it.
#[derive(Debug)]
pub struct Decided {
    pub writes: Vec<(usize, ShardWrite)>,
    pub settle: Settle,
}

/// The sequence's change for a decided write, made by [`Sequence::settle`] after the shards
/// have its writes: until then everyone reading the sequence (a snapshot, a lease query) sees
/// the state before the write, never a revision the shards do not hold yet.
#[derive(Debug)]
pub struct Settle {
    /// The write's revision, when it changes keys (always the current one plus one).
    revision: Option<Revision>,
    /// Keys joining (lease ≠ 0) or leaving (0) leases with it.
    attachments: Vec<(Bytes, i64)>,
    /// A new compaction point.
    compacted: Option<Revision>,
    /// The client's answer.
    answer: Answer,
}

/// Where a decided write's answer comes from.
#[derive(Debug)]
enum Answer {
    /// Known when it was decided.
    Decided(WriteResponse),
    /// A lease change's outcome, made as it is applied at this lease time.
    LeaseChangeAt(Duration),
}

/// What the sequencer needs to decide a request.
#[derive(Debug)]
pub enum Plan {
    /// Decided already.
    Ready(Decided),
    /// Its pairs must be read first: every (range, revision) listed, answered by
    /// [`Sequence::evaluate`].
    NeedsReads(Vec<(KeyRange, i64)>),
}

/// The pairs read for a conditional write, per (range, revision), each sorted by key.
pub type Prefetched = Vec<((KeyRange, i64), Vec<KeyValue>)>;

/// The revision counter, compaction point and leases of a keyspace, and the rules that move
/// them.
#[derive(Clone, Debug)]
pub struct Sequence {
    shard_count: usize,
    max_txn_ops: usize,
    current: Revision,
    compacted: Revision,
    published: Revision,
    leases: Lessor,
}

impl Sequence {
    /// An empty keyspace (revision 1) over `shard_count` shards.
    pub fn new(shard_count: usize, max_txn_ops: usize) -> Sequence {
        Sequence {
            shard_count: shard_count.max(1),
            max_txn_ops,
            current: Revision::new(1),
            compacted: Revision::new(-1),
            published: Revision::new(1),
            leases: Lessor::new(),
        }
    }

    /// The revision of the last settled write.
    pub fn current_revision(&self) -> Revision {
        self.current
    }

    /// The compaction point (-1 before any).
    pub fn compact_revision(&self) -> Revision {
        self.compacted
    }

    /// The leases as settled.
    pub fn leases(&self) -> &Lessor {
        &self.leases
    }

    /// The leases, for changes that are not log entries (renewal time after a promotion,
    /// restoring a snapshot).
    pub fn leases_mut(&mut self) -> &mut Lessor {
        &mut self.leases
    }

    /// Sets the most operations a txn may hold (etcd's `--max-txn-ops`), which every later
    /// [`Sequence::plan`] checks requests against.
    pub fn set_max_txn_ops(&mut self, max_txn_ops: usize) {
        self.max_txn_ops = max_txn_ops;
    }

    /// The shard that owns `key`.
    pub fn owner(&self, key: &[u8]) -> usize {
        shard_for_key(key, self.shard_count)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// Continues from a loaded snapshot.
    pub fn restore(&mut self, revision: Revision, compact_revision: Revision) {
        self.current = revision;
        self.published = revision;
        self.compacted = compact_revision;
    }

    /// The revision every shard should now learn is complete, if it moved since the last
    /// call: a reader at a revision waits for it, so none sees part of a revision.
    pub fn publish(&mut self) -> Option<Revision> {
        debug_assert!(self.published <= self.current);
        (self.current != self.published).then(|| {
            self.published = self.current;
            self.current
        })
    }

    /// Starts deciding one committed write request, applied at lease time `now`, after
    /// etcd's checks (`validate::check_write`, txns within the limit this sequencer has).
    /// Changes nothing: the decision is settled by [`Sequence::settle`] once its writes are delivered,
    /// before the next request is planned.
    pub fn plan(&self, request: &WriteRequest, now: Duration) -> Result<Plan, KvError> {
        validate::check_write(request, self.max_txn_ops)?;
        match request {
            WriteRequest::Put(put)
                if !put.prev_kv && !put.ignore_value && !put.ignore_lease && put.lease == 0 =>
            {
                let revision = self.current.next();
                let write = ShardWrite::Put {
                    revision,
                    key: put.key.clone(),
                    value: put.value.clone(),
                    lease: put.lease,
                };
                Ok(Plan::Ready(Decided {
                    writes: vec![(self.owner(&put.key), write)],
                    settle: Settle {
                        revision: Some(revision),
                        // A put without a lease takes its key out of any lease it was in.
                        attachments: vec![(put.key.clone(), 0)],
                        compacted: None,
                        answer: Answer::Decided(WriteResponse::Put(PutResponse {
                            header: ResponseHeader::at(revision.get()),
                            prev_kv: None,
                        })),
                    },
                }))
            }
            WriteRequest::Compact(compaction) => {
                let revision = Revision::new(compaction.revision);
                if revision <= self.compacted {
                    return Err(KvError::Compacted);
                }
                if revision > self.current {
                    return Err(KvError::FutureRevision);
                }
                Ok(Plan::Ready(Decided {
                    writes: (0..self.shard_count)
                        .map(|shard| (shard, ShardWrite::Compact(revision)))
                        .collect(),
                    settle: Settle {
                        revision: None,
                        attachments: Vec::new(),
                        compacted: Some(revision),
                        answer: Answer::Decided(WriteResponse::Compact(CompactionResponse {
                            header: ResponseHeader::at(self.current.get()),
                        })),
                    },
                }))
            }
            WriteRequest::Lease(lease) => {
                // The keys of the leases it ends are deleted in one revision; the leases
                // change as it settles (a refused change is refused then, and has no keys).
                let deletes = self
                    .leases
                    .keys_to_delete(lease)?
                    .into_iter()
                    .map(|key| Change { key, pair: None })
                    .collect();
                let (writes, settle) = self.dispatch(deletes, Answer::LeaseChangeAt(now));
                Ok(Plan::Ready(Decided { writes, settle }))
            }
            conditional => Ok(Plan::NeedsReads(read_set(conditional, self.current.get()))),
        }
    }

    /// Decides a conditional write (one `plan` answered with `NeedsReads`) from the pairs its
    /// read set holds. Changes nothing, like `plan`.
    pub fn evaluate(
        &self,
        request: &WriteRequest,
        reads: Prefetched,
    ) -> Result<Decided, EvaluateError> {
        let view = PrefetchedView {
            current: self.current.get(),
            compacted: self.compacted.get(),
            reads,
            missed: RefCell::new(false),
            leases: &self.leases,
        };
        let (response, changes) = match request {
            WriteRequest::Put(put) => {
                let (r, c) = exec::execute_put(&view, put)?;
                (WriteResponse::Put(r), c)
            }
            WriteRequest::DeleteRange(delete) => {
                let (r, c) = exec::execute_delete(&view, delete)?;
                (WriteResponse::DeleteRange(r), c)
            }
            WriteRequest::Txn(txn) => {
                let (r, c) = exec::execute_txn(&view, txn)?;
                (WriteResponse::Txn(r), c)
            }
            WriteRequest::Compact(_) | WriteRequest::Lease(_) => {
                return Err(EvaluateError::NotConditional)
            }
        };
        if view.missed.into_inner() {
            // Refused alike everywhere: every member reads the same set.
            return Err(EvaluateError::OutsideView);
        }
        let (writes, settle) = self.dispatch(changes, Answer::Decided(response));
        Ok(Decided { writes, settle })
    }

    /// Settles a decided write of `request` once its shards have it: the revision, the
    /// compaction point and the leases move, and the client's answer is made. Settles must
    /// come in the order of their plans, one per plan.
    pub fn settle(
        &mut self,
        request: &WriteRequest,
        settle: Settle,
    ) -> Result<WriteResponse, KvError> {
        if let Some(revision) = settle.revision {
            assert_eq!(
                revision,
                self.current.next(),
                "writes settled out of order: revisions must grow by one"
            );
            self.current = revision;
        }
        for (key, lease) in &settle.attachments {
            if *lease == 0 {
                self.leases.detach(key);
            } else {
                self.leases.attach(key, *lease);
            }
        }
        if let Some(compacted) = settle.compacted {
            assert!(
                compacted > self.compacted,
                "the compaction point moved back"
            );
            self.compacted = compacted;
        }
        match (settle.answer, request) {
            (Answer::Decided(response), _) => Ok(response),
            (Answer::LeaseChangeAt(now), WriteRequest::Lease(change)) => {
                // Refused only when it had no keys to delete: nothing above changed.
                let (outcome, _) = self.leases.apply(change, now)?;
                Ok(WriteResponse::Lease(LeaseResponse {
                    header: ResponseHeader::at(self.current.get()),
                    outcome,
                }))
            }
            (Answer::LeaseChangeAt(_), other) => {
                panic!("a lease change settled as another request: {other:?}")
            }
        }
    }

    /// A write's changes at the next revision, grouped by the shard that owns each key, with
    /// the keys that join or leave leases.
    fn dispatch(&self, changes: Vec<Change>, answer: Answer) -> (Vec<(usize, ShardWrite)>, Settle) {
        let mut settle = Settle {
            revision: None,
            attachments: Vec::with_capacity(changes.len()),
            compacted: None,
            answer,
        };
        if changes.is_empty() {
            return (Vec::new(), settle);
        }
        let revision = self.current.next();
        settle.revision = Some(revision);
        let mut per_shard: Vec<Vec<(i64, Bytes, Option<KeyValue>)>> =
            vec![Vec::new(); self.shard_count];
        for (sub, change) in changes.into_iter().enumerate() {
            let lease = change.pair.as_ref().map_or(0, |pair| pair.lease);
            settle.attachments.push((change.key.clone(), lease));
            per_shard[self.owner(&change.key)].push((sub as i64, change.key, change.pair));
        }
        let writes = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, changes)| !changes.is_empty())
            .map(|(shard, changes)| (shard, ShardWrite::Changes { revision, changes }))
            .collect();
        (writes, settle)
    }
}

/// Why a conditional write could not be decided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    /// etcd's refusal of the request (it changes nothing).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A bug: execution read a pair its read set did not list.
    #[error("a conditional write read outside its prefetched view")]
    OutsideView,
    /// A bug: a request `plan` decides at once was evaluated.
    #[error("a compaction or lease change evaluated as a conditional write")]
    NotConditional,
}

/// The pairs a conditional write reads, as the shards answered them.
struct PrefetchedView<'a> {
    current: i64,
    compacted: i64,
    reads: Prefetched,
    missed: RefCell<bool>,
    leases: &'a Lessor,
}

impl ReadView for PrefetchedView<'_> {
    fn current_revision(&self) -> i64 {
        self.current
    }

    fn compact_revision(&self) -> i64 {
        self.compacted
    }

    fn range_at(&self, range: &KeyRange, revision: i64) -> Vec<KeyValue> {
        match self
            .reads
            .iter()
            .find(|((r, v), _)| r == range && *v == revision)
        {
            Some((_, pairs)) => pairs.clone(),
            None => {
                *self.missed.borrow_mut() = true;
                Vec::new()
            }
        }
    }

    fn lease_exists(&self, lease: i64) -> bool {
        self.leases.contains(lease)
    }
}

/// Every (range, revision) that executing `request` at `current` reads, each once.
pub fn read_set(request: &WriteRequest, current: i64) -> Vec<(KeyRange, i64)> {
    fn ops(ops: &[RequestOp], current: i64, out: &mut Vec<(KeyRange, i64)>) {
        for op in ops {
            match op {
                RequestOp::Put(put) => out.push((KeyRange::Single(put.key.clone()), current)),
                RequestOp::DeleteRange(delete) => out.push((
                    KeyRange::from_request(&delete.key, &delete.range_end),
                    current,
                )),
                RequestOp::Range(range) => {
                    let revision = if range.revision <= 0 || range.revision > current {
                        current
                    } else {
                        range.revision
                    };
                    let keys = KeyRange::from_request(&range.key, &range.range_end);
                    out.push((keys.clone(), revision));
                    out.push((keys, current));
                }
                RequestOp::Txn(nested) => txn(nested, current, out),
                RequestOp::Empty => {}
            }
        }
    }
    fn txn(txn: &TxnRequest, current: i64, out: &mut Vec<(KeyRange, i64)>) {
        for compare in &txn.compare {
            out.push((
                KeyRange::from_request(&compare.key, &compare.range_end),
                current,
            ));
        }
        ops(&txn.success, current, out);
        ops(&txn.failure, current, out);
    }
    let mut all = Vec::new();
    match request {
        WriteRequest::Put(put) => all.push((KeyRange::Single(put.key.clone()), current)),
        WriteRequest::DeleteRange(delete) => all.push((
            KeyRange::from_request(&delete.key, &delete.range_end),
            current,
        )),
        WriteRequest::Txn(t) => txn(t, current, &mut all),
        WriteRequest::Compact(_) | WriteRequest::Lease(_) => {}
    }
    let mut unique: Vec<(KeyRange, i64)> = Vec::with_capacity(all.len());
    for read in all {
        if !unique.contains(&read) {
            unique.push(read);
        }
    }
    unique
}

/// Which shards answer each read of a read set: a single key's owner, every shard for a range.
pub fn readers(reads: &[(KeyRange, i64)], shard_count: usize) -> Vec<Vec<usize>> {
    reads
        .iter()
        .map(|(range, _)| match range {
            KeyRange::Single(key) => vec![shard_for_key(key, shard_count)],
            _ => (0..shard_count).collect(),
        })
        .collect()
}
