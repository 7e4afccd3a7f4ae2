//! The apply sequencer's delivery: runs `mvcc::sequence` (which decides revisions, per-shard
//! writes and lease changes, purely) on the consensus core and carries its decisions out.
//!
//! - A decided write's shard writes go to the cores that own them (`Router::deliver`, FIFO per
//!   core); a conditional write's reads are first prefetched from the shards (each answers
//!   after applying everything sent to it before).
//! - The decision settles once delivered, with no await before the caller records the entry
//!   applied: a snapshot or lease query never sees a revision the shards do not hold yet.
//! - After each batch of entries, every shard learns the new revision (`Watermark`): reads at
//!   a revision wait for it, so no reader sees part of a revision.
//! - Lease time is this member's monotonic clock as of applying (`lease_now`); the auth store
//!   is applied here too, in log order, and published to every core.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::ServerError;
use crate::ids::{Revision, Term};
use crate::lease::{SavedLease, TimeToLive};
use crate::mvcc::kv::{KeyRange, KeyValue};
use crate::mvcc::request::*;
use crate::mvcc::sequence::{self, EvaluateError, Plan, Prefetched, Sequence, ShardWrite};
use crate::shard::route::{unexpected_reply, Router};
use crate::shard::{CoreMessage, Reply};

/// The revision counter and dispatcher of committed writes.
pub struct Sequencer {
    router: Rc<Router>,
    /// The decisions: revision, compaction point, leases.
    sequence: RefCell<Sequence>,
    /// etcd's users, roles and permissions, as applied (changed only in log order).
    auth: RefCell<crate::auth::AuthStore>,
    /// Where every core of this member reads the store, published after each change.
    auth_shared: std::sync::Arc<crate::auth::AuthShared>,
    clock_start: Instant,
}

/// Added to lease time so that it never has to go below zero: a lease loaded from a snapshot
/// right after start is dated back by the part of its TTL it had used.
const LEASE_CLOCK_OFFSET: Duration = Duration::from_secs(crate::lease::MAX_TTL_SECONDS as u64);

impl Sequencer {
    /// A sequencer for an empty keyspace (revision 1).
    pub fn new(
        router: Rc<Router>,
        max_txn_ops: usize,
        auth_shared: std::sync::Arc<crate::auth::AuthShared>,
    ) -> Sequencer {
        let cores = router.cores();
        Sequencer {
            router,
            sequence: RefCell::new(Sequence::new(cores, max_txn_ops)),
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
        self.sequence
            .borrow()
            .leases()
            .time_to_live(id, self.lease_now(), with_keys)
    }

    /// Number of leases.
    pub fn lease_count(&self) -> usize {
        self.sequence.borrow().leases().len()
    }

    /// Every lease ID, ascending.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.sequence.borrow().leases().ids()
    }

    /// The lease expiries a leader proposes now, at a tick of `heartbeat` (`Lessor::due`).
    pub fn leases_due(&self, heartbeat: Duration) -> Vec<(i64, u64)> {
        self.sequence
            .borrow()
            .leases()
            .due(self.lease_now(), heartbeat)
    }

    /// This member became leader: every lease gets `margin` more (never past its full TTL).
    pub fn promote_leases(&self, margin: Duration) {
        self.sequence
            .borrow_mut()
            .leases_mut()
            .promote(self.lease_now(), margin);
    }

    /// The leases as a snapshot keeps them.
    pub fn export_leases(&self) -> Vec<SavedLease> {
        self.sequence.borrow().leases().export(self.lease_now())
    }

    /// Continues from a snapshot's leases.
    pub fn restore_leases(&self, saved: &[SavedLease]) {
        self.sequence
            .borrow_mut()
            .leases_mut()
            .import(saved, self.lease_now());
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
    pub fn current_revision(&self) -> Revision {
        self.sequence.borrow().current_revision()
    }

    /// The compaction point (-1 before any).
    pub fn compact_revision(&self) -> Revision {
        self.sequence.borrow().compact_revision()
    }

    /// Continues from a loaded snapshot.
    pub fn restore(&self, revision: Revision, compact_revision: Revision) {
        self.sequence
            .borrow_mut()
            .restore(revision, compact_revision);
    }

    /// The router of this core.
    pub fn router(&self) -> &Rc<Router> {
        &self.router
    }

    /// Applies one committed write request; the response is the client's answer.
    pub async fn apply(&self, request: &WriteRequest) -> Result<WriteResponse, ServerError> {
        let plan = self.sequence.borrow().plan(request, self.lease_now())?;
        let decided = match plan {
            Plan::Ready(decided) => decided,
            Plan::NeedsReads(reads) => {
                let prefetched = self.prefetch(reads).await?;
                match self.sequence.borrow().evaluate(request, prefetched) {
                    Ok(decided) => decided,
                    Err(EvaluateError::Kv(error)) => return Err(error.into()),
                    Err(bug) => {
                        tracing::error!(?request, %bug, "a committed write could not be decided");
                        return Err(ServerError::Internal(
                            "internal error evaluating the request".into(),
                        ));
                    }
                }
            }
        };
        for (core, write) in decided.writes {
            self.router.deliver(core, shard_message(write)).await?;
        }
        Ok(self.sequence.borrow_mut().settle(request, decided.settle)?)
    }

    async fn prefetch(&self, reads: Vec<(KeyRange, i64)>) -> Result<Prefetched, ServerError> {
        let mut per_core: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (position, cores) in sequence::readers(&reads, self.router.cores())
            .into_iter()
            .enumerate()
        {
            for core in cores {
                per_core.entry(core).or_default().push(position);
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

    /// Tells every shard that everything up to the current revision has been sent (and the
    /// Raft term, for the headers other cores answer with).
    pub async fn publish(&self, term: Term) -> Result<(), ServerError> {
        let Some(revision) = self.sequence.borrow_mut().publish() else {
            return Ok(());
        };
        for core in 0..self.router.cores() {
            self.router
                .deliver(
                    core,
                    CoreMessage::Watermark {
                        revision: revision.get(),
                        term: term.get(),
                    },
                )
                .await?;
        }
        Ok(())
    }
}

/// The core message that carries a shard write.
fn shard_message(write: ShardWrite) -> CoreMessage {
    match write {
        // Carried out in steps, between other messages.
        ShardWrite::Compact(revision) => CoreMessage::Compact(revision.get()),
        write => CoreMessage::Write(write),
    }
}
