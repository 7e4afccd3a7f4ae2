//! The cluster simulator in CI: a budget of seeds, each a whole cluster under faults with its
//! history checked; the same seed replaying exactly; and each injected bug caught, which shows
//! the checkers can fail. `LODE_SIM_SEEDS=N` runs N seeds instead of the default (the long
//! mode is `lode-sim --for 1h`).

use std::time::Duration;

use lode::sim::{self, Bug, FaultKinds, SimOptions};

fn seeds() -> u64 {
    std::env::var("LODE_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}

#[test]
fn every_seed_runs_clean_under_faults() {
    let (mut faults, mut snapshots, mut no_space) = (0, 0, 0);
    for seed in 1..=seeds() {
        let report = sim::run(SimOptions::for_seed(seed));
        assert!(
            report.failure.is_none(),
            "seed {seed}: {}\n{}\nreplay: lode-sim --seed {seed}",
            report.failure.unwrap_or_default(),
            report.trace.join("\n")
        );
        // Every run makes progress: operations answered, entries applied, a leader elected.
        assert!(
            report.operations > 0 && report.applied > 0 && report.leaders > 0,
            "seed {seed}: {report:?}"
        );
        faults += report.faults.total();
        snapshots += report.faults.snapshots_sent;
        no_space += report.faults.writes_without_space;
    }
    assert!(faults > seeds() * 50, "too few faults injected: {faults}");
    // Full disks bit: members found no space for their writes.
    assert!(
        no_space > seeds(),
        "too few writes found a full disk: {no_space}"
    );
    // Followers behind a compacted log were brought back with the leader's snapshot.
    assert!(snapshots > 0, "no snapshot was ever sent");
}

#[test]
fn a_seed_replays_exactly() {
    let run = |seed| {
        let mut options = SimOptions::for_seed(seed);
        options.trace = true;
        sim::run(options)
    };
    for seed in [3, 11] {
        let (first, second) = (run(seed), run(seed));
        assert_eq!(first.trace, second.trace, "seed {seed}");
        assert_eq!(first.faults, second.faults);
        assert!(first.trace.len() > 100);
    }
    // Another seed is another run.
    assert_ne!(run(3).trace, run(4).trace);
}

/// The first seed among `1..=within` on which `bug` is caught.
fn caught(bug: Bug, within: u64) -> Option<(u64, String)> {
    (1..=within).find_map(|seed| {
        let mut options = SimOptions::for_seed(seed);
        options.bug = Some(bug);
        sim::run(options).failure.map(|failure| (seed, failure))
    })
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    let (seed, failure) = caught(Bug::AckBeforeSync, 60).expect("ack-before-sync went unnoticed");
    eprintln!("ack-before-sync caught at seed {seed}: {failure}");
}

#[test]
fn serving_reads_without_read_index_is_caught() {
    let (seed, failure) =
        caught(Bug::ReadWithoutReadIndex, 20).expect("read-without-read-index went unnoticed");
    eprintln!("read-without-read-index caught at seed {seed}: {failure}");
}

#[test]
fn applying_before_commit_is_caught() {
    let (seed, failure) =
        caught(Bug::ApplyBeforeCommit, 30).expect("apply-before-commit went unnoticed");
    eprintln!("apply-before-commit caught at seed {seed}: {failure}");
}

#[test]
fn expiring_leases_early_is_caught() {
    let (seed, failure) =
        caught(Bug::LeaseExpiresEarly, 30).expect("lease-expires-early went unnoticed");
    eprintln!("lease-expires-early caught at seed {seed}: {failure}");
}

#[test]
fn watches_losing_events_are_caught() {
    let (seed, failure) =
        caught(Bug::WatchLosesEvents, 10).expect("watch-loses-events went unnoticed");
    eprintln!("watch-loses-events caught at seed {seed}: {failure}");
}

/// Seeds on which the simulator found a bug, kept clean from now on: 340, 427 and 674 (a
/// member joined after the newest snapshot and was offered only that one, which leaves it
/// out), 2384 (a member behind an addition refused the new member as leader), 21016 (a
/// follower left the only voter by the removal of the others campaigned while appends were
/// still in flight to its log, and raft-rs asserted: a new leader's log must be durable). Each runs without full disks (the first four were found so: this replays the
/// rest of their faults exactly) and with every fault.
const REGRESSION_SEEDS: &[u64] = &[340, 427, 674, 2384, 21016];

#[test]
fn seeds_that_found_bugs_stay_clean() {
    for &seed in REGRESSION_SEEDS {
        let mut without_full_disks = SimOptions::for_seed(seed);
        without_full_disks.faults = FaultKinds::ALL.without(FaultKinds::parse("nospace").unwrap());
        for options in [without_full_disks, SimOptions::for_seed(seed)] {
            let faults = options.faults;
            let report = sim::run(options);
            assert!(
                report.failure.is_none(),
                "seed {seed} ({faults:?}): {:?}",
                report.failure
            );
        }
    }
}

#[test]
fn full_disks_alone_are_survived_and_full_leaders_hand_over() {
    let (mut episodes, mut no_space, mut replaced) = (0, 0, 0);
    for seed in 1..=40 {
        let mut options = SimOptions::for_seed(seed);
        options.faults = FaultKinds::parse("nospace").unwrap();
        let report = sim::run(options);
        assert!(
            report.failure.is_none(),
            "seed {seed}: {}\n{}",
            report.failure.unwrap_or_default(),
            report.trace.join("\n")
        );
        assert!(report.operations > 0 && report.applied > 0, "{report:?}");
        episodes += report.faults.nospace;
        no_space += report.faults.writes_without_space;
        replaced += report.faults.full_leaders_replaced;
    }
    assert!(
        episodes > 40 && no_space > 40,
        "{episodes} episodes, {no_space} writes refused"
    );
    assert!(replaced > 5, "only {replaced} full leaders handed over");
}

#[test]
fn a_calm_cluster_answers_nearly_everything() {
    let mut options = SimOptions::for_seed(5);
    options.faults = FaultKinds::NONE;
    options.duration = Duration::from_secs(5);
    let report = sim::run(options);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.faults.total(), 0);
    assert_eq!(report.leaders, 1, "no faults, one election");
    assert!(report.operations > 500, "{report:?}");
}

#[test]
fn fault_kinds_and_bugs_parse_and_bad_names_are_refused() {
    assert_eq!(FaultKinds::parse("all"), Ok(FaultKinds::ALL));
    assert_eq!(FaultKinds::parse("none"), Ok(FaultKinds::NONE));
    let some = FaultKinds::parse("network,crashes").unwrap();
    assert!(some.network && some.crashes && !some.partitions);
    let changes = FaultKinds::parse("transfers,membership").unwrap();
    assert!(changes.transfers && changes.membership && !changes.crashes);
    assert!(FaultKinds::parse("meteors")
        .unwrap_err()
        .contains("meteors"));
    let no_disks_full = FaultKinds::parse("all,-nospace").unwrap();
    assert!(!no_disks_full.nospace && no_disks_full.crashes && no_disks_full.membership);
    assert_eq!(FaultKinds::parse("nospace,-nospace"), Ok(FaultKinds::NONE));
    assert!(FaultKinds::parse("all,-all").is_err());
    assert!(FaultKinds::parse("all,-meteors").is_err());
    assert_eq!("ack-before-sync".parse::<Bug>(), Ok(Bug::AckBeforeSync));
    assert_eq!(
        "lease-expires-early".parse::<Bug>(),
        Ok(Bug::LeaseExpiresEarly)
    );
    assert!("slow".parse::<Bug>().is_err());
}
