//! etcd's Watch service on a real `lode`, driven by the Rust `etcd-client` crate: live and
//! historical events, prev_kv and filters, txns spanning shards delivered whole, cancel,
//! progress requests and notifications, compaction cancels, etcd's answers to bad creations,
//! watches served by a follower, and Debian's etcdctl `watch`.

mod common;

use common::{grpc_error, runtime};

use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::{cluster, wait_for_leader};
use common::server::{ok, DataDir, Lode};
use etcd_client::{
    Client, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};

/// A client of `endpoint`.
async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect")
}

/// A watch of `key` with `options` on a new stream of `client`, once the server created it.
async fn created_watch(
    client: &mut Client,
    key: &str,
    options: Option<WatchOptions>,
) -> WatchStream {
    let mut stream = client.watch(key, options).await.expect("watch");
    assert!(next(&mut stream).await.created());
    stream
}

/// The next response on `stream` (a stream that ends or breaks fails the test; a silent
/// server fails it after a minute rather than hanging CI).
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("a watch response within a minute")
        .expect("the stream works")
        .expect("the stream goes on")
}

/// Responses until one carries events; returns it.
async fn next_events(stream: &mut WatchStream) -> WatchResponse {
    loop {
        let response = next(stream).await;
        if !response.events().is_empty() {
            return response;
        }
    }
}

fn summary(response: &WatchResponse) -> Vec<(EventType, String, String, i64)> {
    response
        .events()
        .iter()
        .map(|event| {
            let kv = event.kv().expect("kv");
            (
                event.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

#[test]
fn watches_deliver_live_and_past_events_as_etcd() {
    let dir = DataDir::new("watch-events");
    // Two cores: keys live on two shards, so a txn's revision spans them.
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = connect(&endpoint).await;
        let mut stream = client
            .watch("k", Some(WatchOptions::new().with_prefix().with_prev_key()))
            .await
            .expect("watch");
        let created = next(&mut stream).await;
        assert!(created.created() && !created.canceled());
        let id = created.watch_id();

        client.put("k1", "a", None).await.expect("put");
        client.put("k1", "b", None).await.expect("put");
        let first = next_events(&mut stream).await;
        assert_eq!(first.watch_id(), id);
        let mut seen = summary(&first);
        if seen.len() == 1 {
            seen.extend(summary(&next_events(&mut stream).await));
        }
        assert_eq!(
            seen,
            vec![
                (EventType::Put, "k1".into(), "a".into(), 2),
                (EventType::Put, "k1".into(), "b".into(), 3)
            ]
        );

        // A txn writing keys on both shards: one revision, one response, in sub order.
        let txn = Txn::new().and_then(
            (0..6)
                .map(|i| TxnOp::put(format!("k{i}x"), "t", None))
                .collect::<Vec<_>>(),
        );
        client.txn(txn).await.expect("txn");
        let whole = next_events(&mut stream).await;
        let keys: Vec<String> = summary(&whole).into_iter().map(|e| e.1).collect();
        assert_eq!(keys, (0..6).map(|i| format!("k{i}x")).collect::<Vec<_>>());
        assert!(whole
            .events()
            .iter()
            .all(|e| e.kv().unwrap().mod_revision() == 4));

        // prev_kv on an update and a delete; none on a create.
        client.delete("k1", None).await.expect("delete");
        let deleted = next_events(&mut stream).await;
        let event = &deleted.events()[0];
        assert_eq!(event.event_type(), EventType::Delete);
        assert_eq!(event.kv().unwrap().mod_revision(), 5);
        assert_eq!(event.prev_kv().map(|p| p.value()), Some(&b"b"[..]));
        assert!(whole.events()[0].prev_kv().is_none());

        // Cancel: answered once; then nothing more arrives for that watch.
        stream.cancel(id).await.expect("cancel");
        let canceled = next(&mut stream).await;
        assert!(canceled.canceled() && canceled.watch_id() == id);

        // A watch from revision 1 replays everything; a NOPUT filter leaves only the delete.
        let mut past = created_watch(
            &mut client,
            "k1",
            Some(WatchOptions::new().with_start_revision(1)),
        )
        .await;
        let mut replay = Vec::new();
        while replay.len() < 3 {
            replay.extend(summary(&next_events(&mut past).await));
        }
        let revisions: Vec<i64> = replay.iter().map(|e| e.3).collect();
        assert_eq!(revisions, vec![2, 3, 5]);
        let mut deletes_only = created_watch(
            &mut client,
            "k1",
            Some(
                WatchOptions::new()
                    .with_start_revision(1)
                    .with_filters([WatchFilterType::NoPut]),
            ),
        )
        .await;
        let only = next_events(&mut deletes_only).await;
        assert_eq!(summary(&only).len(), 1);
        assert_eq!(only.events()[0].event_type(), EventType::Delete);

        // Progress: one response for the stream (watch ID -1) at the current revision.
        past.request_progress().await.expect("progress");
        let progress = next(&mut past).await;
        assert_eq!(progress.watch_id(), -1);
        assert_eq!(progress.header().map(|h| h.revision()), Some(5));

        // After compaction, a watch from below the compaction point is canceled with it.
        client.compact(4, None).await.expect("compact");
        let mut old = created_watch(
            &mut client,
            "k",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await;
        let compacted = next(&mut old).await;
        assert!(compacted.canceled());
        assert_eq!(compacted.compact_revision(), 4);
        // From exactly the compaction point is fine.
        let mut at_point = created_watch(
            &mut client,
            "k",
            Some(WatchOptions::new().with_prefix().with_start_revision(4)),
        )
        .await;
        let from_point = next_events(&mut at_point).await;
        assert_eq!(from_point.events()[0].kv().unwrap().mod_revision(), 4);
    });
}

#[test]
fn bad_watch_requests_get_etcds_answers() {
    let dir = DataDir::new("watch-bad");
    let lode = Lode::start(&dir.0, &["--watch-progress-notify-interval", "200ms"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = connect(&endpoint).await;
        let mut stream = client
            .watch("a", Some(WatchOptions::new().with_watch_id(7)))
            .await
            .expect("watch");
        let created = next(&mut stream).await;
        assert_eq!((created.created(), created.watch_id()), (true, 7));

        // A duplicate ID, a negative start revision and an empty range: created and canceled
        // at once with etcd's reasons and watch ID -1.
        stream
            .watch("b", Some(WatchOptions::new().with_watch_id(7)))
            .await
            .expect("send");
        stream
            .watch("b", Some(WatchOptions::new().with_start_revision(-3)))
            .await
            .expect("send");
        stream
            .watch("b", Some(WatchOptions::new().with_range("a")))
            .await
            .expect("send");
        let mut reasons = Vec::new();
        for _ in 0..3 {
            let refused = next(&mut stream).await;
            assert!(refused.created() && refused.canceled());
            assert_eq!(refused.watch_id(), -1);
            reasons.push(refused.cancel_reason().to_string());
        }
        assert_eq!(
            reasons,
            vec![
                "mvcc: duplicate watch ID provided on the WatchStream",
                "etcdserver: mvcc: required revision has been compacted",
                "mvcc: watcher range is empty",
            ]
        );
        // Canceling an unknown ID is ignored; the stream goes on serving.
        stream.cancel(99).await.expect("send");
        client.put("a", "1", None).await.expect("put");
        let event = next_events(&mut stream).await;
        assert_eq!(event.watch_id(), 7);

        // Progress notifications: an idle watcher that asked gets empty responses.
        let mut notified = created_watch(
            &mut client,
            "quiet",
            Some(WatchOptions::new().with_progress_notify()),
        )
        .await;
        let notice = next(&mut notified).await;
        assert!(notice.events().is_empty() && !notice.canceled());
    });
    // A bad interval is refused at start.
    let bad = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(["--watch-progress-notify-interval", "10"])
        .output()
        .expect("run lode");
    assert!(!bad.status.success());
}

#[test]
fn a_follower_serves_watches_of_writes_made_through_the_leader() {
    let mut members = cluster("watch-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    let leader_url = members[leader].lode().client_url.clone();
    let follower_url = members[follower].lode().client_url.clone();
    runtime().block_on(async move {
        let mut watcher = connect(&follower_url).await;
        let mut stream = created_watch(
            &mut watcher,
            "cfg/",
            Some(WatchOptions::new().with_prefix()),
        )
        .await;
        let mut writer = connect(&leader_url).await;
        for i in 0..5 {
            writer
                .put(format!("cfg/{i}"), format!("v{i}"), None)
                .await
                .expect("put");
        }
        let mut values = Vec::new();
        while values.len() < 5 {
            for event in summary(&next_events(&mut stream).await) {
                values.push(event.2);
            }
        }
        assert_eq!(values, vec!["v0", "v1", "v2", "v3", "v4"]);
    });
}

#[test]
fn etcdctl_watch_prints_events() {
    let dir = DataDir::new("watch-etcdctl");
    let lode = Lode::start(&dir.0, &[]);
    etcdctl_watch(&lode.client_url, &lode.client_url);
}

#[test]
fn etcdctl_watch_on_a_follower_prints_events_written_through_the_leader() {
    let mut members = cluster("watch-etcdctl-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    etcdctl_watch(
        &members[leader].lode().client_url,
        &members[(leader + 1) % 3].lode().client_url,
    );
}

/// etcdctl's `watch --prefix --rev 1 --prev-kv -w json` on `watched` sees the puts made
/// through `written`, history first.
fn etcdctl_watch(written: &str, watched: &str) {
    let put = |key: &str, value: &str| {
        let status = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", written, "put", key, value])
            .output()
            .expect("etcdctl put");
        assert!(status.status.success(), "{status:?}");
    };
    put("job/1", "queued");
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            watched,
            "watch",
            "job/",
            "--prefix",
            "--rev",
            "1",
            "--prev-kv",
            "-w",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let lines = common::server::lines_of(stdout);
    put("job/1", "running");
    put("job/2", "queued");
    let mut events = Vec::new();
    while events.len() < 3 {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("etcdctl prints the events");
        let response: serde_json::Value = serde_json::from_str(&line).expect("json");
        for event in response["Events"].as_array().cloned().unwrap_or_default() {
            events.push(event);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let revisions: Vec<i64> = events
        .iter()
        .map(|e| e["kv"]["mod_revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revisions, vec![2, 3, 4]);
    // The update carries the value before it (base64 of "queued").
    assert_eq!(events[1]["prev_kv"]["value"], "cXVldWVk");
}

#[test]
fn a_stream_that_stops_reading_delays_no_one_and_later_gets_every_event() {
    let dir = DataDir::new("watch-slow");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        // Two connections: the slow stream's flow control cannot hold up the other's.
        let mut slow_client = connect(&endpoint).await;
        let mut client = connect(&endpoint).await;
        let mut slow = created_watch(
            &mut slow_client,
            "big/",
            Some(WatchOptions::new().with_prefix()),
        )
        .await;
        let mut prompt =
            created_watch(&mut client, "big/", Some(WatchOptions::new().with_prefix())).await;

        // Far more than the slow stream's buffers (its budget, the channel to the
        // connection, HTTP/2's windows) while it reads nothing.
        let puts = 1500;
        let value = vec![b'x'; 8 << 10];
        let mut first_revision = 0;
        let mut prompt_revisions = Vec::new();
        for i in 0..puts {
            let put = client
                .put(format!("big/{}", i % 50), value.clone(), None)
                .await
                .expect("put");
            if i == 0 {
                first_revision = put.header().expect("header").revision();
            }
            // The other stream keeps up as the writes go.
            while prompt_revisions.len() < i + 1 {
                for event in next_events(&mut prompt).await.events() {
                    prompt_revisions.push(event.kv().unwrap().mod_revision());
                }
            }
        }
        let expected: Vec<i64> = (first_revision..first_revision + puts as i64).collect();
        assert_eq!(prompt_revisions, expected);

        // The slow stream, reading at last, gets every event once, in order (caught up from
        // the history where its buffers could not hold them).
        let mut slow_revisions = Vec::new();
        while slow_revisions.len() < puts {
            for event in next_events(&mut slow).await.events() {
                slow_revisions.push(event.kv().unwrap().mod_revision());
            }
        }
        assert_eq!(slow_revisions, expected);
    });
}

#[test]
fn lodectl_watch_prints_events_over_the_native_protocol() {
    let dir = DataDir::new("watch-lodectl");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    ok(lode.ctl(&["put", "job/1", "queued"]));
    let mut watch = lode
        .ctl_process(&["watch", "job/", "--prefix", "--rev", "1", "--prev-kv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lodectl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let lines = common::server::lines_of(stdout);
    ok(lode.ctl(&["put", "job/1", "running"]));
    ok(lode.ctl(&["del", "job/1"]));
    let expected = [
        "PUT", "job/1", "queued", // created
        "PUT", "job/1", "queued", "job/1", "running", // updated, with the previous pair
        "DELETE", "job/1", "running", "job/1", "", // deleted
    ];
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(
            lines
                .recv_timeout(Duration::from_secs(60))
                .expect("lodectl prints the events"),
        );
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(got, expected);

    // A watch from below the compaction point ends with etcd's reason and a failure exit.
    ok(lode.ctl(&["compaction", "3"]));
    let canceled = lode.ctl(&["watch", "job/1", "--rev", "2"]);
    assert!(!canceled.status.success());
    assert!(
        String::from_utf8_lossy(&canceled.stderr).contains("required revision has been compacted"),
        "{canceled:?}"
    );
}

/// The next response on a raw gRPC watch stream (a minute at most).
async fn next_raw(
    stream: &mut tonic::Streaming<lode_protocol::etcd::etcdserverpb::WatchResponse>,
) -> lode_protocol::etcd::etcdserverpb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("a response within a minute")
        .expect("the stream works")
        .expect("the stream goes on")
}

#[test]
fn large_revisions_are_fragmented_for_watchers_that_allow_it() {
    use futures::StreamExt;
    use lode_protocol::etcd::etcdserverpb as pb;
    let dir = DataDir::new("watch-fragment");
    let lode = Lode::start(&dir.0, &["--max-request-bytes", "100000"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        // etcd-client hides `fragment`: etcd's protocol, through tonic.
        let channel = common::grpc_channel(&endpoint).await;
        let open = |fragment: bool| {
            let create = pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key: "f/".into(),
                        range_end: "f0".into(),
                        prev_kv: true,
                        fragment,
                        ..Default::default()
                    },
                )),
            };
            let mut client = pb::watch_client::WatchClient::new(channel.clone());
            async move {
                let requests = futures::stream::iter([create]).chain(futures::stream::pending());
                client.watch(requests).await.expect("watch").into_inner()
            }
        };
        let mut split = open(true).await;
        let mut whole = open(false).await;
        assert!(next_raw(&mut split).await.created);
        assert!(next_raw(&mut whole).await.created);
        let mut client = connect(&endpoint).await;
        // Twice: the second txn's events carry the first's values as prev_kv, about 180 KB
        // per revision against a 100 KB limit.
        for round in 0..2u8 {
            let txn = Txn::new().and_then(
                (0..10)
                    .map(|i| TxnOp::put(format!("f/{i}"), vec![b'a' + round; 9000], None))
                    .collect::<Vec<_>>(),
            );
            client.txn(txn).await.expect("txn");
        }
        let mut parts = Vec::new();
        let mut events = 0;
        while events < 20 {
            let part = next_raw(&mut split).await;
            events += part.events.len();
            parts.push(part.fragment);
        }
        assert_eq!(events, 20);
        assert!(
            parts.len() > 2,
            "the second revision came in parts: {parts:?}"
        );
        assert_eq!(parts.last(), Some(&false), "the last part is not marked");
        assert!(parts.contains(&true));
        // Without `fragment` the same revisions come whole.
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 20 {
            let response = next_raw(&mut whole).await;
            assert!(!response.fragment);
            sizes.push(response.events.len());
        }
        assert_eq!(sizes, vec![10, 10]);
    });
}

#[test]
fn a_stream_that_requires_a_leader_ends_when_the_member_loses_it() {
    let mut members = cluster("watch-hasleader");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    let endpoint = members[follower].lode().client_url.clone();
    let rt = runtime();
    let mut stream = rt.block_on(async {
        let options = etcd_client::ConnectOptions::new().with_require_leader(true);
        let mut client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .expect("connect");
        let stream = created_watch(&mut client, "x", None).await;
        stream
    });
    // The follower alone has no leader: its stream ends with etcd's error.
    for (index, member) in members.iter_mut().enumerate() {
        if index != follower {
            if let Some(lode) = member.lode.as_mut() {
                lode.kill();
            }
        }
    }
    rt.block_on(async move {
        let ended = tokio::time::timeout(Duration::from_secs(120), stream.message())
            .await
            .expect("the stream ends within two minutes");
        let error = ended.expect_err("the stream ends with an error");
        assert_eq!(
            grpc_error(error),
            (
                tonic::Code::Unavailable,
                "etcdserver: no leader".to_string()
            )
        );
    });
}

#[test]
fn one_stream_serves_thousands_of_watchers() {
    let dir = DataDir::new("watch-many");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = connect(&endpoint).await;
        let watchers = 2000;
        let mut stream = client
            .watch("hot", Some(WatchOptions::new().with_watch_id(1)))
            .await
            .expect("watch");
        for id in 2..=watchers {
            stream
                .watch("hot", Some(WatchOptions::new().with_watch_id(id)))
                .await
                .expect("watch");
        }
        let mut created = 0;
        while created < watchers {
            let response = next(&mut stream).await;
            assert!(response.created() && !response.canceled());
            created += 1;
        }
        client.put("hot", "1", None).await.expect("put");
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < watchers as usize {
            let response = next_events(&mut stream).await;
            assert_eq!(response.events().len(), 1);
            assert!(seen.insert(response.watch_id()), "one event per watcher");
        }
        assert_eq!(seen.first(), Some(&1));
        assert_eq!(seen.last(), Some(&watchers));
    });
}

#[test]
fn a_watcher_left_behind_by_compaction_is_canceled_with_the_compaction_point() {
    let dir = DataDir::new("watch-behind");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut slow_client = connect(&endpoint).await;
        let mut client = connect(&endpoint).await;
        let mut slow = created_watch(
            &mut slow_client,
            "old/",
            Some(WatchOptions::new().with_prefix()),
        )
        .await;
        // More than the slow stream's buffers hold, then a compaction past all of it.
        let value = vec![b'x'; 8 << 10];
        let mut last = 0;
        for i in 0..1500 {
            let put = client
                .put(format!("old/{}", i % 50), value.clone(), None)
                .await
                .expect("put");
            last = put.header().expect("header").revision();
        }
        client.compact(last, None).await.expect("compact");
        // Reading again: a prefix of the events in order, then the cancel naming the point.
        let mut expected_next = 2;
        loop {
            let response = next(&mut slow).await;
            if response.canceled() {
                assert_eq!(response.compact_revision(), last);
                assert!(expected_next < last, "canceled only when it was behind");
                break;
            }
            for event in response.events() {
                assert_eq!(event.kv().unwrap().mod_revision(), expected_next);
                expected_next += 1;
            }
        }
    });
}

#[test]
fn a_follower_that_installs_a_snapshot_keeps_its_watchers_whole() {
    use common::cluster::{cluster_behind_proxies_with, own_id};
    use common::proxy::Network;
    use std::time::Instant;
    let network = std::sync::Arc::new(Network::default());
    let mut members = cluster_behind_proxies_with(
        "watch-snapshot",
        3,
        &["--snapshot-count", "40", "--snapshot-catchup-entries", "5"],
        &network,
    );
    for member in &mut members {
        member.start();
    }
    network.set_ids(members.iter().map(own_id).collect());
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    let rt = runtime();
    let endpoint = members[follower].lode().client_url.clone();
    let mut stream = rt.block_on(async {
        let mut client = connect(&endpoint).await;
        let stream = created_watch(&mut client, "s", Some(WatchOptions::new().with_prefix())).await;
        stream
    });
    // Cut the follower off while the others write enough for the leader to snapshot and
    // compact its log past it: it comes back through a snapshot, which its watchers must not
    // notice.
    network.isolate(follower, 3);
    for n in 0..150 {
        ok(members[leader]
            .lode()
            .ctl(&["put", &format!("s{:03}", n % 60), &format!("v{n}")]));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !members[leader].lode().stderr().contains("snapshot written") {
        assert!(
            Instant::now() < deadline,
            "the leader never took a snapshot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    network.heal();
    let values = rt.block_on(async move {
        let mut values = Vec::new();
        let mut revisions = Vec::new();
        while values.len() < 150 {
            for event in next_events(&mut stream).await.events() {
                let kv = event.kv().expect("kv");
                values.push(String::from_utf8_lossy(kv.value()).into_owned());
                revisions.push(kv.mod_revision());
            }
        }
        assert!(
            revisions.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "no gap and no repeat: {revisions:?}"
        );
        values
    });
    assert_eq!(
        values,
        (0..150).map(|n| format!("v{n}")).collect::<Vec<_>>()
    );
    assert!(
        members[follower]
            .lode()
            .stderr()
            .contains("installed a snapshot from the leader"),
        "the follower caught up without a snapshot:\n{}",
        members[follower].lode().stderr()
    );
}

#[test]
fn watches_work_again_after_every_stream_of_a_core_closed() {
    let dir = DataDir::new("watch-again");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = connect(&endpoint).await;
        for round in 0..3 {
            let mut stream =
                created_watch(&mut client, "r", Some(WatchOptions::new().with_prefix())).await;
            client
                .put(format!("r{round}"), "v", None)
                .await
                .expect("put");
            assert_eq!(summary(&next_events(&mut stream).await).len(), 1);
            // The stream goes away: the core's last one, so it unsubscribes (once it notices,
            // within about a second) and subscribes again for the next.
            drop(stream);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // Nothing was lost meanwhile: a watch from the start sees every write, in order.
        let mut all = created_watch(
            &mut client,
            "r",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await;
        let mut keys = Vec::new();
        while keys.len() < 3 {
            keys.extend(
                summary(&next_events(&mut all).await)
                    .into_iter()
                    .map(|e| e.1),
            );
        }
        assert_eq!(keys, vec!["r0", "r1", "r2"]);
    });
}
