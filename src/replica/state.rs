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
//! Invariants checked here: entries are applied one by one in index order and never past the
//! commit index; a Ready's vouching messages are released only after it is durable, in order.

use std::time::{Duration, Instant};

use raft::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, StateRole};

use super::disk::LogSpace;
use super::entry::{decode_proposal, to_log_entry, ProposalId};
use super::leadership::{LeaderChange, Leaderless, Leadership};
use super::logger::raft_logger;
use super::membership::{self, MemberEffect, Progress};
use super::persist::{self, Persistence};
use super::proposals::{self, Proposal, ProposalQueue, Waiting, MAX_UNCOMMITTED_BYTES};
use super::random::Random;
use super::reads::ReadQueue;
use super::snapshots::SnapshotSchedule;
use super::stages::CommitStages;
use super::storage::LogStorage;
use crate::api::error::ServerError;
use crate::ids::{LogIndex, MemberId, Term};
use crate::members::{decode_change, MemberChange, MemberError, Members};
use crate::wal::format::HardState;
use crate::wal::io::LogDir;
use crate::wal::LogEntry;

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

/// What a turn stages in the log.
#[derive(Debug)]
pub struct PersistPlan {
    /// Entries to append (replacing any suffix they overlap).
    pub entries: Vec<LogEntry>,
    /// The hard state to write with them.
    pub hard_state: Option<HardState>,
}

/// An applied membership change, for the shell.
#[derive(Debug)]
pub struct MemberApplied {
    /// The proposal it came from, if it is one of lode's.
    pub proposal: Option<ProposalId>,
    /// The registry's verdict (the same on every member).
    pub result: Result<(), MemberError>,
    /// What the shell must do.
    pub effect: MemberEffect,
}

/// One turn of raft-rs's Ready protocol in progress.
pub struct Turn {
    ready: raft::Ready,
    snapshot: Option<Snapshot>,
    /// The hard state `persist_plan` staged.
    hard_state: Option<HardState>,
}

impl Turn {
    /// A snapshot the leader sent, to install before the rest of the turn.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
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
        let mut replica = Replica {
            config,
            raw,
            proposals: ProposalQueue::default(),
            reads: ReadQueue::new(random.next_u64()),
            persistence: Persistence::new(durable),
            leadership: Leadership::default(),
            stages: CommitStages::default(),
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
            Input::TransferLeader(target) => self.raw.transfer_leader(target.get()),
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
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "a peer's message was not taken");
        }
    }

    fn send(&mut self, messages: Vec<Message>, now: Instant) {
        for message in &messages {
            if message.get_msg_type() == MessageType::MsgAppend {
                if let Some(last) = message.entries.last() {
                    self.stages.append_sent(message.to, last.index, now);
                }
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

    /// Starts a turn of the Ready protocol: messages to peers go out first (a leader persists
    /// in parallel with replication).
    pub fn begin_turn(&mut self, now: Instant) -> Option<Turn> {
        if !self.raw.has_ready() {
            return None;
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages(), now);
        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        Some(Turn {
            ready,
            snapshot,
            hard_state: None,
        })
    }

    /// The snapshot of this turn replaces the log: forgets entries staged before it (the shell
    /// made every earlier Ready durable first).
    pub fn snapshot_installing(&mut self) {
        debug_assert_eq!(self.persistence.in_flight(), 0);
        self.raw.store().clear_in_flight();
    }

    /// A snapshot at `metadata`, `bytes` long, was installed, with `members` its registry.
    pub fn snapshot_installed(
        &mut self,
        metadata: &SnapshotMetadata,
        bytes: u64,
        members: Option<Members>,
    ) {
        if let Some(members) = members {
            self.members = members;
        }
        self.applied = metadata.index;
        self.snapshots.installed(metadata.index, bytes);
        self.raw
            .store()
            .set_conf_state(metadata.get_conf_state().clone());
        self.raw.store().set_newest_snapshot(metadata.clone());
    }

    /// The turn's leadership news and read states (into the outputs), and its committed
    /// entries, to apply in order.
    pub fn take_committed(&mut self, turn: &mut Turn) -> Vec<Entry> {
        if turn.ready.ss().is_some() {
            let leader = self.raw.raft.leader_id;
            if let Some(change) = self.leadership.observe(MemberId::new(leader)) {
                // Rounds asked of another leader will never be answered: their readers fail
                // at once with etcd's "leader changed" and may retry.
                for reader in self.reads.leader_changed(leader) {
                    self.out
                        .reads_failed
                        .push((reader, ServerError::LeaderChanged));
                }
                self.out.leader_changes.push(change);
            }
        }
        for state in turn.ready.take_read_states() {
            for reader in self.reads.answered(&state.request_ctx) {
                self.out
                    .reads_ready
                    .push((reader, LogIndex::new(state.index)));
            }
        }
        turn.ready.take_committed_entries()
    }

    /// What the shell stages in the log for this turn: its entries and the hard state to
    /// write with them (`None`: nothing to stage).
    pub fn persist_plan(&mut self, turn: &mut Turn) -> Result<Option<PersistPlan>, ServerError> {
        let entries = turn
            .ready
            .entries()
            .iter()
            .map(to_log_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let hard_state = turn.ready.hs().map(|hs| HardState::from(hs.clone()));
        let staged = self.persistence.plan(!entries.is_empty(), hard_state);
        turn.hard_state = staged;
        if entries.is_empty() && staged.is_none() {
            return Ok(None);
        }
        Ok(Some(PersistPlan {
            entries,
            hard_state: staged,
        }))
    }

    /// Hands the turn's Ready back to raft-rs; answers its number, to report as
    /// [`Input::Persisted`] once what `persist_plan` staged is durable (at once if nothing
    /// was). Votes and a follower's acknowledgements wait for that; a heartbeat response goes
    /// now when its term is already durable.
    pub fn end_turn(&mut self, mut turn: Turn, now: Instant) -> u64 {
        let number = turn.ready.number();
        let term_durable = self
            .persistence
            .term_durable(self.raw.raft.term, self.raw.raft.vote);
        let (now_messages, later) =
            persist::split_persisted(turn.ready.take_persisted_messages(), term_durable);
        self.send(now_messages, now);
        let installs_snapshot = turn.snapshot.is_some();
        if !installs_snapshot {
            // raft-rs reads these entries back before they are durable.
            self.raw.store().stage(turn.ready.entries());
        }
        self.raw.advance_append_async(turn.ready);
        // raft-rs counts a snapshot applied only once it is persisted.
        if !installs_snapshot {
            self.raw.advance_apply();
        }
        self.persistence
            .push(number, later, turn.hard_state, installs_snapshot);
        self.after_input();
        number
    }

    /// Readies handed back whose writes are not yet durable.
    pub fn persists_in_flight(&self) -> usize {
        self.persistence.in_flight()
    }

    /// Entry `index`, `bytes` long, was applied.
    pub fn applied_entry(&mut self, index: LogIndex, bytes: u64) {
        let index = index.get();
        assert!(
            index > self.applied,
            "entry {index} applied after {}: out of order",
            self.applied
        );
        assert!(
            index <= self.committed().get(),
            "entry {index} applied beyond the commit index {}",
            self.committed()
        );
        self.applied = index;
        self.snapshots.applied(bytes);
    }

    /// Applies a membership change entry: the registry first (which may refuse it, the same
    /// way on every member), then Raft's configuration. Answers the proposal it came from
    /// (if it is one of lode's), the registry's verdict, and what the shell must do.
    pub fn apply_member_change(
        &mut self,
        conf_change: ConfChange,
    ) -> Result<MemberApplied, ServerError> {
        let context = bytes::Bytes::from(conf_change.context.to_vec());
        let decoded = decode_proposal(&context).and_then(|proposal| {
            decode_change(&proposal.frame).map(|change| (proposal.id, change))
        });
        let Some((id, change)) = decoded else {
            // Not one of lode's (none are made elsewhere): Raft's configuration only.
            self.apply_conf_change(Err(conf_change))?;
            return Ok(MemberApplied {
                proposal: None,
                result: Ok(()),
                effect: MemberEffect::None,
            });
        };
        let result = self.members.apply(&change);
        if result.is_err() {
            tracing::info!(?change, ?result, "membership change refused when applied");
            return Ok(MemberApplied {
                proposal: Some(id),
                result,
                effect: MemberEffect::None,
            });
        }
        // A leader applying its own removal keeps its own Raft configuration as it is for the
        // few heartbeats before it stops: raft-rs expects a leader to track its own progress
        // (it panics persisting entries otherwise). The others apply the removal; what this
        // leader commits meanwhile stays safe: configurations one change apart have
        // overlapping majorities, so an entry on a majority of the old one is on some member
        // of every majority of the new one, and Raft's vote rule keeps it.
        let removing_self_as_leader =
            change == MemberChange::Remove(self.config.member_id) && self.is_leader();
        if change.raft_change().is_some() && !removing_self_as_leader {
            self.apply_conf_change(Err(conf_change))?;
        }
        tracing::info!(?change, "membership changed");
        Ok(MemberApplied {
            proposal: Some(id),
            result: Ok(()),
            effect: membership::effect_of(self.config.member_id, &change),
        })
    }

    /// Applies a configuration change to raft-rs alone (v2, or v1 not made by lode).
    pub fn apply_conf_change(
        &mut self,
        change: Result<ConfChangeV2, ConfChange>,
    ) -> Result<(), ServerError> {
        let conf_state = match change {
            Ok(v2) => self.raw.apply_conf_change(&v2),
            Err(v1) => self.raw.apply_conf_change(&v1),
        }
        .map_err(|e| ServerError::Internal(format!("conf change: {e}")))?;
        self.raw.store().set_conf_state(conf_state);
        self.after_input();
        Ok(())
    }

    /// Checks a membership change against the registry and, on the leader, against the
    /// cluster's health and a learner's progress.
    pub fn check_change(&self, change: &MemberChange) -> Result<(), ServerError> {
        self.members.check(change)?;
        if !self.is_leader() {
            return match change {
                MemberChange::Promote(_) => Err(MemberError::NotLeader.into()),
                _ => Ok(()),
            };
        }
        let progress = self.raw.raft.prs();
        membership::check_on_leader(
            self.config.member_id,
            &self.voters(),
            |id| {
                progress.get(id.get()).map(|p| Progress {
                    matched: p.matched,
                    recent_active: p.recent_active,
                })
            },
            change,
        )?;
        Ok(())
    }

    /// Checks a leadership transfer to `target`: `Ok(true)` when it is this member already.
    pub fn check_transfer(&self, target: MemberId) -> Result<bool, ServerError> {
        if !self.is_leader() {
            return Err(MemberError::NotLeader.into());
        }
        if !self.voters().contains(&target) {
            return Err(MemberError::BadLeaderTransferee.into());
        }
        Ok(target == self.config.member_id)
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

/// Raft's description of a snapshot lode took or installed.
pub fn snapshot_metadata(meta: &crate::snapshot::SnapshotMeta) -> SnapshotMetadata {
    match &meta.members {
        Some(members) => raft_snapshot_metadata(meta.applied_index, meta.applied_term, members),
        // Snapshots before format 3 hold voters only (and no learners could be in them).
        None => raft_metadata(
            meta.applied_index,
            meta.applied_term,
            meta.voters.clone(),
            Vec::new(),
        ),
    }
}

/// Raft's description of a snapshot at `index` of `term` whose registry is `members`: its
/// voters and its learners (a member installing it must keep replicating to the learners
/// should it lead).
pub fn raft_snapshot_metadata(index: u64, term: u64, members: &Members) -> SnapshotMetadata {
    let (voters, learners) = members.voters_and_learners();
    let raw = |ids: Vec<MemberId>| ids.into_iter().map(MemberId::get).collect();
    raft_metadata(index, term, raw(voters), raw(learners))
}

fn raft_metadata(index: u64, term: u64, voters: Vec<u64>, learners: Vec<u64>) -> SnapshotMetadata {
    SnapshotMetadata {
        conf_state: Some(ConfState {
            voters,
            learners,
            ..Default::default()
        })
        .into(),
        index,
        term,
        ..Default::default()
    }
}
