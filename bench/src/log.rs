//! `lode-bench log`: the log's append+sync path against the disk's floor, in one run.
//!
//! (a) floor: 4 KiB O_DIRECT write + fdatasync, sequential, into a zero-filled file;
//! (b) one appender of 256-byte entries, each append awaited before the next;
//! (c) N concurrent appenders (tasks on the log's executor) sharing group commits.
//! Every case runs on one glommio executor on the same file system.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use glommio::{Latency, Placement, Shares};
use lode::diskprobe::{fdatasync_floor, latency_histogram};
use lode::wal::io::DmaDir;
use lode::wal::{EntryKind, LogEntry, Wal, WalOptions};

use crate::report::{finish_case, in_scratch, print_cases, print_target, CaseResult};

#[derive(Args)]
pub struct LogArgs {
    /// Directory on the file system to measure (a scratch subdirectory is created and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Entry payload bytes.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Concurrent appender counts for case (c).
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    appenders: Vec<usize>,
    /// Print only JSON lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LogArgs) -> Result<(), String> {
    if args.seconds <= 0.0 || !args.seconds.is_finite() {
        return Err("--seconds must be positive".into());
    }
    if args.appenders.iter().any(|&n| n == 0 || n > 100_000) {
        return Err("--appenders takes counts from 1 to 100000".into());
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let entry_bytes = args.entry_bytes;
    let counts = args.appenders.clone();
    let results = in_scratch(&args.dir, "log", |scratch| {
        let scratch = scratch.to_path_buf();
        lode::executor::builder(Placement::Unbound)
            .spawn(move || async move { run_cases(scratch, duration, entry_bytes, counts).await })
            .map_err(|e| format!("starting an executor: {e}"))?
            .join()
            .map_err(|e| format!("executor: {e}"))?
    })?;
    report(&results, &args);
    Ok(())
}

async fn run_cases(
    scratch: PathBuf,
    duration: Duration,
    entry_bytes: usize,
    counts: Vec<usize>,
) -> Result<Vec<CaseResult>, String> {
    let mut results = Vec::new();
    // Enough samples for a stable p99.9 within the time budget.
    let floor_samples = ((duration.as_secs_f64() * 4000.0) as u64).clamp(2000, 40_000);
    let floor = fdatasync_floor(&scratch, floor_samples)
        .await
        .map_err(|e| format!("floor probe: {e}"))?;
    results.push(CaseResult {
        name: "floor: 4KiB O_DIRECT write+fdatasync".into(),
        ops: floor.histogram.len(),
        elapsed: floor.elapsed,
        histogram: floor.histogram,
    });
    let background = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "log-background",
    );
    let mut cases = vec![1usize];
    cases.extend(counts);
    for (position, appenders) in cases.into_iter().enumerate() {
        let dir = scratch.join(format!("case-{position}"));
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dma = DmaDir::open(&dir)
            .await
            .map_err(|e| format!("opening {}: {e}", dir.display()))?;
        let options = WalOptions {
            create_if_missing: true,
            ..WalOptions::default()
        };
        let wal = Rc::new(Wal::open(dma, options).await.map_err(|e| e.to_string())?);
        glommio::spawn_local_into(Wal::run_preparer(Rc::downgrade(&wal)), background)
            .map_err(|e| format!("spawning the preparer: {e}"))?
            .detach();
        let result = appenders_case(wal.clone(), appenders, duration, entry_bytes).await?;
        results.push(result);
        drop(wal);
    }
    Ok(results)
}

async fn appenders_case(
    wal: Rc<Wal<DmaDir>>,
    appenders: usize,
    duration: Duration,
    entry_bytes: usize,
) -> Result<CaseResult, String> {
    let payload = Bytes::from(vec![0x5a; entry_bytes]);
    let next_index = Rc::new(Cell::new(wal.last_index() + 1));
    let histogram = Rc::new(RefCell::new(latency_histogram()));
    let failure: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let (wal, next_index, histogram, failure, payload) = (
                wal.clone(),
                next_index.clone(),
                histogram.clone(),
                failure.clone(),
                payload.clone(),
            );
            glommio::spawn_local(async move {
                while Instant::now() < deadline {
                    let index = next_index.get();
                    next_index.set(index + 1);
                    let entry = [LogEntry {
                        index,
                        term: 1,
                        kind: EntryKind::Normal,
                        payload: payload.clone(),
                    }];
                    let begin = Instant::now();
                    if let Err(error) = wal.append(&entry, None).await {
                        failure.borrow_mut().get_or_insert(error.to_string());
                        return;
                    }
                    histogram
                        .borrow_mut()
                        .saturating_record(begin.elapsed().as_nanos() as u64);
                }
            })
        })
        .collect();
    let name = if appenders == 1 {
        "lode log: 1 appender".into()
    } else {
        format!("lode log: {appenders} appenders")
    };
    finish_case(name, "append failed", tasks, started, &failure, &histogram).await
}

fn report(results: &[CaseResult], args: &LogArgs) {
    let floor = &results[0];
    let title = format!(
        "lode-bench log: dir {}, {} B entries, {} s per case",
        args.dir.display(),
        args.entry_bytes,
        args.seconds
    );
    print_cases("log", &title, results, floor, args.json);
    if args.json {
        return;
    }
    if let Some(single) = results.iter().find(|r| r.name.ends_with(": 1 appender")) {
        let ratio = single.micros(0.5) / floor.micros(0.5);
        print_target(
            "(b) 1 appender p50 <= 1.2x floor p50",
            &format!("{ratio:.2}x"),
            ratio <= 1.2,
        );
    }
    if let Some(c64) = results.iter().find(|r| r.name.ends_with(": 64 appenders")) {
        let ratio = c64.micros(0.99) / floor.micros(0.99);
        print_target(
            "(c) 64 appenders >= 100000 entries/s and p99 <= 3x floor p99",
            &format!("{:.0}/s, {ratio:.2}x", c64.ops_per_second()),
            c64.ops_per_second() >= 100_000.0 && ratio <= 3.0,
        );
    }
}
