//! A simulated member's log writes, as the server's shell makes them (`consensus::nospace`):
//! each Ready's plan staged and synced on the simulated disk, the outcomes reported to the
//! replica, writes held in order behind one that found no space and staged again when a retry
//! is due.

use super::*;

impl SimMember {
    /// The log syncs what is staged: every Ready in flight becomes durable (group commit) or
    /// finds no space (held, to be written again); any other failure and the member must stop.
    pub fn sync(&mut self, now: Instant) -> Result<(), String> {
        self.sync_scheduled = None;
        for (number, staged) in std::mem::take(&mut self.staged) {
            let result = match block_on(self.wal.wait_staged(staged)) {
                Ok(()) => SyncResult::Durable,
                Err(error) if error.is_no_space() => SyncResult::NoSpace,
                Err(error) => return Err(format!("log: {error}")),
            };
            self.sync_finished(now, number, result);
        }
        Ok(())
    }

    /// Ready `number`'s sync ended: the replica is told what the books say, as the shell does.
    pub(super) fn sync_finished(&mut self, now: Instant, number: u64, result: SyncResult) {
        let inputs = self.unsynced.finished(
            number,
            result,
            self.replica.log_disk_full(),
            self.wal.failed_batches(),
        );
        if result == SyncResult::Durable {
            if let Some(cut) = self.cuts.remove(&number) {
                self.note_cut(cut);
            }
        }
        for input in inputs {
            match input {
                Input::Persisted(_) if self.bug == Some(Bug::AckBeforeSync) => continue,
                Input::LogNoSpace => self.writes_without_space += 1,
                Input::LogWritten => self.wrote_again = true,
                _ => {}
            }
            self.replica.step(now, input);
        }
    }

    /// A plan that cut the log at `index` is durable.
    pub(super) fn note_cut(&mut self, index: u64) {
        self.cut_since_check = Some(self.cut_since_check.map_or(index, |cut| cut.min(index)));
    }

    /// Notes where a plan's entries go: the index they cut the log at, if they replace
    /// entries planned before them.
    pub(super) fn plan_cuts(&mut self, plan: &PersistPlan) -> Option<u64> {
        let (first, last) = (plan.entries.first()?, plan.entries.last()?);
        let cut = (first.index <= self.planned_last).then_some(first.index);
        self.planned_last = last.index;
        cut
    }

    /// Writes Ready `number`'s plan to the log, or holds it behind a failed write.
    pub(super) fn persist(
        &mut self,
        now: Instant,
        number: u64,
        plan: PersistPlan,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let full = self.replica.log_disk_full();
        let failures = self.wal.failed_batches();
        if self.unsynced.hold(number, plan, full, failures) {
            self.stage_held(now, effects)?;
        }
        if self.bug == Some(Bug::AckBeforeSync) {
            self.replica.step(now, Input::Persisted(number));
        }
        Ok(())
    }

    /// Stages the held plans again when nothing is in flight and either the disk is not known
    /// full or a retry is due.
    pub(super) fn retry_held(&mut self, now: Instant, effects: &mut Effects) -> Result<(), String> {
        let full = self.replica.log_disk_full();
        if self
            .unsynced
            .retry_now(full, self.replica.log_retry_due(now))
        {
            self.stage_held(now, effects)?;
        }
        Ok(())
    }

    /// Stages every held plan, in order, and asks for a sync.
    pub(super) fn stage_held(&mut self, now: Instant, effects: &mut Effects) -> Result<(), String> {
        let full = self.replica.log_disk_full();
        let mut nothing_to_write = Vec::new();
        for (number, plan) in self.unsynced.to_stage(full, self.wal.failed_batches()) {
            match self
                .wal
                .stage_append(&plan.entries, plan.hard_state)
                .map_err(|e| format!("log: {e}"))?
            {
                Some(staged) => self.staged.push((number, staged)),
                None => nothing_to_write.push(number),
            }
        }
        for number in nothing_to_write {
            self.sync_finished(now, number, SyncResult::Durable);
        }
        if !self.staged.is_empty() && self.sync_scheduled.is_none() {
            self.sync_scheduled = Some(now);
            effects.wants_sync = true;
        }
        Ok(())
    }

    /// What the server's loop does before installing a snapshot: waits until every earlier
    /// write is durable (retrying held ones when due). True once nothing is left.
    pub(super) fn drain(&mut self, now: Instant, effects: &mut Effects) -> Result<bool, String> {
        self.retry_held(now, effects)?;
        if !self.staged.is_empty() {
            self.sync(now)?;
        }
        Ok(self.unsynced.is_empty())
    }
}
