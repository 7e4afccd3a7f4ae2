//! A seeded, deterministic simulation of a whole cluster: N members running the real replica
//! over the real log on simulated disks, applying to the real MVCC keyspace, over a simulated
//! network, on a simulated clock, with clients issuing puts, reads and compare-and-swaps, and a
//! nemesis injecting faults. One thread, one seed: a failing seed replays exactly.
//!
//! ```text
//!   events (time, order) ─▶ Tick(m) │ Deliver(m, msg) │ Synced(m) │ Client(c) │ Nemesis │ Restart(m)
//!            │                                          ▲
//!            ▼                                          │ new events: messages with their
//!   member m: step input ─▶ pump (HandOff, Ready turns: │ delays, syncs after a latency,
//!             apply, stage) ─▶ effects ─────────────────┘ answers to clients
//!   checkers, as it runs: one leader per term; an index applied anywhere holds the same entry
//!             and leads to the same revision everywhere
//!   at the end: faults stop, the network heals, every member runs; every client reads every
//!             key and every watcher is given every change; the whole history must be
//!             linearizable; no lease expired before what an acknowledged grant or keep-alive
//!             promised (its call time plus the TTL answered); every watcher was given exactly
//!             every change, in order, each as applied (none missing, repeated or altered)
//! ```
//!
//! Members snapshot and compact their logs; a follower behind the compacted log installs the
//! leader's snapshot. Writes go through the real sequencer (`mvcc::sequence`, in `ShardedKv`).
//! Clients also hold leases (grant, keep alive, attach a key, revoke, abandon); the leader
//! expires them by the server's rule (`Lessor::due`) on its own lease clock, a new leader
//! extends them by an election timeout, snapshots carry what each had left. Watching clients
//! stream every change from a member they pick (the real watch merger and stream, caught up
//! from the member's history when behind or after it installed a snapshot) and reconnect now
//! and then, and whenever their member goes down, from the revision after the last they got.
//!
//! Faults: messages dropped, duplicated (all but forwarded proposals, which lode's TCP
//! transport never repeats), delayed and reordered; links cut one way or both
//! (a member isolated, the cluster split); members crashed and restarted from what their disk
//! kept (only synced bytes, every write, or torn sectors); a disk dying mid-write; fsync
//! failing; slow fsyncs (beyond the election timeout, now and then) and hung ones (beyond the
//! leader's step-down limit); the whole cluster losing power at once; the leader handing
//! leadership over; members replaced one step at a time (a learner added and started with the
//! registry the cluster gives it, promoted once caught up, a voter removed; a removed member
//! that sends is told so and stops, as the transport does); a member's log disk full for a
//! while (every write refused with ENOSPC), then given room again: the
//! member holds its writes and retries them as the server does, refuses writes, serves reads,
//! raises and clears its own full-disk alarm, and hands leadership over if it leads.
//!
//! Checked as it runs besides: a member acknowledges appended entries, grants a vote and
//! applies an entry only once its log holds it durably; the alarms applied at an index are the
//! same everywhere. At the end, besides: every member in the cluster cleared its full-disk
//! alarm.

mod clients;
mod faults;
mod leases;
pub mod member;
mod membership;
pub mod network;
pub mod options;
mod watchers;
pub mod workload;

pub use options::{Bug, FaultCounts, FaultKinds, Report, SimOptions};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use raft::eraftpb::Message;

use self::leases::LeaseRecord;
use self::member::{Answer, Caller, SimMember, SimSnapshot};
use self::network::{Fate, Network, NetworkFaults};
use self::watchers::{Watcher, WATCHERS};
use self::workload::{describe, operation, Call, ClientOp, Told, KEYS};
use crate::linearize::{self, Operation, Verdict};
use crate::replica::random::Random;
use crate::replica::Input;
use crate::wal::sim::{CrashModel, SimDisk};

/// Lines of trace kept when not keeping all.
const TRACE_TAIL: usize = 400;

/// The heartbeat interval (a tick).
const HEARTBEAT: Duration = Duration::from_millis(100);

/// How long a client waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the cluster has, once healed, to answer every final read.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Event {
    Tick(u64),
    Deliver(u64, Box<Message>, Option<Box<SimSnapshot>>),
    /// The leader learns whether streaming a snapshot to a follower worked.
    SnapshotReport(u64, u64, bool),
    Synced(u64, u64),
    Client(u64),
    ClientTimeout(u64, Caller),
    Nemesis,
    Restart(u64),
    /// Every cut link works again (a partition ends).
    Reconnect,
    Heal,
    /// A member's log disk fills up.
    DiskFull,
    /// Member `id`'s disk has room again, ending full-disk episode `n`.
    SpaceBack(u64, u64),
    /// A watching client (re)opens its stream on a member it picks.
    WatchOpen(usize),
    /// A member that applied its own removal stops for good.
    Retire(u64),
}

/// A member slot: running, or down since a crash.
struct Slot {
    member: Option<SimMember>,
    disk: SimDisk,
    /// Its snapshot files, as of the crash (they are durable once taken).
    snapshots: Vec<SimSnapshot>,
    incarnation: u64,
    /// The registry it starts with when it has no snapshot: the bootstrap one, or the one
    /// the cluster gave it when it joined (`None` until it is added).
    initial: Option<crate::members::Members>,
    /// It applied its own removal and stopped for good.
    removed: bool,
    /// The full-disk episode its disk is in, if it is full.
    full: Option<u64>,
}

/// A client's operation in flight.
struct InFlight {
    caller: Caller,
    op: ClientOp,
    call: u64,
    member: u64,
}

struct Client {
    count: u64,
    seen: Vec<Option<Vec<u8>>>,
    /// The lease it holds and keeps alive.
    lease: Option<i64>,
    in_flight: Option<InFlight>,
    /// Keys still to read in the final check.
    final_reads: VecDeque<u64>,
}

/// One simulation run.
pub struct Simulation {
    options: SimOptions,
    random: Random,
    /// Full disks are drawn from a stream of their own, so the other faults of a seed stay
    /// where they were with or without them.
    disk_random: Random,
    /// Full-disk episodes begun.
    episodes: u64,
    base: Instant,
    now: Duration,
    order: u64,
    events: BinaryHeap<Reverse<(Duration, u64, u64)>>,
    payloads: BTreeMap<u64, Event>,
    slots: Vec<Slot>,
    network: Network,
    clients: Vec<Client>,
    next_caller: Caller,
    history: Vec<Operation>,
    faults: FaultCounts,
    operations: u64,
    /// Leader of each term seen.
    leaders: BTreeMap<u64, u64>,
    /// Each index applied anywhere: (term, digest, revision after it, alarms digest after it,
    /// the first member that applied it).
    applied: BTreeMap<u64, (u64, u64, i64, u64, u64)>,
    failure: Option<String>,
    trace: VecDeque<String>,
    settling: bool,
    /// Every lease a client was granted.
    leases: BTreeMap<i64, LeaseRecord>,
    watchers: Vec<Watcher>,
    /// Every change applied anywhere, by (revision, sub): the event the first member to apply
    /// it made (every other member must make the same).
    changes: BTreeMap<(i64, i64), crate::watch::Event>,
}

impl Simulation {
    /// A simulation set up as `options` says.
    pub fn new(options: SimOptions) -> Simulation {
        let random = Random::new(options.seed);
        let network = Network::new(if options.faults.network {
            NetworkFaults::rough()
        } else {
            NetworkFaults::calm()
        });
        let clients = (0..options.clients)
            .map(|_| Client {
                count: 0,
                seen: vec![None; KEYS as usize],
                lease: None,
                in_flight: None,
                final_reads: VecDeque::new(),
            })
            .collect();
        Simulation {
            random,
            disk_random: Random::new(options.seed ^ 0xd15c_f011),
            episodes: 0,
            base: Instant::now(),
            now: Duration::ZERO,
            order: 0,
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            slots: Vec::new(),
            network,
            clients,
            next_caller: 1,
            history: Vec::new(),
            faults: FaultCounts::default(),
            operations: 0,
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            failure: None,
            trace: VecDeque::new(),
            settling: false,
            leases: BTreeMap::new(),
            watchers: (0..WATCHERS)
                .map(|_| Watcher {
                    stream: None,
                    next: 1,
                    received: Vec::new(),
                })
                .collect(),
            changes: BTreeMap::new(),
            options,
        }
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        let line = format!("{:>10.3}ms {}", self.now.as_secs_f64() * 1000.0, line());
        self.trace.push_back(line);
        if !self.options.trace && self.trace.len() > TRACE_TAIL {
            self.trace.pop_front();
        }
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.log(|| format!("FAILED: {what}"));
            self.failure = Some(what);
        }
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        let order = self.order;
        self.order += 1;
        self.events.push(Reverse((self.now + after, order, order)));
        self.payloads.insert(order, event);
    }

    /// The members: every slot added to the cluster and not removed.
    fn member_ids(&self) -> Vec<u64> {
        (1..=self.slots.len() as u64)
            .filter(|id| {
                let slot = &self.slots[(id - 1) as usize];
                slot.initial.is_some() && !slot.removed
            })
            .collect()
    }

    /// A member picked at random.
    fn pick_member(&mut self) -> u64 {
        let members = self.member_ids();
        members[self.random.below(0, members.len() as u64) as usize]
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Report {
        let count = self.options.members;
        let bootstrap = member::bootstrap(count);
        for id in 1..=count {
            let disk = SimDisk::new();
            self.slots.push(Slot {
                member: None,
                disk,
                snapshots: Vec::new(),
                incarnation: 0,
                initial: Some(bootstrap.clone()),
                removed: false,
                full: None,
            });
            self.start_member(id);
            // Ticks start out of step, as members' clocks do.
            let offset = Duration::from_millis(self.random.below(0, 100));
            self.schedule(offset, Event::Tick(id));
        }
        for client in 0..self.options.clients {
            let think = Duration::from_millis(self.random.below(0, 50));
            self.schedule(think, Event::Client(client));
        }
        for watcher in 0..WATCHERS {
            let think = Duration::from_millis(self.random.below(0, 200));
            self.schedule(think, Event::WatchOpen(watcher));
        }
        let kinds = self.options.faults;
        if kinds.partitions || kinds.crashes || kinds.power_cuts {
            self.schedule(Duration::from_millis(500), Event::Nemesis);
        }
        if kinds.nospace {
            let first = Duration::from_millis(self.disk_random.below(500, 5_000));
            self.schedule(first, Event::DiskFull);
        }
        self.schedule(self.options.duration, Event::Heal);
        let deadline = self.options.duration + SETTLE;
        while let Some(Reverse((at, _, order))) = self.events.pop() {
            if self.failure.is_some() || at > deadline {
                break;
            }
            self.now = at;
            let Some(event) = self.payloads.remove(&order) else {
                continue;
            };
            self.handle(event);
            if self.settling && self.settled() {
                break;
            }
        }
        if self.failure.is_none() {
            self.final_check();
        }
        self.report()
    }

    /// Every final read is answered, every watcher was given every change applied, and no
    /// running member lists a full-disk alarm of a member of the cluster.
    fn settled(&self) -> bool {
        let last = self
            .changes
            .keys()
            .next_back()
            .map_or(0, |(revision, _)| *revision);
        self.clients
            .iter()
            .all(|c| c.final_reads.is_empty() && c.in_flight.is_none())
            && self.watchers.iter().all(|w| w.next > last)
            && self.disk_alarms().is_empty()
    }

    /// The full-disk alarms of members of the cluster that some running member lists.
    fn disk_alarms(&self) -> Vec<(u64, u64)> {
        let members = self.member_ids();
        let mut listed = Vec::new();
        for id in &members {
            let Some(member) = self.slots[(id - 1) as usize].member.as_ref() else {
                continue;
            };
            for of in &members {
                if member
                    .alarms()
                    .has(*of, crate::alarm::AlarmType::LogDiskFull)
                {
                    listed.push((*id, *of));
                }
            }
        }
        listed
    }

    fn report(self) -> Report {
        let applied = self.applied.keys().next_back().copied().unwrap_or(0);
        Report {
            seed: self.options.seed,
            members: self.options.members,
            simulated: self.now,
            faults: self.faults,
            operations: self.operations,
            applied,
            leaders: self.leaders.len() as u64,
            leases: (
                self.leases.len() as u64,
                self.leases
                    .values()
                    .filter(|record| record.expired_at.is_some())
                    .count() as u64,
            ),
            failure: self.failure,
            trace: self.trace.into_iter().collect(),
        }
    }

    fn final_check(&mut self) {
        self.check_leases();
        if self.failure.is_some() {
            return;
        }
        if !self.settled() {
            let members: Vec<String> = self
                .member_ids()
                .into_iter()
                .map(|id| {
                    let status = self.slots[(id - 1) as usize]
                        .member
                        .as_ref()
                        .map_or_else(|| "down".to_string(), SimMember::status);
                    format!("m{id}: {status}")
                })
                .collect();
            let alarms: Vec<String> = self
                .disk_alarms()
                .into_iter()
                .map(|(on, of)| format!("m{on} lists m{of}'s full disk"))
                .collect();
            self.fail(format!(
                "no progress: {SETTLE:?} after every fault was healed, final reads are still \
                 unanswered, a watcher was not given every change or a full-disk alarm was \
                 not cleared\n  {}\n  alarms: {alarms:?}",
                members.join("\n  ")
            ));
            return;
        }
        self.check_watchers();
        if self.failure.is_some() {
            return;
        }
        match linearize::check(&self.history) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(found) => {
                if !self.options.explain {
                    self.fail(format!(
                        "history not linearizable ({} operations on keys that share them admit \
                         no order; replay the seed for a smaller set)",
                        found.operations.len()
                    ));
                    return;
                }
                let witness = linearize::minimize(&self.history);
                let ops: Vec<String> = witness.iter().map(describe).collect();
                self.fail(format!(
                    "history not linearizable; these operations admit no order:\n  {}",
                    ops.join("\n  ")
                ));
            }
            Verdict::Undecided => {
                self.log(|| "the linearizability search gave up (undecided)".into());
            }
        }
    }

    fn start_member(&mut self, id: u64) {
        let slot = &mut self.slots[(id - 1) as usize];
        let Some(initial) = slot.initial.clone().filter(|_| !slot.removed) else {
            return;
        };
        slot.incarnation += 1;
        let seed = self.options.seed ^ (id << 48) ^ (slot.incarnation << 32);
        match SimMember::start(
            id,
            &initial,
            slot.disk.clone(),
            slot.snapshots.clone(),
            seed,
            HEARTBEAT,
            self.options.bug,
            self.base + self.now,
        ) {
            Ok(member) => {
                slot.member = Some(member);
                self.log(|| format!("m{id} starts"));
                self.pump(id);
            }
            // Its log disk is still full: it cannot start yet (a supervisor tries again).
            Err(error) if !self.slots[(id - 1) as usize].disk.has_room() => {
                self.log(|| format!("m{id} cannot start on a full disk: {error}"));
                self.schedule_restart(id);
            }
            Err(error) => self.fail(format!("m{id} cannot restart from its disk: {error}")),
        }
    }

    /// Crashes member `id`: what its disk kept is decided by `model`.
    fn crash(&mut self, id: u64, model: CrashModel) {
        let slot = &mut self.slots[(id - 1) as usize];
        let Some(member) = slot.member.take() else {
            return;
        };
        slot.disk = member.disk().crash_image(model);
        slot.snapshots = member.snapshots().to_vec();
        slot.incarnation += 1;
        self.log(|| format!("m{id} crashes ({model:?})"));
        for w in 0..self.watchers.len() {
            if self.watchers[w]
                .stream
                .is_some_and(|(member, _)| member == id)
            {
                // The connection broke: the client reconnects elsewhere.
                self.watchers[w].stream = None;
                let retry = Duration::from_millis(self.random.below(50, 300));
                self.schedule(retry, Event::WatchOpen(w));
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(id) => {
                self.schedule(HEARTBEAT, Event::Tick(id));
                self.step(id, Input::Tick);
            }
            Event::Deliver(to, message, snapshot) => {
                if self.told_removed(to, message.from) {
                    return;
                }

                if let (Some(snapshot), Some(member)) =
                    (snapshot, self.slots[(to - 1) as usize].member.as_mut())
                {
                    member.receive_snapshot(*snapshot);
                }
                self.step(to, Input::Peer(*message));
            }
            Event::SnapshotReport(from, peer, accepted) => {
                let peer = crate::ids::MemberId::new(peer);
                self.step(from, Input::SnapshotSent { peer, accepted });
            }
            Event::Synced(id, incarnation) => self.synced(id, incarnation),
            Event::Client(client) => self.client_next(client),
            Event::ClientTimeout(client, caller) => self.client_timeout(client, caller),
            Event::Nemesis => self.nemesis(),
            Event::Restart(id) => {
                if self.slots[(id - 1) as usize].member.is_none() {
                    self.start_member(id);
                }
            }
            Event::Reconnect => {
                if self.network.is_partitioned() {
                    self.log(|| "network healed".into());
                }
                self.network.heal();
            }
            Event::Heal => self.heal(),
            Event::DiskFull => self.disk_full(),
            Event::SpaceBack(id, episode) => {
                if self.slots[(id - 1) as usize].full == Some(episode) {
                    self.space_back(id);
                }
            }
            Event::WatchOpen(watcher) => self.watch_open(watcher),
            Event::Retire(id) => self.retire(id),
        }
    }

    fn step(&mut self, id: u64, input: Input) {
        let now = self.instant();
        let Some(member) = self.slots[(id - 1) as usize].member.as_mut() else {
            return;
        };
        member.step(now, input);
        self.pump(id);
    }

    /// Runs member `id` until it is idle and carries out what it did.
    fn pump(&mut self, id: u64) {
        let now = self.instant();
        let Some(member) = self.slots[(id - 1) as usize].member.as_mut() else {
            return;
        };
        let effects = match member.pump(now) {
            Ok(effects) => effects,
            Err(error) => {
                self.log(|| format!("m{id} stops: {error}"));
                self.crash(id, CrashModel::SyncedOnly);
                self.schedule_restart(id);
                return;
            }
        };
        if let Some(index) = effects.installed {
            self.log(|| format!("m{id} installs the leader's snapshot at {index}"));
        }
        if let Some(what) = effects.unpersisted.first() {
            self.fail(what.clone());
        }
        if effects.writes_without_space > 0 {
            self.log(|| format!("m{id}: a log write found no space"));
        }
        if effects.wrote_again {
            self.log(|| format!("m{id} writes its log again"));
        }
        if let Some(change) = effects.disk_alarm {
            self.log(|| format!("m{id} proposes its full-disk alarm: {change:?}"));
        }
        self.faults.writes_without_space += effects.writes_without_space;
        if effects.handed_over_full {
            self.faults.full_leaders_replaced += 1;
            self.log(|| format!("m{id} no longer leads with its disk full"));
        }
        if let Some(term) = effects.leading {
            match self.leaders.get(&term) {
                Some(leader) if *leader != id => {
                    self.fail(format!("two leaders in term {term}: m{leader} and m{id}"));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.log(|| format!("m{id} leads in term {term}"));
                }
            }
        }
        for entry in effects.applied {
            match self.applied.get(&entry.index) {
                None => {
                    self.applied.insert(
                        entry.index,
                        (entry.term, entry.digest, entry.revision, entry.alarms, id),
                    );
                }
                Some(&(term, digest, revision, alarms, first)) => {
                    if (term, digest) != (entry.term, entry.digest) {
                        self.fail(format!(
                            "index {} applied as term {} on m{first} but term {} (another \
                             entry) on m{id}: a committed entry changed",
                            entry.index, term, entry.term
                        ));
                    } else if revision != entry.revision {
                        self.fail(format!(
                            "index {} left revision {revision} on m{first} but {} on m{id}",
                            entry.index, entry.revision
                        ));
                    } else if alarms != entry.alarms {
                        self.fail(format!(
                            "index {} left other alarms on m{id} than on m{first}",
                            entry.index
                        ));
                    }
                }
            }
        }
        if !effects.expired.is_empty() {
            self.leases_expired(id, effects.expired);
        }
        if effects.removed {
            self.removal_applied(id);
        }
        if effects.leading.is_some() {
            self.start_joiners(id);
        }
        self.record_changes(id, effects.events);
        for (caller, response) in effects.watch_responses {
            self.watch_response(caller, response);
        }
        if effects.wants_sync {
            let incarnation = self.slots[(id - 1) as usize].incarnation;
            let latency = self.sync_latency();
            self.schedule(latency, Event::Synced(id, incarnation));
        }
        for message in effects.send {
            self.send(id, message);
        }
        for (caller, answer) in effects.answers {
            self.answer(caller, answer);
        }
    }

    fn sync_latency(&mut self) -> Duration {
        if self.options.faults.slow_syncs && !self.settling && self.random.chance(1, 300) {
            // A disk that stops answering, past the leader's step-down limit.
            self.faults.hung_syncs += 1;
            return Duration::from_millis(self.random.below(5_000, 15_000));
        }
        if self.options.faults.slow_syncs && self.random.chance(3, 100) {
            self.faults.slow_syncs += 1;
            // Now and then longer than the election timeout.
            return Duration::from_millis(self.random.below(50, 2_500));
        }
        Duration::from_micros(self.random.below(100, 2_000))
    }

    fn synced(&mut self, id: u64, incarnation: u64) {
        let slot = &mut self.slots[(id - 1) as usize];
        if slot.incarnation != incarnation {
            return;
        }
        let Some(member) = slot.member.as_mut() else {
            return;
        };
        if self.options.faults.disks && !self.settling {
            let disk = member.disk().clone();
            if self.random.chance(1, 400) {
                disk.die_before(disk.operations() + self.random.below(0, 3));
                self.faults.disk_deaths += 1;
            } else if self.random.chance(1, 400) {
                disk.fail_sync_at(disk.operations() + self.random.below(0, 3));
                self.faults.sync_failures += 1;
            }
        }
        let now = self.instant();
        let Some(member) = self.slots[(id - 1) as usize].member.as_mut() else {
            return;
        };
        if let Err(error) = member.sync(now) {
            self.log(|| format!("m{id} stops: {error}"));
            let model = CrashModel::Torn(self.random.next_u64());
            self.crash(id, model);
            self.schedule_restart(id);
            return;
        }
        self.pump(id);
    }

    fn schedule_restart(&mut self, id: u64) {
        let after = Duration::from_millis(self.random.below(50, 3_000));
        self.schedule(after, Event::Restart(id));
    }

    fn send(&mut self, from: u64, message: Message) {
        let to = message.to;
        // A proposal a follower forwards to the leader is never delivered twice: lode's
        // transport is one TCP stream per peer and direction, and Raft cannot tell a repeated
        // proposal from a new one (appended twice, it applies twice, in etcd too). Every other
        // message may be: Raft must shrug off repeats.
        let duplicable = message.get_msg_type() != raft::eraftpb::MessageType::MsgPropose;
        // A snapshot travels with its file, streamed by the transport; the leader hears
        // whether it arrived.
        let snapshot = if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
            let index = message.get_snapshot().get_metadata().index;
            let image = self.slots[(from - 1) as usize]
                .member
                .as_ref()
                .and_then(|member| member.snapshot_at(index))
                .cloned();
            if image.is_none() {
                self.fail(format!(
                    "m{from} sent a snapshot at {index} it does not have"
                ));
            }
            image.map(Box::new)
        } else {
            None
        };
        let is_snapshot = snapshot.is_some();
        match self.network.send(&mut self.random, from, to, duplicable) {
            Fate::Lost { cut } => {
                if !cut {
                    self.faults.messages_dropped += 1;
                }
                if is_snapshot {
                    self.schedule(
                        Duration::from_millis(500),
                        Event::SnapshotReport(from, to, false),
                    );
                }
            }
            Fate::Delivered(delays) => {
                if delays.len() > 1 {
                    self.faults.messages_duplicated += 1;
                }
                if is_snapshot {
                    self.faults.snapshots_sent += 1;
                    let after = delays[0] + Duration::from_millis(1);
                    self.schedule(after, Event::SnapshotReport(from, to, true));
                }
                for delay in delays {
                    if delay > Duration::from_millis(10) {
                        self.faults.messages_late += 1;
                    }
                    self.schedule(
                        delay,
                        Event::Deliver(to, Box::new(message.clone()), snapshot.clone()),
                    );
                }
            }
        }
    }
}

/// Runs one seed as `options` says.
pub fn run(options: SimOptions) -> Report {
    Simulation::new(options).run()
}
