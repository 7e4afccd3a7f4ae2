//! Disk faults on real processes, each with a defined outcome: a member whose fdatasync fails
//! stops at once, says why and loses nothing acknowledged; a leader whose disk hangs hands
//! leadership over so the cluster keeps serving. Members are started with etcd's flags only;
//! faults come from `LODE_FAULT_SYNC_DELAY_FILE`, a test-only file read at every log sync
//! (milliseconds to add, or `eio`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::*;

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
