//! The running server against the pure keyspace: random puts, ranges, deletes, txns and
//! compactions go to a real lode over the native protocol and to `ShardedKv`, which
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
                let write = gen.write(reference.current_revision(), reference.compact_revision());
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
