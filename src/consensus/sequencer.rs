//! The apply sequencer: turns committed write requests, in log order, into revisions and
//! per-shard changes. Lives on the consensus core.
//!
//! - An unconditional put (no prev_kv, no ignore flags, no lease) gets the next revision at
//!   once and goes to its shard, which computes version and create revision itself: no round
//!   trip.
//! - Anything else is evaluated by `mvcc::exec` against a view prefetched from the shards it
//!   reads (each shard answers after applying everything sent to it before), then its changes
//!   are dispatched to their shards.
//! - After each batch of entries, every shard learns the new revision (`Watermark`): reads at
//!   a revision wait for it, so no reader sees part of a revision.
//! - Leases live here (`lease::Lessor`): every change dispatched attaches its key to the
//!   lease of its new pair (or detaches it), so each lease's key set is exact in log order,
//!   and a revocation's deletes are dispatched as one revision. Lease time is this member's
//!   monotonic clock as of applying (`lease_now`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ServerError;
use crate::lease::{LeaseRequest, Lessor, SavedLease, TimeToLive};
use crate::mvcc::exec::{self, Change, ReadView};
use crate::mvcc::kv::{KeyRange, KeyValue};
use crate::mvcc::request::*;
use crate::mvcc::{validate, KvError};
use crate::shard::route::{unexpected_reply, Router};
use crate::shard::{CoreMessage, Reply};

/// The revision counter and dispatcher of committed writes.
pub struct Sequencer {
    router: Rc<Router>,
    current: Cell<i64>,
    compacted: Cell<i64>,
    published: Cell<i64>,
    max_txn_ops: usize,
    leases: RefCell<Lessor>,
    /// etcd's users, roles and permissions, as applied (changed only in log order).
    auth: RefCell<crate::auth::AuthStore>,
    /// Where every core of this member reads the store, published after each change.
    auth_shared: std::sync::Arc<crate::auth::AuthShared>,
    clock_start: Instant,
}

/// Added to lease time so that it never has to go below zero: a lease loaded from a snapshot
/// right after start is dated back by the part of its TTL it had used.
const LEASE_CLOCK_OFFSET: Duration = Duration::from_secs(crate::lease::MAX_TTL_SECONDS as u64);

/// The reads a conditional write needs, answered by the shards.
struct PrefetchedView<'a> {
    current: i64,
    compacted: i64,
    reads: Vec<((KeyRange, i64), Vec<KeyValue>)>,
    missed: RefCell<bool>,
    /// The applied leases (borrowed while the write is evaluated, before any await).
    leases: std::cell::Ref<'a, Lessor>,
}

/// What the shards answered to a conditional write's reads.
type Prefetched = Vec<((KeyRange, i64), Vec<KeyValue>)>;

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

/// Every (range, revision) that executing `request` at `current` reads.
fn read_set(request: &WriteRequest, current: i64) -> Vec<(KeyRange, i64)> {
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
                    out.push((
                        KeyRange::from_request(&range.key, &range.range_end),
                        revision,
                    ));
                    out.push((
                        KeyRange::from_request(&range.key, &range.range_end),
                        current,
                    ));
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
    let out = &mut all;
    match request {
        WriteRequest::Put(put) => out.push((KeyRange::Single(put.key.clone()), current)),
        WriteRequest::DeleteRange(delete) => out.push((
            KeyRange::from_request(&delete.key, &delete.range_end),
            current,
        )),
        WriteRequest::Txn(t) => txn(t, current, out),
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

impl Sequencer {
    /// A sequencer for an empty keyspace (revision 1).
    pub fn new(
        router: Rc<Router>,
        max_txn_ops: usize,
        auth_shared: std::sync::Arc<crate::auth::AuthShared>,
    ) -> Sequencer {
        Sequencer {
            router,
            current: Cell::new(1),
            compacted: Cell::new(-1),
            published: Cell::new(1),
            max_txn_ops,
            leases: RefCell::new(Lessor::new()),
            auth: RefCell::new(crate::auth::AuthStore::new()),
            auth_shared,
            clock_start: Instant::now(),
        }
    }

    /// This member's lease time now.
    pub fn lease_now(&self) -> Duration {
        LEASE_CLOCK_OFFSET + self.clock_start.elapsed()
    }

    /// etcd's LeaseTimeToLive from the applied leases.
    pub fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Option<TimeToLive> {
        self.leases
            .borrow()
            .time_to_live(id, self.lease_now(), with_keys)
    }

    /// Number of leases.
    pub fn lease_count(&self) -> usize {
        self.leases.borrow().len()
    }

    /// Every lease ID, ascending.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.borrow().ids()
    }

    /// Leases whose deadline passed `grace` ago or longer, earliest first, with their
    /// generations (at most `limit`).
    pub fn expired_leases(&self, limit: usize, grace: Duration) -> Vec<(i64, u64)> {
        self.leases
            .borrow()
            .expired(self.lease_now().saturating_sub(grace), limit)
    }

    /// This member became leader: every lease gets `margin` more (never past its full TTL).
    pub fn promote_leases(&self, margin: Duration) {
        self.leases.borrow_mut().promote(self.lease_now(), margin);
    }

    /// The leases as a snapshot keeps them.
    pub fn export_leases(&self) -> Vec<SavedLease> {
        self.leases.borrow().export(self.lease_now())
    }

    /// Continues from a snapshot's leases.
    pub fn restore_leases(&self, saved: &[SavedLease]) {
        self.leases.borrow_mut().import(saved, self.lease_now());
    }

    /// Applies an auth change from the log to the store (etcd's rules; a refused change
    /// changes nothing and is answered with etcd's error), and publishes the store to the cores.
    pub fn apply_auth(
        &self,
        request: &crate::auth::request::AuthRequest,
    ) -> Result<crate::auth::request::AuthResponse, ServerError> {
        let change = request.change()?.ok_or(ServerError::InvalidRequest(
            "an auth entry that changes nothing",
        ))?;
        if !request.password.is_empty() {
            return Err(ServerError::InvalidRequest(
                "an auth entry holding a plain-text password",
            ));
        }
        let mut store = self.auth.borrow_mut();
        store.apply(&change)?;
        self.auth_shared.applied(Some(&change), &store);
        Ok(crate::auth::request::AuthResponse {
            auth_revision: store.revision(),
            ..Default::default()
        })
    }

    /// Applies an Authenticate of `user` (its password was checked by the member that proposed
    /// it, at the auth revision it was stamped with): the revision its token speaks at. With
    /// simple tokens, every member registers the token `<prefix>.<index>` here.
    pub fn apply_authenticate(
        &self,
        user: &str,
        token_prefix: &str,
        index: u64,
    ) -> Result<crate::auth::request::AuthResponse, ServerError> {
        let store = self.auth.borrow();
        store.password_hash(user)?;
        let revision = store.revision();
        let token = if self.auth_shared.issues_jwt() {
            // Signed by the member that proposed it, once it learns this revision.
            String::new()
        } else {
            self.auth_shared
                .assign_simple(token_prefix, index, user, revision)
        };
        Ok(crate::auth::request::AuthResponse {
            auth_revision: revision,
            token,
            ..Default::default()
        })
    }

    /// etcd's check of a client's entry at apply: with auth on, an entry proposed without a
    /// user (`Some(0)`) is refused ("user name is empty"), and one authorized at an older
    /// auth revision than the store's now is refused ("revision of auth store is old"), on
    /// every member alike. The server's own entries (`None`) are never refused.
    pub fn admits(&self, auth_revision: Option<u64>) -> Result<(), crate::auth::AuthError> {
        let store = self.auth.borrow();
        crate::auth::authorize::check_stamp(auth_revision, store.enabled(), store.revision())
    }

    /// The auth store as a snapshot keeps it.
    pub fn export_auth(&self) -> crate::auth::AuthStore {
        self.auth.borrow().clone()
    }

    /// Continues from a snapshot's auth store (published to the cores).
    pub fn restore_auth(&self, saved: &crate::auth::AuthStore) {
        *self.auth.borrow_mut() = saved.clone();
        self.auth_shared.applied(None, saved);
    }

    /// The revision of the last applied write.
    pub fn current_revision(&self) -> i64 {
        self.current.get()
    }

    /// The compaction point (-1 before any).
    pub fn compact_revision(&self) -> i64 {
        self.compacted.get()
    }

    /// Continues from a loaded snapshot.
    pub fn restore(&self, revision: i64, compact_revision: i64) {
        self.current.set(revision);
        self.published.set(revision);
        self.compacted.set(compact_revision);
    }

    /// The router of this core.
    pub fn router(&self) -> &Rc<Router> {
        &self.router
    }

    /// Applies one committed write request; the response is the client's answer.
    pub async fn apply(&self, request: &WriteRequest) -> Result<WriteResponse, ServerError> {
        validate::check_write(request, self.max_txn_ops)?;
        match request {
            WriteRequest::Put(put)
                if !put.prev_kv && !put.ignore_value && !put.ignore_lease && put.lease == 0 =>
            {
                let revision = self.current.get() + 1;
                self.router
                    .deliver(
                        self.router.owner(&put.key),
                        CoreMessage::ApplyPut {
                            revision,
                            key: put.key.clone(),
                            value: put.value.clone(),
                            lease: put.lease,
                        },
                    )
                    .await?;
                // A put without a lease takes its key out of any lease it was in; changed
                // with the revision, so no task sees the leases ahead of the keyspace.
                self.leases.borrow_mut().detach(&put.key);
                self.current.set(revision);
                Ok(WriteResponse::Put(PutResponse {
                    header: ResponseHeader::at(revision),
                    prev_kv: None,
                }))
            }
            WriteRequest::Compact(compaction) => {
                if compaction.revision <= self.compacted.get() {
                    return Err(KvError::Compacted.into());
                }
                if compaction.revision > self.current.get() {
                    return Err(KvError::FutureRevision.into());
                }
                self.compacted.set(compaction.revision);
                for core in 0..self.router.cores() {
                    self.router
                        .deliver(core, CoreMessage::Compact(compaction.revision))
                        .await?;
                }
                Ok(WriteResponse::Compact(CompactionResponse {
                    header: ResponseHeader::at(self.current.get()),
                }))
            }
            WriteRequest::Lease(lease) => self.apply_lease(lease).await,
            conditional => self.apply_conditional(conditional).await,
        }
    }

    async fn apply_lease(&self, request: &LeaseRequest) -> Result<WriteResponse, ServerError> {
        // The keys go first; the leases change once their deletes are dispatched, with the
        // revision (a snapshot taken meanwhile sees both before, or both after).
        let keys = self
            .leases
            .borrow()
            .keys_to_delete(request)
            .map_err(KvError::from)?;
        let deletes = keys
            .into_iter()
            .map(|key| Change { key, pair: None })
            .collect();
        self.dispatch(deletes).await?;
        let (outcome, _) = self
            .leases
            .borrow_mut()
            .apply(request, self.lease_now())
            .map_err(KvError::from)?;
        Ok(WriteResponse::Lease(LeaseResponse {
            header: ResponseHeader::at(self.current.get()),
            outcome,
        }))
    }

    async fn apply_conditional(
        &self,
        request: &WriteRequest,
    ) -> Result<WriteResponse, ServerError> {
        let current = self.current.get();
        let reads = self.prefetch(read_set(request, current)).await?;
        let view = PrefetchedView {
            current,
            compacted: self.compacted.get(),
            reads,
            missed: RefCell::new(false),
            leases: self.leases.borrow(),
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
                unreachable!("compactions and lease changes are applied directly")
            }
        };
        let missed = *view.missed.borrow();
        // The view borrows the leases, which the dispatch updates.
        drop(view);
        if missed {
            tracing::error!(
                ?request,
                "a conditional write read outside its prefetched view"
            );
            return Err(ServerError::Internal(
                "internal error evaluating the request".into(),
            ));
        }
        self.dispatch(changes).await?;
        Ok(response)
    }

    async fn prefetch(&self, reads: Vec<(KeyRange, i64)>) -> Result<Prefetched, ServerError> {
        let mut per_core: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (position, (range, _)) in reads.iter().enumerate() {
            match range {
                KeyRange::Single(key) => per_core
                    .entry(self.router.owner(key))
                    .or_default()
                    .push(position),
                _ => {
                    for core in 0..self.router.cores() {
                        per_core.entry(core).or_default().push(position);
                    }
                }
            }
        }
        let mut results: Vec<Vec<KeyValue>> = vec![Vec::new(); reads.len()];
        let mut answers = Vec::new();
        for (core, positions) in per_core {
            let subset: Vec<(KeyRange, i64)> =
                positions.iter().map(|&p| reads[p].clone()).collect();
            let answer = self
                .router
                .send_request(core, |reply| CoreMessage::Prefetch {
                    reads: subset,
                    reply,
                })
                .await?;
            answers.push((positions, answer));
        }
        for (positions, answer) in answers {
            let parts = match answer.await {
                Ok(Reply::Prefetched(parts)) => parts,
                Ok(_) => return Err(unexpected_reply("Prefetch")),
                Err(_) => return Err(ServerError::Stopped),
            };
            for (position, mut part) in positions.into_iter().zip(parts) {
                results[position].append(&mut part);
            }
        }
        Ok(reads
            .into_iter()
            .zip(results)
            .map(|(read, mut pairs)| {
                pairs.sort_by(|a, b| a.key.cmp(&b.key));
                (read, pairs)
            })
            .collect())
    }

    /// Sends a write's changes to their shards at the next revision.
    async fn dispatch(&self, changes: Vec<Change>) -> Result<(), ServerError> {
        if changes.is_empty() {
            return Ok(());
        }
        let revision = self.current.get() + 1;
        let mut per_core: BTreeMap<usize, Vec<(i64, Bytes, Option<KeyValue>)>> = BTreeMap::new();
        let attachments: Vec<(Bytes, i64)> = changes
            .iter()
            .map(|change| {
                let lease = change.pair.as_ref().map_or(0, |pair| pair.lease);
                (change.key.clone(), lease)
            })
            .collect();
        for (sub, change) in changes.into_iter().enumerate() {
            per_core
                .entry(self.router.owner(&change.key))
                .or_default()
                .push((sub as i64, change.key, change.pair));
        }
        for (core, changes) in per_core {
            self.router
                .deliver(core, CoreMessage::Apply { revision, changes })
                .await?;
        }
        // Keys join and leave leases with the revision that changes them.
        let mut leases = self.leases.borrow_mut();
        for (key, lease) in &attachments {
            leases.attach(key, *lease);
        }
        self.current.set(revision);
        Ok(())
    }

    /// Tells every shard that everything up to the current revision has been sent (and the
    /// Raft term, for the headers other cores answer with).
    pub async fn publish(&self, term: u64) -> Result<(), ServerError> {
        let current = self.current.get();
        if current == self.published.get() {
            return Ok(());
        }
        for core in 0..self.router.cores() {
            self.router
                .deliver(
                    core,
                    CoreMessage::Watermark {
                        revision: current,
                        term,
                    },
                )
                .await?;
        }
        self.published.set(current);
        Ok(())
    }
}
