//! Where a commit's time goes: HDR histograms of each stage a write passes through on this
//! member, kept by the consensus core and shown by `lodectl perf`.
//!
//! Stages, in the order a write meets them:
//! - proposal queueing: from a request task queueing the proposal to the driver handing it to
//!   raft-rs (waiting for the driver's turn, or for a leader);
//! - leader log sync / follower log sync: one append of Raft entries to the log, fdatasync
//!   included, split by this member's role when it ran;
//! - replication round trip, per follower (leader only): from sending an append that ends at
//!   index i to the follower acknowledging i (its network round trip plus its sync);
//! - commit to apply: from raft-rs reporting a batch of entries committed to their changes
//!   being visible in the shards (one sample per batch);
//! - apply to response: from the write being applied to its request task resuming with the
//!   answer (the proposer's scheduling delay);
//! - proposal total: the whole of it, queueing to answer, for writes proposed here.
//!
//! Beside the stages: each committed batch's apply (from its first entry's start to its changes
//! visible; lode's closest to etcd's backend commit, since lode's state machine is the shards'
//! MVCC in memory and its durability is the log) and the entries whose apply was slower than
//! etcd's default warning of `SLOW_APPLY` (etcd's `etcd_server_slow_apply_total`).
//!
//! Histograms count since the process started (like Prometheus histograms). Values are
//! nanoseconds, recorded with 3 significant digits, saturating at one minute.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use crate::api::request::StageSummary;
use hdrhistogram::Histogram;

/// Longest duration recorded exactly; longer ones are recorded as this.
const MAX_RECORDED: Duration = Duration::from_secs(60);

/// An entry applied slower than this is counted slow (etcd's default `--warning-apply-duration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// Appends remembered per follower while their acknowledgements are awaited; older ones are
/// forgotten (raft-rs keeps at most `max_inflight_msgs` appends in flight anyway).
const TRACKED_APPENDS: usize = 1024;

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a programming error
    // caught by the tests below.
    Histogram::new_with_bounds(1, MAX_RECORDED.as_nanos() as u64, 3)
        .expect("valid histogram bounds")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let nanos = elapsed.min(MAX_RECORDED).as_nanos().max(1) as u64;
    histogram.saturating_record(nanos);
}

fn summary(name: String, histogram: &Histogram<u64>) -> StageSummary {
    StageSummary {
        name,
        count: histogram.len(),
        p50_ns: histogram.value_at_quantile(0.50),
        p99_ns: histogram.value_at_quantile(0.99),
        p999_ns: histogram.value_at_quantile(0.999),
        max_ns: histogram.max(),
    }
}

/// The stage histograms of one member.
pub struct CommitStages {
    proposal_queueing: Histogram<u64>,
    leader_sync: Histogram<u64>,
    follower_sync: Histogram<u64>,
    replication: BTreeMap<u64, Histogram<u64>>,
    commit_to_apply: Histogram<u64>,
    apply_to_response: Histogram<u64>,
    proposal_total: Histogram<u64>,
    batch_apply: Histogram<u64>,
    slow_applies: u64,
    slowest: crate::dashboard::SlowestRequests,
    /// Per follower: the last index of each append sent and when, oldest first.
    appends_in_flight: HashMap<u64, VecDeque<(u64, Instant)>>,
}

impl Default for CommitStages {
    fn default() -> Self {
        CommitStages {
            proposal_queueing: histogram(),
            leader_sync: histogram(),
            follower_sync: histogram(),
            replication: BTreeMap::new(),
            commit_to_apply: histogram(),
            apply_to_response: histogram(),
            proposal_total: histogram(),
            batch_apply: histogram(),
            slow_applies: 0,
            slowest: Default::default(),
            appends_in_flight: HashMap::new(),
        }
    }
}

impl CommitStages {
    /// A proposal waited `elapsed` before raft-rs took it.
    pub fn proposal_queued(&mut self, elapsed: Duration) {
        record(&mut self.proposal_queueing, elapsed);
    }

    /// An append of entries to the log took `elapsed`, while this member led or not.
    pub fn log_synced(&mut self, as_leader: bool, elapsed: Duration) {
        let histogram = if as_leader {
            &mut self.leader_sync
        } else {
            &mut self.follower_sync
        };
        record(histogram, elapsed);
    }

    /// An append ending at `last_index` went to `follower` at `now`.
    pub fn append_sent(&mut self, follower: u64, last_index: u64, now: Instant) {
        let sent = self.appends_in_flight.entry(follower).or_default();
        if sent.len() == TRACKED_APPENDS {
            sent.pop_front();
        }
        sent.push_back((last_index, now));
    }

    /// `follower` acknowledged everything up to `index` at `now`: every append it covers has
    /// made its round trip.
    pub fn append_acknowledged(&mut self, follower: u64, index: u64, now: Instant) {
        let Some(sent) = self.appends_in_flight.get_mut(&follower) else {
            return;
        };
        let histogram = self.replication.entry(follower).or_insert_with(histogram);
        while let Some(&(last_index, sent_at)) = sent.front() {
            if last_index > index {
                break;
            }
            record(histogram, now.saturating_duration_since(sent_at));
            sent.pop_front();
        }
    }

    /// `follower` refused an append: raft-rs probes and sends again, so what was in flight
    /// will not be acknowledged as sent.
    pub fn append_refused(&mut self, follower: u64) {
        if let Some(sent) = self.appends_in_flight.get_mut(&follower) {
            sent.clear();
        }
    }

    /// Entries raft-rs reported committed became visible `elapsed` later.
    pub fn applied(&mut self, elapsed: Duration) {
        record(&mut self.commit_to_apply, elapsed);
    }

    /// The slowest recent writes proposed here.
    pub fn slowest(&self) -> &crate::dashboard::SlowestRequests {
        &self.slowest
    }

    /// A write proposed here was answered (see `SlowestRequests::offer`).
    pub fn offer_slow(&mut self, request: crate::dashboard::SlowRequest) {
        self.slowest.offer(request);
    }

    /// One entry took `elapsed` to apply.
    pub fn entry_applied(&mut self, elapsed: Duration) {
        if elapsed > SLOW_APPLY {
            self.slow_applies += 1;
        }
    }

    /// Entries applied slower than `SLOW_APPLY`.
    pub fn slow_applies(&self) -> u64 {
        self.slow_applies
    }

    /// A committed batch took `elapsed` to apply, first entry to last change visible.
    pub fn batch_applied(&mut self, elapsed: Duration) {
        record(&mut self.batch_apply, elapsed);
    }

    /// A proposal's request task resumed `after_apply` after it was applied, `total` after it
    /// was queued.
    pub fn answered(&mut self, after_apply: Duration, total: Duration) {
        record(&mut self.apply_to_response, after_apply);
        record(&mut self.proposal_total, total);
    }

    /// Adds the stages to a `/metrics` exposition: etcd's WAL fsync histogram (every log sync,
    /// as leader or follower) and lode's per-stage histograms.
    pub fn expose(&self, out: &mut crate::metrics::Exposition) {
        use crate::metrics::{ETCD_DISK_BUCKETS, STAGE_BUCKETS};
        let mut syncs = self.leader_sync.clone();
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = syncs.add(&self.follower_sync);
        out.histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &[],
            &syncs,
            &ETCD_DISK_BUCKETS,
        );
        out.histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            &[],
            &self.batch_apply,
            &ETCD_DISK_BUCKETS,
        );
        out.counter(
            "etcd_server_slow_apply_total",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            &[],
            self.slow_applies,
        );
        let help = "Time a commit spends in each stage on this member (see lodectl perf).";
        for (stage, histogram) in [
            ("proposal_queueing", &self.proposal_queueing),
            ("leader_log_sync", &self.leader_sync),
            ("follower_log_sync", &self.follower_sync),
            ("commit_to_apply", &self.commit_to_apply),
            ("apply_to_response", &self.apply_to_response),
            ("proposal_total", &self.proposal_total),
        ] {
            out.histogram(
                "lode_commit_stage_seconds",
                help,
                &[("stage", stage)],
                histogram,
                &STAGE_BUCKETS,
            );
        }
        for (follower, histogram) in &self.replication {
            out.histogram(
                "lode_replication_round_trip_seconds",
                "From sending an append to a follower to its acknowledgement (network round trip and the follower's log sync).",
                &[("To", &format!("{follower:x}"))],
                histogram,
                &STAGE_BUCKETS,
            );
        }
    }

    /// Every stage's cumulative histogram by its name in the dashboard, in the order a write
    /// meets them (`replication:<follower>` per follower).
    pub fn histograms(&self) -> Vec<(String, &Histogram<u64>)> {
        let mut stages = vec![
            ("proposal_queueing".to_string(), &self.proposal_queueing),
            ("leader_log_sync".to_string(), &self.leader_sync),
        ];
        for (follower, histogram) in &self.replication {
            stages.push((format!("replication:{follower:x}"), histogram));
        }
        stages.extend([
            ("follower_log_sync".to_string(), &self.follower_sync),
            ("commit_to_apply".to_string(), &self.commit_to_apply),
            ("apply_to_response".to_string(), &self.apply_to_response),
            ("proposal_total".to_string(), &self.proposal_total),
        ]);
        stages
    }

    /// Every stage's summary, in the order a write meets them.
    pub fn summaries(&self) -> Vec<StageSummary> {
        let mut stages = vec![
            summary("proposal queueing".into(), &self.proposal_queueing),
            summary("leader log sync".into(), &self.leader_sync),
        ];
        for (follower, histogram) in &self.replication {
            stages.push(summary(format!("replication to {follower:x}"), histogram));
        }
        stages.extend([
            summary("follower log sync".into(), &self.follower_sync),
            summary("commit to apply".into(), &self.commit_to_apply),
            summary("apply to response".into(), &self.apply_to_response),
            summary("proposal total".into(), &self.proposal_total),
        ]);
        stages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(stages: &'a [StageSummary], name: &str) -> &'a StageSummary {
        stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    }

    #[test]
    fn an_acknowledgement_completes_every_append_it_covers() {
        let mut stages = CommitStages::default();
        let start = Instant::now();
        stages.append_sent(2, 5, start);
        stages.append_sent(2, 7, start + Duration::from_micros(100));
        stages.append_sent(2, 9, start + Duration::from_micros(200));
        stages.append_acknowledged(2, 7, start + Duration::from_micros(500));
        let summaries = stages.summaries();
        let replication = find(&summaries, "replication to 2");
        assert_eq!(replication.count, 2);
        // 500 us and 400 us, within the histogram's precision.
        assert!((499_000..=501_000).contains(&replication.max_ns));
        stages.append_acknowledged(2, 9, start + Duration::from_micros(1000));
        assert_eq!(find(&stages.summaries(), "replication to 2").count, 3);
        // An acknowledgement with nothing in flight records nothing.
        stages.append_acknowledged(2, 9, start + Duration::from_micros(2000));
        assert_eq!(find(&stages.summaries(), "replication to 2").count, 3);
    }

    #[test]
    fn a_refusal_forgets_what_was_in_flight() {
        let mut stages = CommitStages::default();
        let start = Instant::now();
        stages.append_sent(3, 5, start);
        stages.append_refused(3);
        stages.append_acknowledged(3, 5, start + Duration::from_micros(10));
        assert_eq!(find(&stages.summaries(), "replication to 3").count, 0);
    }

    #[test]
    fn syncs_are_split_by_role_and_long_samples_saturate() {
        let mut stages = CommitStages::default();
        stages.log_synced(true, Duration::from_micros(200));
        stages.log_synced(false, Duration::from_secs(3600));
        let summaries = stages.summaries();
        assert_eq!(find(&summaries, "leader log sync").count, 1);
        let follower = find(&summaries, "follower log sync");
        assert_eq!(follower.count, 1);
        assert!(follower.max_ns >= MAX_RECORDED.as_nanos() as u64 / 1001 * 1000);
        assert_eq!(find(&summaries, "proposal total").count, 0);
    }

    #[test]
    fn slow_applies_are_counted_and_batches_exposed_as_etcds_backend_commit() {
        let mut stages = CommitStages::default();
        stages.entry_applied(SLOW_APPLY);
        stages.entry_applied(SLOW_APPLY + Duration::from_millis(1));
        stages.batch_applied(Duration::from_millis(3));
        assert_eq!(stages.slow_applies(), 1, "exactly the warning is not slow");
        let mut out = crate::metrics::Exposition::new();
        stages.expose(&mut out);
        let text = out.finish();
        assert!(text.contains("etcd_server_slow_apply_total 1\n"), "{text}");
        assert!(text.contains("etcd_disk_backend_commit_duration_seconds_bucket{le=\"0.002\"} 0\n"));
        assert!(text.contains("etcd_disk_backend_commit_duration_seconds_bucket{le=\"0.004\"} 1\n"));
    }

    #[test]
    fn tracked_appends_are_bounded() {
        let mut stages = CommitStages::default();
        let start = Instant::now();
        for index in 0..(TRACKED_APPENDS as u64 * 2) {
            stages.append_sent(4, index, start);
        }
        stages.append_acknowledged(4, u64::MAX, start);
        assert_eq!(
            find(&stages.summaries(), "replication to 4").count,
            TRACKED_APPENDS as u64
        );
    }
}
