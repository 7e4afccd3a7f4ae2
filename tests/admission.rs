//! The one admission path (`server::admission`) on a real `lode`: the same request is refused
//! with the same etcd message and gRPC code whether it comes over gRPC (etcd-client), the JSON
//! gateway or the native protocol: requests too large, over the space quota, asking for a
//! leader the member does not know (`hasleader`), made of a learner, and root's maintenance
//! calls.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{cluster, cluster_of, joiner_of, wait_for_leader, Member};
use common::server::{free_port, http, http_with_headers, DataDir, Lode};
use common::{base64, grpc_error, json, runtime};
use lode::api::native::{MemberRequest, Request, RequestMeta, Response};
use lode::mvcc::request::{PutRequest, RangeRequest, WriteRequest};

/// etcd's answer to a call asking for a leader (`hasleader`) while the member knows none.
const NO_LEADER: (i32, &str) = (14, "etcdserver: no leader");

/// etcd's answer to what a learner does not serve (etcd 3.5: Unavailable).
const LEARNER: (i32, &str) = (14, "etcdserver: rpc not supported for learner");

/// One native request on a fresh connection, and its answer.
fn native(lode: &Lode, request: &Request) -> Response {
    native_as(lode, request, &RequestMeta::default())
}

/// `native`, the frame carrying `meta` (a token, `require_leader`).
fn native_as(lode: &Lode, request: &Request, meta: &RequestMeta) -> Response {
    let mut stream = TcpStream::connect(&lode.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut frame = bytes::BytesMut::new();
    lode_protocol::frame::encode_frame(
        &mut frame,
        &lode::api::native::encode_request_as(9, request, meta),
    );
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
    gateway_error_with(lode, path, &[], body)
}

/// `gateway_error` for a call with extra HTTP `headers`; the HTTP status must be the one
/// grpc-gateway gives the code.
fn gateway_error_with(
    lode: &Lode,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (i32, String) {
    let (status, answer) = http_with_headers(&lode.client_url, "POST", path, headers, body);
    let answer = json(&answer);
    let code = answer["code"].as_i64().expect("code") as i32;
    assert_eq!(status, http_status(code), "{answer}");
    (
        code,
        answer["message"].as_str().expect("message").to_string(),
    )
}

/// A gateway stream refused at its opening, as grpc-gateway answers one: the HTTP status of
/// the code and the stream's error line; its gRPC code and message.
fn gateway_stream_refused(
    lode: &Lode,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (i32, String) {
    let (status, answer) = http_with_headers(&lode.client_url, "POST", path, headers, body);
    let line = json(answer.lines().next().expect("an error line"));
    let error = &line["error"];
    let code = error["grpc_code"].as_i64().expect("code") as i32;
    assert_eq!(status, http_status(code), "{line}");
    assert_eq!(
        error["http_code"].as_u64(),
        Some(u64::from(status)),
        "{line}"
    );
    (
        code,
        error["message"].as_str().expect("message").to_string(),
    )
}

/// The HTTP status grpc-gateway answers a gRPC code with (the codes these tests meet).
fn http_status(code: i32) -> u16 {
    match code {
        3 | 9 | 11 => 400,
        7 => 403,
        8 => 429,
        14 => 503,
        16 => 401,
        other => panic!("no status for code {other} here"),
    }
}

/// (code, message) as the tests compare them.
fn owned((code, message): (i32, &str)) -> (i32, String) {
    (code, message.to_string())
}

/// An etcd-client error as (code, message).
fn refused(error: etcd_client::Error) -> (i32, String) {
    let (code, message) = grpc_error(error);
    (code as i32, message)
}

/// A range of `key`, serializable or linearizable.
fn range(key: &str, serializable: bool) -> Request {
    Request::Range(RangeRequest {
        key: Bytes::from(key.to_string()),
        serializable,
        ..RangeRequest::default()
    })
}

/// The member's status over the native protocol.
fn native_status(lode: &Lode) -> lode::api::native::StatusResponse {
    match native(lode, &Request::Status) {
        Response::Status(status) => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Polls `member`'s status until `done` holds (at most a minute).
fn wait_for_status(
    member: &Member,
    what: &str,
    done: impl Fn(&lode::api::native::StatusResponse) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&native_status(member.lode())) {
        assert!(Instant::now() < deadline, "{} never {what}", member.name);
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// etcd's `hasleader`: a call asking for a leader (gRPC metadata `hasleader=true`, the
/// gateway's `Grpc-Metadata-Hasleader: true`, a native frame's `require_leader`) is refused
/// with "etcdserver: no leader" (Unavailable) once the member knows no leader, unary calls as
/// streams; the same calls without it are served. A follower of three whose peers are stopped;
/// the test waits until the member itself reports no leader.
#[test]
fn a_call_asking_for_a_leader_is_refused_without_one_on_every_front_end() {
    let mut members = cluster("admission-hasleader");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let lone = (leader + 1) % 3;
    let endpoint = members[lone].lode().client_url.clone();
    let rt = runtime();
    let hasleader = || Some(etcd_client::ConnectOptions::new().with_require_leader(true));
    let serializable = || Some(etcd_client::GetOptions::new().with_serializable());
    // With a leader, a call asking for one is served.
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], hasleader())
            .await
            .expect("connect");
        client.put("k", "v", None).await.expect("put with a leader");
    });
    let with_header = [("Grpc-Metadata-Hasleader", "true")];
    let body = format!(r#"{{"key":"{}","serializable":true}}"#, base64("k"));
    let (status, _) = http_with_headers(&endpoint, "POST", "/v3/kv/range", &with_header, &body);
    assert_eq!(status, 200);

    for (index, member) in members.iter_mut().enumerate() {
        if index != lone {
            if let Some(lode) = member.lode.as_mut() {
                lode.kill();
            }
        }
    }
    wait_for_status(&members[lone], "lost its leader", |status| {
        status.leader == 0
    });
    let lode = members[lone].lode();

    // gRPC: unary calls and streams alike, Status included (etcd's interceptors come first).
    let grpc = rt.block_on(async {
        let mut asking = etcd_client::Client::connect([endpoint.as_str()], hasleader())
            .await
            .expect("connect");
        let get = refused(
            asking
                .get("k", serializable())
                .await
                .expect_err("no leader"),
        );
        let status = refused(asking.status().await.expect_err("no leader"));
        let members = refused(asking.member_list().await.expect_err("no leader"));
        let watch = match asking.watch("k", None).await {
            Err(error) => refused(error),
            Ok(mut stream) => refused(stream.message().await.expect_err("no leader")),
        };
        // Without it, the member answers from what it has.
        let mut plain = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let read = plain.get("k", serializable()).await.expect("served");
        assert_eq!(read.kvs()[0].value(), b"v");
        let status_of = plain.status().await.expect("served");
        assert_eq!(status_of.leader(), 0);
        [get, status, members, watch]
    });
    for answer in grpc {
        assert_eq!(answer, owned(NO_LEADER));
    }

    // The gateway: grpc-gateway passes `Grpc-Metadata-<key>` headers on as metadata.
    assert_eq!(
        gateway_error_with(lode, "/v3/kv/range", &with_header, &body),
        owned(NO_LEADER)
    );
    assert_eq!(
        gateway_error_with(lode, "/v3/maintenance/status", &with_header, "{}"),
        owned(NO_LEADER)
    );
    let watch = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, base64("k"));
    assert_eq!(
        gateway_stream_refused(lode, "/v3/watch", &with_header, &watch),
        owned(NO_LEADER)
    );
    // Only "true" asks, as etcd compares it.
    let other_value = [("Grpc-Metadata-Hasleader", "TRUE")];
    let (status, answer) =
        http_with_headers(&endpoint, "POST", "/v3/kv/range", &other_value, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["kvs"][0]["value"], base64("v"));

    // The native protocol: the frame's `require_leader`.
    let asking = RequestMeta {
        require_leader: true,
        ..RequestMeta::default()
    };
    for request in [range("k", true), Request::Status] {
        match native_as(lode, &request, &asking) {
            Response::Error { code, message } => {
                assert_eq!((code as i32, message), owned(NO_LEADER), "{request:?}")
            }
            other => panic!("expected no leader for {request:?}, got {other:?}"),
        }
    }
    let watch = Request::Watch(lode::api::native::WatchRequest::Create(
        lode::watch::stream::CreateWatch {
            key: Bytes::from_static(b"k"),
            ..Default::default()
        },
    ));
    match native_as(lode, &watch, &asking) {
        Response::Error { code, message } => assert_eq!((code as i32, message), owned(NO_LEADER)),
        other => panic!("expected no leader, got {other:?}"),
    }
    match native(lode, &range("k", true)) {
        Response::Range(range) => assert_eq!(range.kvs[0].value, Bytes::from_static(b"v")),
        other => panic!("expected a range, got {other:?}"),
    }
}

/// A learner serves Status, serializable ranges and the Snapshot stream, and refuses
/// everything else with etcd's "etcdserver: rpc not supported for learner" (Unavailable, as
/// etcd 3.5), alike on gRPC, the gateway and the native protocol; once promoted, it serves
/// everything. A real learner: added with etcd's MemberAdd (isLearner) and started as etcd
/// starts a joining member.
#[test]
fn a_learner_serves_only_status_serializable_ranges_and_snapshots_on_every_front_end() {
    let mut voters = cluster_of("admission-learner", 1);
    voters[0].start();
    wait_for_leader(&voters, 0);
    let voter = voters[0].lode().client_url.clone();
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let rt = runtime();
    let learner_id = rt.block_on(async {
        let mut client = etcd_client::Client::connect([voter.as_str()], None)
            .await
            .expect("connect");
        client.put("k", "v", None).await.expect("put");
        let added = client
            .member_add(
                [peer_url.as_str()],
                Some(etcd_client::MemberAddOptions::new().with_is_learner()),
            )
            .await
            .expect("member add --learner");
        let member = added.member().expect("the added member");
        assert!(member.is_learner());
        member.id()
    });
    let mut learner = joiner_of(&voters, "admission-learner-m1", &peer_url);
    learner.start();
    wait_for_status(&learner, "became a learner", |status| status.is_learner);
    // What it holds, once it caught up (serializable reads are served).
    let lode = learner.lode();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(native(lode, &range("k", true)), Response::Range(r) if r.count == 1) {
        assert!(Instant::now() < deadline, "the learner never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = lode.client_url.clone();

    // gRPC (etcd-client): what it serves, then one call of each service it refuses.
    let served_and_refused = rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let status = client.status().await.expect("status is served");
        assert!(status.is_learner());
        let read = client
            .get(
                "k",
                Some(etcd_client::GetOptions::new().with_serializable()),
            )
            .await
            .expect("a serializable range is served");
        assert_eq!(read.kvs()[0].value(), b"v");
        let mut snapshot = client
            .snapshot()
            .await
            .expect("the snapshot stream is served");
        let piece = snapshot.message().await.expect("a piece").expect("a piece");
        assert!(!piece.blob().is_empty());
        let mut refusals = vec![
            (
                "linearizable get",
                refused(client.get("k", None).await.expect_err("refused")),
            ),
            (
                "put",
                refused(client.put("k", "w", None).await.expect_err("refused")),
            ),
            (
                "txn",
                refused(
                    client
                        .txn(etcd_client::Txn::new())
                        .await
                        .expect_err("refused"),
                ),
            ),
            (
                "compact",
                refused(client.compact(1, None).await.expect_err("refused")),
            ),
            (
                "member list",
                refused(client.member_list().await.expect_err("refused")),
            ),
            (
                "alarm list",
                refused(
                    client
                        .alarm(
                            etcd_client::AlarmAction::Get,
                            etcd_client::AlarmType::None,
                            None,
                        )
                        .await
                        .expect_err("refused"),
                ),
            ),
            (
                "hashkv",
                refused(client.hash_kv(0).await.expect_err("refused")),
            ),
            (
                "defragment",
                refused(client.defragment().await.expect_err("refused")),
            ),
            (
                "move leader",
                refused(client.move_leader(1).await.expect_err("refused")),
            ),
            (
                "lease grant",
                refused(client.lease_grant(60, None).await.expect_err("refused")),
            ),
            (
                "lease list",
                refused(client.leases().await.expect_err("refused")),
            ),
            (
                "lease keep-alive",
                refused(client.lease_keep_alive(1).await.expect_err("refused")),
            ),
            (
                "role list",
                refused(client.role_list().await.expect_err("refused")),
            ),
            (
                "lock",
                refused(client.lock("l", None).await.expect_err("refused")),
            ),
            (
                "election leader",
                refused(client.leader("e").await.expect_err("refused")),
            ),
        ];
        let watch = match client.watch("k", None).await {
            Err(error) => refused(error),
            Ok(mut stream) => refused(stream.message().await.expect_err("refused")),
        };
        refusals.push(("watch", watch));
        let mut health = lode_protocol::etcd::health::health_client::HealthClient::new(
            common::grpc_channel(&endpoint).await,
        );
        let check = health
            .check(lode_protocol::etcd::health::HealthCheckRequest::default())
            .await
            .expect_err("refused");
        refusals.push((
            "health check",
            (check.code() as i32, check.message().to_string()),
        ));
        refusals
    });
    for (call, answer) in served_and_refused {
        assert_eq!(answer, owned(LEARNER), "{call}");
    }

    // The gateway: the same calls through grpc-gateway's paths.
    let (status, answer) = http(&endpoint, "POST", "/v3/maintenance/status", "{}");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["isLearner"], true);
    let serializable = format!(r#"{{"key":"{}","serializable":true}}"#, base64("k"));
    let (status, answer) = http(&endpoint, "POST", "/v3/kv/range", &serializable);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["kvs"][0]["value"], base64("v"));
    let linearizable = format!(r#"{{"key":"{}"}}"#, base64("k"));
    let put_body = format!(r#"{{"key":"{}","value":"{}"}}"#, base64("k"), base64("w"));
    for (path, body) in [
        ("/v3/kv/range", linearizable.as_str()),
        ("/v3/kv/put", put_body.as_str()),
        ("/v3/cluster/member/list", "{}"),
        ("/v3/maintenance/defragment", "{}"),
        ("/v3/lease/grant", r#"{"TTL":"60"}"#),
        ("/v3/auth/status", "{}"),
    ] {
        assert_eq!(gateway_error(lode, path, body), owned(LEARNER), "{path}");
    }
    let watch = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, base64("k"));
    assert_eq!(
        gateway_stream_refused(lode, "/v3/watch", &[], &watch),
        owned(LEARNER)
    );

    // The native protocol.
    assert!(native_status(lode).is_learner);
    let watch = Request::Watch(lode::api::native::WatchRequest::Create(
        lode::watch::stream::CreateWatch {
            key: Bytes::from_static(b"k"),
            ..Default::default()
        },
    ));
    for request in [
        range("k", false),
        put("k", 1),
        Request::Member(MemberRequest::List {
            linearizable: false,
        }),
        Request::HashKv(0),
        watch,
    ] {
        match native(lode, &request) {
            Response::Error { code, message } => {
                assert_eq!((code as i32, message), owned(LEARNER), "{request:?}")
            }
            other => panic!("expected the learner's refusal for {request:?}, got {other:?}"),
        }
    }

    // Promoted once in sync (the leader refuses until then): a voter serves everything.
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([voter.as_str()], None)
            .await
            .expect("connect");
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = client.member_promote(learner_id).await {
            let (_, message) = grpc_error(error);
            assert!(message.contains("in sync with leader"), "{message}");
            assert!(Instant::now() < deadline, "the learner was never promoted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    wait_for_status(&learner, "was promoted", |status| !status.is_learner);
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        client.put("k", "w", None).await.expect("a voter's put");
        let read = client
            .get("k", None)
            .await
            .expect("a voter's linearizable get");
        assert_eq!(read.kvs()[0].value(), b"w");
        client.member_list().await.expect("a voter's member list");
    });
    drop(learner);
}

/// A gRPC call carrying `token` in its metadata, as etcd's clients send it.
fn call<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("metadata"));
    request
}

/// A raw gRPC call's outcome as (code, message); (0, "") when it succeeded.
fn answer<T>(result: Result<T, tonic::Status>) -> (i32, String) {
    match result {
        Ok(_) => (0, String::new()),
        Err(status) => (status.code() as i32, status.message().to_string()),
    }
}

/// Defragment and Downgrade pass the admission path as every other call: with auth on, a
/// token that names nobody is refused "invalid auth token", a user other than root
/// "permission denied", root's Defragment succeeds (lode has nothing to defragment) and
/// root's Downgrade gets lode's answer (no older version to go back to); alike over gRPC and
/// the gateway (the native protocol has neither call).
#[test]
fn defragment_and_downgrade_are_admitted_as_roots_calls() {
    use lode_protocol::etcd::etcdserverpb as pb;
    use pb::maintenance_client::MaintenanceClient;
    let dir = DataDir::new("admission-maintenance");
    let lode = Lode::start(&dir.0, &["--bcrypt-cost=4"]);
    let endpoint = lode.client_url.clone();
    let (root, user) = runtime().block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        client.user_add("root", "rootpw", None).await.expect("root");
        client.user_grant_role("root", "root").await.expect("grant");
        client
            .user_add("alice", "alicepw", None)
            .await
            .expect("alice");
        client.auth_enable().await.expect("auth on");
        let token = |user: &'static str, password: &'static str| {
            let mut auth = client.auth_client();
            async move {
                auth.authenticate(user.into(), password.into())
                    .await
                    .expect("authenticate")
                    .token()
                    .to_string()
            }
        };
        let root = token("root", "rootpw").await;
        let user = token("alice", "alicepw").await;
        let mut maintenance = MaintenanceClient::new(common::grpc_channel(&endpoint).await);
        let downgrade = || pb::DowngradeRequest {
            action: 0,
            version: "3.4.0".into(),
        };
        assert_eq!(
            answer(
                maintenance
                    .defragment(call("bogus", pb::DefragmentRequest {}))
                    .await
            ),
            (16, "etcdserver: invalid auth token".into())
        );
        assert_eq!(
            answer(maintenance.downgrade(call("bogus", downgrade())).await),
            (16, "etcdserver: invalid auth token".into())
        );
        assert_eq!(
            answer(
                maintenance
                    .defragment(call(&user, pb::DefragmentRequest {}))
                    .await
            ),
            (7, "etcdserver: permission denied".into())
        );
        assert_eq!(
            answer(maintenance.downgrade(call(&user, downgrade())).await),
            (7, "etcdserver: permission denied".into())
        );
        maintenance
            .defragment(call(&root, pb::DefragmentRequest {}))
            .await
            .expect("root defragments");
        assert_eq!(
            answer(maintenance.downgrade(call(&root, downgrade())).await),
            (3, "etcdserver: invalid downgrade target version".into())
        );
        (root, user)
    });
    let bearer = |token: &str| format!("Bearer {token}");
    for path in ["/v3/maintenance/defragment", "/v3/maintenance/downgrade"] {
        let body = if path.ends_with("downgrade") {
            r#"{"action":"VALIDATE","version":"3.4.0"}"#
        } else {
            "{}"
        };
        assert_eq!(
            gateway_error_with(&lode, path, &[("Authorization", "bogus")], body),
            (16, "etcdserver: invalid auth token".into()),
            "{path}"
        );
        assert_eq!(
            gateway_error_with(&lode, path, &[("Authorization", &bearer(&user))], body),
            (7, "etcdserver: permission denied".into()),
            "{path}"
        );
    }
    let (status, answer) = http_with_headers(
        &endpoint,
        "POST",
        "/v3/maintenance/defragment",
        &[("Authorization", &root)],
        "{}",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        gateway_error_with(
            &lode,
            "/v3/maintenance/downgrade",
            &[("Authorization", &root)],
            r#"{"action":"VALIDATE","version":"3.4.0"}"#
        ),
        (3, "etcdserver: invalid downgrade target version".into())
    );
}
