//! Native watch streams run the same stream loop as gRPC's (`server::watching`): what they
//! gained with it, on a real `lode` over raw native frames.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::server::{DataDir, Lode};
use lode::api::native::{Request, Response, WatchRequest};
use lode::mvcc::request::{PutRequest, RequestOp, TxnRequest, WriteRequest};
use lode::watch::stream::{CreateWatch, WatchResponse};

fn connect(lode: &Lode) -> TcpStream {
    let stream = TcpStream::connect(&lode.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

fn send(stream: &mut TcpStream, id: u64, request: &Request) {
    let mut frame = bytes::BytesMut::new();
    lode_protocol::frame::encode_frame(&mut frame, &lode::api::native::encode_request(id, request));
    stream.write_all(&frame).expect("send");
}

fn receive(stream: &mut TcpStream) -> (u64, Response) {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).expect("answer header");
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize - 4;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("answer");
    lode::api::native::decode_response(&Bytes::from(body)).expect("decode")
}

fn watch_response(stream: &mut TcpStream) -> WatchResponse {
    match receive(stream) {
        (7, Response::Watch { response, .. }) => response,
        other => panic!("expected a watch response, got {other:?}"),
    }
}

fn open(lode: &Lode, fragment: bool) -> TcpStream {
    let mut stream = connect(lode);
    let create = CreateWatch {
        key: Bytes::from_static(b"f/"),
        range_end: Bytes::from_static(b"f0"),
        prev_kv: true,
        fragment,
        ..CreateWatch::default()
    };
    send(
        &mut stream,
        7,
        &Request::Watch(WatchRequest::Create(create)),
    );
    assert!(watch_response(&mut stream).created);
    stream
}

/// As gRPC's test in tests/watch.rs: revisions of about 180 KB against a 100 KB limit come in
/// parts to a watcher that allowed it, every part but the last marked, and whole otherwise.
#[test]
fn large_revisions_are_fragmented_for_native_watchers_that_allow_it() {
    let dir = DataDir::new("native-watch-fragment");
    let lode = Lode::start(&dir.0, &["--max-request-bytes", "100000"]);
    let mut split = open(&lode, true);
    let mut whole = open(&lode, false);
    let mut writer = connect(&lode);
    for round in 0..2u8 {
        let txn = TxnRequest {
            compare: vec![],
            success: (0..10)
                .map(|i| {
                    RequestOp::Put(PutRequest {
                        key: Bytes::from(format!("f/{i}")),
                        value: Bytes::from(vec![b'a' + round; 9000]),
                        ..PutRequest::default()
                    })
                })
                .collect(),
            failure: vec![],
        };
        send(&mut writer, 1, &Request::Write(WriteRequest::Txn(txn)));
        match receive(&mut writer) {
            (1, Response::Write(_)) => {}
            other => panic!("expected the txn's answer, got {other:?}"),
        }
    }
    let mut parts = Vec::new();
    let mut events = 0;
    while events < 20 {
        let part = watch_response(&mut split);
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
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < 20 {
        let response = watch_response(&mut whole);
        assert!(!response.fragment);
        sizes.push(response.events.len());
    }
    assert_eq!(sizes, vec![10, 10]);
}

/// A native stream opened asking for a leader is refused with gRPC's `hasleader` answer when
/// the member has none: a member of a three-member cluster whose peers never started.
#[test]
fn a_native_stream_that_requires_a_leader_is_refused_without_one() {
    let mut members = common::cluster::cluster("native-watch-noleader");
    members[0].start();
    let lode = members[0].lode();
    let mut stream = connect(lode);
    let create = CreateWatch {
        key: Bytes::from_static(b"k"),
        require_leader: true,
        ..CreateWatch::default()
    };
    send(
        &mut stream,
        7,
        &Request::Watch(WatchRequest::Create(create)),
    );
    match receive(&mut stream) {
        (7, Response::Error { code, message }) => {
            assert_eq!((code, message.as_str()), (14, "etcdserver: no leader"));
        }
        other => panic!("expected no leader, got {other:?}"),
    }
}
