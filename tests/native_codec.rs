//! The native protocol's codec: every request and response survives encode/decode unchanged,
//! and no input (random bytes, damaged frames) makes decoding panic.

mod common;

use bytes::Bytes;
use common::kvgen::Gen;
use lode::api::native::{
    decode_request, decode_request_as, decode_response, encode_request, encode_request_as,
    encode_response, MemberRequest, Request, RequestMeta, Response, StatusResponse, WatchRequest,
};
use lode::mvcc::request::{ResponseHeader, WriteRequest, WriteResponse};
use lode::mvcc::validate::DEFAULT_MAX_TXN_OPS;
use lode::mvcc::ShardedKv;
use proptest::prelude::*;

fn requests_and_responses(seed: u64, count: usize) -> Vec<(Request, Response)> {
    let mut gen = Gen::new(seed | 1);
    let mut store = ShardedKv::new(2);
    let mut out = Vec::new();
    for _ in 0..count {
        let (request, response) = if gen.chance(30) {
            let range = gen.range(store.current_revision());
            let response = match store.range(&range) {
                Ok(r) => Response::Range(r),
                Err(e) => Response::Error {
                    code: 3,
                    message: e.to_string(),
                },
            };
            (Request::Range(range), response)
        } else {
            let write = gen.write(store.current_revision(), store.compact_revision());
            let response = match store.write(&write, DEFAULT_MAX_TXN_OPS) {
                Ok(r) => Response::Write(r),
                Err(e) => Response::Error {
                    code: 3,
                    message: e.to_string(),
                },
            };
            (Request::Write(write), response)
        };
        out.push((request, response));
    }
    out.push((
        Request::Snapshot,
        Response::Snapshot {
            header: ResponseHeader::at(12),
            remaining_bytes: 1 << 40,
            data: Bytes::from_static(b"LODESNAP and more"),
        },
    ));
    out.push((
        Request::Status,
        Response::Status(StatusResponse {
            header: ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            },
            version: "lode 0.1.0".into(),
            db_size: 5,
            leader: 6,
            raft_index: 7,
            raft_term: 8,
            raft_applied_index: 9,
            stages: vec![lode::replica::stages::StageSummary {
                name: "leader log sync".into(),
                count: 10,
                p50_ns: 11,
                p99_ns: 12,
                p999_ns: 13,
                max_ns: 14,
            }],
            is_learner: true,
        }),
    ));
    let member = lode::members::Member {
        id: lode::MemberId::new(0x8e9e05c52164694d),
        name: "infra1".into(),
        peer_urls: vec![
            "http://127.0.0.1:2380".into(),
            "http://10.0.0.1:2380".into(),
        ],
        client_urls: vec!["http://127.0.0.1:2379".into()],
        is_learner: false,
    };
    let learner = lode::members::Member {
        id: lode::MemberId::new(7),
        name: String::new(),
        peer_urls: vec!["http://127.0.0.1:2480".into()],
        client_urls: Vec::new(),
        is_learner: true,
    };
    let header = ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    };
    let listing = Response::Members {
        header,
        member: None,
        members: vec![member.clone(), learner.clone()],
    };
    out.push((
        Request::Member(MemberRequest::Add {
            peer_urls: learner.peer_urls.clone(),
            is_learner: true,
        }),
        Response::Members {
            header,
            member: Some(learner.clone()),
            members: vec![member.clone(), learner.clone()],
        },
    ));
    out.push((Request::Member(MemberRequest::Remove(7)), listing.clone()));
    out.push((
        Request::Member(MemberRequest::Update {
            id: 7,
            peer_urls: vec!["http://127.0.0.1:2481".into()],
        }),
        listing.clone(),
    ));
    out.push((
        Request::Member(MemberRequest::List { linearizable: true }),
        listing.clone(),
    ));
    out.push((Request::Member(MemberRequest::Promote(7)), listing));
    out.push((Request::MoveLeader(7), Response::MoveLeader { header }));
    let pair = |key: &str, value: &str, revision: i64| lode::mvcc::KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: 2,
        mod_revision: revision,
        version: revision - 1,
        value: Bytes::copy_from_slice(value.as_bytes()),
        lease: 0,
    };
    let events = vec![
        lode::watch::Event {
            kind: lode::watch::EventKind::Put,
            kv: pair("a", "new", 9),
            prev_kv: Some(pair("a", "old", 8)),
            sub: 0,
        },
        lode::watch::Event {
            kind: lode::watch::EventKind::Delete,
            kv: lode::mvcc::KeyValue {
                key: Bytes::from_static(b"b"),
                mod_revision: 9,
                ..Default::default()
            },
            prev_kv: None,
            sub: 0,
        },
    ];
    let watch_response = |events: Vec<lode::watch::Event>, canceled: bool| Response::Watch {
        header,
        response: lode::watch::stream::WatchResponse {
            revision: header.revision,
            watch_id: 3,
            created: !canceled,
            canceled,
            compact_revision: if canceled { 4 } else { 0 },
            cancel_reason: if canceled {
                "why".into()
            } else {
                String::new()
            },
            events,
            fragment: false,
        },
    };
    out.push((
        Request::Watch(WatchRequest::Create(lode::watch::stream::CreateWatch {
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"z"),
            start_revision: 5,
            progress_notify: true,
            no_put: false,
            no_delete: true,
            prev_kv: true,
            watch_id: 3,
            fragment: false,
            require_leader: true,
        })),
        watch_response(events, false),
    ));
    out.push((
        Request::Watch(WatchRequest::Cancel(3)),
        watch_response(Vec::new(), true),
    ));
    out.push((
        Request::Watch(WatchRequest::Progress),
        watch_response(Vec::new(), false),
    ));
    let lease_write = |outcome| {
        Response::Write(WriteResponse::Lease(lode::mvcc::request::LeaseResponse {
            header,
            outcome,
        }))
    };
    use lode::api::native::{LeaseAnswer, LeaseQuery};
    use lode::lease::{LeaseOutcome, LeaseRequest};
    out.push((
        Request::Write(WriteRequest::Lease(LeaseRequest::Grant {
            id: 0x694d_0000_0001,
            ttl: 60,
        })),
        lease_write(LeaseOutcome::Granted {
            id: 0x694d_0000_0001,
            ttl: 60,
        }),
    ));
    out.push((
        Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: -3 })),
        lease_write(LeaseOutcome::Revoked),
    ));
    out.push((
        Request::Write(WriteRequest::Lease(LeaseRequest::Renew {
            ids: vec![1, 2, 2],
        })),
        lease_write(LeaseOutcome::Renewed {
            ttls: vec![60, 0, 60],
        }),
    ));
    out.push((
        Request::Write(WriteRequest::Lease(LeaseRequest::Expire {
            leases: vec![(1, 4), (7, 0)],
        })),
        lease_write(LeaseOutcome::Expired { ids: vec![7] }),
    ));
    out.push((
        Request::Lease(LeaseQuery::KeepAlive(9)),
        Response::Lease(LeaseAnswer::KeepAlive {
            header,
            id: 9,
            ttl: 0,
        }),
    ));
    out.push((
        Request::Lease(LeaseQuery::TimeToLive { id: 9, keys: true }),
        Response::Lease(LeaseAnswer::TimeToLive {
            header,
            id: 9,
            ttl: 41,
            granted_ttl: 60,
            keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        }),
    ));
    out.push((
        Request::Lease(LeaseQuery::Leases),
        Response::Lease(LeaseAnswer::Leases {
            header,
            ids: vec![1, 9],
        }),
    ));
    out.push((
        Request::HashKv(12),
        Response::HashKv {
            header,
            hash: 0xdead_beef,
            compact_revision: 3,
            hash_revision: 12,
        },
    ));
    // Every auth call, with every field set, and an answer with every field set.
    for kind in lode::auth::request::AuthKind::ALL {
        let request = lode::auth::request::AuthRequest {
            kind,
            name: "alice".into(),
            role: "reader".into(),
            password: "secret".into(),
            password_hash: Bytes::from_static(b"$2a$10$hash"),
            no_password: gen.chance(50),
            permission: gen.chance(50).then(|| lode::auth::Permission {
                perm_type: lode::auth::PermType::ReadWrite,
                key: Bytes::from_static(b"dir/"),
                range_end: Bytes::from_static(b"dir0"),
            }),
            key: Bytes::from_static(b"k"),
            range_end: Bytes::from_static(b"\0"),
            token_prefix: "abcdefghijklmnop".into(),
            // Not on the wire (the serving core sets it).
            caller_revision: 0,
        };
        let response = lode::auth::request::AuthResponse {
            header,
            enabled: true,
            auth_revision: 7,
            token: "abcdefghijklmnop.42".into(),
            names: vec!["root".into(), "reader".into()],
            permissions: vec![lode::auth::Permission {
                perm_type: lode::auth::PermType::Read,
                key: Bytes::from_static(b"a"),
                range_end: Bytes::new(),
            }],
        };
        out.push((Request::Auth(request), Response::Auth(response)));
    }
    out
}

#[test]
fn every_request_and_response_round_trips() {
    let mut kinds = 0;
    for seed in 0..40u64 {
        for (id, (request, response)) in requests_and_responses(seed * 31 + 7, 200)
            .into_iter()
            .enumerate()
        {
            let id = id as u64 * 0x1_0000_0001;
            let frame = Bytes::from(encode_request(id, &request));
            assert_eq!(decode_request(&frame), Ok((id, request.clone())));
            // What a frame carries besides its request (gRPC's metadata) comes back too.
            let meta = RequestMeta {
                token: (seed % 2 == 0).then(|| format!("token.{seed}")),
                require_leader: seed % 3 == 0,
            };
            let frame = Bytes::from(encode_request_as(id, &request, &meta));
            assert_eq!(decode_request_as(&frame), Ok((id, request.clone(), meta)));
            let frame = Bytes::from(encode_response(id, &response));
            assert_eq!(decode_response(&frame), Ok((id, response.clone())));
            if matches!(response, Response::Write(WriteResponse::Txn(_))) {
                kinds += 1;
            }
        }
    }
    assert!(kinds > 100, "txn responses were exercised");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let frame = Bytes::from(bytes);
        let _ = decode_request(&frame);
        let _ = decode_response(&frame);
    }

    #[test]
    fn damaged_frames_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        for (request, response) in requests_and_responses(seed, 6) {
            for encoded in [encode_request(9, &request), encode_response(9, &response)] {
                let mut damaged = encoded.clone();
                for &(at, byte) in &flips {
                    let at = at % damaged.len();
                    damaged[at] ^= byte | 1;
                }
                let frame = Bytes::from(damaged);
                let _ = decode_request(&frame);
                let _ = decode_response(&frame);
                let truncated = Bytes::copy_from_slice(&encoded[..cut % encoded.len()]);
                let _ = decode_request(&truncated);
                let _ = decode_response(&truncated);
            }
        }
    }
}
