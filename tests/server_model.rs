//! The running server against the pure keyspace: random puts, ranges, deletes, txns,
//! compactions and lease grants and revocations go to a real lode over the native protocol and
//! to `ShardedKv`, which
//! `mvcc_model.rs` checks against the reference. Every response must be the same: this covers
//! what only the server does (the sequencer's prefetched views, routing, merging ranges across
//! cores).

mod common;

use common::kvgen::Gen;
use common::on_executor;
use common::server::{DataDir, Lode};
use lode::api::native::{Request, Response};
use lode::client::{Client, ClientError};
use lode::mvcc::request::*;
use lode::mvcc::validate::DEFAULT_MAX_TXN_OPS;
use lode::mvcc::{KvError, ShardedKv};

/// The top-level header without the fields the store does not decide.
fn normalize(response: Response) -> Response {
    let clear = |header: &mut ResponseHeader| {
        header.cluster_id = 0;
        header.member_id = 0;
        header.raft_term = 0;
    };
    match response {
        Response::Range(mut r) => {
            clear(&mut r.header);
            Response::Range(r)
        }
        Response::Write(mut w) => {
            match &mut w {
                WriteResponse::Put(r) => clear(&mut r.header),
                WriteResponse::DeleteRange(r) => clear(&mut r.header),
                WriteResponse::Txn(r) => clear(&mut r.header),
                WriteResponse::Compact(r) => clear(&mut r.header),
                WriteResponse::Lease(r) => clear(&mut r.header),
            }
            Response::Write(w)
        }
        other => other,
    }
}

fn expected_error(error: KvError) -> Response {
    Response::Error {
        code: lode::api::native::grpc_code(error.code()),
        message: error.to_string(),
    }
}

#[test]
fn one_core_answers_exactly_like_the_pure_keyspace() {
    answers_like_the_pure_keyspace(1);
}

/// Two cores: keys hash to two shards, multi-key reads are gathered across the mesh and
/// conditional writes prefetch from the other core.
#[test]
fn two_cores_answer_exactly_like_the_pure_keyspace() {
    answers_like_the_pure_keyspace(2);
}

fn answers_like_the_pure_keyspace(cores: usize) {
    let dir = DataDir::new(&format!("server-model-{cores}"));
    let cores_arg = cores.to_string();
    let lode = Lode::start(&dir.0, &["--cores", &cores_arg]);
    let address = lode.address.clone();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(5, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed} cores {cores}");
    on_executor(move || async move {
        let client = Client::connect(&address).await.expect("connect");
        let mut reference = ShardedKv::new(1);
        let mut gen = Gen::new(seed);
        for step in 0..600 {
            let (request, expected) = if gen.chance(35) {
                let mut range = gen.range(reference.current_revision());
                // Serializable reads may trail; linearizable ones must match exactly.
                range.serializable = false;
                let expected = match reference.range(&range) {
                    Ok(r) => Response::Range(r),
                    Err(e) => expected_error(e),
                };
                (Request::Range(range), expected)
            } else {
                // Leases come and go among the writes: puts naming them attach keys (or are
                // refused), revocations delete those keys in one revision.
                let write = if gen.chance(8) {
                    gen.lease_change()
                } else {
                    gen.write(reference.current_revision(), reference.compact_revision())
                };
                let expected = match reference.write(&write, DEFAULT_MAX_TXN_OPS) {
                    Ok(r) => Response::Write(r),
                    Err(e) => expected_error(e),
                };
                (Request::Write(write), expected)
            };
            let got = match client.request(&request).await {
                Ok(response) => normalize(response),
                Err(ClientError::Server { code, message }) => Response::Error { code, message },
                Err(error) => panic!("seed {seed} step {step}: {error}"),
            };
            assert_eq!(got, expected, "seed {seed} step {step}: {request:?}");
        }
    });
}

/// Watches on the running server against the pure keyspace's history: watches of random
/// ranges from random past revisions, created between random writes and compactions, on a
/// native watch stream; each must get exactly its part of the history (in order, whole
/// revisions, right prev_kv), or be canceled for compaction after a prefix of it.
#[test]
fn watches_see_exactly_the_pure_history_on_two_cores() {
    let dir = DataDir::new("server-model-watch");
    let lode = Lode::start(&dir.0, &["--cores", "2"]);
    let address = lode.address.clone();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(5, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    on_executor(move || async move {
        use lode::api::native::WatchRequest;
        use lode::mvcc::KeyRange;
        use lode::watch::stream::CreateWatch;
        use lode::watch::Event;

        struct Watch {
            range: KeyRange,
            start: i64,
            prev_kv: bool,
            received: Vec<Event>,
            compacted: Option<i64>,
        }
        let client = Client::connect(&address).await.expect("connect");
        let mut stream = client.watch();
        let mut reference = ShardedKv::new(1);
        let mut history: Vec<Event> = Vec::new();
        let mut watches: Vec<Watch> = Vec::new();
        let mut gen = Gen::new(seed);
        let mut max_compaction = 0;
        for step in 0..400 {
            if gen.chance(6) && watches.len() < 16 {
                let range = gen.range(reference.current_revision());
                let key = if range.key.is_empty() {
                    bytes::Bytes::from_static(&[0])
                } else {
                    range.key.clone()
                };
                let keys = KeyRange::from_request(&key, &range.range_end);
                if matches!(&keys, KeyRange::Between(from, to) if to <= from) {
                    // etcd refuses empty ranges (tested elsewhere).
                    continue;
                }
                let start = 1 + gen.below(reference.current_revision() as u64 + 1) as i64;
                let prev_kv = gen.chance(50);
                let id = watches.len() as i64 + 1;
                stream
                    .send(WatchRequest::Create(CreateWatch {
                        key: range.key.clone(),
                        range_end: range.range_end.clone(),
                        start_revision: start,
                        prev_kv,
                        watch_id: id,
                        ..CreateWatch::default()
                    }))
                    .await
                    .expect("create");
                watches.push(Watch {
                    range: keys,
                    start,
                    prev_kv,
                    received: Vec::new(),
                    compacted: None,
                });
                continue;
            }
            let write = if gen.chance(8) {
                gen.lease_change()
            } else {
                gen.write(reference.current_revision(), reference.compact_revision())
            };
            let expected_ok = match reference.write_with_events(&write, DEFAULT_MAX_TXN_OPS) {
                Ok((_, events)) => {
                    history.extend(events.into_iter().map(|(_, event)| event));
                    if let WriteRequest::Compact(c) = &write {
                        max_compaction = c.revision;
                    }
                    true
                }
                Err(_) => false,
            };
            let got = client.request(&Request::Write(write)).await;
            assert_eq!(got.is_ok(), expected_ok, "seed {seed} step {step}: {got:?}");
        }
        let wanted = |watch: &Watch| -> Vec<Event> {
            history
                .iter()
                .filter(|e| e.revision() >= watch.start && watch.range.contains(&e.kv.key))
                .cloned()
                .collect()
        };
        let done = |watches: &Vec<Watch>| {
            watches
                .iter()
                .all(|w| w.compacted.is_some() || w.received.len() >= wanted(w).len())
        };
        while !done(&watches) {
            let next = glommio::timer::timeout(std::time::Duration::from_secs(60), async {
                Ok(stream.next().await)
            })
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a watch response within a minute"));
            let (_, response) = next.expect("the stream goes on");
            if response.created || response.watch_id < 1 {
                assert!(!response.canceled, "seed {seed}: {response:?}");
                continue;
            }
            let watch = &mut watches[response.watch_id as usize - 1];
            if response.canceled {
                assert!(response.compact_revision > 0, "seed {seed}: {response:?}");
                watch.compacted = Some(response.compact_revision);
                continue;
            }
            // Whole revisions: every event of a revision the watch wants is in this response.
            for event in &response.events {
                let whole = history
                    .iter()
                    .filter(|e| e.revision() == event.revision() && watch.range.contains(&e.kv.key))
                    .count();
                let here = response
                    .events
                    .iter()
                    .filter(|e| e.revision() == event.revision())
                    .count();
                assert_eq!(
                    here,
                    whole,
                    "seed {seed}: revision {} split",
                    event.revision()
                );
            }
            watch.received.extend(response.events);
        }
        for (index, watch) in watches.iter().enumerate() {
            let wanted = wanted(watch);
            if watch.compacted.is_none() {
                assert_eq!(
                    watch.received.len(),
                    wanted.len(),
                    "seed {seed} watch {index}"
                );
            }
            assert!(
                watch.received.len() <= wanted.len(),
                "seed {seed} watch {index}"
            );
            for (got, want) in watch.received.iter().zip(&wanted) {
                assert_eq!(
                    (got.kind, &got.kv),
                    (want.kind, &want.kv),
                    "seed {seed} watch {index}"
                );
                if !watch.prev_kv {
                    assert_eq!(got.prev_kv, None);
                } else if got.prev_kv != want.prev_kv {
                    assert!(
                        got.prev_kv.is_none() && got.revision() <= max_compaction,
                        "seed {seed} watch {index}: prev_kv of {got:?}"
                    );
                }
            }
        }
    });
}
