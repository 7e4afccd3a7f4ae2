//! The consensus shell: runs one member's [`Replica`] against the world. It owns the timers,
//! the log's writes, the transport, the tasks it spawns, the waiters of proposals and reads,
//! and the applied state (the sequencer, alarms); every decision is the replica's.
//!
//! ```text
//!  loop ─▶ wait for work or the next tick
//!       ─▶ Tick (every heartbeat) ─▶ report synced Readies (Persisted n)
//!       ─▶ Peer messages, unreachable peers, snapshot reports ─▶ HandOff
//!       ─▶ turn: send ─▶ [install snapshot] ─▶ apply committed ─▶ stage in the log ─▶ end turn
//!                                                     (a task waits for the sync, then wakes
//!                                                      the loop to report Persisted n)
//!       ─▶ carry out outputs: send, answer refused proposals and reads, leader changes
//!       ─▶ background work: snapshot, publish this member, expire leases, NOSPACE
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::alarm::Alarms;
use crate::api::error::ServerError;
use crate::ids::{LogIndex, MemberId, Revision, Term};
use crate::members::{Member, Members};
use crate::peer::transport::PeerTransport;
use crate::replica::state::snapshot_metadata;
use crate::replica::storage::LogStorage;
use crate::replica::{Input, Replica, ReplicaConfig};
use crate::wal::io::LogDir;
use crate::wal::Wal;

/// How the consensus core is set up.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// This member's ID (also its Raft ID); never [`MemberId::NONE`].
    pub member_id: MemberId,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The members the cluster was bootstrapped with (this one included), all voters: the
    /// registry until a snapshot or the log says otherwise.
    pub members: Vec<Member>,
    /// This member's name, published to the registry once it runs.
    pub name: String,
    /// This member's advertised client URLs, published with its name.
    pub client_urls: Vec<String>,
    /// Interval between Raft ticks (etcd's `--heartbeat-interval`).
    pub heartbeat: Duration,
    /// Ticks without a leader before an election (etcd's election timeout / heartbeat).
    pub election_ticks: usize,
    /// Raft's pre-vote (etcd's `--pre-vote`, on by default): a member cut off asks whether it
    /// could win before it starts an election that would depose a working leader.
    pub pre_vote: bool,
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, for followers (etcd's
    /// `--snapshot-catchup-entries`).
    pub snapshot_catchup_entries: u64,
    /// Where snapshots are written.
    pub snapshot_dir: std::path::PathBuf,
    /// How long a write or linearizable read may wait for Raft before it fails with "request
    /// timed out" (etcd's: 5 s plus twice the election timeout).
    pub request_timeout: Duration,
    /// The space quota in counted bytes of the keyspace (etcd's `--quota-backend-bytes`);
    /// `None`: no quota.
    pub quota_bytes: Option<u64>,
    /// How a follower dials the leader's `https` client URL when it forwards a membership or
    /// leadership request (`--client-cert-file` or `--cert-file`, `--trusted-ca-file`).
    pub forward_tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
    /// bcrypt's cost for users' passwords (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
    /// The auth store as every core of this member reads it, and this member's tokens.
    pub auth: std::sync::Arc<crate::auth::AuthShared>,
    /// The leader this member knows and whether it is a learner, as every core reads them
    /// (published by the consensus core).
    pub role: std::sync::Arc<super::SharedRole>,
}

impl ConsensusConfig {
    /// The election timeout: `election_ticks` heartbeats.
    pub fn election_timeout(&self) -> Duration {
        self.heartbeat * self.election_ticks.max(1) as u32
    }
}

/// What applying a proposal answers.
#[derive(Debug)]
pub enum Applied {
    /// A KV write's response.
    Write(crate::mvcc::request::WriteResponse),
    /// An alarm change's response.
    Alarm(crate::alarm::AlarmResponse),
    /// A membership change's outcome: the registry after it.
    Members(Vec<Member>),
    /// An auth change's answer.
    Auth(crate::auth::request::AuthResponse),
}

/// Answers a proposal: its outcome and when it was decided.
/// Where a proposal's answer goes: the outcome, when it was decided (applied), and when the
/// batch holding it was reported committed.
pub(super) type WriteWaiter = oneshot::Sender<(Result<Applied, ServerError>, Decided)>;

/// When a proposal was committed and applied, for its answer's timing.
#[derive(Clone, Copy, Debug)]
pub(super) struct Decided {
    /// raft-rs reported its batch committed.
    pub(super) committed_at: Instant,
    /// It was applied.
    pub(super) applied_at: Instant,
}

impl Decided {
    /// Decided at `at` without being committed (refused, or the member stopped).
    pub(super) fn without_commit(at: Instant) -> Decided {
        Decided {
            committed_at: at,
            applied_at: at,
        }
    }
}
pub(super) type ReadWaiter = oneshot::Sender<Result<LogIndex, ServerError>>;

/// Who waits for what the replica answers, by the number it was filed under.
#[derive(Default)]
pub(super) struct Waiters {
    /// Proposals not yet applied.
    pub(super) writes: HashMap<u64, WriteWaiter>,
    /// Readers waiting for a read index.
    pub(super) reads: HashMap<u64, ReadWaiter>,
}

/// The consensus core of one node.
pub struct Consensus<D: LogDir> {
    pub(super) config: ConsensusConfig,
    pub(super) wal: Rc<Wal<D>>,
    pub(super) replica: RefCell<Replica<D>>,
    pub(super) sequencer: super::sequencer::Sequencer,
    pub(super) waiters: RefCell<Waiters>,
    driver_waker: RefCell<Option<Waker>>,
    pub(super) applied_waiters: RefCell<Vec<(LogIndex, oneshot::Sender<()>)>>,
    /// Tells this run's proposals from an earlier run's with the same sequence numbers.
    pub(super) nonce: u64,
    pub(super) next_sequence: Cell<u64>,
    stopped: Cell<bool>,
    /// Readies the log synced (or failed to), to report to the replica in the loop.
    pub(super) synced: RefCell<Vec<(u64, SyncOutcome)>>,
    /// When each log sync still running started, oldest first.
    pub(super) syncing: RefCell<VecDeque<(u64, Instant)>>,
    /// Readies whose writes are not yet durable, kept to write again after a full disk.
    pub(super) unsynced: RefCell<crate::replica::unsynced::Unsynced>,
    /// This member's full-disk alarm: raised once per episode, one change in flight.
    pub(super) disk_alarm: RefCell<crate::alarm::DiskAlarm>,
    /// The background task queue snapshots are written from.
    pub(super) snapshot_queue: std::cell::OnceCell<glommio::TaskQueueHandle>,
    /// The active alarms (changed only by applying alarm entries).
    pub(super) alarms: RefCell<Alarms>,
    /// True while this node's proposal to raise or clear its NOSPACE alarm is in flight.
    pub(super) alarm_change_in_flight: Cell<bool>,
    /// The keyspace was seen over the quota's clearing point while NOSPACE was raised: the
    /// quota's alarm, which clears itself once compaction wins the space back (an alarm an
    /// operator raised on a small keyspace waits for a disarm, as etcd's does).
    pub(super) over_quota_seen: Cell<bool>,
    /// The other members (`None` for a single member).
    pub(super) transport: Option<Rc<PeerTransport>>,
    /// True once this member's name and client URLs are in the registry, or a proposal to put
    /// them there is in flight.
    pub(super) publishing: Cell<bool>,
    /// Proposals of this member that failed (timed out, refused, or lost with the leader).
    pub(super) proposals_failed: Cell<u64>,
    /// When this member applied its own removal: it stops shortly after, once the removal has
    /// reached the others.
    pub(super) removed: Cell<Option<Instant>>,
    /// True while this member's proposal expiring leases is in flight (as leader).
    pub(super) lease_expiry_in_flight: Cell<bool>,
}

fn random_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl<D: LogDir + 'static> Consensus<D> {
    /// The consensus core over `wal`, starting from `snapshot` (if any). Committed entries
    /// already in the log are applied again as the driver runs (the keyspace is rebuilt from
    /// the log).
    pub fn new(
        config: ConsensusConfig,
        wal: Rc<Wal<D>>,
        router: Rc<crate::shard::route::Router>,
        snapshot: Option<crate::snapshot::SnapshotMeta>,
        transport: Option<Rc<PeerTransport>>,
    ) -> Result<Rc<Consensus<D>>, ServerError> {
        let members = match snapshot.as_ref().and_then(|meta| meta.members.clone()) {
            Some(members) => members,
            // Snapshots before format 3 hold no registry: the bootstrap members that are still
            // voters in the snapshot are.
            None => Members::new(
                config
                    .members
                    .iter()
                    .filter(|member| {
                        snapshot
                            .as_ref()
                            .is_none_or(|meta| meta.voters.contains(&member.id.get()))
                    })
                    .cloned(),
                Default::default(),
            ),
        };
        let (voters, learners) = members.voters_and_learners();
        let conf_state = raft::eraftpb::ConfState {
            voters: voters.into_iter().map(MemberId::get).collect(),
            learners: learners.into_iter().map(MemberId::get).collect(),
            ..Default::default()
        };
        let applied = snapshot.as_ref().map_or(0, |meta| meta.applied_index);
        if wal.first_index() > applied + 1 {
            return Err(ServerError::Internal(format!(
                "the log starts at index {} but the newest snapshot covers only up to {applied}: \
                 entries are missing",
                wal.first_index()
            )));
        }
        let storage = LogStorage::new(wal.clone(), conf_state, applied);
        if let Some(meta) = &snapshot {
            storage.set_newest_snapshot(snapshot_metadata(meta));
        }
        let replica = Replica::new(
            ReplicaConfig {
                member_id: config.member_id,
                election_ticks: config.election_ticks,
                election_timeout: config.election_timeout(),
                pre_vote: config.pre_vote,
                seed: random_nonce(),
                stalled_sync_step_down: ReplicaConfig::step_down_after(config.election_timeout()),
            },
            storage,
            members,
            LogIndex::new(applied),
            wal.hard_state(),
        )?;
        let sequencer =
            super::sequencer::Sequencer::new(router, config.max_txn_ops, config.auth.clone());
        if let Some(meta) = &snapshot {
            sequencer.restore(
                Revision::new(meta.revision),
                Revision::new(meta.compact_revision),
            );
            sequencer.restore_leases(&meta.leases);
            sequencer.restore_auth(&meta.auth);
        }
        let alarms = Alarms::from_members(snapshot.iter().flat_map(|meta| meta.alarms.clone()));
        let wal_failures = wal.failed_batches();
        let consensus = Rc::new(Consensus {
            sequencer,
            config,
            wal,
            replica: RefCell::new(replica),
            waiters: RefCell::default(),
            driver_waker: RefCell::new(None),
            applied_waiters: RefCell::new(Vec::new()),
            nonce: random_nonce(),
            next_sequence: Cell::new(1),
            stopped: Cell::new(false),
            synced: RefCell::default(),
            syncing: RefCell::default(),
            unsynced: RefCell::new(crate::replica::unsynced::Unsynced::new(wal_failures)),
            disk_alarm: RefCell::default(),
            snapshot_queue: std::cell::OnceCell::new(),
            alarms: RefCell::new(alarms),
            alarm_change_in_flight: Cell::new(false),
            over_quota_seen: Cell::new(false),
            transport,
            publishing: Cell::new(false),
            proposals_failed: Cell::new(0),
            removed: Cell::new(None),
            lease_expiry_in_flight: Cell::new(false),
        });
        consensus.publish_role();
        consensus.connect_peers();
        if let Some(transport) = &consensus.transport {
            // Joining members ask for the registry through the transport.
            let weak = Rc::downgrade(&consensus);
            transport.set_registry_source(Box::new(move || {
                let mut registry = Vec::new();
                if let Some(consensus) = weak.upgrade() {
                    consensus.replica.borrow().members().encode(&mut registry);
                }
                registry
            }));
        }
        Ok(consensus)
    }

    /// Every member, as the registry has them.
    pub fn replica_members(&self) -> Vec<Member> {
        self.replica.borrow().members().list()
    }

    /// The member with `id`, as the registry has it.
    pub fn member(&self, id: MemberId) -> Option<Member> {
        self.replica.borrow().members().get(id).cloned()
    }

    /// The keys attached to lease `id` in this member's applied state (none if it does not
    /// exist).
    pub fn lease_keys(&self, id: i64) -> Vec<bytes::Bytes> {
        self.sequencer
            .lease_time_to_live(id, true)
            .map(|lease| lease.keys)
            .unwrap_or_default()
    }

    /// The peer transport (`None` for a member without a peer listener).
    pub fn peer_transport(&self) -> Option<&Rc<PeerTransport>> {
        self.transport.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &ConsensusConfig {
        &self.config
    }

    /// Current Raft term.
    pub fn term(&self) -> Term {
        self.replica.borrow().term()
    }

    /// Current leader's ID ([`MemberId::NONE`] when unknown).
    pub fn leader(&self) -> MemberId {
        self.replica.borrow().leader()
    }

    /// Last index of the log.
    pub fn last_index(&self) -> LogIndex {
        LogIndex::new(self.wal.last_index())
    }

    /// Last applied index.
    pub fn applied_index(&self) -> LogIndex {
        self.replica.borrow().applied()
    }

    /// The revision of the last applied write.
    pub fn revision(&self) -> Revision {
        self.sequencer.current_revision()
    }

    /// True while this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.replica.borrow().is_learner()
    }

    /// Publishes the leader this member knows and whether it is a learner to every core
    /// (`SharedRole`): at the end of `carry_out`, which the loop runs right after stepping
    /// ticks and peer messages (where leader changes come from), with no await in between, and
    /// a turn runs after installing a snapshot (a new registry); and when a membership change
    /// is applied (a learner promoted).
    pub(super) fn publish_role(&self) {
        let replica = self.replica.borrow();
        self.config
            .role
            .publish(replica.leader(), replica.is_learner());
    }

    /// A fresh number to file a proposal or a reader under.
    pub(super) fn next_number(&self) -> u64 {
        let number = self.next_sequence.get();
        self.next_sequence.set(number + 1);
        number
    }

    /// Feeds the replica one input now and carries out what it says.
    pub(super) fn step(&self, input: Input) {
        self.replica.borrow_mut().step(Instant::now(), input);
        self.wake_driver();
    }

    pub(super) fn wake_driver(&self) {
        if let Some(waker) = self.driver_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// True once [`Consensus::stop`] was called.
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Stops the driver: queued and in-flight requests fail with "server stopped".
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake_driver();
    }

    /// Runs the Raft loop until [`Consensus::stop`] or a storage failure.
    pub async fn run(self: Rc<Self>) -> Result<(), ServerError> {
        let result = self.drive().await;
        // Let a snapshot being written finish: its file is complete or removed either way.
        while self.replica.borrow_mut().snapshots().in_progress() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        self.fail_everything();
        result
    }

    fn fail_everything(&self) {
        self.replica.borrow_mut().clear();
        let mut waiters = self.waiters.borrow_mut();
        for (_, waiter) in waiters.writes.drain() {
            let _ = waiter.send((
                Err(ServerError::Stopped),
                Decided::without_commit(Instant::now()),
            ));
        }
        for (_, waiter) in waiters.reads.drain() {
            let _ = waiter.send(Err(ServerError::Stopped));
        }
        self.applied_waiters.borrow_mut().clear();
    }

    fn has_work(&self) -> bool {
        if self.stopped.get() || !self.synced.borrow().is_empty() {
            return true;
        }
        if let Some(transport) = &self.transport {
            if transport.inbox().has_messages() || transport.has_snapshot_reports() {
                return true;
            }
        }
        self.replica.borrow().has_work()
    }

    /// Hands the replica what the other members sent, and which peers could not be reached.
    fn step_incoming(&self) {
        let Some(transport) = &self.transport else {
            return;
        };
        let now = Instant::now();
        let mut replica = self.replica.borrow_mut();
        for peer in transport.take_unreachable() {
            replica.step(now, Input::Unreachable(MemberId::new(peer)));
        }
        for (peer, accepted) in transport.take_snapshot_reports() {
            let peer = MemberId::new(peer);
            replica.step(now, Input::SnapshotSent { peer, accepted });
        }
        for message in transport.inbox().take() {
            replica.step(now, Input::Peer(message));
        }
    }

    /// Reports the Readies the log synced, in the order they were made. A write that found
    /// no space is held to be made again (`nospace`); any other failed write stops the node.
    fn report_synced(&self) -> Result<(), ServerError> {
        let synced = std::mem::take(&mut *self.synced.borrow_mut());
        for (number, outcome) in synced {
            self.sync_finished(number, outcome)?;
        }
        Ok(())
    }

    /// Carries out what the replica decided: sends its messages, answers refused proposals and
    /// reads, and acts on leader changes.
    fn carry_out(&self) {
        let outputs = self.replica.borrow_mut().take_outputs();
        if !outputs.send.is_empty() {
            if let Some(transport) = &self.transport {
                transport.send(outputs.send);
            }
        }
        let now = Instant::now();
        {
            let mut waiters = self.waiters.borrow_mut();
            for (sequence, error) in outputs.refused {
                if let Some(waiter) = waiters.writes.remove(&sequence) {
                    let _ = waiter.send((Err(error), Decided::without_commit(now)));
                }
            }
            for (reader, index) in outputs.reads_ready {
                if let Some(waiter) = waiters.reads.remove(&reader) {
                    let _ = waiter.send(Ok(index));
                }
            }
            for (reader, error) in outputs.reads_failed {
                if let Some(waiter) = waiters.reads.remove(&reader) {
                    let _ = waiter.send(Err(error));
                }
            }
        }
        for change in outputs.leader_changes {
            if change.to == self.config.member_id {
                // Keep-alives could not reach anyone during the election: give every lease an
                // election timeout more (capped at its full TTL), as etcd's Promote does.
                // Deadlines otherwise stay what this member applied: a leader change resets
                // nothing.
                self.sequencer
                    .promote_leases(self.config.election_timeout());
            }
        }
        if let Some(report) = outputs.leaderless {
            let replica = self.replica.borrow();
            let unreachable: Vec<String> = report
                .unreachable
                .iter()
                .map(|id| match replica.members().get(*id) {
                    Some(member) => format!("{id:x} at {}", member.peer_urls.join(",")),
                    None => format!("{id:x}"),
                })
                .collect();
            tracing::warn!(
                for_ = ?report.for_,
                ?unreachable,
                "no leader: a quorum of the members cannot be reached (are they started, and are \
                 their peer URLs right?); writes and linearizable reads time out meanwhile"
            );
        }
        self.publish_role();
    }

    /// Readers whose callers gave up (timed out, or their request went away).
    fn withdraw_gone_readers(&self) {
        let mut waiters = self.waiters.borrow_mut();
        let gone: Vec<u64> = waiters
            .reads
            .iter()
            .filter(|(_, waiter)| waiter.is_canceled())
            .map(|(reader, _)| *reader)
            .collect();
        for reader in &gone {
            waiters.reads.remove(reader);
        }
        drop(waiters);
        if !gone.is_empty() {
            self.replica
                .borrow_mut()
                .step(Instant::now(), Input::WithdrawReads(gone));
        }
    }

    async fn drive(self: &Rc<Self>) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.config.heartbeat;
        loop {
            if !self.has_work() && !self.replica.borrow().has_ready() {
                let now = Instant::now();
                if now < next_tick {
                    let work = poll_fn(|cx| {
                        if self.has_work() {
                            Poll::Ready(())
                        } else {
                            *self.driver_waker.borrow_mut() = Some(cx.waker().clone());
                            if let Some(transport) = &self.transport {
                                transport.inbox().wake_on_arrival(cx.waker());
                            }
                            Poll::Pending
                        }
                    });
                    let timer = glommio::timer::Timer::new(next_tick - now);
                    futures::future::select(pin!(work), pin!(timer)).await;
                }
            }
            if self.stopped.get() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_tick {
                self.withdraw_gone_readers();
                self.replica.borrow_mut().step(now, Input::Tick);
                // Syncs that finished while the last turn ran are not stalled ones.
                self.report_synced()?;
                let oldest_sync = self.syncing.borrow().front().map(|(_, started)| *started);
                if let Some(started) = oldest_sync {
                    let stalled = now.saturating_duration_since(started);
                    self.replica
                        .borrow_mut()
                        .step(now, Input::LogSyncStalled(stalled));
                }
                next_tick = now + self.config.heartbeat;
                self.maybe_clear_no_space();
                self.maybe_change_disk_alarm();
                self.maybe_expire_leases();
            }
            self.report_synced()?;
            self.retry_held()?;
            self.step_incoming();
            self.replica
                .borrow_mut()
                .step(Instant::now(), Input::HandOff);
            self.carry_out();
            self.turn().await?;
            self.carry_out();
            self.maybe_snapshot();
            self.maybe_publish();
            if self.removed.get().is_none()
                && self.transport.as_ref().is_some_and(|t| t.told_removed())
            {
                tracing::warn!(
                    "this member was removed from the cluster while it was away: it stops (its \
                     data dir cannot rejoin; add a new member with a fresh one)"
                );
                return Ok(());
            }
            if let Some(at) = self.removed.get() {
                // A few heartbeats carry the commit of the removal to the others first.
                if at.elapsed() >= 3 * self.config.heartbeat {
                    return Ok(());
                }
            }
        }
    }

    /// One turn of raft-rs's Ready protocol, persisting asynchronously: the Ready's entries
    /// and hard state are staged in the log and the Ready handed back to raft-rs at once; a
    /// task waits for the sync, and the loop then reports the Ready persisted, which releases
    /// the messages that vouch for the write. The loop never waits for a disk sync, so ticks,
    /// heartbeats and votes go out on time however slow the disk is, and new proposals are
    /// staged while earlier ones sync (the log batches them into one fdatasync).
    async fn turn(self: &Rc<Self>) -> Result<(), ServerError> {
        let ready_at = Instant::now();
        let Some(mut turn) = self.replica.borrow_mut().begin_turn(ready_at) else {
            return Ok(());
        };
        // Messages to peers go out before persisting: replication runs in parallel with the
        // leader's own fdatasync.
        self.carry_out();
        let snapshot = turn.snapshot().cloned();
        if let Some(snapshot) = &snapshot {
            // The snapshot replaces the log: everything staged before it lands first.
            self.drain_persists().await?;
            self.replica.borrow_mut().snapshot_installing();
            self.install_snapshot(snapshot).await?;
        }
        let committed = self.replica.borrow_mut().take_committed(&mut turn);
        self.carry_out();
        // raft-rs hands out only committed entries that are durable here.
        self.apply_entries(committed, ready_at).await?;
        let plan = self.replica.borrow_mut().persist_plan(&mut turn)?;
        let number = self.replica.borrow_mut().end_turn(turn, Instant::now());
        if snapshot.is_some() {
            // Finished here, in order (nothing else is in flight). Known limit: a full disk
            // here stops the member.
            if let Some(plan) = plan {
                let staged = self
                    .wal
                    .stage_append(&plan.entries, plan.hard_state)
                    .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
                if let Some(staged) = staged {
                    self.wal
                        .wait_staged(staged)
                        .await
                        .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
                }
            }
            self.replica
                .borrow_mut()
                .step(Instant::now(), Input::Persisted(number));
            return Ok(());
        }
        match plan {
            Some(plan) => self.persist(number, plan)?,
            None => self
                .replica
                .borrow_mut()
                .step(Instant::now(), Input::Persisted(number)),
        }
        Ok(())
    }

    /// Waits until every Ready in flight is durable (on a full disk, until a retry succeeds).
    async fn drain_persists(self: &Rc<Self>) -> Result<(), ServerError> {
        loop {
            self.report_synced()?;
            self.retry_held()?;
            if self.replica.borrow().persists_in_flight() == 0 && self.unsynced.borrow().is_empty()
            {
                return Ok(());
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// The outcome of one Ready's sync.
#[derive(Debug)]
pub(super) enum SyncOutcome {
    /// Durable.
    Done,
    /// Nothing of it was written: the disk is full.
    NoSpace,
    /// The log failed otherwise (it is poisoned): the member stops.
    Failed(String),
}
