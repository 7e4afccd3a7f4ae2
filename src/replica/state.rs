//! The replica: one member's consensus state, driven by inputs, answering with outputs. No
//! I/O, no clock, no executor: time comes in with every input (`now`), the log is read
//! through raft-rs's `Storage` (`LogStorage`, over the log's file seam), and everything the
//! world must do (send, persist, apply, answer) comes out for the shell to carry out.
//!
//! ```text
//!            inputs                                        outputs
//!  Tick, Peer(msg), Unreachable ──┐                    ┌──▶ send: messages to peers
//!  Propose, Withdraw, Read ───────┤                    ├──▶ refused: proposals raft-rs dropped
//!  Persisted(ready n) ────────────┼──▶ step(now, ..) ──┼──▶ reads_ready / reads_failed
//!  HandOff, TransferLeader, ──────┘        │           ├──▶ leader_changes, leaderless
//!  LogSyncStalled, LogNoSpace,             │           │
//!  LogWritten
//!                                          ▼           │
//!                         turn: begin_turn ─▶ [snapshot to install] ─▶ committed(): entries
//!                               to apply ─▶ persist_plan(): entries + hard state to stage
//!                               ─▶ end_turn(): the Ready handed back, its number to report
//!                                  as Persisted once the log synced it
//! ```
//!
//! The turn itself is `state/turn`; membership as the replica applies and checks it is
//! `state/members`. Invariants checked there: entries are applied one by one in index order and
//! never past the commit index; a Ready's vouching messages are released only after it is
//! durable, in order.

use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType, SnapshotMetadata};
use raft::{RawNode, StateRole};

use super::disk::LogSpace;
use super::leadership::{LeaderChange, Leaderless, Leadership};
use super::logger::raft_logger;
use super::peers::PeerHealth;
use super::persist::Persistence;
use super::proposals::{self, Proposal, ProposalQueue, Waiting, MAX_UNCOMMITTED_BYTES};
use super::random::Random;
use super::reads::ReadQueue;
use super::snapshots::SnapshotSchedule;
use super::stages::CommitStages;
use super::storage::LogStorage;
use crate::api::error::ServerError;
use crate::ids::{LogIndex, MemberId, Term};
use crate::members::{MemberError, Members};
use crate::wal::format::HardState;
use crate::wal::io::LogDir;

mod members;
mod turn;

pub use members::{raft_snapshot_metadata, snapshot_metadata, MemberApplied};
pub use turn::{PersistPlan, Turn};

/// How a replica is set up.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This member's ID (also its Raft ID); never [`MemberId::NONE`].
    pub member_id: MemberId,
    /// Ticks without a leader before an election.
    pub election_ticks: usize,
    /// The election timeout those ticks make.
    pub election_timeout: Duration,
    /// Raft's pre-vote.
    pub pre_vote: bool,
    /// Where the replica's random choices (election timeouts) come from.
    pub seed: u64,
    /// A leader whose log sync has not finished for this long hands leadership over.
    pub stalled_sync_step_down: Duration,
}

impl ReplicaConfig {
    /// How long a leader's log sync may hang before it steps down, for `election_timeout`:
    /// five election timeouts, and at least five seconds. A slow disk (syncs of a second or
    /// two) costs no election: heartbeats never wait for a sync. A disk that stops answering
    /// for this long is broken, not slow.
    pub fn step_down_after(election_timeout: Duration) -> Duration {
        (5 * election_timeout).max(Duration::from_secs(5))
    }
}

/// What the world tells the replica.
#[derive(Debug)]
pub enum Input {
    /// A heartbeat interval passed.
    Tick,
    /// A message from a peer.
    Peer(Message),
    /// A peer could not be reached.
    Unreachable(MemberId),
    /// Sending a snapshot to `peer` ended.
    SnapshotSent {
        /// The peer.
        peer: MemberId,
        /// True when it took it.
        accepted: bool,
    },
    /// A proposal to queue (already admitted: see [`Replica::admit`]).
    Propose(Waiting),
    /// A proposal's caller gave up.
    Withdraw(u64),
    /// A reader wants a read index.
    Read(u64),
    /// Readers that gave up.
    WithdrawReads(Vec<u64>),
    /// Hand queued proposals and reads to Raft (once a leader is known); the only voter
    /// campaigns first.
    HandOff,
    /// The writes of Ready `n` are durable.
    Persisted(u64),
    /// Hand leadership to this voter (checked first: [`Replica::check_transfer`]).
    TransferLeader(MemberId),
    /// The oldest log sync still running started this long ago.
    LogSyncStalled(Duration),
    /// A write to the log (first or retried) failed for lack of space: nothing of it was
    /// written. The shell keeps the Readies not yet durable and writes them again, in order,
    /// when [`Replica::log_retry_due`] says so; a leader hands leadership over at once.
    LogNoSpace,
    /// A write to the log succeeded after one found no space.
    LogWritten,
}

/// What the world must do, gathered since it was last taken.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Messages for peers, in order.
    pub send: Vec<Message>,
    /// Proposals raft-rs dropped: answer them with the error.
    pub refused: Vec<(u64, ServerError)>,
    /// Readers whose read index is known: (reader, index).
    pub reads_ready: Vec<(u64, LogIndex)>,
    /// Readers whose round was lost.
    pub reads_failed: Vec<(u64, ServerError)>,
    /// Leader changes seen.
    pub leader_changes: Vec<LeaderChange>,
    /// No leader for a while: say why.
    pub leaderless: Option<Leaderless>,
}

impl Outputs {
    /// True when nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
            && self.refused.is_empty()
            && self.reads_ready.is_empty()
            && self.reads_failed.is_empty()
            && self.leader_changes.is_empty()
            && self.leaderless.is_none()
    }
}

/// A follower as its leader knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower.
    pub id: MemberId,
    /// The last index it is known to hold.
    pub matched: u64,
    /// Heard from within the last election timeout.
    pub active: bool,
}

/// Messages from the peer port dropped by the guard.
#[derive(Debug, Default)]
struct Rejections {
    total: u64,
    last_logged: Option<Instant>,
}

/// One member's consensus state.
pub struct Replica<D: LogDir> {
    config: ReplicaConfig,
    raw: RawNode<LogStorage<D>>,
    proposals: ProposalQueue,
    reads: ReadQueue,
    persistence: Persistence,
    leadership: Leadership,
    stages: CommitStages,
    peer_health: PeerHealth,
    members: Members,
    snapshots: SnapshotSchedule,
    applied: u64,
    rejections: Rejections,
    out: Outputs,
    random: Random,
    /// Whether the log's disk has room.
    log_space: LogSpace,
    /// Term, role and leader after the last input: when they change, raft-rs has drawn a new
    /// election timeout, which is drawn again here from `random`.
    role: (u64, StateRole, u64),
}

impl<D: LogDir> Replica<D> {
    /// A replica over `storage`, whose registry is `members`, applied up to `applied` (the
    /// snapshot it starts from), with `durable` the hard state the log holds.
    pub fn new(
        config: ReplicaConfig,
        storage: LogStorage<D>,
        members: Members,
        applied: LogIndex,
        durable: HardState,
    ) -> Result<Replica<D>, ServerError> {
        let applied = applied.get();
        if config.member_id.is_none() {
            return Err(ServerError::Internal("member ID 0 is reserved".into()));
        }
        let raft_config = raft::Config {
            id: config.member_id.get(),
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
        let raw = RawNode::new(&raft_config, storage, &raft_logger())
            .map_err(|e| ServerError::Internal(format!("starting raft: {e}")))?;
        let seed = config.seed;
        let mut random = Random::new(seed);
        // raft-rs heartbeats every tick (`heartbeat_tick: 1`).
        let peer_health = PeerHealth::new(
            config.election_timeout / config.election_ticks.max(1) as u32,
            config.election_timeout,
        );
        let mut replica = Replica {
            config,
            raw,
            proposals: ProposalQueue::default(),
            reads: ReadQueue::new(random.next_u64()),
            persistence: Persistence::new(durable),
            leadership: Leadership::default(),
            stages: CommitStages::default(),
            peer_health,
            members,
            snapshots: SnapshotSchedule::new(applied),
            applied,
            rejections: Rejections::default(),
            out: Outputs::default(),
            random,
            log_space: LogSpace::default(),
            role: (0, StateRole::Follower, 0),
        };
        replica.redraw_election_timeout();
        // A single voter elects itself at once; a cluster elects when a timeout runs out.
        replica.campaign_if_alone();
        replica.after_input();
        Ok(replica)
    }

    /// Takes what the world must do.
    pub fn take_outputs(&mut self) -> Outputs {
        std::mem::take(&mut self.out)
    }

    /// Feeds one input at `now`.
    pub fn step(&mut self, now: Instant, input: Input) {
        match input {
            Input::Tick => {
                if !self.alone_with_log_in_flight() {
                    self.raw.tick();
                }
                // A transfer that did not complete (raft-rs gives up after an election
                // timeout) is tried again while the disk stays full.
                self.hand_over_if_disk_full();
                self.reissue_reads();
                let known = self.leader_known();
                self.out.leaderless =
                    self.leadership
                        .tick(now, known, self.config.election_timeout);
            }
            // A leader handing over to this member, which has since become the only voter:
            // it campaigns by itself once its log is durable.
            Input::Peer(message)
                if message.get_msg_type() == MessageType::MsgTimeoutNow
                    && self.alone_with_log_in_flight() => {}
            Input::Peer(message) => self.step_peer(now, message),
            Input::Unreachable(peer) => {
                self.leadership.unreachable(peer);
                self.raw.report_unreachable(peer.get());
            }
            Input::SnapshotSent { peer, accepted } => {
                let status = if accepted {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(peer.get(), status);
            }
            Input::Propose(waiting) => self.proposals.push(waiting),
            Input::Withdraw(sequence) => {
                self.proposals.withdraw(sequence);
            }
            Input::Read(reader) => self.reads.push(reader),
            Input::WithdrawReads(readers) => self.reads.withdraw(&readers),
            Input::HandOff => {
                self.campaign_if_alone();
                self.hand_off(now);
            }
            Input::Persisted(number) => {
                self.persistence.durable(number);
                while let Some(completed) = self.persistence.pop_completed() {
                    self.raw.on_persist_ready(completed.number);
                    self.raw.store().persisted();
                    if completed.advance_apply {
                        self.raw.advance_apply();
                    }
                    self.send(completed.messages, now);
                }
            }
            Input::TransferLeader(target) => {
                self.leadership.transfer_under_way();
                self.raw.transfer_leader(target.get());
            }
            Input::LogSyncStalled(stalled) => self.step_down_if_stalled(stalled),
            Input::LogNoSpace => {
                if self.log_space.no_space(now) {
                    tracing::warn!(
                        "the log's disk is full: this member serves reads and refuses writes \
                         until a retried write succeeds"
                    );
                }
                self.hand_over_if_disk_full();
            }
            Input::LogWritten => {
                if let Some(full_for) = self.log_space.written(now) {
                    tracing::info!(?full_for, "the log's disk has room again: writes resume");
                }
            }
        }
        self.after_input();
    }

    /// raft-rs draws a new election timeout from its own thread-local generator whenever it
    /// resets its role (a new term, a new role, a new leader): the replica draws it again from
    /// its seeded one, so the same seed and inputs elect the same way.
    fn after_input(&mut self) {
        let raft = &self.raw.raft;
        let role = (raft.term, raft.state, raft.leader_id);
        if role != self.role {
            self.role = role;
            self.redraw_election_timeout();
        }
    }

    fn redraw_election_timeout(&mut self) {
        let low = self.raw.raft.election_timeout() as u64;
        let timeout = self.random.below(low, 2 * low);
        self.raw
            .raft
            .set_randomized_election_timeout(timeout as usize);
    }

    /// A leader whose disk hangs cannot make anything durable, so the writes it takes are
    /// never answered, though its heartbeats keep every follower loyal (etcd's leader stays,
    /// and every write times out). Past `stalled_sync_step_down` it hands leadership to the
    /// most caught-up active follower; the cluster goes on serving while this member's disk
    /// recovers, or does not.
    fn step_down_if_stalled(&mut self, stalled: Duration) {
        if stalled >= self.config.stalled_sync_step_down {
            self.hand_over(&format!(
                "the log's disk has not finished a sync for {stalled:?}"
            ));
        }
    }

    /// A leader whose log disk is full cannot make anything durable either, and never will
    /// without help: it hands over at once (`replica::disk`).
    fn hand_over_if_disk_full(&mut self) {
        if self.log_space.is_full() {
            self.hand_over("the log's disk is full");
        }
    }

    /// As leader, hands leadership to the most caught-up active follower, when the other
    /// active voters can elect without this member.
    fn hand_over(&mut self, why: &str) {
        if !self.is_leader() || self.raw.raft.lead_transferee.is_some() {
            return;
        }
        let own = self.config.member_id.get();
        let progress = self.raw.raft.prs();
        let voters = self.raft_voters();
        // A member whose disk hangs cannot vote either (a vote waits for its sync): hand over
        // only if the other active voters can elect someone without it. Otherwise keep leading:
        // reads at the applied index still work, where a forced election would leave none.
        let active_others = voters
            .iter()
            .filter(|id| **id != own)
            .filter(|id| progress.get(**id).is_some_and(|p| p.recent_active))
            .count();
        if active_others < voters.len() / 2 + 1 {
            return;
        }
        let target = self
            .raft_voters()
            .into_iter()
            .filter(|id| *id != own)
            .filter_map(|id| progress.get(id).map(|p| (p.recent_active, p.matched, id)))
            .filter(|(active, _, _)| *active)
            .max_by_key(|(_, matched, id)| (*matched, std::cmp::Reverse(*id)))
            .map(|(_, _, id)| id);
        if let Some(target) = target {
            tracing::warn!(
                to = %format!("{target:x}"),
                "{why}: handing leadership over so the cluster keeps serving"
            );
            self.leadership.transfer_under_way();
            self.raw.transfer_leader(target);
        }
    }

    /// True from a log write that found no space until a retried one succeeds
    /// ([`Input::LogNoSpace`], [`Input::LogWritten`]).
    pub fn log_disk_full(&self) -> bool {
        self.log_space.is_full()
    }

    /// True when the log's disk is full and the writes not yet durable should be tried again
    /// at `now` (ask only when no write is in flight).
    pub fn log_retry_due(&self, now: Instant) -> bool {
        self.log_space.retry_due(now)
    }

    /// Admission of a new proposal (etcd's limits on apply lag and waiting proposals).
    pub fn admit(&self) -> Result<(), ServerError> {
        self.refuse_if_learner()?;
        proposals::admit(self.committed().get(), self.applied, self.proposals.len())
    }

    /// A learner serves only serializable reads and status (etcd's rule).
    pub fn refuse_if_learner(&self) -> Result<(), ServerError> {
        if self.is_learner() {
            return Err(MemberError::LearnerNotSupported.into());
        }
        Ok(())
    }

    /// True when the shell has something to step: a durable Ready to complete, or queued
    /// proposals or reads that a known leader can take.
    pub fn has_work(&self) -> bool {
        let changes_held = self.is_leader() && self.raw.raft.has_pending_conf();
        let queued = self.proposals.has_work(changes_held) || self.reads.has_waiting();
        queued && self.leader_known()
    }

    /// True when raft-rs has a Ready.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    fn step_peer(&mut self, now: Instant, message: Message) {
        if message.get_msg_type() == MessageType::MsgAppendResponse {
            if message.reject {
                self.stages.append_refused(message.from);
            } else {
                self.stages
                    .append_acknowledged(message.from, message.index, now);
            }
        }
        let receiver = super::guard::Receiver {
            id: self.config.member_id.get(),
            last_index: self.raw.raft.raft_log.last_index(),
            // Itself when it leads: then no unknown sender is heard.
            leader: self.raw.raft.leader_id,
        };
        let members = &self.members;
        let configured = self.raw.raft.prs();
        if let Err(rejected) = super::guard::check(&message, receiver, |id| {
            if members.is_removed(MemberId::new(id)) {
                super::guard::Sender::Removed
            } else if configured.get(id).is_some() {
                super::guard::Sender::Configured
            } else {
                super::guard::Sender::Unknown
            }
        }) {
            self.rejections.total += 1;
            // At most one line a second: a flood of bad messages must not flood the log.
            let quiet = self
                .rejections
                .last_logged
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
            if !quiet {
                self.rejections.last_logged = Some(now);
                tracing::warn!(
                    from = %format!("{:x}", message.from),
                    kind = ?message.get_msg_type(),
                    total = self.rejections.total,
                    "dropped a message from the peer port: {rejected}"
                );
            }
            return;
        }
        match message.get_msg_type() {
            MessageType::MsgHeartbeatResponse => {
                self.peer_health.heartbeat_answered(message.from, now);
            }
            // Told to campaign by a leader handing over, or asked to vote in that campaign.
            MessageType::MsgTimeoutNow => self.leadership.transfer_under_way(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if message.context.as_ref() == raft::CAMPAIGN_TRANSFER =>
            {
                self.leadership.transfer_under_way()
            }
            _ => {}
        }
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "a peer's message was not taken");
        }
    }

    fn send(&mut self, messages: Vec<Message>, now: Instant) {
        for message in &messages {
            match message.get_msg_type() {
                MessageType::MsgAppend => {
                    if let Some(last) = message.entries.last() {
                        self.stages.append_sent(message.to, last.index, now);
                    }
                }
                MessageType::MsgHeartbeat => self.peer_health.heartbeat_sent(message.to, now),
                _ => {}
            }
        }
        self.out.send.extend(messages);
    }

    /// Moves queued proposals and reads into raft-rs. Work waits while no leader is known (at
    /// start, before the first election completes): raft-rs would drop it.
    fn hand_off(&mut self, now: Instant) {
        if !self.leader_known() {
            return;
        }
        let mut held = Vec::new();
        for waiting in self.proposals.take() {
            let proposed = match waiting.proposal {
                Proposal::Entry(ref data) => self.raw.propose(Vec::new(), data.to_vec()),
                // raft-rs takes one membership change at a time and turns a second into an
                // empty entry (its proposer would never hear back): the leader holds it until
                // the one in flight is applied.
                Proposal::Change(_) if self.is_leader() && self.raw.raft.has_pending_conf() => {
                    held.push(waiting);
                    continue;
                }
                Proposal::Change(ref change) => {
                    self.raw.propose_conf_change(Vec::new(), change.clone())
                }
            };
            self.stages
                .proposal_queued(now.saturating_duration_since(waiting.queued_at));
            if proposed.is_err() {
                // A leader drops a proposal only past its uncommitted bound (or while it hands
                // leadership over): that is load to shed, not a missing leader.
                let error = if self.is_leader() && self.raw.raft.lead_transferee.is_none() {
                    ServerError::TooManyRequests
                } else {
                    ServerError::NoLeader
                };
                self.out.refused.push((waiting.sequence, error));
            }
        }
        self.proposals.hold(held);
        if let Some(context) = self.reads.start_round(self.raw.raft.leader_id) {
            self.raw.read_index(self.reads.context_bytes(context));
        }
    }

    /// Asks again for read indexes still unanswered after a tick (a read state is lost when
    /// leadership changes hands in between).
    fn reissue_reads(&mut self) {
        if !self.leader_known() {
            return;
        }
        for context in self.reads.reissue(self.raw.raft.leader_id) {
            let bytes = self.reads.context_bytes(context);
            self.raw.read_index(bytes);
        }
    }

    /// The only voter leads at once. raft-rs refuses to campaign while committed membership
    /// changes are not applied yet (at a restart, until the log is replayed), so this is asked
    /// again each turn rather than waiting for an election timeout. Not while some of its log
    /// is not durable yet (a write in flight, or held on a full disk): the only voter wins at
    /// once, and raft-rs asserts a new leader's whole log is durable (a follower left alone by
    /// the removal of the others can have appends in flight).
    fn campaign_if_alone(&mut self) {
        if self.is_leader() {
            return;
        }
        let alone = self.voters() == [self.config.member_id];
        if alone && self.applied >= self.committed().get() && !self.log_in_flight() {
            let _ = self.raw.campaign();
        }
    }

    /// True while entries in raft-rs's log are not durable yet.
    fn log_in_flight(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        log.persisted < log.last_index()
    }

    /// True while this member is the only voter, does not lead, and has entries not durable
    /// yet: an election it started would win at once, before they are (raft-rs asserts they
    /// are), so none is started (no election tick, no leader's hand-over) until they are;
    /// [`Replica::campaign_if_alone`] then campaigns.
    fn alone_with_log_in_flight(&self) -> bool {
        !self.is_leader() && self.log_in_flight() && self.voters() == [self.config.member_id]
    }

    /// A snapshot of this member's own, at `metadata`, is durable: offered to members behind
    /// the log from now on.
    pub fn snapshot_taken(&mut self, metadata: SnapshotMetadata, bytes: u64) {
        self.snapshots.taken(metadata.index, bytes);
        self.raw.store().set_newest_snapshot(metadata);
    }

    /// True when this member should take a snapshot now: every `count` entries (0: never by
    /// count), or at once when Raft needed a newer one than the newest to catch a member up.
    pub fn snapshot_due(&mut self, count: u64) -> bool {
        if self.raw.store().take_snapshot_wanted() {
            self.snapshots.want();
        }
        self.snapshots.due(self.applied, count)
    }

    /// The snapshot schedule.
    pub fn snapshots(&mut self) -> &mut SnapshotSchedule {
        &mut self.snapshots
    }

    /// The leader changes kept for the dashboard, numbered `from` on.
    pub fn leader_changes_since(
        &self,
        from: u64,
    ) -> Vec<(u64, Instant, super::leadership::LeaderChange)> {
        self.leadership.changes_since(from)
    }

    /// What the leader knows of each follower, and the leader's last index; `None` unless
    /// this member leads.
    pub fn followers(&self) -> Option<(Vec<FollowerProgress>, u64)> {
        if !self.is_leader() {
            return None;
        }
        let own = self.config.member_id.get();
        let followers = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != own)
            .map(|(id, progress)| FollowerProgress {
                id: MemberId::new(*id),
                matched: progress.matched,
                active: progress.recent_active,
            })
            .collect();
        Some((followers, self.raw.raft.raft_log.last_index()))
    }

    /// How this member's heartbeats fared while it led.
    pub fn peer_health(&self) -> &PeerHealth {
        &self.peer_health
    }

    /// The commit stage histograms.
    pub fn stages(&mut self) -> &mut CommitStages {
        &mut self.stages
    }

    /// The commit stage histograms, to read.
    pub fn stages_view(&self) -> &CommitStages {
        &self.stages
    }

    /// The member registry as applied.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// This member's ID.
    pub fn id(&self) -> MemberId {
        self.config.member_id
    }

    /// Current term.
    pub fn term(&self) -> Term {
        Term::new(self.raw.raft.term)
    }

    /// The leader ([`MemberId::NONE`]: none known).
    pub fn leader(&self) -> MemberId {
        MemberId::new(self.raw.raft.leader_id)
    }

    /// True when proposals and reads can go to Raft: this member leads, or knows who does
    /// (raft-rs forwards them).
    pub fn leader_known(&self) -> bool {
        self.raw.raft.leader_id != raft::INVALID_ID
    }

    /// True while this member leads.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// True while this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.members
            .get(self.config.member_id)
            .is_some_and(|member| member.is_learner)
    }

    /// Highest index known committed.
    pub fn committed(&self) -> LogIndex {
        LogIndex::new(self.raw.raft.raft_log.committed)
    }

    /// Highest index applied.
    pub fn applied(&self) -> LogIndex {
        LogIndex::new(self.applied)
    }

    /// The voters of Raft's current configuration, ascending.
    pub fn voters(&self) -> Vec<MemberId> {
        self.raft_voters().into_iter().map(MemberId::new).collect()
    }

    /// The voters as raft-rs names them, ascending.
    fn raft_voters(&self) -> Vec<u64> {
        let mut voters: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        voters
    }

    /// Messages from the peer port dropped before Raft saw them.
    pub fn peer_messages_rejected(&self) -> u64 {
        self.rejections.total
    }

    /// Leader changes seen.
    pub fn leader_changes_seen(&self) -> u64 {
        self.leadership.changes_seen()
    }

    /// Every proposal and reader still queued (the member stops); the queues are left empty.
    pub fn clear(&mut self) -> (Vec<u64>, Vec<u64>) {
        (self.proposals.clear(), self.reads.clear())
    }
}
