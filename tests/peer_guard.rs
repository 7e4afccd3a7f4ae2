//! The peer port against forged Raft messages, and panics: a follower sent what no correct
//! member sends (a heartbeat committing far past its log, which made raft-rs panic on the
//! consensus core and left a zombie member; a campaign order only the member itself may give)
//! drops them, counts them and goes on; a panic on any core ends the process at once.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::cluster::{cluster, wait_for_count, wait_for_leader};
use common::server::{http, ok, DataDir};
use raft::eraftpb::{Message, MessageType};

/// The value of `name` in a Prometheus text exposition.
fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

#[test]
fn forged_messages_on_the_peer_port_are_dropped_and_the_member_goes_on() {
    let mut members = cluster("peer-guard");
    for member in &mut members {
        member.start();
    }
    let leader = wait_for_leader(&members, 0);
    let follower = (leader + 1) % 3;
    ok(members[leader].lode().ctl(&["put", "before", "1"]));
    wait_for_count(&members[follower], "before", 1);
    let status = common::json(&ok(members[follower]
        .lode()
        .ctl(&["endpoint", "status", "-w", "json"])));
    let header = &status[0]["Status"]["header"];
    let cluster_id = header["cluster_id"].as_u64().expect("cluster id");
    let follower_id = header["member_id"].as_u64().expect("member id");
    let term = status[0]["Status"]["raftTerm"].as_u64().expect("term");
    let leader_id = status[0]["Status"]["leader"].as_u64().expect("leader");

    // As the leader, over a connection of our own: a heartbeat at the current term that
    // commits a billion entries the follower does not have, and an order to campaign.
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = leader_id;
    heartbeat.to = follower_id;
    heartbeat.term = term;
    heartbeat.commit = 1_000_000_000;
    let mut campaign = Message::default();
    campaign.set_msg_type(MessageType::MsgHup);
    campaign.from = leader_id;
    campaign.to = follower_id;
    let mut frame = BytesMut::new();
    lode::peer::wire::encode_frame(cluster_id, leader_id, &[heartbeat, campaign], &mut frame);
    let peer = members[follower]
        .peer_url()
        .trim_start_matches("http://")
        .to_string();
    let mut connection = std::net::TcpStream::connect(&peer).expect("peer port");
    connection.write_all(&frame).expect("forged frame sent");

    // The follower counts both as dropped (its metrics say so once it stepped its inbox) ...
    let metrics_of = |i: usize| http(&members[i].lode().client_url, "GET", "/metrics", "").1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if metric(&metrics_of(follower), "lode_peer_messages_rejected_total") == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forged messages were never counted: {}",
            members[follower].lode().stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(connection);
    // ... is still running, did not campaign (the leader and term are unchanged) ...
    let follower_process = members[follower].lode.as_mut().expect("running");
    let child = follower_process.child.as_mut().expect("child");
    assert!(child.try_wait().expect("status").is_none(), "it exited");
    let again = common::json(&ok(members[follower]
        .lode()
        .ctl(&["endpoint", "status", "-w", "json"])));
    assert_eq!(again[0]["Status"]["leader"].as_u64(), Some(leader_id));
    assert_eq!(again[0]["Status"]["raftTerm"].as_u64(), Some(term));
    // ... and keeps replicating and serving: nothing of its data changed.
    ok(members[leader].lode().ctl(&["put", "after", "1"]));
    wait_for_count(&members[follower], "after", 1);
    assert_eq!(
        ok(members[follower].lode().ctl(&[
            "get",
            "",
            "--prefix",
            "--count-only",
            "--consistency",
            "l"
        ])),
        "2\n"
    );
    let log = common::server::messages(&members[follower].lode().stderr());
    assert!(
        log.contains("dropped a message from the peer port"),
        "{log}"
    );
}

#[test]
fn a_panic_on_any_core_ends_the_process_at_once() {
    for core in ["0", "1"] {
        let dir = DataDir::new(&format!("peer-guard-panic-{core}"));
        let log_path = dir.0.with_extension("stderr");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
            .arg(format!("--data-dir={}", dir.0.display()))
            .args(common::server::client_urls())
            .args(["--cores", "2"])
            .env("LODE_FAULT_PANIC_CORE", core)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("spawn lode");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("core {core} panicked and lode kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "core {core}: {status:?}");
        let log = common::server::messages(&std::fs::read_to_string(&log_path).unwrap_or_default());
        assert!(
            log.contains("a panic: lode stops at once") && log.contains("LODE_FAULT_PANIC_CORE"),
            "core {core}: {log}"
        );
    }
}
