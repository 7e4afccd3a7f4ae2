//! A simulated member's snapshots: taken on the schedule the replica keeps, sent to members
//! behind the log, installed from the leader (with the keyspace, leases and registry they hold).

use super::*;

impl SimMember {
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
    pub(super) fn maybe_snapshot(&mut self, now: Instant) -> Result<(), String> {
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
            alarms: self.alarms.members(),
        };
        self.replica.snapshot_taken(snapshot.metadata(), 0);
        self.snapshots.push(snapshot);
        if self.snapshots.len() > 2 {
            self.snapshots.remove(0);
        }
        let compact_to = applied.saturating_sub(CATCHUP_ENTRIES).min(last);
        if compact_to > self.wal.compacted().0 {
            match block_on(self.wal.compact(compact_to)) {
                Ok(()) => {}
                // As the server: the log is compacted after a later snapshot instead.
                Err(error) if error.is_no_space() => {}
                Err(error) => return Err(format!("log: {error}")),
            }
        }
        Ok(())
    }

    /// Installs the snapshot of this turn: the earlier Readies made durable first, the
    /// keyspace replaced, the log reset to it.
    pub(super) fn install(
        &mut self,
        now: Instant,
        snapshot: &raft::eraftpb::Snapshot,
    ) -> Result<(), String> {
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
        self.replica.snapshot_installing();
        block_on(self.wal.reset_to_snapshot(metadata.index, metadata.term))
            .map_err(|e| format!("log: {e}"))?;
        self.planned_last = metadata.index;
        self.kv = received.kv.clone();
        self.alarms = Alarms::from_members(received.alarms.iter().copied());
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
}
