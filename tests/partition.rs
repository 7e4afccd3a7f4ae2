//! Network faults between real lode members, injected by a TCP proxy in front of each member's
//! peer listener (`common::proxy`): a leader cut off from the others cannot commit and stops
//! serving linearizable reads while the majority elects and serves; a leader that can hear but
//! not speak is replaced; slow links only slow things down. Every run's client history must be
//! linearizable (`lode::linearize`: acknowledged writes survive, no stale read, no value from
//! nowhere) and ends with every member holding the same pairs.

mod common;

use std::sync::Arc;

use common::cluster::*;
use common::proxy::{Fault, Network};
use common::server::ok;

fn start(name: &str, size: usize) -> (Arc<Network>, Vec<Member>) {
    let network = Arc::new(Network::default());
    let mut members = cluster_behind_proxies(name, size, &network);
    for member in &mut members {
        member.start();
    }
    network.set_ids(members.iter().map(own_id).collect());
    (network, members)
}

fn endpoints(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.lode().address.clone()).collect()
}

#[test]
fn a_leader_cut_off_cannot_commit_and_the_majority_goes_on() {
    let (network, members) = start("partition-isolated", 3);
    let leader = wait_for_leader(&members, 0);
    let (_, term) = members[leader].status().expect("status");
    let history = History::start(&endpoints(&members), 2);
    ok(members[leader].lode().ctl(&["put", "before", "partition"]));

    network.isolate(leader, 3);
    // The old leader cannot commit: its write fails with an unknown outcome, and it never
    // answers a linearizable read it cannot confirm.
    let stuck =
        members[leader]
            .lode()
            .ctl(&["--command-timeout", "60", "put", "minority", "write"]);
    assert!(
        String::from_utf8_lossy(&stuck.stderr).contains("etcdserver: request timed out"),
        "{}",
        String::from_utf8_lossy(&stuck.stderr)
    );
    let read = members[leader]
        .lode()
        .ctl(&["--command-timeout", "60", "get", "before"]);
    assert!(
        !read.status.success(),
        "a cut-off member answered a linearizable read"
    );
    // etcd's answers: the round it had asked for was lost with its leadership, or no leader
    // confirmed one in time.
    let error = String::from_utf8_lossy(&read.stderr);
    assert!(
        error.contains("etcdserver: leader changed")
            || error.contains("etcdserver: request timed out"),
        "{error}"
    );
    // The other two elect and serve.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait_for_leader_among(&members, &others, term);
    for &i in &others {
        ok(members[i]
            .lode()
            .ctl(&["put", &format!("majority-{i}"), "written"]));
    }
    history.wait_for_progress(3, 3);

    network.heal();
    wait_for_count(&members[leader], "majority", 2);
    let (acknowledged, reads) = history.check(&members[new_leader].lode().address);
    assert!(
        acknowledged > 0 && reads > 0,
        "{acknowledged} writes, {reads} reads"
    );
    let everyone: Vec<usize> = (0..3).collect();
    let converged = wait_for_convergence(&members, &everyone);
    // The minority's write never committed: it is nowhere.
    assert!(
        !converged.to_string().contains("bWlub3JpdHk"),
        "the cut-off leader's write survived: {converged}"
    );
}

#[test]
fn a_leader_that_cannot_speak_is_replaced_and_rejoins() {
    let (network, members) = start("partition-one-way", 3);
    let leader = wait_for_leader(&members, 0);
    let (_, term) = members[leader].status().expect("status");
    let history = History::start(&endpoints(&members), 1);
    // The leader hears the others but nothing it sends arrives.
    for other in (0..3).filter(|&i| i != leader) {
        network.set(leader, other, Fault::Blackhole);
    }
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait_for_leader_among(&members, &others, term);
    ok(members[new_leader]
        .lode()
        .ctl(&["put", "one-way", "survived"]));
    // Clients get through while the fault lasts (those that asked the mute member wait).
    history.wait_for_progress(3, 3);
    network.heal();
    wait_for_count(&members[leader], "one-way", 1);
    let (acknowledged, reads) = history.check(&members[new_leader].lode().address);
    assert!(
        acknowledged > 0 && reads > 0,
        "{acknowledged} writes, {reads} reads"
    );
    wait_for_convergence(&members, &[0, 1, 2]);
}

#[test]
fn slow_links_slow_commits_down_without_losing_anything() {
    let (network, members) = start("partition-slow", 5);
    let leader = wait_for_leader(&members, 0);
    for from in 0..5 {
        for to in (0..5).filter(|&t| t != from) {
            network.set(from, to, Fault::Delay(std::time::Duration::from_millis(15)));
        }
    }
    let history = History::start(&endpoints(&members), 2);
    history.wait_for_progress(3, 3);
    for (i, member) in members.iter().enumerate() {
        ok(member
            .lode()
            .ctl(&["put", &format!("slow-{i}"), "through a slow link"]));
    }
    network.heal();
    let (acknowledged, reads) = history.check(&members[leader].lode().address);
    assert!(
        acknowledged > 0 && reads > 0,
        "{acknowledged} writes, {reads} reads"
    );
    let converged = wait_for_convergence(&members, &[0, 1, 2, 3, 4]);
    assert!(converged.as_array().is_some_and(|pairs| pairs.len() >= 6));
}

/// Random faults in rounds under a client history: each round cuts off the leader, cuts off a
/// follower, mutes the leader one way, slows every link, or SIGKILLs the leader, until the
/// clients made progress, then heals (restarts) and waits for a leader. `LODE_PARTITION_ROUNDS` (default 2) and
/// `LODE_PARTITION_SEED` make it a longer soak by hand, e.g.
/// `LODE_PARTITION_ROUNDS=50 cargo test --test partition soak`.
#[test]
fn random_faults_soak() {
    let rounds: u64 = std::env::var("LODE_PARTITION_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("LODE_PARTITION_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        })
        | 1;
    println!("LODE_PARTITION_SEED={seed}");
    let mut rng = common::Rng(seed);
    let (network, mut members) = start("partition-soak", 3);
    let mut leader = wait_for_leader(&members, 0);
    let history = History::start(&endpoints(&members), 2);
    for round in 0..rounds {
        let (_, term) = members[leader].status().unwrap_or((true, 0));
        let fault = rng.below(5);
        match fault {
            0 => network.isolate(leader, 3),
            1 => network.isolate((leader + 1 + rng.below(2) as usize) % 3, 3),
            2 => {
                for other in (0..3).filter(|&i| i != leader) {
                    network.set(leader, other, Fault::Blackhole);
                }
            }
            3 => {
                members[leader].lode.as_mut().expect("leader").kill();
                members[leader].lode = None;
            }
            _ => {
                for from in 0..3 {
                    for to in (0..3).filter(|&t| t != from) {
                        network.set(
                            from,
                            to,
                            Fault::Delay(std::time::Duration::from_millis(5 + rng.below(20))),
                        );
                    }
                }
            }
        }
        println!("round {round}: fault {fault} with leader m{leader}");
        if fault == 0 || fault == 2 || fault == 3 {
            let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
            wait_for_leader_among(&members, &others, term);
        }
        history.wait_for_progress(2, 2);
        network.heal();
        if fault == 3 {
            members[leader].start();
        }
        leader = wait_for_leader(&members, 0);
    }
    let (acknowledged, reads) = history.check(&members[leader].lode().address);
    println!("{acknowledged} writes acknowledged, {reads} reads checked");
    wait_for_convergence(&members, &[0, 1, 2]);
}
