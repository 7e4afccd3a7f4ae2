//! `lode-bench fuzz`: runs one of lode's fuzz targets (`lode::fuzz`) for as long as asked and
//! reports how many inputs it took, panics and hangs; a failing input is written to a file so
//! it can be replayed.

use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// The target (`all` for every target in turn): native-frames, peer-frames,
    /// grpc-messages, gateway-json, http2-headers, log-segments, snapshot-files,
    /// etcd-snapshots.
    target: String,
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The mutation seed (a run is repeated by its seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where a failing input is written.
    #[arg(long, default_value = "fuzz-failure.bin")]
    failure_file: std::path::PathBuf,
}

pub fn run(args: FuzzArgs) -> Result<(), String> {
    let targets = if args.target == "all" {
        lode::fuzz::targets()
    } else {
        vec![lode::fuzz::target(&args.target).ok_or_else(|| {
            let names: Vec<&str> = lode::fuzz::targets().iter().map(|t| t.name).collect();
            format!(
                "no target {:?} (targets: {})",
                args.target,
                names.join(", ")
            )
        })?]
    };
    println!(
        "{:<16} {:>12} {:>10} {:>7} {:>6} {:>12}",
        "target", "inputs", "inputs/s", "panics", "hangs", "slowest"
    );
    let mut failed = None;
    for target in &targets {
        let started = Instant::now();
        let report = lode::fuzz::run(
            target,
            args.seed,
            u64::MAX,
            Duration::from_secs(args.seconds),
        );
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        println!(
            "{:<16} {:>12} {:>10.0} {:>7} {:>6} {:>10.1}ms",
            target.name,
            report.inputs,
            report.inputs as f64 / seconds,
            report.panics,
            u8::from(report.hang.is_some()),
            report.slowest.as_secs_f64() * 1e3,
        );
        let failure = report
            .hang
            .map(|input| (input, "hang".to_string()))
            .or(report.first_panic);
        if let (Some((input, why)), None) = (failure, &failed) {
            std::fs::write(&args.failure_file, &input)
                .map_err(|e| format!("writing {}: {e}", args.failure_file.display()))?;
            failed = Some(format!(
                "{}: {why} (input in {})",
                target.name,
                args.failure_file.display()
            ));
        }
    }
    match failed {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
