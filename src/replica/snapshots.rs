//! When this member takes a snapshot of its own.
//!
//! ```text
//!  applied += entry ─▶ due? (count entries since the last, log grown 2× the last snapshot,
//!                            none in progress, not right after a failure)
//!        └─yes─▶ started ─▶ shell writes it in the background ─▶ taken(index, bytes)
//!                                                             └▶ failed: retried after
//!                                                                another --snapshot-count
//!  Raft needs a newer one for a member (storage's newest predates it) ─▶ want ─▶ due at once
//!  a snapshot from the leader installed ─▶ installed(index, bytes)
//! ```
//!
//! A snapshot rewrites the whole retained keyspace; taking one only once the log has grown by
//! `LOG_RATIO` times its size bounds the extra writes to 1/`LOG_RATIO` of the log's own
//! (`lode-bench kv`: a snapshot being written cut 256-client puts by up to a quarter on the
//! reference VM), at the price of a log of up to about that many times the keyspace to
//! replay at restart.

/// A snapshot is taken once the log written since the last one is this many times its size.
pub const LOG_RATIO: u64 = 2;

/// The snapshot schedule of one member.
#[derive(Debug, Default)]
pub struct SnapshotSchedule {
    /// Applied index of the newest durable snapshot (0 for none).
    last_index: u64,
    /// Size of the newest snapshot file.
    last_bytes: u64,
    /// Bytes of entries applied since the newest snapshot.
    applied_bytes: u64,
    /// True while one is being written.
    in_progress: bool,
    /// After a failure, the applied index before which none is tried again.
    retry_at: u64,
    /// A member needs a newer snapshot than the newest (one that includes it): taken as soon
    /// as none is in progress, whatever the count.
    wanted: bool,
}

impl SnapshotSchedule {
    /// A schedule for a member whose newest snapshot covers `index`.
    pub fn new(index: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            last_index: index,
            ..SnapshotSchedule::default()
        }
    }

    /// An entry of `bytes` was applied.
    pub fn applied(&mut self, bytes: u64) {
        self.applied_bytes += bytes;
    }

    /// True when one should be taken at `applied`: every `count` entries (0: never), or at
    /// once when one is wanted.
    pub fn due(&self, applied: u64, count: u64) -> bool {
        if self.in_progress {
            return false;
        }
        if self.wanted && applied > self.last_index {
            return true;
        }
        count != 0
            && applied >= self.retry_at
            && applied >= self.last_index + count
            && self.applied_bytes >= LOG_RATIO * self.last_bytes
    }

    /// Raft needs a newer snapshot than the newest to catch a member up.
    pub fn want(&mut self) {
        self.wanted = true;
    }

    /// Applied index of the newest durable snapshot (0: none).
    pub fn newest(&self) -> u64 {
        self.last_index
    }

    /// One is being written.
    pub fn started(&mut self) {
        self.in_progress = true;
    }

    /// True while one is being written.
    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// The one being written ended without a file (abandoned, or never started).
    pub fn abandoned(&mut self) {
        self.in_progress = false;
    }

    /// The one being written at `index` is durable, `bytes` long.
    pub fn taken(&mut self, index: u64, bytes: u64) {
        self.installed(index, bytes);
        self.in_progress = false;
    }

    /// Writing the one at `index` failed: none before another `count` entries.
    pub fn failed(&mut self, index: u64, count: u64) {
        self.retry_at = index + count;
        self.in_progress = false;
    }

    /// A snapshot at `index`, `bytes` long, is now the newest.
    pub fn installed(&mut self, index: u64, bytes: u64) {
        self.last_index = index;
        self.last_bytes = bytes;
        self.applied_bytes = 0;
        self.wanted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_waits_for_the_count_and_for_the_log_to_outgrow_the_last() {
        let mut schedule = SnapshotSchedule::new(0);
        assert!(!schedule.due(9, 10));
        assert!(schedule.due(10, 10));
        assert!(!schedule.due(10, 0));
        schedule.started();
        assert!(!schedule.due(20, 10));
        schedule.taken(10, 1000);
        assert!(!schedule.due(20, 10));
        schedule.applied(1999);
        assert!(!schedule.due(20, 10));
        schedule.applied(1);
        assert!(schedule.due(20, 10));
    }

    #[test]
    fn after_a_failure_the_next_try_waits_another_count() {
        let mut schedule = SnapshotSchedule::new(0);
        schedule.started();
        schedule.failed(10, 10);
        assert!(!schedule.due(19, 10));
        assert!(schedule.due(20, 10));
    }
}
