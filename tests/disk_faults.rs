//! Disk faults on real processes, each with a defined outcome: a member whose fdatasync fails
//! stops at once, says why and loses nothing acknowledged; a leader whose disk hangs hands
//! leadership over so the cluster keeps serving; a member whose disk is full serves reads,
//! refuses writes with etcd's NOSPACE error, raises the NOSPACE alarm, and takes writes again
//! (alarm cleared) once space returns, a leader handing over at once. Members are started with
//! etcd's flags only; faults come from `LODE_FAULT_SYNC_DELAY_FILE`, a test-only file read at
//! every log sync and write (milliseconds to add, `eio`, or `enospc`; removed to end the
//! fault).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::etcd::{etcdctl, succeeded};
use common::server::{free_port, DataDir, Lode};

/// etcd's error for a write refused for lack of space.
const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

/// Waits (a minute at most) until `check` holds, polling.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `member` holds `expected` pairs under `prefix`; reads that fail meanwhile (a
/// linearizable read waits for the member to catch up, and may time out) are asked again.
fn wait_for_catch_up(member: &Member, prefix: &str, expected: usize) {
    let expected = format!("{expected}\n");
    wait_until(&format!("{} holding {expected} pairs", member.name), || {
        let count = member
            .lode()
            .ctl(&["get", prefix, "--prefix", "--count-only"]);
        count.status.success() && String::from_utf8_lossy(&count.stdout) == expected
    });
}

/// `etcdctl alarm list` at `endpoint`.
fn alarm_list(endpoint: &str) -> String {
    succeeded(etcdctl(endpoint, &["alarm", "list"]))
}

/// Tries a put through `endpoint` until one is refused with NOSPACE; every attempt uses a
/// key under `unknown-` (the first attempts may time out, their outcome unknown).
fn wait_for_nospace_refusal(endpoint: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let put = etcdctl(endpoint, &["put", &format!("unknown-{attempt}"), "v"]);
        let error = String::from_utf8_lossy(&put.stderr).into_owned();
        if !put.status.success() && error.contains(NOSPACE) {
            return error;
        }
        assert!(
            Instant::now() < deadline,
            "never refused with NOSPACE; last: {} {error}",
            put.status
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

/// A cluster whose member i reads its sync fault from the file `faults[i]`.
fn cluster_with_fault_files(name: &str) -> (Vec<Member>, Vec<PathBuf>) {
    let mut members = cluster(name);
    let mut faults = Vec::new();
    for member in &mut members {
        let fault = member.dir.0.with_extension("sync-fault");
        member.env = vec![(
            "LODE_FAULT_SYNC_DELAY_FILE".into(),
            fault.display().to_string(),
        )];
        member.start();
        faults.push(fault);
    }
    (members, faults)
}

/// Puts `key` through `member`, again while the cluster is between leaders (an outcome of
/// "timed out" or "leader changed" is unknown or refused; the put is the same either way).
fn put_until_done(member: &Member, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let put = member
            .lode()
            .ctl(&["--command-timeout", "10", "put", key, "v"]);
        if put.status.success() {
            return;
        }
        let error = String::from_utf8_lossy(&put.stderr).into_owned();
        assert!(
            Instant::now() < deadline,
            "{key} was never written: {error}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failing_fsync_stops_the_member_and_loses_nothing_acknowledged() {
    let (mut members, faults) = cluster_with_fault_files("disk-eio");
    // The leader's disk fails: the hardest case, an election follows.
    let leader = wait_for_leader(&members, 0);
    for n in 0..6 {
        put_until_done(&members[n % 3], &format!("eio-{n}"));
    }
    std::fs::write(&faults[leader], "eio").expect("fault file");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for n in 6..20 {
        put_until_done(&members[others[n % 2]], &format!("eio-{n}"));
    }
    members[leader].wait_for_exit("the member went on after a failed fdatasync");
    let log = members[leader].lode().stderr();
    assert!(
        log.contains("fdatasync") && log.contains("failed") && log.contains("aborting"),
        "the member did not say why it stopped: {log}"
    );
    // The others elected a leader and hold every acknowledged write.
    wait_for_count(&members[others[0]], "eio-", 20);
    // Restarted on a healthy disk, the member holds them too, its own writes included.
    std::fs::remove_file(&faults[leader]).expect("fault file");
    members[leader].start();
    wait_for_count(&members[leader], "eio-", 20);
    put_until_done(&members[leader], "eio-after");
    wait_for_convergence(&members, &[0, 1, 2]);
}

#[test]
fn a_leader_whose_disk_hangs_hands_leadership_over() {
    let (mut members, faults) = cluster_with_fault_files("disk-hang");
    let leader = wait_for_leader(&members, 0);
    let (_, term) = members[leader].status().expect("status");
    put_until_done(&members[leader], "hang-0");
    // Every sync of the leader's log now takes 20 s: its heartbeats go on (they never wait
    // for the disk), so no follower would ever call an election.
    std::fs::write(&faults[leader], "20000").expect("fault file");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // A write makes the leader's log wait on the disk.
    let writer = {
        let put = members[others[0]].lode().ctl_command();
        std::thread::spawn(move || put(&["--command-timeout", "30", "put", "hang-1", "v"]))
    };
    let started = Instant::now();
    let new_leader = wait_for_leader_among(&members, &others, term);
    let waited = started.elapsed();
    let log = members[leader].lode().stderr();
    assert!(
        log.contains("handing leadership over"),
        "the leader did not say why it stepped down: {log}"
    );
    // The cluster serves writes without the hung member.
    for n in 2..6 {
        put_until_done(&members[new_leader], &format!("hang-{n}"));
    }
    let _ = writer.join();
    wait_for_count(&members[new_leader], "hang-", 6);
    eprintln!("leadership moved {waited:?} after the disk hung");
    // The disk recovers (once the sync asleep in it ends): the member catches up.
    std::fs::remove_file(&faults[leader]).expect("fault file");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let count = members[leader]
            .lode()
            .ctl(&["get", "hang-", "--prefix", "--count-only"]);
        if count.status.success() && String::from_utf8_lossy(&count.stdout) == "6\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the member never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_convergence(&members, &[0, 1, 2]);
    let _ = &mut members;
}

#[test]
fn a_single_member_with_a_full_disk_serves_reads_and_takes_writes_again_when_space_returns() {
    let dir = DataDir::new("disk-full-single");
    let fault = dir.0.with_extension("sync-fault");
    let env = vec![(
        "LODE_FAULT_SYNC_DELAY_FILE".to_string(),
        fault.display().to_string(),
    )];
    let port = free_port();
    let mut lode = Lode::start_on_with_env(&dir.0, port, &[], &env);
    let endpoint = lode.client_url.clone();
    for n in 0..10 {
        succeeded(etcdctl(
            &endpoint,
            &["put", &format!("full-{n}"), &format!("v{n}")],
        ));
    }
    let status: serde_json::Value = serde_json::from_str(&succeeded(etcdctl(
        &endpoint,
        &["endpoint", "status", "-w", "json"],
    )))
    .expect("json");
    let id = status[0]["Status"]["header"]["member_id"]
        .as_u64()
        .expect("member id");
    std::fs::write(&fault, "enospc").expect("fault file");
    // The first write to find the disk full waits and times out (it may still be written once
    // space returns: its outcome is unknown); later ones are refused at once.
    let refusal = wait_for_nospace_refusal(&endpoint);
    assert!(refusal.contains("database space exceeded"), "{refusal}");
    let put = etcdctl(&endpoint, &["put", "unknown-again", "v"]);
    let error = String::from_utf8_lossy(&put.stderr);
    assert!(!put.status.success() && error.contains(NOSPACE), "{error}");
    // Reads go on, linearizable and serializable.
    assert_eq!(
        succeeded(etcdctl(&endpoint, &["get", "full-3", "--print-value-only"])),
        "v3\n"
    );
    assert_eq!(
        succeeded(etcdctl(
            &endpoint,
            &["get", "full-", "--prefix", "--keys-only", "--consistency=s"]
        ))
        .lines()
        .filter(|line| !line.is_empty())
        .count(),
        10
    );
    // The alarm is listed, and in the status's errors.
    let alarm = format!("memberID:{id} alarm:NOSPACE");
    assert!(
        alarm_list(&endpoint).contains(&alarm),
        "{}",
        alarm_list(&endpoint)
    );
    let status = succeeded(etcdctl(&endpoint, &["endpoint", "status", "-w", "json"]));
    assert!(status.contains("alarm:NOSPACE"), "{status}");
    let log = lode.stderr();
    assert!(log.contains("the log's disk is full"), "{log}");
    // Space returns: writes are taken again and the alarm clears by itself.
    std::fs::remove_file(&fault).expect("fault file");
    let freed = Instant::now();
    wait_until("a put taken once space returned", || {
        etcdctl(&endpoint, &["put", "full-10", "v10"])
            .status
            .success()
    });
    eprintln!("writes resumed {:?} after space returned", freed.elapsed());
    wait_until("the alarm cleared", || alarm_list(&endpoint).is_empty());
    for n in 11..15 {
        succeeded(etcdctl(
            &endpoint,
            &["put", &format!("full-{n}"), &format!("v{n}")],
        ));
    }
    // Nothing acknowledged is lost, across a restart too.
    let check = |endpoint: &str| {
        for n in 0..15 {
            assert_eq!(
                succeeded(etcdctl(
                    endpoint,
                    &["get", &format!("full-{n}"), "--print-value-only"]
                )),
                format!("v{n}\n")
            );
        }
    };
    check(&endpoint);
    assert!(lode.terminate(), "lode did not stop cleanly");
    drop(lode);
    let lode = Lode::start_on_with_env(&dir.0, port, &[], &env);
    check(&lode.client_url);
    assert!(alarm_list(&lode.client_url).is_empty());
}

#[test]
fn a_follower_with_a_full_disk_raises_nospace_and_catches_up_when_space_returns() {
    let (members, faults) = cluster_with_fault_files("disk-full-follower");
    let leader = wait_for_leader(&members, 0);
    let full = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    for n in 0..5 {
        put_until_done(&members[leader], &format!("ff-{n}"));
    }
    wait_for_count(&members[full], "ff-", 5);
    let id = own_id(&members[full]);
    std::fs::write(&faults[full], "enospc").expect("fault file");
    // The cluster keeps writing without it.
    for n in 5..25 {
        put_until_done(&members[[leader, other][n % 2]], &format!("ff-{n}"));
    }
    // The member raised NOSPACE through the cluster; it refuses writes and serves reads.
    let alarm = format!("memberID:{id} alarm:NOSPACE");
    let leader_url = members[leader].lode().client_url.clone();
    let full_url = members[full].lode().client_url.clone();
    wait_until("the alarm listed by the leader", || {
        alarm_list(&leader_url).contains(&alarm)
    });
    assert!(alarm_list(&full_url).contains(&alarm));
    wait_for_nospace_refusal(&full_url);
    let held = succeeded(etcdctl(
        &full_url,
        &["get", "ff-", "--prefix", "--keys-only", "--consistency=s"],
    ));
    assert!(
        held.lines().filter(|l| !l.is_empty()).count() >= 5,
        "{held}"
    );
    // The alarm does not stop the others' writes.
    put_until_done(&members[leader], "ff-25");
    // Space returns: the member catches up, clears its alarm and takes writes again.
    std::fs::remove_file(&faults[full]).expect("fault file");
    wait_for_catch_up(&members[full], "ff-", 26);
    wait_until("the alarm cleared", || {
        alarm_list(&leader_url).is_empty() && alarm_list(&full_url).is_empty()
    });
    wait_until("a put through the member once space returned", || {
        etcdctl(&full_url, &["put", "ff-26", "v"]).status.success()
    });
    wait_for_count(&members[leader], "ff-", 27);
    wait_for_convergence(&members, &[0, 1, 2]);
}

#[test]
fn a_leader_with_a_full_disk_hands_leadership_over_at_once() {
    let (members, faults) = cluster_with_fault_files("disk-full-leader");
    let leader = wait_for_leader(&members, 0);
    let (_, term) = members[leader].status().expect("status");
    put_until_done(&members[leader], "lf-0");
    let id = own_id(&members[leader]);
    std::fs::write(&faults[leader], "enospc").expect("fault file");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // A write makes the leader's log find the disk full: it hands over, without waiting for
    // a stall to be long enough.
    let started = Instant::now();
    put_until_done(&members[others[0]], "lf-1");
    let new_leader = wait_for_leader_among(&members, &others, term);
    eprintln!(
        "leadership moved {:?} after the disk filled",
        started.elapsed()
    );
    let log = members[leader].lode().stderr();
    assert!(
        log.contains("the log's disk is full: handing leadership over"),
        "the leader did not say why it stepped down: {log}"
    );
    for n in 2..10 {
        put_until_done(&members[new_leader], &format!("lf-{n}"));
    }
    let alarm = format!("memberID:{id} alarm:NOSPACE");
    let new_leader_url = members[new_leader].lode().client_url.clone();
    wait_until("the alarm listed by the new leader", || {
        alarm_list(&new_leader_url).contains(&alarm)
    });
    std::fs::remove_file(&faults[leader]).expect("fault file");
    wait_for_catch_up(&members[leader], "lf-", 10);
    wait_until("the alarm cleared", || {
        alarm_list(&new_leader_url).is_empty()
    });
    put_until_done(&members[leader], "lf-10");
    wait_for_count(&members[new_leader], "lf-", 11);
    wait_for_convergence(&members, &[0, 1, 2]);
}
