//! etcd's own command-line client, Debian's `etcdctl` (package etcd-client, installed by
//! ./test.sh), against a real `lode` over etcd's gRPC API: every command that maps to the KV,
//! Cluster and Maintenance services, in their flag forms, with `-w json` output parsed. Then
//! `etcdctl snapshot save` turned back into a data dir by `lodectl snapshot restore`.

mod common;

use std::process::{Command, Output};

use common::cluster::{cluster, own_id, wait_for_leader};
use common::server::{free_port, ok, output_with_input, DataDir, Lode};
use common::{base64, json};

/// Runs etcdctl (API v3) against `endpoint` (a URL, as users pass it).
fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    etcdctl_with_input(endpoint, args, None)
}

fn etcdctl_with_input(endpoint: &str, args: &[&str], input: Option<&str>) -> Output {
    // Debian's etcd-client package, which ./test.sh installs.
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    output_with_input(&mut command, input)
}

/// etcdctl's standard output, which must have succeeded.
fn succeeded(output: Output) -> String {
    assert!(
        output.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// etcdctl's error line, which must have failed.
fn refused(output: Output) -> String {
    assert!(
        !output.status.success(),
        "etcdctl succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn etcdctl_key_value_commands_work_unchanged() {
    let dir = DataDir::new("etcdctl-kv");
    let lode = Lode::start(&dir.0, &[]);
    let url = lode.client_url.clone();
    let run = |args: &[&str]| succeeded(etcdctl(&url, args));

    assert_eq!(run(&["put", "a", "1"]), "OK\n");
    assert_eq!(run(&["put", "b", "2"]), "OK\n");
    assert_eq!(run(&["put", "c", "3"]), "OK\n");
    assert_eq!(run(&["get", "a"]), "a\n1\n");
    assert_eq!(
        run(&["get", "", "--prefix", "--keys-only"]),
        "a\n\nb\n\nc\n\n"
    );
    assert_eq!(
        run(&["get", "b", "--from-key", "--print-value-only"]),
        "2\n3\n"
    );
    assert_eq!(
        run(&[
            "get",
            "",
            "--prefix",
            "--sort-by=KEY",
            "--order=DESCEND",
            "--limit=2",
            "--print-value-only"
        ]),
        "3\n2\n"
    );
    assert_eq!(run(&["get", "a", "b"]), "a\n1\n");
    assert_eq!(run(&["put", "a", "one", "--prev-kv"]), "OK\na\n1\n");
    assert_eq!(run(&["get", "a", "--rev=2", "--print-value-only"]), "1\n");
    let fields = run(&["get", "", "--prefix", "--keys-only", "-w", "fields"]);
    assert!(fields.contains("\"Count\" : 3"), "{fields}");

    let got = json(&run(&["get", "a", "-w", "json"]));
    assert_eq!(got["count"], 1);
    assert_eq!(got["kvs"][0]["key"], base64("a"));
    assert_eq!(got["kvs"][0]["value"], base64("one"));
    assert_eq!(got["kvs"][0]["create_revision"], 2);
    assert_eq!(got["kvs"][0]["mod_revision"], 5);
    assert_eq!(got["kvs"][0]["version"], 2);
    assert_eq!(got["header"]["revision"], 5);
    assert_ne!(got["header"]["member_id"], 0);

    assert_eq!(run(&["del", "b", "--prev-kv"]), "1\nb\n2\n");
    assert_eq!(run(&["del", "nothing"]), "0\n");

    // A transaction from standard input, non-interactive: compares, success ops, failure ops.
    let txn = "value(\"a\") = \"one\"\n\nput a two\nget a\n\nput a never\n\n";
    assert_eq!(
        succeeded(etcdctl_with_input(&url, &["txn"], Some(txn))),
        "SUCCESS\n\nOK\n\na\ntwo\n"
    );
    let failed = json(&succeeded(etcdctl_with_input(
        &url,
        &["txn", "-w", "json"],
        Some(txn),
    )));
    assert_eq!(
        failed["succeeded"],
        serde_json::Value::Null,
        "false is left out"
    );
    assert_eq!(run(&["get", "a", "--print-value-only"]), "never\n");

    assert_eq!(
        run(&["compaction", "4", "--physical"]),
        "compacted revision 4\n"
    );
    let error = refused(etcdctl(&url, &["get", "a", "--rev=3"]));
    assert!(
        error.contains("etcdserver: mvcc: required revision has been compacted"),
        "{error}"
    );
    let error = refused(etcdctl(&url, &["put", "", "x"]));
    assert!(error.contains("etcdserver: key is not provided"), "{error}");
    let error = refused(etcdctl(&url, &["compaction", "1000"]));
    assert!(
        error.contains("etcdserver: mvcc: required revision is a future revision"),
        "{error}"
    );
}

#[test]
fn etcdctl_maintenance_commands_and_snapshot_restore() {
    let dir = DataDir::new("etcdctl-maintenance");
    let lode = Lode::start(&dir.0, &[]);
    let url = lode.client_url.clone();
    let run = |args: &[&str]| succeeded(etcdctl(&url, args));
    for n in 0..20 {
        run(&["put", &format!("key{n:02}"), &format!("value{n}")]);
    }
    run(&["del", "key07"]);

    let status = json(&run(&["endpoint", "status", "-w", "json"]));
    let status = &status[0]["Status"];
    let member_id = status["header"]["member_id"].as_u64().unwrap();
    assert_eq!(status["version"], "3.5.0");
    assert_eq!(status["leader"].as_u64(), Some(member_id));
    assert_eq!(status["header"]["revision"], 22);
    assert!(status["raftIndex"].as_u64().unwrap() >= 22);
    assert!(status["dbSize"].as_u64().unwrap() > 0);
    // The size counts every version held, on every core's shard: each put's key, value and
    // overhead, and the delete's tombstone; a second after the last write, exactly.
    let overhead = lode::mvcc::shard::VERSION_OVERHEAD_BYTES;
    let expected: u64 = (0..20)
        .map(|n| format!("key{n:02}").len() as u64 + format!("value{n}").len() as u64 + overhead)
        .sum::<u64>()
        + "key07".len() as u64
        + overhead;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = json(&run(&["endpoint", "status", "-w", "json"]));
        let size = status[0]["Status"]["dbSize"].as_u64().unwrap();
        if size == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the size shows {size} bytes, not {expected}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let table = run(&["endpoint", "status", "-w", "table"]);
    assert!(table.contains("3.5.0"), "{table}");
    let health = json(&run(&["endpoint", "health", "-w", "json"]));
    assert_eq!(health[0]["health"], true);
    let hash = json(&run(&["endpoint", "hashkv", "-w", "json"]));
    assert_ne!(hash[0]["HashKV"]["hash"].as_u64(), Some(0));

    assert_eq!(run(&["alarm", "list"]), "");
    assert_eq!(run(&["alarm", "disarm"]), "");
    let defrag = run(&["defrag"]);
    assert!(
        defrag.starts_with("Finished defragmenting etcd member"),
        "{defrag}"
    );
    let moved = run(&["move-leader", &format!("{member_id:x}")]);
    assert!(moved.contains("Leadership transferred"), "{moved}");
    let members = json(&run(&["member", "list", "-w", "json"]));
    assert_eq!(members["members"][0]["name"], "default");

    // etcdctl keeps the download (it checks the length etcd's hash trailer gives it) ...
    let saved = dir.0.with_extension("etcdctl.snap");
    let out = run(&["snapshot", "save", saved.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    // It is etcd's database: etcd's own tool reads it ...
    let etcds = json(&run(&[
        "snapshot",
        "status",
        saved.to_str().unwrap(),
        "-w",
        "json",
    ]));
    assert_eq!(etcds["revision"], 22);
    assert!(etcds["totalKey"].as_u64().unwrap() >= 20, "{etcds}");
    // ... and lodectl describes it exactly as etcdctl does.
    let described = json(&ok(lode.ctl(&[
        "snapshot",
        "status",
        saved.to_str().unwrap(),
        "-w",
        "json",
    ])));
    assert_eq!(described, etcds);
    let total_keys = described["totalKey"].as_u64().unwrap();
    let simple = ok(lode.ctl(&["snapshot", "status", saved.to_str().unwrap()]));
    let hash = format!("{:x}", described["hash"].as_u64().unwrap());
    assert!(
        simple.starts_with(&format!("{hash}, 22, {total_keys}, ")),
        "{simple}"
    );
    let table = ok(lode.ctl(&["snapshot", "status", saved.to_str().unwrap(), "-w", "table"]));
    assert!(
        table.contains("TOTAL KEYS") && table.contains(&hash),
        "{table}"
    );
    // ... and restores it into a new data dir of a new cluster.
    let restored_dir = DataDir::new("etcdctl-restored");
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let restored = ok(lode.ctl(&[
        "snapshot",
        "restore",
        saved.to_str().unwrap(),
        "--data-dir",
        restored_dir.0.to_str().unwrap(),
        "--name",
        "phoenix",
        "--initial-advertise-peer-urls",
        &peer_url,
    ]));
    assert!(
        restored.starts_with("Restored revision 22 (20 keys)"),
        "{restored}"
    );
    // Restoring over an existing data dir, or a damaged download, is refused.
    let again = lode.ctl(&[
        "snapshot",
        "restore",
        saved.to_str().unwrap(),
        "--data-dir",
        restored_dir.0.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let mut damaged = std::fs::read(&saved).unwrap();
    damaged[100] ^= 0xff;
    let damaged_path = dir.0.with_extension("damaged.snap");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let broken_dir = DataDir::new("etcdctl-broken");
    let broken = lode.ctl(&[
        "snapshot",
        "restore",
        damaged_path.to_str().unwrap(),
        "--data-dir",
        broken_dir.0.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("integrity check failed"),
        "{broken:?}"
    );
    let status = lode.ctl(&["snapshot", "status", damaged_path.to_str().unwrap()]);
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("integrity check failed"),
        "{status:?}"
    );
    assert!(
        !broken_dir.0.exists(),
        "nothing written for a damaged snapshot"
    );
    let _ = std::fs::remove_file(&saved);
    let _ = std::fs::remove_file(&damaged_path);

    // The restored member serves the same keys at the same revisions and goes on from there.
    let phoenix = Lode::start(
        &restored_dir.0,
        &[
            "--name",
            "phoenix",
            "--initial-advertise-peer-urls",
            &peer_url,
        ],
    );
    let purl = phoenix.client_url.clone();
    let got = json(&succeeded(etcdctl(
        &purl,
        &["get", "key", "--prefix", "-w", "json"],
    )));
    assert_eq!(got["count"], 19);
    assert_eq!(got["header"]["revision"], 22);
    assert_eq!(got["kvs"][3]["key"], base64("key03"));
    assert_eq!(got["kvs"][3]["mod_revision"], 5);
    let put = json(&succeeded(etcdctl(
        &purl,
        &["put", "after", "restore", "-w", "json"],
    )));
    assert_eq!(put["header"]["revision"], 23);
    let members = json(&succeeded(etcdctl(
        &purl,
        &["member", "list", "-w", "json"],
    )));
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(members["members"][0]["name"], "phoenix");
    assert_ne!(members["members"][0]["ID"].as_u64(), Some(member_id));
}

#[test]
fn etcdctl_drives_a_three_member_cluster() {
    let mut members = cluster("etcdctl-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let urls: Vec<String> = members
        .iter()
        .map(|m| m.lode().client_url.clone())
        .collect();
    let all = urls.join(",");
    let follower = (leader + 1) % 3;

    assert_eq!(
        succeeded(etcdctl(&urls[follower], &["put", "k", "v"])),
        "OK\n"
    );
    for url in &urls {
        assert_eq!(
            succeeded(etcdctl(url, &["get", "k", "--print-value-only"])),
            "v\n"
        );
    }
    let listed = json(&succeeded(etcdctl(
        &urls[follower],
        &["member", "list", "-w", "json"],
    )));
    assert_eq!(listed["members"].as_array().map(Vec::len), Some(3));
    let statuses = json(&succeeded(etcdctl(
        &all,
        &["endpoint", "status", "-w", "json"],
    )));
    let leaders: Vec<u64> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"]["leader"].as_u64().unwrap())
        .collect();
    assert_eq!(leaders, vec![own_id(&members[leader]); 3]);

    // A learner that never starts: added, refused promotion, removed.
    let added = succeeded(etcdctl(
        &urls[follower],
        &[
            "member",
            "add",
            "newbie",
            &format!("--peer-urls=http://127.0.0.1:{}", free_port()),
            "--learner",
        ],
    ));
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    let learner = json(&succeeded(etcdctl(
        &urls[leader],
        &["member", "list", "-w", "json"],
    )))["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["isLearner"] == true)
        .and_then(|m| m["ID"].as_u64())
        .expect("the learner is listed");
    let error = refused(etcdctl(
        &urls[leader],
        &["member", "promote", &format!("{learner:x}")],
    ));
    assert!(
        error
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{error}"
    );
    let removed = succeeded(etcdctl(
        &urls[follower],
        &["member", "remove", &format!("{learner:x}")],
    ));
    assert!(removed.contains("removed from cluster"), "{removed}");

    // Leadership moves where asked.
    let target = own_id(&members[follower]);
    let moved = succeeded(etcdctl(&all, &["move-leader", &format!("{target:x}")]));
    assert!(moved.contains(&format!("to {target:x}")), "{moved}");
    assert_eq!(
        members[follower].status().map(|(leads, _)| leads),
        Some(true)
    );
}

/// etcdctl's lease commands against `url`, as its users see them; `lodectl` (when given)
/// must print the same.
type Ctl<'a> = &'a dyn Fn(&[&str]) -> Output;

fn lease_commands(url: &str, lodectl: Option<Ctl<'_>>) {
    let run = |args: &[&str]| succeeded(etcdctl(url, args));
    let granted = run(&["lease", "grant", "100"]);
    let id = granted
        .strip_prefix("lease ")
        .and_then(|rest| rest.strip_suffix(" granted with TTL(100s)\n"))
        .unwrap_or_else(|| panic!("{granted}"))
        .to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(run(&["put", "--lease", &id, "held1", "v"]), "OK\n");
    assert_eq!(
        run(&["put", &format!("--lease={id}"), "held2", "v"]),
        "OK\n"
    );
    let remaining = run(&["lease", "timetolive", &id, "--keys"]);
    let prefix = format!("lease {id} granted with TTL(100s), remaining(");
    assert!(
        remaining.starts_with(&prefix) && remaining.ends_with("s), attached keys([held1 held2])\n"),
        "{remaining}"
    );
    let as_json = json(&run(&["lease", "timetolive", &id, "-w", "json"]));
    assert_eq!(as_json["granted-ttl"], 100);
    assert_eq!(
        as_json["id"].as_i64().map(|n| format!("{n:016x}")),
        Some(id.clone())
    );
    assert!(run(&["lease", "list"]).contains(&format!("\n{id}\n")));
    assert_eq!(
        run(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(100)\n")
    );
    if let Some(lodectl) = lodectl {
        let same = |args: &[&str]| {
            let output = lodectl(args);
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).expect("utf-8")
        };
        assert_eq!(
            same(&["lease", "keep-alive", "--once", &id]),
            format!("lease {id} keepalived with TTL(100)\n")
        );
        assert!(same(&["lease", "timetolive", &id, "--keys"]).starts_with(&prefix));
        assert_eq!(
            same(&["lease", "list"]),
            run(&["lease", "list"]),
            "lodectl lists as etcdctl"
        );
    }
    assert_eq!(
        run(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    // Its keys went with it.
    assert_eq!(run(&["get", "held", "--prefix"]), "");
    assert_eq!(
        run(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    // Keeping a revoked lease alive ends at once, as etcdctl's does.
    assert_eq!(
        run(&["lease", "keep-alive", &id]),
        format!("lease {id} expired or revoked.\n")
    );
    let error = refused(etcdctl(url, &["lease", "revoke", &id]));
    assert!(
        error.contains("failed to revoke lease (etcdserver: requested lease not found)"),
        "{error}"
    );
    let error = refused(etcdctl(url, &["put", "--lease", &id, "k", "v"]));
    assert!(
        error.contains("etcdserver: requested lease not found"),
        "{error}"
    );
    let granted = json(&run(&["lease", "grant", "1", "-w", "json"]));
    assert!(granted["ID"].as_i64().is_some_and(|n| n > 0), "{granted}");
    assert!(
        granted["TTL"].as_i64().is_some_and(|ttl| ttl >= 1),
        "{granted}"
    );
}

#[test]
fn etcdctl_lease_commands_on_one_member() {
    let dir = DataDir::new("etcdctl-lease");
    let lode = Lode::start(&dir.0, &[]);
    let lodectl = lode.ctl_command();
    lease_commands(&lode.client_url, Some(&lodectl));
    // The minimum TTL from a 1 s election timeout.
    assert!(
        succeeded(etcdctl(&lode.client_url, &["lease", "grant", "1"]))
            .ends_with("granted with TTL(2s)\n")
    );
}

#[test]
fn etcdctl_lease_commands_through_a_follower() {
    let mut members = cluster("etcdctl-lease-cluster");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = &members[(leader + 1) % 3];
    lease_commands(&follower.lode().client_url, None);
}
