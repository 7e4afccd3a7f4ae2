//! What ships in `monitoring/` works against real lode: the alert rules pass Prometheus's own
//! checker and their unit tests, the Grafana dashboard's queries parse, and every metric either
//! names is served by a real 3-member cluster, with etcd's names, types and labels where the
//! name is etcd's (so etcd's own dashboards and alerts read lode unchanged).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::cluster::{cluster, wait_for_leader};

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/monitoring");

/// Runs promtool (Debian's `prometheus` package, which test.sh installs) with `args`.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(MONITORING)
        .output()
        .expect("promtool (Debian's prometheus package) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every metric name an expression mentions (lode's, etcd's, gRPC's and the process's).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = &text[at..];
        let prefixed = ["etcd_", "lode_", "grpc_", "process_"]
            .iter()
            .any(|prefix| rest.starts_with(prefix));
        if word_start && prefixed {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
            at += end;
        } else {
            at += 1;
        }
    }
    // go-grpc-prometheus's label names share the metrics' prefix.
    let labels = ["grpc_code", "grpc_method", "grpc_service", "grpc_type"];
    // A histogram's series name its family.
    names
        .into_iter()
        .filter(|name| !labels.contains(&name.as_str()))
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_string()
        })
        .collect()
}

/// The queries of the shipped Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(MONITORING).join("grafana-lode.json"))
        .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let queries: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(queries.len() > 20, "{queries:?}");
    queries
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts-test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dashboards_queries_parse() {
    // Grafana's variables replaced by what they stand for, each query made a recording rule
    // for promtool to parse.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, query) in dashboard_queries().iter().enumerate() {
        let query = query
            .replace("$__rate_interval", "1m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_query_{n}\n        expr: {}\n",
            serde_json::to_string(&query).expect("quoted")
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    let checked = promtool(&["check", "rules", path.to_str().expect("utf-8 path")]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// `# TYPE` of every family in an exposition.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

#[test]
fn every_metric_the_alerts_and_dashboard_read_is_served_with_etcds_types_and_labels() {
    let mut members = cluster("monitoring");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    for n in 0..20 {
        let value = n.to_string();
        let put = members[leader]
            .lode()
            .ctl(&["put", &format!("k{n}"), &value]);
        assert!(put.status.success(), "{put:?}");
    }
    let metrics = |member: usize| {
        let (status, body) =
            common::server::http(&members[member].lode().client_url, "GET", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        body
    };
    // Heartbeats answered at least once by each follower: their round trips are timed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let leader_text = loop {
        let text = metrics(leader);
        if text
            .matches("etcd_network_peer_round_trip_time_seconds_count{")
            .count()
            == 2
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat round trips:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // The follower has applied every write (it may trail the leader's acknowledgement).
    let follower_text = loop {
        let text = metrics((leader + 1) % 3);
        if text.contains("\netcd_debugging_mvcc_keys_total 20\n") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never counted the keys:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let served: BTreeMap<String, String> = families(&leader_text)
        .into_iter()
        .chain(families(&follower_text))
        .collect();

    let alerts = std::fs::read_to_string(Path::new(MONITORING).join("alerts.yml")).expect("alerts");
    let mut wanted = metric_names(&alerts);
    for query in dashboard_queries() {
        wanted.extend(metric_names(&query));
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !served.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}");

    // etcd's names with etcd's types (etcd's proposal counts are gauges despite `_total`).
    for (name, kind) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_is_leader", "gauge"),
        ("etcd_server_leader_changes_seen_total", "counter"),
        ("etcd_server_heartbeat_send_failures_total", "counter"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_server_proposals_applied_total", "gauge"),
        ("etcd_server_proposals_pending", "gauge"),
        ("etcd_server_proposals_failed_total", "counter"),
        ("etcd_server_slow_apply_total", "counter"),
        ("etcd_server_quota_backend_bytes", "gauge"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_disk_backend_commit_duration_seconds", "histogram"),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
        ("etcd_debugging_mvcc_keys_total", "gauge"),
        ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
        ("etcd_debugging_mvcc_watcher_total", "gauge"),
        ("etcd_debugging_mvcc_current_revision", "gauge"),
        ("etcd_network_peer_round_trip_time_seconds", "histogram"),
        ("etcd_network_peer_sent_bytes_total", "counter"),
        ("etcd_network_peer_received_bytes_total", "counter"),
        ("etcd_network_peer_sent_failures_total", "counter"),
        ("etcd_network_client_grpc_sent_bytes_total", "counter"),
        ("etcd_network_client_grpc_received_bytes_total", "counter"),
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(served.get(name).map(String::as_str), Some(kind), "{name}");
    }
    // etcd's labels: peers by member ID in hex, gRPC calls by go-grpc-prometheus's four.
    let follower = format!("{:x}", common::cluster::own_id(&members[(leader + 1) % 3]));
    for series in [
        format!("etcd_network_peer_round_trip_time_seconds_bucket{{To=\"{follower}\",le=\"0.0001\"}}"),
        format!("etcd_network_peer_sent_bytes_total{{To=\"{follower}\"}}"),
        format!("etcd_network_peer_received_bytes_total{{From=\"{follower}\"}}"),
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}".to_string(),
        "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"}".to_string(),
    ] {
        assert!(leader_text.contains(&format!("{series} ")), "{series} missing");
    }
    assert!(leader_text.contains("\netcd_debugging_mvcc_keys_total 20\n"));
}
