//! HTTP/1 on a real `lode`'s client URL, as etcd serves it: `/health`, `/livez`, `/readyz`,
//! `/version` and the JSON gateway, with bad requests answered clearly and changing nothing.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{cluster, wait_for_leader};
use common::server::{http, DataDir, Lode};
use common::{base64, json};

#[test]
fn health_version_and_probes_answer_as_etcd() {
    let dir = DataDir::new("http-health");
    let lode = Lode::start(&dir.0, &[]);
    let url = &lode.client_url;

    let (status, body) = http(url, "GET", "/health", "");
    assert_eq!(
        (status, json(&body)),
        (200, serde_json::json!({"health": "true", "reason": ""}))
    );
    let (status, _) = http(url, "GET", "/health?serializable=true", "");
    assert_eq!(status, 200);
    let (status, body) = http(url, "GET", "/version", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["etcdserver"], "3.5.0");
    assert_eq!(json(&body)["etcdcluster"], "3.5.0");
    assert_eq!(http(url, "GET", "/livez", ""), (200, "ok\n".to_string()));
    let (status, body) = http(url, "GET", "/readyz?verbose", "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "[+]serializable_read ok\n[+]data_corruption ok\n[+]linearizable_read ok\nok\n"
    );

    // A raised NOSPACE alarm makes the member unhealthy unless excluded.
    let (status, _) = http(
        url,
        "POST",
        "/v3/maintenance/alarm",
        r#"{"action":"ACTIVATE","memberID":"0","alarm":"NOSPACE"}"#,
    );
    assert_eq!(status, 200);
    let (status, body) = http(url, "GET", "/health", "");
    assert_eq!(
        (status, json(&body)),
        (
            503,
            serde_json::json!({"health": "false", "reason": "ALARM NOSPACE"})
        )
    );
    let (status, _) = http(url, "GET", "/health?exclude=NOSPACE", "");
    assert_eq!(status, 200);
    let (status, _) = http(
        url,
        "POST",
        "/v3/maintenance/alarm",
        r#"{"action":"DEACTIVATE","memberID":"0","alarm":"NOSPACE"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(http(url, "GET", "/health", "").0, 200);

    // Wrong methods and unknown paths.
    assert_eq!(http(url, "POST", "/health", "").0, 405);
    assert_eq!(http(url, "GET", "/nowhere", "").0, 404);
}

#[test]
fn the_json_gateway_serves_kv_cluster_and_maintenance_calls() {
    let dir = DataDir::new("http-gateway");
    let lode = Lode::start(&dir.0, &[]);
    let url = &lode.client_url;
    let call = |path: &str, body: &str| {
        let (status, answer) = http(url, "POST", path, body);
        assert_eq!(status, 200, "{path}: {answer}");
        json(&answer)
    };

    let put = call(
        "/v3/kv/put",
        &format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            base64("foo"),
            base64("bar")
        ),
    );
    // int64 fields are strings in proto3's JSON mapping, as etcd's gateway writes them.
    assert_eq!(put["header"]["revision"], "2");
    let range = call("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, base64("foo")));
    assert_eq!(range["count"], "1");
    assert_eq!(range["kvs"][0]["key"], base64("foo"));
    assert_eq!(range["kvs"][0]["value"], base64("bar"));
    assert_eq!(range["kvs"][0]["create_revision"], "2");

    let txn = call(
        "/v3/kv/txn",
        &format!(
            r#"{{"compare":[{{"key":"{k}","result":"EQUAL","target":"VALUE","value":"{v}"}}],
                "success":[{{"request_put":{{"key":"{k}","value":"{w}"}}}}],
                "failure":[{{"request_range":{{"key":"{k}"}}}}]}}"#,
            k = base64("foo"),
            v = base64("bar"),
            w = base64("baz")
        ),
    );
    assert_eq!(txn["succeeded"], true);
    assert_eq!(
        txn["responses"][0]["response_put"]["header"]["revision"],
        "3"
    );
    let deleted = call(
        "/v3/kv/deleterange",
        &format!(r#"{{"key":"{}","prev_kv":true}}"#, base64("foo")),
    );
    assert_eq!(deleted["deleted"], "1");
    assert_eq!(deleted["prev_kvs"][0]["value"], base64("baz"));
    call("/v3/kv/compaction", r#"{"revision":"3"}"#);

    let status = call("/v3/maintenance/status", "{}");
    assert_eq!(status["version"], "3.5.0");
    // etcd's default quota (2 GiB), an int64 as a JSON string.
    assert_eq!(status["dbSizeQuota"], "2147483648");
    // The Snapshot stream, as grpc-gateway streams: one {"result": piece} per line, the
    // pieces making an etcd-shaped download that lodectl checks whole.
    let (code, answer) = http(url, "POST", "/v3/maintenance/snapshot", "{}");
    assert_eq!(code, 200, "{answer}");
    let mut download = Vec::new();
    let mut pieces = 0;
    for line in answer.lines().filter(|line| !line.trim().is_empty()) {
        use base64::Engine;
        let piece = json(line);
        let blob = piece["result"]["blob"]
            .as_str()
            .expect("a blob in every piece");
        download.extend(
            base64::engine::general_purpose::STANDARD
                .decode(blob)
                .expect("base64"),
        );
        pieces += 1;
    }
    assert!(pieces >= 1);
    let saved = dir.0.with_extension("gateway.snap");
    std::fs::write(&saved, &download).expect("write the download");
    let described = lode.ctl(&["snapshot", "status", saved.to_str().unwrap(), "-w", "json"]);
    assert!(described.status.success(), "{described:?}");
    assert_eq!(
        json(&String::from_utf8_lossy(&described.stdout))["revision"],
        4
    );
    let _ = std::fs::remove_file(&saved);
    let (code, answer) = http(url, "POST", "/v3/maintenance/snapshot", "{\"nope\":1}");
    assert_eq!(code, 400, "{answer}");

    let members = call("/v3/cluster/member/list", "{}");
    assert_eq!(members["members"][0]["name"], "default");
    let auth = call("/v3/auth/status", "");
    assert_eq!(auth.get("enabled"), None, "false is left out");

    // Bad requests: etcd's error for etcd's checks, a clear reason for undecodable bodies;
    // nothing changes.
    let (status, body) = http(url, "POST", "/v3/kv/put", r#"{"key":"","value":"eA=="}"#);
    assert_eq!(status, 400);
    let body = json(&body);
    assert_eq!(body["error"], "etcdserver: key is not provided");
    assert_eq!(body["code"], 3);
    for bad in [
        "garbage",
        r#"{"key":"Zm9v","bogus":1}"#,
        r#"{"key":"not base64!"}"#,
        r#"{"key":"Zm9v","sort_order":"SIDEWAYS"}"#,
        r#"{"key":"Zm9v","limit":"many"}"#,
    ] {
        let (status, body) = http(url, "POST", "/v3/kv/range", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            json(&body)["error"]
                .as_str()
                .unwrap()
                .contains("not a valid message"),
            "{body}"
        );
    }
    let (status, body) = http(
        url,
        "POST",
        "/v3/kv/range",
        r#"{"key":"Zm9v","revision":"2"}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(
        json(&body)["error"],
        "etcdserver: mvcc: required revision has been compacted"
    );
    let (status, _) = http(url, "POST", "/v3/nothing/here", "{}");
    assert_eq!(status, 501);
    let (_, body) = http(url, "POST", "/v3/maintenance/status", "{}");
    assert_eq!(json(&body)["header"]["revision"], "4");
}

#[test]
fn health_reports_a_lost_quorum() {
    let mut members = cluster("http-quorum");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let survivor = (leader + 1) % 3;
    let url = members[survivor].lode().client_url.clone();
    assert_eq!(http(&url, "GET", "/health", "").0, 200);
    for (i, member) in members.iter_mut().enumerate() {
        if i != survivor {
            if let Some(lode) = member.lode.as_mut() {
                lode.kill();
            }
        }
    }
    // The survivor loses its leader within a few election timeouts (check-quorum) and says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http(&url, "GET", "/health?serializable=true", "");
        if status == 503 {
            assert_eq!(
                json(&body),
                serde_json::json!({"health": "false", "reason": "RAFT NO LEADER"})
            );
            break;
        }
        assert!(Instant::now() < deadline, "still healthy: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = http(&url, "GET", "/readyz", "");
    assert_eq!(status, 503);
    assert!(body.contains("[-]linearizable_read failed"), "{body}");
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    assert_eq!(http(&url, "GET", "/livez", "").0, 200);
}

#[test]
fn the_gateway_streams_watches() {
    use std::io::{BufRead, BufReader, Write};
    let dir = DataDir::new("http-watch");
    let lode = Lode::start(&dir.0, &[]);
    let url = lode.client_url.clone();
    let address = url.trim_start_matches("http://").to_string();
    // As curl sends it: one create request as the whole body; the answer streams.
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let body = format!(r#"{{"create_request": {{"key":"{}"}}}}"#, base64("foo"));
    write!(
        stream,
        "POST /v3/watch HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut put_done = false;
    while lines.len() < 2 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        let line = line.trim();
        // Chunk sizes and headers are not JSON lines.
        if line.starts_with('{') {
            lines.push(json(line));
            if !put_done {
                let (status, _) = http(
                    &url,
                    "POST",
                    "/v3/kv/put",
                    &format!(
                        r#"{{"key":"{}","value":"{}"}}"#,
                        base64("foo"),
                        base64("bar")
                    ),
                );
                assert_eq!(status, 200);
                put_done = true;
            }
        }
    }
    assert_eq!(lines[0]["result"]["created"], true);
    let event = &lines[1]["result"]["events"][0];
    assert_eq!(event["kv"]["key"], base64("foo"));
    assert_eq!(event["kv"]["value"], base64("bar"));
    assert_eq!(event["kv"]["mod_revision"], "2");

    // A body that is no watch request ends the stream with the reason.
    let (status, answer) = http(&url, "POST", "/v3/watch", r#"{"create_request": 7}"#);
    assert_eq!(status, 200);
    let error = json(answer.lines().find(|l| l.starts_with('{')).expect("a line"));
    assert_eq!(error["error"]["grpc_code"], 3);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a valid message"));
}

#[test]
fn the_gateway_serves_leases() {
    let dir = DataDir::new("http-lease");
    let lode = Lode::start(&dir.0, &[]);
    let url = &lode.client_url;
    let call = |path: &str, body: &str| {
        let (status, answer) = http(url, "POST", path, body);
        assert_eq!(status, 200, "{path}: {answer}");
        json(&answer)
    };
    // int64 fields travel as JSON strings, as grpc-gateway writes them.
    let granted = call("/v3/lease/grant", r#"{"TTL": 60}"#);
    assert_eq!(granted["TTL"], "60");
    let id = granted["ID"].as_str().expect("an ID").to_string();
    call(
        "/v3/kv/put",
        &format!(
            r#"{{"key": "{}", "value": "", "lease": "{id}"}}"#,
            base64("k")
        ),
    );
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let alive = call(path, &format!(r#"{{"ID": "{id}", "keys": true}}"#));
        assert_eq!(alive["grantedTTL"], "60");
        assert_eq!(alive["keys"], serde_json::json!([base64("k")]));
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        assert_eq!(
            call(path, "{}")["leases"],
            serde_json::json!([{ "ID": id }])
        );
    }
    // The keep-alive stream answers each request of the body, one JSON line each.
    let (status, lines) = http(
        url,
        "POST",
        "/v3/lease/keepalive",
        &format!(r#"{{"ID": "{id}"}} {{"ID": "{id}"}}"#),
    );
    assert_eq!(status, 200);
    let answers: Vec<serde_json::Value> = lines.lines().map(json).collect();
    assert_eq!(answers.len(), 2, "{lines}");
    for answer in &answers {
        assert_eq!(answer["result"]["TTL"], "60", "{answer}");
    }
    call("/v3/kv/lease/revoke", &format!(r#"{{"ID": "{id}"}}"#));
    let (status, missing) = http(
        url,
        "POST",
        "/v3/lease/revoke",
        &format!(r#"{{"ID": "{id}"}}"#),
    );
    assert_eq!(status, 404, "{missing}");
    assert_eq!(
        json(&missing)["error"],
        "etcdserver: requested lease not found"
    );
    let gone = call("/v3/lease/timetolive", &format!(r#"{{"ID": "{id}"}}"#));
    assert_eq!(gone["TTL"], "-1");
    let (_, range) = http(
        url,
        "POST",
        "/v3/kv/range",
        &format!(r#"{{"key": "{}"}}"#, base64("k")),
    );
    assert!(json(&range)["kvs"].is_null(), "{range}");
}
