//! The consensus driver: owns the `RawNode`, the proposal and read queues, and the keyspace the
//! committed entries are applied to. See the module docs of `consensus` for the flow.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, MessageType, Snapshot,
    SnapshotMetadata,
};
use raft::{RawNode, StateRole};

use super::stages::{CommitStages, StageSummary};
use crate::alarm::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType, Alarms};
use crate::api::error::ServerError;
use crate::api::native::{self, LeaseAnswer, LeaseQuery, Request};
use crate::lease::LeaseRequest;
use crate::members::{decode_change, encode_change, Member, MemberChange, MemberError, Members};
use crate::mvcc::request::{ResponseHeader, WriteRequest, WriteResponse};
use crate::mvcc::{validate, KvError};
use crate::peer::transport::PeerTransport;
use crate::replica::entry::{decode_proposal, encode_proposal, to_log_entry, ProposalId};
use crate::replica::logger::raft_logger;
use crate::replica::storage::LogStorage;
use crate::wal::io::LogDir;
use crate::wal::Wal;

/// How the consensus core is set up.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// This member's ID (also its Raft ID); never 0.
    pub member_id: u64,
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
}

impl ConsensusConfig {
    /// The election timeout: `election_ticks` heartbeats.
    pub fn election_timeout(&self) -> Duration {
        self.heartbeat * self.election_ticks.max(1) as u32
    }
}

/// Most committed entries that may wait to be applied before new proposals are refused (etcd's
/// maxGapBetweenApplyAndCommitIndex): a member whose apply falls behind sheds load instead of
/// queueing without bound.
pub const MAX_APPLY_LAG: u64 = 5_000;

/// Most proposals that may wait for a leader (or for the driver's next turn) before new ones
/// are refused: without a leader nothing drains the queue, and each waiting proposal holds its
/// request.
pub const MAX_WAITING_PROPOSALS: usize = 16_384;

/// Bytes of entries the leader may hold uncommitted before raft-rs drops new proposals (etcd's
/// MaxUncommittedEntriesSize); they are answered "too many requests".
pub const MAX_UNCOMMITTED_BYTES: u64 = 1 << 30;

/// Admission of a new proposal, given the committed and applied indexes and how many
/// proposals are already waiting.
fn admit_proposal(committed: u64, applied: u64, waiting: usize) -> Result<(), ServerError> {
    if committed > applied.saturating_add(MAX_APPLY_LAG) || waiting >= MAX_WAITING_PROPOSALS {
        return Err(ServerError::TooManyRequests);
    }
    Ok(())
}

/// A snapshot is taken once the log written since the last one is this many times its size
/// (and `--snapshot-count` entries were applied). Snapshot writes share the disk with the
/// commit path's fdatasyncs (`lode-bench kv`: a snapshot being written cut 256-client puts by
/// up to a quarter on the reference VM), so they are kept to half the log's write volume; the
/// price is a log of up to about twice the keyspace to replay at restart.
const SNAPSHOT_LOG_RATIO: u64 = 2;

/// What applying a proposal answers.
#[derive(Debug)]
pub enum Applied {
    /// A KV write's response.
    Write(WriteResponse),
    /// An alarm change's response.
    Alarm(AlarmResponse),
    /// A membership change's outcome: the registry after it.
    Members(Vec<Member>),
    /// An auth change's answer.
    Auth(crate::auth::request::AuthResponse),
}

/// A Ready whose writes are being made durable.
struct PendingPersist {
    /// raft-rs's number of the Ready.
    number: u64,
    /// Messages to send once it is durable.
    messages: Vec<raft::eraftpb::Message>,
    /// Set by the task waiting for the sync.
    done: Rc<RefCell<Option<Result<(), String>>>>,
    /// The hard state written with it, if any.
    hard_state: Option<crate::wal::format::HardState>,
}

/// What a request task hands the driver to propose.
enum Proposal {
    /// A normal entry's data.
    Entry(Bytes),
    /// A membership change.
    Change(ConfChange),
}

/// Answers a proposal: its outcome and when it was decided.
type WriteWaiter = oneshot::Sender<(Result<Applied, ServerError>, Instant)>;
type ReadWaiter = oneshot::Sender<Result<u64, ServerError>>;

/// Work handed to the driver by request tasks.
#[derive(Default)]
struct Queue {
    /// What to propose, with the sequence number its waiter is filed under and when it was
    /// queued.
    proposals: Vec<(u64, Proposal, Instant)>,
    /// Waiters of proposals not yet applied.
    writes: HashMap<u64, WriteWaiter>,
    /// Reads that want a read index, not yet asked for.
    reads_waiting: Vec<ReadWaiter>,
    /// Read batches asked for, by context.
    /// Read batches asked for, by context: the leader they were asked of, and their readers.
    reads_in_flight: HashMap<u64, (u64, Vec<ReadWaiter>)>,
    next_read_context: u64,
}

/// The consensus core of one node.
pub struct Consensus<D: LogDir> {
    config: ConsensusConfig,
    wal: Rc<Wal<D>>,
    raw: RefCell<RawNode<LogStorage<D>>>,
    sequencer: super::sequencer::Sequencer,
    queue: RefCell<Queue>,
    driver_waker: RefCell<Option<Waker>>,
    applied: Cell<u64>,
    applied_waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    nonce: u64,
    next_sequence: Cell<u64>,
    stopped: Cell<bool>,
    /// Term and vote of the newest hard state known durable.
    durable_term_vote: Cell<(u64, u64)>,
    /// The hard state last staged in the log.
    persisted_hard_state: Cell<crate::wal::format::HardState>,
    /// A newer hard state that differs from the persisted one only in its commit index: it
    /// needs no fdatasync of its own (a lost commit index is recomputed by Raft, as etcd's
    /// `MustSync` reasons), so it rides along with the next append.
    deferred_hard_state: Cell<Option<crate::wal::format::HardState>>,
    /// Applied index of the newest durable snapshot (0 for none).
    last_snapshot: Cell<u64>,
    /// Size of the newest snapshot file.
    last_snapshot_bytes: Cell<u64>,
    /// Bytes of entries applied since the newest snapshot.
    applied_bytes_since_snapshot: Cell<u64>,
    /// True while a snapshot is being written.
    snapshotting: Cell<bool>,
    /// After a failed snapshot, the applied index before which none is tried again.
    snapshot_retry_at: Cell<u64>,
    /// The background task queue snapshots are written from.
    snapshot_queue: std::cell::OnceCell<glommio::TaskQueueHandle>,
    /// The active alarms (changed only by applying alarm entries).
    alarms: RefCell<Alarms>,
    /// True while this node's proposal to raise or clear its NOSPACE alarm is in flight.
    alarm_change_in_flight: Cell<bool>,
    /// The other members (`None` for a single member).
    transport: Option<Rc<PeerTransport>>,
    /// Where commits spend their time.
    stages: RefCell<CommitStages>,
    /// Readies handed back to raft-rs whose writes are not yet known durable, oldest first.
    persists: RefCell<std::collections::VecDeque<PendingPersist>>,
    /// The member registry (changed only by applying membership changes).
    members: RefCell<Members>,
    /// True once this member's name and client URLs are in the registry, or a proposal to put
    /// them there is in flight.
    publishing: Cell<bool>,
    /// The leader as of the last soft state seen.
    last_leader: Cell<u64>,
    /// Times a new leader was seen (etcd's `etcd_server_leader_changes_seen_total`).
    leader_changes_seen: Cell<u64>,
    /// Proposals of this member that failed (timed out, refused, or lost with the leader).
    proposals_failed: Cell<u64>,
    /// Peers found unreachable since the last warning about having no leader.
    unreachable_peers: RefCell<std::collections::BTreeSet<u64>>,
    /// Messages from the peer port that `guard` dropped, and when one was last logged.
    peer_messages_rejected: Cell<u64>,
    last_rejection_logged: Cell<Option<Instant>>,
    /// Since when no leader has been known, and when that was last reported.
    leaderless: Cell<Option<(Instant, Instant)>>,
    /// When this member applied its own removal: it stops shortly after, once the removal has
    /// reached the others.
    removed: Cell<Option<Instant>>,
    /// True while this member's proposal expiring leases is in flight (as leader).
    lease_expiry_in_flight: Cell<bool>,
}

/// Leases the leader expires per second at most (etcd's revoke rate): an expiry deletes every
/// attached key in one revision, so a mass expiry is spread instead of stalling the log.
const LEASE_EXPIRIES_PER_SECOND: u64 = 1000;

/// The voters of Raft's current configuration, ascending.
fn voter_ids<D: LogDir>(raw: &RawNode<LogStorage<D>>) -> Vec<u64> {
    let mut voters: Vec<u64> = raw.raft.prs().conf().voters().ids().iter().collect();
    voters.sort_unstable();
    voters
}

/// Raft's description of a snapshot lode took or installed.
fn snapshot_metadata(meta: &crate::snapshot::SnapshotMeta) -> SnapshotMetadata {
    SnapshotMetadata {
        conf_state: Some(ConfState {
            voters: meta.voters.clone(),
            ..Default::default()
        })
        .into(),
        index: meta.applied_index,
        term: meta.applied_term,
        ..Default::default()
    }
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
    /// A single-member group over `wal`. Committed entries already in the log are applied again
    /// as the driver runs (the keyspace is rebuilt from the log).
    pub fn new(
        config: ConsensusConfig,
        wal: Rc<Wal<D>>,
        router: Rc<crate::shard::route::Router>,
        snapshot: Option<crate::snapshot::SnapshotMeta>,
        transport: Option<Rc<PeerTransport>>,
    ) -> Result<Rc<Consensus<D>>, ServerError> {
        if config.member_id == 0 {
            return Err(ServerError::Internal("member ID 0 is reserved".into()));
        }
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
                            .is_none_or(|meta| meta.voters.contains(&member.id))
                    })
                    .cloned(),
                Default::default(),
            ),
        };
        let (voters, learners) = members.voters_and_learners();
        let single = voters == [config.member_id] && learners.is_empty();
        let conf_state = ConfState {
            voters,
            learners,
            ..Default::default()
        };
        let wal_hard_state = wal.hard_state();
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
        let raft_config = raft::Config {
            id: config.member_id,
            election_tick: config.election_ticks.max(2),
            heartbeat_tick: 1,
            applied,
            check_quorum: true,
            pre_vote: config.pre_vote,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: MAX_UNCOMMITTED_BYTES,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| ServerError::Internal(format!("raft configuration: {e}")))?;
        let mut raw = RawNode::new(&raft_config, storage, &raft_logger())
            .map_err(|e| ServerError::Internal(format!("starting raft: {e}")))?;
        // A single voter elects itself at once; a cluster elects when a timeout runs out.
        if single {
            raw.campaign()
                .map_err(|e| ServerError::Internal(format!("campaign: {e}")))?;
        }
        let sequencer =
            super::sequencer::Sequencer::new(router, config.max_txn_ops, config.auth.clone());
        if let Some(meta) = &snapshot {
            sequencer.restore(meta.revision, meta.compact_revision);
            sequencer.restore_leases(&meta.leases);
            sequencer.restore_auth(&meta.auth);
        }
        let alarms = Alarms::from_members(snapshot.iter().flat_map(|meta| meta.alarms.clone()));
        let consensus = Rc::new(Consensus {
            sequencer,
            config,
            wal,
            raw: RefCell::new(raw),
            queue: RefCell::new(Queue::default()),
            driver_waker: RefCell::new(None),
            applied: Cell::new(applied),
            applied_waiters: RefCell::new(Vec::new()),
            nonce: random_nonce(),
            next_sequence: Cell::new(1),
            stopped: Cell::new(false),
            persisted_hard_state: Cell::new(wal_hard_state),
            durable_term_vote: Cell::new((wal_hard_state.term, wal_hard_state.vote)),
            deferred_hard_state: Cell::new(None),
            last_snapshot: Cell::new(applied),
            last_snapshot_bytes: Cell::new(0),
            applied_bytes_since_snapshot: Cell::new(0),
            snapshotting: Cell::new(false),
            snapshot_retry_at: Cell::new(0),
            snapshot_queue: std::cell::OnceCell::new(),
            alarms: RefCell::new(alarms),
            alarm_change_in_flight: Cell::new(false),
            transport,
            stages: RefCell::new(CommitStages::default()),
            persists: RefCell::default(),
            members: RefCell::new(members),
            publishing: Cell::new(false),
            removed: Cell::new(None),
            unreachable_peers: RefCell::default(),
            peer_messages_rejected: Cell::new(0),
            last_rejection_logged: Cell::new(None),
            last_leader: Cell::new(raft::INVALID_ID),
            leader_changes_seen: Cell::new(0),
            proposals_failed: Cell::new(0),
            leaderless: Cell::new(None),
            lease_expiry_in_flight: Cell::new(false),
        });
        consensus.connect_peers();
        if let Some(transport) = &consensus.transport {
            // Joining members ask for the registry through the transport.
            let weak = Rc::downgrade(&consensus);
            transport.set_registry_source(Box::new(move || {
                let mut registry = Vec::new();
                if let Some(consensus) = weak.upgrade() {
                    consensus.members.borrow().encode(&mut registry);
                }
                registry
            }));
        }
        Ok(consensus)
    }

    /// The member with `id`, as the registry has it.
    pub fn member(&self, id: u64) -> Option<Member> {
        self.members.borrow().get(id).cloned()
    }

    /// The configuration.
    /// The keys attached to lease `id` in this member's applied state (none if it does not
    /// exist).
    pub fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        self.sequencer
            .lease_time_to_live(id, true)
            .map(|lease| lease.keys)
            .unwrap_or_default()
    }

    pub fn config(&self) -> &ConsensusConfig {
        &self.config
    }

    /// Current Raft term.
    pub fn term(&self) -> u64 {
        self.raw.borrow().raft.term
    }

    /// Current leader's ID (0 when unknown).
    pub fn leader(&self) -> u64 {
        self.raw.borrow().raft.leader_id
    }

    /// Last index of the log.
    pub fn last_index(&self) -> u64 {
        self.wal.last_index()
    }

    /// Last applied index.
    pub fn applied_index(&self) -> u64 {
        self.applied.get()
    }

    /// The revision of the last applied write.
    pub fn revision(&self) -> i64 {
        self.sequencer.current_revision()
    }

    fn wake_driver(&self) {
        if let Some(waker) = self.driver_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Proposes a write, answering once it is committed and applied.
    pub async fn write(
        self: &Rc<Self>,
        request: &WriteRequest,
    ) -> Result<WriteResponse, ServerError> {
        validate::check_write(request, self.config.max_txn_ops)?;
        let frame = native::encode_request(0, &Request::Write(request.clone()));
        self.propose_frame(&frame, crate::alarm::write_cost(request), None)
            .await
    }

    /// Proposes a write given as a verified native `RequestFrame` holding it; `cost` is its
    /// cost against the space quota (`alarm::write_cost`). A write that adds data is refused
    /// with etcd's "database space exceeded" while a NOSPACE alarm is active, or when it
    /// would take the keyspace over the quota (which raises the alarm). `auth_revision`: the
    /// auth revision a client's write was authorized at (`None` for the server's own).
    pub async fn propose_frame(
        self: &Rc<Self>,
        frame: &[u8],
        cost: u64,
        auth_revision: Option<u64>,
    ) -> Result<WriteResponse, ServerError> {
        let size = self.keyspace_size();
        if !crate::alarm::admitted(cost, size, self.config.quota_bytes, &self.alarms.borrow()) {
            if !self.alarms.borrow().no_space() {
                tracing::warn!(
                    size,
                    quota = self.config.quota_bytes,
                    "the keyspace reached the space quota: raising NOSPACE"
                );
                self.change_own_alarm(AlarmAction::Activate);
            }
            return Err(KvError::NoSpace.into());
        }
        match self.propose_entry(frame, auth_revision).await? {
            Applied::Write(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "a write was applied as something else".into(),
            )),
        }
    }

    /// etcd's Maintenance.Alarm: GET answers from the applied alarms; ACTIVATE and
    /// DEACTIVATE go through the log.
    pub async fn alarm(&self, request: &AlarmRequest) -> Result<AlarmResponse, ServerError> {
        if request.action == AlarmAction::Get {
            let alarms = self.alarms.borrow_mut().apply(request);
            return Ok(AlarmResponse {
                header: ResponseHeader::at(self.revision()),
                alarms,
            });
        }
        let frame = native::encode_request(0, &Request::Alarm(*request));
        match self.propose_entry(&frame, None).await? {
            Applied::Alarm(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "an alarm was applied as something else".into(),
            )),
        }
    }

    /// An auth change (its password already hashed, never in plain text) or an Authenticate
    /// through the log, stamped with the auth revision it was authorized (or its password
    /// checked) at; answered once applied, with etcd's error if the store refused it.
    pub async fn auth_change(
        &self,
        request: &crate::auth::request::AuthRequest,
        auth_revision: u64,
    ) -> Result<crate::auth::request::AuthResponse, ServerError> {
        let frame = native::encode_request(0, &Request::Auth(request.clone()));
        match self.propose_entry(&frame, Some(auth_revision)).await? {
            Applied::Auth(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "an auth change was applied as something else".into(),
            )),
        }
    }

    /// The counted size of the keyspace (what the quota limits; etcd's db size).
    pub fn keyspace_size(&self) -> u64 {
        // Leases count as etcd counts them, so grants alone cannot grow state past the quota.
        self.sequencer.router().local().keyspace_size()
            + self.sequencer.lease_count() as u64 * crate::alarm::LEASE_GRANT_COST
    }

    /// The active alarms.
    pub fn alarms(&self) -> Vec<crate::alarm::AlarmMember> {
        self.alarms.borrow().members()
    }

    /// Proposes raising or clearing this member's NOSPACE alarm in the background (one change
    /// in flight at a time).
    fn change_own_alarm(self: &Rc<Self>, action: AlarmAction) {
        if self.alarm_change_in_flight.replace(true) {
            return;
        }
        let this = self.clone();
        glommio::spawn_local(async move {
            let request = AlarmRequest {
                action,
                member_id: this.config.member_id,
                alarm: AlarmType::Nospace,
            };
            if let Err(error) = this.alarm(&request).await {
                tracing::warn!(%error, ?action, "changing the NOSPACE alarm failed");
            }
            this.alarm_change_in_flight.set(false);
        })
        .detach();
    }

    /// Clears this member's NOSPACE alarm once compaction has won the space back.
    fn maybe_clear_no_space(self: &Rc<Self>) {
        let raised = self
            .alarms
            .borrow()
            .has(self.config.member_id, AlarmType::Nospace);
        if raised && crate::alarm::space_recovered(self.keyspace_size(), self.config.quota_bytes) {
            tracing::info!(
                size = self.keyspace_size(),
                "the keyspace is back under the space quota: clearing NOSPACE"
            );
            self.change_own_alarm(AlarmAction::Deactivate);
        }
    }

    /// Proposes a verified request frame, stamped with the auth revision a client's request was
    /// authorized at, and waits until it is applied.
    async fn propose_entry(
        &self,
        frame: &[u8],
        auth_revision: Option<u64>,
    ) -> Result<Applied, ServerError> {
        self.refuse_if_learner()?;
        let committed = self.raw.borrow().raft.raft_log.committed;
        let waiting = self.queue.borrow().proposals.len();
        if let Err(error) = admit_proposal(committed, self.applied.get(), waiting) {
            self.proposals_failed.set(self.proposals_failed.get() + 1);
            return Err(error);
        }
        let outcome = self
            .propose(|id| Proposal::Entry(encode_proposal(id, auth_revision, frame)))
            .await;
        if outcome.is_err() {
            self.proposals_failed.set(self.proposals_failed.get() + 1);
        }
        outcome
    }

    /// Adds this member's consensus metrics to a `/metrics` exposition, under etcd's names
    /// where they mean what etcd's do.
    pub fn expose(&self, out: &mut crate::metrics::Exposition) {
        let leader = self.leader();
        let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
        out.gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            &[],
            flag(leader != 0),
        );
        out.gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            &[],
            flag(leader == self.config.member_id),
        );
        out.gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            &[],
            flag(self.is_learner()),
        );
        out.counter(
            "lode_peer_messages_rejected_total",
            "Raft messages from the peer port dropped before Raft saw them (not from a member, \
             or not what a correct member sends).",
            &[],
            self.peer_messages_rejected.get(),
        );
        out.counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            &[],
            self.leader_changes_seen.get(),
        );
        out.gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            &[],
            self.raw.borrow().raft.raft_log.committed as f64,
        );
        out.gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            &[],
            self.applied.get() as f64,
        );
        out.gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            &[],
            self.queue.borrow().writes.len() as f64,
        );
        out.counter(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            &[],
            self.proposals_failed.get(),
        );
        let size = self.keyspace_size() as f64;
        out.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            &[],
            size,
        );
        out.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            &[],
            size,
        );
        if let Some(quota) = self.config.quota_bytes {
            out.gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
                &[],
                quota as f64,
            );
        }
        out.gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            &[],
            self.revision() as f64,
        );
        out.gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            &[("server_id", &format!("{:x}", self.config.member_id))],
            1.0,
        );
        self.stages.borrow().expose(out);
    }

    /// A learner serves only serializable reads and status (etcd's rule).
    fn refuse_if_learner(&self) -> Result<(), ServerError> {
        if self.is_learner() {
            return Err(MemberError::LearnerNotSupported.into());
        }
        Ok(())
    }

    /// True while this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.members
            .borrow()
            .get(self.config.member_id)
            .is_some_and(|member| member.is_learner)
    }

    /// Queues what `make` builds under a fresh proposal ID and waits until it is applied (or
    /// the request timeout runs out).
    async fn propose(
        &self,
        make: impl FnOnce(ProposalId) -> Proposal,
    ) -> Result<Applied, ServerError> {
        self.propose_within(self.config.request_timeout, make).await
    }

    /// `propose`, giving up after `timeout`.
    async fn propose_within(
        &self,
        timeout: Duration,
        make: impl FnOnce(ProposalId) -> Proposal,
    ) -> Result<Applied, ServerError> {
        if self.stopped.get() {
            return Err(ServerError::Stopped);
        }
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence + 1);
        let id = ProposalId {
            proposer: self.config.member_id,
            nonce: self.nonce,
            sequence,
        };
        let (sender, receiver) = oneshot::channel();
        let queued_at = Instant::now();
        let term_at_queue = self.term();
        {
            let mut queue = self.queue.borrow_mut();
            queue.proposals.push((sequence, make(id), queued_at));
            queue.writes.insert(sequence, sender);
        }
        self.wake_driver();
        let expired = glommio::timer::sleep(timeout);
        match futures::future::select(receiver, pin!(expired)).await {
            futures::future::Either::Left((Ok((answer, decided_at)), _)) => {
                let now = Instant::now();
                self.stages.borrow_mut().answered(
                    now.saturating_duration_since(decided_at),
                    now.saturating_duration_since(queued_at),
                );
                answer
            }
            futures::future::Either::Left((Err(_), _)) => Err(ServerError::Stopped),
            futures::future::Either::Right(_) => {
                // A proposal still waiting for a leader is withdrawn (it will never apply); one
                // Raft already has may still commit: the outcome is unknown, as etcd's timeout.
                let mut queue = self.queue.borrow_mut();
                queue.writes.remove(&sequence);
                queue.proposals.retain(|(queued, _, _)| *queued != sequence);
                if self.term() != term_at_queue {
                    Err(ServerError::TimeoutLeaderFailed)
                } else {
                    Err(ServerError::Timeout)
                }
            }
        }
    }

    /// etcd's MemberList: the registry as this member has applied it (after a ReadIndex round
    /// when `linearizable`).
    pub async fn member_list(&self, linearizable: bool) -> Result<Vec<Member>, ServerError> {
        if linearizable {
            self.read_index().await?;
        }
        Ok(self.members.borrow().list())
    }

    /// Proposes a membership change and waits until it is applied; answers the registry after
    /// it. Checked here first against the applied registry (and, on the leader, against the
    /// cluster's health and a learner's progress), and again when applied.
    pub async fn change_members(&self, change: MemberChange) -> Result<Vec<Member>, ServerError> {
        self.change_members_within(change, self.config.request_timeout)
            .await
    }

    /// `change_members`, giving up after `timeout`.
    async fn change_members_within(
        &self,
        change: MemberChange,
        timeout: Duration,
    ) -> Result<Vec<Member>, ServerError> {
        self.refuse_if_learner()?;
        if self.transport.is_none() && matches!(change, MemberChange::Add(_)) {
            return Err(ServerError::Internal(
                "this member does not listen for peers: start it with --listen-peer-urls to \
                 change the cluster's membership"
                    .into(),
            ));
        }
        self.members.borrow().check(&change)?;
        self.check_on_leader(&change)?;
        // URL updates and publications change only the registry; they travel as configuration
        // changes all the same (never applied to raft-rs's configuration), which keeps every
        // membership change in one order, one at a time.
        let (change_type, node_id) = change
            .raft_change()
            .unwrap_or((ConfChangeType::AddNode, change.member_id()));
        let applied = self
            .propose_within(timeout, |id| {
                let mut body = Vec::new();
                encode_change(&change, &mut body);
                let mut conf_change = ConfChange::default();
                conf_change.set_change_type(change_type);
                conf_change.node_id = node_id;
                conf_change.context = encode_proposal(id, None, &body).to_vec().into();
                Proposal::Change(conf_change)
            })
            .await?;
        match applied {
            Applied::Members(members) => Ok(members),
            _ => Err(ServerError::Internal(
                "a membership change was applied as something else".into(),
            )),
        }
    }

    /// etcd's MemberAdd: a new voter or learner at `peer_urls`, with an ID picked here (from
    /// the URLs, the cluster and the time, as etcd picks one); answers it and the registry.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServerError> {
        let mut parsed = Vec::new();
        for url in &peer_urls {
            parsed.push(crate::urls::parse_url(url).map_err(|_| MemberError::BadUrls)?);
        }
        if parsed.is_empty() {
            return Err(MemberError::BadUrls.into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let salt = format!("{:x}{now}{}", self.config.cluster_id, self.nonce);
        let member = Member {
            id: crate::membership::member_id(&parsed, &salt).max(1),
            name: String::new(),
            peer_urls: parsed.iter().map(ToString::to_string).collect(),
            client_urls: Vec::new(),
            is_learner,
        };
        let members = self
            .change_members(MemberChange::Add(member.clone()))
            .await?;
        Ok((member, members))
    }

    /// The checks only the leader can make: a learner is promoted only once it has caught up
    /// (its log within 90% of the leader's, etcd's threshold), and a voter is added or removed
    /// only if enough voters are active to keep a quorum afterwards.
    fn check_on_leader(&self, change: &MemberChange) -> Result<(), ServerError> {
        let raw = self.raw.borrow();
        if raw.raft.state != StateRole::Leader {
            return match change {
                MemberChange::Promote(_) => Err(MemberError::NotLeader.into()),
                _ => Ok(()),
            };
        }
        let progress = raw.raft.prs();
        let leader_matched = progress.get(self.config.member_id).map_or(0, |p| p.matched);
        let voters = voter_ids(&raw);
        let active = |id: &u64| {
            *id == self.config.member_id || progress.get(*id).is_some_and(|p| p.recent_active)
        };
        match change {
            MemberChange::Promote(id) => {
                let matched = progress.get(*id).map_or(0, |p| p.matched);
                if (matched as f64) < leader_matched as f64 * 0.9 {
                    return Err(MemberError::LearnerNotReady.into());
                }
            }
            MemberChange::Add(member) if !member.is_learner => {
                let after = voters.len() + 1;
                let started = voters.iter().filter(|id| active(id)).count();
                // etcd's exception: a one-member cluster may add its second voter (the usual way
                // to grow a cluster restored from a snapshot), though the pair has no quorum
                // until the new member starts.
                let growing_from_one = voters.len() == 1 && started == 1;
                if started < after / 2 + 1 && !growing_from_one {
                    return Err(MemberError::NotEnoughStarted.into());
                }
            }
            MemberChange::Remove(id) if voters.contains(id) => {
                let remaining: Vec<&u64> = voters.iter().filter(|v| *v != id).collect();
                let active_after = remaining.iter().filter(|v| active(v)).count();
                if !remaining.is_empty() && active_after < remaining.len() / 2 + 1 {
                    return Err(MemberError::NotEnoughStarted.into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// etcd's MoveLeader: hands leadership to voter `target` and waits until it has it. Only
    /// the leader serves this.
    pub async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        {
            let mut raw = self.raw.borrow_mut();
            if raw.raft.state != StateRole::Leader {
                return Err(MemberError::NotLeader.into());
            }
            if !voter_ids(&raw).contains(&target) {
                return Err(MemberError::BadLeaderTransferee.into());
            }
            if target == self.config.member_id {
                return Ok(());
            }
            raw.transfer_leader(target);
        }
        self.wake_driver();
        let deadline = Instant::now() + self.config.request_timeout;
        while Instant::now() < deadline {
            if self.leader() == target {
                return Ok(());
            }
            glommio::timer::sleep(self.config.heartbeat / 2).await;
        }
        Err(ServerError::Timeout)
    }

    /// Confirms leadership with a ReadIndex round (batched with every read waiting) and waits
    /// until everything up to the read index is applied; returns the revision a linearizable
    /// read must read at.
    pub async fn read_index(&self) -> Result<i64, ServerError> {
        self.refuse_if_learner()?;
        let read = async {
            let (sender, receiver) = oneshot::channel();
            self.queue.borrow_mut().reads_waiting.push(sender);
            self.wake_driver();
            let index = receiver.await.unwrap_or(Err(ServerError::Stopped))?;
            self.wait_applied(index).await?;
            Ok(self.sequencer.current_revision())
        };
        let expired = glommio::timer::sleep(self.config.request_timeout);
        match futures::future::select(pin!(read), pin!(expired)).await {
            futures::future::Either::Left((answer, _)) => answer,
            // The abandoned waiter is pruned when reads are reissued.
            futures::future::Either::Right(_) => Err(ServerError::Timeout),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ServerError> {
        if self.applied.get() >= index {
            return Ok(());
        }
        let (sender, receiver) = oneshot::channel();
        self.applied_waiters.borrow_mut().push((index, sender));
        receiver.await.map_err(|_| ServerError::Stopped)
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
        while self.snapshotting.get() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        self.fail_everything();
        result
    }

    fn fail_everything(&self) {
        let mut queue = self.queue.borrow_mut();
        for (_, waiter) in queue.writes.drain() {
            let _ = waiter.send((Err(ServerError::Stopped), Instant::now()));
        }
        for waiter in queue.reads_waiting.drain(..) {
            let _ = waiter.send(Err(ServerError::Stopped));
        }
        for (_, (_, waiters)) in queue.reads_in_flight.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(ServerError::Stopped));
            }
        }
        queue.proposals.clear();
        self.applied_waiters.borrow_mut().clear();
    }

    fn has_work(&self) -> bool {
        if self.stopped.get() {
            return true;
        }
        if let Some(transport) = &self.transport {
            if transport.inbox().has_messages() || transport.has_snapshot_reports() {
                return true;
            }
        }
        if self.persist_completed() {
            return true;
        }
        let queue = self.queue.borrow();
        // A membership change the leader holds back (one is in flight) is no work until then.
        let changes_held = {
            let raw = self.raw.borrow();
            raw.raft.state == StateRole::Leader && raw.raft.has_pending_conf()
        };
        let proposals = queue
            .proposals
            .iter()
            .any(|(_, proposal, _)| matches!(proposal, Proposal::Entry(_)) || !changes_held);
        let queued = proposals || !queue.reads_waiting.is_empty();
        queued && self.leader_known()
    }

    /// True when proposals and reads can go to Raft: this member leads, or knows who does
    /// (raft-rs forwards them).
    fn leader_known(&self) -> bool {
        self.raw.borrow().raft.leader_id != raft::INVALID_ID
    }

    /// Hands Raft what the other members sent, and tells it which peers could not be reached.
    fn step_incoming(&self) {
        let Some(transport) = &self.transport else {
            return;
        };
        let mut raw = self.raw.borrow_mut();
        let unreachable = transport.take_unreachable();
        if !unreachable.is_empty() {
            self.unreachable_peers
                .borrow_mut()
                .extend(unreachable.iter().copied());
        }
        for peer in unreachable {
            raw.report_unreachable(peer);
        }
        for (peer, accepted) in transport.take_snapshot_reports() {
            let status = if accepted {
                raft::SnapshotStatus::Finish
            } else {
                raft::SnapshotStatus::Failure
            };
            raw.report_snapshot(peer, status);
        }
        let now = Instant::now();
        let mut stages = self.stages.borrow_mut();
        for message in transport.inbox().take() {
            if message.get_msg_type() == MessageType::MsgAppendResponse {
                if message.reject {
                    stages.append_refused(message.from);
                } else {
                    stages.append_acknowledged(message.from, message.index, now);
                }
            }
            let receiver = super::guard::Receiver {
                id: self.config.member_id,
                last_index: raw.raft.raft_log.last_index(),
            };
            let checked =
                super::guard::check(&message, receiver, |id| raw.raft.prs().get(id).is_some());
            if let Err(rejected) = checked {
                self.peer_messages_rejected
                    .set(self.peer_messages_rejected.get() + 1);
                // At most one line a second: a flood of bad messages must not flood the log.
                let quiet = self
                    .last_rejection_logged
                    .get()
                    .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
                if !quiet {
                    self.last_rejection_logged.set(Some(now));
                    tracing::warn!(
                        from = %format!("{:x}", message.from),
                        kind = ?message.get_msg_type(),
                        total = self.peer_messages_rejected.get(),
                        "dropped a message from the peer port: {rejected}"
                    );
                }
                continue;
            }
            if let Err(error) = raw.step(message) {
                tracing::debug!(%error, "a peer's message was not taken");
            }
        }
    }

    /// Sends Raft's messages to the other members.
    fn send_messages(&self, messages: Vec<raft::eraftpb::Message>) {
        if messages.is_empty() {
            return;
        }
        if let Some(transport) = &self.transport {
            let now = Instant::now();
            let mut stages = self.stages.borrow_mut();
            for message in &messages {
                if message.get_msg_type() == MessageType::MsgAppend {
                    if let Some(last) = message.entries.last() {
                        stages.append_sent(message.to, last.index, now);
                    }
                }
            }
            drop(stages);
            transport.send(messages);
        }
    }

    /// Where this member's commits spent their time, stage by stage.
    pub fn commit_stages(&self) -> Vec<StageSummary> {
        self.stages.borrow().summaries()
    }

    async fn drive(self: &Rc<Self>) -> Result<(), ServerError> {
        let mut next_tick = Instant::now() + self.config.heartbeat;
        loop {
            if !self.has_work() && !self.raw.borrow().has_ready() {
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
                self.raw.borrow_mut().tick();
                next_tick = now + self.config.heartbeat;
                self.reissue_reads();
                self.maybe_clear_no_space();
                self.maybe_expire_leases();
                self.report_leaderless(now);
            }
            self.complete_persists()?;
            self.step_incoming();
            self.hand_work_to_raft();
            self.process_ready().await?;
            self.maybe_snapshot();
            self.maybe_publish();
            self.campaign_if_alone();
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

    /// As leader, proposes the revocation of leases whose deadline passed (one proposal in
    /// flight at a time, at most `LEASE_EXPIRIES_PER_SECOND`).
    fn maybe_expire_leases(self: &Rc<Self>) {
        if self.lease_expiry_in_flight.get()
            || self.stopped.get()
            || self.raw.borrow().raft.state != StateRole::Leader
        {
            return;
        }
        let per_tick = (LEASE_EXPIRIES_PER_SECOND as u128 * self.config.heartbeat.as_millis()
            / 1000)
            .max(1) as usize;
        // A heartbeat of grace: a keep-alive answered by a follower reached its client a
        // network hop after the leader applied it.
        let due = self
            .sequencer
            .expired_leases(per_tick, self.config.heartbeat);
        if due.is_empty() {
            return;
        }
        self.lease_expiry_in_flight.set(true);
        let this = self.clone();
        glommio::spawn_local(async move {
            let count = due.len();
            let expiry = WriteRequest::Lease(LeaseRequest::Expire { leases: due });
            if let Err(error) = this.write(&expiry).await {
                tracing::warn!(%error, count, "expiring leases failed; retried next tick");
            }
            this.lease_expiry_in_flight.set(false);
        })
        .detach();
    }

    /// etcd's LeaseTimeToLive and LeaseLeases, answered after a ReadIndex round so that every
    /// change committed before the request is reflected.
    pub async fn lease_query(&self, query: &LeaseQuery) -> Result<LeaseAnswer, ServerError> {
        let revision = self.read_index().await?;
        let header = ResponseHeader::at(revision);
        match *query {
            LeaseQuery::TimeToLive { id, keys } => {
                Ok(match self.sequencer.lease_time_to_live(id, keys) {
                    Some(lease) => LeaseAnswer::TimeToLive {
                        header,
                        id,
                        ttl: lease.ttl,
                        granted_ttl: lease.granted_ttl,
                        keys: lease.keys,
                    },
                    None => LeaseAnswer::TimeToLive {
                        header,
                        id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    },
                })
            }
            LeaseQuery::Leases => Ok(LeaseAnswer::Leases {
                header,
                ids: self.sequencer.lease_ids(),
            }),
            LeaseQuery::KeepAlive(_) => Err(ServerError::Internal(
                "keep-alives are renewed in batches, not queried".into(),
            )),
        }
    }

    /// Says why, every few seconds, when this member has had no leader for several election
    /// timeouts (peers down, unreachable, or misconfigured), instead of staying silent while
    /// requests time out.
    fn report_leaderless(&self, now: Instant) {
        if self.leader_known() {
            self.leaderless.set(None);
            self.unreachable_peers.borrow_mut().clear();
            return;
        }
        let Some((since, reported)) = self.leaderless.get() else {
            self.leaderless.set(Some((now, now)));
            return;
        };
        let patience = 5 * self.config.election_timeout();
        if now.duration_since(since) < patience || now.duration_since(reported) < patience {
            return;
        }
        self.leaderless.set(Some((since, now)));
        let members = self.members.borrow();
        let unreachable: Vec<String> = std::mem::take(&mut *self.unreachable_peers.borrow_mut())
            .into_iter()
            .map(|id| match members.get(id) {
                Some(member) => format!("{id:x} at {}", member.peer_urls.join(",")),
                None => format!("{id:x}"),
            })
            .collect();
        tracing::warn!(
            for_ = ?now.duration_since(since),
            ?unreachable,
            "no leader: a quorum of the members cannot be reached (are they started, and are \
             their peer URLs right?); writes and linearizable reads time out meanwhile"
        );
    }

    /// The only voter leads at once. raft-rs refuses to campaign while committed membership
    /// changes are not applied yet (at a restart, until the log is replayed), so this is asked
    /// again each turn rather than waiting for an election timeout.
    fn campaign_if_alone(&self) {
        let mut raw = self.raw.borrow_mut();
        if raw.raft.state == StateRole::Leader {
            return;
        }
        let alone = voter_ids(&raw) == [self.config.member_id];
        // Once everything committed is applied (raft-rs would refuse, and say so, before).
        if alone && self.applied.get() >= raw.raft.raft_log.committed {
            let _ = raw.campaign();
        }
    }

    /// Puts this member's name and client URLs in the registry once a leader is known, if
    /// they are not there yet (retried on the next turns if the proposal fails).
    fn maybe_publish(self: &Rc<Self>) {
        if self.publishing.get() || !self.leader_known() {
            return;
        }
        let published = self
            .members
            .borrow()
            .get(self.config.member_id)
            .is_none_or(|member| {
                member.name == self.config.name && member.client_urls == self.config.client_urls
            });
        if published {
            return;
        }
        self.publishing.set(true);
        let this = self.clone();
        glommio::spawn_local(async move {
            let change = MemberChange::Publish {
                id: this.config.member_id,
                name: this.config.name.clone(),
                client_urls: this.config.client_urls.clone(),
            };
            // raft-rs drops a membership change proposed while another is pending (members
            // starting together all publish at once): a short wait, then again.
            let patience = this.config.election_timeout();
            if let Err(error) = this.change_members_within(change, patience).await {
                tracing::debug!(%error, "publishing this member's name and client URLs failed");
                this.publishing.set(false);
            }
        })
        .detach();
    }

    /// Moves queued proposals and reads into the RawNode.
    ///
    /// Work waits in the queue while this node is not the leader (at start, before its own
    /// election completes): raft-rs would drop it.
    fn hand_work_to_raft(&self) {
        if !self.leader_known() {
            return;
        }
        let mut queue = self.queue.borrow_mut();
        let mut raw = self.raw.borrow_mut();
        let now = Instant::now();
        let mut stages = self.stages.borrow_mut();
        let mut held = Vec::new();
        for (sequence, proposal, queued_at) in std::mem::take(&mut queue.proposals) {
            let proposed = match proposal {
                Proposal::Entry(data) => raw.propose(Vec::new(), data.to_vec()),
                // raft-rs takes one membership change at a time and turns a second into an
                // empty entry (its proposer would never hear back): the leader holds it until
                // the one in flight is applied.
                Proposal::Change(change)
                    if raw.raft.state == StateRole::Leader && raw.raft.has_pending_conf() =>
                {
                    held.push((sequence, Proposal::Change(change), queued_at));
                    continue;
                }
                Proposal::Change(change) => raw.propose_conf_change(Vec::new(), change),
            };
            stages.proposal_queued(now.saturating_duration_since(queued_at));
            if proposed.is_err() {
                // A leader drops a proposal only past its uncommitted bound (or while it hands
                // leadership over): that is load to shed, not a missing leader.
                let error =
                    if raw.raft.state == StateRole::Leader && raw.raft.lead_transferee.is_none() {
                        ServerError::TooManyRequests
                    } else {
                        ServerError::NoLeader
                    };
                if let Some(waiter) = queue.writes.remove(&sequence) {
                    let _ = waiter.send((Err(error), now));
                }
            }
        }
        queue.proposals = held;
        if !queue.reads_waiting.is_empty() {
            let context = queue.next_read_context;
            queue.next_read_context += 1;
            let batch = std::mem::take(&mut queue.reads_waiting);
            let leader = raw.raft.leader_id;
            queue.reads_in_flight.insert(context, (leader, batch));
            raw.read_index(context.to_le_bytes().to_vec());
        }
    }

    /// Writes a fresh snapshot of the whole keyspace at the current applied index to an export
    /// file in the snapshot directory and returns its path and revision (etcd's
    /// Maintenance.Snapshot, behind `lodectl snapshot save`). The caller streams the file and
    /// removes it; export files left by a crash are removed at the next start.
    pub async fn snapshot_export(&self) -> Result<(std::path::PathBuf, i64), ServerError> {
        let export_number = self.next_sequence.get();
        self.next_sequence.set(export_number + 1);
        let dir = &self.config.snapshot_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!(
            "{}{}-{export_number}.snap",
            super::snapshotter::EXPORT_PREFIX,
            self.nonce
        ));
        loop {
            let applied = self.applied.get();
            let meta = self.snapshot_meta(applied, self.wal.term(applied).unwrap_or(0));
            if super::snapshotter::write(&path, &meta, self.sequencer.router()).await? {
                return Ok((path, meta.revision));
            }
            // A compaction moved meanwhile: cut again.
        }
    }

    /// What a snapshot taken now at `applied` (of `applied_term`) describes.
    fn snapshot_meta(&self, applied: u64, applied_term: u64) -> crate::snapshot::SnapshotMeta {
        let voters = voter_ids(&self.raw.borrow());
        crate::snapshot::SnapshotMeta {
            applied_index: applied,
            applied_term,
            revision: self.sequencer.current_revision(),
            compact_revision: self.sequencer.compact_revision(),
            voters,
            alarms: self.alarms(),
            members: Some(self.members.borrow().clone()),
            leases: self.sequencer.export_leases(),
            auth: self.sequencer.export_auth(),
        }
    }

    /// Starts a snapshot in the background once `snapshot_count` entries were applied since the
    /// last one; when it is durable, the log is compacted up to `snapshot_catchup_entries`
    /// behind it.
    fn maybe_snapshot(self: &Rc<Self>) {
        let applied = self.applied.get();
        // A snapshot rewrites the whole retained keyspace; taking one only once the log has grown
        // by SNAPSHOT_LOG_RATIO times its size bounds the extra writes to 1/SNAPSHOT_LOG_RATIO
        // of the log's own, and the log kept to about that many times the keyspace.
        if self.snapshotting.get()
            || self.config.snapshot_count == 0
            || applied < self.snapshot_retry_at.get()
            || applied < self.last_snapshot.get() + self.config.snapshot_count
            || self.applied_bytes_since_snapshot.get()
                < SNAPSHOT_LOG_RATIO * self.last_snapshot_bytes.get()
        {
            return;
        }
        let Ok(applied_term) = self.wal.term(applied) else {
            return;
        };
        let meta = self.snapshot_meta(applied, applied_term);
        self.snapshotting.set(true);
        let this = self.clone();
        let background = *self.snapshot_queue.get_or_init(|| {
            // One queue for every snapshot of this node's life (queues are never reclaimed).
            glommio::executor().create_task_queue(
                glommio::Shares::Static(100),
                glommio::Latency::NotImportant,
                "snapshot",
            )
        });
        let task = async move {
            let started = Instant::now();
            match super::snapshotter::take(
                &this.config.snapshot_dir,
                &meta,
                this.sequencer.router(),
            )
            .await
            {
                Ok(true) => {
                    this.last_snapshot.set(meta.applied_index);
                    this.applied_bytes_since_snapshot.set(0);
                    let path = this
                        .config
                        .snapshot_dir
                        .join(super::snapshotter::snapshot_file_name(meta.applied_index));
                    this.last_snapshot_bytes
                        .set(std::fs::metadata(path).map_or(0, |m| m.len()));
                    tracing::info!(
                        index = meta.applied_index,
                        revision = meta.revision,
                        elapsed = ?started.elapsed(),
                        "snapshot written"
                    );
                    this.raw
                        .borrow()
                        .store()
                        .set_newest_snapshot(snapshot_metadata(&meta));
                    // A member that falls behind the compacted log is sent this snapshot.
                    let compact_to = meta
                        .applied_index
                        .saturating_sub(this.config.snapshot_catchup_entries);
                    if compact_to > this.wal.compacted().0 {
                        if let Err(error) = this.wal.compact(compact_to).await {
                            tracing::error!(%error, "compacting the log after a snapshot failed");
                        }
                    }
                }
                Ok(false) => tracing::info!("snapshot abandoned: a compaction ran meanwhile"),
                Err(error) => {
                    // Tried again only after as many entries as between snapshots.
                    this.snapshot_retry_at
                        .set(meta.applied_index + this.config.snapshot_count);
                    tracing::error!(%error, "writing a snapshot failed")
                }
            }
            this.snapshotting.set(false);
        };
        if glommio::spawn_local_into(task, background)
            .map(|t| t.detach())
            .is_err()
        {
            self.snapshotting.set(false);
        }
    }

    /// Asks again for read indexes still unanswered after a tick (a read state is lost when
    /// leadership changes hands in between).
    fn reissue_reads(&self) {
        {
            // Reads whose callers gave up (timed out) are not asked for again.
            let mut queue = self.queue.borrow_mut();
            queue.reads_waiting.retain(|waiter| !waiter.is_canceled());
            queue.reads_in_flight.retain(|_, (_, waiters)| {
                waiters.retain(|waiter| !waiter.is_canceled());
                !waiters.is_empty()
            });
        }
        if !self.leader_known() {
            return;
        }
        let mut raw = self.raw.borrow_mut();
        let leader = raw.raft.leader_id;
        let mut queue = self.queue.borrow_mut();
        for (context, (asked_of, _)) in queue.reads_in_flight.iter_mut() {
            *asked_of = leader;
            raw.read_index(context.to_le_bytes().to_vec());
        }
    }

    /// One turn of raft-rs's Ready protocol, persisting asynchronously: the Ready's entries
    /// and hard state are staged in the log and the Ready handed back to raft-rs at once
    /// (`advance_append_async`); a task waits for the sync, and `complete_persists` then tells
    /// raft-rs (`on_persist_ready`) and sends the messages that vouch for the write. The loop
    /// never waits for a disk sync, so ticks, heartbeats and votes go out on time however slow
    /// the disk is, and new proposals are staged while earlier ones sync (the log batches
    /// them into one fdatasync).
    async fn process_ready(self: &Rc<Self>) -> Result<(), ServerError> {
        let mut ready = {
            let mut raw = self.raw.borrow_mut();
            if !raw.has_ready() {
                return Ok(());
            }
            raw.ready()
        };
        let ready_at = Instant::now();
        // Messages to peers go out before persisting: replication runs in parallel with the
        // leader's own fdatasync.
        self.send_messages(ready.take_messages());
        let installs_snapshot = !ready.snapshot().is_empty();
        if installs_snapshot {
            // The snapshot replaces the log: everything staged before it lands first.
            self.drain_persists().await?;
            self.raw.borrow().store().clear_in_flight();
            self.install_snapshot(ready.snapshot()).await?;
        }
        if ready.ss().is_some() {
            self.on_soft_state_change();
        }
        // raft-rs hands out only committed entries that are durable here.
        self.apply_entries(ready.take_committed_entries(), ready_at)
            .await?;
        for state in ready.take_read_states() {
            self.resolve_read(&state.request_ctx, state.index);
        }
        let entries = ready
            .entries()
            .iter()
            .map(to_log_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let mut hard_state = ready
            .hs()
            .map(|hs| crate::wal::format::HardState::from(hs.clone()));
        let written = self.persisted_hard_state.get();
        if let Some(hs) = hard_state {
            if entries.is_empty() && hs.term == written.term && hs.vote == written.vote {
                self.deferred_hard_state.set(Some(hs));
                hard_state = None;
            }
        }
        let mut staged = None;
        let mut staged_hard_state = None;
        if !entries.is_empty() || hard_state.is_some() {
            let hard_state = hard_state.or(self.deferred_hard_state.get());
            staged_hard_state = hard_state;
            staged = self
                .wal
                .stage_append(&entries, hard_state)
                .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
            if let Some(hs) = hard_state {
                self.persisted_hard_state.set(hs);
                self.deferred_hard_state.set(None);
            }
        }
        let number = ready.number();
        // Votes and a follower's acknowledgements go out only once what they vouch for is
        // durable. A heartbeat response vouches only for the follower's term (and carries the
        // ReadIndex context): it goes out at once when that term is already durable, so a
        // slow sync of entries never makes the leader lose its quorum (check-quorum) or delays
        // linearizable reads.
        let mut messages = ready.take_persisted_messages();
        let term_durable = {
            let raw = self.raw.borrow();
            self.durable_term_vote.get() == (raw.raft.term, raw.raft.vote)
        };
        if term_durable {
            let (now, later): (Vec<_>, Vec<_>) = messages
                .into_iter()
                .partition(|m| m.get_msg_type() == MessageType::MsgHeartbeatResponse);
            self.send_messages(now);
            messages = later;
        }
        if installs_snapshot {
            // raft-rs counts a snapshot applied only once it is persisted: this Ready is
            // finished here, in order (nothing else is in flight).
            self.raw.borrow_mut().advance_append_async(ready);
            if let Some(staged) = staged {
                self.wal
                    .wait_staged(staged)
                    .await
                    .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
            }
            if let Some(hs) = staged_hard_state {
                self.durable_term_vote.set((hs.term, hs.vote));
            }
            {
                let mut raw = self.raw.borrow_mut();
                raw.on_persist_ready(number);
                raw.store().persisted();
                raw.advance_apply();
            }
            self.send_messages(messages);
            return Ok(());
        }
        {
            let mut raw = self.raw.borrow_mut();
            // raft-rs reads these entries back before they are durable.
            raw.store().stage(ready.entries());
            raw.advance_append_async(ready);
            raw.advance_apply();
        }
        let done: Rc<RefCell<Option<Result<(), String>>>> = Rc::default();
        match staged {
            Some(staged) => {
                let (this, done) = (self.clone(), done.clone());
                let as_leader = self.raw.borrow().raft.state == StateRole::Leader;
                let has_entries = !entries.is_empty();
                let started = Instant::now();
                glommio::spawn_local(async move {
                    let result = this.wal.wait_staged(staged).await;
                    if has_entries && result.is_ok() {
                        this.stages
                            .borrow_mut()
                            .log_synced(as_leader, started.elapsed());
                    }
                    *done.borrow_mut() = Some(result.map_err(|e| e.to_string()));
                    this.wake_driver();
                })
                .detach();
            }
            None => *done.borrow_mut() = Some(Ok(())),
        }
        self.persists.borrow_mut().push_back(PendingPersist {
            number,
            messages,
            done,
            hard_state: staged_hard_state,
        });
        Ok(())
    }

    /// True when the oldest Ready in flight is durable.
    fn persist_completed(&self) -> bool {
        self.persists
            .borrow()
            .front()
            .is_some_and(|pending| pending.done.borrow().is_some())
    }

    /// Tells raft-rs about every Ready now durable, oldest first, and sends the messages that
    /// waited for it. A failed write stops the node.
    fn complete_persists(&self) -> Result<(), ServerError> {
        while self.persist_completed() {
            let Some(pending) = self.persists.borrow_mut().pop_front() else {
                break;
            };
            if let Some(Err(error)) = pending.done.borrow_mut().take() {
                return Err(ServerError::Internal(format!("log: {error}")));
            }
            if let Some(hs) = pending.hard_state {
                self.durable_term_vote.set((hs.term, hs.vote));
            }
            {
                let mut raw = self.raw.borrow_mut();
                raw.on_persist_ready(pending.number);
                raw.store().persisted();
            }
            self.send_messages(pending.messages);
        }
        Ok(())
    }

    /// Waits until every Ready in flight is durable.
    async fn drain_persists(&self) -> Result<(), ServerError> {
        loop {
            self.complete_persists()?;
            if self.persists.borrow().is_empty() {
                return Ok(());
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Installs a snapshot the leader sent (this member was behind its log): the transport
    /// already made the file durable as `received-<index>.snap`. The shards are replaced from
    /// it, then it becomes this member's newest snapshot, and only then does the log forget
    /// what it covers (a crash in between restarts from the snapshot: see
    /// `snapshotter::reconcile_log`).
    async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let metadata = snapshot.get_metadata();
        let (index, term) = (metadata.index, metadata.term);
        // A snapshot of this member's own being written would describe the old state.
        while self.snapshotting.get() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let dir = &self.config.snapshot_dir;
        let path = dir.join(super::snapshotter::received_file_name(index));
        let meta = super::snapshotter::load(&path, self.sequencer.router()).await?;
        if (meta.applied_index, meta.applied_term) != (index, term) {
            return Err(ServerError::Internal(format!(
                "{} holds index {} term {}, Raft installs index {index} term {term}",
                path.display(),
                meta.applied_index,
                meta.applied_term
            )));
        }
        let size = super::snapshotter::keep_received(dir, index).await?;
        self.wal
            .reset_to_snapshot(index, term)
            .await
            .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
        self.sequencer.restore(meta.revision, meta.compact_revision);
        self.sequencer.restore_leases(&meta.leases);
        self.sequencer.restore_auth(&meta.auth);
        *self.alarms.borrow_mut() = Alarms::from_members(meta.alarms.iter().cloned());
        if let Some(members) = meta.members.clone() {
            *self.members.borrow_mut() = members;
            self.connect_peers();
        }
        self.applied.set(index);
        self.last_snapshot.set(index);
        self.last_snapshot_bytes.set(size);
        self.applied_bytes_since_snapshot.set(0);
        {
            let raw = self.raw.borrow();
            raw.store()
                .set_conf_state(metadata.get_conf_state().clone());
            raw.store().set_newest_snapshot(metadata.clone());
        }
        crate::shard::release_waiters(&self.applied_waiters, index);
        tracing::info!(
            index,
            term,
            revision = meta.revision,
            bytes = size,
            elapsed = ?started.elapsed(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Leadership moved (or this member's role changed): ReadIndex rounds in flight will never
    /// be answered (raft-rs drops pending read requests with the old leadership), so their
    /// readers fail at once with etcd's "leader changed" and may retry, instead of waiting out
    /// the request timeout.
    fn on_soft_state_change(&self) {
        let leader = self.leader();
        if leader == self.last_leader.replace(leader) {
            return;
        }
        if leader != 0 {
            self.leader_changes_seen
                .set(self.leader_changes_seen.get() + 1);
        }
        if leader == self.config.member_id {
            // Keep-alives could not reach anyone during the election: give every lease an
            // election timeout more (capped at its full TTL), as etcd's Promote does. Deadlines
            // otherwise stay what this member applied: a leader change resets nothing.
            self.sequencer
                .promote_leases(self.config.election_timeout());
        }
        // Only rounds asked of another leader: a round may already have gone to the leader
        // this soft state announces (it was known from its messages before this Ready).
        let mut abandoned: Vec<ReadWaiter> = Vec::new();
        self.queue
            .borrow_mut()
            .reads_in_flight
            .retain(|_, (asked_of, waiters)| {
                if *asked_of == leader {
                    return true;
                }
                abandoned.append(waiters);
                false
            });
        for waiter in abandoned {
            let _ = waiter.send(Err(ServerError::LeaderChanged));
        }
    }

    fn resolve_read(&self, context: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else {
            return;
        };
        let batch = self
            .queue
            .borrow_mut()
            .reads_in_flight
            .remove(&u64::from_le_bytes(bytes));
        for waiter in batch.into_iter().flat_map(|(_, waiters)| waiters) {
            let _ = waiter.send(Ok(index));
        }
    }

    /// Applies committed entries raft-rs reported at `committed_at`.
    async fn apply_entries(
        &self,
        entries: Vec<Entry>,
        committed_at: Instant,
    ) -> Result<(), ServerError> {
        if entries.is_empty() {
            return Ok(());
        }
        for entry in entries {
            match entry.entry_type {
                EntryType::EntryNormal => self.apply_proposal(&entry).await,
                EntryType::EntryConfChange => {
                    let change: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.apply_member_change(change)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let change: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.apply_conf_change(Ok(change))?;
                }
            }
            self.applied.set(entry.index);
            self.applied_bytes_since_snapshot
                .set(self.applied_bytes_since_snapshot.get() + entry.data.len() as u64);
        }
        self.sequencer.publish(self.term()).await?;
        self.stages.borrow_mut().applied(committed_at.elapsed());
        crate::shard::release_waiters(&self.applied_waiters, self.applied.get());
        Ok(())
    }

    /// Applies a membership change entry: the registry first (which may refuse it, the same
    /// way on every member), then Raft's configuration and the transport.
    fn apply_member_change(&self, conf_change: ConfChange) -> Result<(), ServerError> {
        let context = Bytes::from(conf_change.context.to_vec());
        let decoded = decode_proposal(&context).and_then(|proposal| {
            decode_change(&proposal.frame).map(|change| (proposal.id, change))
        });
        let Some((id, change)) = decoded else {
            // Not one of lode's (none are made elsewhere): Raft's configuration only.
            return self.apply_conf_change(Err(conf_change));
        };
        let result = self.members.borrow_mut().apply(&change);
        if result.is_ok() {
            // A leader applying its own removal keeps its own Raft configuration as it is for
            // the few heartbeats before it stops: raft-rs expects a leader to track its own
            // progress (it panics persisting entries otherwise). The others apply the removal;
            // what this leader commits meanwhile stays safe: configurations one change apart
            // have overlapping majorities, so an entry on a majority of the old one is on some
            // member of every majority of the new one, and Raft's vote rule keeps it.
            let removing_self_as_leader = change == MemberChange::Remove(self.config.member_id)
                && self.raw.borrow().raft.state == StateRole::Leader;
            if change.raft_change().is_some() && !removing_self_as_leader {
                self.apply_conf_change(Err(conf_change))?;
            }
            self.after_member_change(&change);
        } else {
            tracing::info!(?change, ?result, "membership change refused when applied");
        }
        if id.proposer == self.config.member_id && id.nonce == self.nonce {
            if let Some(waiter) = self.queue.borrow_mut().writes.remove(&id.sequence) {
                let answer = result
                    .map(|()| Applied::Members(self.members.borrow().list()))
                    .map_err(ServerError::from);
                let _ = waiter.send((answer, Instant::now()));
            }
        }
        Ok(())
    }

    /// Points the transport at every other member of the registry, and away from removed ones.
    fn connect_peers(&self) {
        let Some(transport) = &self.transport else {
            return;
        };
        let members = self.members.borrow().clone();
        for member in members.list() {
            if member.id != self.config.member_id {
                self.connect_peer(transport, &member);
            }
        }
        for id in members.removed() {
            transport.remove_peer(*id);
            transport.refuse_removed(*id);
        }
    }

    fn connect_peer(&self, transport: &Rc<PeerTransport>, member: &Member) {
        let address = member
            .peer_urls
            .first()
            .ok_or_else(|| "no peer URL".to_string())
            .and_then(|url| crate::urls::parse_url(url))
            .and_then(|url| {
                Ok(crate::peer::transport::PeerAddress {
                    address: url.socket_address()?.to_string(),
                    host: url.host,
                    tls: url.tls,
                })
            });
        match address {
            Ok(address) => transport.set_peer(member.id, address),
            Err(error) => {
                tracing::error!(member = %format!("{:x}", member.id), %error, "cannot reach a member")
            }
        }
    }

    /// What an applied membership change means for this member.
    fn after_member_change(&self, change: &MemberChange) {
        tracing::info!(?change, "membership changed");
        let own = self.config.member_id;
        match change {
            MemberChange::Remove(id) if *id == own => {
                tracing::warn!(
                    "this member was removed from the cluster: it stops (its data dir cannot \
                     rejoin; add a new member with a fresh one)"
                );
                self.removed.set(Some(Instant::now()));
            }
            MemberChange::Remove(id) => {
                if let Some(transport) = &self.transport {
                    transport.remove_peer(*id);
                    transport.refuse_removed(*id);
                }
            }
            MemberChange::Add(member) if member.id != own => {
                if let Some(transport) = &self.transport {
                    self.connect_peer(transport, member);
                }
            }
            MemberChange::Update { id, .. } if *id != own => {
                let member = self.members.borrow().get(*id).cloned();
                if let (Some(transport), Some(member)) = (&self.transport, member) {
                    self.connect_peer(transport, &member);
                }
            }
            _ => {}
        }
    }

    fn apply_conf_change(
        &self,
        change: Result<ConfChangeV2, ConfChange>,
    ) -> Result<(), ServerError> {
        let mut raw = self.raw.borrow_mut();
        let conf_state = match change {
            Ok(v2) => raw.apply_conf_change(&v2),
            Err(v1) => raw.apply_conf_change(&v1),
        }
        .map_err(|e| ServerError::Internal(format!("conf change: {e}")))?;
        raw.store().set_conf_state(conf_state);
        Ok(())
    }

    async fn apply_proposal(&self, entry: &Entry) {
        if entry.data.is_empty() {
            return; // a new leader's empty entry
        }
        let Some(proposal) = decode_proposal(&entry.data) else {
            tracing::error!(index = entry.index, "entry data is not a proposal; skipped");
            return;
        };
        let id = proposal.id;
        let decoded = native::decode_request(&proposal.frame);
        let result = match (decoded, self.sequencer.admits(proposal.auth_revision)) {
            (Ok(_), Err(refused)) => Err(ServerError::from(refused)),
            (Ok((_, Request::Write(request))), Ok(())) => {
                self.sequencer.apply(&request).await.map(Applied::Write)
            }
            (Ok((_, Request::Auth(request))), Ok(())) => {
                let applied = if request.kind == crate::auth::request::AuthKind::Authenticate {
                    self.sequencer.apply_authenticate(
                        &request.name,
                        &request.token_prefix,
                        entry.index,
                    )
                } else {
                    self.sequencer.apply_auth(&request)
                };
                applied.map(|mut response| {
                    response.header = ResponseHeader::at(self.revision());
                    Applied::Auth(response)
                })
            }
            (Ok((_, Request::Alarm(request))), Ok(())) => {
                let alarms = self.alarms.borrow_mut().apply(&request);
                Ok(Applied::Alarm(AlarmResponse {
                    header: ResponseHeader::at(self.revision()),
                    alarms,
                }))
            }
            (Ok(_), Ok(())) | (Err(_), _) => {
                tracing::error!(index = entry.index, "entry holds no write request; skipped");
                Err(ServerError::Internal("malformed log entry".into()))
            }
        };
        if id.proposer == self.config.member_id && id.nonce == self.nonce {
            if let Some(waiter) = self.queue.borrow_mut().writes.remove(&id.sequence) {
                let _ = waiter.send((result, Instant::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_refused_while_apply_lags_commit_too_far() {
        assert!(admit_proposal(0, 0, 0).is_ok());
        assert!(admit_proposal(MAX_APPLY_LAG + 10, 10, 0).is_ok());
        let refused = admit_proposal(MAX_APPLY_LAG + 11, 10, 0).unwrap_err();
        assert_eq!(refused.to_string(), "etcdserver: too many requests");
        assert_eq!(refused.grpc_code(), native::GRPC_RESOURCE_EXHAUSTED);
        // Applied ahead of committed (a snapshot installed) is never refused.
        assert!(admit_proposal(5, 100, 0).is_ok());
    }

    #[test]
    fn proposals_are_refused_while_too_many_wait() {
        assert!(admit_proposal(0, 0, MAX_WAITING_PROPOSALS - 1).is_ok());
        let refused = admit_proposal(0, 0, MAX_WAITING_PROPOSALS).unwrap_err();
        assert_eq!(refused.to_string(), "etcdserver: too many requests");
    }
}
