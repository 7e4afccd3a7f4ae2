//! The built-in dashboard, served by lode itself at `/dashboard` on its client URLs and its
//! metrics URLs (with their TLS; the same access as `/metrics`). Every asset is built into the
//! binary; nothing is fetched from elsewhere.
//!
//! ```text
//!  core 0 (consensus), every second ─▶ sample (consensus::dashboard + request counters)
//!                                        + leader changes + slowest writes ─▶ FEED
//!  core 0, every second ─▶ each other member's report (status + samples since the last
//!                           asked), over the peer port ─▶ FEED (members, mirrored samples)
//!  core 0, peer port: another member's report query ─▶ this member's status + samples
//!  any core: GET /dashboard            ─▶ the page (HTML, JS, CSS, uPlot)
//!            GET /dashboard/state      ─▶ all of FEED as JSON
//!            GET /dashboard/events?from=n ─▶ server-sent events: each second, samples from
//!                                        n on, the leader's new samples, the timeline,
//!                                        members and slowest writes
//! ```
//!
//! The other members are asked over the peer port, not the client API: the peer port's checks
//! (cluster, sender, peer TLS) stand for the caller, so the cluster view needs no client user
//! when auth is on. Their samples are mirrored here, which gives a follower's page the
//! leader's latency view (relayed, whatever the browser can reach) and the leader's samples
//! each follower's own log-sync figures (`follower_log_sync:<id>`, its newest second as
//! reported, up to `FOLLOWER_SAMPLE_FRESH_MS` old).
//!
//! The feed lives behind one mutex, touched once a second by the sampler and once a second by
//! each open page: never on a request's path. Its size is bounded (`crate::dashboard`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::node::Node;
use crate::consensus::unix_millis;
use crate::dashboard::{Feed, IntervalQuantiles, MemberReport, MemberView, StageFigures};
use crate::ids::MemberId;

/// How often a sample is taken.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the other members are asked for their reports.
const MEMBERS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a member may take to answer before it is marked unreachable.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(1);

static FEED: LazyLock<Mutex<Feed>> = LazyLock::new(|| Mutex::new(Feed::new()));

/// Runs `work` with the feed. A sampler that panicked while holding the lock leaves the
/// feed as it was: it is plain data, so it is used anyway.
fn with_feed<T>(work: impl FnOnce(&mut Feed) -> T) -> T {
    let mut feed = FEED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    work(&mut feed)
}

/// Starts the dashboard's collectors on the consensus core (does nothing on other cores).
pub(super) fn start(node: &Rc<Node>) {
    let Some(consensus) = node.consensus() else {
        return;
    };
    answer_reports(consensus);
    glommio::spawn_local(sample_every_second(node.clone())).detach();
    glommio::spawn_local(gather_members(node.clone())).detach();
}

async fn sample_every_second(node: Rc<Node>) {
    let Some(consensus) = node.consensus().cloned() else {
        return;
    };
    let mut quantiles = IntervalQuantiles::default();
    let mut handled_before: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut next_change = 0;
    // Per follower, the first of its mirrored samples not yet used for its log sync.
    let mut follower_next: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        glommio::timer::sleep(SAMPLE_INTERVAL).await;
        if node.router().local().stopping() {
            return;
        }
        let at_ms = unix_millis();
        let mut sample = consensus.dashboard_sample(&mut quantiles, at_ms);
        let answered = super::grpc::handled_counts()
            .into_iter()
            .chain(super::native::answered_counts());
        let mut totals: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (kind, code, count) in answered {
            *totals.entry((kind, code)).or_default() += count;
        }
        for ((method, code), count) in totals {
            let before = handled_before
                .insert((method, code), count)
                .unwrap_or(count);
            let delta = count.saturating_sub(before) as f64 / SAMPLE_INTERVAL.as_secs_f64();
            *sample.requests.entry(method.to_string()).or_default() += delta;
            if code != "OK" && delta > 0.0 {
                *sample.errors.entry(code.to_string()).or_default() += delta;
            }
        }
        sample.requests.retain(|_, rate| *rate > 0.0);
        if let Ok(stats) = node.keyspace_stats().await {
            sample.keys = stats.live_keys;
            sample.watch_streams = stats.watch_streams;
            sample.watchers = stats.watchers;
        }
        if sample.is_leader {
            let followers: Vec<String> = sample.followers.iter().map(|f| f.id.clone()).collect();
            with_feed(|feed| {
                for follower in followers {
                    let next = follower_next.entry(follower.clone()).or_default();
                    let figures = follower_log_sync(feed, &follower, next, at_ms);
                    sample.stages.push(figures);
                }
            });
        }
        let changes = consensus.dashboard_leader_changes(next_change, at_ms);
        let slowest = consensus.dashboard_slowest();
        with_feed(|feed| {
            feed.push(sample);
            for (number, change) in changes {
                next_change = number + 1;
                feed.leader_changed(
                    change.at_ms,
                    &change.from,
                    &change.to,
                    &change.reason,
                    change.term,
                );
            }
            feed.set_slowest(slowest);
        });
    }
}

/// How old a follower's own sample may be to stand for its log sync in the leader's sample.
const FOLLOWER_SAMPLE_FRESH_MS: u64 = 3_000;

/// `follower`'s log sync as it measured it, named `follower_log_sync:<id>`: its newest sample
/// reported since `next` (the one after the last used), if recent; the stage with no figures
/// otherwise, so the chart's series stays and shows a gap.
fn follower_log_sync(feed: &Feed, follower: &str, next: &mut u64, at_ms: u64) -> StageFigures {
    let stage = format!("follower_log_sync:{follower}");
    if feed.mirror_next(follower) < *next {
        // It restarted and numbers its samples from 0 again.
        *next = 0;
    }
    let newest = feed.mirrored(follower, *next).pop();
    if let Some(newest) = &newest {
        *next = newest.seq + 1;
    }
    newest
        .filter(|sample| sample.at_ms + FOLLOWER_SAMPLE_FRESH_MS >= at_ms)
        .and_then(|sample| {
            sample
                .stages
                .into_iter()
                .find(|figures| figures.stage == "follower_log_sync")
        })
        .map_or_else(
            || StageFigures {
                stage: stage.clone(),
                count: 0,
                p50_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
            },
            |figures| StageFigures {
                stage: stage.clone(),
                ..figures
            },
        )
}

/// This member's status as another member's dashboard sees it (no samples).
fn report_of(consensus: &crate::consensus::Consensus<crate::wal::io::DmaDir>) -> MemberReport {
    let status = super::node::status_of(consensus);
    // The role it has most of its syncs in speaks for its disk.
    let syncs = status
        .stages
        .iter()
        .filter(|stage| stage.name.ends_with("log sync"))
        .max_by_key(|stage| stage.count);
    MemberReport {
        leader: status.leader,
        is_learner: status.is_learner,
        term: status.raft_term,
        raft_index: status.raft_index,
        applied: status.raft_applied_index,
        db_size: status.db_size,
        version: status.version,
        log_syncs: syncs.map_or(0, |stage| stage.count),
        log_sync_p99_us: syncs.map_or(0.0, |stage| stage.p99_ns as f64 / 1000.0),
        next_sample: 0,
        samples: Vec::new(),
    }
}

/// Answers the other members' report queries (over the peer port) from this member's feed.
fn answer_reports(consensus: &Rc<crate::consensus::Consensus<crate::wal::io::DmaDir>>) {
    let Some(transport) = consensus.peer_transport() else {
        return;
    };
    let weak = Rc::downgrade(consensus);
    transport.set_report_source(Box::new(move |first_sample| {
        let Some(consensus) = weak.upgrade() else {
            return Vec::new();
        };
        let mut report = report_of(&consensus);
        with_feed(|feed| {
            report.next_sample = feed.next_seq();
            // Asked for a number not reached yet: the asker knew this member before it
            // restarted. It gets all that is kept, numbered from 0 again.
            let from = if first_sample > feed.next_seq() {
                0
            } else {
                first_sample
            };
            report.samples = feed.since(from);
        });
        // Plain data always serializes; an empty answer would be refused by the asker.
        serde_json::to_vec(&report).unwrap_or_default()
    }));
}

/// Asks every other member for its report through the cluster (over the peer port, one
/// connection to each kept open), and keeps its samples beside this member's own.
async fn gather_members(node: Rc<Node>) {
    let Some(consensus) = node.consensus().cloned() else {
        return;
    };
    let mut connections: BTreeMap<MemberId, Option<crate::tls::Stream>> = BTreeMap::new();
    loop {
        glommio::timer::sleep(MEMBERS_INTERVAL).await;
        if node.router().local().stopping() {
            return;
        }
        let own = report_of(&consensus);
        let own_id = consensus.config().member_id;
        let mut views = Vec::new();
        let mut ids = Vec::new();
        for member in consensus.replica_members() {
            let id = format!("{:x}", member.id);
            ids.push(id.clone());
            let role = |leader: u64, learner: bool| {
                if learner {
                    "learner"
                } else if leader == member.id.get() {
                    "leader"
                } else {
                    "follower"
                }
            };
            let mut view = MemberView {
                id: id.clone(),
                name: member.name.clone(),
                client_url: member.client_urls.first().cloned().unwrap_or_default(),
                role: role(own.leader, member.is_learner).to_string(),
                reachable: false,
                error: String::new(),
                term: 0,
                raft_index: 0,
                applied: 0,
                lag_entries: 0,
                db_size: 0,
                version: String::new(),
                log_syncs: 0,
                log_sync_p99_us: 0.0,
                at_ms: unix_millis(),
            };
            let report = if member.id == own_id {
                Ok(own.clone())
            } else {
                let first_sample = with_feed(|feed| feed.mirror_next(&id));
                let asked = ask_report(&consensus, &mut connections, member.id, first_sample);
                let answer = asked.await;
                if answer.is_err() {
                    connections.remove(&member.id);
                }
                answer
            };
            match report {
                Ok(report) => {
                    view.reachable = true;
                    view.role = role(report.leader, report.is_learner).to_string();
                    view.term = report.term;
                    view.raft_index = report.raft_index;
                    view.applied = report.applied;
                    view.lag_entries = own.raft_index.saturating_sub(report.applied);
                    view.db_size = report.db_size;
                    view.version = report.version.clone();
                    view.log_syncs = report.log_syncs;
                    view.log_sync_p99_us = report.log_sync_p99_us;
                    if member.id != own_id {
                        with_feed(|feed| feed.mirror(&id, &report));
                    }
                }
                Err(error) => view.error = error,
            }
            views.push(view);
        }
        connections.retain(|id, _| ids.contains(&format!("{id:x}")));
        let alarms = consensus
            .alarms()
            .into_iter()
            .map(|alarm| {
                (
                    format!("{:x}", alarm.member_id),
                    alarm.alarm.name().to_string(),
                )
            })
            .collect();
        with_feed(|feed| {
            feed.keep_mirrors_of(&ids);
            feed.set_members(views, alarms);
        });
    }
}

/// Asks `member` for its report over the peer port, within `MEMBER_TIMEOUT`.
async fn ask_report(
    consensus: &crate::consensus::Consensus<crate::wal::io::DmaDir>,
    connections: &mut BTreeMap<MemberId, Option<crate::tls::Stream>>,
    member: MemberId,
    first_sample: u64,
) -> Result<MemberReport, String> {
    let Some(transport) = consensus.peer_transport() else {
        return Err("this member has no peer transport".into());
    };
    let connection = connections.entry(member).or_default();
    let asked = transport.ask_report(connection, member.get(), first_sample);
    let expired = glommio::timer::sleep(MEMBER_TIMEOUT);
    match futures::future::select(std::pin::pin!(asked), std::pin::pin!(expired)).await {
        futures::future::Either::Left((Ok(bytes), _)) => serde_json::from_slice(&bytes)
            .map_err(|error| format!("a report that does not read: {error}")),
        futures::future::Either::Left((Err(error), _)) => Err(error),
        futures::future::Either::Right(_) => Err(format!(
            "no answer within {} ms",
            MEMBER_TIMEOUT.as_millis()
        )),
    }
}

/// What a page is sent: `samples` of this member's, the followed `leader`'s samples, and the
/// rest of the feed as it is now.
fn feed_json(
    feed: &Feed,
    samples: Vec<crate::dashboard::Sample>,
    leader: &str,
    leader_samples: Vec<crate::dashboard::Sample>,
) -> serde_json::Value {
    serde_json::json!({
        "samples": samples,
        "leader": { "id": leader, "samples": leader_samples },
        "cluster_requests": feed.cluster_requests_per_second(),
        "timeline": feed.timeline().collect::<Vec<_>>(),
        "members": feed.members(),
        "alarms": feed.alarms(),
        "slowest": feed.slowest(),
    })
}

/// The whole feed as JSON, with this member's ID.
pub(super) fn state_json(node: &Node) -> String {
    let member = format!("{:x}", node.config.member_id);
    with_feed(|feed| {
        let leader = feed.followed_leader().unwrap_or_default();
        let leader_samples = feed.mirrored(&leader, 0);
        let mut state = feed_json(feed, feed.since(0), &leader, leader_samples);
        state["member"] = serde_json::Value::String(member);
        state.to_string()
    })
}

/// What an open page was sent so far: its own samples before `next`, and the followed
/// leader's (as this member mirrors them) before `leader_next`.
struct Sent {
    next: u64,
    leader: String,
    leader_next: u64,
}

/// Server-sent events for an open page: at once and then every second, the samples from
/// `from` on and the followed leader's new samples (all of them again when the leader
/// changed), with the timeline, the members and the slowest writes.
pub(super) fn events(from: u64) -> futures::stream::LocalBoxStream<'static, Bytes> {
    use futures::StreamExt;
    let sent = Sent {
        next: from,
        leader: String::new(),
        leader_next: 0,
    };
    futures::stream::unfold((sent, true), |(mut sent, first)| async move {
        if !first {
            glommio::timer::sleep(SAMPLE_INTERVAL).await;
        }
        let event = with_feed(|feed| {
            let leader = feed.followed_leader().unwrap_or_default();
            if leader != sent.leader {
                sent.leader = leader.clone();
                sent.leader_next = 0;
            }
            let leader_samples = feed.mirrored(&leader, sent.leader_next);
            if let Some(newest) = leader_samples.last() {
                sent.leader_next = newest.seq + 1;
            }
            let event = feed_json(feed, feed.since(sent.next), &leader, leader_samples);
            sent.next = feed.next_seq();
            event
        });
        let frame = Bytes::from(format!("data: {event}\n\n"));
        Some((frame, (sent, false)))
    })
    .boxed_local()
}

/// A built-in asset at `path` (under `/dashboard`): its content type and bytes.
pub(super) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/dashboard" | "/dashboard/" => (
            "text/html; charset=utf-8",
            include_bytes!("assets/index.html"),
        ),
        "/dashboard/app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/app.js"),
        ),
        "/dashboard/app.css" => ("text/css; charset=utf-8", include_bytes!("assets/app.css")),
        "/dashboard/uPlot.iife.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("assets/uplot/uPlot.iife.min.js"),
        ),
        "/dashboard/uPlot.min.css" => (
            "text/css; charset=utf-8",
            include_bytes!("assets/uplot/uPlot.min.css"),
        ),
        "/dashboard/uPlot.LICENSE" => (
            "text/plain; charset=utf-8",
            include_bytes!("assets/uplot/LICENSE"),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn the_vendored_chart_library_is_the_pinned_release() {
        let sum = |bytes: &[u8]| format!("{:x}", sha2::Sha256::digest(bytes));
        let (_, js) = asset("/dashboard/uPlot.iife.min.js").expect("uPlot");
        let (_, css) = asset("/dashboard/uPlot.min.css").expect("uPlot css");
        assert_eq!(
            sum(js),
            "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"
        );
        assert_eq!(
            sum(css),
            "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"
        );
        assert!(asset("/dashboard/../Cargo.toml").is_none());
    }
}
