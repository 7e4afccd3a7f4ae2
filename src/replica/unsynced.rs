//! The Readies whose writes are not yet durable, kept until they are so that a write that found
//! no space can be made again, in order: the bookkeeping a shell (the server's consensus core,
//! the simulator's member) keeps between staging a Ready's plan in the log and reporting it
//! persisted, and the replica inputs each outcome makes.
//!
//! ```text
//!  plan n ─▶ hold ─▶ stage now? (disk not known full, nothing held before it, and no write
//!              │      failed since the plans in flight were staged)
//!              │        yes ─▶ to_stage: every held plan, in order, marked in flight
//!              │        no  ─▶ held until retry_now (nothing in flight; a retry is due, or the
//!              │               disk is not known full)
//!  sync of n ends ─▶ finished(n):
//!     durable  ─▶ [LogWritten if it was a retry on a full disk], Persisted(n)
//!     no space ─▶ held again; LogNoSpace once per failed batch of the log
//! ```
//!
//! Invariants: plans reach the log in the order raft-rs made them; a plan is staged only on
//! top of every plan before it (a failed batch takes the log back to its durable state, and
//! anything staged after it would not follow what failed); a Ready is reported persisted only
//! after its own sync succeeded; one failed write is one `LogNoSpace`, however many Readies it
//! carried (the retry pause doubles per failed write, not per Ready).

use std::collections::VecDeque;

use super::state::{Input, PersistPlan};

/// How the sync of a staged plan ended, as far as these books care (any other failure stops
/// the member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// Durable.
    Durable,
    /// Nothing of it was written: the disk is full.
    NoSpace,
}

/// Readies whose writes are not yet durable, oldest first.
#[derive(Debug, Default)]
pub struct Unsynced {
    plans: VecDeque<Held>,
    /// The log's count of failed batches when the plans in flight were staged.
    failures_seen: u64,
    /// The log's count of failed batches when a failure was last reported (`LogNoSpace`).
    failures_reported: u64,
}

#[derive(Debug)]
struct Held {
    number: u64,
    plan: PersistPlan,
    /// Staged and waiting for its sync.
    in_flight: bool,
    /// Staged while the disk was known full: its success means there is room again.
    retry: bool,
}

impl Unsynced {
    /// Books from the log's count of failed batches now (`Wal::failed_batches`).
    pub fn new(failures: u64) -> Unsynced {
        Unsynced {
            plans: VecDeque::new(),
            failures_seen: failures,
            failures_reported: failures,
        }
    }

    /// Holds Ready `number`'s plan; answers true when the held plans should be staged now
    /// ([`Unsynced::to_stage`]): the disk is not known full (`disk_full`), nothing is held
    /// before it, and no write failed since the plans in flight were staged (`failures`: the
    /// log's count of failed batches now).
    pub fn hold(&mut self, number: u64, plan: PersistPlan, disk_full: bool, failures: u64) -> bool {
        let stage_now =
            !disk_full && !self.held() && (!self.in_flight() || self.failures_seen == failures);
        self.plans.push_back(Held {
            number,
            plan,
            in_flight: false,
            retry: false,
        });
        stage_now
    }

    /// True when the held plans should be staged again now: nothing is in flight, and either
    /// the disk is not known full or the replica says a retry is due
    /// ([`super::Replica::log_retry_due`]).
    pub fn retry_now(&self, disk_full: bool, retry_due: bool) -> bool {
        !self.in_flight() && self.held() && (!disk_full || retry_due)
    }

    /// The held plans to stage now, in order, marked in flight; staged while the disk is known
    /// full (`disk_full`), their success will mean room again. `failures`: the log's count of
    /// failed batches now. Stage them all before waiting for any: a flush that fails takes
    /// the log back to its durable state.
    pub fn to_stage(&mut self, disk_full: bool, failures: u64) -> Vec<(u64, &PersistPlan)> {
        self.failures_seen = failures;
        self.plans
            .iter_mut()
            .filter(|held| !held.in_flight)
            .map(|held| {
                held.in_flight = true;
                held.retry = disk_full;
                (held.number, &held.plan)
            })
            .collect()
    }

    /// Ready `number`'s sync ended with `result`: the inputs for the replica, in order.
    /// `disk_full`: the replica's [`super::Replica::log_disk_full`] now; `failures`: the
    /// log's count of failed batches now.
    pub fn finished(
        &mut self,
        number: u64,
        result: SyncResult,
        disk_full: bool,
        failures: u64,
    ) -> Vec<Input> {
        let Some(at) = self.plans.iter().position(|held| held.number == number) else {
            return Vec::new();
        };
        match result {
            SyncResult::Durable => {
                let retry = self.plans.remove(at).is_some_and(|held| held.retry);
                let mut inputs = Vec::with_capacity(2);
                if retry && disk_full {
                    inputs.push(Input::LogWritten);
                }
                inputs.push(Input::Persisted(number));
                inputs
            }
            SyncResult::NoSpace => {
                self.plans[at].in_flight = false;
                if failures == self.failures_reported {
                    // Another Ready of the same failed write told the replica already.
                    return Vec::new();
                }
                self.failures_reported = failures;
                vec![Input::LogNoSpace]
            }
        }
    }

    /// True when some plan is staged and waiting for its sync.
    pub fn in_flight(&self) -> bool {
        self.plans.iter().any(|held| held.in_flight)
    }

    /// True when some plan waits to be staged (again).
    pub fn held(&self) -> bool {
        self.plans.iter().any(|held| !held.in_flight)
    }

    /// True when every plan is durable.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PersistPlan {
        PersistPlan {
            entries: Vec::new(),
            hard_state: None,
        }
    }

    fn numbers(unsynced: &mut Unsynced, full: bool, failures: u64) -> Vec<u64> {
        unsynced
            .to_stage(full, failures)
            .into_iter()
            .map(|(number, _)| number)
            .collect()
    }

    fn kinds(inputs: &[Input]) -> Vec<String> {
        inputs.iter().map(|input| format!("{input:?}")).collect()
    }

    #[test]
    fn a_plan_waits_behind_one_held() {
        let mut books = Unsynced::new(0);
        assert!(books.hold(1, plan(), false, 0));
        assert!(!books.hold(2, plan(), false, 0), "plan 1 is not staged yet");
        assert_eq!(numbers(&mut books, false, 0), [1, 2]);
    }

    #[test]
    fn plans_stage_at_once_while_writes_succeed() {
        let mut books = Unsynced::new(0);
        assert!(books.hold(1, plan(), false, 0));
        assert_eq!(numbers(&mut books, false, 0), [1]);
        // Staged on top of one in flight: no write failed since.
        assert!(books.hold(2, plan(), false, 0));
        assert_eq!(numbers(&mut books, false, 0), [2]);
        assert_eq!(
            kinds(&books.finished(1, SyncResult::Durable, false, 0)),
            ["Persisted(1)"]
        );
        assert_eq!(
            kinds(&books.finished(2, SyncResult::Durable, false, 0)),
            ["Persisted(2)"]
        );
        assert!(books.is_empty());
    }

    #[test]
    fn a_failed_write_holds_everything_after_it_and_is_told_once() {
        let mut books = Unsynced::new(0);
        assert!(books.hold(1, plan(), false, 0));
        assert_eq!(numbers(&mut books, false, 0), [1]);
        assert!(books.hold(2, plan(), false, 0));
        assert_eq!(numbers(&mut books, false, 0), [2]);
        // The batch failed (the log counts one failure): both Readies carried it.
        assert_eq!(
            kinds(&books.finished(1, SyncResult::NoSpace, false, 1)),
            ["LogNoSpace"]
        );
        assert!(books.finished(2, SyncResult::NoSpace, true, 1).is_empty());
        // A plan made after the failure waits behind the held ones.
        assert!(!books.hold(3, plan(), true, 1));
        assert!(!books.retry_now(true, false));
        assert!(books.retry_now(true, true));
        assert_eq!(numbers(&mut books, true, 1), [1, 2, 3]);
        assert!(!books.retry_now(true, true), "in flight");
        // The retry failed too: told again (the replica backs off further).
        assert_eq!(
            kinds(&books.finished(1, SyncResult::NoSpace, true, 2)),
            ["LogNoSpace"]
        );
        assert!(books.finished(2, SyncResult::NoSpace, true, 2).is_empty());
        assert!(books.finished(3, SyncResult::NoSpace, true, 2).is_empty());
        assert_eq!(numbers(&mut books, true, 2), [1, 2, 3]);
        assert_eq!(
            kinds(&books.finished(1, SyncResult::Durable, true, 2)),
            ["LogWritten", "Persisted(1)"]
        );
        // Room again: the others are plain successes.
        assert_eq!(
            kinds(&books.finished(2, SyncResult::Durable, false, 2)),
            ["Persisted(2)"]
        );
        assert_eq!(
            kinds(&books.finished(3, SyncResult::Durable, false, 2)),
            ["Persisted(3)"]
        );
        assert!(books.is_empty() && !books.in_flight() && !books.held());
    }

    #[test]
    fn a_plan_is_not_staged_on_top_of_a_failure_not_yet_reported() {
        let mut books = Unsynced::new(5);
        assert!(books.hold(1, plan(), false, 5));
        assert_eq!(numbers(&mut books, false, 5), [1]);
        // The log failed a batch (plan 1's) before its outcome came back.
        assert!(!books.hold(2, plan(), false, 6));
        assert!(!books.retry_now(false, false), "plan 1 is in flight");
        assert_eq!(
            kinds(&books.finished(1, SyncResult::NoSpace, false, 6)),
            ["LogNoSpace"]
        );
        assert!(books.retry_now(true, true));
        assert!(!books.retry_now(true, false));
    }
}
