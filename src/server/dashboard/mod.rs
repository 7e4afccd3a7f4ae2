//! The built-in dashboard, served by lode itself at `/dashboard` on its client URLs and its
//! metrics URLs (with their TLS; the same access as `/metrics`). Every asset is built into the
//! binary; nothing is fetched from elsewhere.
//!
//! ```text
//!  core 0 (consensus), every second ─▶ sample (consensus::dashboard + request counters)
//!                                        + leader changes + slowest writes ─▶ FEED
//!  core 0, every two seconds ────────▶ each member's Status, asked through the cluster
//!                                        (the native protocol on its client URL) ─▶ FEED
//!  any core: GET /dashboard            ─▶ the page (HTML, JS, CSS, uPlot)
//!            GET /dashboard/state      ─▶ all of FEED as JSON
//!            GET /dashboard/events?from=n ─▶ server-sent events: each second, samples from
//!                                        n on, the timeline, members and slowest writes
//! ```
//!
//! The feed lives behind one mutex, touched once a second by the sampler and once a second by
//! each open page: never on a request's path. Its size is bounded (`crate::dashboard`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::node::Node;
use crate::api::native::{Request, Response};
use crate::consensus::unix_millis;
use crate::dashboard::{Feed, IntervalQuantiles, MemberView};
use crate::ids::MemberId;

/// How often a sample is taken.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the other members are asked for their Status.
const MEMBERS_INTERVAL: Duration = Duration::from_secs(2);

/// How long a member may take to answer its Status before it is marked unreachable.
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
    if node.consensus().is_none() {
        return;
    }
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

/// Asks every other member for its Status through the cluster (the native protocol on its
/// first client URL, TLS as this member dials client URLs), keeping one connection to each.
async fn gather_members(node: Rc<Node>) {
    let Some(consensus) = node.consensus().cloned() else {
        return;
    };
    let mut clients: BTreeMap<MemberId, crate::client::Client> = BTreeMap::new();
    loop {
        glommio::timer::sleep(MEMBERS_INTERVAL).await;
        if node.router().local().stopping() {
            return;
        }
        let own = super::node::status_of(&consensus);
        let own_id = consensus.config().member_id;
        let mut views = Vec::new();
        for member in consensus.replica_members() {
            let client_url = member.client_urls.first().cloned().unwrap_or_default();
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
                id: format!("{:x}", member.id),
                name: member.name.clone(),
                client_url: client_url.clone(),
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
            let status = if member.id == own_id {
                Ok(own.clone())
            } else if client_url.is_empty() {
                Err("its client URL is not published yet".to_string())
            } else {
                ask_status(&consensus, &mut clients, member.id, &client_url).await
            };
            match status {
                Ok(status) => {
                    view.reachable = true;
                    view.role = role(status.leader, status.is_learner).to_string();
                    view.term = status.raft_term;
                    view.raft_index = status.raft_index;
                    view.applied = status.raft_applied_index;
                    view.lag_entries = own.raft_index.saturating_sub(status.raft_applied_index);
                    view.db_size = status.db_size;
                    view.version = status.version;
                    // The role it has most of its syncs in speaks for its disk.
                    if let Some(syncs) = status
                        .stages
                        .iter()
                        .filter(|stage| stage.name.ends_with("log sync"))
                        .max_by_key(|stage| stage.count)
                    {
                        view.log_syncs = syncs.count;
                        view.log_sync_p99_us = syncs.p99_ns as f64 / 1000.0;
                    }
                }
                Err(error) => {
                    clients.remove(&member.id);
                    view.error = error;
                }
            }
            views.push(view);
        }
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
        with_feed(|feed| feed.set_members(views, alarms));
    }
}

async fn ask_status(
    consensus: &crate::consensus::Consensus<crate::wal::io::DmaDir>,
    clients: &mut BTreeMap<MemberId, crate::client::Client>,
    member: MemberId,
    client_url: &str,
) -> Result<crate::api::request::StatusResponse, String> {
    let asked = async {
        if let std::collections::btree_map::Entry::Vacant(vacant) = clients.entry(member) {
            let url = crate::urls::parse_url(client_url)?;
            let tls = match (url.tls, consensus.config().forward_tls.as_ref()) {
                (false, _) => None,
                (true, Some(tls)) => Some((&**tls, url.host.as_str())),
                (true, None) => {
                    return Err("its client URL is https and this member has no client TLS \
                                settings"
                        .to_string())
                }
            };
            let client = crate::client::Client::connect_secured(&url.authority(), tls)
                .await
                .map_err(|error| error.to_string())?;
            vacant.insert(client);
        }
        let Some(client) = clients.get(&member) else {
            return Err("no connection".to_string());
        };
        match client.request(&Request::Status).await {
            Ok(Response::Status(status)) => Ok(status),
            Ok(_) => Err("an answer that is not a status".to_string()),
            Err(error) => Err(error.to_string()),
        }
    };
    let expired = glommio::timer::sleep(MEMBER_TIMEOUT);
    match futures::future::select(std::pin::pin!(asked), std::pin::pin!(expired)).await {
        futures::future::Either::Left((answer, _)) => answer,
        futures::future::Either::Right(_) => Err(format!(
            "no answer within {} ms",
            MEMBER_TIMEOUT.as_millis()
        )),
    }
}

/// The whole feed as JSON, with this member's ID.
pub(super) fn state_json(node: &Node) -> String {
    let member = format!("{:x}", node.config.member_id);
    with_feed(|feed| {
        serde_json::json!({
            "member": member,
            "samples": feed.since(0),
            "timeline": feed.timeline().collect::<Vec<_>>(),
            "members": feed.members(),
            "alarms": feed.alarms(),
            "slowest": feed.slowest(),
        })
        .to_string()
    })
}

/// Server-sent events for an open page: at once and then every second, the samples from
/// `from` on, with the timeline, the members and the slowest writes.
pub(super) fn events(from: u64) -> futures::stream::LocalBoxStream<'static, Bytes> {
    use futures::StreamExt;
    futures::stream::unfold((from, true), |(next, first)| async move {
        if !first {
            glommio::timer::sleep(SAMPLE_INTERVAL).await;
        }
        let (event, next) = with_feed(|feed| {
            let samples = feed.since(next);
            let event = serde_json::json!({
                "samples": samples,
                "timeline": feed.timeline().collect::<Vec<_>>(),
                "members": feed.members(),
                "alarms": feed.alarms(),
                "slowest": feed.slowest(),
            });
            (event, feed.next_seq())
        });
        let frame = Bytes::from(format!("data: {event}\n\n"));
        Some((frame, (next, false)))
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
