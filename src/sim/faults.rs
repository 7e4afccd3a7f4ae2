//! The simulation's faults (the nemesis): partitions, crashes and power cuts, disk deaths,
//! full disks and their recovery, leader transfers and membership changes, and healing.

use super::*;

impl Simulation {
    pub(super) fn nemesis(&mut self) {
        if self.settling {
            return;
        }
        let next = Duration::from_millis(self.random.below(300, 3_000));
        self.schedule(next, Event::Nemesis);
        let members = self.member_ids();
        let pick = self.pick_member();
        let partition_ends = Duration::from_millis(self.random.below(300, 5_000));
        match self.random.below(0, 100) {
            0..=24 if self.options.faults.crashes => {
                let model = match self.random.below(0, 3) {
                    0 => CrashModel::SyncedOnly,
                    1 => CrashModel::AllWritten,
                    _ => CrashModel::Torn(self.random.next_u64()),
                };
                if self.slots[(pick - 1) as usize].member.is_some() {
                    self.faults.crashes += 1;
                    self.crash(pick, model);
                    self.schedule_restart(pick);
                }
            }
            25..=27 if self.options.faults.power_cuts => {
                self.faults.power_cuts += 1;
                self.log(|| "power cut: every member crashes".into());
                for id in members {
                    let model = CrashModel::Torn(self.random.next_u64());
                    self.crash(id, model);
                    self.schedule_restart(id);
                }
            }
            28..=49 if self.options.faults.partitions => {
                self.faults.partitions += 1;
                self.log(|| format!("m{pick} isolated"));
                self.network.isolate(&[pick], &members);
                self.schedule(partition_ends, Event::Reconnect);
            }
            50..=64 if self.options.faults.partitions => {
                self.faults.partitions += 1;
                let other = members[(pick as usize) % members.len()];
                self.log(|| format!("link m{pick} -> m{other} cut"));
                self.network.cut(pick, other);
                self.schedule(partition_ends, Event::Reconnect);
            }
            80..=84 if self.options.faults.transfers => self.transfer_leadership(),
            85..=96 if self.options.faults.membership => self.membership_step(),
            65..=79 if self.options.faults.partitions => {
                self.faults.partitions += 1;
                let minority: Vec<u64> = members
                    .iter()
                    .copied()
                    .filter(|_| self.random.chance(1, 2))
                    .take((members.len() - 1) / 2)
                    .collect();
                self.log(|| format!("split: {minority:?} from the rest"));
                self.network.isolate(&minority, &members);
                self.schedule(partition_ends, Event::Reconnect);
            }
            _ => {
                if self.network.is_partitioned() {
                    self.log(|| "network healed".into());
                }
                self.network.heal();
            }
        }
    }

    /// A member's log disk fills up for a while: the leader's half the time (it must hand
    /// over), else any member's. Every write fails with ENOSPC, as the server's `enospc` fault
    /// makes them (a disk where only new segments cannot be made would rarely matter here: a
    /// run's log seldom fills a segment).
    pub(super) fn disk_full(&mut self) {
        if self.settling {
            return;
        }
        let next = Duration::from_millis(self.disk_random.below(1_000, 8_000));
        self.schedule(next, Event::DiskFull);
        let members = self.member_ids();
        let leader = self.running_leader();
        let pick = match leader {
            Some(leader) if self.disk_random.chance(1, 2) => leader,
            _ => members[self.disk_random.below(0, members.len() as u64) as usize],
        };
        let lasts = Duration::from_millis(self.disk_random.below(200, 6_000));
        let slot = &mut self.slots[(pick - 1) as usize];
        if slot.full.is_some() {
            return;
        }
        self.episodes += 1;
        slot.full = Some(self.episodes);
        slot.disk.set_no_space(true);
        self.faults.nospace += 1;
        self.log(|| format!("m{pick}'s log disk is full for {lasts:?}"));
        let episode = self.episodes;
        self.schedule(lasts, Event::SpaceBack(pick, episode));
    }

    /// Member `id`'s log disk has room again.
    pub(super) fn space_back(&mut self, id: u64) {
        let slot = &mut self.slots[(id - 1) as usize];
        slot.full = None;
        slot.disk.set_no_space(false);
        self.log(|| format!("m{id}'s log disk has room again"));
    }

    pub(super) fn heal(&mut self) {
        self.log(|| "faults end: the network heals, every member runs, final reads begin".into());
        self.settling = true;
        self.network.heal();
        for id in 1..=self.slots.len() as u64 {
            if self.slots[(id - 1) as usize].full.is_some() {
                self.space_back(id);
            }
        }
        for id in self.member_ids() {
            if self.slots[(id - 1) as usize].member.is_none() {
                self.start_member(id);
            }
        }
        for client in &mut self.clients {
            client.final_reads = (0..KEYS).collect();
        }
        for client in 0..self.options.clients {
            if self.clients[client as usize].in_flight.is_none() {
                self.schedule(Duration::ZERO, Event::Client(client));
            }
        }
    }
}
