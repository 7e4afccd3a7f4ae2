//! How the leader's heartbeats fare, per follower: their network round trip and the heartbeats
//! that went out late. Pure; fed by the replica as heartbeats leave and their answers arrive.
//!
//! ```text
//!  leader sends MsgHeartbeat to f ──▶ heartbeat_sent(f, now)
//!        │   gap since the last one to f > 2 × heartbeat interval ─▶ send failures += 1
//!        │   none awaited from f ─▶ remember `now`
//!        ▼
//!  f answers MsgHeartbeatResponse ──▶ heartbeat_answered(f, now) ─▶ round trip(f) observed
//!  leadership changes ──────────────▶ reset (a new leader starts its own schedule)
//! ```
//!
//! A heartbeat's answer does not wait for the follower's disk, so its round trip is the
//! network's plus both members' scheduling: etcd's `etcd_network_peer_round_trip_time_seconds`
//! (etcd probes with HTTP requests of its own; lode times the heartbeats it sends anyway). A
//! late heartbeat is what etcd counts in `etcd_server_heartbeat_send_failures_total`: the leader
//! could not keep its schedule (usually a slow disk holding the loop), and followers may start
//! elections. Only one heartbeat per follower is timed at a time: raft-rs's answers do not name
//! the heartbeat they answer, and one awaited past an election timeout is taken as lost.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// etcd's buckets for `etcd_network_peer_round_trip_time_seconds`: 0.1 ms doubling to 3.2768 s.
pub const ROUND_TRIP_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// Longest round trip recorded exactly.
const MAX_RECORDED: Duration = Duration::from_secs(60);

/// The leader's view of its heartbeats.
pub struct PeerHealth {
    heartbeat_interval: Duration,
    /// An awaited heartbeat's answer is taken as lost after this long.
    lost_after: Duration,
    /// Per follower: when the last heartbeat went to it.
    last_sent: HashMap<u64, Instant>,
    /// Per follower: when the heartbeat being timed went out.
    awaited: HashMap<u64, Instant>,
    round_trips: BTreeMap<u64, Histogram<u64>>,
    send_failures: u64,
}

impl PeerHealth {
    /// The view of a member whose leader heartbeats every `heartbeat_interval` and whose
    /// followers elect after `election_timeout`.
    pub fn new(heartbeat_interval: Duration, election_timeout: Duration) -> PeerHealth {
        PeerHealth {
            heartbeat_interval,
            lost_after: election_timeout,
            last_sent: HashMap::new(),
            awaited: HashMap::new(),
            round_trips: BTreeMap::new(),
            send_failures: 0,
        }
    }

    /// A heartbeat went to `follower` at `now`.
    pub fn heartbeat_sent(&mut self, follower: u64, now: Instant) {
        if let Some(previous) = self.last_sent.insert(follower, now) {
            if now.saturating_duration_since(previous) > 2 * self.heartbeat_interval {
                self.send_failures += 1;
            }
        }
        let lost = self
            .awaited
            .get(&follower)
            .is_some_and(|sent| now.saturating_duration_since(*sent) > self.lost_after);
        if lost || !self.awaited.contains_key(&follower) {
            self.awaited.insert(follower, now);
        }
    }

    /// `follower` answered a heartbeat at `now`.
    pub fn heartbeat_answered(&mut self, follower: u64, now: Instant) {
        let Some(sent) = self.awaited.remove(&follower) else {
            return;
        };
        let histogram = self.round_trips.entry(follower).or_insert_with(|| {
            // Constant bounds hdrhistogram accepts; the tests below build one.
            Histogram::new_with_bounds(1, MAX_RECORDED.as_nanos() as u64, 3)
                .expect("valid histogram bounds")
        });
        let nanos = now
            .saturating_duration_since(sent)
            .min(MAX_RECORDED)
            .as_nanos()
            .max(1) as u64;
        histogram.saturating_record(nanos);
    }

    /// Leadership changed: the heartbeat schedule starts afresh (etcd resets its detector).
    pub fn reset(&mut self) {
        self.last_sent.clear();
        self.awaited.clear();
    }

    /// Heartbeats that went out more than two intervals after the previous one to the same
    /// follower.
    pub fn send_failures(&self) -> u64 {
        self.send_failures
    }

    /// Heartbeat round trips per follower, nanoseconds.
    pub fn round_trips(&self) -> &BTreeMap<u64, Histogram<u64>> {
        &self.round_trips
    }

    /// Adds etcd's heartbeat metrics to a `/metrics` exposition.
    pub fn expose(&self, out: &mut crate::metrics::Exposition) {
        out.counter(
            "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            &[],
            self.send_failures,
        );
        for (follower, histogram) in &self.round_trips {
            out.histogram(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
                &[("To", &format!("{follower:x}"))],
                histogram,
                &ROUND_TRIP_BUCKETS,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn late_heartbeats_are_counted_and_a_reset_forgets_the_schedule() {
        let start = Instant::now();
        let mut health = PeerHealth::new(100 * MS, 1000 * MS);
        health.heartbeat_sent(2, start);
        health.heartbeat_sent(2, start + 100 * MS);
        health.heartbeat_sent(2, start + 300 * MS);
        assert_eq!(
            health.send_failures(),
            0,
            "exactly two intervals is on time"
        );
        health.heartbeat_sent(2, start + 501 * MS);
        assert_eq!(health.send_failures(), 1);
        // Another follower keeps its own schedule.
        health.heartbeat_sent(3, start + 501 * MS);
        assert_eq!(health.send_failures(), 1);
        health.reset();
        health.heartbeat_sent(2, start + 5000 * MS);
        assert_eq!(
            health.send_failures(),
            1,
            "a new leader's first heartbeat is not late"
        );
    }

    #[test]
    fn one_heartbeat_is_timed_at_a_time_and_a_lost_one_is_replaced() {
        let start = Instant::now();
        let mut health = PeerHealth::new(100 * MS, 1000 * MS);
        health.heartbeat_sent(2, start);
        health.heartbeat_sent(2, start + 100 * MS);
        // The answer is timed from the first heartbeat still awaited.
        health.heartbeat_answered(2, start + 103 * MS);
        let histogram = &health.round_trips()[&2];
        assert_eq!(histogram.len(), 1);
        assert!(histogram.max() >= (103 * MS).as_nanos() as u64 * 999 / 1000);
        // An answer with nothing awaited is not timed.
        health.heartbeat_answered(2, start + 104 * MS);
        assert_eq!(health.round_trips()[&2].len(), 1);
        // Awaited past the election timeout: lost, and the next heartbeat is timed instead.
        health.heartbeat_sent(2, start + 200 * MS);
        health.heartbeat_sent(2, start + 1300 * MS);
        health.heartbeat_answered(2, start + 1302 * MS);
        let histogram = &health.round_trips()[&2];
        assert_eq!(histogram.len(), 2);
        let fast = histogram.count_between(0, (10 * MS).as_nanos() as u64);
        assert_eq!(fast, 1, "timed from the heartbeat sent after the lost one");
    }

    #[test]
    fn the_exposition_carries_etcds_names_and_labels() {
        let start = Instant::now();
        let mut health = PeerHealth::new(100 * MS, 1000 * MS);
        health.heartbeat_sent(0xab, start);
        health.heartbeat_answered(0xab, start + 2 * MS);
        let mut out = crate::metrics::Exposition::new();
        health.expose(&mut out);
        let text = out.finish();
        assert!(text.contains("etcd_server_heartbeat_send_failures_total 0\n"));
        assert!(text.contains(
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"ab\",le=\"0.0016\"} 0\n"
        ));
        assert!(text.contains(
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"ab\",le=\"0.0032\"} 1\n"
        ));
        assert!(text.contains("etcd_network_peer_round_trip_time_seconds_count{To=\"ab\"} 1\n"));
    }
}
