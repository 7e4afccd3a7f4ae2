//! Results of benchmark cases and how they are printed: a table for people and JSON lines for
//! tools, every latency figure from an HDR histogram, every case compared with the run's floor.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One measured case.
pub struct CaseResult {
    /// What was measured.
    pub name: String,
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the case.
    pub elapsed: Duration,
    /// Latency of each operation, in nanoseconds.
    pub histogram: Histogram<u64>,
}

impl CaseResult {
    /// Throughput.
    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at `quantile`, in microseconds.
    pub fn micros(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Prints `results` as a table (unless `json_only`) and as JSON lines, each case's p50 and p99
/// also as a ratio to `floor`'s.
pub fn print_cases(
    bench: &str,
    title: &str,
    results: &[CaseResult],
    floor: &CaseResult,
    json_only: bool,
) {
    let (floor_p50, floor_p99) = (floor.micros(0.5), floor.micros(0.99));
    if !json_only {
        println!("{title}");
        println!(
            "{:<44} {:>9} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "case", "ops", "ops/s", "p50 us", "p99 us", "p99.9 us", "p50/fl", "p99/fl"
        );
        for r in results {
            println!(
                "{:<44} {:>9} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2}",
                r.name,
                r.ops,
                r.ops_per_second(),
                r.micros(0.5),
                r.micros(0.99),
                r.micros(0.999),
                r.micros(0.5) / floor_p50,
                r.micros(0.99) / floor_p99
            );
        }
    }
    for r in results {
        let line = serde_json::json!({
            "bench": bench,
            "case": r.name,
            "ops": r.ops,
            "seconds": r.elapsed.as_secs_f64(),
            "ops_per_sec": r.ops_per_second(),
            "p50_us": r.micros(0.5),
            "p99_us": r.micros(0.99),
            "p999_us": r.micros(0.999),
            "max_us": r.histogram.max() as f64 / 1000.0,
            "p50_vs_floor": r.micros(0.5) / floor_p50,
            "p99_vs_floor": r.micros(0.99) / floor_p99,
        });
        println!("{line}");
    }
}

/// Prints whether a target was met.
pub fn print_target(description: &str, measured: &str, met: bool) {
    println!(
        "target {description}: {measured} {}",
        if met { "MET" } else { "MISSED" }
    );
}

/// Waits for a case's load tasks, then turns what they recorded into its result; the first
/// failure any task recorded fails the case, prefixed with `what`.
pub async fn finish_case(
    name: String,
    what: &str,
    tasks: Vec<glommio::Task<()>>,
    started: Instant,
    failure: &RefCell<Option<String>>,
    histogram: &RefCell<Histogram<u64>>,
) -> Result<CaseResult, String> {
    for task in tasks {
        task.await;
    }
    let elapsed = started.elapsed();
    if let Some(error) = failure.borrow_mut().take() {
        return Err(format!("{what}: {error}"));
    }
    let histogram = histogram.borrow().clone();
    Ok(CaseResult {
        name,
        ops: histogram.len(),
        elapsed,
        histogram,
    })
}

/// Runs `body` in a fresh scratch directory `lode-bench-<bench>-<pid>` under `dir` (which must
/// be a directory on the file system to measure), removed afterwards whatever the outcome.
pub fn in_scratch<T>(
    dir: &std::path::Path,
    bench: &str,
    body: impl FnOnce(&std::path::Path) -> Result<T, String>,
) -> Result<T, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let scratch = dir.join(format!("lode-bench-{bench}-{}", std::process::id()));
    std::fs::create_dir(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let outcome = body(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

/// The load a client-count benchmark applies.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub clients: Vec<usize>,
    /// Most connections the clients share.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Value size of puts.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
}

impl LoadArgs {
    /// Refuses a load that cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.seconds <= 0.0 || !self.seconds.is_finite() {
            return Err("--seconds must be positive".into());
        }
        if self.clients.iter().any(|&n| n == 0 || n > 100_000) || self.connections == 0 {
            return Err("--clients takes counts from 1 to 100000, --connections at least 1".into());
        }
        Ok(())
    }
}

/// `n` distinct free loopback ports (all held open while chosen, so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("finding a free port: {e}"))
        })
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}
