//! One simulated member: the real replica over the real log on a simulated disk, applying
//! committed entries to the real MVCC keyspace (`mvcc::sharded`: the shards, `exec` and the
//! lessor arranged in one place, as the threaded server must behave), with the shell's duties
//! done by the simulation: staging and syncing the log, answering callers, serving reads.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message};

use super::Bug;
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
use crate::replica::{Input, Outputs, Replica, ReplicaConfig};
use crate::wal::sim::{SimDir, SimDisk};
use crate::wal::{StagedAppend, Wal, WalOptions};
use crate::watch::merge::RevisionMerger;
use crate::watch::stream::{CreateWatch, WatchResponse, WatchStream};

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

/// An entry applied, for the checkers: (index, term, data digest) and the revision after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    pub digest: u64,
    pub revision: i64,
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
    /// Staged appends not yet synced, with their Ready numbers, oldest first.
    unsynced: Vec<(u64, StagedAppend)>,
    /// When the sync now pending was asked for.
    sync_scheduled: Option<Instant>,
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
        let kv: ShardedKv = match newest {
            None => ShardedKv::new(SHARDS),
            Some(snapshot) => {
                let mut kv = snapshot.kv;
                kv.leases_mut().import(&snapshot.leases, LEASE_CLOCK_OFFSET);
                kv
            }
        };
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
            unsynced: Vec::new(),
            sync_scheduled: None,
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

    /// Opens a watch stream for `caller` on every key from revision `start` on (etcd's
    /// `Watch` with `prev_kv`), served from this member's applied state.
    pub fn open_watch(&mut self, caller: Caller, start: i64) {
        let mut stream = WatchStream::new(self.merger.released(), WATCH_BUDGET);
        stream.set_catch_up_revisions(WATCH_CATCH_UP_REVISIONS);
        stream.create(
            CreateWatch {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                start_revision: start,
                prev_kv: true,
                ..CreateWatch::default()
            },
            self.kv.current_revision(),
        );
        self.watch_streams.insert(caller, stream);
    }

    /// The client closed its watch stream.
    pub fn close_watch(&mut self, caller: Caller) {
        self.watch_streams.remove(&caller);
    }

    /// Releases every revision all shards have reported to the watch streams, catches up the
    /// watchers that are behind from history, and hands out their responses.
    fn serve_watches(&mut self, effects: &mut Effects) {
        let (mut events, upto) = self.merger.release();
        if self.bug == Some(Bug::WatchLosesEvents) {
            events.retain(|event| event.revision() % 13 != 0);
        }
        for stream in self.watch_streams.values_mut() {
            if upto > stream.released() {
                stream.deliver(&events, upto);
            }
        }
        for (caller, stream) in &mut self.watch_streams {
            loop {
                let reads = stream.catch_ups();
                if reads.is_empty() {
                    break;
                }
                for read in reads {
                    let (history, reached) = self.kv.history_events_within(
                        &read.range,
                        read.after,
                        read.upto,
                        read.max_bytes,
                    );
                    stream.on_history(&read, &history, self.kv.compact_revision(), reached);
                }
            }
            while let Some(response) = stream.pop() {
                effects.watch_responses.push((*caller, response));
            }
        }
    }

    /// This member's lease time at `now` (the server's is its monotonic clock, likewise).
    fn lease_now(&self, now: Instant) -> Duration {
        LEASE_CLOCK_OFFSET + now.saturating_duration_since(self.started)
    }

    /// This member's snapshots (durable: what a restart starts from).
    pub fn snapshots(&self) -> &[SimSnapshot] {
        &self.snapshots
    }

    /// The snapshot at `index` this member would stream to a follower.
    pub fn snapshot_at(&self, index: u64) -> Option<&SimSnapshot> {
        self.snapshots
            .iter()
            .find(|snapshot| snapshot.index == index)
    }

    /// The leader streamed a snapshot here (the transport wrote the file before Raft's
    /// message is stepped).
    pub fn receive_snapshot(&mut self, snapshot: SimSnapshot) {
        self.received.insert(snapshot.index, snapshot);
    }

    /// Takes a snapshot once `SNAPSHOT_EVERY` entries were applied since the last, then
    /// compacts the log up to `CATCHUP_ENTRIES` behind it and no further than the previous
    /// one (as the server does).
    fn maybe_snapshot(&mut self, now: Instant) -> Result<(), String> {
        let applied = self.replica.applied().get();
        let last = self.snapshots.last().map_or(0, |snapshot| snapshot.index);
        let wanted = self.replica.snapshot_due(0);
        if (applied < last + SNAPSHOT_EVERY && !wanted) || self.applied_early > 0 {
            return Ok(());
        }
        let term = self.wal.term(applied).map_err(|e| format!("log: {e}"))?;
        let snapshot = SimSnapshot {
            index: applied,
            term,
            voters: self
                .replica
                .voters()
                .into_iter()
                .map(crate::ids::MemberId::get)
                .collect(),
            kv: self.kv.clone(),
            leases: self.kv.leases().export(self.lease_now(now)),
            members: self.replica.members().clone(),
        };
        self.replica.snapshot_taken(snapshot.metadata(), 0);
        self.snapshots.push(snapshot);
        if self.snapshots.len() > 2 {
            self.snapshots.remove(0);
        }
        let compact_to = applied.saturating_sub(CATCHUP_ENTRIES).min(last);
        if compact_to > self.wal.compacted().0 {
            block_on(self.wal.compact(compact_to)).map_err(|e| format!("log: {e}"))?;
        }
        Ok(())
    }

    /// Installs the snapshot of this turn: the earlier Readies made durable first, the
    /// keyspace replaced, the log reset to it.
    fn install(&mut self, now: Instant, snapshot: &raft::eraftpb::Snapshot) -> Result<(), String> {
        let metadata = snapshot.get_metadata();
        let Some(received) = self.received.remove(&metadata.index) else {
            return Err(format!("no snapshot at {} was received", metadata.index));
        };
        if received.term != metadata.term {
            return Err(format!(
                "the snapshot received at {} has term {}, Raft installs term {}",
                metadata.index, received.term, metadata.term
            ));
        }
        self.sync(now)?;
        self.replica.snapshot_installing();
        block_on(self.wal.reset_to_snapshot(metadata.index, metadata.term))
            .map_err(|e| format!("log: {e}"))?;
        self.kv = received.kv.clone();
        let lease_now = self.lease_now(now);
        self.kv.leases_mut().import(&received.leases, lease_now);
        // The keyspace jumped without events: every watcher catches up from history (as a
        // shard's gap report makes the hub do), and the merger starts over at the jump.
        let jumped_to = self.kv.current_revision();
        self.merger = RevisionMerger::new(SHARDS, jumped_to);
        for stream in self.watch_streams.values_mut() {
            stream.resync_all();
            if jumped_to > stream.released() {
                stream.deliver(&[], jumped_to);
            }
        }
        self.replica
            .snapshot_installed(metadata, 0, Some(received.members.clone()));
        self.snapshots.push(received);
        if self.snapshots.len() > 2 {
            self.snapshots.remove(0);
        }
        self.received.retain(|index, _| *index > metadata.index);
        Ok(())
    }

    /// Its state in one line, for a failure report.
    pub fn status(&self) -> String {
        let replica = &self.replica;
        format!(
            "term {} leader {} committed {} applied {} log {}..={} voters {:?} snapshots {:?}",
            replica.term(),
            replica.leader().get(),
            replica.committed(),
            replica.applied(),
            self.wal.first_index(),
            self.wal.last_index(),
            replica.voters(),
            self.snapshots.iter().map(|s| s.index).collect::<Vec<_>>()
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

    /// Feeds the replica an input; a tick also tells it how long the pending sync has run,
    /// as the shell does.
    pub fn step(&mut self, now: Instant, input: Input) {
        let tick = matches!(input, Input::Tick);
        self.replica.step(now, input);
        if let (true, Some(started)) = (tick, self.sync_scheduled) {
            self.replica.step(
                now,
                Input::LogSyncStalled(now.saturating_duration_since(started)),
            );
        }
    }

    /// A caller's write.
    pub fn write(
        &mut self,
        now: Instant,
        caller: Caller,
        request: &WriteRequest,
    ) -> Option<Answer> {
        if let Err(error) = self.replica.admit() {
            return Some(Answer::Written(Err(error)));
        }
        let sequence = self.propose_write(now, request);
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

    /// Proposes a write; returns its number.
    fn propose_write(&mut self, now: Instant, request: &WriteRequest) -> u64 {
        let (sequence, id) = self.next_proposal();
        let frame = native::encode_request(0, &Request::Write(request.clone()));
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

    /// The log syncs what is staged: every pending Ready becomes durable (group commit), or
    /// the sync fails and the member must stop.
    pub fn sync(&mut self, now: Instant) -> Result<(), String> {
        self.sync_scheduled = None;
        for (number, staged) in std::mem::take(&mut self.unsynced) {
            block_on(self.wal.wait_staged(staged)).map_err(|e| format!("log: {e}"))?;
            if self.bug != Some(Bug::AckBeforeSync) {
                self.replica.step(now, Input::Persisted(number));
            }
        }
        Ok(())
    }

    /// Runs the replica until it has nothing more to do now: hands off queued work, runs
    /// every Ready turn, applies, stages. A log error stops the member.
    pub fn pump(&mut self, now: Instant) -> Result<Effects, String> {
        let mut effects = Effects::default();
        self.replica.step(now, Input::HandOff);
        self.carry_out(now, &mut effects);
        while let Some(mut turn) = self.replica.begin_turn(now) {
            let snapshot = turn.snapshot().cloned();
            if let Some(snapshot) = &snapshot {
                self.install(now, snapshot)?;
                effects.installed = Some(snapshot.get_metadata().index);
            }
            let committed = self.replica.take_committed(&mut turn);
            self.apply(now, committed, &mut effects)?;
            let plan = self
                .replica
                .persist_plan(&mut turn)
                .map_err(|e| e.to_string())?;
            let mut staged = None;
            if let Some(plan) = plan {
                if self.bug == Some(Bug::ApplyBeforeCommit) {
                    self.apply_early(now, &plan.entries, &mut effects);
                }
                staged = self
                    .wal
                    .stage_append(&plan.entries, plan.hard_state)
                    .map_err(|e| format!("log: {e}"))?;
            }
            let number = self.replica.end_turn(turn, now);
            if snapshot.is_some() {
                // Finished in place, as the server does: nothing else is in flight.
                if let Some(staged) = staged {
                    block_on(self.wal.wait_staged(staged)).map_err(|e| format!("log: {e}"))?;
                }
                self.replica.step(now, Input::Persisted(number));
                self.carry_out(now, &mut effects);
                continue;
            }
            match staged {
                Some(staged) => {
                    self.unsynced.push((number, staged));
                    if self.bug == Some(Bug::AckBeforeSync) {
                        self.replica.step(now, Input::Persisted(number));
                    }
                    if self.sync_scheduled.is_none() {
                        self.sync_scheduled = Some(now);
                        effects.wants_sync = true;
                    }
                }
                None => self.replica.step(now, Input::Persisted(number)),
            }
            self.carry_out(now, &mut effects);
        }
        self.serve_reads(&mut effects);
        self.serve_watches(&mut effects);
        self.maybe_snapshot(now)?;
        if self.replica.is_leader() {
            effects.leading = Some(self.replica.term().get());
            self.maybe_expire_leases(now);
        }
        Ok(effects)
    }

    /// As leader, proposes the revocation of leases past their deadline, as the server does
    /// (`Lessor::due`; one expiry in flight at a time, given up after a client's timeout).
    fn maybe_expire_leases(&mut self, now: Instant) {
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
        let sequence = self.propose_write(now, &request);
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

    fn serve_reads(&mut self, effects: &mut Effects) {
        let applied = self.replica.applied().get();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_waits)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.read_waits = waiting;
        for (_, caller, request) in ready {
            let answer = self.kv.range(&request).map_err(Into::into);
            effects.answers.push((caller, Answer::Read(answer)));
        }
    }

    fn apply(
        &mut self,
        now: Instant,
        entries: Vec<Entry>,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let lease_now = self.lease_now(now);
        self.kv.set_lease_clock(lease_now);
        for entry in entries {
            if entry.index > self.applied_early {
                match entry.entry_type {
                    EntryType::EntryNormal => self.apply_data(&entry.data, effects),
                    EntryType::EntryConfChange => {
                        let change: ConfChange =
                            protobuf::Message::parse_from_bytes(&entry.data)
                                .map_err(|e| format!("conf change {}: {e}", entry.index))?;
                        let applied = self
                            .replica
                            .apply_member_change(change)
                            .map_err(|e| e.to_string())?;
                        if applied.effect == MemberEffect::RemovedSelf {
                            effects.removed = true;
                        }
                    }
                    EntryType::EntryConfChangeV2 => {
                        let change: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                            .map_err(|e| format!("conf change {}: {e}", entry.index))?;
                        self.replica
                            .apply_conf_change(Ok(change))
                            .map_err(|e| e.to_string())?;
                    }
                }
                effects.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    digest: digest(&entry.data),
                    revision: self.kv.current_revision(),
                });
            }
            self.replica.applied_entry(
                crate::ids::LogIndex::new(entry.index),
                entry.data.len() as u64,
            );
        }
        Ok(())
    }

    /// `ApplyBeforeCommit`: the injected bug applies entries as soon as they are staged.
    fn apply_early(
        &mut self,
        now: Instant,
        entries: &[crate::wal::LogEntry],
        effects: &mut Effects,
    ) {
        let lease_now = self.lease_now(now);
        self.kv.set_lease_clock(lease_now);
        for entry in entries {
            if entry.index <= self.applied_early || entry.payload.is_empty() {
                continue;
            }
            if entry.kind == crate::wal::EntryKind::Normal {
                self.apply_data(&entry.payload, effects);
                self.applied_early = entry.index;
                effects.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    digest: digest(&entry.payload),
                    revision: self.kv.current_revision(),
                });
            }
        }
    }

    /// Every shard reports the events it made with its watermark, as shards do after each
    /// applied batch.
    fn report_watch_events(
        &mut self,
        events: Vec<(usize, crate::watch::Event)>,
        effects: &mut Effects,
    ) {
        let watermark = self.kv.current_revision();
        let mut per_shard = vec![Vec::new(); SHARDS];
        for (shard, event) in events {
            effects.events.push(event.clone());
            per_shard[shard].push(event);
        }
        for (shard, events) in per_shard.into_iter().enumerate() {
            self.merger.push(shard, events, watermark);
        }
    }

    fn apply_data(&mut self, data: &Bytes, effects: &mut Effects) {
        if data.is_empty() {
            return; // a new leader's empty entry
        }
        let Some(proposal) = decode_proposal(data) else {
            return;
        };
        let result = match native::decode_request(&proposal.frame) {
            Ok((_, Request::Write(request))) => {
                match self.kv.write_with_events(&request, MAX_TXN_OPS) {
                    Ok((response, events)) => {
                        self.report_watch_events(events, effects);
                        Ok(response)
                    }
                    Err(error) => Err(ServerError::from(error)),
                }
            }
            _ => Err(ServerError::Internal("malformed log entry".into())),
        };
        if let Ok(WriteResponse::Lease(crate::mvcc::request::LeaseResponse {
            outcome: crate::lease::LeaseOutcome::Expired { ids },
            ..
        })) = &result
        {
            effects.expired.extend(ids);
        }
        let id = proposal.id;
        if id.proposer == self.id && id.nonce == self.nonce {
            if self.expiry.is_some_and(|(expiry, _)| expiry == id.sequence) {
                self.expiry = None;
            }
            if let Some(caller) = self.writes.remove(&id.sequence) {
                effects.answers.push((caller, Answer::Written(result)));
            }
        }
    }
}
