//! A full log disk, in the shell: every Ready's writes are kept until they are durable, so a
//! write that found no space can be made again, in order, when the replica says a retry is
//! due. Meanwhile the member serves reads, refuses writes with etcd's "database space
//! exceeded" and raises NOSPACE for itself (`AlarmType::LogDiskFull`, listed as NOSPACE);
//! once a retried write succeeds, writes are taken again and the member clears that alarm
//! (etcd would wait for `alarm disarm`; a disk that has room again is what an operator wants
//! to see answered, and a quota's NOSPACE is left alone).
//!
//! ```text
//!  turn ─▶ plan n ─▶ staged, in flight ──sync ok──▶ Persisted n
//!             │                         └─no space─▶ held ─▶ LogNoSpace (replica: a leader
//!             │                                             hands over) ─▶ alarm proposed
//!             └─▶ held: a write failed since the plans in flight were staged, or plans wait
//!  loop: nothing in flight, plans held, retry due (at once if the disk is not known full)
//!        ─▶ every held plan staged again, in order ─▶ sync ok ─▶ LogWritten ─▶ alarm cleared
//! ```
//!
//! The bookkeeping (which plans to stage when, which replica inputs each outcome makes) is
//! `replica::unsynced`, and the alarm's decisions `alarm::DiskAlarm`, both pure and shared with
//! the simulator, which drives the same replica inputs. Invariants: plans reach the log in the
//! order raft-rs made them; a plan is staged only on top of every plan before it (the log's
//! count of failed batches has not moved since the plans in flight were staged: a failure
//! takes the log back to its durable state, and anything staged after it would not follow
//! what failed); a Ready is reported persisted only after its own sync succeeded; one failed
//! write is one `LogNoSpace`; nothing that failed was written, so nothing unacknowledged is
//! half there.

use std::rc::Rc;
use std::time::Instant;

use super::driver::{Consensus, SyncOutcome};
use crate::alarm::AlarmAction;
use crate::api::error::ServerError;
use crate::api::native::{self, Request};
use crate::replica::entry::encode_proposal;
use crate::replica::proposals::Proposal;
use crate::replica::unsynced::SyncResult;
use crate::replica::PersistPlan;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// True while this member's log disk is full: it refuses writes.
    pub fn log_disk_full(&self) -> bool {
        self.replica.borrow().log_disk_full()
    }

    /// Writes Ready `number`'s plan to the log, or holds it behind a failed write.
    pub(super) fn persist(self: &Rc<Self>, number: u64, plan: PersistPlan) -> ServerResult {
        let failures = self.wal.failed_batches();
        let full = self.log_disk_full();
        let stage_now = self
            .unsynced
            .borrow_mut()
            .hold(number, plan, full, failures);
        if stage_now {
            self.stage_held()?;
        }
        Ok(())
    }

    /// Stages every plan held, in order, when nothing is in flight and either the disk is not
    /// known full or a retry is due.
    pub(super) fn retry_held(self: &Rc<Self>) -> ServerResult {
        let retry_now = {
            let replica = self.replica.borrow();
            self.unsynced.borrow().retry_now(
                replica.log_disk_full(),
                replica.log_retry_due(Instant::now()),
            )
        };
        if !retry_now {
            return Ok(());
        }
        if self.log_disk_full() {
            tracing::debug!("the log's disk was full: writing again");
        }
        self.stage_held()
    }

    /// Stages the held plans, in order, then starts a task per plan reporting its sync (every
    /// plan is staged before any task runs: a task may flush, and a failed flush takes the log
    /// back to its durable state).
    fn stage_held(self: &Rc<Self>) -> ServerResult {
        let full = self.log_disk_full();
        let as_leader = self.replica.borrow().is_leader();
        let mut staged_now = Vec::new();
        {
            let mut unsynced = self.unsynced.borrow_mut();
            for (number, plan) in unsynced.to_stage(full, self.wal.failed_batches()) {
                let staged = self
                    .wal
                    .stage_append(&plan.entries, plan.hard_state)
                    .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
                staged_now.push((number, !plan.entries.is_empty(), staged));
            }
        }
        for (number, has_entries, staged) in staged_now {
            let Some(staged) = staged else {
                // Nothing to write: durable as it is.
                self.synced.borrow_mut().push((number, SyncOutcome::Done));
                continue;
            };
            let this = self.clone();
            let started = Instant::now();
            self.syncing.borrow_mut().push_back((number, started));
            glommio::spawn_local(async move {
                let outcome = match this.wal.wait_staged(staged).await {
                    Ok(()) => SyncOutcome::Done,
                    Err(error) if error.is_no_space() => SyncOutcome::NoSpace,
                    Err(error) => SyncOutcome::Failed(error.to_string()),
                };
                if has_entries && matches!(outcome, SyncOutcome::Done) {
                    this.replica
                        .borrow_mut()
                        .stages()
                        .log_synced(as_leader, started.elapsed());
                }
                this.synced.borrow_mut().push((number, outcome));
                this.wake_driver();
            })
            .detach();
        }
        Ok(())
    }

    /// Ready `number`'s sync ended with `outcome`.
    pub(super) fn sync_finished(&self, number: u64, outcome: SyncOutcome) -> ServerResult {
        let now = Instant::now();
        self.syncing.borrow_mut().retain(|(n, _)| *n != number);
        let result = match outcome {
            SyncOutcome::Failed(error) => {
                return Err(ServerError::Internal(format!("log: {error}")))
            }
            SyncOutcome::NoSpace => {
                tracing::debug!(number, "a write to the log found no space");
                SyncResult::NoSpace
            }
            SyncOutcome::Done => SyncResult::Durable,
        };
        let full = self.log_disk_full();
        let inputs =
            self.unsynced
                .borrow_mut()
                .finished(number, result, full, self.wal.failed_batches());
        let mut replica = self.replica.borrow_mut();
        for input in inputs {
            replica.step(now, input);
        }
        Ok(())
    }

    /// Raises this member's full-disk alarm through the cluster while its disk is full (once
    /// per episode; a single member cannot commit it and only reports it itself), and clears
    /// it once the log writes again. One change in flight at a time.
    pub(super) fn maybe_change_disk_alarm(self: &Rc<Self>) {
        if self.is_stopped() {
            return;
        }
        let full = self.log_disk_full();
        let alone = self.replica.borrow().voters().len() < 2;
        let member_id = self.config.member_id.get();
        let Some(request) =
            self.disk_alarm
                .borrow_mut()
                .next(member_id, full, alone, &self.alarms.borrow())
        else {
            return;
        };
        let action = request.action;
        if action == AlarmAction::Deactivate {
            tracing::info!("the log's disk has room again: clearing this member's NOSPACE");
        }
        let frame = native::encode_request(0, &Request::Alarm(request));
        let this = self.clone();
        glommio::spawn_local(async move {
            // Past the refusal of writes a full disk makes: the alarm is what reports it.
            let outcome = this
                .propose_within(this.config.request_timeout, |id| {
                    Proposal::Entry(encode_proposal(id, None, &frame))
                })
                .await;
            let refused = match outcome {
                Ok(_) => false,
                // Committed by the others perhaps, but not applicable here while the disk is
                // full: the outcome is unknown, and the alarm is not proposed again.
                Err(ServerError::Timeout | ServerError::TimeoutLeaderFailed) => {
                    tracing::debug!(?action, "this member's NOSPACE: no answer in time");
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, ?action, "changing this member's NOSPACE failed");
                    true
                }
            };
            this.disk_alarm.borrow_mut().ended(action, refused);
        })
        .detach();
    }
}

type ServerResult = Result<(), ServerError>;
