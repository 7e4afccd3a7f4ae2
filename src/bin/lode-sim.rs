//! lode-sim: runs seeded simulations of whole lode clusters (the real replica, log and MVCC
//! over a simulated network, disks and clock, with faults) and checks every history.
//!
//! `lode-sim --seed 42` replays one seed exactly and prints its trace on failure (all of it
//! with `--trace`); `lode-sim --seeds 1000` runs seeds 1..=1000; `lode-sim --for 1h` runs
//! seeds until the time is up. `--bug ack-before-sync` (or `read-without-read-index`,
//! `apply-before-commit`, `lease-expires-early`, `watch-loses-events`) injects a known bug, to
//! see the checkers catch it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use lode::sim::{self, Bug, FaultCounts, FaultKinds, Report, SimOptions};

#[derive(Parser, Debug)]
#[command(
    name = "lode-sim",
    about = "Seeded simulations of lode clusters under faults"
)]
struct Args {
    /// Run this one seed.
    #[arg(long, conflicts_with_all = ["seeds", "run_for"])]
    seed: Option<u64>,
    /// Run this many seeds, from --first on.
    #[arg(long)]
    seeds: Option<u64>,
    /// Run seeds until this much time has passed (e.g. 90s, 10m, 2h).
    #[arg(long = "for", value_parser = parse_duration)]
    run_for: Option<Duration>,
    /// The first seed of --seeds or --for.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Members (default: 3 or 5, chosen by the seed).
    #[arg(long)]
    members: Option<u64>,
    /// Simulated seconds of faults per seed.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Inject a known bug: ack-before-sync, read-without-read-index, apply-before-commit,
    /// lease-expires-early, watch-loses-events.
    #[arg(long)]
    bug: Option<Bug>,
    /// Print the whole trace of a single seed.
    #[arg(long)]
    trace: bool,
    /// The faults to inject: a comma-separated list of network, partitions, crashes,
    /// power-cuts, disks, slow-syncs, transfers, membership, nospace; or all, or none;
    /// -kind leaves one out (all,-nospace).
    #[arg(long, default_value = "all", value_parser = FaultKinds::parse)]
    faults: FaultKinds,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    lode::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

fn options(args: &Args, seed: u64) -> SimOptions {
    let mut options = SimOptions::for_seed(seed);
    if let Some(members) = args.members {
        options.members = members;
    }
    options.duration = Duration::from_secs(args.seconds);
    options.bug = args.bug;
    options.trace = args.trace;
    options.faults = args.faults;
    options
}

fn print_failure(report: &Report) {
    println!(
        "seed {} FAILED: {}",
        report.seed,
        report.failure.as_deref().unwrap_or("")
    );
    println!("trace (last lines):");
    for line in &report.trace {
        println!("  {line}");
    }
    println!(
        "replay: lode-sim --seed {} --seconds <same> --trace",
        report.seed
    );
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`lode-sim ... | head`) ends the process quietly, as other
    // command-line tools do, instead of panicking.
    // SAFETY: restoring a signal's default disposition at start, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = Args::parse();
    if args.members.is_some_and(|m| !(1..=7).contains(&m)) {
        eprintln!("lode-sim: --members must be between 1 and 7");
        return ExitCode::from(2);
    }
    if let Some(seed) = args.seed {
        let mut options = options(&args, seed);
        options.explain = true;
        let report = sim::run(options);
        if args.trace {
            for line in &report.trace {
                println!("{line}");
            }
        }
        println!(
            "seed {seed}: {} members, {:?} simulated, {} operations, {} entries applied, {} \
             leaders, {} leases granted ({} expired), faults {:?}",
            report.members,
            report.simulated,
            report.operations,
            report.applied,
            report.leaders,
            report.leases.0,
            report.leases.1,
            report.faults
        );
        return match &report.failure {
            None => {
                println!("clean");
                ExitCode::SUCCESS
            }
            Some(_) => {
                print_failure(&report);
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let budget = args.run_for;
    let count = args
        .seeds
        .unwrap_or(if budget.is_some() { u64::MAX } else { 100 });
    let (mut ran, mut faults, mut simulated, mut operations) = (0u64, 0u64, Duration::ZERO, 0u64);
    let (mut leases, mut expired) = (0u64, 0u64);
    let mut counts = FaultCounts::default();
    let mut failed = Vec::new();
    for seed in args.first..args.first.saturating_add(count) {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let report = sim::run(options(&args, seed));
        ran += 1;
        faults += report.faults.total();
        counts.add(&report.faults);
        simulated += report.simulated;
        operations += report.operations;
        leases += report.leases.0;
        expired += report.leases.1;
        if report.failure.is_some() {
            print_failure(&report);
            failed.push(seed);
        }
    }
    let elapsed = started.elapsed();
    let per_hour = faults as f64 * 3600.0 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{ran} seeds in {elapsed:.1?} ({simulated:.0?} simulated): {} clean, {} failed{}; \
         {operations} client operations checked, {leases} leases granted ({expired} expired, \
         none early); {faults} faults injected, {per_hour:.0} per hour",
        ran - failed.len() as u64,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (seeds {failed:?})")
        },
    );
    println!("faults by kind: {counts:?}");
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
