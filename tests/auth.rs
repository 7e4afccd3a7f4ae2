//! etcd's auth store through etcd's own etcdctl: users, roles and permissions set up as etcd's
//! auth walkthrough does, kept through the log and snapshots across a SIGKILL.

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
    // Enabling is refused until lode authorizes requests, and says so.
    let enable = etcdctl(&endpoint, &["auth", "enable"]);
    assert!(!enable.status.success());
    assert!(
        String::from_utf8_lossy(&enable.stderr).contains("cannot be turned on yet"),
        "{}",
        String::from_utf8_lossy(&enable.stderr)
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
    let run = |args: &[&str]| succeeded(etcdctl(&endpoint, args));
    assert_eq!(run(&["user", "list"]), "alice\nroot\n");
    assert_eq!(run(&["role", "list"]), "reader\nroot\n");
    assert_eq!(run(&["user", "get", "alice"]), expected_user);
    assert_eq!(run(&["role", "get", "reader"]), role);
    assert_eq!(run(&["user", "delete", "alice"]), "User alice deleted\n");
    assert_eq!(run(&["user", "list"]), "root\n");
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
}
