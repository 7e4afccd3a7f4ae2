//! etcdctl's output formats for lodectl: `simple` (etcdctl's default text) and `json`
//! (protobuf JSON as etcdctl prints it: snake_case fields, base64 bytes, zero values omitted).
//!
//! This file holds the key-value, member and lease outputs and what the formats share; the
//! maintenance outputs (alarms, status, hashkv, check perf, snapshot status) are in
//! `maintenance`, endpoint health in `health`, and etcdctl's `fields` format in `fields`.

mod fields;
mod health;
mod maintenance;

use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use bytes::Bytes;

use crate::api::native::StatusResponse;
use crate::lease::LeaseOutcome;
use crate::members::Member;
use crate::mvcc::kv::KeyValue;
use crate::mvcc::request::*;

pub use fields::*;
pub use health::*;
pub use maintenance::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Bytes as etcdctl's `--hex` prints them: `\x` before each byte's two hex digits.
pub fn hex_escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for byte in bytes {
        let _ = write!(out, "\\x{byte:02x}");
    }
    out
}

/// Bytes in simple output: as text, or hex-escaped with `--hex`.
pub fn simple_bytes(bytes: &[u8], hex: bool) -> String {
    if hex {
        hex_escaped(bytes)
    } else {
        text(bytes)
    }
}

fn simple_kv(out: &mut String, kv: &KeyValue, keys_only: bool, hex: bool) {
    let _ = writeln!(out, "{}", simple_bytes(&kv.key, hex));
    if !keys_only {
        let _ = writeln!(out, "{}", simple_bytes(&kv.value, hex));
    }
}

/// `get` in simple format (`hex`: etcdctl's `--hex`).
pub fn simple_range(response: &RangeResponse, request: &RangeRequest, hex: bool) -> String {
    let mut out = String::new();
    if request.count_only {
        let _ = writeln!(out, "{}", response.count);
        return out;
    }
    for kv in &response.kvs {
        simple_kv(&mut out, kv, request.keys_only, hex);
    }
    out
}

/// `put` in simple format.
pub fn simple_put(response: &PutResponse, hex: bool) -> String {
    let mut out = String::from("OK\n");
    if let Some(kv) = &response.prev_kv {
        simple_kv(&mut out, kv, false, hex);
    }
    out
}

/// `del` in simple format.
pub fn simple_delete(response: &DeleteRangeResponse, hex: bool) -> String {
    let mut out = format!("{}\n", response.deleted);
    for kv in &response.prev_kvs {
        simple_kv(&mut out, kv, false, hex);
    }
    out
}

/// `txn` in simple format.
pub fn simple_txn(response: &TxnResponse, hex: bool) -> String {
    let mut out = String::from(if response.succeeded {
        "SUCCESS\n"
    } else {
        "FAILURE\n"
    });
    for op in &response.responses {
        out.push('\n');
        match op {
            ResponseOp::Range(r) => {
                for kv in &r.kvs {
                    simple_kv(&mut out, kv, false, hex);
                }
            }
            ResponseOp::Put(r) => out.push_str(&simple_put(r, hex)),
            ResponseOp::DeleteRange(r) => out.push_str(&simple_delete(r, hex)),
            ResponseOp::Txn(r) => out.push_str(&simple_txn(r, hex)),
        }
    }
    out
}

/// A size as etcdctl prints one (go-humanize's SI form: "66 B", "20 kB", "1.5 MB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = ((bytes as f64 / 1000f64.powi(exponent as i32)) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

/// `endpoint status` in simple format (etcdctl's column order).
pub fn simple_status(endpoint: &str, status: &StatusResponse) -> String {
    format!(
        "{endpoint}, {:x}, {}, {}, {}, {}, {}, {}, {}\n",
        status.header.member_id,
        status.version,
        human_bytes(status.db_size.max(0) as u64),
        status.leader == status.header.member_id,
        status.is_learner,
        status.raft_term,
        status.raft_index,
        status.raft_applied_index,
    )
}

/// `endpoint status` as a table.
pub fn table_status(endpoint: &str, status: &StatusResponse) -> String {
    table_statuses(&[(endpoint.to_string(), status.clone())])
}

/// `endpoint status` of several endpoints as one table, a row each.
pub fn table_statuses(statuses: &[(String, StatusResponse)]) -> String {
    let headers = [
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
        "RAFT APPLIED INDEX",
    ];
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|(endpoint, status)| {
            vec![
                endpoint.to_string(),
                format!("{:x}", status.header.member_id),
                status.version.clone(),
                human_bytes(status.db_size.max(0) as u64),
                (status.leader == status.header.member_id).to_string(),
                status.is_learner.to_string(),
                status.raft_term.to_string(),
                status.raft_index.to_string(),
                status.raft_applied_index.to_string(),
            ]
        })
        .collect();
    table(&headers, &rows)
}

/// etcdctl's table (tablewriter as etcdctl sets it up): a bordered header row, centred, and
/// rows aligned right.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String], centred: bool| {
        let mut out = String::from("|");
        for (cell, width) in cells.iter().zip(&widths) {
            if centred {
                let _ = write!(out, " {cell:^width$} |");
            } else {
                let _ = write!(out, " {cell:>width$} |");
            }
        }
        out.push('\n');
        out
    };
    let border = {
        let mut out = String::from("+");
        for width in &widths {
            let _ = write!(out, "{}+", "-".repeat(width + 2));
        }
        out.push('\n');
        out
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = format!("{border}{}{border}", line(&header, true));
    for row in rows {
        out.push_str(&line(row, false));
    }
    out.push_str(&border);
    out
}

fn member_row(member: &Member) -> Vec<String> {
    let status = if member.name.is_empty() {
        "unstarted"
    } else {
        "started"
    };
    vec![
        format!("{:x}", member.id),
        status.to_string(),
        member.name.clone(),
        member.peer_urls.join(","),
        member.client_urls.join(","),
        member.is_learner.to_string(),
    ]
}

/// `member list`, etcdctl's simple form: one member per line.
pub fn simple_members(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| member_row(member).join(", ") + "\n")
        .collect()
}

/// `member list -w table`.
pub fn table_members(members: &[Member]) -> String {
    let rows: Vec<Vec<String>> = members.iter().map(member_row).collect();
    table(
        &[
            "ID",
            "STATUS",
            "NAME",
            "PEER ADDRS",
            "CLIENT ADDRS",
            "IS LEARNER",
        ],
        &rows,
    )
}

fn json_member(member: &Member) -> Value {
    let mut map = Map::new();
    map.insert("ID".into(), json!(member.id.get()));
    if !member.name.is_empty() {
        map.insert("name".into(), json!(member.name));
    }
    map.insert("peerURLs".into(), json!(member.peer_urls));
    if !member.client_urls.is_empty() {
        map.insert("clientURLs".into(), json!(member.client_urls));
    }
    if member.is_learner {
        map.insert("isLearner".into(), json!(true));
    }
    Value::Object(map)
}

/// A member response as etcdctl's `-w json` prints it.
pub fn json_members(header: &ResponseHeader, member: Option<&Member>, members: &[Member]) -> Value {
    let mut map = Map::new();
    map.insert("header".into(), json_header(header));
    if let Some(member) = member {
        map.insert("member".into(), json_member(member));
    }
    map.insert(
        "members".into(),
        Value::Array(members.iter().map(json_member).collect()),
    );
    Value::Object(map)
}

/// `member add`'s answer: the member and the settings to start it with, as etcdctl prints them.
pub fn member_added(name: &str, cluster_id: u64, added: &Member, members: &[Member]) -> String {
    let mut cluster = Vec::new();
    for member in members {
        let member_name = if member.id == added.id {
            name
        } else {
            &member.name
        };
        for url in &member.peer_urls {
            cluster.push(format!("{member_name}={url}"));
        }
    }
    format!(
        "Member {:16x} added to cluster {:16x}\n\nETCD_NAME=\"{name}\"\nETCD_INITIAL_CLUSTER=\"{}\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
        added.id,
        cluster_id,
        cluster.join(","),
        added.peer_urls.join(","),
    )
}

fn put_nonzero(map: &mut Map<String, Value>, name: &str, value: i64) {
    if value != 0 {
        map.insert(name.into(), json!(value));
    }
}

fn base64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn json_header(header: &ResponseHeader) -> Value {
    json!({
        "cluster_id": header.cluster_id,
        "member_id": header.member_id,
        "revision": header.revision,
        "raft_term": header.raft_term,
    })
}

fn json_kv(kv: &KeyValue) -> Value {
    let mut map = Map::new();
    map.insert("key".into(), base64(&kv.key));
    put_nonzero(&mut map, "create_revision", kv.create_revision);
    put_nonzero(&mut map, "mod_revision", kv.mod_revision);
    put_nonzero(&mut map, "version", kv.version);
    if !kv.value.is_empty() {
        map.insert("value".into(), base64(&kv.value));
    }
    put_nonzero(&mut map, "lease", kv.lease);
    Value::Object(map)
}

/// A range response as JSON.
pub fn json_range(response: &RangeResponse) -> Value {
    let mut map = Map::new();
    map.insert("header".into(), json_header(&response.header));
    if !response.kvs.is_empty() {
        map.insert(
            "kvs".into(),
            Value::Array(response.kvs.iter().map(json_kv).collect()),
        );
    }
    if response.more {
        map.insert("more".into(), json!(true));
    }
    put_nonzero(&mut map, "count", response.count);
    Value::Object(map)
}

/// A write response as JSON.
pub fn json_write(response: &WriteResponse) -> Value {
    match response {
        WriteResponse::Put(r) => {
            let mut map = Map::new();
            map.insert("header".into(), json_header(&r.header));
            if let Some(kv) = &r.prev_kv {
                map.insert("prev_kv".into(), json_kv(kv));
            }
            Value::Object(map)
        }
        WriteResponse::DeleteRange(r) => {
            let mut map = Map::new();
            map.insert("header".into(), json_header(&r.header));
            put_nonzero(&mut map, "deleted", r.deleted);
            if !r.prev_kvs.is_empty() {
                map.insert(
                    "prev_kvs".into(),
                    Value::Array(r.prev_kvs.iter().map(json_kv).collect()),
                );
            }
            Value::Object(map)
        }
        WriteResponse::Txn(r) => json_txn(r),
        WriteResponse::Compact(r) => json!({ "header": json_header(&r.header) }),
        WriteResponse::Lease(r) => match &r.outcome {
            LeaseOutcome::Granted { id, ttl } => {
                let mut map = flat_header(&r.header);
                map.insert("ID".into(), json!(id));
                map.insert("TTL".into(), json!(ttl));
                map.insert("Error".into(), json!(""));
                Value::Object(map)
            }
            LeaseOutcome::Revoked => json!({ "header": json_header(&r.header) }),
            LeaseOutcome::Renewed { ttls } => {
                json!({ "header": json_header(&r.header), "ttls": ttls })
            }
            LeaseOutcome::Expired { ids } => {
                json!({ "header": json_header(&r.header), "ids": ids })
            }
        },
    }
}

/// A header's fields at the top level, as etcdctl prints the lease responses of its client
/// library (which embed the header).
fn flat_header(header: &ResponseHeader) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in [
        ("cluster_id", header.cluster_id),
        ("member_id", header.member_id),
        ("raft_term", header.raft_term),
    ] {
        if value != 0 {
            map.insert(name.into(), json!(value));
        }
    }
    if header.revision != 0 {
        map.insert("revision".into(), json!(header.revision));
    }
    map
}

/// etcdctl's line for a granted lease.
pub fn simple_lease_granted(id: i64, ttl: i64) -> String {
    format!("lease {id:016x} granted with TTL({ttl}s)\n")
}

/// etcdctl's line for a revoked lease.
pub fn simple_lease_revoked(id: i64) -> String {
    format!("lease {id:016x} revoked\n")
}

/// etcdctl's line for a keep-alive answer.
pub fn simple_keep_alive(id: i64, ttl: i64) -> String {
    format!("lease {id:016x} keepalived with TTL({ttl})\n")
}

/// etcdctl's JSON for a keep-alive answer.
pub fn json_keep_alive(header: &ResponseHeader, id: i64, ttl: i64) -> Value {
    let mut map = flat_header(header);
    map.insert("ID".into(), json!(id));
    map.insert("TTL".into(), json!(ttl));
    Value::Object(map)
}

/// etcdctl's line for a lease's time to live (`keys`: list them).
pub fn simple_time_to_live(id: i64, ttl: i64, granted_ttl: i64, keys: Option<&[Bytes]>) -> String {
    if granted_ttl == 0 && ttl == -1 {
        return format!("lease {id:016x} already expired\n");
    }
    let mut line = format!("lease {id:016x} granted with TTL({granted_ttl}s), remaining({ttl}s)");
    if let Some(keys) = keys {
        let names: Vec<String> = keys.iter().map(|key| text(key)).collect();
        line.push_str(&format!(", attached keys([{}])", names.join(" ")));
    }
    line.push('\n');
    line
}

/// etcdctl's JSON for a lease's time to live.
pub fn json_time_to_live(
    header: &ResponseHeader,
    id: i64,
    ttl: i64,
    granted_ttl: i64,
    keys: &[Bytes],
) -> Value {
    let mut map = flat_header(header);
    map.insert("id".into(), json!(id));
    map.insert("ttl".into(), json!(ttl));
    map.insert("granted-ttl".into(), json!(granted_ttl));
    map.insert(
        "keys".into(),
        if keys.is_empty() {
            Value::Null
        } else {
            Value::Array(keys.iter().map(|key| base64(key)).collect())
        },
    );
    Value::Object(map)
}

/// etcdctl's listing of leases.
pub fn simple_leases(ids: &[i64]) -> String {
    let mut out = format!("found {} leases\n", ids.len());
    for id in ids {
        out.push_str(&format!("{id:016x}\n"));
    }
    out
}

/// etcdctl's JSON listing of leases.
pub fn json_leases(header: &ResponseHeader, ids: &[i64]) -> Value {
    let mut map = flat_header(header);
    map.insert(
        "leases".into(),
        Value::Array(ids.iter().map(|id| json!({ "id": id })).collect()),
    );
    Value::Object(map)
}

fn json_txn(r: &TxnResponse) -> Value {
    let mut map = Map::new();
    map.insert("header".into(), json_header(&r.header));
    if r.succeeded {
        map.insert("succeeded".into(), json!(true));
    }
    let ops: Vec<Value> = r
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::Range(x) => json!({ "Response": { "response_range": json_range(x) } }),
            ResponseOp::Put(x) => json!({ "Response": { "response_put": json_write(&WriteResponse::Put(x.clone())) } }),
            ResponseOp::DeleteRange(x) => json!({
                "Response": { "response_delete_range": json_write(&WriteResponse::DeleteRange(x.clone())) }
            }),
            ResponseOp::Txn(x) => json!({ "Response": { "response_txn": json_txn(x) } }),
        })
        .collect();
    if !ops.is_empty() {
        map.insert("responses".into(), Value::Array(ops));
    }
    Value::Object(map)
}

/// A watch response as etcdctl prints one: for each event its type, the previous pair (when
/// asked for) and the pair, a line each for key and value.
pub fn simple_watch(response: &crate::watch::stream::WatchResponse, hex: bool) -> String {
    let mut out = String::new();
    for event in &response.events {
        out.push_str(match event.kind {
            crate::watch::EventKind::Put => "PUT\n",
            crate::watch::EventKind::Delete => "DELETE\n",
        });
        for kv in event.prev_kv.iter().chain(std::iter::once(&event.kv)) {
            simple_kv(&mut out, kv, false, hex);
        }
    }
    out
}

/// A watch response as etcdctl's `-w json` prints one (Go's field names for the response,
/// protobuf's for the header and events, zero fields left out as etcd leaves them).
pub fn json_watch(
    header: &ResponseHeader,
    response: &crate::watch::stream::WatchResponse,
) -> Value {
    let events: Vec<Value> = response
        .events
        .iter()
        .map(|event| {
            let mut map = Map::new();
            if event.kind == crate::watch::EventKind::Delete {
                map.insert("type".into(), json!(1));
            }
            map.insert("kv".into(), json_kv(&event.kv));
            if let Some(prev) = &event.prev_kv {
                map.insert("prev_kv".into(), json_kv(prev));
            }
            Value::Object(map)
        })
        .collect();
    json!({
        "Header": json_header(header),
        "Events": events,
        "CompactRevision": response.compact_revision,
        "Canceled": response.canceled,
        "Created": response.created,
    })
}

#[cfg(test)]
mod tests {
    use super::{go_quote, hex_escaped, human_bytes};

    #[test]
    fn bytes_quote_and_hex_like_etcdctl() {
        assert_eq!(go_quote(b"foo"), "\"foo\"");
        assert_eq!(
            go_quote(b"a\"b\\c\n\x00\xff"),
            "\"a\\\"b\\\\c\\n\\x00\\xff\""
        );
        assert_eq!(go_quote("é".as_bytes()), "\"é\"");
        assert_eq!(hex_escaped(b"fo"), "\\x66\\x6f");
    }

    #[test]
    fn sizes_print_like_etcdctl() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(66), "66 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(2 << 30), "2.1 GB");
    }
}
