//! The built-in dashboard in a real browser (headless Chromium over WebDriver) against a real
//! 3-member cluster under load: the leader-latency view shows each stage with figures that
//! agree with the member's own feed and `/metrics`; a follower whose fsync is slowed stands out
//! as the slow stage, and its full disk's alarm shows; the leader is killed and the change, with its leaderless time, appears on
//! the timeline; the workload view counts the load's requests; a follower's page shows the
//! leader's figures; with auth on, a follower still sees every member. Screenshots are kept in
//! the target directory.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::browser::Browser;
use common::cluster::{background_writer, cluster_with, own_id, wait_for_leader};
use common::etcd::{etcdctl, succeeded};
use common::server::http;

/// Where the screenshots go.
fn keep_screenshot(name: &str, png: &[u8]) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(name), png).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

/// A script true once the workload figure labelled `label` is above `floor`.
fn figure_above(label: &str, floor: u64) -> String {
    format!(
        "const div = [...document.querySelectorAll('#workload-figures div')]
           .find(d => d.lastChild.textContent === '{label}');
         return !!div && Number(div.firstChild.textContent) > {floor};"
    )
}

/// The `count` of a histogram series in an exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_dashboard_shows_stages_a_slow_follower_and_leader_changes() {
    let mut members = cluster_with(
        "dashboard",
        &["--heartbeat-interval", "100", "--election-timeout", "1000"],
    );
    // Each member has a sync-delay fault file of its own, empty (no delay) until written.
    let faults: Vec<std::path::PathBuf> = members
        .iter()
        .map(|member| member.dir.0.with_extension("sync-delay"))
        .collect();
    for (member, fault) in members.iter_mut().zip(&faults) {
        member.env = vec![(
            "LODE_FAULT_SYNC_DELAY_FILE".into(),
            fault.display().to_string(),
        )];
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let (watched, slow) = ((leader + 1) % 3, (leader + 2) % 3);
    let slow_id = format!("{:x}", own_id(&members[slow]));
    // Writes through the leader: the total is measured where a write is proposed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = background_writer(members[leader].lode().address.clone(), stop.clone());

    let browser = Browser::start();
    browser.open(&format!("{}/dashboard", members[leader].lode().client_url));

    // The leader-latency view: every stage, the total among them, with samples.
    let shown = browser.wait_for(
        "commits in the stage table",
        "const row = document.querySelector('#stages tr[data-stage=\"proposal_total\"]');
         if (!row || Number(row.cells[1].textContent) === 0) return null;
         return [...document.querySelectorAll('#stages tbody tr')].map(r => r.dataset.stage);",
    );
    let shown: Vec<String> = serde_json::from_value(shown).expect("stage names");
    for stage in [
        "proposal_queueing",
        "leader_log_sync",
        "commit_to_apply",
        "apply_to_response",
        "proposal_total",
    ] {
        assert!(
            shown.iter().any(|s| s == stage),
            "{stage} not shown: {shown:?}"
        );
    }
    // One replication stage per follower, as /metrics has one round-trip histogram per
    // follower; the page's figures are the feed's, whose counts /metrics covers.
    let metrics = http(&members[leader].lode().client_url, "GET", "/metrics", "").1;
    let followers_in_metrics = metrics
        .lines()
        .filter(|line| line.starts_with("lode_replication_round_trip_seconds_count{"))
        .count();
    let replication_shown = shown
        .iter()
        .filter(|s| s.starts_with("replication:"))
        .count();
    assert_eq!(replication_shown, 2);
    assert_eq!(followers_in_metrics, 2);
    let state: serde_json::Value = serde_json::from_str(
        &http(
            &members[leader].lode().client_url,
            "GET",
            "/dashboard/state",
            "",
        )
        .1,
    )
    .expect("state");
    let feed_commits: f64 = state["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .flat_map(|sample| sample["stages"].as_array().cloned().unwrap_or_default())
        .filter(|stage| stage["stage"] == "proposal_total")
        .filter_map(|stage| stage["count"].as_f64())
        .sum();
    let metric_commits = metric(
        &metrics,
        "lode_commit_stage_seconds_count{stage=\"proposal_total\"}",
    )
    .expect("proposal_total in /metrics");
    assert!(
        feed_commits > 0.0 && feed_commits <= metric_commits,
        "the feed counted {feed_commits} commits, /metrics {metric_commits}"
    );
    let page_row = browser.run(
        "const row = document.querySelector('#stages tr[data-stage=\"proposal_total\"]');
         return [...row.cells].map(c => c.textContent);",
    );
    let page_row: Vec<String> = serde_json::from_value(page_row).expect("cells");
    let p50: f64 = page_row[2].parse().expect("p50");
    let p99: f64 = page_row[3].parse().expect("p99");
    assert!(p50 > 0.0 && p50 <= p99, "{page_row:?}");
    // The workload view counts the writer's puts (lodectl: the native protocol), the keys they
    // made, and a watch stream held open meanwhile.
    let mut watcher = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args([
            "--endpoints",
            &members[leader].lode().address,
            "watch",
            "w",
            "--prefix",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("lodectl watch");
    for label in [
        "requests/s",
        "requests/s (cluster)",
        "keys",
        "watch streams",
        "watchers",
    ] {
        browser.wait_for(
            &format!("{label} in the workload view"),
            &figure_above(label, 0),
        );
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    keep_screenshot("leader-latency.png", &browser.screenshot());

    // A follower's fsync slowed by 60 ms: the slow stage is that follower's (its replication
    // round trip, or its own log sync as it reports it), with a p99 of at least the delay.
    std::fs::write(&faults[slow], "60").expect("fault");
    browser.wait_for(
        "the slow follower marked as the slow stage",
        &format!(
            "const hot = document.querySelector('#stages tr.hot');
             return hot && (hot.dataset.stage === 'replication:{slow_id}'
                            || hot.dataset.stage === 'follower_log_sync:{slow_id}')
                 && Number(hot.cells[3].textContent) >= 60000;"
        ),
    );
    // Its own log sync, as it measured it, shows beside its round trip.
    browser.wait_for(
        "the slow follower's own log sync",
        &format!(
            "const row = document.querySelector('#stages tr[data-stage=\"follower_log_sync:{slow_id}\"]');
             return !!row && Number(row.cells[3].textContent) >= 60000;"
        ),
    );
    let verdict = browser.run("return document.getElementById('verdict').textContent;");
    assert!(
        verdict.as_str().is_some_and(|v| v.contains(&slow_id)),
        "{verdict}"
    );
    keep_screenshot("slow-follower.png", &browser.screenshot());

    // The same follower's disk full: its NOSPACE alarm shows in the cluster view, and goes once
    // the disk has room again.
    std::fs::write(&faults[slow], "enospc").expect("fault");
    browser.wait_for(
        "the full disk's alarm",
        &format!(
            "return document.getElementById('alarms').textContent.includes('NOSPACE on {slow_id}');"
        ),
    );
    std::fs::write(&faults[slow], "").expect("fault cleared");
    browser.wait_for(
        "the alarm cleared",
        "return document.getElementById('alarms').textContent === 'No alarms.';",
    );

    // A follower's page: the leader-latency view is the leader's, relayed by the follower
    // (replication stages exist only on the leader).
    browser.open(&format!("{}/dashboard", members[watched].lode().client_url));
    let leader_id = format!("{:x}", own_id(&members[leader]));
    browser.wait_for(
        "the leader's figures on a follower's page",
        &format!(
            "return document.getElementById('latency-source').textContent.includes('{leader_id}')
                 && !!document.querySelector('#stages tr[data-stage^=\"replication:\"]');"
        ),
    );
    // The leader killed: a follower's page shows the change and how long the cluster had none.
    browser.wait_for(
        "the cluster view, every member's log syncs counted",
        "const rows = [...document.querySelectorAll('#members tbody tr')];
         return rows.length === 3 && rows.every(r => Number(r.cells[7].textContent) > 0);",
    );
    members[leader].lode.as_mut().expect("leader").kill();
    members[leader].lode = None;
    let change = browser.wait_for(
        "a new leader on the timeline",
        "const rows = [...document.querySelectorAll('#timeline tbody tr')]
           .map(r => [...r.cells].map(c => c.textContent));
         return rows.find(r => r[1] === 'none' && r[2] !== 'none'
                               && r[5].endsWith(' ms') && parseInt(r[5]) > 0) || null;",
    );
    let change: Vec<String> = serde_json::from_value(change).expect("timeline row");
    assert_eq!(change[3], "election timeout", "{change:?}");
    // The killed member shows as unreachable in the cluster view.
    browser.wait_for(
        "the killed member marked unreachable",
        "return [...document.querySelectorAll('#members tbody tr.down')].length === 1;",
    );
    keep_screenshot("leader-change.png", &browser.screenshot());

    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
}

/// With auth on, a follower's dashboard still sees every member (asked over the peer port,
/// which needs no client user) and relays the leader's figures, each follower's own log sync
/// among them.
#[test]
fn with_auth_on_a_followers_dashboard_sees_every_member_and_the_leaders_figures() {
    let mut members = common::cluster::cluster("dashboard-auth");
    for member in members.iter_mut() {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    let leader_id = format!("{:x}", own_id(&members[leader]));
    let follower_id = format!("{:x}", own_id(&members[follower]));
    let endpoint = members[leader].lode().client_url.clone();
    let run = |args: &[&str]| succeeded(etcdctl(&endpoint, args));
    run(&["user", "add", "root:rootpw"]);
    run(&["user", "grant-role", "root", "root"]);
    run(&["auth", "enable"]);
    let anonymous = etcdctl(&endpoint, &["put", "k", "v"]);
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("user name is empty"),
        "{anonymous:?}"
    );
    let state_of = |member: usize| -> serde_json::Value {
        let url = &members[member].lode().client_url;
        serde_json::from_str(&http(url, "GET", "/dashboard/state", "").1).expect("state")
    };
    let has_stage = |samples: &serde_json::Value, stage: &str| {
        samples.as_array().is_some_and(|samples| {
            samples.iter().any(|sample| {
                sample["stages"].as_array().is_some_and(|stages| {
                    stages
                        .iter()
                        .any(|s| s["stage"] == stage && s["count"].as_u64() > Some(0))
                })
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        run(&["--user", "root:rootpw", "put", &format!("k{n}"), "v"]);
        let on_follower = state_of(follower);
        let on_leader = state_of(leader);
        let reachable = on_follower["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["reachable"] == true).count());
        let relayed = on_follower["leader"]["id"] == leader_id.as_str()
            && has_stage(&on_follower["leader"]["samples"], "proposal_total");
        let follower_sync = has_stage(
            &on_leader["samples"],
            &format!("follower_log_sync:{follower_id}"),
        );
        if reachable == 3 && relayed && follower_sync {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reachable {reachable}, relayed {relayed}, follower log sync {follower_sync}: \
             {on_follower}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `lodectl perf --watch`: the leader-latency view in the terminal, redrawn each second from
/// the dashboard's feed, showing the writes made meanwhile.
#[test]
fn lodectl_perf_watch_shows_the_last_seconds_stages() {
    use std::io::{BufRead, BufReader};
    let dir = common::server::DataDir::new("dashboard-top");
    let lode = common::server::Lode::start(&dir.0, &[]);
    let mut top = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["--endpoints", &lode.address, "perf", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lodectl");
    let stdout = top.stdout.take().expect("stdout");
    let address = lode.address.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !writing.load(Ordering::Relaxed) {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
                .args(["--endpoints", &address, "put", &format!("k{n}"), "v"])
                .output();
            n += 1;
        }
    });
    // Never a hang: lodectl is stopped after a minute whatever it printed.
    let pid = top.id() as i32;
    let done = stop.clone();
    let watchdog = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // SAFETY: signals a child process this test started (already reaped only after
        // `done` is set, when this thread stops watching first).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    // A screen whose proposal_total row counts commits in its second.
    let mut seen = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"proposal_total")
            && fields.get(1).and_then(|count| count.parse::<u64>().ok()) > Some(0)
        {
            seen = Some(line);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let _ = top.wait();
    let _ = writer.join();
    let line = seen.expect("a screen with commits");
    let p99: f64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("p99");
    assert!(p99 > 0.0, "{line}");
}
