//! etcdctl's `fields` output format (`-w fields`): one `"Name" : value` line per field, with
//! Go's quoting.

use super::*;

/// A string as Go's `%q` (`strconv.Quote`) writes it: in double quotes, `"` and `\` escaped,
/// `\n`-style escapes for the usual control characters, `\xNN` for other control bytes and
/// bytes that are not UTF-8, `\uNNNN` for other non-printable characters.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

fn fields_header(out: &mut String, header: &ResponseHeader) {
    let _ = writeln!(out, "\"ClusterID\" : {}", header.cluster_id);
    let _ = writeln!(out, "\"MemberID\" : {}", header.member_id);
    let _ = writeln!(out, "\"Revision\" : {}", header.revision);
    let _ = writeln!(out, "\"RaftTerm\" : {}", header.raft_term);
}

fn fields_kv(out: &mut String, prefix: &str, kv: &KeyValue) {
    let _ = writeln!(out, "\"{prefix}Key\" : {}", go_quote(&kv.key));
    let _ = writeln!(out, "\"{prefix}CreateRevision\" : {}", kv.create_revision);
    let _ = writeln!(out, "\"{prefix}ModRevision\" : {}", kv.mod_revision);
    let _ = writeln!(out, "\"{prefix}Version\" : {}", kv.version);
    let _ = writeln!(out, "\"{prefix}Value\" : {}", go_quote(&kv.value));
    let _ = writeln!(out, "\"{prefix}Lease\" : {}", kv.lease);
}

/// `get -w fields`: etcdctl's `"Name" : value` lines, the header first.
pub fn fields_range(response: &RangeResponse) -> String {
    let mut out = String::new();
    fields_range_into(&mut out, response);
    out
}

fn fields_range_into(out: &mut String, response: &RangeResponse) {
    fields_header(out, &response.header);
    for kv in &response.kvs {
        fields_kv(out, "", kv);
    }
    let _ = writeln!(out, "\"More\" : {}", response.more);
    let _ = writeln!(out, "\"Count\" : {}", response.count);
}

fn fields_put_into(out: &mut String, response: &PutResponse) {
    fields_header(out, &response.header);
    if let Some(kv) = &response.prev_kv {
        fields_kv(out, "Prev", kv);
    }
}

fn fields_delete_into(out: &mut String, response: &DeleteRangeResponse) {
    fields_header(out, &response.header);
    let _ = writeln!(out, "\"Deleted\" : {}", response.deleted);
    for kv in &response.prev_kvs {
        fields_kv(out, "Prev", kv);
    }
}

fn fields_txn_into(out: &mut String, response: &TxnResponse) {
    fields_header(out, &response.header);
    let _ = writeln!(out, "\"Succeeded\" : {}", response.succeeded);
    for op in &response.responses {
        match op {
            ResponseOp::Range(r) => fields_range_into(out, r),
            ResponseOp::Put(r) => fields_put_into(out, r),
            ResponseOp::DeleteRange(r) => fields_delete_into(out, r),
            // etcdctl's printer knows no nested txn answer.
            ResponseOp::Txn(r) => {
                let _ = writeln!(
                    out,
                    "\"Unknown\" : {}",
                    go_quote(format!("{r:?}").as_bytes())
                );
            }
        }
    }
}

/// A write's answer (put, del, txn, lease grant or revoke) with `-w fields`; `None` for the
/// answers etcdctl prints no fields for.
pub fn fields_write(response: &WriteResponse) -> Option<String> {
    let mut out = String::new();
    match response {
        WriteResponse::Put(r) => fields_put_into(&mut out, r),
        WriteResponse::DeleteRange(r) => fields_delete_into(&mut out, r),
        WriteResponse::Txn(r) => fields_txn_into(&mut out, r),
        WriteResponse::Lease(r) => match &r.outcome {
            LeaseOutcome::Granted { id, ttl } => {
                fields_header(&mut out, &r.header);
                let _ = writeln!(out, "\"ID\" : {id}");
                let _ = writeln!(out, "\"TTL\" : {ttl}");
            }
            LeaseOutcome::Revoked => fields_header(&mut out, &r.header),
            LeaseOutcome::Renewed { .. } | LeaseOutcome::Expired { .. } => return None,
        },
        WriteResponse::Compact(_) => return None,
    }
    Some(out)
}

/// `lease keep-alive -w fields`.
pub fn fields_keep_alive(header: &ResponseHeader, id: i64, ttl: i64) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    let _ = writeln!(out, "\"ID\" : {id}");
    let _ = writeln!(out, "\"TTL\" : {ttl}");
    out
}

/// `lease timetolive -w fields`.
pub fn fields_time_to_live(
    header: &ResponseHeader,
    id: i64,
    ttl: i64,
    granted_ttl: i64,
    keys: &[Bytes],
) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    let _ = writeln!(out, "\"ID\" : {id}");
    let _ = writeln!(out, "\"TTL\" : {ttl}");
    let _ = writeln!(out, "\"GrantedTTL\" : {granted_ttl}");
    for key in keys {
        let _ = writeln!(out, "\"Key\" : {}", go_quote(key));
    }
    out
}

/// `lease list -w fields`.
pub fn fields_leases(header: &ResponseHeader, ids: &[i64]) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    for id in ids {
        let _ = writeln!(out, "\"ID\" : {id}");
    }
    out
}

/// `member list -w fields`: the header, then each member and a blank line.
pub fn fields_members(header: &ResponseHeader, members: &[Member]) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    for member in members {
        let _ = writeln!(out, "\"ID\" : {}", member.id.get());
        let _ = writeln!(out, "\"Name\" : {}", go_quote(member.name.as_bytes()));
        for url in &member.peer_urls {
            let _ = writeln!(out, "\"PeerURL\" : {}", go_quote(url.as_bytes()));
        }
        for url in &member.client_urls {
            let _ = writeln!(out, "\"ClientURL\" : {}", go_quote(url.as_bytes()));
        }
        let _ = writeln!(out, "\"IsLearner\" : {}", member.is_learner);
        out.push('\n');
    }
    out
}

/// `endpoint status -w fields` for one endpoint.
pub fn fields_status(endpoint: &str, status: &StatusResponse) -> String {
    let mut out = String::new();
    fields_header(&mut out, &status.header);
    let _ = writeln!(out, "\"Version\" : {}", go_quote(status.version.as_bytes()));
    let _ = writeln!(out, "\"DBSize\" : {}", status.db_size);
    let _ = writeln!(out, "\"Leader\" : {}", status.leader);
    let _ = writeln!(out, "\"IsLearner\" : {}", status.is_learner);
    let _ = writeln!(out, "\"RaftIndex\" : {}", status.raft_index);
    let _ = writeln!(out, "\"RaftTerm\" : {}", status.raft_term);
    let _ = writeln!(out, "\"RaftAppliedIndex\" : {}", status.raft_applied_index);
    let _ = writeln!(out, "\"Errors\" : []");
    let _ = writeln!(out, "\"Endpoint\" : {}", go_quote(endpoint.as_bytes()));
    out.push('\n');
    out
}

/// `endpoint hashkv -w fields` for one endpoint.
pub fn fields_hash_kv(endpoint: &str, header: &ResponseHeader, hash: u32) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    let _ = writeln!(out, "\"Endpoint\" : {}", go_quote(endpoint.as_bytes()));
    let _ = writeln!(out, "\"Hash\" : {hash}\n");
    out
}

/// `alarm list -w fields`.
pub fn fields_alarms(response: &crate::alarm::AlarmResponse) -> String {
    let mut out = String::new();
    fields_header(&mut out, &response.header);
    for member in &response.alarms {
        let _ = writeln!(out, "\"MemberID\" : {}", member.member_id);
        let _ = writeln!(out, "\"AlarmType\" : {}\n", member.alarm.name());
    }
    out
}

/// A watch response with `-w fields`.
pub fn fields_watch(
    header: &ResponseHeader,
    response: &crate::watch::stream::WatchResponse,
) -> String {
    let mut out = String::new();
    fields_header(&mut out, header);
    for event in &response.events {
        let kind = match event.kind {
            crate::watch::EventKind::Put => "PUT",
            crate::watch::EventKind::Delete => "DELETE",
        };
        let _ = writeln!(out, "\"Type\" : {kind}");
        if let Some(prev) = &event.prev_kv {
            fields_kv(&mut out, "Prev", prev);
        }
        fields_kv(&mut out, "", &event.kv);
    }
    out
}
