//! Fuzzing in CI: every decoder of untrusted bytes (`lode::fuzz`) briefly, and mutated peer
//! frames streamed at a running member, which must reject them without a change to its data.
//! Long runs: `lode-bench fuzz all --seconds N`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::json;
use common::server::{free_port, ok, DataDir, Lode};

#[test]
fn every_decoder_of_untrusted_bytes_survives_mutated_inputs() {
    for target in lode::fuzz::targets() {
        let report = lode::fuzz::run(&target, 0x5eed, 100_000, Duration::from_secs(4));
        eprintln!(
            "{}: {} inputs, {} panics, slowest {:?}",
            target.name, report.inputs, report.panics, report.slowest
        );
        assert!(report.hang.is_none(), "{}: an input hangs", target.name);
        if let Some((input, message)) = &report.first_panic {
            panic!(
                "{}: {} of {} inputs panicked, first with {message:?} on {input:02x?}",
                target.name, report.panics, report.inputs
            );
        }
        assert!(
            report.inputs > 1_000,
            "{}: only {} inputs",
            target.name,
            report.inputs
        );
    }
}

#[test]
fn mutated_peer_frames_change_nothing_on_a_running_member() {
    let dir = DataDir::new("fuzz-peer-port");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let lode = Lode::start(
        &dir.0,
        &[
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("default={peer}"),
        ],
    );
    for n in 0..20 {
        ok(lode.ctl(&["put", &format!("k{n}"), &format!("v{n}")]));
    }
    let status = |lode: &Lode| json(&ok(lode.ctl(&["endpoint", "status", "-w", "json"])));
    let before = status(&lode);
    let header = &before[0]["Status"]["header"];
    let cluster_id = header["cluster_id"].as_u64().expect("cluster id");
    let member_id = header["member_id"].as_u64().expect("member id");
    let hash_before = ok(lode.ctl(&["endpoint", "hashkv", "-w", "json"]));
    // Seeds: valid frames of this very cluster, as from a stranger and as from the member
    // itself; then mutations of them, a few hundred frames per connection (a connection
    // ends at the first frame that does not decode).
    let mut corpus = lode::fuzz::peer_frames(cluster_id, member_id, 0x77);
    corpus.extend(lode::fuzz::peer_frames(cluster_id, member_id, member_id));
    let mut rng = lode::fuzz::Rng::new(42);
    let address = peer.trim_start_matches("http://").to_string();
    let mut sent = 0;
    let mut input = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..200 {
        let Ok(mut connection) = std::net::TcpStream::connect(&address) else {
            continue;
        };
        let _ = connection.set_write_timeout(Some(Duration::from_secs(5)));
        for _ in 0..25 {
            if rng.below(4) == 0 {
                input.clone_from(&corpus[rng.below(corpus.len())]);
            } else {
                lode::fuzz::mutate(&mut rng, &corpus, &mut input);
            }
            if connection.write_all(&input).is_err() {
                break;
            }
            sent += 1;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    assert!(sent > 1_000, "only {sent} frames sent");
    // The member serves, and its data is what it was.
    assert_eq!(ok(lode.ctl(&["get", "k7", "--print-value-only"])), "v7\n");
    let after = status(&lode);
    assert_eq!(
        after[0]["Status"]["header"]["revision"], header["revision"],
        "a rejected frame changed the revision"
    );
    assert_eq!(
        after[0]["Status"]["raftTerm"], before[0]["Status"]["raftTerm"],
        "a rejected frame changed the term"
    );
    assert_eq!(
        ok(lode.ctl(&["endpoint", "hashkv", "-w", "json"])),
        hash_before,
        "a rejected frame changed the data"
    );
    let (status_code, metrics) = common::server::http(&lode.client_url, "GET", "/metrics", "");
    assert_eq!(status_code, 200);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("lode_peer_messages_rejected_total")
                && !line.ends_with(" 0")),
        "no rejection counted"
    );
    eprintln!("{sent} mutated peer frames rejected with no change");
}
