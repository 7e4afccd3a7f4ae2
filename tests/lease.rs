//! etcd's Lease service on real `lode` processes, driven by the Rust `etcd-client` crate:
//! grants (server-chosen and client IDs, the minimum and maximum TTL), puts with a lease,
//! revocation deleting the attached keys in one revision, keep-alive streams, TimeToLive with
//! keys, Leases, etcd's answers to bad requests; expiry, leases kept across a crash (snapshot
//! and log replay), and remaining TTLs kept across a leader SIGKILL in a 3-member cluster.
//!
//! Expiry checks are one-sided so that no test depends on the machine's speed: a lease may go
//! later than its TTL (a slow machine), never earlier.

mod common;

use common::{grpc_error, runtime};

use std::time::{Duration, Instant};

use common::cluster::{cluster, wait_for_leader};
use common::server::{DataDir, Lode};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp, WatchOptions,
};

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect")
}

/// (remaining TTL, granted TTL, keys) of lease `id` as `client` sees it.
async fn time_to_live(client: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let answer = client
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("time to live");
    let mut keys: Vec<String> = answer
        .keys()
        .iter()
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    keys.sort();
    (answer.ttl(), answer.granted_ttl(), keys)
}

/// The revision the keyspace is at, as `client`'s member answers.
async fn current_revision(client: &mut Client) -> i64 {
    // Any key: the header carries the current revision.
    let answer = client.get("a", None).await.expect("get");
    answer.header().expect("a header").revision()
}

async fn exists(client: &mut Client, key: &str) -> bool {
    client.get(key, None).await.expect("get").count() == 1
}

#[test]
fn grants_puts_and_revocation_as_etcd() {
    let dir = DataDir::new("lease-grants");
    let lode = Lode::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut client = connect(&lode.client_url).await;

        // The server picks positive IDs; TTLs below the minimum (ceil(1.5 x the 1 s election
        // timeout) = 2 s) are raised to it, negative ones too; the maximum is etcd's.
        let granted = client.lease_grant(60, None).await.expect("grant");
        let lease = granted.id();
        assert!(lease > 0);
        assert_eq!(granted.ttl(), 60);
        assert_eq!(client.lease_grant(1, None).await.unwrap().ttl(), 2);
        assert_eq!(client.lease_grant(-5, None).await.unwrap().ttl(), 2);
        let chosen = LeaseGrantOptions::new().with_id(42);
        assert_eq!(
            client
                .lease_grant(30, Some(chosen.clone()))
                .await
                .unwrap()
                .id(),
            42
        );
        let taken = client.lease_grant(30, Some(chosen)).await.unwrap_err();
        assert_eq!(
            grpc_error(taken),
            (
                tonic::Code::FailedPrecondition,
                "etcdserver: lease already exists".into()
            )
        );
        let too_long = client.lease_grant(9_000_000_001, None).await.unwrap_err();
        assert_eq!(
            grpc_error(too_long),
            (
                tonic::Code::OutOfRange,
                "etcdserver: too large lease TTL".into()
            )
        );

        // Keys attach by puts; a later put without the lease detaches, one with
        // ignore_lease keeps it; a lease that does not exist is refused, in a txn too, and
        // changes nothing.
        for key in ["a", "b", "c", "d"] {
            client
                .put(key, "v", Some(PutOptions::new().with_lease(lease)))
                .await
                .expect("put with lease");
        }
        client.put("c", "plain", None).await.expect("put");
        client
            .put("d", "kept", Some(PutOptions::new().with_ignore_lease()))
            .await
            .expect("put keeping the lease");
        let before = current_revision(&mut client).await;
        let missing = client
            .put("x", "v", Some(PutOptions::new().with_lease(999)))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_error(missing),
            (
                tonic::Code::NotFound,
                "etcdserver: requested lease not found".into()
            )
        );
        let txn = Txn::new()
            .when([Compare::version("a", CompareOp::Greater, 0)])
            .and_then([
                TxnOp::put("y", "v", None),
                TxnOp::put("z", "v", Some(PutOptions::new().with_lease(999))),
            ]);
        let refused = client.txn(txn).await.unwrap_err();
        assert_eq!(
            grpc_error(refused).1,
            "etcdserver: requested lease not found"
        );
        let after = current_revision(&mut client).await;
        assert_eq!(after, before, "refused writes made no revision");
        assert!(!exists(&mut client, "y").await);

        let (ttl, granted, keys) = time_to_live(&mut client, lease).await;
        assert_eq!(granted, 60);
        assert!(ttl > 0 && ttl <= 60, "{ttl}");
        assert_eq!(keys, ["a", "b", "d"]);
        let listed: Vec<i64> = client
            .leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .map(|status| status.id())
            .collect();
        assert!(
            listed.contains(&lease) && listed.contains(&42),
            "{listed:?}"
        );

        // Revocation deletes every attached key in one revision (one watch response, every
        // event at the same revision); the detached key stays.
        let mut events = client
            .watch("", Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        assert!(events.message().await.unwrap().unwrap().created());
        client.lease_revoke(lease).await.expect("revoke");
        let response = loop {
            let response = events.message().await.unwrap().unwrap();
            if !response.events().is_empty() {
                break response;
            }
        };
        let deleted: Vec<(EventType, String, i64)> = response
            .events()
            .iter()
            .map(|event| {
                let kv = event.kv().unwrap();
                (
                    event.event_type(),
                    kv.key_str().unwrap().to_string(),
                    kv.mod_revision(),
                )
            })
            .collect();
        let revision = deleted[0].2;
        assert_eq!(
            deleted,
            vec![
                (EventType::Delete, "a".into(), revision),
                (EventType::Delete, "b".into(), revision),
                (EventType::Delete, "d".into(), revision),
            ]
        );
        assert!(exists(&mut client, "c").await);

        // A revoked lease: revoking again is NotFound, TimeToLive says -1, a keep-alive
        // answers TTL 0.
        let again = client.lease_revoke(lease).await.unwrap_err();
        assert_eq!(
            grpc_error(again),
            (
                tonic::Code::NotFound,
                "etcdserver: requested lease not found".into()
            )
        );
        assert_eq!(time_to_live(&mut client, lease).await, (-1, 0, vec![]));
        // (etcd-client turns that first TTL 0 into its "lease not found".)
        let gone = client.lease_keep_alive(lease).await.unwrap_err();
        assert_eq!(gone.to_string(), "lease keep alive error: lease not found");
        // A stream renewing a lease that is then revoked is answered TTL 0.
        let (mut keeper, mut answers) = client.lease_keep_alive(42).await.expect("keep-alive");
        client.lease_revoke(42).await.expect("revoke");
        keeper.keep_alive().await.expect("send");
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!((answer.id(), answer.ttl()), (42, 0));
    });
}

#[test]
fn keep_alives_renew_and_expiry_deletes_the_keys() {
    let dir = DataDir::new("lease-expiry");
    let lode = Lode::start(&dir.0, &[]);
    runtime().block_on(async {
        let mut client = connect(&lode.client_url).await;

        // Renewal: once the lease has used some of its TTL, a keep-alive restores all of it.
        let renewed = client.lease_grant(10, None).await.unwrap().id();
        let (mut keeper, mut answers) = client.lease_keep_alive(renewed).await.unwrap();
        while time_to_live(&mut client, renewed).await.0 > 6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        keeper.keep_alive().await.unwrap();
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!((answer.id(), answer.ttl()), (renewed, 10));
        // Back above what was left before (unless these two calls took over 3 s).
        assert!(time_to_live(&mut client, renewed).await.0 > 6);
        // Many keep-alives in flight on one stream are each answered.
        for _ in 0..50 {
            keeper.keep_alive().await.unwrap();
        }
        for _ in 0..50 {
            assert_eq!(answers.message().await.unwrap().unwrap().ttl(), 10);
        }

        // Expiry: a lease nobody renews goes with its keys, never before its TTL.
        let sent = Instant::now();
        let expiring = client.lease_grant(2, None).await.unwrap().id();
        let mut revision = 0;
        for key in ["e1", "e2"] {
            revision = client
                .put(key, "v", Some(PutOptions::new().with_lease(expiring)))
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while exists(&mut client, "e1").await || exists(&mut client, "e2").await {
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            sent.elapsed() >= Duration::from_secs(2),
            "expired after {:?}, before its TTL",
            sent.elapsed()
        );
        assert_eq!(time_to_live(&mut client, expiring).await.0, -1);
        // Both keys went in one revision (nothing else writes here).
        let now = current_revision(&mut client).await;
        assert_eq!(now, revision + 1);
        // The renewed lease is still there.
        assert!(time_to_live(&mut client, renewed).await.0 > 0);
    });
}

#[test]
fn leases_survive_a_crash_through_snapshots_and_the_log() {
    let dir = DataDir::new("lease-restart");
    let flags = ["--snapshot-count", "20"];
    let mut lode = Lode::start(&dir.0, &flags);
    let (lease, other) = runtime().block_on(async {
        let mut client = connect(&lode.client_url).await;
        let lease = client.lease_grant(300, None).await.unwrap().id();
        let other = client.lease_grant(300, None).await.unwrap().id();
        for i in 0..60 {
            let owner = if i % 2 == 0 { lease } else { other };
            client
                .put(
                    format!("k{i:02}"),
                    "v",
                    Some(PutOptions::new().with_lease(owner)),
                )
                .await
                .unwrap();
        }
        // Some keys move between leases or leave them, after the snapshots too.
        client
            .put("k00", "moved", Some(PutOptions::new().with_lease(other)))
            .await
            .unwrap();
        client.put("k01", "free", None).await.unwrap();
        client.delete("k02", None).await.unwrap();
        (lease, other)
    });
    lode.kill();
    let client_port: u16 = lode.client_url.rsplit(':').next().unwrap().parse().unwrap();
    let lode = Lode::start_on(&dir.0, client_port, &flags);
    assert!(
        std::fs::read_dir(dir.0.join("snap"))
            .map(|entries| entries.count() > 0)
            .unwrap_or(false),
        "a snapshot was taken"
    );
    runtime().block_on(async {
        let mut client = connect(&lode.client_url).await;
        let (ttl, granted, keys) = time_to_live(&mut client, lease).await;
        assert_eq!(granted, 300);
        assert!(ttl > 0 && ttl <= 300);
        let expected: Vec<String> = (4..60).step_by(2).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys, expected);
        let (_, _, other_keys) = time_to_live(&mut client, other).await;
        let mut expected_other: Vec<String> =
            (3..60).step_by(2).map(|i| format!("k{i:02}")).collect();
        expected_other.insert(0, "k00".into());
        assert_eq!(other_keys, expected_other);
        // The key sets are what revocation deletes.
        client.lease_revoke(lease).await.unwrap();
        let left = client
            .get("k", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .unwrap()
            .count();
        assert_eq!(left, 60 - 1 - expected.len() as i64);
    });
}

#[test]
fn a_leader_sigkill_neither_resets_nor_shortens_remaining_ttls() {
    let mut members = cluster("lease-leader-kill");
    for member in members.iter_mut() {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let term = members[leader].status().map_or(0, |(_, term)| term);
    let granted_at = Instant::now();
    let (lease, remaining_before) = runtime().block_on(async {
        let mut client = connect(&members[leader].lode().client_url).await;
        let lease = client.lease_grant(8, None).await.unwrap().id();
        client
            .put("held", "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap();
        // Let the lease use up part of its TTL before its leader dies.
        let mut remaining = time_to_live(&mut client, lease).await.0;
        while remaining > 5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            remaining = time_to_live(&mut client, lease).await.0;
        }
        (lease, remaining)
    });
    members[leader].lode.as_mut().unwrap().kill();
    let survivors: Vec<usize> = (0..members.len()).filter(|&i| i != leader).collect();
    let new_leader = common::cluster::wait_for_leader_among(&members, &survivors, term);
    runtime().block_on(async {
        let mut client = connect(&members[new_leader].lode().client_url).await;
        // The new leader kept what was left (plus at most its election-timeout margin of
        // 0.5 s), instead of starting the full 8 s again.
        let (remaining, granted, keys) = loop {
            match client
                .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
                .await
            {
                Ok(answer) => break (answer.ttl(), answer.granted_ttl(), answer.keys().len()),
                // The first requests may meet the election settling.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert_eq!(granted, 8);
        assert!(
            remaining < 8 && remaining <= remaining_before + 2,
            "remaining {remaining}s after the leader change, {remaining_before}s before"
        );
        if remaining >= 0 {
            assert_eq!(keys, 1);
        }
        // And it expires, never before its TTL from the grant.
        let deadline = Instant::now() + Duration::from_secs(60);
        while exists(&mut client, "held").await {
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            granted_at.elapsed() >= Duration::from_secs(8),
            "expired {:?} after the grant",
            granted_at.elapsed()
        );
        // Every survivor applied the expiry.
        for &i in &survivors {
            let mut client = connect(&members[i].lode().client_url).await;
            let serializable = GetOptions::new().with_serializable();
            let deadline = Instant::now() + Duration::from_secs(60);
            while client
                .get("held", Some(serializable.clone()))
                .await
                .unwrap()
                .count()
                != 0
            {
                assert!(Instant::now() < deadline, "m{i} never applied the expiry");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}

#[test]
fn leases_count_toward_the_space_quota() {
    let dir = DataDir::new("lease-quota");
    let lode = Lode::start(&dir.0, &["--quota-backend-bytes", "16384"]);
    runtime().block_on(async {
        let mut client = connect(&lode.client_url).await;
        // 64 bytes a lease, as etcd counts them: a 16 KiB quota is full within 256 grants.
        let mut granted = 0;
        let refused = loop {
            match client.lease_grant(60, None).await {
                Ok(_) => granted += 1,
                Err(error) => break error,
            }
            assert!(
                granted <= 256,
                "{granted} leases granted under a 16 KiB quota"
            );
        };
        assert_eq!(
            grpc_error(refused),
            (
                tonic::Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded".into()
            )
        );
        assert!(granted > 100, "only {granted} leases before the quota");
    });
}

#[test]
fn the_native_protocol_serves_leases_and_refuses_the_servers_own_changes() {
    use lode::api::native::{LeaseAnswer, LeaseQuery, Request, Response};
    use lode::client::{Client as NativeClient, ClientError};
    use lode::lease::{LeaseOutcome, LeaseRequest};
    use lode::mvcc::request::{LeaseResponse, WriteRequest, WriteResponse};

    let dir = DataDir::new("lease-native");
    let lode = Lode::start(&dir.0, &[]);
    let address = lode.address.clone();
    common::on_executor(move || async move {
        let client = NativeClient::connect(&address).await.expect("connect");
        let grant = Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl: 1 }));
        let Ok(Response::Write(WriteResponse::Lease(LeaseResponse {
            outcome: LeaseOutcome::Granted { id, ttl },
            ..
        }))) = client.request(&grant).await
        else {
            panic!("a grant");
        };
        assert!(id > 0);
        assert_eq!(ttl, 2, "raised to the minimum");
        let grant = Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl: 60 }));
        let Ok(Response::Write(WriteResponse::Lease(LeaseResponse {
            outcome: LeaseOutcome::Granted { id, .. },
            ..
        }))) = client.request(&grant).await
        else {
            panic!("a grant");
        };
        let renewed = client
            .request(&Request::Lease(LeaseQuery::KeepAlive(id)))
            .await
            .expect("keep-alive");
        assert!(matches!(
            renewed,
            Response::Lease(LeaseAnswer::KeepAlive { ttl: 60, .. })
        ));
        // Renewal batches and expiries are the server's own: a client sending them is
        // refused, and the lease is untouched.
        for internal in [
            LeaseRequest::Renew { ids: vec![id] },
            LeaseRequest::Expire {
                leases: vec![(id, 0)],
            },
        ] {
            let refused = client
                .request(&Request::Write(WriteRequest::Lease(internal)))
                .await;
            assert!(
                matches!(
                    &refused,
                    Err(ClientError::Server { code: 3, message })
                        if message == "lode: lease renewals and expiries are proposed by the server only"
                ),
                "{refused:?}"
            );
        }
        let alive = client
            .request(&Request::Lease(LeaseQuery::TimeToLive { id, keys: false }))
            .await
            .expect("time to live");
        assert!(
            matches!(alive, Response::Lease(LeaseAnswer::TimeToLive { ttl, granted_ttl: 60, .. }) if ttl > 0),
            "{alive:?}"
        );
    });
}
