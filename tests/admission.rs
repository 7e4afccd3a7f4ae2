//! The one admission path (`server::admission`) on a real `lode`: the same request is refused
//! with the same etcd message and gRPC code whether it comes over gRPC (etcd-client), the JSON
//! gateway or the native protocol.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::server::{http, DataDir, Lode};
use common::{base64, grpc_error, runtime};
use lode::api::native::{Request, Response};
use lode::mvcc::request::{PutRequest, RangeRequest, WriteRequest};

/// One native request on a fresh connection, and its answer.
fn native(lode: &Lode, request: &Request) -> Response {
    let mut stream = TcpStream::connect(&lode.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut frame = bytes::BytesMut::new();
    lode_protocol::frame::encode_frame(&mut frame, &lode::api::native::encode_request(9, request));
    stream.write_all(&frame).expect("send");
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).expect("answer header");
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize - 4;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("answer");
    let (id, response) = lode::api::native::decode_response(&Bytes::from(body)).expect("decode");
    assert_eq!(id, 9);
    response
}

/// A native answer's error: its gRPC code and message.
fn native_error(response: Response) -> (i32, String) {
    match response {
        Response::Error { code, message } => (code as i32, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A gateway call's error: its gRPC code and message (grpc-gateway's body).
fn gateway_error(lode: &Lode, path: &str, body: &str) -> (i32, String) {
    let (status, answer) = http(&lode.client_url, "POST", path, body);
    assert!(status >= 400, "{status} {answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    (
        answer["code"].as_i64().expect("code") as i32,
        answer["message"].as_str().expect("message").to_string(),
    )
}

fn put(key: &str, value: usize) -> Request {
    Request::Write(WriteRequest::Put(PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(vec![b'x'; value]),
        ..PutRequest::default()
    }))
}

#[test]
fn an_oversized_write_is_refused_alike_by_every_front_end() {
    let dir = DataDir::new("admission-size");
    let lode = Lode::start(&dir.0, &["--max-request-bytes", "4096"]);
    let too_large = (3, "etcdserver: request is too large".to_string());
    let endpoint = lode.client_url.clone();
    let grpc = runtime().block_on(async move {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let put = grpc_error(
            client
                .put("big", vec![b'x'; 5000], None)
                .await
                .expect_err("too large"),
        );
        // An Auth call is a log entry too (etcd marshals it into its raft request).
        let user = grpc_error(
            client
                .user_add("u".repeat(5000), "pw", None)
                .await
                .expect_err("too large"),
        );
        // A read is bounded only by the receive limit: a 5000-byte key is served.
        let read = client.get(vec![b'k'; 5000], None).await.expect("get");
        assert_eq!(read.count(), 0);
        [put, user]
    });
    for (code, message) in grpc {
        assert_eq!((code as i32, message), too_large);
    }
    assert_eq!(native_error(native(&lode, &put("big", 5000))), too_large);
    let user = lode::auth::request::AuthRequest {
        name: "u".repeat(5000),
        password: "pw".into(),
        ..lode::auth::request::AuthRequest::new(lode::auth::request::AuthKind::UserAdd)
    };
    assert_eq!(native_error(native(&lode, &Request::Auth(user))), too_large);
    // The native protocol serves the same read (it refused every frame over the request
    // limit before the admission path was shared).
    let range = Request::Range(RangeRequest {
        key: Bytes::from(vec![b'k'; 5000]),
        ..RangeRequest::default()
    });
    match native(&lode, &range) {
        Response::Range(range) => assert_eq!(range.count, 0),
        other => panic!("expected a range, got {other:?}"),
    }
    let value = base64(&"x".repeat(5000));
    let body = format!(r#"{{"key":"{}","value":"{value}"}}"#, base64("big"));
    assert_eq!(gateway_error(&lode, "/v3/kv/put", &body), too_large);
    let body = format!(r#"{{"name":"{}","password":"pw"}}"#, "u".repeat(5000));
    assert_eq!(gateway_error(&lode, "/v3/auth/user/add", &body), too_large);
    // Nothing was written.
    let any = Request::Range(RangeRequest {
        key: Bytes::from_static(b"a"),
        ..RangeRequest::default()
    });
    match native(&lode, &any) {
        Response::Range(range) => assert_eq!(range.header.revision, 1),
        other => panic!("expected a range, got {other:?}"),
    }
}

#[test]
fn a_write_over_the_space_quota_is_refused_alike_by_every_front_end() {
    let dir = DataDir::new("admission-quota");
    let lode = Lode::start(&dir.0, &["--quota-backend-bytes", "100000"]);
    let no_space = (8, "etcdserver: mvcc: database space exceeded".to_string());
    let mut refused = None;
    for n in 0..40 {
        if let Response::Error { code, message } = native(&lode, &put(&format!("k{n}"), 10_000)) {
            refused = Some((code as i32, message));
            break;
        }
    }
    assert_eq!(refused, Some(no_space.clone()));
    // The member raises NOSPACE through the log; once applied, every write adding data is
    // refused whatever its size.
    let list = Request::Alarm(lode::alarm::AlarmRequest {
        action: lode::alarm::AlarmAction::Get,
        member_id: 0,
        alarm: lode::alarm::AlarmType::None,
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match native(&lode, &list) {
            Response::Alarm(alarms) if !alarms.alarms.is_empty() => break,
            _ if std::time::Instant::now() > deadline => panic!("NOSPACE never raised"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Now even a tiny put is refused, and a lease grant (etcd's quota covers both).
    assert_eq!(native_error(native(&lode, &put("tiny", 1))), no_space);
    let grant = Request::Write(WriteRequest::Lease(lode::lease::LeaseRequest::Grant {
        id: 0,
        ttl: 60,
    }));
    assert_eq!(native_error(native(&lode, &grant)), no_space);
    let endpoint = lode.client_url.clone();
    let grpc = runtime().block_on(async move {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let put = grpc_error(client.put("tiny", "t", None).await.expect_err("no space"));
        let grant = grpc_error(client.lease_grant(60, None).await.expect_err("no space"));
        [put, grant]
    });
    for (code, message) in grpc {
        assert_eq!((code as i32, message), no_space);
    }
    let body = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        base64("tiny"),
        base64("t")
    );
    assert_eq!(gateway_error(&lode, "/v3/kv/put", &body), no_space);
    assert_eq!(
        gateway_error(&lode, "/v3/lease/grant", r#"{"TTL":"60"}"#),
        no_space
    );
}
