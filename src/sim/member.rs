//! One simulated member: the real replica over the real log on a simulated disk, applying
//! committed entries to the real MVCC keyspace (`mvcc::sharded`: the shards, `exec` and the
//! lessor arranged in one place, as the threaded server must behave), with the shell's duties
//! done by the simulation: staging and syncing the log, answering callers, serving reads.
//!
//! A full log disk is handled as the server's shell does (`consensus::nospace`), with the same
//! pure pieces: the Readies not yet durable are kept (`replica::unsynced`) and staged again in
//! order when the replica says a retry is due, the outcomes drive `Input::LogNoSpace` and
//! `Input::LogWritten`; writes through the member are refused with etcd's "database space
//! exceeded" meanwhile (lease expiries too), reads served; the member raises and later clears
//! its own full-disk alarm (`alarm::DiskAlarm`) through the cluster; a snapshot from the leader
//! waits, with the member's loop, until every earlier write is durable.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message};

use super::Bug;
use crate::alarm::{AlarmAction, AlarmMember, Alarms, DiskAlarm};
use crate::api::error::ServerError;
use crate::api::native::{self, Request};
use crate::lease::SavedLease;
use crate::members::{encode_change, Member, MemberChange, Members};
use crate::mvcc::request::{RangeRequest, WriteRequest, WriteResponse};
use crate::mvcc::sharded::ShardedKv;
use crate::replica::entry::{decode_proposal, encode_proposal, ProposalId};
use crate::replica::membership::MemberEffect;
use crate::replica::proposals::{Proposal, Waiting};
use crate::replica::storage::LogStorage;
use crate::replica::unsynced::{SyncResult, Unsynced};
use crate::replica::{Input, Outputs, PersistPlan, Replica, ReplicaConfig, Turn};
use crate::wal::sim::{SimDir, SimDisk};
use crate::wal::{StagedAppend, Wal, WalOptions};
use crate::watch::merge::RevisionMerger;
use crate::watch::stream::{CreateWatch, WatchResponse, WatchStream};

mod apply;
mod persist;
mod snapshots;
mod watches;

/// Ticks without a leader before an election.
pub const ELECTION_TICKS: usize = 10;

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// Entries applied between a member's snapshots.
pub const SNAPSHOT_EVERY: u64 = 16;

/// Entries kept in the log behind a snapshot, for followers (etcd's catch-up entries).
const CATCHUP_ENTRIES: u64 = 4;

/// A snapshot a member took or installed: durable (the real snapshotter syncs the file and its
/// directory before it counts), so a crash keeps it.
#[derive(Clone, Debug)]
pub struct SimSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub kv: ShardedKv,
    /// The leases as the snapshot file keeps them: what each had left when it was taken.
    pub leases: Vec<SavedLease>,
    /// The member registry as applied (with learners).
    pub members: Members,
    /// The active alarms as applied.
    pub alarms: Vec<AlarmMember>,
}

impl SimSnapshot {
    fn metadata(&self) -> raft::eraftpb::SnapshotMetadata {
        crate::replica::state::raft_snapshot_metadata(self.index, self.term, &self.members)
    }
}

/// Who asked: a client's operation, by its token.
pub type Caller = u64;

/// What a member answers a caller.
#[derive(Debug)]
pub enum Answer {
    /// A write was applied: its response.
    Written(Result<WriteResponse, ServerError>),
    /// A linearizable read: the pairs of the range.
    Read(Result<crate::mvcc::request::RangeResponse, ServerError>),
}

/// An entry applied, for the checkers: (index, term, data digest), the revision after it and
/// a digest of the alarms after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    pub digest: u64,
    pub revision: i64,
    pub alarms: u64,
}

/// What a member did in one pump, for the simulation to carry out.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages to send.
    pub send: Vec<Message>,
    /// Answers to callers.
    pub answers: Vec<(Caller, Answer)>,
    /// Entries applied, in order.
    pub applied: Vec<AppliedEntry>,
    /// True when a log sync is now pending and none was scheduled.
    pub wants_sync: bool,
    /// The term this member led in, if it leads now.
    pub leading: Option<u64>,
    /// The index of a snapshot it installed.
    pub installed: Option<u64>,
    /// Leases an applied expiry revoked.
    pub expired: Vec<i64>,
    /// This member applied its own removal: it stops once that reached the others.
    pub removed: bool,
    /// The watch events of the writes applied, in order (for the checker's canonical history).
    pub events: Vec<crate::watch::Event>,
    /// Responses to watch streams, by the caller that opened each.
    pub watch_responses: Vec<(Caller, WatchResponse)>,
    /// Log writes that found no space (each told to the replica as `LogNoSpace`).
    pub writes_without_space: u64,
    /// This member led with a full disk and no longer leads.
    pub handed_over_full: bool,
    /// A retried log write succeeded (`LogWritten`).
    pub wrote_again: bool,
    /// This member proposed a change of its full-disk alarm.
    pub disk_alarm: Option<AlarmAction>,
    /// Acknowledgements of what the log does not hold durably (votes, appends, applied
    /// entries): what a member must never say.
    pub unpersisted: Vec<String>,
}

/// A running member.
pub struct SimMember {
    id: u64,
    disk: SimDisk,
    wal: Rc<Wal<SimDir>>,
    replica: Replica<SimDir>,
    kv: ShardedKv,
    nonce: u64,
    next_number: u64,
    writes: BTreeMap<u64, Caller>,
    reads: BTreeMap<u64, (Caller, RangeRequest)>,
    /// Reads whose index is known, waiting for apply to reach it.
    read_waits: Vec<(u64, Caller, RangeRequest)>,
    /// The Readies whose writes are not yet durable (held after a full disk, or in flight).
    unsynced: Unsynced,
    /// The appends in flight, with their Ready numbers, in the order staged.
    staged: Vec<(u64, StagedAppend)>,
    /// When the sync now pending was asked for.
    sync_scheduled: Option<Instant>,
    /// A turn whose snapshot waits until every earlier write is durable (the server's loop
    /// waits with it, so ticks are not taken meanwhile and what peers send waits in `inbox`).
    blocked: Option<Turn>,
    /// Inputs that arrived while a turn was blocked.
    inbox: Vec<Input>,
    /// Log writes that found no space since the last pump.
    writes_without_space: u64,
    /// A retried log write succeeded since the last pump.
    wrote_again: bool,
    /// The full-disk alarm change proposed since the last pump.
    disk_alarm_proposed: Option<AlarmAction>,
    /// Acknowledgements of what the log does not hold durably, since the last pump.
    unpersisted: Vec<String>,
    /// The log's last index once every plan made so far is written, in Ready order.
    planned_last: u64,
    /// Plans not yet durable whose entries replace entries planned before them: the index
    /// each cuts the log at, by Ready number.
    cuts: BTreeMap<u64, u64>,
    /// The lowest index a plan made durable since the last check cut the log at: an
    /// acknowledgement a Ready before it carries is released only now (Readies complete in
    /// order) and may name entries the log no longer has, which is what a synchronous log
    /// and a slow network make too (the leader of the acknowledged entries' term can have
    /// been deposed only by a leader whose election counted them).
    cut_since_check: Option<u64>,
    /// It leads with a full disk.
    leading_full: bool,
    /// The active alarms as applied.
    alarms: Alarms,
    /// This member's full-disk alarm, as the server changes it.
    disk_alarm: DiskAlarm,
    /// The proposal changing it in flight: its number, the action and when it was made.
    disk_alarm_change: Option<(u64, AlarmAction, Instant)>,
    /// `ApplyBeforeCommit`: entries applied when staged, up to this index.
    applied_early: u64,
    bug: Option<Bug>,
    /// This member's snapshots, oldest first (the newest two are kept).
    snapshots: Vec<SimSnapshot>,
    /// Snapshots the leader streamed here, by index, waiting for Raft to install them.
    received: BTreeMap<u64, SimSnapshot>,
    /// When this run of the member started: its lease clock counts from here.
    started: Instant,
    heartbeat: Duration,
    /// The Ready number of the lease expiry this member proposed as leader and when, until it
    /// is applied or refused (one at a time, as the server does).
    expiry: Option<(u64, Instant)>,
    /// Every shard's watch events merged into whole revisions, as a core's watch hub does.
    merger: RevisionMerger,
    /// Open watch streams, by the caller that opened each.
    watch_streams: BTreeMap<Caller, WatchStream>,
}

/// Shards of a member's keyspace.
const SHARDS: usize = 2;

/// A watch stream's byte budget: small, so that watchers fall behind and catch up from
/// history.
const WATCH_BUDGET: usize = 2048;

/// Revisions one watch catch-up reads at most: small, so catch-ups go in steps.
const WATCH_CATCH_UP_REVISIONS: i64 = 8;

/// Added to lease time so that a lease loaded from a snapshot right after start can be dated
/// back by the part of its TTL it had used (the server offsets by the largest TTL).
const LEASE_CLOCK_OFFSET: Duration = Duration::from_secs(3600);

/// How long the member's own alarm proposal waits for its answer (etcd's request timeout: 5 s
/// plus twice the election timeout).
fn request_timeout(heartbeat: Duration) -> Duration {
    Duration::from_secs(5) + 2 * heartbeat * ELECTION_TICKS as u32
}

/// Inputs kept while a turn is blocked (the server's peer inbox is bounded too).
const INBOX_LIMIT: usize = 4096;

/// The log's options in the simulation: small segments, so rolls happen.
pub fn wal_options() -> WalOptions {
    WalOptions {
        segment_size: 256 * 1024,
        max_entry_bytes: 64 * 1024,
        create_if_missing: true,
        abort_on_sync_failure: false,
        recent_window_bytes: 16 * 1024,
    }
}

/// The bootstrap registry of a cluster of `count` members, IDs 1 to `count`.
pub fn bootstrap(count: u64) -> Members {
    Members::new(
        (1..=count).map(|id| Member {
            id: crate::ids::MemberId::new(id),
            name: format!("m{id}"),
            peer_urls: vec![format!("http://sim-{id}:2380")],
            client_urls: vec![format!("http://sim-{id}:2379")],
            is_learner: false,
        }),
        Default::default(),
    )
}

fn digest(data: &[u8]) -> u64 {
    // FNV-1a: stable across runs and builds, which the checkers compare.
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl SimMember {
    /// Starts member `id` of `count` on `disk` (empty, or what a crash left), its randomness
    /// from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: u64,
        initial: &Members,
        disk: SimDisk,
        snapshots: Vec<SimSnapshot>,
        seed: u64,
        heartbeat: Duration,
        bug: Option<Bug>,
        now: Instant,
    ) -> Result<SimMember, String> {
        let wal = Rc::new(
            block_on(Wal::open(disk.dir(), wal_options())).map_err(|e| format!("log: {e}"))?,
        );
        // As the server starts: the newest snapshot's registry, else the one it was started
        // with (bootstrapped, or given by the cluster it joined).
        let newest = snapshots.last().cloned();
        let members = newest
            .as_ref()
            .map_or_else(|| initial.clone(), |snapshot| snapshot.members.clone());
        let (voters, learners) = members.voters_and_learners();
        let conf_state = raft::eraftpb::ConfState {
            voters: voters.into_iter().map(crate::ids::MemberId::get).collect(),
            learners: learners
                .into_iter()
                .map(crate::ids::MemberId::get)
                .collect(),
            ..Default::default()
        };
        let applied = newest.as_ref().map_or(0, |snapshot| snapshot.index);
        if let Some(snapshot) = &newest {
            // As the server's start does (`snapshotter::reconcile_log`): a log that does not
            // reach the snapshot (an install interrupted by the crash) is reset to it.
            let consistent = match wal.term(snapshot.index) {
                Ok(term) => term == snapshot.term,
                Err(crate::wal::WalError::Compacted { .. }) => true,
                Err(_) => false,
            };
            if !consistent {
                block_on(wal.reset_to_snapshot(snapshot.index, snapshot.term))
                    .map_err(|e| format!("log: {e}"))?;
            }
        }
        if wal.first_index() > applied + 1 {
            return Err(format!(
                "the log starts at {} but the newest snapshot covers only {applied}",
                wal.first_index()
            ));
        }
        let storage = LogStorage::new(wal.clone(), conf_state, applied);
        if let Some(snapshot) = &newest {
            storage.set_newest_snapshot(snapshot.metadata());
        }
        let replica = Replica::new(
            ReplicaConfig {
                member_id: crate::ids::MemberId::new(id),
                election_ticks: ELECTION_TICKS,
                election_timeout: heartbeat * ELECTION_TICKS as u32,
                pre_vote: true,
                seed,
                stalled_sync_step_down: ReplicaConfig::step_down_after(
                    heartbeat * ELECTION_TICKS as u32,
                ),
            },
            storage,
            members,
            crate::ids::LogIndex::new(applied),
            wal.hard_state(),
        )
        .map_err(|e| e.to_string())?;
        let alarms = Alarms::from_members(
            newest
                .iter()
                .flat_map(|snapshot| snapshot.alarms.iter().copied()),
        );
        let kv: ShardedKv = match newest {
            None => ShardedKv::new(SHARDS),
            Some(snapshot) => {
                let mut kv = snapshot.kv;
                kv.leases_mut().import(&snapshot.leases, LEASE_CLOCK_OFFSET);
                kv
            }
        };
        let failures = wal.failed_batches();
        let planned_last = wal.last_index();
        let kv_revision = kv.current_revision();
        Ok(SimMember {
            id,
            disk,
            wal,
            replica,
            kv,
            nonce: seed,
            next_number: 1,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            read_waits: Vec::new(),
            unsynced: Unsynced::new(failures),
            staged: Vec::new(),
            sync_scheduled: None,
            blocked: None,
            inbox: Vec::new(),
            writes_without_space: 0,
            wrote_again: false,
            disk_alarm_proposed: None,
            unpersisted: Vec::new(),
            planned_last,
            cuts: BTreeMap::new(),
            cut_since_check: None,
            leading_full: false,
            alarms,
            disk_alarm: DiskAlarm::default(),
            disk_alarm_change: None,
            applied_early: 0,
            bug,
            snapshots,
            received: BTreeMap::new(),
            started: now,
            heartbeat,
            expiry: None,
            merger: RevisionMerger::new(SHARDS, kv_revision),
            watch_streams: BTreeMap::new(),
        })
    }

    /// This member's lease time at `now` (the server's is its monotonic clock, likewise).
    fn lease_now(&self, now: Instant) -> Duration {
        LEASE_CLOCK_OFFSET + now.saturating_duration_since(self.started)
    }

    /// Its state in one line, for a failure report.
    pub fn status(&self) -> String {
        let replica = &self.replica;
        format!(
            "term {} leader {} committed {} applied {} log {}..={} voters {:?} snapshots {:?}{}{}",
            replica.term(),
            replica.leader().get(),
            replica.committed(),
            replica.applied(),
            self.wal.first_index(),
            self.wal.last_index(),
            replica.voters(),
            self.snapshots.iter().map(|s| s.index).collect::<Vec<_>>(),
            if replica.log_disk_full() {
                " disk full"
            } else {
                ""
            },
            if self.blocked.is_some() {
                " (a snapshot waits for the log)"
            } else {
                ""
            },
        )
    }

    /// Its disk.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// Its keyspace as applied.
    pub fn kv(&self) -> &ShardedKv {
        &self.kv
    }

    /// The replica, to read.
    pub fn replica(&self) -> &Replica<SimDir> {
        &self.replica
    }

    /// The alarms as applied.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Feeds the replica an input; a tick also tells it how long the pending sync has run,
    /// and changes this member's full-disk alarm when due, as the shell does. While a turn
    /// waits for the log, ticks are not taken and other inputs wait (the server's loop is in
    /// that turn).
    pub fn step(&mut self, now: Instant, input: Input) {
        let tick = matches!(input, Input::Tick);
        if self.blocked.is_some() {
            if !tick && self.inbox.len() < INBOX_LIMIT {
                self.inbox.push(input);
            }
            return;
        }
        self.replica.step(now, input);
        if let (true, Some(started)) = (tick, self.sync_scheduled) {
            self.replica.step(
                now,
                Input::LogSyncStalled(now.saturating_duration_since(started)),
            );
        }
        if tick {
            self.maybe_change_disk_alarm(now);
        }
    }

    /// Raises this member's full-disk alarm through the cluster while its disk is full, and
    /// clears it once the log writes again (`consensus::nospace`): one change in flight, given
    /// up after the request timeout (its outcome unknown).
    fn maybe_change_disk_alarm(&mut self, now: Instant) {
        if let Some((sequence, action, since)) = self.disk_alarm_change {
            if now.saturating_duration_since(since) < request_timeout(self.heartbeat) {
                return;
            }
            self.disk_alarm_change = None;
            self.replica.step(now, Input::Withdraw(sequence));
            self.disk_alarm.ended(action, false);
        }
        let full = self.replica.log_disk_full();
        let alone = self.replica.voters().len() < 2;
        let Some(request) = self.disk_alarm.next(self.id, full, alone, &self.alarms) else {
            return;
        };
        // Past the refusal of writes a full disk makes: the alarm is what reports it.
        let sequence = self.propose(now, &Request::Alarm(request));
        self.disk_alarm_change = Some((sequence, request.action, now));
        self.disk_alarm_proposed = Some(request.action);
    }

    /// A caller's write.
    pub fn write(
        &mut self,
        now: Instant,
        caller: Caller,
        request: &WriteRequest,
    ) -> Option<Answer> {
        // As the server: a member whose log disk is full could not apply it.
        if self.replica.log_disk_full() {
            return Some(Answer::Written(Err(crate::mvcc::KvError::NoSpace.into())));
        }
        if let Err(error) = self.replica.admit() {
            return Some(Answer::Written(Err(error)));
        }
        let sequence = self.propose(now, &Request::Write(request.clone()));
        self.writes.insert(sequence, caller);
        None
    }

    /// The next proposal's number and ID.
    fn next_proposal(&mut self) -> (u64, ProposalId) {
        let sequence = self.next_number;
        self.next_number += 1;
        let id = ProposalId {
            proposer: self.id,
            nonce: self.nonce,
            sequence,
        };
        (sequence, id)
    }

    /// Proposes a request (a write, or this member's alarm); returns its number.
    fn propose(&mut self, now: Instant, request: &Request) -> u64 {
        let (sequence, id) = self.next_proposal();
        let frame = native::encode_request(0, request);
        self.replica.step(
            now,
            Input::Propose(Waiting {
                sequence,
                proposal: Proposal::Entry(encode_proposal(id, None, &frame)),
                queued_at: now,
            }),
        );
        sequence
    }

    /// Proposes a membership change as the server does (checked against the registry and, on
    /// the leader, the cluster's health and a learner's progress; checked again when applied).
    pub fn change_members(&mut self, now: Instant, change: &MemberChange) -> Result<(), String> {
        self.replica
            .check_change(change)
            .map_err(|e| e.to_string())?;
        let (sequence, id) = self.next_proposal();
        let (change_type, node_id) = change
            .raft_change()
            .unwrap_or((ConfChangeType::AddNode, change.member_id().get()));
        let mut body = Vec::new();
        encode_change(change, &mut body);
        let mut conf_change = ConfChange::default();
        conf_change.set_change_type(change_type);
        conf_change.node_id = node_id;
        conf_change.context = encode_proposal(id, None, &body).to_vec().into();
        self.replica.step(
            now,
            Input::Propose(Waiting {
                sequence,
                proposal: Proposal::Change(conf_change),
                queued_at: now,
            }),
        );
        Ok(())
    }

    /// Asks this member, as leader, to hand leadership to `target` (etcd's move-leader).
    pub fn transfer_leader(&mut self, now: Instant, target: u64) -> Result<(), String> {
        if self
            .replica
            .check_transfer(crate::ids::MemberId::new(target))
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        self.replica.step(
            now,
            Input::TransferLeader(crate::ids::MemberId::new(target)),
        );
        Ok(())
    }

    /// A caller's linearizable read.
    pub fn read(&mut self, now: Instant, caller: Caller, request: RangeRequest) -> Option<Answer> {
        if self.bug == Some(Bug::ReadWithoutReadIndex) {
            return Some(Answer::Read(self.kv.range(&request).map_err(Into::into)));
        }
        let reader = self.next_number;
        self.next_number += 1;
        self.reads.insert(reader, (caller, request));
        self.replica.step(now, Input::Read(reader));
        None
    }

    /// A caller gave up on a write.
    pub fn withdraw(&mut self, now: Instant, caller: Caller) {
        let gone: Vec<u64> = self
            .writes
            .iter()
            .filter(|(_, c)| **c == caller)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in gone {
            self.writes.remove(&sequence);
            self.replica.step(now, Input::Withdraw(sequence));
        }
        let readers: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (c, _))| *c == caller)
            .map(|(reader, _)| *reader)
            .collect();
        for reader in &readers {
            self.reads.remove(reader);
        }
        self.read_waits.retain(|(_, c, _)| *c != caller);
        if !readers.is_empty() {
            self.replica.step(now, Input::WithdrawReads(readers));
        }
    }

    /// Runs the replica until it has nothing more to do now: hands off queued work, runs
    /// every Ready turn, applies, stages. A log error stops the member.
    pub fn pump(&mut self, now: Instant) -> Result<Effects, String> {
        let mut effects = Effects::default();
        if let Some(turn) = self.blocked.take() {
            if !self.drain(now, &mut effects)? {
                self.blocked = Some(turn);
                self.report(&mut effects);
                return Ok(effects);
            }
            self.run_turn(now, turn, &mut effects)?;
            for input in std::mem::take(&mut self.inbox) {
                self.step(now, input);
            }
        }
        self.retry_held(now, &mut effects)?;
        self.replica.step(now, Input::HandOff);
        self.carry_out(now, &mut effects);
        while let Some(turn) = self.replica.begin_turn(now) {
            if turn.snapshot().is_some() && !self.drain(now, &mut effects)? {
                self.blocked = Some(turn);
                break;
            }
            self.run_turn(now, turn, &mut effects)?;
        }
        self.serve_reads(&mut effects);
        self.serve_watches(&mut effects);
        if self.blocked.is_none() {
            self.maybe_snapshot(now)?;
        }
        if self.replica.is_leader() {
            effects.leading = Some(self.replica.term().get());
            self.maybe_expire_leases(now);
        }
        self.report(&mut effects);
        Ok(effects)
    }

    /// Hands the simulation what this member counted and found since the last pump.
    fn report(&mut self, effects: &mut Effects) {
        effects.writes_without_space = std::mem::take(&mut self.writes_without_space);
        effects.wrote_again = std::mem::take(&mut self.wrote_again);
        effects.disk_alarm = self.disk_alarm_proposed.take();
        effects.unpersisted = std::mem::take(&mut self.unpersisted);
        let leader = self.replica.is_leader();
        effects.handed_over_full = self.leading_full && !leader;
        self.leading_full = leader && self.replica.log_disk_full();
    }

    /// One turn of the Ready protocol: the snapshot installed, committed entries applied, the
    /// plan staged (or held), the turn ended.
    fn run_turn(
        &mut self,
        now: Instant,
        mut turn: Turn,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let snapshot = turn.snapshot().cloned();
        if let Some(snapshot) = &snapshot {
            self.install(now, snapshot)?;
            effects.installed = Some(snapshot.get_metadata().index);
        }
        let committed = self.replica.take_committed(&mut turn);
        self.apply(now, committed, effects)?;
        let plan = self
            .replica
            .persist_plan(&mut turn)
            .map_err(|e| e.to_string())?;
        if let (Some(plan), Some(Bug::ApplyBeforeCommit)) = (&plan, self.bug) {
            self.apply_early(now, &plan.entries, effects);
        }
        let number = self.replica.end_turn(turn, now);
        let cut = plan.as_ref().and_then(|plan| self.plan_cuts(plan));
        if snapshot.is_some() {
            // Finished in place, as the server does: nothing else is in flight (and a full
            // disk here stops the member, as it does the server).
            if let Some(plan) = plan {
                let staged = self
                    .wal
                    .stage_append(&plan.entries, plan.hard_state)
                    .map_err(|e| format!("log: {e}"))?;
                if let Some(staged) = staged {
                    block_on(self.wal.wait_staged(staged)).map_err(|e| format!("log: {e}"))?;
                }
            }
            if let Some(cut) = cut {
                self.note_cut(cut);
            }
            self.replica.step(now, Input::Persisted(number));
            self.carry_out(now, effects);
            return Ok(());
        }
        if let Some(cut) = cut {
            self.cuts.insert(number, cut);
        }
        match plan {
            Some(plan) => self.persist(now, number, plan, effects)?,
            None => self.replica.step(now, Input::Persisted(number)),
        }
        self.carry_out(now, effects);
        Ok(())
    }

    /// As leader, proposes the revocation of leases past their deadline, as the server does
    /// (`Lessor::due`; one expiry in flight at a time, given up after a client's timeout).
    fn maybe_expire_leases(&mut self, now: Instant) {
        if self.replica.log_disk_full() {
            // Refused as every write through this member is; tried again once it has room.
            return;
        }
        if let Some((_, since)) = self.expiry {
            if now.saturating_duration_since(since) < Duration::from_secs(3) {
                return;
            }
            self.expiry = None;
        }
        let mut lease_now = self.lease_now(now);
        if self.bug == Some(Bug::LeaseExpiresEarly) {
            lease_now += Duration::from_secs(1);
        }
        let due = self.kv.leases().due(lease_now, self.heartbeat);
        if due.is_empty() {
            return;
        }
        let request = WriteRequest::Lease(crate::lease::LeaseRequest::Expire { leases: due });
        let sequence = self.propose(now, &Request::Write(request));
        self.expiry = Some((sequence, now));
    }

    fn carry_out(&mut self, now: Instant, effects: &mut Effects) {
        let Outputs {
            send,
            refused,
            reads_ready,
            reads_failed,
            leader_changes,
            ..
        } = self.replica.take_outputs();
        self.check_vouched(&send);
        effects.send.extend(send);
        if leader_changes
            .iter()
            .any(|change| change.to.get() == self.id)
        {
            // As the server does: every lease gets an election timeout more, since keep-alives
            // could reach no one during the election.
            let lease_now = self.lease_now(now);
            let margin = self.heartbeat * ELECTION_TICKS as u32;
            self.kv.leases_mut().promote(lease_now, margin);
        }
        for (sequence, error) in refused {
            if self.expiry.is_some_and(|(expiry, _)| expiry == sequence) {
                self.expiry = None;
            }
            if let Some((_, action, _)) = self
                .disk_alarm_change
                .filter(|(change, _, _)| *change == sequence)
            {
                self.disk_alarm_change = None;
                self.disk_alarm.ended(action, true);
            }
            if let Some(caller) = self.writes.remove(&sequence) {
                effects.answers.push((caller, Answer::Written(Err(error))));
            }
        }
        for (reader, index) in reads_ready {
            if let Some((caller, request)) = self.reads.remove(&reader) {
                self.read_waits.push((index.get(), caller, request));
            }
        }
        for (reader, error) in reads_failed {
            if let Some((caller, _)) = self.reads.remove(&reader) {
                effects.answers.push((caller, Answer::Read(Err(error))));
            }
        }
    }
}
