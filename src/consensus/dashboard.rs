//! The consensus core's part of the dashboard: each second's sample of where commits spent
//! their time and what the leader knows of its followers, and the leader changes seen.

use std::time::Instant;

use super::driver::Consensus;
use crate::dashboard::{FollowerFigures, IntervalQuantiles, LeaderChangeEntry, Sample};
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// This second's sample: each stage over the second (`quantiles` keeps the previous
    /// cumulative histograms), the leader's followers, indexes, revision, compaction point and
    /// leases. Requests, errors, keys and watch streams are left for the front ends to fill in
    /// (they are gathered from every core).
    pub fn dashboard_sample(&self, quantiles: &mut IntervalQuantiles, at_ms: u64) -> Sample {
        let replica = self.replica.borrow();
        let stages = replica.stages_view();
        let mut histograms = stages.histograms();
        for (follower, histogram) in replica.peer_health().round_trips() {
            histograms.push((format!("heartbeat:{follower:x}"), histogram));
        }
        let stages = quantiles.interval(histograms);
        let followers = replica
            .followers()
            .map(|(followers, last_index)| {
                followers
                    .into_iter()
                    .map(|follower| FollowerFigures {
                        id: format!("{:x}", follower.id),
                        lag_entries: last_index.saturating_sub(follower.matched),
                        active: follower.active,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let leader = replica.leader();
        Sample {
            seq: 0,
            at_ms,
            leader: if leader.is_none() {
                String::new()
            } else {
                format!("{leader:x}")
            },
            is_leader: replica.is_leader(),
            term: replica.term().get(),
            committed: replica.committed().get(),
            applied: replica.applied().get(),
            revision: self.revision().get(),
            compact_revision: self.sequencer.router().local().compact_revision(),
            keys: 0,
            leases: self.sequencer.lease_count() as u64,
            watch_streams: 0,
            watchers: 0,
            stages,
            followers,
            requests: Default::default(),
            errors: Default::default(),
        }
    }

    /// The leader changes seen, numbered `from` on, for the timeline (stamped by the wall
    /// clock at `now_ms`, which is `Instant::now()`).
    pub fn dashboard_leader_changes(
        &self,
        from: u64,
        now_ms: u64,
    ) -> Vec<(u64, LeaderChangeEntry)> {
        let now = Instant::now();
        let name = |id: crate::ids::MemberId| {
            if id.is_none() {
                String::new()
            } else {
                format!("{id:x}")
            }
        };
        let replica = self.replica.borrow();
        replica
            .leader_changes_since(from)
            .into_iter()
            .map(|(number, seen, change)| {
                let ago = now.saturating_duration_since(seen).as_millis() as u64;
                (
                    number,
                    LeaderChangeEntry {
                        at_ms: now_ms.saturating_sub(ago),
                        from: name(change.from),
                        to: name(change.to),
                        reason: change.reason.name().to_string(),
                        term: change.term,
                        leaderless_ms: 0,
                    },
                )
            })
            .collect()
    }

    /// The slowest recent writes proposed here.
    pub fn dashboard_slowest(&self) -> crate::dashboard::SlowestRequests {
        self.replica.borrow().stages_view().slowest().clone()
    }
}
