//! Fuzz targets for what arrives over the network: native frames, peer frames, gRPC
//! messages, gateway JSON and HTTP/2's first header block, each with its corpus.

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use lode_protocol::etcd::etcdserverpb as pb;

// ----- native frames -----

pub(super) const MAX_FRAME: usize = (1536 << 10) + (512 << 10);

pub(super) fn native_corpus() -> Vec<Vec<u8>> {
    use crate::api::native::{encode_request, LeaseQuery, MemberRequest, Request, WatchRequest};
    use crate::mvcc::request::WriteRequest;
    let requests = vec![
        Request::Range(crate::api::etcd::range_request(pb::RangeRequest {
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"z"),
            limit: 10,
            ..Default::default()
        })),
        Request::Write(WriteRequest::Put(crate::api::etcd::put_request(
            pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                lease: 7,
                prev_kv: true,
                ..Default::default()
            },
        ))),
        Request::Write(WriteRequest::DeleteRange(
            crate::api::etcd::delete_range_request(pb::DeleteRangeRequest {
                key: Bytes::from_static(b"a"),
                range_end: Bytes::from_static(&[0]),
                ..Default::default()
            }),
        )),
        Request::Write(WriteRequest::Txn(crate::api::etcd::txn_request(
            sample_txn(),
        ))),
        Request::Write(WriteRequest::Compact(crate::api::etcd::compaction_request(
            pb::CompactionRequest {
                revision: 5,
                physical: true,
            },
        ))),
        Request::Watch(WatchRequest::Create(crate::api::etcd::watch_create(
            pb::WatchCreateRequest {
                key: Bytes::from_static(b"a"),
                range_end: Bytes::from_static(b"b"),
                start_revision: 3,
                prev_kv: true,
                ..Default::default()
            },
        ))),
        Request::Watch(WatchRequest::Cancel(4)),
        Request::Lease(LeaseQuery::KeepAlive(9)),
        Request::Lease(LeaseQuery::TimeToLive { id: 9, keys: true }),
        Request::Member(MemberRequest::Add {
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            is_learner: true,
        }),
        Request::Status,
        Request::HashKv(3),
        Request::MoveLeader(2),
        Request::Auth(crate::auth::request::AuthRequest {
            name: "alice".into(),
            role: "reader".into(),
            password: "secret".into(),
            permission: Some(crate::auth::Permission {
                perm_type: crate::auth::PermType::ReadWrite,
                key: Bytes::from_static(b"dir/"),
                range_end: Bytes::from_static(b"dir0"),
            }),
            ..crate::auth::request::AuthRequest::new(
                crate::auth::request::AuthKind::RoleGrantPermission,
            )
        }),
    ];
    requests
        .iter()
        .enumerate()
        .map(|(id, request)| {
            let mut out = BytesMut::new();
            lode_protocol::frame::encode_frame(&mut out, &encode_request(id as u64 + 1, request));
            out.to_vec()
        })
        .collect()
}

fn sample_txn() -> pb::TxnRequest {
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        })),
    };
    let inner = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Greater as i32,
                target: pb::compare::CompareTarget::Mod as i32,
                key: Bytes::from_static(b"k"),
                range_end: Bytes::from_static(b"l"),
                target_union: Some(pb::compare::TargetUnion::ModRevision(3)),
            }],
            success: vec![put.clone()],
            failure: vec![],
        })),
    };
    pb::TxnRequest {
        compare: vec![pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Value as i32,
            key: Bytes::from_static(b"k"),
            range_end: Bytes::new(),
            target_union: Some(pb::compare::TargetUnion::Value(Bytes::from_static(b"v"))),
        }],
        success: vec![put, inner],
        failure: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: Bytes::from_static(b"k"),
                ..Default::default()
            })),
        }],
    }
}

pub(super) fn native_run(data: &[u8]) {
    use crate::api::native::{decode_request, Request};
    let check = |frame: &Bytes| {
        if let Ok((_, Request::Write(write))) = decode_request(frame) {
            let _ = crate::mvcc::validate::check_write(&write, 128);
        }
    };
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = lode_protocol::frame::decode_frame(&mut buffer, MAX_FRAME) {
        check(&frame);
    }
    // Mutations mostly break the 8-byte frame header; the flatbuffer behind it is fuzzed
    // directly too.
    if data.len() > 8 {
        check(&Bytes::copy_from_slice(&data[8..]));
    }
}

// ----- peer frames -----

pub(super) const FUZZ_CLUSTER: u64 = 0x1234;
pub(super) const FUZZ_MEMBER: u64 = 1;

pub(super) fn peer_corpus() -> Vec<Vec<u8>> {
    peer_frames(FUZZ_CLUSTER, FUZZ_MEMBER, 2)
}

/// Valid peer frames of cluster `cluster_id` to member `to`, sent as member `from`: Raft
/// messages of every kind a member sends, a snapshot chunk, a members query and answer, a hello, a
/// dashboard report query and answer (the seeds `tests/fuzz.rs` mutates against a running member).
pub fn peer_frames(cluster_id: u64, to: u64, from: u64) -> Vec<Vec<u8>> {
    use crate::peer::wire::{
        encode_frame, encode_hello, encode_members, encode_members_query, encode_report,
        encode_report_query, encode_snapshot_chunk, SnapshotChunk,
    };
    use raft::eraftpb::{Entry, Message, MessageType};
    let message = |kind: MessageType| {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.from = from;
        message.to = to;
        message.term = 3;
        message.log_term = 3;
        message.index = 7;
        message.commit = 6;
        message
    };
    let mut append = message(MessageType::MsgAppend);
    append.entries = (8..11)
        .map(|index| Entry {
            index,
            term: 3,
            data: Bytes::from(vec![index as u8; 24]),
            ..Default::default()
        })
        .collect::<Vec<_>>()
        .into();
    let mut snapshot = message(MessageType::MsgSnapshot);
    snapshot.mut_snapshot().mut_metadata().index = 40;
    snapshot.mut_snapshot().mut_metadata().term = 3;
    snapshot
        .mut_snapshot()
        .mut_metadata()
        .mut_conf_state()
        .voters = vec![1, 2, 3];
    let mut corpus = Vec::new();
    for batch in [
        vec![append, message(MessageType::MsgHeartbeat)],
        vec![message(MessageType::MsgRequestVote)],
        vec![message(MessageType::MsgAppendResponse)],
        vec![snapshot],
    ] {
        let mut out = BytesMut::new();
        encode_frame(cluster_id, from, &batch, &mut out);
        corpus.push(out.to_vec());
    }
    let mut out = BytesMut::new();
    encode_snapshot_chunk(
        cluster_id,
        from,
        &SnapshotChunk {
            index: 40,
            term: 3,
            offset: 0,
            file_size: 64,
            data: Bytes::from(vec![7u8; 64]),
        },
        &mut out,
    );
    corpus.push(out.to_vec());
    let mut out = BytesMut::new();
    encode_members_query(&mut out);
    corpus.push(out.to_vec());
    let mut out = BytesMut::new();
    encode_members(cluster_id, from, b"registry bytes", &mut out);
    corpus.push(out.to_vec());
    let mut out = BytesMut::new();
    encode_hello(cluster_id, from, &["http://10.0.0.4:2380".into()], &mut out);
    encode_frame(cluster_id, from, &[], &mut out);
    corpus.push(out.to_vec());
    let mut out = BytesMut::new();
    encode_report_query(cluster_id, from, 3, &mut out);
    corpus.push(out.to_vec());
    let mut out = BytesMut::new();
    encode_report(cluster_id, from, b"{\"term\":3}", &mut out);
    corpus.push(out.to_vec());
    corpus
}

pub(super) fn peer_run(data: &[u8]) {
    use crate::peer::wire::{decode_frame, decode_members, decode_report, Frame};
    use crate::replica::guard::{check, Receiver, Sender};
    let sender = |id: u64| match id {
        1..=3 => Sender::Configured,
        9 => Sender::Removed,
        _ => Sender::Unknown,
    };
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buffer, FUZZ_CLUSTER, FUZZ_MEMBER, 64 << 20) {
        if let Frame::Messages { messages, .. } = frame {
            for message in &messages {
                let receiver = Receiver {
                    id: FUZZ_MEMBER,
                    last_index: 9,
                    leader: message.term % 3,
                };
                let _ = check(message, receiver, sender);
            }
        }
    }
    let mut buffer = BytesMut::from(data);
    let _ = decode_members(&mut buffer, 1 << 20);
    let mut buffer = BytesMut::from(data);
    if let Ok(Some(report)) = decode_report(&mut buffer, FUZZ_CLUSTER, 2, 1 << 20) {
        let _ = serde_json::from_slice::<crate::dashboard::MemberReport>(&report);
    }
    // Past the frame header, the bytes as one Raft message (protobuf), through the guard.
    if data.len() > 32 {
        use protobuf::Message as _;
        if let Ok(message) = raft::eraftpb::Message::parse_from_bytes(&data[32..]) {
            let receiver = Receiver {
                id: FUZZ_MEMBER,
                last_index: 9,
                leader: message.term % 3,
            };
            let _ = check(&message, receiver, sender);
        }
    }
}

// ----- gRPC messages -----

/// The first byte picks the message; the rest is its protobuf encoding.
pub(super) fn grpc_corpus() -> Vec<Vec<u8>> {
    let tagged = |tag: u8, body: Vec<u8>| {
        let mut out = vec![tag];
        out.extend(body);
        out
    };
    vec![
        tagged(
            0,
            pb::RangeRequest {
                key: Bytes::from_static(b"a"),
                range_end: Bytes::from_static(b"z"),
                limit: 3,
                revision: 2,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        tagged(
            1,
            pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                lease: 1,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        tagged(
            2,
            pb::DeleteRangeRequest {
                key: Bytes::from_static(b"a"),
                range_end: Bytes::from_static(&[0]),
                prev_kv: true,
            }
            .encode_to_vec(),
        ),
        tagged(3, sample_txn().encode_to_vec()),
        tagged(
            4,
            pb::CompactionRequest {
                revision: 9,
                physical: false,
            }
            .encode_to_vec(),
        ),
        tagged(
            5,
            pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key: Bytes::from_static(b"a"),
                        range_end: Bytes::from_static(b"b"),
                        filters: vec![1],
                        ..Default::default()
                    },
                )),
            }
            .encode_to_vec(),
        ),
        tagged(6, pb::LeaseGrantRequest { ttl: 10, id: 5 }.encode_to_vec()),
    ]
}

pub(super) fn grpc_run(data: &[u8]) {
    let Some((&tag, body)) = data.split_first() else {
        return;
    };
    grpc_decode(tag, body);
}

fn grpc_decode(tag: u8, body: &[u8]) {
    use crate::mvcc::validate;
    match tag % 7 {
        0 => {
            if let Ok(request) = pb::RangeRequest::decode(body) {
                let _ = validate::check_range(&crate::api::etcd::range_request(request));
            }
        }
        1 => {
            if let Ok(request) = pb::PutRequest::decode(body) {
                let _ = validate::check_put(&crate::api::etcd::put_request(request));
            }
        }
        2 => {
            if let Ok(request) = pb::DeleteRangeRequest::decode(body) {
                let _ = validate::check_delete(&crate::api::etcd::delete_range_request(request));
            }
        }
        3 => {
            if let Ok(request) = pb::TxnRequest::decode(body) {
                let _ = validate::check_txn(&crate::api::etcd::txn_request(request), 128);
            }
        }
        4 => {
            if let Ok(request) = pb::CompactionRequest::decode(body) {
                let _ = crate::api::etcd::compaction_request(request);
            }
        }
        5 => {
            if let Ok(pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
            }) = pb::WatchRequest::decode(body)
            {
                let _ = crate::api::etcd::watch_create(create);
            }
        }
        _ => {
            let _ = pb::LeaseGrantRequest::decode(body);
        }
    }
}

// ----- gateway JSON -----

/// The first byte picks the message; the rest is its JSON body.
pub(super) fn json_corpus() -> Vec<Vec<u8>> {
    let tagged = |tag: u8, body: &str| {
        let mut out = vec![tag];
        out.extend_from_slice(body.as_bytes());
        out
    };
    vec![
        tagged(
            0,
            r#"{"key":"YQ==","range_end":"eg==","limit":"10","revision":"2"}"#,
        ),
        tagged(
            1,
            r#"{"key":"aw==","value":"dg==","lease":"7","prev_kv":true}"#,
        ),
        tagged(2, r#"{"key":"YQ==","range_end":"AA=="}"#),
        tagged(
            3,
            r#"{"compare":[{"result":"EQUAL","target":"VALUE","key":"aw==","value":"dg=="}],"success":[{"request_put":{"key":"aw==","value":"dw=="}}],"failure":[{"request_range":{"key":"aw=="}}]}"#,
        ),
        tagged(4, r#"{"revision":"9","physical":true}"#),
        tagged(
            5,
            r#"{"create_request":{"key":"YQ==","start_revision":"1"}}"#,
        ),
        tagged(6, r#"{"TTL":"10","ID":"0"}"#),
    ]
}

pub(super) fn json_run(data: &[u8]) {
    use crate::mvcc::validate;
    let Some((&tag, body)) = data.split_first() else {
        return;
    };
    match tag % 7 {
        0 => {
            if let Ok(request) = serde_json::from_slice::<pb::RangeRequest>(body) {
                let _ = validate::check_range(&crate::api::etcd::range_request(request));
            }
        }
        1 => {
            if let Ok(request) = serde_json::from_slice::<pb::PutRequest>(body) {
                let _ = validate::check_put(&crate::api::etcd::put_request(request));
            }
        }
        2 => {
            if let Ok(request) = serde_json::from_slice::<pb::DeleteRangeRequest>(body) {
                let _ = validate::check_delete(&crate::api::etcd::delete_range_request(request));
            }
        }
        3 => {
            if let Ok(request) = serde_json::from_slice::<pb::TxnRequest>(body) {
                let _ = validate::check_txn(&crate::api::etcd::txn_request(request), 128);
            }
        }
        4 => {
            let _ = serde_json::from_slice::<pb::CompactionRequest>(body)
                .map(crate::api::etcd::compaction_request);
        }
        5 => {
            if let Ok(pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
            }) = serde_json::from_slice::<pb::WatchRequest>(body)
            {
                let _ = crate::api::etcd::watch_create(create);
            }
        }
        _ => {
            let _ = serde_json::from_slice::<pb::LeaseGrantRequest>(body);
        }
    }
}

// ----- HTTP/2's first header block -----

/// An HTTP/2 frame appended to `out` (hostile and fuzzed inputs are built of them).
pub fn http2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    let length = payload.len();
    out.extend_from_slice(&[
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
        kind,
        flags,
    ]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A client's first bytes: the preface, an empty SETTINGS, then `block` as stream 1's header
/// block in a HEADERS frame and as many CONTINUATION frames (16 KiB each) as it takes.
pub fn http2_opening(block: &[u8]) -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    http2_frame(0x4, 0, 0, &[], &mut bytes);
    let pieces: Vec<&[u8]> = block.chunks(16_384).collect();
    for (n, piece) in pieces.iter().enumerate() {
        let kind = if n == 0 { 0x1 } else { 0x9 };
        let flags = if n + 1 == pieces.len() { 0x4 } else { 0 };
        http2_frame(kind, flags, 1, piece, &mut bytes);
    }
    bytes
}

pub(super) fn http2_corpus() -> Vec<Vec<u8>> {
    let frame = http2_frame;
    let literal = |name: &[u8], value: &[u8], out: &mut Vec<u8>| {
        // Literal without indexing, new name, no Huffman (lengths under 127).
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    let mut corpus = Vec::new();
    for authority in [&b"127.0.0.1:2379"[..], b"", b"#initially=[127.0.0.1:2379]"] {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        literal(b":path", b"/etcdserverpb.KV/Range", &mut block);
        literal(b":authority", authority, &mut block);
        literal(b"content-type", b"application/grpc", &mut block);
        block.push(0x40); // literal with indexing, new name: enters the dynamic table
        block.push(2);
        block.extend_from_slice(b"te");
        block.push(8);
        block.extend_from_slice(b"trailers");
        block.push(0x80 | 62); // a reference to it
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100], &mut bytes);
        let (first, rest) = block.split_at(block.len() / 2);
        frame(0x1, 0, 1, first, &mut bytes);
        frame(0x9, 0x4, 1, rest, &mut bytes);
        frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 10, 0], &mut bytes);
        corpus.push(bytes);
    }
    corpus
}

pub(super) fn http2_run(data: &[u8]) {
    use crate::server::authority::AuthorityFilter;
    // Fed in two pieces split where the input says, as reads split it.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut filter = AuthorityFilter::new();
    let mut out = BytesMut::new();
    if filter.feed(&data[..split], &mut out).is_ok() && !filter.passes_through() {
        let _ = filter.feed(&data[split..], &mut out);
    }
}
