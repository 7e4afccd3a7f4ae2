//! What the built-in dashboard shows, kept as plain data: one sample a second of where commits
//! spent their time (each stage's p50, p99 and p99.9 over that second, per follower where a
//! stage is per follower), the leader's view of its followers, the workload's rates, and a
//! timeline of leader changes. Pure: the consensus core feeds it (`consensus::dashboard`), the
//! HTTP edge serves it (`server::dashboard`).
//!
//! ```text
//!  every second, on the consensus core:
//!    cumulative stage histograms ──▶ IntervalQuantiles (this second's = now − a second ago)
//!    leader's progress, counters  ──▶ Sample ──▶ Feed (the last `SAMPLES_KEPT`, numbered)
//!    leader changes               ──▶ Feed's timeline (with the time the cluster had no leader)
//!  a browser: GET /dashboard/state (all kept) then /dashboard/events (each new sample)
//! ```
//!
//! Invariants: sample numbers grow by one; a sample's quantiles cover exactly the second
//! before it (histograms subtract, they are not re-read from the start); the feed holds at
//! most `SAMPLES_KEPT` samples and `TIMELINE_KEPT` timeline entries, so its size is bounded
//! whatever the uptime.

use std::collections::{BTreeMap, VecDeque};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Samples kept: five minutes at one a second.
pub const SAMPLES_KEPT: usize = 300;

/// Leader changes kept on the timeline.
pub const TIMELINE_KEPT: usize = 100;

/// Slow requests kept.
pub const SLOWEST_KEPT: usize = 10;

/// One stage's figures over one second, in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageFigures {
    /// The stage (`proposal_total`, `replication:<follower>`...).
    pub stage: String,
    /// Samples in the second.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

fn figures(stage: &str, histogram: &Histogram<u64>) -> StageFigures {
    let micros = |nanos: u64| nanos as f64 / 1000.0;
    StageFigures {
        stage: stage.to_string(),
        count: histogram.len(),
        p50_us: micros(histogram.value_at_quantile(0.50)),
        p99_us: micros(histogram.value_at_quantile(0.99)),
        p999_us: micros(histogram.value_at_quantile(0.999)),
        max_us: micros(histogram.max()),
    }
}

/// Turns cumulative histograms (counting since start) into each interval's figures: the
/// histogram now minus the one at the previous call.
#[derive(Default)]
pub struct IntervalQuantiles {
    previous: BTreeMap<String, Histogram<u64>>,
}

impl IntervalQuantiles {
    /// The figures of each stage since the last call (every stage named, even with no samples,
    /// so a chart's series never disappear).
    pub fn interval<'a>(
        &mut self,
        cumulative: impl IntoIterator<Item = (String, &'a Histogram<u64>)>,
    ) -> Vec<StageFigures> {
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        for (stage, now) in cumulative {
            let mut interval = now.clone();
            if let Some(before) = self.previous.get(&stage) {
                // Same bounds, and counts only grow: subtracting cannot fail. If it ever did
                // (a histogram replaced), the whole histogram counts as this interval's.
                if interval.subtract(before).is_err() {
                    interval = now.clone();
                }
            }
            out.push(figures(&stage, &interval));
            seen.insert(stage, now.clone());
        }
        self.previous = seen;
        out
    }
}

/// A follower as the leader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FollowerFigures {
    /// Its member ID, in hex.
    pub id: String,
    /// Entries it lacks of the leader's log.
    pub lag_entries: u64,
    /// Whether the leader heard from it lately.
    pub active: bool,
}

/// One second of the cluster as this member sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Its number (grows by one).
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The leader this member knows (hex; empty: none).
    pub leader: String,
    /// Whether this member leads.
    pub is_leader: bool,
    /// The Raft term.
    pub term: u64,
    /// Commit and applied indexes.
    pub committed: u64,
    /// See `committed`.
    pub applied: u64,
    /// The keyspace's revision.
    pub revision: i64,
    /// The compaction point.
    pub compact_revision: i64,
    /// Live keys, leases, open watch streams (every front end's) and their watchers, across
    /// the member.
    pub keys: u64,
    /// See `keys`.
    pub leases: u64,
    /// See `keys`.
    pub watch_streams: u64,
    /// See `keys`.
    #[serde(default)]
    pub watchers: u64,
    /// Each commit stage over the second.
    pub stages: Vec<StageFigures>,
    /// The leader's followers (empty on a follower).
    pub followers: Vec<FollowerFigures>,
    /// Requests answered per second, by kind (gRPC method).
    pub requests: BTreeMap<String, f64>,
    /// Requests failed per second, by gRPC code.
    pub errors: BTreeMap<String, f64>,
}

/// Why and when leadership moved, and how long the cluster had no leader.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeaderChangeEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Leader before and after (hex; empty: none).
    pub from: String,
    /// See `from`.
    pub to: String,
    /// Transfer, lost quorum or election timeout.
    pub reason: String,
    /// The term of the new leader.
    pub term: u64,
    /// How long this member knew no leader before `to` (0 when it went straight from one
    /// leader to the next, or when `to` is none).
    pub leaderless_ms: u64,
}

/// A slow write and where its time went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlowRequest {
    /// When it was answered, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The whole of it, in microseconds.
    pub total_us: f64,
    /// Its stages, in microseconds, in the order it met them.
    pub stages: Vec<(String, f64)>,
}

/// A member as this one last heard of it (its own figures, or its Status asked through the
/// cluster).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberView {
    /// Its member ID, in hex.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its first client URL.
    pub client_url: String,
    /// leader, follower or learner (as the member says; the registry's word while it is down).
    pub role: String,
    /// Whether it answered its last Status.
    pub reachable: bool,
    /// Why it did not, if it did not.
    pub error: String,
    /// Its term, last index and applied index.
    pub term: u64,
    /// See `term`.
    pub raft_index: u64,
    /// See `term`.
    pub applied: u64,
    /// Entries it lacks of this member's last index (0 when it is ahead).
    pub lag_entries: u64,
    /// Its keyspace's counted size.
    pub db_size: i64,
    /// Its server version.
    pub version: String,
    /// Its log syncs since it started (as leader and as follower together): how many, and
    /// their p99 in microseconds; what a slow disk on that member looks like from here.
    pub log_syncs: u64,
    /// See `log_syncs`.
    pub log_sync_p99_us: f64,
    /// When this was heard, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What a member tells another member's dashboard about itself (asked over the peer port): its
/// status and its samples from the number asked for on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// The leader it knows (0: none).
    pub leader: u64,
    /// Whether it is a learner.
    pub is_learner: bool,
    /// Its term, last index and applied index.
    pub term: u64,
    /// See `term`.
    pub raft_index: u64,
    /// See `term`.
    pub applied: u64,
    /// Its keyspace's counted size.
    pub db_size: i64,
    /// Its server version.
    pub version: String,
    /// Its log syncs since it started, and their p99 in microseconds (see `MemberView`).
    pub log_syncs: u64,
    /// See `log_syncs`.
    pub log_sync_p99_us: f64,
    /// The number its next sample will get: where the asker asks from next time.
    pub next_sample: u64,
    /// Its samples from the number asked for on (all it keeps if it was asked for a number it
    /// has not reached: it restarted, and numbers its samples from 0 again).
    pub samples: Vec<Sample>,
}

/// Another member's samples, as it reported them.
#[derive(Debug, Default)]
struct Mirror {
    samples: VecDeque<Sample>,
    next_sample: u64,
}

/// The slowest writes of the last `SAMPLES_KEPT` seconds (at most `SLOWEST_KEPT`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SlowestRequests {
    kept: Vec<SlowRequest>,
}

impl SlowestRequests {
    /// How long a write must take to be kept now (0 until `SLOWEST_KEPT` are kept), so a
    /// caller builds a `SlowRequest` only for those.
    pub fn threshold_us(&self) -> f64 {
        if self.kept.len() < SLOWEST_KEPT {
            return 0.0;
        }
        self.kept.last().map_or(0.0, |kept| kept.total_us)
    }

    /// Offers a write; it is kept if it is among the slowest of the last `SAMPLES_KEPT`
    /// seconds.
    pub fn offer(&mut self, request: SlowRequest) {
        let horizon = request.at_ms.saturating_sub(SAMPLES_KEPT as u64 * 1000);
        self.kept.retain(|kept| kept.at_ms >= horizon);
        if self.kept.len() == SLOWEST_KEPT {
            match self
                .kept
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_us.total_cmp(&b.1.total_us))
            {
                Some((at, fastest)) if fastest.total_us < request.total_us => {
                    self.kept.remove(at);
                }
                _ => return,
            }
        }
        self.kept.push(request);
        self.kept.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
    }

    /// The writes kept, slowest first.
    pub fn slowest(&self) -> &[SlowRequest] {
        &self.kept
    }
}

/// The samples numbered `seq` and later, oldest first.
fn samples_from(samples: &VecDeque<Sample>, seq: u64) -> Vec<Sample> {
    samples
        .iter()
        .filter(|sample| sample.seq >= seq)
        .cloned()
        .collect()
}

/// Everything the dashboard shows, kept since start within bounds.
#[derive(Debug, Default, Serialize)]
pub struct Feed {
    samples: VecDeque<Sample>,
    timeline: VecDeque<LeaderChangeEntry>,
    slowest: SlowestRequests,
    members: Vec<MemberView>,
    /// Active alarms: (member ID in hex, alarm).
    alarms: Vec<(String, String)>,
    /// The other members' samples by member ID (hex), each kept within `SAMPLES_KEPT`.
    #[serde(skip)]
    mirrors: BTreeMap<String, Mirror>,
    /// Since when no leader has been known (ms since the epoch), for the next change.
    #[serde(skip)]
    leaderless_since: Option<u64>,
    #[serde(skip)]
    next_seq: u64,
}

impl Feed {
    /// An empty feed.
    pub fn new() -> Feed {
        Feed::default()
    }

    /// Adds a sample, numbering it; the oldest goes once `SAMPLES_KEPT` are kept.
    pub fn push(&mut self, mut sample: Sample) {
        sample.seq = self.next_seq;
        self.next_seq += 1;
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Samples numbered from `seq` on.
    pub fn since(&self, seq: u64) -> Vec<Sample> {
        samples_from(&self.samples, seq)
    }

    /// The number the next sample will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records a leader change seen at `at_ms`.
    pub fn leader_changed(&mut self, at_ms: u64, from: &str, to: &str, reason: &str, term: u64) {
        let leaderless_ms = match (to.is_empty(), self.leaderless_since) {
            (true, _) => {
                self.leaderless_since.get_or_insert(at_ms);
                0
            }
            (false, Some(since)) => {
                self.leaderless_since = None;
                at_ms.saturating_sub(since)
            }
            (false, None) => 0,
        };
        if self.timeline.len() == TIMELINE_KEPT {
            self.timeline.pop_front();
        }
        self.timeline.push_back(LeaderChangeEntry {
            at_ms,
            from: from.to_string(),
            to: to.to_string(),
            reason: reason.to_string(),
            term,
            leaderless_ms,
        });
    }

    /// The leader changes kept, oldest first.
    pub fn timeline(&self) -> impl Iterator<Item = &LeaderChangeEntry> {
        self.timeline.iter()
    }

    /// The members as last heard of, and the cluster's active alarms.
    pub fn set_members(&mut self, members: Vec<MemberView>, alarms: Vec<(String, String)>) {
        self.members = members;
        self.alarms = alarms;
    }

    /// The active alarms: (member ID in hex, alarm).
    pub fn alarms(&self) -> &[(String, String)] {
        &self.alarms
    }

    /// The members as last heard of.
    pub fn members(&self) -> &[MemberView] {
        &self.members
    }

    /// The first sample to ask `member` for: the one after the last it reported.
    pub fn mirror_next(&self, member: &str) -> u64 {
        self.mirrors
            .get(member)
            .map_or(0, |mirror| mirror.next_sample)
    }

    /// Keeps what `member` reported: its samples numbered from `mirror_next` on. A member that
    /// numbers below what was kept restarted: what was kept of it goes.
    pub fn mirror(&mut self, member: &str, report: &MemberReport) {
        let mirror = self.mirrors.entry(member.to_string()).or_default();
        if report.next_sample < mirror.next_sample {
            *mirror = Mirror::default();
        }
        for sample in &report.samples {
            if sample.seq < mirror.next_sample || sample.seq >= report.next_sample {
                continue;
            }
            if mirror.samples.len() == SAMPLES_KEPT {
                mirror.samples.pop_front();
            }
            mirror.next_sample = sample.seq + 1;
            mirror.samples.push_back(sample.clone());
        }
        mirror.next_sample = report.next_sample;
    }

    /// `member`'s samples numbered from `seq` on, as it reported them.
    pub fn mirrored(&self, member: &str, seq: u64) -> Vec<Sample> {
        self.mirrors
            .get(member)
            .map_or_else(Vec::new, |mirror| samples_from(&mirror.samples, seq))
    }

    /// The leader whose samples the leader-latency view shows on this member's page: the one
    /// this member's newest sample knows, when that is another member (`None` when this member
    /// leads or knows no leader: the view shows its own).
    pub fn followed_leader(&self) -> Option<String> {
        self.samples
            .back()
            .filter(|newest| !newest.is_leader && !newest.leader.is_empty())
            .map(|newest| newest.leader.clone())
    }

    /// Requests answered per second by the whole cluster: the sum over this member's newest
    /// sample and each other member's newest, those at most `FRESH_MS` older than this
    /// member's (a member gone quiet adds nothing).
    pub fn cluster_requests_per_second(&self) -> f64 {
        const FRESH_MS: u64 = 5_000;
        let Some(own) = self.samples.back() else {
            return 0.0;
        };
        let total = |sample: &Sample| sample.requests.values().sum::<f64>();
        total(own)
            + self
                .mirrors
                .values()
                .filter_map(|mirror| mirror.samples.back())
                .filter(|newest| newest.at_ms + FRESH_MS >= own.at_ms)
                .map(total)
                .sum::<f64>()
    }

    /// Forgets the samples of members not in `members` (removed from the cluster).
    pub fn keep_mirrors_of(&mut self, members: &[String]) {
        self.mirrors.retain(|member, _| members.contains(member));
    }

    /// The slowest recent writes, as the consensus core last reported them.
    pub fn set_slowest(&mut self, slowest: SlowestRequests) {
        self.slowest = slowest;
    }

    /// The slowest recent writes, slowest first.
    pub fn slowest(&self) -> &[SlowRequest] {
        self.slowest.slowest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in values_us {
            h.record(v * 1000).unwrap();
        }
        h
    }

    fn sample(revision: i64) -> Sample {
        Sample {
            seq: 0,
            at_ms: 0,
            leader: String::new(),
            is_leader: false,
            term: 1,
            committed: 0,
            applied: 0,
            revision,
            compact_revision: 0,
            keys: 0,
            leases: 0,
            watch_streams: 0,
            watchers: 0,
            stages: Vec::new(),
            followers: Vec::new(),
            requests: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn each_interval_counts_only_its_own_samples() {
        let mut quantiles = IntervalQuantiles::default();
        let mut total = histogram(&[100; 99]);
        let first = quantiles.interval([("proposal_total".to_string(), &total)]);
        assert_eq!(first[0].count, 99);
        assert!((first[0].p99_us - 100.0).abs() < 1.0);
        // A spike in the next second is that second's p99 alone, not diluted by the first.
        total.add(histogram(&[5000, 5000])).unwrap();
        let second = quantiles.interval([("proposal_total".to_string(), &total)]);
        assert_eq!(second[0].count, 2);
        assert!((second[0].p50_us - 5000.0).abs() < 10.0, "{second:?}");
        // A quiet second: the stage is still there, empty.
        let third = quantiles.interval([("proposal_total".to_string(), &total)]);
        assert_eq!(third[0].count, 0);
        assert_eq!(third[0].stage, "proposal_total");
    }

    #[test]
    fn samples_are_numbered_and_bounded() {
        let mut feed = Feed::new();
        for n in 0..(SAMPLES_KEPT as i64 + 5) {
            feed.push(sample(n));
        }
        assert_eq!(feed.next_seq(), SAMPLES_KEPT as u64 + 5);
        let kept = feed.since(0);
        assert_eq!(kept.len(), SAMPLES_KEPT);
        assert_eq!(kept[0].seq, 5);
        assert_eq!(kept[0].revision, 5);
        assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(feed.since(SAMPLES_KEPT as u64 + 3).len(), 2);
    }

    #[test]
    fn the_timeline_measures_leaderless_time() {
        let mut feed = Feed::new();
        feed.leader_changed(1_000, "", "a", "election timeout", 2);
        feed.leader_changed(5_000, "a", "", "election timeout", 2);
        feed.leader_changed(5_300, "", "", "election timeout", 3);
        feed.leader_changed(6_250, "", "b", "election timeout", 4);
        feed.leader_changed(9_000, "b", "c", "transfer", 5);
        let entries: Vec<(String, u64)> = feed
            .timeline()
            .map(|e| (e.to.clone(), e.leaderless_ms))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("a".into(), 0),
                ("".into(), 0),
                ("".into(), 0),
                ("b".into(), 1250),
                ("c".into(), 0)
            ]
        );
        for n in 0..TIMELINE_KEPT as u64 {
            feed.leader_changed(10_000 + n, "c", "d", "transfer", 6);
        }
        assert_eq!(feed.timeline().count(), TIMELINE_KEPT);
    }

    fn report(next_sample: u64, seqs: std::ops::Range<u64>) -> MemberReport {
        MemberReport {
            leader: 1,
            is_learner: false,
            term: 2,
            raft_index: 10,
            applied: 10,
            db_size: 0,
            version: String::new(),
            log_syncs: 0,
            log_sync_p99_us: 0.0,
            next_sample,
            samples: seqs
                .map(|seq| Sample {
                    seq,
                    ..sample(seq as i64)
                })
                .collect(),
        }
    }

    #[test]
    fn other_members_samples_are_mirrored_in_order_and_bounded() {
        let mut feed = Feed::new();
        assert_eq!(feed.mirror_next("b"), 0);
        feed.mirror("b", &report(4, 0..4));
        assert_eq!(feed.mirror_next("b"), 4);
        // Asked from 4 on: a repeat of what is kept (an answer crossing a retry) is not kept
        // twice, nor a sample numbered past what the member says it reached.
        feed.mirror("b", &report(6, 3..7));
        let seqs: Vec<u64> = feed.mirrored("b", 0).iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(feed.mirrored("b", 5).len(), 1);
        // Restarted: it numbers from 0 again, and what was kept of it goes.
        feed.mirror("b", &report(2, 0..2));
        let seqs: Vec<u64> = feed.mirrored("b", 0).iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![0, 1]);
        // Bounded like this member's own, whatever it sends.
        feed.mirror(
            "c",
            &report(SAMPLES_KEPT as u64 + 50, 0..SAMPLES_KEPT as u64 + 50),
        );
        assert_eq!(feed.mirrored("c", 0).len(), SAMPLES_KEPT);
        assert_eq!(feed.mirrored("c", 0)[0].seq, 50);
        // The cluster's request rate: this member's newest and each other member's, if recent.
        let mut own = sample(9);
        own.at_ms = 10_000;
        own.requests.insert("Put".into(), 100.0);
        feed.push(own);
        let mut fresh = report(SAMPLES_KEPT as u64 + 51, 0..0);
        let mut theirs = sample(9);
        theirs.seq = SAMPLES_KEPT as u64 + 50;
        theirs.at_ms = 9_000;
        theirs.requests.insert("Range".into(), 30.0);
        theirs.requests.insert("Put".into(), 5.0);
        fresh.samples.push(theirs);
        feed.mirror("c", &fresh);
        let mut stale = report(1, 0..1);
        stale.samples[0].requests.insert("Put".into(), 1000.0);
        feed.mirror("d", &stale);
        assert_eq!(feed.cluster_requests_per_second(), 135.0);
        // The leader-latency view follows the leader this member knows, unless it leads.
        assert_eq!(feed.followed_leader(), None);
        let mut following = sample(9);
        following.leader = "c".into();
        feed.push(following.clone());
        assert_eq!(feed.followed_leader().as_deref(), Some("c"));
        following.is_leader = true;
        feed.push(following);
        assert_eq!(feed.followed_leader(), None);
        // A member gone from the cluster is forgotten.
        feed.keep_mirrors_of(&["c".to_string()]);
        assert!(feed.mirrored("b", 0).is_empty());
        assert!(feed.mirrored("d", 0).is_empty());
        assert_eq!(feed.mirror_next("c"), SAMPLES_KEPT as u64 + 51);
        // A report survives its trip as JSON.
        let sent = report(3, 0..3);
        let json = serde_json::to_vec(&sent).unwrap();
        assert_eq!(serde_json::from_slice::<MemberReport>(&json).unwrap(), sent);
    }

    #[test]
    fn the_slowest_recent_writes_are_kept() {
        let mut slowest = SlowestRequests::default();
        let slow = |at_ms, total_us| SlowRequest {
            at_ms,
            total_us,
            stages: vec![("leader_log_sync".into(), total_us / 2.0)],
        };
        for n in 0..30 {
            slowest.offer(slow(1_000 + n, n as f64));
        }
        let kept: Vec<f64> = slowest.slowest().iter().map(|r| r.total_us).collect();
        assert_eq!(kept, (20..30).rev().map(|n| n as f64).collect::<Vec<_>>());
        assert_eq!(slowest.threshold_us(), 20.0);
        // Five minutes on, the old ones make way even for a fast one.
        slowest.offer(slow(1_000 + 301_000, 1.0));
        assert_eq!(slowest.slowest().len(), 1);
    }
}
