//! What a simulation is asked to do (`SimOptions`: the seed, the faults, an injected bug) and
//! what it reports.

use std::time::Duration;

use crate::replica::random::Random;

/// A bug the simulation can inject, to prove its checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Tell Raft a write is durable before the log synced it.
    AckBeforeSync,
    /// Serve linearizable reads from local state, without a ReadIndex round.
    ReadWithoutReadIndex,
    /// Apply entries when they are staged, before they are committed.
    ApplyBeforeCommit,
    /// The leader expires leases a second before their deadline.
    LeaseExpiresEarly,
    /// Watch streams lose the live events of every thirteenth revision.
    WatchLosesEvents,
}

impl std::str::FromStr for Bug {
    type Err = String;

    fn from_str(text: &str) -> Result<Bug, String> {
        match text {
            "ack-before-sync" => Ok(Bug::AckBeforeSync),
            "read-without-read-index" => Ok(Bug::ReadWithoutReadIndex),
            "apply-before-commit" => Ok(Bug::ApplyBeforeCommit),
            "lease-expires-early" => Ok(Bug::LeaseExpiresEarly),
            "watch-loses-events" => Ok(Bug::WatchLosesEvents),
            other => Err(format!(
                "unknown bug {other:?}: ack-before-sync, read-without-read-index, \
                 apply-before-commit, lease-expires-early or watch-loses-events"
            )),
        }
    }
}

/// Which kinds of fault the simulation injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultKinds {
    /// Messages dropped, duplicated, delayed past others.
    pub network: bool,
    /// Links cut: a member isolated, one direction cut, the cluster split.
    pub partitions: bool,
    /// A member crashing and restarting from what its disk kept.
    pub crashes: bool,
    /// Every member crashing at once.
    pub power_cuts: bool,
    /// A disk dying mid-write, fsync failing.
    pub disks: bool,
    /// Slow fsyncs, some beyond the election timeout.
    pub slow_syncs: bool,
    /// The leader handing leadership to another voter (etcd's move-leader).
    pub transfers: bool,
    /// Members replaced one step at a time: a learner added, started with the registry the
    /// cluster gives it, promoted once caught up; then a voter removed.
    pub membership: bool,
    /// A member's log disk full for a while (ENOSPC), then with room again.
    pub nospace: bool,
}

impl FaultKinds {
    /// Every kind.
    pub const ALL: FaultKinds = FaultKinds {
        network: true,
        partitions: true,
        crashes: true,
        power_cuts: true,
        disks: true,
        slow_syncs: true,
        transfers: true,
        membership: true,
        nospace: true,
    };

    /// None.
    pub const NONE: FaultKinds = FaultKinds {
        network: false,
        partitions: false,
        crashes: false,
        power_cuts: false,
        disks: false,
        slow_syncs: false,
        transfers: false,
        membership: false,
        nospace: false,
    };

    /// Parses a comma-separated list of `network`, `partitions`, `crashes`, `power-cuts`,
    /// `disks`, `slow-syncs`, `transfers`, `membership`, `nospace`, or `all` / `none`; a
    /// kind preceded by `-` is left out (`all,-nospace`).
    pub fn parse(text: &str) -> Result<FaultKinds, String> {
        let mut kinds = FaultKinds::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => kinds = FaultKinds::ALL,
                "none" => {}
                "network" => kinds.network = true,
                "partitions" => kinds.partitions = true,
                "crashes" => kinds.crashes = true,
                "power-cuts" => kinds.power_cuts = true,
                "disks" => kinds.disks = true,
                "slow-syncs" => kinds.slow_syncs = true,
                "transfers" => kinds.transfers = true,
                "membership" => kinds.membership = true,
                "nospace" => kinds.nospace = true,
                other => {
                    let Some(kind) = other.strip_prefix('-') else {
                        return Err(format!(
                            "unknown fault kind {other:?}: network, partitions, crashes, \
                             power-cuts, disks, slow-syncs, transfers, membership, nospace, \
                             all or none (-kind leaves one out)"
                        ));
                    };
                    let one = FaultKinds::parse(kind)?;
                    if one == FaultKinds::ALL || one == FaultKinds::NONE || kind.starts_with('-') {
                        return Err(format!("cannot leave out {kind:?}: name one kind"));
                    }
                    kinds = kinds.without(one);
                }
            }
        }
        Ok(kinds)
    }

    /// These kinds without those in `other`.
    pub fn without(self, other: FaultKinds) -> FaultKinds {
        FaultKinds {
            network: self.network && !other.network,
            partitions: self.partitions && !other.partitions,
            crashes: self.crashes && !other.crashes,
            power_cuts: self.power_cuts && !other.power_cuts,
            disks: self.disks && !other.disks,
            slow_syncs: self.slow_syncs && !other.slow_syncs,
            transfers: self.transfers && !other.transfers,
            membership: self.membership && !other.membership,
            nospace: self.nospace && !other.nospace,
        }
    }
}

/// How a simulation runs.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The seed: everything follows from it.
    pub seed: u64,
    /// Members of the cluster.
    pub members: u64,
    /// Clients.
    pub clients: u64,
    /// Simulated time with faults, before the final check.
    pub duration: Duration,
    /// The faults injected.
    pub faults: FaultKinds,
    /// An injected bug.
    pub bug: Option<Bug>,
    /// Keep every line of the trace (otherwise only the last ones, shown on failure).
    pub trace: bool,
    /// On a linearizability failure, search for a small set of operations that shows it
    /// (costly: for replaying one seed, not for running many).
    pub explain: bool,
}

impl SimOptions {
    /// A run of `seed` with the usual shape: 3 or 5 members, 3 to 6 clients, 20 simulated
    /// seconds, faults on.
    pub fn for_seed(seed: u64) -> SimOptions {
        let mut random = Random::new(seed ^ 0x51_u64);
        SimOptions {
            seed,
            members: if random.chance(1, 4) { 5 } else { 3 },
            clients: random.below(3, 7),
            duration: Duration::from_secs(20),
            faults: FaultKinds::ALL,
            bug: None,
            trace: false,
            explain: false,
        }
    }
}

/// Faults injected during a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    pub messages_late: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub power_cuts: u64,
    pub disk_deaths: u64,
    pub sync_failures: u64,
    pub slow_syncs: u64,
    pub hung_syncs: u64,
    /// Leadership transfers asked of the leader.
    pub leader_transfers: u64,
    /// Membership changes proposed (add a learner, promote it, remove a voter).
    pub member_changes: u64,
    /// Episodes of a member's log disk being full.
    pub nospace: u64,
    /// Not a fault: snapshots a leader sent a follower behind its compacted log.
    pub snapshots_sent: u64,
    /// Not a fault: log writes that found no space (each a `LogNoSpace` for the replica).
    pub writes_without_space: u64,
    /// Not a fault: leaders whose disk was full that no longer lead (handed over).
    pub full_leaders_replaced: u64,
}

impl FaultCounts {
    /// Every fault, summed.
    pub fn total(&self) -> u64 {
        self.messages_dropped
            + self.messages_duplicated
            + self.messages_late
            + self.partitions
            + self.crashes
            + self.power_cuts
            + self.disk_deaths
            + self.sync_failures
            + self.slow_syncs
            + self.hung_syncs
            + self.leader_transfers
            + self.member_changes
            + self.nospace
    }

    /// Adds another run's counts to these.
    pub fn add(&mut self, other: &FaultCounts) {
        self.messages_dropped += other.messages_dropped;
        self.messages_duplicated += other.messages_duplicated;
        self.messages_late += other.messages_late;
        self.partitions += other.partitions;
        self.crashes += other.crashes;
        self.power_cuts += other.power_cuts;
        self.disk_deaths += other.disk_deaths;
        self.sync_failures += other.sync_failures;
        self.slow_syncs += other.slow_syncs;
        self.hung_syncs += other.hung_syncs;
        self.leader_transfers += other.leader_transfers;
        self.member_changes += other.member_changes;
        self.nospace += other.nospace;
        self.snapshots_sent += other.snapshots_sent;
        self.writes_without_space += other.writes_without_space;
        self.full_leaders_replaced += other.full_leaders_replaced;
    }
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub members: u64,
    pub simulated: Duration,
    pub faults: FaultCounts,
    /// Client operations answered (or given up on).
    pub operations: u64,
    /// Highest index applied by any member.
    pub applied: u64,
    /// Distinct terms with a leader.
    pub leaders: u64,
    /// Leases granted to clients, and how many of those expired.
    pub leases: (u64, u64),
    /// The first violation found, with the end of the trace.
    pub failure: Option<String>,
    /// The trace (every line with `trace`, else the last ones).
    pub trace: Vec<String>,
}
