//! Leadership transfers and membership changes in the simulation, done as an operator does
//! them with etcdctl: `move-leader` to another voter; and a member replaced one step at a
//! time — `member add --learner`, the new member started with the registry the cluster gives
//! it once the addition is applied, `member promote` once it has caught up (the leader
//! refuses before), then `member remove` of a voter (perhaps the leader itself), which stops
//! once it applied its own removal.

use std::time::Duration;

use super::member::SimMember;
use super::{Event, Simulation, Slot};
use crate::ids::MemberId;
use crate::members::{Member, MemberChange};
use crate::wal::sim::SimDisk;

/// How long a removed member keeps running after applying its removal (the server waits a
/// few heartbeats so that the removal reaches the others).
const RETIRE_AFTER: Duration = Duration::from_secs(1);

impl Simulation {
    /// The running leader, if any member leads.
    pub(super) fn running_leader(&self) -> Option<u64> {
        self.member_ids().into_iter().find(|id| {
            self.slots[(id - 1) as usize]
                .member
                .as_ref()
                .is_some_and(|m| m.replica().is_leader())
        })
    }

    /// The member registry as member `id` applied it, if it runs.
    fn registry_of(&self, id: u64) -> Option<crate::members::Members> {
        self.slots[(id - 1) as usize]
            .member
            .as_ref()
            .map(|m| m.replica().members().clone())
    }

    fn leader_mut(&mut self, id: u64) -> Option<&mut SimMember> {
        self.slots[(id - 1) as usize].member.as_mut()
    }

    /// The leader hands leadership to another voter.
    pub(super) fn transfer_leadership(&mut self) {
        let Some(leader) = self.running_leader() else {
            return;
        };
        let voters = self.slots[(leader - 1) as usize]
            .member
            .as_ref()
            .map_or_else(Vec::new, |m| m.replica().voters());
        let others: Vec<u64> = voters
            .into_iter()
            .map(MemberId::get)
            .filter(|v| *v != leader)
            .collect();
        if others.is_empty() {
            return;
        }
        let target = others[self.random.below(0, others.len() as u64) as usize];
        let now = self.instant();
        let asked = self
            .leader_mut(leader)
            .map(|m| m.transfer_leader(now, target));
        self.faults.leader_transfers += 1;
        self.log(|| format!("m{leader} asked to hand leadership to m{target}: {asked:?}"));
        self.pump(leader);
    }

    /// One step of replacing a member, proposed through the leader: promote a learner if
    /// there is one; else remove a voter if there are more than the cluster's size; else add
    /// a learner.
    pub(super) fn membership_step(&mut self) {
        let Some(leader) = self.running_leader() else {
            return;
        };
        let Some(registry) = self.registry_of(leader) else {
            return;
        };
        let (voters, learners) = registry.voters_and_learners();
        let change = if let Some(&learner) = learners.first() {
            MemberChange::Promote(learner)
        } else if voters.len() as u64 > self.options.members {
            MemberChange::Remove(voters[self.random.below(0, voters.len() as u64) as usize])
        } else {
            let id = self.slots.len() as u64 + 1;
            self.slots.push(Slot {
                member: None,
                disk: SimDisk::new(),
                snapshots: Vec::new(),
                incarnation: 0,
                initial: None,
                removed: false,
                full: None,
            });
            MemberChange::Add(Member {
                id: MemberId::new(id),
                name: format!("m{id}"),
                peer_urls: vec![format!("http://sim-{id}:2380")],
                client_urls: vec![format!("http://sim-{id}:2379")],
                is_learner: true,
            })
        };
        let now = self.instant();
        let proposed = self
            .leader_mut(leader)
            .map(|m| m.change_members(now, &change));
        self.faults.member_changes += 1;
        self.log(|| format!("m{leader} proposes {change:?}: {proposed:?}"));
        self.pump(leader);
    }

    /// Starts every member the leader's registry holds that has not started yet, with that
    /// registry (what a joining member fetches from the cluster).
    pub(super) fn start_joiners(&mut self, leader: u64) {
        let Some(registry) = self.registry_of(leader) else {
            return;
        };
        for member in registry.list() {
            let id = member.id.get();
            let Some(slot) = self.slots.get_mut((id - 1) as usize) else {
                continue;
            };
            if slot.initial.is_some() || slot.removed {
                continue;
            }
            slot.initial = Some(registry.clone());
            self.log(|| format!("m{id} joins"));
            self.start_member(id);
            self.schedule(Duration::ZERO, Event::Tick(id));
        }
    }

    /// Member `id` applied its own removal: it stops shortly.
    pub(super) fn removal_applied(&mut self, id: u64) {
        self.log(|| format!("m{id} applied its own removal"));
        self.schedule(RETIRE_AFTER, Event::Retire(id));
    }

    /// The transport of `to` refuses what a member removed from its registry sends, telling
    /// it so, and that member stops (as a member removed while it was away does).
    pub(super) fn told_removed(&mut self, to: u64, from: u64) -> bool {
        let removed = self.slots[(to - 1) as usize]
            .member
            .as_ref()
            .is_some_and(|m| m.replica().members().is_removed(MemberId::new(from)));
        if removed && !self.slots[(from - 1) as usize].removed {
            self.log(|| format!("m{to} tells m{from} it was removed from the cluster"));
            self.retire(from);
        }
        removed
    }

    /// A removed member stops for good.
    pub(super) fn retire(&mut self, id: u64) {
        self.crash(id, crate::wal::sim::CrashModel::SyncedOnly);
        self.slots[(id - 1) as usize].removed = true;
        self.log(|| format!("m{id} leaves the cluster"));
    }
}
