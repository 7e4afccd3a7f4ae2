//! lode started the way etcd is started: members given etcd's flags alone, several on one host,
//! started together and restarted at once after SIGKILL (as systemd's `Restart=always` does);
//! a lode started with no flags at all, reached by lodectl's defaults.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{cluster, wait_for_count, wait_for_leader, Member};
use common::etcd::{etcdctl, succeeded};
use common::server::DataDir;

/// Starts every member at the same time (each on its own thread), as a deployment tool does.
fn start_together(members: &mut [Member]) {
    std::thread::scope(|scope| {
        for member in members.iter_mut() {
            scope.spawn(move || member.start());
        }
    });
}

#[test]
fn three_members_with_etcds_flags_alone_form_a_cluster_and_restart_at_once_after_sigkill() {
    let mut members = cluster("deploy-etcd-flags");
    for member in &members {
        assert!(
            member.args.iter().all(|arg| !arg.starts_with("--")
                || [
                    "--name",
                    "--listen-peer-urls",
                    "--initial-advertise-peer-urls",
                    "--initial-cluster",
                    "--initial-cluster-token",
                    "--heartbeat-interval",
                    "--election-timeout",
                ]
                .contains(&arg.as_str())),
            "etcd's flags only: {:?}",
            member.args
        );
    }
    start_together(&mut members);
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| m.lode().client_url.clone())
        .collect();
    let all = endpoints.join(",");
    // Each member takes writes and all of them see every write: one cluster, not three.
    for (i, endpoint) in endpoints.iter().enumerate() {
        assert_eq!(
            succeeded(etcdctl(endpoint, &["put", &format!("k{i}"), "v"])),
            "OK\n"
        );
    }
    for endpoint in &endpoints {
        let keys = succeeded(etcdctl(
            endpoint,
            &["get", "k", "--prefix", "--keys-only", "--consistency=l"],
        ));
        assert_eq!(keys.split_whitespace().count(), 3, "{endpoint}: {keys}");
    }
    let list = succeeded(etcdctl(&all, &["member", "list"]));
    assert_eq!(list.lines().count(), 3, "{list}");

    // The leader killed and started again at once: it rejoins and catches up. (The write waits
    // for the new leader: one proposed meanwhile may have been forwarded to the dead leader
    // and time out, as with etcd.)
    let leader = wait_for_leader(&members, 0);
    let term = members[leader].status().expect("status").1;
    members[leader].lode.as_mut().expect("running").kill();
    members[leader].start();
    wait_for_leader(&members, term);
    let other = (leader + 1) % 3;
    assert_eq!(
        succeeded(etcdctl(&endpoints[other], &["put", "after-one-kill", "v"])),
        "OK\n"
    );
    wait_for_count(&members[leader], "after-one-kill", 1);

    // Every member killed at once and all started again at once.
    for member in &mut members {
        member.lode.as_mut().expect("running").kill();
    }
    start_together(&mut members);
    assert_eq!(
        succeeded(etcdctl(&all, &["put", "after-all-killed", "v"])),
        "OK\n"
    );
    for member in &members {
        wait_for_count(member, "k", 3);
        wait_for_count(member, "after-all-killed", 1);
    }
}

#[test]
fn a_second_lode_on_the_same_client_url_is_refused_not_given_a_share() {
    let first_dir = DataDir::new("deploy-shared-first");
    let second_dir = DataDir::new("deploy-shared-second");
    let first = common::server::Lode::start(&first_dir.0, &[]);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_lode"))
        .arg("--data-dir")
        .arg(&second_dir.0)
        .args(["--listen-client-urls", &first.client_url])
        .args(["--advertise-client-urls", &first.client_url])
        .output()
        .expect("run lode");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the second lode must not start"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another lode process on this host listens there"),
        "{stderr}"
    );
    assert!(stderr.contains("waiting"), "it said it waits: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // The first one still answers every connection.
    for n in 0..20 {
        assert!(first
            .ctl(&["put", &format!("still-{n}"), "mine"])
            .status
            .success());
    }
}

/// Runs `program` with `args` in `dir` with stderr to `log`.
fn spawn_in(
    dir: &std::path::Path,
    program: &str,
    args: &[&str],
    log: &std::path::Path,
) -> std::process::Child {
    Command::new(program)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn")
}

/// Waits until the lode logging to `log` says it serves (so a stray server on the default port
/// cannot stand in for it), then until lodectl with no flags (its default endpoint) answers.
fn wait_until_lodectl_reaches_it(dir: &std::path::Path, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("serving the native protocol")
    {
        assert!(
            Instant::now() < deadline,
            "lode never served: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_lodectl"))
            .current_dir(dir)
            .args(["get", "probe"])
            .output()
            .expect("lodectl");
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lodectl never reached the default lode: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_default_lode_restarted_at_once_after_sigkill_starts_and_keeps_its_writes() {
    // `lode` with no flags at all, in a directory of its own (its data dir is ./default.lode),
    // on etcd's default client URL; lodectl with no flags reaches it.
    let dir = DataDir::new("deploy-defaults");
    std::fs::create_dir_all(&dir.0).expect("dir");
    let log = dir.0.join("lode.stderr");
    let lode = env!("CARGO_BIN_EXE_lode");
    let mut child = spawn_in(&dir.0, lode, &[], &log);
    wait_until_lodectl_reaches_it(&dir.0, &log);
    let put = Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .current_dir(&dir.0)
        .args(["put", "survives", "kill-9"])
        .output()
        .expect("lodectl");
    assert!(put.status.success(), "{put:?}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // At once, as a supervisor restarts it: no "Address already in use".
    let mut child = spawn_in(&dir.0, lode, &[], &log);
    wait_until_lodectl_reaches_it(&dir.0, &log);
    let get = Command::new(env!("CARGO_BIN_EXE_lodectl"))
        .current_dir(&dir.0)
        .args(["get", "survives", "--print-value-only"])
        .output()
        .expect("lodectl");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(String::from_utf8_lossy(&get.stdout), "kill-9\n", "{stderr}");
    assert!(
        child.try_wait().expect("status").is_none(),
        "still running: {stderr}"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}
