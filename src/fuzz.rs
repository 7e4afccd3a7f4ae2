//! Fuzzing every decoder of untrusted bytes, on stable Rust: structured mutation of a corpus of
//! valid inputs (each target's own encoders make them), run under `catch_unwind` with a
//! watchdog for hangs. `tests/fuzz.rs` runs every target briefly in CI; `lode-bench fuzz
//! TARGET --seconds N` runs one for as long as asked.
//!
//! A target is a pure function of its input: decoders, the checks after them (request
//! validation, the peer message guard) and nothing that does I/O. A target passes an input
//! when it returns, whatever it returns: rejecting garbage is the point; panicking or not
//! returning is a failure. (The running member's side, where a rejected input must also change
//! nothing, is exercised against a real process by `tests/fuzz.rs`.)

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use lode_protocol::etcd::etcdserverpb as pb;

/// One decoder under test.
pub struct Target {
    pub name: &'static str,
    /// What it decodes, for `--help`.
    pub what: &'static str,
    /// Valid inputs to mutate.
    pub corpus: fn() -> Vec<Vec<u8>>,
    /// Decodes (and checks) one input.
    pub run: fn(&[u8]),
}

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "native-frames",
            what: "native protocol frames as a connection reads them, then request checks",
            corpus: native_corpus,
            run: native_run,
        },
        Target {
            name: "peer-frames",
            what: "peer transport frames (Raft messages, snapshot chunks, members queries and \
                   answers), then the peer message guard",
            corpus: peer_corpus,
            run: peer_run,
        },
        Target {
            name: "grpc-messages",
            what: "etcd's gRPC request messages (protobuf), converted and checked",
            corpus: grpc_corpus,
            run: grpc_run,
        },
        Target {
            name: "gateway-json",
            what: "etcd's JSON gateway bodies, converted and checked",
            corpus: json_corpus,
            run: json_run,
        },
        Target {
            name: "http2-headers",
            what: "the first HTTP/2 bytes through the :authority mending filter",
            corpus: http2_corpus,
            run: http2_run,
        },
        Target {
            name: "log-segments",
            what: "log segment files as recovery scans them",
            corpus: segment_corpus,
            run: segment_run,
        },
        Target {
            name: "snapshot-files",
            what: "lode snapshot files as a member loads them",
            corpus: snapshot_corpus,
            run: snapshot_run,
        },
        Target {
            name: "etcd-snapshots",
            what: "etcd snapshot databases (bbolt) as restore and status read them",
            corpus: etcd_db_corpus,
            run: etcd_db_run,
        },
    ]
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// xorshift64*: deterministic, so a failing run is repeated by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }
}

/// Values that break length and index arithmetic.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    4096,
];

/// One mutated input from `corpus` into `out`: a few stacked mutations of one entry (bit
/// flips, interesting integers at any width and byte order, inserted, removed, repeated and
/// spliced ranges, truncation).
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    if corpus.is_empty() {
        return;
    }
    out.extend_from_slice(&corpus[rng.below(corpus.len())]);
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let at = rng.below(len);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let end = (at + width).min(len);
                let start = if rng.below(2) == 0 { 0 } else { 8 - width };
                out[at..end].copy_from_slice(&bytes[start..start + (end - at)]);
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(16);
                let filler: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, filler);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(64));
                out.drain(at..at + count);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(64));
                let copy: Vec<u8> = out[at..at + count].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            6 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = rng.below(out.len() + 1);
                    out.truncate(to);
                    out.extend_from_slice(&other[from..]);
                }
            }
            7 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                if len > 0 {
                    let at = rng.below(len);
                    out[at] = out[at].wrapping_add(1 + rng.below(3) as u8);
                }
            }
        }
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run (mutated ones and the corpus itself).
    pub inputs: u64,
    /// Inputs that panicked, with the first one's bytes and message.
    pub panics: u64,
    pub first_panic: Option<(Vec<u8>, String)>,
    /// An input that did not return within the hang limit (the run stops there).
    pub hang: Option<Vec<u8>>,
    /// The slowest input's time.
    pub slowest: Duration,
}

/// How long one input may take before it counts as a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(10);

/// Runs `target` from `seed` on its corpus, then on mutated inputs until `inputs` were run
/// or `time` passed, whichever comes first. Panics are caught (and the process's panic hook
/// silenced meanwhile); a hang is reported once the watchdog sees no progress for
/// `HANG_LIMIT`, and the stuck worker is left behind.
pub fn run(target: &Target, seed: u64, inputs: u64, time: Duration) -> Report {
    let corpus = (target.corpus)();
    let run = target.run;
    let done = Arc::new(AtomicU64::new(0));
    let current: Arc<Mutex<Vec<u8>>> = Arc::default();
    let report: Arc<Mutex<Report>> = Arc::default();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let worker = {
        let (done, current, report) = (done.clone(), current.clone(), report.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + time;
            let mut rng = Rng::new(seed);
            let mut input = Vec::new();
            let mut count = 0u64;
            while count < inputs && Instant::now() < deadline {
                if (count as usize) < corpus.len() {
                    input.clone_from(&corpus[count as usize]);
                } else {
                    mutate(&mut rng, &corpus, &mut input);
                }
                if let Ok(mut slot) = current.lock() {
                    slot.clone_from(&input);
                }
                let started = Instant::now();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&input)));
                let took = started.elapsed();
                if let Ok(mut report) = report.lock() {
                    report.slowest = report.slowest.max(took);
                    if let Err(panic) = outcome {
                        report.panics += 1;
                        if report.first_panic.is_none() {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            report.first_panic = Some((input.clone(), message));
                        }
                    }
                }
                count += 1;
                done.store(count, Ordering::Release);
            }
        })
    };
    let mut last = (0, Instant::now());
    let hung = loop {
        if worker.is_finished() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = done.load(Ordering::Acquire);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > HANG_LIMIT {
            break true;
        }
    };
    std::panic::set_hook(previous_hook);
    let mut final_report = match report.lock() {
        Ok(mut report) => std::mem::take(&mut *report),
        Err(_) => Report::default(),
    };
    final_report.inputs = done.load(Ordering::Acquire);
    if hung {
        final_report.hang = current.lock().ok().map(|input| input.clone());
    } else {
        let _ = worker.join();
    }
    final_report
}

// ----- native frames -----

const MAX_FRAME: usize = (1536 << 10) + (512 << 10);

fn native_corpus() -> Vec<Vec<u8>> {
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

fn native_run(data: &[u8]) {
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

const FUZZ_CLUSTER: u64 = 0x1234;
const FUZZ_MEMBER: u64 = 1;

fn peer_corpus() -> Vec<Vec<u8>> {
    peer_frames(FUZZ_CLUSTER, FUZZ_MEMBER, 2)
}

/// Valid peer frames of cluster `cluster_id` to member `to`, sent as member `from`: Raft
/// messages of every kind a member sends, a snapshot chunk, a members query and answer (the
/// seeds `tests/fuzz.rs` mutates against a running member).
pub fn peer_frames(cluster_id: u64, to: u64, from: u64) -> Vec<Vec<u8>> {
    use crate::peer::wire::{
        encode_frame, encode_members, encode_members_query, encode_snapshot_chunk, SnapshotChunk,
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
    corpus
}

fn peer_run(data: &[u8]) {
    use crate::peer::wire::{decode_frame, decode_members, Frame};
    use crate::replica::guard::{check, Receiver};
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buffer, FUZZ_CLUSTER, FUZZ_MEMBER, 64 << 20) {
        if let Frame::Messages { messages, .. } = frame {
            for message in &messages {
                let receiver = Receiver {
                    id: FUZZ_MEMBER,
                    last_index: 9,
                };
                let _ = check(message, receiver, |id| (1..=3).contains(&id));
            }
        }
    }
    let mut buffer = BytesMut::from(data);
    let _ = decode_members(&mut buffer, 1 << 20);
    // Past the frame header, the bytes as one Raft message (protobuf), through the guard.
    if data.len() > 32 {
        use protobuf::Message as _;
        if let Ok(message) = raft::eraftpb::Message::parse_from_bytes(&data[32..]) {
            let receiver = Receiver {
                id: FUZZ_MEMBER,
                last_index: 9,
            };
            let _ = check(&message, receiver, |id| (1..=3).contains(&id));
        }
    }
}

// ----- gRPC messages -----

/// The first byte picks the message; the rest is its protobuf encoding.
fn grpc_corpus() -> Vec<Vec<u8>> {
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

fn grpc_run(data: &[u8]) {
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
fn json_corpus() -> Vec<Vec<u8>> {
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

fn json_run(data: &[u8]) {
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

fn http2_corpus() -> Vec<Vec<u8>> {
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

fn http2_run(data: &[u8]) {
    use crate::server::authority::AuthorityFilter;
    // Fed in two pieces split where the input says, as reads split it.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut filter = AuthorityFilter::new();
    let mut out = BytesMut::new();
    if filter.feed(&data[..split], &mut out).is_ok() && !filter.passes_through() {
        let _ = filter.feed(&data[split..], &mut out);
    }
}

// ----- log segments -----

fn segment_corpus() -> Vec<Vec<u8>> {
    use crate::wal::format::{encode_record, record_size, RecordHeader, RecordKind, SegmentHeader};
    let mut corpus = Vec::new();
    for count in [1u64, 5] {
        // A preallocated segment of the smallest size: records, then zeroes.
        let mut bytes = vec![0u8; crate::wal::format::SEGMENT_SIZE_MIN as usize];
        SegmentHeader {
            sequence: 3,
            segment_size: crate::wal::format::SEGMENT_SIZE_MIN,
        }
        .encode(&mut bytes);
        let mut offset = crate::wal::format::RECORDS_START as usize;
        let batch_start = offset as u32;
        for index in 1..=count {
            let payload = vec![index as u8; 40 + index as usize * 10];
            let header = RecordHeader {
                kind: RecordKind::EntryNormal,
                term: 2,
                index,
                payload_len: payload.len() as u32,
                batch_start,
            };
            if offset + record_size(payload.len()) > bytes.len() {
                break;
            }
            offset += encode_record(&mut bytes[offset..], 3, &header, &payload);
        }
        corpus.push(bytes);
    }
    corpus
}

fn segment_run(data: &[u8]) {
    let _ = crate::wal::recovery::scan_segment(data, 3, true);
    let _ = crate::wal::recovery::scan_segment(data, 3, false);
}

// ----- lode snapshots -----

fn sample_shard() -> crate::mvcc::shard::MvccShard {
    let mut shard = crate::mvcc::shard::MvccShard::new();
    for revision in 2..20i64 {
        let key = Bytes::from(format!("k{}", revision % 5));
        if revision % 7 == 0 {
            shard.apply(revision, 0, key, None);
        } else {
            shard.put(revision, 0, key, Bytes::from(revision.to_string()), 0);
        }
    }
    shard
}

fn snapshot_corpus() -> Vec<Vec<u8>> {
    let shard = sample_shard();
    let meta = crate::snapshot::SnapshotMeta {
        applied_index: 30,
        applied_term: 2,
        revision: 19,
        compact_revision: 3,
        voters: vec![1, 2, 3],
        alarms: Vec::new(),
        members: None,
        leases: Vec::new(),
        auth: crate::auth::AuthStore::new(),
    };
    let mut corpus = Vec::new();
    for block_bytes in [80, 100_000] {
        let mut file = Vec::new();
        crate::snapshot::encode_header(&meta, &mut file);
        let mut records = 0;
        let mut from = None;
        loop {
            let (written, next) = shard.export_into(19, from.as_ref(), block_bytes, &mut file);
            records += written;
            match next {
                Some(cursor) => from = Some(cursor),
                None => break,
            }
        }
        crate::snapshot::encode_end(records, &mut file);
        corpus.push(file);
    }
    corpus
}

fn snapshot_run(data: &[u8]) {
    let Ok((_, mut reader)) = crate::snapshot::SnapshotReader::open(Bytes::copy_from_slice(data))
    else {
        return;
    };
    let mut restored = crate::mvcc::shard::MvccShard::new();
    while let Ok(Some(block)) = reader.next_block() {
        for (key, versions) in block {
            restored.import(key, versions);
        }
    }
}

// ----- etcd snapshot databases -----

fn etcd_db_corpus() -> Vec<Vec<u8>> {
    let corpus: Vec<Vec<u8>> = snapshot_corpus()
        .into_iter()
        .filter_map(|file| {
            let (meta, mut reader) =
                crate::snapshot::SnapshotReader::open(Bytes::from(file)).ok()?;
            let mut records = Vec::new();
            while let Ok(Some(block)) = reader.next_block() {
                records.extend(block);
            }
            let keyspace = crate::etcd_db::from_lode(&meta, records);
            crate::etcd_db::write(&keyspace).ok()
        })
        .collect();
    corpus
}

fn etcd_db_run(data: &[u8]) {
    let _ = crate::etcd_db::status(data);
    if let Ok(keyspace) = crate::etcd_db::read(data) {
        let _ = crate::etcd_db::to_lode(&keyspace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_corpus_is_valid_input_its_target_accepts() {
        for target in targets() {
            let corpus = (target.corpus)();
            assert!(!corpus.is_empty(), "{}", target.name);
            for input in &corpus {
                (target.run)(input);
            }
        }
        // Spot checks that the corpora decode (a corpus of garbage would fuzz nothing).
        let native = native_corpus();
        let mut buffer = BytesMut::from(&native[0][..]);
        let frame = lode_protocol::frame::decode_frame(&mut buffer, MAX_FRAME)
            .expect("frame")
            .expect("whole");
        assert!(crate::api::native::decode_request(&frame).is_ok());
        let segment = segment_corpus();
        let scan = crate::wal::recovery::scan_segment(&segment[1], 3, true).expect("scan");
        assert_eq!(scan.records.len(), 5);
        let snapshot = snapshot_corpus();
        assert!(crate::snapshot::SnapshotReader::open(Bytes::from(snapshot[0].clone())).is_ok());
        assert!(crate::etcd_db::read(&etcd_db_corpus()[0]).is_ok());
        let peer = peer_corpus();
        let mut buffer = BytesMut::from(&peer[0][..]);
        assert!(matches!(
            crate::peer::wire::decode_frame(&mut buffer, FUZZ_CLUSTER, FUZZ_MEMBER, 1 << 20),
            Ok(Some(_))
        ));
    }

    #[test]
    fn mutation_is_deterministic_by_seed_and_varied() {
        let corpus = vec![b"hello, world".to_vec(), b"0123456789".to_vec()];
        let outputs = |seed| {
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            (0..50)
                .map(|_| {
                    mutate(&mut rng, &corpus, &mut out);
                    out.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(outputs(7), outputs(7));
        let distinct: std::collections::HashSet<Vec<u8>> = outputs(7).into_iter().collect();
        assert!(distinct.len() > 30);
    }

    #[test]
    fn a_panicking_target_is_caught_and_reported_with_its_input() {
        let target = Target {
            name: "panics",
            what: "a target that panics on inputs starting with 0xff",
            corpus: || vec![vec![1, 2, 3]],
            run: |data| {
                if data.first() == Some(&0xff) {
                    panic!("found it");
                }
            },
        };
        let report = run(&target, 3, 20_000, Duration::from_secs(30));
        assert_eq!(report.inputs, 20_000);
        assert!(report.panics > 0);
        let (input, message) = report.first_panic.expect("first panic");
        assert_eq!(input[0], 0xff);
        assert_eq!(message, "found it");
    }
}
