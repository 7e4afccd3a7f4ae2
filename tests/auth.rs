//! etcd's auth through etcd's own tools: etcdctl's walkthrough (users, roles, permissions, auth
//! on, allowed and denied requests, password change, revocation, auth off) kept through the log
//! and snapshots across a SIGKILL; lodectl's auth commands and `--user`; the Rust etcd-client's
//! tokens expiring and renewed; JWTs verified by a member that did not issue them, on a member
//! that caught up by snapshot; and a randomized comparison with a model of etcd's rules.

mod common;

use common::etcd::{etcdctl, succeeded};
use common::server::{DataDir, Lode};

#[test]
fn users_roles_and_permissions_set_up_with_etcdctl_survive_a_sigkill_and_a_snapshot() {
    let dir = DataDir::new("auth-walkthrough");
    // Snapshots every few entries, so the restart loads the auth store from one.
    let mut lode = Lode::start(&dir.0, &["--snapshot-count=4"]);
    let endpoint = lode.client_url.clone();
    let run = |args: &[&str]| succeeded(etcdctl(&endpoint, args));
    assert_eq!(run(&["user", "add", "root:rootpw"]), "User root created\n");
    assert_eq!(run(&["role", "add", "root"]), "Role root created\n");
    assert_eq!(
        run(&["user", "grant-role", "root", "root"]),
        "Role root is granted to user root\n"
    );
    assert_eq!(run(&["role", "add", "reader"]), "Role reader created\n");
    assert_eq!(
        run(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "/config/",
            "--prefix=true"
        ]),
        "Role reader updated\n"
    );
    assert_eq!(
        run(&["user", "add", "alice:secret"]),
        "User alice created\n"
    );
    assert_eq!(
        run(&["user", "grant-role", "alice", "reader"]),
        "Role reader is granted to user alice\n"
    );
    for n in 0..10 {
        run(&["put", &format!("k{n}"), "v"]);
    }
    let expected_user = "User: alice\nRoles: reader\n";
    assert_eq!(run(&["user", "get", "alice"]), expected_user);
    let role = run(&["role", "get", "reader"]);
    assert!(
        role.contains("KV Read:") && role.contains("[/config/, /config0) (prefix /config/)"),
        "{role}"
    );
    // Refused as etcd refuses.
    let duplicate = etcdctl(&endpoint, &["user", "add", "alice:again"]);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("user name already exists"));
    // Auth on: requests speak for a user, and get what the user's roles allow.
    assert_eq!(run(&["auth", "enable"]), "Authentication Enabled\n");
    let as_user = |user: &str, args: &[&str]| {
        let mut all = vec!["--user", user];
        all.extend_from_slice(args);
        etcdctl(&endpoint, &all)
    };
    let refused = |output: std::process::Output, why: &str| {
        assert!(!output.status.success(), "allowed: {why}");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains(&format!("Error: etcdserver: {why}")),
            "{stderr}"
        );
    };
    refused(etcdctl(&endpoint, &["get", "k1"]), "user name is empty");
    assert_eq!(
        succeeded(as_user("root:rootpw", &["put", "/config/a", "1"])),
        "OK\n"
    );
    assert_eq!(
        succeeded(as_user("alice:secret", &["get", "/config/a"])),
        "/config/a\n1\n"
    );
    assert_eq!(
        succeeded(as_user(
            "alice:secret",
            &["get", "/config/", "--prefix", "--keys-only"]
        )),
        "/config/a\n\n"
    );
    refused(
        as_user("alice:secret", &["put", "/config/a", "2"]),
        "permission denied",
    );
    refused(as_user("alice:secret", &["get", "k1"]), "permission denied");
    refused(
        as_user("alice:secret", &["get", "/config/", "--from-key"]),
        "permission denied",
    );
    refused(
        as_user("alice:secret", &["user", "list"]),
        "permission denied",
    );
    refused(
        as_user("alice:secret", &["compaction", "3"]),
        "permission denied",
    );
    refused(
        as_user("alice:wrong", &["get", "/config/a"]),
        "authentication failed, invalid user ID or password",
    );
    // A user reads itself; a password change ends the old password.
    assert_eq!(
        succeeded(as_user("alice:secret", &["user", "get", "alice"])),
        expected_user
    );
    let mut passwd = std::process::Command::new("etcdctl");
    passwd.env("ETCDCTL_API", "3").args([
        &format!("--endpoints={endpoint}"),
        "--user=root:rootpw",
        "user",
        "passwd",
        "alice",
        "--interactive=false",
    ]);
    assert_eq!(
        succeeded(common::server::output_with_input(
            &mut passwd,
            Some("newpw\n")
        )),
        "Password updated\n"
    );
    refused(
        as_user("alice:secret", &["get", "/config/a"]),
        "authentication failed, invalid user ID or password",
    );
    assert_eq!(
        succeeded(as_user("alice:newpw", &["get", "/config/a"])),
        "/config/a\n1\n"
    );
    // Root cannot lose root while auth is on.
    refused(
        as_user("root:rootpw", &["user", "revoke-role", "root", "root"]),
        "invalid auth management",
    );
    // A SIGKILL, a restart from the snapshot and the log: everything is still there.
    lode.kill();
    let port: u16 = lode
        .address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("port");
    let lode = Lode::start_on(&dir.0, port, &["--snapshot-count=4"]);
    assert!(
        std::fs::read_dir(dir.0.join("snap"))
            .expect("snap dir")
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".snap")),
        "no snapshot was taken"
    );
    let endpoint = lode.client_url.clone();
    // Still on after the restart, with the same users, roles and passwords.
    let as_root = |args: &[&str]| {
        let mut all = vec!["--user", "root:rootpw"];
        all.extend_from_slice(args);
        succeeded(etcdctl(&endpoint, &all))
    };
    assert!(!etcdctl(&endpoint, &["get", "/config/a"]).status.success());
    assert_eq!(as_root(&["user", "list"]), "alice\nroot\n");
    assert_eq!(as_root(&["role", "list"]), "reader\nroot\n");
    assert_eq!(as_root(&["user", "get", "alice"]), expected_user);
    assert_eq!(as_root(&["role", "get", "reader"]), role);
    let alice = |args: &[&str]| {
        let mut all = vec!["--user", "alice:newpw"];
        all.extend_from_slice(args);
        etcdctl(&endpoint, &all)
    };
    assert_eq!(succeeded(alice(&["get", "/config/a"])), "/config/a\n1\n");
    // A revoked permission takes effect at once.
    assert_eq!(
        as_root(&[
            "role",
            "revoke-permission",
            "reader",
            "/config/",
            "--prefix=true"
        ]),
        "Permission of range [/config/, /config0) is revoked from role reader\n"
    );
    assert!(!alice(&["get", "/config/a"]).status.success());
    assert_eq!(
        as_root(&["user", "delete", "alice"]),
        "User alice deleted\n"
    );
    assert_eq!(as_root(&["user", "list"]), "root\n");
    assert_eq!(as_root(&["auth", "disable"]), "Authentication Disabled\n");
    assert_eq!(
        succeeded(etcdctl(
            &endpoint,
            &["get", "/config/a", "--print-value-only"]
        )),
        "1\n"
    );
}

#[test]
fn lodectl_sets_up_users_and_roles_and_prints_as_etcdctl_does() {
    use common::server::ok;
    let dir = DataDir::new("auth-lodectl");
    // bcrypt's cheapest cost, which etcd's flag allows.
    let lode = Lode::start(&dir.0, &["--bcrypt-cost=4"]);
    let endpoint = lode.client_url.clone();
    let etcd = |args: &[&str]| succeeded(etcdctl(&endpoint, args));
    let ctl = |args: &[&str]| ok(lode.ctl(args));
    assert_eq!(ctl(&["user", "add", "bob:pw"]), "User bob created\n");
    assert_eq!(
        ok(lode.ctl_with_input(
            &["user", "add", "carol", "--interactive=false"],
            Some("pw\n")
        )),
        "User carol created\n"
    );
    assert_eq!(ctl(&["role", "add", "ops"]), "Role ops created\n");
    for grant in [
        &[
            "role",
            "grant-permission",
            "ops",
            "readwrite",
            "/ops/",
            "--prefix=true",
        ][..],
        &["role", "grant-permission", "ops", "read", "k1"],
        &[
            "role",
            "grant-permission",
            "ops",
            "write",
            "z",
            "--from-key=true",
        ],
        &["role", "grant-permission", "ops", "read", "a", "c"],
    ] {
        assert_eq!(ctl(grant), "Role ops updated\n");
    }
    assert_eq!(
        ctl(&["user", "grant-role", "bob", "ops"]),
        "Role ops is granted to user bob\n"
    );
    // Reads print exactly as etcdctl prints them.
    for read in [
        &["role", "get", "ops"][..],
        &["user", "get", "bob"],
        &["user", "get", "carol"],
        &["user", "list"],
        &["role", "list"],
    ] {
        assert_eq!(ctl(read), etcd(read), "{read:?}");
    }
    assert_eq!(
        ctl(&["auth", "status"]),
        "Authentication Status: false\nAuthRevision: 9\n"
    );
    assert_eq!(
        ctl(&["role", "revoke-permission", "ops", "k1"]),
        "Permission of key k1 is revoked from role ops\n"
    );
    assert_eq!(
        ctl(&["role", "revoke-permission", "ops", "a", "c"]),
        etcd(&["role", "grant-permission", "ops", "read", "a", "c"]).replace(
            "Role ops updated\n",
            "Permission of range [a, c) is revoked from role ops\n"
        )
    );
    assert_eq!(
        etcd(&["role", "revoke-permission", "ops", "a", "c"]),
        "Permission of range [a, c) is revoked from role ops\n"
    );
    assert_eq!(
        ok(lode.ctl_with_input(
            &["user", "passwd", "bob", "--interactive=false"],
            Some("new\n")
        )),
        "Password updated\n"
    );
    assert_eq!(
        ctl(&["user", "revoke-role", "bob", "ops"]),
        "Role ops is revoked from user bob\n"
    );
    assert_eq!(ctl(&["user", "delete", "carol"]), "User carol deleted\n");
    assert_eq!(ctl(&["role", "delete", "ops"]), "Role ops deleted\n");
    assert_eq!(etcd(&["role", "list"]), "");
    // etcd's errors come through.
    let refused = lode.ctl(&["user", "get", "nobody"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("etcdserver: user name not found"));
    // --user and --password, as etcdctl takes them, over the native protocol.
    assert_eq!(ctl(&["user", "add", "root:rootpw"]), "User root created\n");
    assert_eq!(
        ctl(&["user", "grant-role", "root", "root"]),
        "Role root is granted to user root\n"
    );
    assert_eq!(
        ctl(&["--user", "root:rootpw", "auth", "enable"]),
        "Authentication Enabled\n"
    );
    let anonymous = lode.ctl(&["put", "k", "v"]);
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("etcdserver: user name is empty"));
    assert_eq!(
        ctl(&["--user", "root", "--password", "rootpw", "put", "k", "v"]),
        "OK\n"
    );
    let bob = lode.ctl(&["--user", "bob:new", "get", "k"]);
    assert!(!bob.status.success(), "bob holds no role");
    assert!(String::from_utf8_lossy(&bob.stderr).contains("etcdserver: permission denied"));
    // A user who may not read the health key still finds the member healthy, as etcdctl.
    assert!(ctl(&["--user", "bob:new", "endpoint", "health"]).contains("is healthy"));
    let wrong = lode.ctl(&["--user", "bob:old", "get", "k"]);
    assert!(String::from_utf8_lossy(&wrong.stderr)
        .contains("etcdserver: authentication failed, invalid user ID or password"));
    assert!(ctl(&["--user", "root:rootpw", "auth", "status"])
        .starts_with("Authentication Status: true\n"));
    assert_eq!(
        ctl(&["--user", "root:rootpw", "auth", "disable"]),
        "Authentication Disabled\n"
    );
    assert_eq!(ctl(&["get", "k", "--print-value-only"]), "v\n");
}

/// Root and a user `app` holding role `app` (read-write on `app/`), set up with etcd-client as
/// an operator's script would, and auth turned on.
async fn set_up_app_user(endpoint: &str) {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect");
    client.user_add("root", "rootpw", None).await.expect("root");
    client.user_grant_role("root", "root").await.expect("grant");
    client.role_add("app").await.expect("role");
    client
        .role_grant_permission(
            "app",
            etcd_client::Permission::read_write("app/").with_prefix(),
        )
        .await
        .expect("permission");
    client.user_add("app", "apppw", None).await.expect("user");
    client.user_grant_role("app", "app").await.expect("grant");
    client.auth_enable().await.expect("enable");
}

#[test]
fn etcd_clients_tokens_expire_after_the_ttl_and_are_renewed_by_the_client() {
    use common::{grpc_error, runtime};
    let dir = DataDir::new("auth-token-ttl");
    // Simple tokens unused for 2 s are gone (etcd's --auth-token-ttl); bcrypt at its cheapest.
    let lode = Lode::start(&dir.0, &["--auth-token-ttl=2", "--bcrypt-cost=4"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        set_up_app_user(&endpoint).await;
        let login = etcd_client::ConnectOptions::new().with_user("app", "apppw");
        let mut plain = etcd_client::Client::connect([&endpoint], Some(login.clone()))
            .await
            .expect("connect as app");
        let mut renewing =
            etcd_client::Client::connect([&endpoint], Some(login.with_auto_token_refresh(true)))
                .await
                .expect("connect as app");
        plain.put("app/a", "1", None).await.expect("put");
        let (code, message) = grpc_error(plain.put("other", "1", None).await.expect_err("denied"));
        assert_eq!(code, tonic::Code::PermissionDenied);
        assert_eq!(message, "etcdserver: permission denied");
        let (code, message) = grpc_error(
            plain
                .compact(1, None)
                .await
                .expect_err("compaction needs root"),
        );
        assert_eq!(
            (code, message.as_str()),
            (
                tonic::Code::PermissionDenied,
                "etcdserver: permission denied"
            )
        );
        // A denied watch is canceled at once, with etcd's reason.
        let mut stream = plain.watch("other", None).await.expect("watch call");
        let refused = stream.message().await.expect("stream").expect("answer");
        assert!(refused.canceled(), "{refused:?}");
        assert_eq!(
            refused.cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
        // Unused for longer than the TTL: the token is no longer valid.
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        let (code, message) = grpc_error(plain.get("app/a", None).await.expect_err("expired"));
        assert_eq!(code, tonic::Code::Unauthenticated);
        assert_eq!(message, "etcdserver: invalid auth token");
        // The client that renews its token on exactly that error goes on.
        let read = renewing.get("app/a", None).await.expect("renewed");
        assert_eq!(read.kvs()[0].value(), b"1");
        // Use keeps a token alive past its TTL.
        for _ in 0..6 {
            renewing.put("app/b", "2", None).await.expect("in use");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let mut root = client_as(&endpoint, "root", "rootpw").await;
        // A watch whose user loses the permission is canceled with the reason, and is given
        // nothing written after the revocation; its user is followed by name, though the
        // token it came with ended with a password change in between.
        let mut watch = renewing.watch("app/w", None).await.expect("watch");
        let created = watch.message().await.expect("stream").expect("created");
        assert!(created.created() && !created.canceled());
        root.user_change_password("app", "newpw")
            .await
            .expect("change password");
        root.role_revoke_permission(
            "app",
            "app/",
            Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
        )
        .await
        .expect("revoke");
        root.put("app/w", "after", None).await.expect("root writes");
        let canceled = watch.message().await.expect("stream").expect("canceled");
        assert!(canceled.events().is_empty(), "{canceled:?}");
        assert!(canceled.canceled());
        assert_eq!(
            canceled.cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
        // The password change ended the user's tokens at once: the client's renewal with the
        // old password fails.
        let (code, _) = grpc_error(renewing.get("app/a", None).await.expect_err("old password"));
        assert_eq!(code, tonic::Code::InvalidArgument);
        // A stale token sent along with Authenticate does not stop it (etcd ignores it there).
        let mut auth = lode_protocol::etcd::etcdserverpb::auth_client::AuthClient::new(
            common::grpc_channel(&endpoint).await,
        );
        let fresh = lode_protocol::etcd::etcdserverpb::AuthenticateRequest {
            name: "app".into(),
            password: "newpw".into(),
        };
        let answer = auth
            .authenticate(with_token(fresh, "stale.1"))
            .await
            .expect("authenticate with a stale token along");
        assert!(!answer.into_inner().token.is_empty());
    });
}

/// An etcd-client authenticated as `user`.
async fn client_as(endpoint: &str, user: &str, password: &str) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new().with_user(user, password);
    etcd_client::Client::connect([endpoint], Some(options))
        .await
        .expect("connect as a user")
}

/// A token from `endpoint`'s Authenticate.
async fn token_from(endpoint: &str, user: &str, password: &str) -> String {
    etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect")
        .auth_client()
        .authenticate(user.into(), password.into())
        .await
        .expect("authenticate")
        .token()
        .to_string()
}

/// A gRPC call carrying `token` in its metadata, as etcd's clients send it.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("metadata"));
    request
}

/// An EC P-256 key pair for JWTs, made by openssl: (private key PEM path, public key PEM path).
fn jwt_keys(dir: &std::path::Path) -> (String, String) {
    std::fs::create_dir_all(dir).expect("key dir");
    let private = dir.join("jwt.key");
    let public = dir.join("jwt.pub");
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let (private, public) = (
        private.to_string_lossy().into_owned(),
        public.to_string_lossy().into_owned(),
    );
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &private,
    ]);
    run(&["pkey", "-in", &private, "-pubout", "-out", &public]);
    (private, public)
}

#[test]
fn jwts_are_verified_by_members_that_did_not_issue_them_and_caught_up_by_snapshot() {
    use common::cluster::{cluster_with, wait_for_leader};
    use common::runtime;
    let keys = DataDir::new("auth-jwt-keys");
    let (private, public) = jwt_keys(&keys.0);
    let mut members = cluster_with(
        "auth-jwt",
        &[
            "--bcrypt-cost=4",
            "--snapshot-count=20",
            "--snapshot-catchup-entries=5",
        ],
    );
    // m0 signs; m1 and m2 hold only the public key, so they can verify but not issue.
    for (i, member) in members.iter_mut().enumerate() {
        let settings = if i == 0 {
            format!("jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl=10m")
        } else {
            format!("jwt,pub-key={public},sign-method=ES256")
        };
        member.args.extend(["--auth-token".to_string(), settings]);
    }
    for member in members.iter_mut() {
        member.start();
    }
    wait_for_leader(&members, 0);
    // m2 is away while auth is set up and far more entries than a snapshot's worth pass: it
    // comes back by snapshot. (If it led, the other two elect one of them first: a request
    // already forwarded to it would be lost with it.)
    members[2].lode.take();
    common::cluster::wait_for_leader_among(&members, &[0, 1], 0);
    let urls: Vec<String> = members
        .iter()
        .map(|m| format!("http://127.0.0.1:{}", m.client_port))
        .collect();
    let (signer, verifier, caught_up) = (urls[0].clone(), urls[1].clone(), urls[2].clone());
    runtime().block_on(async {
        set_up_app_user(&signer).await;
        let mut root = client_as(&signer, "root", "rootpw").await;
        for n in 0..100 {
            root.put(format!("filler/{n}"), "x", None)
                .await
                .expect("filler");
        }
    });
    members[2].start();
    runtime().block_on(async {
        // Caught up: it holds every filler write (read with root's JWT from the signer,
        // serializable: from m2's own state).
        let root_token = token_from(&signer, "root", "rootpw").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(channel) = tonic::transport::Channel::from_shared(caught_up.clone())
                .expect("endpoint")
                .connect()
                .await
            {
                let mut kv = lode_protocol::etcd::etcdserverpb::kv_client::KvClient::new(channel);
                let count = lode_protocol::etcd::etcdserverpb::RangeRequest {
                    key: bytes::Bytes::from_static(b"filler/"),
                    range_end: bytes::Bytes::from_static(b"filler0"),
                    count_only: true,
                    serializable: true,
                    ..Default::default()
                };
                if let Ok(answer) = kv.range(with_token(count, &root_token)).await {
                    if answer.into_inner().count == 100 {
                        break;
                    }
                }
            }
            assert!(std::time::Instant::now() < deadline, "m2 never caught up");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    assert!(
        members[2]
            .lode()
            .stderr()
            .contains("installed a snapshot from the leader"),
        "m2 did not catch up by snapshot"
    );
    runtime().block_on(async {
        let token = token_from(&signer, "app", "apppw").await;
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        // A member without the private key cannot issue.
        let unsigned = etcd_client::Client::connect([&verifier], None)
            .await
            .expect("connect");
        assert!(unsigned
            .auth_client()
            .authenticate("app".into(), "apppw".into())
            .await
            .is_err());
        // The signer's token, presented to the others as gRPC metadata.
        for url in [&verifier, &caught_up] {
            let channel = common::grpc_channel(url).await;
            let mut kv = lode_protocol::etcd::etcdserverpb::kv_client::KvClient::new(channel);
            let put = lode_protocol::etcd::etcdserverpb::PutRequest {
                key: format!("app/{url}").into_bytes().into(),
                value: bytes::Bytes::from_static(b"v"),
                ..Default::default()
            };
            kv.put(with_token(put, &token))
                .await
                .expect("allowed on every member");
            let denied = lode_protocol::etcd::etcdserverpb::RangeRequest {
                key: bytes::Bytes::from_static(b"filler/1"),
                serializable: true,
                ..Default::default()
            };
            let status = kv
                .range(with_token(denied, &token))
                .await
                .expect_err("denied");
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{url}");
            // Lease calls a follower answers through the leader carry the caller's token.
            let mut leases = lode_protocol::etcd::etcdserverpb::lease_client::LeaseClient::new(
                common::grpc_channel(url).await,
            );
            let grant = lode_protocol::etcd::etcdserverpb::LeaseGrantRequest { ttl: 60, id: 0 };
            let lease = leases
                .lease_grant(with_token(grant, &token))
                .await
                .expect("grant")
                .into_inner()
                .id;
            let leased = lode_protocol::etcd::etcdserverpb::PutRequest {
                key: format!("app/leased{url}").into_bytes().into(),
                lease,
                ..Default::default()
            };
            kv.put(with_token(leased, &token))
                .await
                .expect("put with a lease");
            let time_to_live = lode_protocol::etcd::etcdserverpb::LeaseTimeToLiveRequest {
                id: lease,
                keys: true,
            };
            let answer = leases
                .lease_time_to_live(with_token(time_to_live, &token))
                .await
                .expect("time to live, keys readable")
                .into_inner();
            assert_eq!(answer.keys.len(), 1, "{url}");
            let revoke = lode_protocol::etcd::etcdserverpb::LeaseRevokeRequest { id: lease };
            leases
                .lease_revoke(with_token(revoke, &token))
                .await
                .expect("revoke: its keys are writable");
        }
    });
}

/// etcd's permission rules said as plainly as possible, for the randomized comparison: a
/// permission or request covers an interval of keys (`range_end` empty: the key alone; `\0`:
/// every key from `key` on); a request is allowed when every key it names is in an interval
/// the user holds with the right type, or the user holds the root role.
mod model {
    use std::collections::{BTreeMap, BTreeSet};

    /// `[start, end)`, `end` `None` for no end.
    pub type Interval = (Vec<u8>, Option<Vec<u8>>);

    pub fn interval(key: &[u8], range_end: &[u8]) -> Interval {
        match range_end {
            [] => {
                let mut end = key.to_vec();
                end.push(0);
                (key.to_vec(), Some(end))
            }
            [0] => (key.to_vec(), None),
            end => (key.to_vec(), Some(end.to_vec())),
        }
    }

    fn contains(interval: &Interval, point: &[u8]) -> bool {
        interval.0.as_slice() <= point && interval.1.as_deref().is_none_or(|end| point < end)
    }

    /// A permission: (read, write, key, range_end).
    pub type Held = (bool, bool, Vec<u8>, Vec<u8>);

    #[derive(Default)]
    pub struct Rules {
        /// Role to its permissions.
        pub roles: BTreeMap<String, Vec<Held>>,
        pub users: BTreeMap<String, BTreeSet<String>>,
    }

    impl Rules {
        /// May `user` read (or write) every key of `key`/`range_end`?
        pub fn allows(&self, user: &str, write: bool, key: &[u8], range_end: &[u8]) -> bool {
            let roles = &self.users[user];
            if roles.contains("root") {
                return true;
            }
            let held: Vec<Interval> = roles
                .iter()
                .filter_map(|role| self.roles.get(role))
                .flatten()
                .filter(|(read, writes, _, _)| if write { *writes } else { *read })
                .map(|(_, _, key, end)| interval(key, end))
                .collect();
            let wanted = interval(key, range_end);
            // Every bound of a held interval inside the request starts a stretch of keys that
            // is held whole or not at all: checking the request's start and those bounds
            // checks every key.
            let mut points = vec![wanted.0.clone()];
            for (start, end) in &held {
                points.push(start.clone());
                points.extend(end.clone());
            }
            points
                .iter()
                .filter(|point| contains(&wanted, point))
                .all(|point| held.iter().any(|interval| contains(interval, point)))
        }
    }
}

#[test]
fn random_grants_revokes_and_requests_agree_with_a_model_of_etcds_rules() {
    use common::etcd::Rng;
    use common::{grpc_error, runtime};
    use etcd_client::{DeleteOptions, GetOptions, Permission, PermissionType};
    let dir = DataDir::new("auth-model");
    let lode = Lode::start(&dir.0, &["--bcrypt-cost=4"]);
    let endpoint = lode.client_url.clone();
    let seed = std::env::var("AUTH_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_0a17);
    runtime().block_on(async move {
        let users = ["u0", "u1", "u2"];
        let roles = ["r0", "r1", "r2", "root"];
        let mut admin = etcd_client::Client::connect([&endpoint], None)
            .await
            .expect("connect");
        let mut rules = model::Rules::default();
        admin.user_add("root", "pw", None).await.expect("root");
        admin.user_grant_role("root", "root").await.expect("grant");
        for user in users {
            admin.user_add(user, "pw", None).await.expect("user");
            rules.users.insert(user.to_string(), Default::default());
        }
        rules
            .users
            .insert("root".into(), ["root".to_string()].into());
        for role in &roles[..3] {
            admin.role_add(*role).await.expect("role");
            rules.roles.insert(role.to_string(), Vec::new());
        }
        admin.auth_enable().await.expect("enable");
        let mut root = client_as(&endpoint, "root", "pw").await;
        let mut clients = Vec::new();
        for user in users {
            clients.push(client_as(&endpoint, user, "pw").await);
        }
        let mut rng = Rng::new(seed);
        let letters = [b"a", b"b", b"c", b"d", b"e", b"f"];
        let range = |rng: &mut Rng| -> (Vec<u8>, Vec<u8>) {
            let key = letters[rng.below(6) as usize].to_vec();
            let range_end = match rng.below(4) {
                0 => Vec::new(),
                1 => vec![0],
                _ => {
                    let end = letters[rng.below(6) as usize].to_vec();
                    if end > key {
                        end
                    } else {
                        Vec::new()
                    }
                }
            };
            let mut key = key;
            if rng.below(5) == 0 {
                key.push(b'/');
            }
            (key, range_end)
        };
        let (mut allowed, mut denied) = (0, 0);
        for step in 0..400 {
            match rng.below(10) {
                // Grant a permission to a role.
                0 | 1 => {
                    let role = roles[rng.below(3) as usize];
                    let (key, range_end) = range(&mut rng);
                    let (kind, read, write) = match rng.below(3) {
                        0 => (PermissionType::Read, true, false),
                        1 => (PermissionType::Write, false, true),
                        _ => (PermissionType::Readwrite, true, true),
                    };
                    let permission =
                        Permission::new(kind, key.clone()).with_range_end(range_end.clone());
                    root.role_grant_permission(role, permission)
                        .await
                        .expect("grant permission");
                    let held = rules.roles.get_mut(role).expect("role");
                    match held.iter_mut().find(|p| p.2 == key && p.3 == range_end) {
                        Some(existing) => *existing = (read, write, key, range_end),
                        None => held.push((read, write, key, range_end)),
                    }
                }
                // Revoke one a role holds.
                2 => {
                    let role = roles[rng.below(3) as usize];
                    let held = rules.roles.get_mut(role).expect("role");
                    if held.is_empty() {
                        continue;
                    }
                    let (_, _, key, range_end) = held.remove(rng.below(held.len() as u64) as usize);
                    let options =
                        etcd_client::RoleRevokePermissionOptions::new().with_range_end(range_end);
                    root.role_revoke_permission(role, key, Some(options))
                        .await
                        .expect("revoke permission");
                }
                // Give a user a role, or take one away (the root role too).
                3 => {
                    let user = users[rng.below(3) as usize];
                    let role = roles[rng.below(4) as usize];
                    let holds = rules.users.get_mut(user).expect("user");
                    if holds.remove(role) {
                        root.user_revoke_role(user, role)
                            .await
                            .expect("revoke role");
                    } else {
                        root.user_grant_role(user, role).await.expect("grant role");
                        holds.insert(role.to_string());
                    }
                }
                // A request, allowed or denied as the model says.
                _ => {
                    let which = rng.below(3) as usize;
                    let user = users[which];
                    let client = &mut clients[which];
                    let (key, range_end) = range(&mut rng);
                    let write = rng.below(2) == 0;
                    let expected = rules.allows(user, write, &key, &range_end);
                    let outcome = match (write, range_end.is_empty()) {
                        (false, _) => client
                            .get(
                                key.clone(),
                                Some(GetOptions::new().with_range(range_end.clone())),
                            )
                            .await
                            .map(drop),
                        (true, true) => client.put(key.clone(), "v", None).await.map(drop),
                        (true, false) => client
                            .delete(
                                key.clone(),
                                Some(DeleteOptions::new().with_range(range_end.clone())),
                            )
                            .await
                            .map(drop),
                    };
                    match outcome {
                        Ok(()) => {
                            allowed += 1;
                            assert!(
                                expected,
                                "step {step} (seed {seed:#x}): {user} was allowed to {} {:?}..{:?}",
                                if write { "write" } else { "read" },
                                String::from_utf8_lossy(&key),
                                String::from_utf8_lossy(&range_end)
                            );
                        }
                        Err(error) => {
                            denied += 1;
                            let (code, message) = grpc_error(error);
                            assert_eq!(
                                (code, message.as_str()),
                                (
                                    tonic::Code::PermissionDenied,
                                    "etcdserver: permission denied"
                                ),
                                "step {step}"
                            );
                            assert!(
                                !expected,
                                "step {step} (seed {seed:#x}): {user} was denied {} {:?}..{:?}",
                                if write { "write" } else { "read" },
                                String::from_utf8_lossy(&key),
                                String::from_utf8_lossy(&range_end)
                            );
                        }
                    }
                }
            }
        }
        // Both answers were exercised, so neither side of the comparison went untested.
        assert!(
            allowed > 20 && denied > 20,
            "allowed {allowed}, denied {denied}"
        );
    });
}

#[test]
fn a_lock_waiter_whose_user_lost_the_locks_keys_is_refused_when_its_turn_comes() {
    use common::runtime;
    let dir = DataDir::new("auth-lock");
    let lode = Lode::start(&dir.0, &["--bcrypt-cost=4"]);
    let endpoint = lode.client_url.clone();
    runtime().block_on(async move {
        set_up_app_user(&endpoint).await;
        let mut first = client_as(&endpoint, "app", "apppw").await;
        let mut second = client_as(&endpoint, "app", "apppw").await;
        let mut root = client_as(&endpoint, "root", "rootpw").await;
        // A lease holding a key app may not write cannot carry app's lock.
        let roots = root.lease_grant(60, None).await.expect("grant").id();
        root.put(
            "secret",
            "s",
            Some(etcd_client::PutOptions::new().with_lease(roots)),
        )
        .await
        .expect("root's key");
        let borrowed = first
            .lock(
                "app/lock",
                Some(etcd_client::LockOptions::new().with_lease(roots)),
            )
            .await
            .expect_err("another's lease");
        assert!(
            borrowed
                .to_string()
                .contains("etcdserver: permission denied"),
            "{borrowed}"
        );
        let held = first.lock("app/lock", None).await.expect("first holds");
        let waiting = tokio::spawn(async move { second.lock("app/lock", None).await });
        let contenders = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while root
            .get("app/lock/", Some(contenders.clone()))
            .await
            .expect("count")
            .count()
            < 2
        {
            assert!(std::time::Instant::now() < deadline, "never queued");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        root.role_revoke_permission(
            "app",
            "app/",
            Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
        )
        .await
        .expect("revoke");
        root.delete(held.key(), None)
            .await
            .expect("release the first");
        let refused = waiting
            .await
            .expect("task")
            .expect_err("the waiter may no longer hold the lock");
        assert!(
            refused
                .to_string()
                .contains("etcdserver: permission denied"),
            "{refused}"
        );
        // It left the queue: no contender key is left.
        let left = root
            .get("app/lock/", Some(contenders))
            .await
            .expect("count")
            .count();
        assert_eq!(left, 0);
    });
}
