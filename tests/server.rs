//! A real single-node `lode` driven through `lodectl` and the native client: etcd's KV commands
//! end to end, restart and SIGKILL durability, bad input over the wire, bad flags.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::server::{failed, ok, DataDir, Lode};
use common::{on_executor, Rng};
use lode::api::native::{Request, Response};
use lode::client::{Client, ClientError};
use lode::mvcc::request::*;

#[test]
fn lodectl_speaks_etcds_kv_commands() {
    let dir = DataDir::new("server-kv");
    let lode = Lode::start(&dir.0, &[]);
    assert_eq!(ok(lode.ctl(&["put", "foo", "bar"])), "OK\n");
    // The client URL serves the same keyspace (etcdctl-style endpoint).
    let through_url = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["--endpoints", &lode.client_url, "get", "foo"])
        .output()
        .unwrap();
    assert_eq!(ok(through_url), "foo\nbar\n");
    assert_eq!(
        ok(lode.ctl(&["put", "foo", "baz", "--prev-kv"])),
        "OK\nfoo\nbar\n"
    );
    assert_eq!(ok(lode.ctl(&["put", "fob", "1"])), "OK\n");
    assert_eq!(ok(lode.ctl(&["get", "foo"])), "foo\nbaz\n");
    assert_eq!(
        ok(lode.ctl(&["get", "fo", "--prefix", "--keys-only"])),
        "fob\nfoo\n"
    );
    assert_eq!(
        ok(lode.ctl(&["get", "fo", "--prefix", "--count-only"])),
        "2\n"
    );
    assert_eq!(
        ok(lode.ctl(&[
            "get",
            "f",
            "--from-key",
            "--limit",
            "1",
            "--print-value-only"
        ])),
        "1\n"
    );
    assert_eq!(
        ok(lode.ctl(&[
            "get",
            "fo",
            "--prefix",
            "--sort-by",
            "VALUE",
            "--order",
            "DESCEND",
            "--keys-only"
        ])),
        "foo\nfob\n"
    );
    assert_eq!(ok(lode.ctl(&["get", "foo", "--rev", "2"])), "foo\nbar\n");
    assert_eq!(
        ok(lode.ctl(&["get", "foo", "--consistency", "s"])),
        "foo\nbaz\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["get", "foo", "-w", "json"]))).unwrap();
    assert_eq!(json["kvs"][0]["key"], "Zm9v");
    assert_eq!(json["kvs"][0]["version"], 2);
    assert_eq!(json["header"]["revision"], 4);
    assert_eq!(json["count"], 1);

    let txn = "mod(\"foo\") > \"0\"\n\nput foo \"from txn\"\nget foo\n\nput other x\n\n";
    assert_eq!(
        ok(lode.ctl_with_input(&["txn"], Some(txn))),
        "SUCCESS\n\nOK\n\nfoo\nfrom txn\n"
    );
    let txn = "val(\"foo\") = \"nope\"\n\nput a 1\n\ndel fob\n\n";
    assert_eq!(
        ok(lode.ctl_with_input(&["txn"], Some(txn))),
        "FAILURE\n\n1\n"
    );
    let error = failed(lode.ctl_with_input(&["txn"], Some("bad(\"x\") = \"1\"\n\n\n")));
    assert!(error.contains("malformed comparison"), "{error}");

    assert_eq!(
        ok(lode.ctl(&["del", "fo", "--prefix", "--prev-kv"])),
        "1\nfoo\nfrom txn\n"
    );
    assert_eq!(ok(lode.ctl(&["get", "fo", "--prefix"])), "");
    assert_eq!(ok(lode.ctl(&["compaction", "3"])), "compacted revision 3\n");
    assert_eq!(
        ok(lode.ctl(&["compaction", "5", "--physical"])),
        "compacted revision 5\n"
    );
    let error = failed(lode.ctl(&["compaction", "4"]));
    assert!(
        error.contains("required revision has been compacted"),
        "{error}"
    );
    let error = failed(lode.ctl(&["get", "foo", "--rev", "2"]));
    assert!(
        error.contains("etcdserver: mvcc: required revision has been compacted"),
        "{error}"
    );
    let error = failed(lode.ctl(&["get", "foo", "--rev", "99"]));
    assert!(
        error.contains("etcdserver: mvcc: required revision is a future revision"),
        "{error}"
    );
    let error = failed(lode.ctl(&["put", "k", "v", "--ignore-value"]));
    assert!(error.contains("put command needs 1 argument"), "{error}");
    let error = failed(lode.ctl(&["put", "missing", "--ignore-value"]));
    assert!(error.contains("etcdserver: key not found"), "{error}");
    let error = failed(lode.ctl(&["put", "k", "v", "--lease", "1f"]));
    assert!(
        error.contains("etcdserver: requested lease not found"),
        "{error}"
    );

    let status = ok(lode.ctl(&["endpoint", "status", "-w", "table"]));
    assert!(
        status.contains("IS LEADER") && status.contains("true"),
        "{status}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["endpoint", "status", "-w", "json"]))).unwrap();
    assert!(status[0]["Status"]["raftAppliedIndex"].as_u64().unwrap() > 0);
}

#[test]
fn writes_survive_restarts_and_sigkill() {
    let dir = DataDir::new("server-restart");
    let mut lode = Lode::start(&dir.0, &[]);
    for n in 0..20 {
        ok(lode.ctl(&["put", &format!("key{n:02}"), &format!("value{n}")]));
    }
    assert!(lode.terminate(), "SIGTERM ends lode cleanly");
    let mut lode = Lode::start(&dir.0, &[]);
    assert_eq!(
        ok(lode.ctl(&["get", "key", "--prefix", "--count-only"])),
        "20\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["get", "key07", "-w", "json"]))).unwrap();
    assert_eq!(
        json["kvs"][0]["mod_revision"], 9,
        "revisions survive a restart"
    );
    ok(lode.ctl(&["del", "key00"]));
    lode.kill();
    let lode = Lode::start(&dir.0, &[]);
    assert_eq!(
        ok(lode.ctl(&["get", "key", "--prefix", "--count-only"])),
        "19\n"
    );
    assert_eq!(ok(lode.ctl(&["put", "after", "x"])), "OK\n");
    let json: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["get", "after", "-w", "json"]))).unwrap();
    assert_eq!(json["kvs"][0]["mod_revision"], 23);
}

fn put(key: String, value: String) -> Request {
    Request::Write(WriteRequest::Put(PutRequest {
        key: Bytes::from(key),
        value: Bytes::from(value),
        ..Default::default()
    }))
}

/// Several clients write (single puts and two-key txns) while lode is killed with SIGKILL at
/// random moments, many times. After each restart every acknowledged write is there with the
/// revision it was acknowledged with, and no txn is half-applied.
#[test]
fn sigkill_under_load_loses_no_acknowledged_write() {
    let dir = DataDir::new("server-sigkill");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(11, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let mut acknowledged: Vec<(String, i64)> = Vec::new();
    for round in 0..6u64 {
        let mut lode = Lode::start(&dir.0, &[]);
        let address = lode.address.clone();
        let writes = 50 + rng.below(400);
        let (acked_tx, acked_rx) = std::sync::mpsc::channel::<(String, i64)>();
        let writer = std::thread::spawn(move || {
            on_executor(move || async move {
                let tasks: Vec<_> = (0..4u64)
                    .map(|client_number| {
                        let acked = acked_tx.clone();
                        let address = address.clone();
                        glommio::spawn_local(async move {
                            let Ok(client) = Client::connect(&address).await else {
                                return;
                            };
                            let client = Rc::new(client);
                            for n in 0..writes {
                                let key = format!("r{round}-c{client_number}-{n}");
                                let request = if n % 3 == 0 {
                                    Request::Write(WriteRequest::Txn(TxnRequest {
                                        compare: vec![],
                                        success: vec![
                                            RequestOp::Put(PutRequest {
                                                key: Bytes::from(format!("{key}-a")),
                                                value: Bytes::from(key.clone()),
                                                ..Default::default()
                                            }),
                                            RequestOp::Put(PutRequest {
                                                key: Bytes::from(format!("{key}-b")),
                                                value: Bytes::from(key.clone()),
                                                ..Default::default()
                                            }),
                                        ],
                                        failure: vec![],
                                    }))
                                } else {
                                    put(key.clone(), key.clone())
                                };
                                match client.request(&request).await {
                                    Ok(Response::Write(WriteResponse::Put(r))) => {
                                        let _ = acked.send((key, r.header.revision));
                                    }
                                    Ok(Response::Write(WriteResponse::Txn(r))) => {
                                        let _ = acked.send((format!("{key}-a"), r.header.revision));
                                        let _ = acked.send((format!("{key}-b"), r.header.revision));
                                    }
                                    _ => return,
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            })
        });
        // Kill after a random number of acknowledgements (or when the writers are done).
        let kill_after = rng.below(writes * 4);
        let mut seen = 0;
        while seen < kill_after {
            match acked_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(write) => {
                    acknowledged.push(write);
                    seen += 1;
                }
                Err(_) => break,
            }
        }
        lode.kill();
        let _ = writer.join();
        acknowledged.extend(acked_rx.try_iter());

        let lode = Lode::start(&dir.0, &[]);
        let address = lode.address.clone();
        let expected = acknowledged.clone();
        let log_path = dir.0.with_extension("stderr");
        let missing = on_executor(move || async move {
            let client = Client::connect(&address)
                .await
                .expect("connect after restart");
            let all = client
                .request(&Request::Range(RangeRequest {
                    key: Bytes::from_static(b"r"),
                    range_end: Bytes::from_static(b"s"),
                    ..Default::default()
                }))
                .await
                .unwrap_or_else(|error| {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("range after restart: {error}; lode said: {log}")
                });
            let Response::Range(all) = all else {
                panic!("unexpected {all:?}")
            };
            let stored: std::collections::HashMap<Bytes, i64> = all
                .kvs
                .iter()
                .map(|kv| (kv.key.clone(), kv.mod_revision))
                .collect();
            // No txn half-applied: its two keys come and go together, at one revision.
            for kv in &all.kvs {
                if let Some(base) = kv.key.strip_suffix(b"-a") {
                    let twin = [base, b"-b"].concat();
                    assert_eq!(
                        stored.get(&Bytes::from(twin)),
                        Some(&kv.mod_revision),
                        "half-applied txn"
                    );
                }
            }
            expected
                .into_iter()
                .filter(|(key, revision)| stored.get(key.as_bytes()) != Some(revision))
                .collect::<Vec<_>>()
        });
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged writes missing or moved: {missing:?}"
        );
        drop(lode);
    }
    assert!(!acknowledged.is_empty());
}

#[test]
fn malformed_frames_get_errors_and_change_nothing() {
    let dir = DataDir::new("server-badframes");
    let lode = Lode::start(&dir.0, &["--max-request-bytes", "4096"]);
    ok(lode.ctl(&["put", "k", "v"]));
    // A frame whose flatbuffer is garbage: an error response, and the connection stays usable.
    let mut stream = TcpStream::connect(&lode.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut frame = bytes::BytesMut::new();
    lode_protocol::frame::encode_frame(
        &mut frame,
        &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    lode_protocol::frame::encode_frame(
        &mut frame,
        &lode::api::native::encode_request(7, &Request::Status),
    );
    stream.write_all(&frame).unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).unwrap();
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize - 4;
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        seen.push(lode::api::native::decode_response(&Bytes::from(body)).unwrap());
    }
    assert!(seen.iter().any(
        |(_, r)| matches!(r, Response::Error { message, .. } if message.contains("malformed"))
    ));
    assert!(seen
        .iter()
        .any(|(id, r)| *id == 7 && matches!(r, Response::Status(_))));
    // A frame longer than the limit: an error response, then the connection is closed.
    let mut stream = TcpStream::connect(&lode.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(&(64u32 << 20).to_le_bytes()).unwrap();
    stream.write_all(&[1, 0, 0, 0]).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).contains("exceeds the limit"));
    // A request over --max-request-bytes is refused with etcd's message.
    let big = "x".repeat(5000);
    let error = failed(lode.ctl(&["put", "big", &big]));
    assert!(
        error.contains("etcdserver: request is too large"),
        "{error}"
    );
    // Nothing changed: one key, revision 2.
    let all = ok(lode.ctl(&["get", "\u{1}", "--from-key", "-w", "json"]));
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["count"], 1);
    assert_eq!(all["header"]["revision"], 2);
}

#[test]
fn bad_flags_exit_with_code_two() {
    for args in [
        &["--bogus"][..],
        &["--max-txn-ops", "0"],
        &["--heartbeat-interval", "abc"],
        &["--listen-client-urls", "https://127.0.0.1:1"],
        &["--listen-client-urls", "127.0.0.1:1"],
        &["--advertise-client-urls", "http://host"],
        &["--quota-backend-bytes", "lots"],
        &["--initial-cluster-state", "sideways"],
        &["--initial-advertise-peer-urls", "localhost:2380"],
        &["--cpuset", "3-1"],
        &["--cpuset", "zero"],
        &["--cpuset", ""],
        // CPU 1023 is not one this process may run on (no test machine has 1024 CPUs).
        &["--cpuset", "1023"],
        // More executors than CPUs in the set.
        &["--cores", "2", "--cpuset", "0"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(["--heartbeat-interval", "500", "--election-timeout", "600"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--name",
        "--data-dir",
        "--listen-native",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--quota-backend-bytes",
        "--initial-cluster",
        "--initial-cluster-token",
        "--initial-cluster-state",
        "--initial-advertise-peer-urls",
        "--max-request-bytes",
        "--max-txn-ops",
        "LODE_",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

/// The CPUs a thread may run on, from /proc (`Cpus_allowed_list`).
fn thread_cpus(pid: u32) -> Vec<String> {
    let mut lists = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let list = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        lists.push(list);
    }
    lists
}

#[test]
fn cpuset_pins_the_executor_to_the_chosen_cpu() {
    // The last CPU this test may use: not CPU 0 whenever the machine has more than one, so a
    // lode that ignored the flag (or its affinity) and took the first CPU would fail.
    let allowed = lode::cpus::allowed().unwrap();
    let cpu = *allowed.last().unwrap();
    let dir = DataDir::new("server-cpuset");
    let mut lode = Lode::start(&dir.0, &["--cores", "1", "--cpuset", &cpu.to_string()]);
    let pid = lode.child.as_ref().unwrap().id();
    let lists = thread_cpus(pid);
    assert!(
        lists.contains(&cpu.to_string()),
        "some thread of lode is pinned to CPU {cpu}: {lists:?}"
    );
    // Writes work on it.
    let output = lode.ctl(&["put", "pinned", "yes"]);
    assert!(output.status.success(), "{output:?}");
    lode.terminate();

    // Without --cpuset lode takes the CPUs it may run on: started under `taskset -c <cpu>`,
    // its executor is pinned there.
    let dir = DataDir::new("server-taskset");
    let client = common::server::free_port();
    let log_path = dir.0.with_extension("stderr");
    let mut child = std::process::Command::new("taskset")
        .args(["-c", &cpu.to_string(), env!("CARGO_BIN_EXE_lode")])
        .arg("--data-dir")
        .arg(&dir.0)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("taskset (util-linux) runs lode");
    // Once lode says it serves, its executor has pinned itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("serving the native protocol")
    {
        assert!(
            std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)),
            "lode under taskset did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pinned = thread_cpus(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        pinned.iter().all(|list| list == &cpu.to_string()),
        "every thread runs on CPU {cpu} only: {pinned:?}"
    );
}

#[test]
fn client_sees_server_stopped_or_closed_on_shutdown() {
    let dir = DataDir::new("server-shutdown");
    let mut lode = Lode::start(&dir.0, &[]);
    let address = lode.address.clone();
    let client_thread = std::thread::spawn(move || {
        on_executor(move || async move {
            let client = Client::connect(&address).await.expect("connect");
            let mut outcomes = Vec::new();
            for n in 0..2000 {
                match client.request(&put(format!("s{n}"), "v".into())).await {
                    Ok(_) => outcomes.push(Ok(())),
                    Err(ClientError::Server { message, .. }) => {
                        outcomes.push(Err(message));
                        break;
                    }
                    Err(ClientError::Closed(_) | ClientError::Io(_) | ClientError::Piece(_)) => {
                        break
                    }
                }
            }
            outcomes
        })
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(lode.terminate());
    let outcomes = client_thread.join().unwrap();
    for outcome in outcomes {
        if let Err(message) = outcome {
            assert_eq!(message, "etcdserver: server stopped");
        }
    }
}

/// A writer rewrites 16 keys (spread over every shard) in one txn, again and again, each time
/// with one value; readers on several connections (so on several cores) range over all of them,
/// serializable and linearizable. No read may see two different values: a revision is never
/// visible in part.
#[test]
fn readers_never_see_half_of_a_multi_shard_txn() {
    let dir = DataDir::new("server-atomic");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    let address = lode.address.clone();
    let (torn, reads) = on_executor(move || async move {
        let writer = Client::connect(&address).await.expect("connect");
        let keys: Vec<Bytes> = (0..16)
            .map(|k| Bytes::from(format!("atomic/{k:02}")))
            .collect();
        let done = Rc::new(std::cell::Cell::new(false));
        let mut readers = Vec::new();
        for reader in 0..6u64 {
            let address = address.clone();
            let done = done.clone();
            readers.push(glommio::spawn_local(async move {
                let client = Client::connect(&address).await.expect("connect");
                let (mut torn, mut reads) = (0u64, 0u64);
                while !done.get() {
                    let request = Request::Range(RangeRequest {
                        key: Bytes::from_static(b"atomic/"),
                        range_end: Bytes::from_static(b"atomic0"),
                        serializable: reader % 2 == 0,
                        ..Default::default()
                    });
                    let Ok(Response::Range(range)) = client.request(&request).await else {
                        break;
                    };
                    reads += 1;
                    let first = range.kvs.first().map(|kv| kv.value.clone());
                    if range.kvs.iter().any(|kv| Some(&kv.value) != first.as_ref()) {
                        torn += 1;
                    }
                    if !range.kvs.is_empty() && range.kvs.len() != 16 {
                        torn += 1;
                    }
                }
                (torn, reads)
            }));
        }
        for round in 0..150u64 {
            let success = keys
                .iter()
                .map(|key| {
                    RequestOp::Put(PutRequest {
                        key: key.clone(),
                        value: Bytes::from(round.to_string()),
                        ..Default::default()
                    })
                })
                .collect();
            let txn = Request::Write(WriteRequest::Txn(TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            }));
            writer.request(&txn).await.expect("txn");
        }
        done.set(true);
        let mut totals = (0, 0);
        for reader in readers {
            let (torn, reads) = reader.await;
            totals.0 += torn;
            totals.1 += reads;
        }
        totals
    });
    assert!(reads > 0, "readers ran");
    assert_eq!(torn, 0, "{torn} of {reads} reads saw part of a txn");
}

#[test]
fn a_single_core_node_serves_too() {
    let dir = DataDir::new("server-one-core");
    let mut lode = Lode::start(&dir.0, &["--cores", "1"]);
    assert_eq!(ok(lode.ctl(&["put", "a", "1"])), "OK\n");
    let txn = "create(\"a\") > \"0\"\n\nput b 2\nget a\n\n\n";
    assert_eq!(
        ok(lode.ctl_with_input(&["txn"], Some(txn))),
        "SUCCESS\n\nOK\n\na\n1\n"
    );
    assert_eq!(
        ok(lode.ctl(&["get", "", "--from-key", "--keys-only"]))
            .lines()
            .count(),
        2
    );
    assert!(lode.terminate());
}

/// With snapshots every 40 entries the log is compacted behind them; after SIGKILL the node
/// starts from the newest snapshot plus the log, with every revision it still holds intact. A
/// damaged newest snapshot is set aside and the node starts from the one before it and the
/// log; with no usable snapshot the log reaches, it refuses to start with a clear message.
#[test]
fn restart_from_snapshot_and_log_and_survive_a_damaged_snapshot() {
    let dir = DataDir::new("server-snapshot");
    let flags = ["--snapshot-count", "40", "--snapshot-catchup-entries", "5"];
    let mut lode = Lode::start(&dir.0, &flags);
    for n in 0..150 {
        ok(lode.ctl(&["put", &format!("k{}", n % 23), &format!("v{n}")]));
    }
    ok(lode.ctl(&["compaction", "60"]));
    ok(lode.ctl(&["del", "k3"]));
    let everything = ["get", "k", "--prefix", "-w", "json"];
    let before = ok(lode.ctl(&everything));
    let at_100 = ok(lode.ctl(&["get", "k", "--prefix", "--rev", "100", "-w", "json"]));
    lode.kill();
    let snapshots: Vec<_> = std::fs::read_dir(dir.0.join("snap"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!snapshots.is_empty(), "a snapshot was written");
    let inspect = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["log", "inspect"])
        .arg(&dir.0)
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        !inspect.contains("compacted to 0 "),
        "the log was compacted: {inspect}"
    );

    let mut lode = Lode::start(&dir.0, &flags);
    let header_free = |json: &str| -> serde_json::Value {
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value.as_object_mut().unwrap().remove("header");
        value
    };
    assert_eq!(
        header_free(&ok(lode.ctl(&everything))),
        header_free(&before)
    );
    let again = ok(lode.ctl(&["get", "k", "--prefix", "--rev", "100", "-w", "json"]));
    assert_eq!(header_free(&again), header_free(&at_100));
    let error = failed(lode.ctl(&["get", "k1", "--rev", "59"]));
    assert!(
        error.contains("required revision has been compacted"),
        "{error}"
    );
    ok(lode.ctl(&["put", "after", "restart"]));
    let all = ["get", "", "--prefix", "-w", "json"];
    let final_state = ok(lode.ctl(&all));
    assert!(lode.terminate());

    let snapshots = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(dir.0.join("snap"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect();
        found.sort();
        found
    };
    let damage = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x41;
        std::fs::write(path, &bytes).unwrap();
    };
    // The previous snapshot is kept beside the newest.
    assert_eq!(snapshots().len(), 2, "{:?}", snapshots());
    // Damage the newest: lode sets it aside, says so, and starts from the previous one and the
    // log after it, with everything it held.
    let newest = snapshots().pop().unwrap();
    damage(&newest);
    let mut lode = Lode::start(&dir.0, &flags);
    assert_eq!(header_free(&ok(lode.ctl(&all))), header_free(&final_state));
    let log = lode.stderr();
    assert!(log.contains("a snapshot is damaged"), "{log}");
    assert!(newest.with_extension("snap.corrupt").exists());
    assert!(lode.terminate());

    // Damage every snapshot left: the log no longer reaches back to the start, so lode refuses
    // to start, naming what it found.
    for snapshot in snapshots() {
        damage(&snapshot);
    }
    let stderr = common::server::refused_start(&dir.0, None);
    assert!(
        stderr.contains("snapshot corrupted") && stderr.contains("cannot be rebuilt"),
        "{stderr}"
    );
}

#[test]
fn lodectl_snapshot_save_stores_a_complete_snapshot() {
    let dir = DataDir::new("server-snapshot-save");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    for n in 0..30 {
        ok(lode.ctl(&["put", &format!("s{n:02}"), &format!("{n}")]));
    }
    // About 3 MiB more, so the snapshot streams in several pieces.
    let address = lode.address.clone();
    on_executor(move || async move {
        let client = Client::connect(&address).await.expect("connect");
        for n in 0..48 {
            let value = format!("{n:02}").repeat(32 << 10);
            client
                .request(&put(format!("big{n:02}"), value))
                .await
                .expect("put");
        }
    });
    let file = dir.0.with_extension("saved.snap");
    let out = ok(lode.ctl(&["snapshot", "save", file.to_str().unwrap()]));
    assert_eq!(out, format!("Snapshot saved at {}\n", file.display()));
    let bytes = std::fs::read(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(bytes.len() > 3 << 20, "{} bytes", bytes.len());
    // etcd's database with the SHA-256 etcdctl checks at the end.
    let db = lode::bbolt::snapshot::verify(&bytes).expect("etcd's hash trailer");
    let keyspace = lode::etcd_db::read(db).expect("etcd's database");
    assert_eq!(keyspace.revision, 31 + 48);
    assert_eq!(keyspace.histories.len(), 30 + 48);
    assert!(keyspace
        .histories
        .iter()
        .all(|(_, versions)| versions.len() == 1));
    // The export file the server streamed from is gone.
    let exports: Vec<_> = std::fs::read_dir(dir.0.join("snap"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        exports
            .iter()
            .all(|name| !name.to_string_lossy().starts_with("export-")),
        "{exports:?}"
    );
}

#[test]
fn a_port_in_use_is_refused_not_shared() {
    let dir = DataDir::new("server-port-owner");
    let other = DataDir::new("server-port-intruder");
    let lode = Lode::start(&dir.0, &[]);
    let stderr = common::server::refused_start(&other.0, Some(&lode.address));
    assert!(
        stderr.contains("cannot listen") && stderr.contains("in use"),
        "{stderr}"
    );
    assert_eq!(ok(lode.ctl(&["put", "still", "mine"])), "OK\n");
}

#[test]
fn a_corrupted_log_is_refused_with_file_and_offset() {
    let dir = DataDir::new("server-corrupt-log");
    let mut lode = Lode::start(&dir.0, &[]);
    for n in 0..40 {
        ok(lode.ctl(&["put", &format!("c{n}"), &"x".repeat(200)]));
    }
    assert!(lode.terminate());
    // Flip a byte inside an early record of the (only) segment, then write more after it, so
    // the damage is followed by later writes: that is corruption, not a torn tail.
    let segment = dir.0.join("wal").join("00000000000000000001.wal");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 300] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let stderr = common::server::refused_start(&dir.0, None);
    assert!(
        stderr.contains("log corruption") && stderr.contains("00000000000000000001.wal"),
        "{stderr}"
    );
}

/// `--quota-backend-bytes`: writes that add data are refused with etcd's error once the
/// keyspace would exceed the quota, the NOSPACE alarm is raised (and survives a restart),
/// reads, deletes and compactions go on, and the alarm clears itself once compaction has won
/// the space back; `lodectl alarm disarm` clears it by hand.
#[test]
fn the_space_quota_raises_nospace_and_compaction_clears_it() {
    let dir = DataDir::new("server-quota");
    let quota = ["--quota-backend-bytes", "200000"];
    let mut lode = Lode::start(&dir.0, &quota);
    let value = "q".repeat(10_000);
    let mut refused = None;
    // Keys on both cores' shards.
    for n in 0..100 {
        let output = lode.ctl(&["put", &format!("big{}", n % 4), &value]);
        if !output.status.success() {
            refused = Some((n, String::from_utf8_lossy(&output.stderr).into_owned()));
            break;
        }
    }
    let (accepted, error) = refused.expect("the quota refuses writes");
    assert!((15..=20).contains(&accepted), "{accepted} puts fit");
    assert!(
        error.contains("etcdserver: mvcc: database space exceeded"),
        "{error}"
    );
    let alarms = |lode: &Lode| ok(lode.ctl(&["alarm", "list"]));
    let listed = wait_for(|| Some(alarms(&lode)).filter(|a| a.contains("alarm:NOSPACE")));
    assert!(listed.starts_with("memberID:"), "{listed}");
    // Even a tiny put is refused now; reads and deletes are not.
    assert!(failed(lode.ctl(&["put", "tiny", "t"])).contains("database space exceeded"));
    assert_eq!(
        ok(lode.ctl(&["get", "big", "--prefix", "--count-only"])),
        "4\n"
    );
    assert_eq!(ok(lode.ctl(&["del", "nothing-here"])), "0\n");
    let status: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["endpoint", "status", "-w", "json"]))).unwrap();
    assert!(status[0]["Status"]["dbSize"].as_i64().unwrap() > 150_000);

    // The alarm is part of the replicated state: it survives a restart.
    assert!(lode.terminate());
    let lode = Lode::start(&dir.0, &quota);
    assert!(alarms(&lode).contains("alarm:NOSPACE"));

    // Compacting away the old versions wins the space back: the alarm clears itself.
    let json: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["get", "big0", "-w", "json"]))).unwrap();
    let revision = json["header"]["revision"].as_i64().unwrap();
    ok(lode.ctl(&["compaction", &revision.to_string(), "--physical"]));
    wait_for(|| Some(()).filter(|()| alarms(&lode).is_empty()));
    assert_eq!(ok(lode.ctl(&["put", "tiny", "t"])), "OK\n");

    // Over the quota again, then cleared by hand.
    let mut raised = false;
    for n in 0..100 {
        if !lode
            .ctl(&["put", &format!("big{}", n % 4), &value])
            .status
            .success()
        {
            raised = true;
            break;
        }
    }
    assert!(raised);
    wait_for(|| Some(()).filter(|()| alarms(&lode).contains("NOSPACE")));
    let disarmed = ok(lode.ctl(&["alarm", "disarm"]));
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    assert_eq!(alarms(&lode), "");
    let json: serde_json::Value =
        serde_json::from_str(&ok(lode.ctl(&["alarm", "list", "-w", "json"]))).unwrap();
    assert!(json["alarms"].is_null(), "{json}");
}

/// Polls `probe` until it answers (every 50 ms, for at most a minute).
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = probe() {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Member and cluster IDs are etcd's (the default member is 8e9e05c52164694d in cluster
/// cdf818194e3a8c32, as with etcd's defaults), fixed when the data dir is created, and bootstrap
/// misconfiguration is a clear refusal.
#[test]
fn member_identity_is_etcds_and_belongs_to_the_data_dir() {
    let dir = DataDir::new("server-identity");
    let ids = |lode: &Lode| -> (u64, u64) {
        let status: serde_json::Value =
            serde_json::from_str(&ok(lode.ctl(&["endpoint", "status", "-w", "json"]))).unwrap();
        let header = &status[0]["Status"]["header"];
        (
            header["member_id"].as_u64().unwrap(),
            header["cluster_id"].as_u64().unwrap(),
        )
    };
    let mut lode = Lode::start(&dir.0, &[]);
    assert_eq!(ids(&lode), (0x8e9e05c52164694d, 0xcdf818194e3a8c32));
    assert!(lode.terminate());
    // Bootstrap flags no longer matter once the data dir has an identity.
    let lode = Lode::start(&dir.0, &["--initial-cluster-token", "another"]);
    assert_eq!(ids(&lode), (0x8e9e05c52164694d, 0xcdf818194e3a8c32));
    drop(lode);

    let refused = |args: &[&str]| -> String {
        let fresh = DataDir::new("server-identity-refused");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
            .arg("--data-dir")
            .arg(&fresh.0)
            .args(common::server::client_urls())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(!fresh.0.join("identity").exists(), "{args:?}");
        common::server::messages(&String::from_utf8_lossy(&output.stderr))
    };
    let missing = refused(&[
        "--name",
        "n9",
        "--initial-cluster",
        "n1=http://127.0.0.1:2380",
    ]);
    assert!(missing.contains("no member named \"n9\""), "{missing}");
    let mismatch = refused(&[
        "--name",
        "n1",
        "--initial-cluster",
        "n1=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2999",
    ]);
    assert!(mismatch.contains("must match"), "{mismatch}");
    let joining = refused(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381",
        "--initial-cluster-state",
        "existing",
    ]);
    // Nobody answers at the other member's peer URL: a clear error, nothing created.
    assert!(
        joining.contains("could not retrieve the cluster's members from 127.0.0.1:2381"),
        "{joining}"
    );

    // A damaged identity is refused, naming the file.
    std::fs::write(dir.0.join("identity"), "lode member identity v1\nname=x\n").unwrap();
    let damaged = common::server::refused_start(&dir.0, None);
    assert!(damaged.contains("identity"), "{damaged}");
}

/// `endpoint hashkv` hashes the history above the compaction point up to a revision: the same
/// revision hashes the same after later writes, any write changes the latest hash, and etcd's
/// revision errors apply.
#[test]
fn lodectl_endpoint_hashkv_hashes_history_at_a_revision() {
    let dir = DataDir::new("server-hashkv");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    let hash = |args: &[&str]| -> (u64, i64) {
        let mut all = vec!["endpoint", "hashkv", "-w", "json"];
        all.extend_from_slice(args);
        let json: serde_json::Value = serde_json::from_str(&ok(lode.ctl(&all))).unwrap();
        (
            json[0]["HashKV"]["hash"].as_u64().unwrap(),
            json[0]["HashKV"]["hash_revision"].as_i64().unwrap(),
        )
    };
    for n in 0..20 {
        ok(lode.ctl(&["put", &format!("h{}", n % 6), &format!("{n}")]));
    }
    let (first, revision) = hash(&[]);
    assert_eq!(revision, 21);
    ok(lode.ctl(&["del", "h1"]));
    let (latest, _) = hash(&[]);
    assert_ne!(latest, first);
    assert_eq!(hash(&["--rev", "21"]), (first, 21));
    let simple = ok(lode.ctl(&["endpoint", "hashkv"]));
    assert_eq!(simple, format!("{}, {latest}\n", lode.address));
    let future = failed(lode.ctl(&["endpoint", "hashkv", "--rev", "99"]));
    assert!(future.contains("etcdserver: mvcc: required revision is a future revision"));
    ok(lode.ctl(&["compaction", "10"]));
    let compacted = failed(lode.ctl(&["endpoint", "hashkv", "--rev", "5"]));
    assert!(compacted.contains("etcdserver: mvcc: required revision has been compacted"));
    // Revisions above the compaction point still hash (over the history after it).
    assert_eq!(hash(&["--rev", "21"]).1, 21);
}
