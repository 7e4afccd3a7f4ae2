//! etcd's v3 gRPC API on a real `lode`, driven by the Rust `etcd-client` crate (a client
//! written for etcd, used unchanged): KV calls, response headers, etcd's error codes and
//! messages, and the native protocol still served on the same port.

mod common;

use common::{grpc_error, runtime};

use common::cluster::{cluster, wait_for_convergence, wait_for_leader};
use common::server::{ok, DataDir, Lode};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};

#[test]
fn etcd_client_drives_the_kv_service() {
    let dir = DataDir::new("grpc-kv");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");

        let put = client.put("foo", "bar", None).await.expect("put");
        let header = put.header().expect("header");
        assert_eq!(header.revision(), 2);
        assert_ne!(header.member_id(), 0);
        assert_ne!(header.cluster_id(), 0);
        assert!(header.raft_term() >= 1);

        let previous = client
            .put("foo", "baz", Some(PutOptions::new().with_prev_key()))
            .await
            .expect("put with prev_kv");
        let prev = previous.prev_key().expect("prev_kv");
        assert_eq!(prev.value(), b"bar");
        assert_eq!(prev.create_revision(), 2);
        assert_eq!(prev.mod_revision(), 2);
        assert_eq!(prev.version(), 1);

        let got = client.get("foo", None).await.expect("get");
        assert_eq!(got.count(), 1);
        let kv = &got.kvs()[0];
        assert_eq!((kv.key(), kv.value()), (&b"foo"[..], &b"baz"[..]));
        assert_eq!(
            (kv.create_revision(), kv.mod_revision(), kv.version()),
            (2, 3, 2)
        );

        // Ranges with their options: prefix, limit, sort, keys only, count only, a revision.
        for key in ["p/a", "p/b", "p/c"] {
            client
                .put(key, format!("v-{key}"), None)
                .await
                .expect("put");
        }
        let prefix = client
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_limit(2)
                        .with_sort(SortTarget::Key, SortOrder::Descend),
                ),
            )
            .await
            .expect("prefix get");
        let keys: Vec<&[u8]> = prefix.kvs().iter().map(|kv| kv.key()).collect();
        assert_eq!(keys, vec![&b"p/c"[..], &b"p/b"[..]]);
        assert!(prefix.more());
        assert_eq!(prefix.count(), 3);
        let keys_only = client
            .get("p/", Some(GetOptions::new().with_prefix().with_keys_only()))
            .await
            .expect("keys only");
        assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
        let counted = client
            .get(
                "p/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .expect("count only");
        assert_eq!((counted.count(), counted.kvs().len()), (3, 0));
        let old = client
            .get("foo", Some(GetOptions::new().with_revision(2)))
            .await
            .expect("get at revision 2");
        assert_eq!(old.kvs()[0].value(), b"bar");
        let serializable = client
            .get("foo", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get");
        assert_eq!(serializable.kvs()[0].value(), b"baz");

        // A compare-and-swap both ways.
        let swap = Txn::new()
            .when([Compare::value("foo", CompareOp::Equal, "baz")])
            .and_then([TxnOp::put("foo", "qux", None), TxnOp::get("foo", None)])
            .or_else([TxnOp::get("foo", None)]);
        let swapped = client.txn(swap.clone()).await.expect("txn");
        assert!(swapped.succeeded());
        match &swapped.op_responses()[1] {
            TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"qux"),
            other => panic!("expected a get, got {other:?}"),
        }
        let refused = client.txn(swap).await.expect("txn");
        assert!(!refused.succeeded());
        match &refused.op_responses()[0] {
            TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"qux"),
            other => panic!("expected a get, got {other:?}"),
        }

        let deleted = client
            .delete(
                "p/",
                Some(DeleteOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .expect("delete");
        assert_eq!(deleted.deleted(), 3);
        assert_eq!(deleted.prev_kvs().len(), 3);
        let revision = deleted.header().expect("header").revision();

        // Compaction, then etcd's answers for revisions outside what is kept.
        client.compact(revision, None).await.expect("compact");
        let (code, message) = grpc_error(
            client
                .get("foo", Some(GetOptions::new().with_revision(2)))
                .await
                .expect_err("compacted revision"),
        );
        assert_eq!(code, tonic::Code::OutOfRange);
        assert_eq!(
            message,
            "etcdserver: mvcc: required revision has been compacted"
        );
        let (code, message) = grpc_error(
            client
                .get("foo", Some(GetOptions::new().with_revision(revision + 100)))
                .await
                .expect_err("future revision"),
        );
        assert_eq!(code, tonic::Code::OutOfRange);
        assert_eq!(
            message,
            "etcdserver: mvcc: required revision is a future revision"
        );
        let (code, message) = grpc_error(client.put("", "v", None).await.expect_err("empty key"));
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert_eq!(message, "etcdserver: key is not provided");
    });

    // The same port still serves the native protocol: lodectl sees what the gRPC client wrote.
    let native = std::process::Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .args(["--endpoints", &lode.client_url, "get", "foo"])
        .output()
        .unwrap();
    assert_eq!(ok(native), "foo\nqux\n");
}

#[test]
fn oversized_requests_are_refused_and_change_nothing() {
    let dir = DataDir::new("grpc-limits");
    let lode = Lode::start(&dir.0, &["--max-request-bytes", "4096"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let (code, message) = grpc_error(
            client
                .put("big", vec![b'x'; 5000], None)
                .await
                .expect_err("too large"),
        );
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert_eq!(message, "etcdserver: request is too large");
        let got = client.get("big", None).await.expect("get");
        assert_eq!(got.count(), 0);
        assert_eq!(got.header().expect("header").revision(), 1);
        // The connection goes on serving.
        client.put("small", "v", None).await.expect("put");
    });
}

#[test]
fn a_cluster_serves_etcd_clients_through_any_member() {
    let mut members = cluster("grpc-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| m.lode().client_url.clone())
        .collect();
    let through_follower = endpoints[follower].clone();
    runtime().block_on(async move {
        // Writes asked of a follower reach the leader; linearizable reads from every member see
        // them at once, with each member's own ID in the header.
        let mut writer = Client::connect([through_follower.as_str()], None)
            .await
            .expect("connect");
        let put = writer.put("color", "green", None).await.expect("put");
        let revision = put.header().expect("header").revision();
        let mut member_ids = Vec::new();
        for endpoint in &endpoints {
            let mut reader = Client::connect([endpoint.as_str()], None)
                .await
                .expect("connect");
            let got = reader.get("color", None).await.expect("get");
            assert_eq!(got.kvs()[0].value(), b"green", "{endpoint}");
            let header = got.header().expect("header");
            assert!(header.revision() >= revision);
            member_ids.push(header.member_id());
        }
        member_ids.sort_unstable();
        member_ids.dedup();
        assert_eq!(member_ids.len(), 3, "every member answers as itself");
    });
    wait_for_convergence(&members, &[0, 1, 2]);
}

fn alarm_of(member_id: u64) -> etcd_client::AlarmOptions {
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(member_id);
    options
}

#[test]
fn maintenance_cluster_and_auth_services_answer_as_etcd() {
    let dir = DataDir::new("grpc-maintenance");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        client.put("k", "v", None).await.expect("put");

        let status = client.status().await.expect("status");
        let member_id = status.header().expect("header").member_id();
        assert_eq!(status.version(), "3.5.0");
        assert_eq!(status.leader(), member_id, "a single member leads");
        assert!(status.raft_index() >= 2);
        assert!(status.raft_applied_index() >= 2);
        assert!(status.db_size() > 0);
        assert!(!status.is_learner());
        assert!(status.errors().is_empty());

        // A raised alarm shows in the alarm list and in the status, and is cleared again.
        let raised = client
            .alarm(
                etcd_client::AlarmAction::Activate,
                etcd_client::AlarmType::Nospace,
                Some(alarm_of(member_id)),
            )
            .await
            .expect("raise alarm");
        assert_eq!(raised.alarms().len(), 1);
        let status = client.status().await.expect("status");
        assert_eq!(
            status.errors(),
            [format!("memberID:{member_id} alarm:NOSPACE ")]
        );
        // An alarm raised on a small keyspace stays until it is disarmed (only the quota's own
        // clears itself once compaction wins the space back): several heartbeats later, the
        // write is still refused.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (code, message) = grpc_error(client.put("k", "w", None).await.expect_err("no space"));
        assert_eq!(code, tonic::Code::ResourceExhausted);
        assert_eq!(message, "etcdserver: mvcc: database space exceeded");
        client
            .alarm(
                etcd_client::AlarmAction::Deactivate,
                etcd_client::AlarmType::Nospace,
                Some(alarm_of(member_id)),
            )
            .await
            .expect("clear alarm");
        let listed = client
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await
            .expect("list alarms");
        assert!(listed.alarms().is_empty());

        client.defragment().await.expect("defragment");
        let hashed = client.hash_kv(0).await.expect("hashkv");
        assert_ne!(hashed.hash(), 0);
        assert_eq!(
            hashed.hash_revision(),
            hashed.header().expect("header").revision()
        );
        let again = client
            .hash_kv(hashed.hash_revision())
            .await
            .expect("hashkv");
        assert_eq!(again.hash(), hashed.hash());

        // The snapshot stream ends with a piece whose remaining_bytes is 0.
        let mut stream = client.snapshot().await.expect("snapshot");
        let mut bytes = 0;
        let mut last_remaining = None;
        while let Some(piece) = stream.message().await.expect("snapshot piece") {
            bytes += piece.blob().len();
            last_remaining = Some(piece.remaining_bytes());
        }
        assert!(bytes > 0);
        assert_eq!(last_remaining, Some(0));

        let members = client.member_list().await.expect("member list");
        assert_eq!(members.members().len(), 1);
        assert_eq!(members.members()[0].id(), member_id);
        assert_eq!(members.members()[0].name(), "default");
        let (code, message) = grpc_error(
            client
                .member_remove(0x1234)
                .await
                .expect_err("unknown member"),
        );
        assert_eq!(code, tonic::Code::NotFound);
        assert_eq!(message, "etcdserver: member not found");
        client
            .move_leader(member_id)
            .await
            .expect("move leader to itself");

        let (code, message) = grpc_error(
            client
                .auth_client()
                .authenticate("root".into(), "secret".into())
                .await
                .expect_err("authenticate"),
        );
        assert_eq!(code, tonic::Code::FailedPrecondition);
        assert_eq!(message, "etcdserver: authentication is not enabled");
        let (code, message) = grpc_error(client.auth_enable().await.expect_err("auth enable"));
        assert_eq!(code, tonic::Code::FailedPrecondition);
        assert_eq!(message, "etcdserver: root user does not exist");
        // Reads answer from the (empty) auth store, as etcd's do with auth off.
        let users = client.user_list().await.expect("user list");
        assert!(users.users().is_empty());
        let roles = client.role_list().await.expect("role list");
        assert!(roles.roles().is_empty());
        let (code, message) = grpc_error(client.user_get("nobody").await.expect_err("user get"));
        assert_eq!(code, tonic::Code::FailedPrecondition);
        assert_eq!(message, "etcdserver: user name not found");
        let (code, message) = grpc_error(client.role_get("nobody").await.expect_err("role get"));
        assert_eq!(code, tonic::Code::FailedPrecondition);
        assert_eq!(message, "etcdserver: role name not found");
        // etcd's checks, then users, roles and permissions set up through the log.
        let (code, message) = grpc_error(client.role_add("").await.expect_err("empty role"));
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert_eq!(message, "etcdserver: role name is empty");
        client
            .user_add("alice", "secret", None)
            .await
            .expect("user add");
        let (code, message) = grpc_error(
            client
                .user_add("alice", "again", None)
                .await
                .expect_err("twice"),
        );
        assert_eq!(code, tonic::Code::FailedPrecondition);
        assert_eq!(message, "etcdserver: user name already exists");
        client.role_add("reader").await.expect("role add");
        client
            .role_grant_permission(
                "reader",
                etcd_client::Permission::read("config/").with_prefix(),
            )
            .await
            .expect("grant permission");
        client
            .user_grant_role("alice", "reader")
            .await
            .expect("grant role");
        let alice = client.user_get("alice").await.expect("user get");
        assert_eq!(alice.roles(), ["reader"]);
        let reader = client.role_get("reader").await.expect("role get");
        assert_eq!(reader.permissions().len(), 1);
        assert_eq!(reader.permissions()[0].key(), b"config/");
        assert_eq!(reader.permissions()[0].range_end(), b"config0");
        assert_eq!(client.user_list().await.expect("users").users(), ["alice"]);
        // Auth on: a call without a token speaks for nobody; root's token may do anything.
        client.user_add("root", "rootpw", None).await.expect("root");
        client
            .user_grant_role("root", "root")
            .await
            .expect("root role");
        client.auth_enable().await.expect("enable");
        let (code, message) = grpc_error(client.user_delete("alice").await.expect_err("no user"));
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert_eq!(message, "etcdserver: user name is empty");
        let mut root = etcd_client::Client::connect(
            [&endpoint],
            Some(etcd_client::ConnectOptions::new().with_user("root", "rootpw")),
        )
        .await
        .expect("connect as root");
        root.user_delete("alice").await.expect("user delete");
        assert_eq!(root.user_list().await.expect("users").users(), ["root"]);
        root.auth_disable().await.expect("disable");
    });
}

#[test]
fn auth_status_answers_from_the_auth_store() {
    use lode_protocol::etcd::etcdserverpb::{auth_client::AuthClient, AuthStatusRequest};
    let dir = DataDir::new("grpc-auth-status");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let channel = common::grpc_channel(&endpoint).await;
        let status = AuthClient::new(channel)
            .auth_status(AuthStatusRequest {})
            .await
            .expect("auth status")
            .into_inner();
        assert!(!status.enabled);
        // etcd's first auth revision: the store commits one when it is created.
        assert_eq!(status.auth_revision, 1);
        assert!(status.header.is_some_and(|h| h.cluster_id != 0));
    });
}

#[test]
fn the_grpc_health_service_says_serving() {
    use lode_protocol::etcd::health::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let dir = DataDir::new("grpc-health");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let channel = common::grpc_channel(&endpoint).await;
        let mut client = HealthClient::new(channel);
        let checked = client
            .check(HealthCheckRequest::default())
            .await
            .expect("check");
        assert_eq!(checked.get_ref().status, ServingStatus::Serving as i32);
        let unknown = client
            .check(HealthCheckRequest {
                service: "etcdserverpb.KV".into(),
            })
            .await
            .expect_err("a named service");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert_eq!(unknown.message(), "unknown service");
        let mut watched = client
            .watch(HealthCheckRequest::default())
            .await
            .expect("watch")
            .into_inner();
        let first = watched
            .message()
            .await
            .expect("a status")
            .expect("not ended");
        assert_eq!(first.status, ServingStatus::Serving as i32);
    });
}

/// `GET path` over HTTP/1 on the client URL, which must answer 200: the body.
fn http_get(url: &str, path: &str) -> String {
    let (status, body) = common::server::http(url, "GET", path, "");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_calls_and_carry_etcds_names() {
    let dir = DataDir::new("grpc-metrics");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        client.put("a", "1", None).await.expect("put");
        client.put("b", "2", None).await.expect("put");
        client.put("", "x", None).await.expect_err("empty key");
        client.get("a", None).await.expect("get");
    });
    let text = http_get(&lode.client_url, "/metrics");
    // The text format: each metric's samples together, after its HELP and TYPE lines.
    let mut finished = std::collections::BTreeSet::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count")
            .to_string();
        if family != current {
            assert!(
                finished.insert(current.clone()),
                "{family} is split: {text}"
            );
            current = family;
        }
        assert!(
            text.contains(&format!("# TYPE {current} ")),
            "{current} has no TYPE"
        );
    }
    let put = "grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"";
    assert_eq!(
        sample(&text, &format!("grpc_server_started_total{{{put}}}")),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("grpc_server_handled_total{{grpc_code=\"OK\",{put}}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("grpc_server_handled_total{{grpc_code=\"InvalidArgument\",{put}}}")
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(&text, "etcd_server_is_leader"), Some(1.0));
    assert!(sample(&text, "etcd_server_leader_changes_seen_total") >= Some(1.0));
    assert!(sample(&text, "etcd_server_proposals_applied_total") >= Some(3.0));
    assert_eq!(
        sample(&text, "etcd_debugging_mvcc_current_revision"),
        Some(3.0)
    );
    let syncs = sample(&text, "etcd_disk_wal_fsync_duration_seconds_count").unwrap();
    assert!(syncs >= 2.0, "{syncs}");
    assert_eq!(
        sample(
            &text,
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(syncs)
    );
    assert!(text.contains("lode_commit_stage_seconds_count{stage=\"proposal_total\"}"));
    assert_eq!(sample(&text, "etcd_debugging_mvcc_keys_total"), Some(2.0));
    // Four calls of a few bytes each way.
    for traffic in [
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_network_client_grpc_received_bytes_total",
    ] {
        let bytes = sample(&text, traffic).unwrap_or_default();
        assert!((20.0..10_000.0).contains(&bytes), "{traffic} {bytes}");
    }
    // The process's figures under the client libraries' names.
    assert!(sample(&text, "process_resident_memory_bytes") > Some(1e5));
    assert!(sample(&text, "process_open_fds") >= Some(3.0));
    assert!(sample(&text, "process_start_time_seconds") > Some(1.6e9));
}

/// A stream is counted handled when it ends, not when it opens: started minus handled is the
/// number of streams open, which etcd's dashboards chart as active watch streams.
#[test]
fn a_stream_is_counted_handled_when_it_ends() {
    let dir = DataDir::new("grpc-metrics-stream");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    let watch =
        "grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"";
    let handled = |text: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with("grpc_server_handled_total{") && line.contains(watch))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let url = lode.client_url.clone();
    runtime().block_on(async move {
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let stream = client.watch("a", None).await.expect("watch");
        let text = http_get(&url, "/metrics");
        assert_eq!(
            sample(&text, &format!("grpc_server_started_total{{{watch}}}")),
            Some(1.0)
        );
        assert_eq!(handled(&text), 0.0, "counted handled while open: {text}");
        drop(stream);
        drop(client);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while handled(&http_get(&url, "/metrics")) != 1.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the closed stream was never counted handled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

/// A gRPC codec that sends and receives raw bytes: requests no etcd client would build.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[test]
fn malformed_grpc_requests_get_clear_errors_and_change_nothing() {
    use prost::Message;
    let dir = DataDir::new("grpc-bad-input");
    let lode = Lode::start(&dir.0, &[]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        let channel = common::grpc_channel(&endpoint).await;
        let call = |path: &'static str, body: Vec<u8>| {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            async move {
                grpc.ready().await.expect("ready");
                grpc.unary(
                    tonic::Request::new(body),
                    http::uri::PathAndQuery::from_static(path),
                    RawCodec,
                )
                .await
            }
        };
        // Bytes that are no protobuf message.
        let garbage = call("/etcdserverpb.KV/Put", vec![0xff, 0xff, 0xff, 0xff])
            .await
            .expect_err("garbage");
        assert_eq!(garbage.code(), tonic::Code::Internal, "{garbage:?}");
        assert!(garbage.message().contains("decode"), "{garbage:?}");
        // An enum value etcd does not define.
        let sideways = lode_protocol::etcd::etcdserverpb::RangeRequest {
            key: bytes::Bytes::from_static(b"k"),
            sort_order: 7,
            ..Default::default()
        };
        let refused = call("/etcdserverpb.KV/Range", sideways.encode_to_vec())
            .await
            .expect_err("unknown sort order");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.message(), "etcdserver: invalid sort option");
        // A method nobody serves.
        let missing = call("/etcdserverpb.KV/Nope", Vec::new())
            .await
            .expect_err("unknown method");
        assert_eq!(missing.code(), tonic::Code::Unimplemented);
        // A message over the receive limit (--max-request-bytes plus 512 KiB).
        let huge = lode_protocol::etcd::etcdserverpb::PutRequest {
            key: bytes::Bytes::from_static(b"huge"),
            value: bytes::Bytes::from(vec![b'x'; 3 << 20]),
            ..Default::default()
        };
        let too_large = call("/etcdserverpb.KV/Put", huge.encode_to_vec())
            .await
            .expect_err("too large");
        assert!(too_large.message().contains("too large"), "{too_large:?}");
        // Nothing changed, and the server goes on serving.
        let mut client = Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        let all = client
            .get("", Some(GetOptions::new().with_all_keys()))
            .await
            .expect("get");
        assert_eq!(all.count(), 0);
        assert_eq!(all.header().expect("header").revision(), 1);
        client.put("after", "ok", None).await.expect("put");
    });
}
