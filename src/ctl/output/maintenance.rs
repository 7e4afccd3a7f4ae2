//! lodectl's maintenance outputs: alarms, endpoint status, hashkv, check perf and snapshot
//! status, in each format they are printed in.

use super::*;

/// Alarms as etcdctl prints them: one `memberID:<id> alarm:<type>` line each.
pub fn simple_alarms(response: &crate::alarm::AlarmResponse) -> String {
    response
        .alarms
        .iter()
        .map(|m| format!("memberID:{} alarm:{}\n", m.member_id, m.alarm.name()))
        .collect()
}

/// An alarm response as JSON (etcd's field names; the alarm as its number, as etcdctl does).
pub fn json_alarms(response: &crate::alarm::AlarmResponse) -> Value {
    let alarms: Vec<Value> = response
        .alarms
        .iter()
        .map(|m| json!({"memberID": m.member_id, "alarm": m.alarm as u32}))
        .collect();
    let mut map = Map::new();
    map.insert("header".into(), json_header(&response.header));
    if !alarms.is_empty() {
        map.insert("alarms".into(), Value::Array(alarms));
    }
    Value::Object(map)
}

/// A status response as JSON (etcdctl prints a list of endpoint statuses).
pub fn json_status(endpoint: &str, status: &StatusResponse) -> Value {
    json!([{
        "Endpoint": endpoint,
        "Status": {
            "header": json_header(&status.header),
            "version": status.version,
            "dbSize": status.db_size,
            "leader": status.leader,
            "raftIndex": status.raft_index,
            "raftTerm": status.raft_term,
            "raftAppliedIndex": status.raft_applied_index,
            "isLearner": status.is_learner,
        }
    }])
}

/// One endpoint's entry in `endpoint hashkv -w json`'s list.
pub fn json_hash_kv(
    endpoint: &str,
    header: &ResponseHeader,
    hash: u32,
    compact_revision: i64,
    hash_revision: i64,
) -> Value {
    json!({
        "Endpoint": endpoint,
        "HashKV": {
            "header": json_header(header),
            "hash": hash,
            "compact_revision": compact_revision,
            "hash_revision": hash_revision,
        }
    })
}

/// `endpoint hashkv -w table` of several endpoints.
pub fn table_hash_kv(rows: &[(String, u32, i64, i64)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(endpoint, hash, hash_revision, compact_revision)| {
            vec![
                endpoint.clone(),
                hash.to_string(),
                hash_revision.to_string(),
                compact_revision.to_string(),
            ]
        })
        .collect();
    table(
        &["ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION"],
        &rows,
    )
}

/// `endpoint hashkv` in etcdctl's forms.
pub fn hash_kv(
    endpoint: &str,
    header: &ResponseHeader,
    hash: u32,
    compact_revision: i64,
    hash_revision: i64,
    as_json: bool,
    as_table: bool,
) -> String {
    if as_json {
        return json!([json_hash_kv(
            endpoint,
            header,
            hash,
            compact_revision,
            hash_revision
        )])
        .to_string()
            + "\n";
    }
    if as_table {
        return table(
            &["ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION"],
            &[vec![
                endpoint.to_string(),
                hash.to_string(),
                hash_revision.to_string(),
                compact_revision.to_string(),
            ]],
        );
    }
    format!("{endpoint}, {hash}\n")
}

/// `perf`: where the member's commits spend their time, one stage per line, in microseconds.
pub fn simple_perf(endpoint: &str, status: &StatusResponse) -> String {
    let role = if status.leader == status.header.member_id {
        "leader"
    } else {
        "follower"
    };
    let mut out = format!(
        "{endpoint} (member {:x}, {role}, term {}, applied index {})\n",
        status.header.member_id, status.raft_term, status.raft_applied_index
    );
    let _ = writeln!(
        out,
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "stage", "count", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    let micros = |nanos: u64| format!("{:.1}", nanos as f64 / 1000.0);
    for stage in &status.stages {
        let _ = writeln!(
            out,
            "{:<36} {:>10} {:>10} {:>10} {:>10} {:>10}",
            stage.name,
            stage.count,
            micros(stage.p50_ns),
            micros(stage.p99_ns),
            micros(stage.p999_ns),
            micros(stage.max_ns),
        );
    }
    out
}

/// `perf -w json`.
pub fn json_perf(endpoint: &str, status: &StatusResponse) -> Value {
    let stages: Vec<Value> = status
        .stages
        .iter()
        .map(|stage| {
            json!({
                "name": stage.name,
                "count": stage.count,
                "p50Ns": stage.p50_ns,
                "p99Ns": stage.p99_ns,
                "p999Ns": stage.p999_ns,
                "maxNs": stage.max_ns,
            })
        })
        .collect();
    json!([{
        "Endpoint": endpoint,
        "memberId": status.header.member_id,
        "leader": status.leader,
        "raftTerm": status.raft_term,
        "stages": stages,
    }])
}

/// `snapshot status` as etcdctl prints it: hash, revision, keys, size.
pub fn simple_snapshot_status(status: &crate::restore::SnapshotStatus) -> String {
    format!(
        "{:x}, {}, {}, {}\n",
        status.hash,
        status.revision,
        status.total_keys,
        human_bytes(status.total_size)
    )
}

/// `snapshot status -w table`.
pub fn table_snapshot_status(status: &crate::restore::SnapshotStatus) -> String {
    table(
        &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
        &[vec![
            format!("{:x}", status.hash),
            status.revision.to_string(),
            status.total_keys.to_string(),
            human_bytes(status.total_size),
        ]],
    )
}

/// `snapshot status -w json`, with etcdctl's field names.
pub fn json_snapshot_status(status: &crate::restore::SnapshotStatus) -> Value {
    serde_json::json!({
        "hash": status.hash,
        "revision": status.revision,
        "totalKey": status.total_keys,
        "totalSize": status.total_size,
    })
}
