//! The shard layer: every core owns one shard of the keyspace (the multi-version state of the
//! keys that hash to it) and cores talk only through typed messages over a channel mesh built
//! once at boot. No memory is shared.
//!
//! Who sends what:
//! - the consensus core's sequencer sends each shard, in revision order over one FIFO channel,
//!   the changes it owns (`Apply`, `ApplyPut`), the revision every earlier change is applied
//!   up to (`Watermark`), compactions, and requests for the state a conditional write must be
//!   evaluated against (`Prefetch`, answered after everything sent before it is applied);
//! - any core asks any shard for a range at a revision (`Read`); the shard answers once its
//!   watermark has reached that revision, so a read at R sees every change <= R on every shard
//!   and nothing above R: a multi-shard txn is never seen half-applied;
//! - other cores forward writes and linearizable-read requests to the consensus core
//!   (`Propose`, `ReadIndex`).

pub mod route;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::consensus::ServerError;
use crate::mvcc::kv::{KeyRange, KeyValue};
use crate::mvcc::request::WriteResponse;
use crate::mvcc::shard::MvccShard;

/// A message between cores.
pub enum CoreMessage {
    /// A write for the consensus core to propose (a verified request frame).
    Propose {
        /// The request frame.
        frame: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<WriteResponse, ServerError>>,
    },
    /// A request for a linearizable read revision, for the consensus core.
    ReadIndex {
        /// The revision to read at, once confirmed.
        reply: oneshot::Sender<Result<i64, ServerError>>,
    },
    /// Changes at one revision for this shard (sub revision, key, pair or deletion).
    Apply {
        /// Main revision.
        revision: i64,
        /// The changes, in sub-revision order.
        changes: Vec<(i64, Bytes, Option<KeyValue>)>,
    },
    /// An unconditional put at a revision: the shard computes version and create revision.
    ApplyPut {
        /// Main revision.
        revision: i64,
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// The lease.
        lease: i64,
    },
    /// Every change up to this revision has been sent; the current Raft term rides along.
    Watermark {
        /// The revision.
        revision: i64,
        /// The Raft term.
        term: u64,
    },
    /// A snapshot request, for the consensus core: the file's bytes and the revision.
    Snapshot {
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(Bytes, i64), ServerError>>,
    },
    /// A status request, for the consensus core.
    Status {
        /// Where the answer goes.
        reply: oneshot::Sender<crate::api::native::StatusResponse>,
    },
    /// History below this revision may go (etcd's Compact).
    Compact(i64),
    /// The current state of ranges, for evaluating a conditional write.
    Prefetch {
        /// Ranges and the revisions to read them at.
        reads: Vec<(KeyRange, i64)>,
        /// Pairs of each read, in order.
        reply: oneshot::Sender<Vec<Vec<KeyValue>>>,
    },
    /// A range at a revision: up to `max_items` pairs and the count.
    Read {
        /// The range.
        range: KeyRange,
        /// The revision.
        revision: i64,
        /// At most this many pairs (all when `None`).
        max_items: Option<usize>,
        /// Pairs ascending by key, and the count of the range.
        reply: oneshot::Sender<(Vec<KeyValue>, usize)>,
    },
    /// Key histories as of a revision, for a snapshot: up to `max_keys` keys after `after`.
    Export {
        /// The snapshot's revision.
        revision: i64,
        /// Continue after this key (from the start when `None`).
        after: Option<Bytes>,
        /// Keys per answer.
        max_keys: usize,
        /// The histories, the key to continue after (`None` at the end), and the shard's
        /// compaction point (a snapshot is abandoned if it moves).
        reply: oneshot::Sender<(Vec<crate::snapshot::KeyHistory>, Option<Bytes>, i64)>,
    },
    /// Key histories loaded from a snapshot, for the keys this shard owns.
    Import {
        /// The histories.
        keys: Vec<crate::snapshot::KeyHistory>,
    },
    /// A snapshot is loaded: the keyspace is at `revision` with compaction point
    /// `compact_revision`.
    Restored {
        /// The snapshot's revision.
        revision: i64,
        /// Its compaction point.
        compact_revision: i64,
    },
    /// Answers once this shard has physically finished compacting up to `revision`.
    WaitCompacted {
        /// The compaction revision.
        revision: i64,
        /// Signalled when done.
        reply: oneshot::Sender<()>,
    },
    /// The node is stopping.
    Shutdown,
}

/// One core's shard and what it knows of the sequencer's progress.
#[derive(Default)]
pub struct ShardState {
    shard: RefCell<MvccShard>,
    /// Every change up to this revision is applied here.
    watermark: Cell<i64>,
    /// The compaction point (-1 before any).
    compact_revision: Cell<i64>,
    watermark_waiters: RefCell<Vec<(i64, oneshot::Sender<()>)>>,
    stopping: Cell<bool>,
    /// The Raft term last heard from the consensus core.
    term: Cell<u64>,
    /// Compaction physically finished up to this revision.
    compacted_physically: Cell<i64>,
    compaction_waiters: RefCell<Vec<(i64, oneshot::Sender<()>)>>,
}

impl ShardState {
    /// A shard of an empty keyspace (revision 1).
    pub fn new() -> Rc<ShardState> {
        let state = ShardState::default();
        state.watermark.set(1);
        state.compact_revision.set(-1);
        state.compacted_physically.set(-1);
        Rc::new(state)
    }

    /// The revision every change is applied up to on this shard.
    pub fn watermark(&self) -> i64 {
        self.watermark.get()
    }

    /// The compaction point as this shard knows it.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.get()
    }

    /// The Raft term last heard from the consensus core.
    pub fn term(&self) -> u64 {
        self.term.get()
    }

    /// True once shutdown was requested.
    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Applies one message from the sequencer (or answers a read) on this core.
    pub fn handle(self: &Rc<Self>, message: CoreMessage) {
        match message {
            CoreMessage::Apply { revision, changes } => {
                let mut shard = self.shard.borrow_mut();
                for (sub, key, pair) in changes {
                    shard.apply(revision, sub, key, pair);
                }
            }
            CoreMessage::ApplyPut {
                revision,
                key,
                value,
                lease,
            } => self.shard.borrow_mut().put(revision, 0, key, value, lease),
            CoreMessage::Watermark { revision, term } => {
                self.term.set(term);
                self.advance_watermark(revision);
            }
            CoreMessage::Compact(revision) => {
                self.compact_revision.set(revision);
                let state = self.clone();
                glommio::spawn_local(async move { state.compact_in_steps(revision).await })
                    .detach();
            }
            CoreMessage::Prefetch { reads, reply } => {
                let shard = self.shard.borrow();
                let pairs = reads
                    .iter()
                    .map(|(range, revision)| shard.range(range, *revision, None).0)
                    .collect();
                let _ = reply.send(pairs);
            }
            CoreMessage::Read {
                range,
                revision,
                max_items,
                reply,
            } => {
                let state = self.clone();
                glommio::spawn_local(async move {
                    // Stopping before the revision arrived: no answer (the asker sees the
                    // channel drop), never a partial one.
                    if state.wait_watermark(revision).await {
                        let _ = reply.send(state.shard.borrow().range(&range, revision, max_items));
                    }
                })
                .detach();
            }
            CoreMessage::Export {
                revision,
                after,
                max_keys,
                reply,
            } => {
                let (keys, next) = self
                    .shard
                    .borrow()
                    .export(revision, after.as_ref(), max_keys);
                let _ = reply.send((keys, next, self.compact_revision.get()));
            }
            CoreMessage::Import { keys } => {
                let mut shard = self.shard.borrow_mut();
                for (key, versions) in keys {
                    shard.import(key, versions);
                }
            }
            CoreMessage::Restored {
                revision,
                compact_revision,
            } => {
                self.compact_revision.set(compact_revision);
                self.compacted_physically.set(compact_revision);
                self.advance_watermark(revision);
            }
            CoreMessage::WaitCompacted { revision, reply } => {
                if self.compacted_physically.get() >= revision {
                    let _ = reply.send(());
                } else {
                    self.compaction_waiters.borrow_mut().push((revision, reply));
                }
            }
            CoreMessage::Shutdown => {
                self.stopping.set(true);
                self.watermark_waiters.borrow_mut().clear();
            }
            CoreMessage::Propose { reply, .. } => {
                let _ = reply.send(Err(ServerError::Internal("not the consensus core".into())));
            }
            CoreMessage::ReadIndex { reply } => {
                let _ = reply.send(Err(ServerError::Internal("not the consensus core".into())));
            }
            CoreMessage::Status { reply } => drop(reply),
            CoreMessage::Snapshot { reply } => {
                let _ = reply.send(Err(ServerError::Internal("not the consensus core".into())));
            }
        }
    }

    /// Reads `range` at `revision` here, once every change up to it is applied.
    /// `None` when the node stops before `revision` is applied here.
    pub async fn read(
        &self,
        range: &KeyRange,
        revision: i64,
        max_items: Option<usize>,
    ) -> Option<(Vec<KeyValue>, usize)> {
        if !self.wait_watermark(revision).await {
            return None;
        }
        Some(self.shard.borrow().range(range, revision, max_items))
    }

    fn advance_watermark(&self, revision: i64) {
        if revision <= self.watermark.get() {
            return;
        }
        self.watermark.set(revision);
        release_waiters(&self.watermark_waiters, revision);
    }

    /// Waits until every change up to `revision` is applied here; false if the node stops
    /// first.
    async fn wait_watermark(&self, revision: i64) -> bool {
        if self.watermark.get() >= revision {
            return true;
        }
        if self.stopping.get() {
            return false;
        }
        let (sender, receiver) = oneshot::channel();
        self.watermark_waiters.borrow_mut().push((revision, sender));
        receiver.await.is_ok() && self.watermark.get() >= revision
    }

    async fn compact_in_steps(&self, revision: i64) {
        // Bounded steps with yields between: compaction never stalls the core.
        let mut from = None;
        loop {
            let next = self
                .shard
                .borrow_mut()
                .compact_step(revision, from.as_ref(), 256);
            match next {
                Some(key) => from = Some(key),
                None => break,
            }
            glommio::yield_if_needed().await;
        }
        if revision > self.compacted_physically.get() {
            self.compacted_physically.set(revision);
        }
        release_waiters(&self.compaction_waiters, self.compacted_physically.get());
    }
}

/// Signals every waiter waiting for a value up to `reached`, keeping the others.
pub fn release_waiters<T: PartialOrd + Copy>(
    waiters: &RefCell<Vec<(T, oneshot::Sender<()>)>>,
    reached: T,
) {
    let ready: Vec<_> = {
        let mut waiters = waiters.borrow_mut();
        let (ready, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiters)
            .into_iter()
            .partition(|(wanted, _)| *wanted <= reached);
        *waiters = pending;
        ready
    };
    for (_, waiter) in ready {
        let _ = waiter.send(());
    }
}
