//! `lode-bench mesh`: the cost of one message between cores, the hop a read or a conditional
//! write pays when a key lives on another core. Two executors pinned to different cores bounce
//! a message back and forth (one in flight: the round trip; many in flight: the rate), over
//!
//! - glommio shared channels, what lode's mesh uses (`shard::mesh`): a sleeping executor is
//!   woken through its eventfd, so an idle core costs nothing;
//! - crossbeam channels, polled: the receiving executor spins on `try_recv` between its other
//!   tasks (crossbeam has no way to wake a glommio executor, so this is its best case, bought
//!   with a core that never sleeps).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use lode::diskprobe::latency_histogram;

use crate::report::{print_cases, CaseResult};

#[derive(Args)]
pub struct MeshArgs {
    /// Seconds each case runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Messages in flight in the rate cases.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Microseconds an idle executor spins before it sleeps in the second pair of glommio cases
    /// (lode's `--idle-spin-us`); the 0 µs pair always runs.
    #[arg(long, default_value_t = 100)]
    spin_us: u64,
    /// Print only JSON lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: MeshArgs) -> Result<(), String> {
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.in_flight == 0 {
        return Err("--seconds must be positive and --in-flight at least 1".into());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err("the mesh benchmark needs two cores".into());
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let mut results = Vec::new();
    for spin in [Duration::ZERO, Duration::from_micros(args.spin_us)] {
        for in_flight in [1, args.in_flight] {
            results.push(glommio_case(duration, in_flight, spin)?);
        }
    }
    for in_flight in [1, args.in_flight] {
        results.push(crossbeam_case(duration, in_flight)?);
    }
    let title = "lode-bench mesh: a message to another core and back (cores 0 and 1)";
    print_cases("mesh", title, &results, &results[0], args.json);
    Ok(())
}

fn case_name(transport: &str, in_flight: usize) -> String {
    format!("{transport}: {in_flight} in flight")
}

/// Round trips over glommio shared channels, `in_flight` at a time, with executors that spin
/// for `spin` before sleeping.
fn glommio_case(
    duration: Duration,
    in_flight: usize,
    spin: Duration,
) -> Result<CaseResult, String> {
    let (to_echo, from_asker) = shared_channel::new_bounded::<Instant>(1024);
    let (to_asker, from_echo) = shared_channel::new_bounded::<Instant>(1024);
    let echo = LocalExecutorBuilder::new(Placement::Fixed(1))
        .spin_before_park(spin)
        .spawn(move || async move {
            let receiver = from_asker.connect().await;
            let sender = to_asker.connect().await;
            while let Some(sent) = receiver.recv().await {
                if sender.send(sent).await.is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("starting an executor: {e}"))?;
    let asker = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spin_before_park(spin)
        .spawn(move || async move {
            let sender = to_echo.connect().await;
            let receiver = from_echo.connect().await;
            let histogram = Rc::new(RefCell::new(latency_histogram()));
            let started = Instant::now();
            let mut ops = 0u64;
            for _ in 0..in_flight {
                let _ = sender.send(Instant::now()).await;
            }
            while let Some(sent) = receiver.recv().await {
                histogram
                    .borrow_mut()
                    .saturating_record(sent.elapsed().as_nanos() as u64);
                ops += 1;
                if started.elapsed() >= duration {
                    break;
                }
                let _ = sender.send(Instant::now()).await;
            }
            let elapsed = started.elapsed();
            drop(sender);
            let histogram = histogram.borrow().clone();
            (ops, elapsed, histogram)
        })
        .map_err(|e| format!("starting an executor: {e}"))?;
    let (ops, elapsed, histogram) = asker.join().map_err(|e| format!("{e:?}"))?;
    echo.join().map_err(|e| format!("{e:?}"))?;
    Ok(CaseResult {
        name: case_name(
            &format!("glommio channel, spin {} us", spin.as_micros()),
            in_flight,
        ),
        ops,
        elapsed,
        histogram,
    })
}

/// Round trips over crossbeam channels polled by both executors, `in_flight` at a time.
fn crossbeam_case(duration: Duration, in_flight: usize) -> Result<CaseResult, String> {
    let (to_echo, from_asker) = crossbeam::channel::bounded::<Option<Instant>>(1024);
    let (to_asker, from_echo) = crossbeam::channel::bounded::<Instant>(1024);
    let echo = LocalExecutorBuilder::new(Placement::Fixed(1))
        .spawn(move || async move {
            loop {
                match from_asker.try_recv() {
                    Ok(Some(sent)) => {
                        if to_asker.send(sent).is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(crossbeam::channel::TryRecvError::Disconnected) => break,
                    Err(crossbeam::channel::TryRecvError::Empty) => {
                        glommio::executor().yield_task_queue_now().await
                    }
                }
            }
        })
        .map_err(|e| format!("starting an executor: {e}"))?;
    let asker = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spawn(move || async move {
            let mut histogram = latency_histogram();
            let started = Instant::now();
            let mut ops = 0u64;
            for _ in 0..in_flight {
                let _ = to_echo.send(Some(Instant::now()));
            }
            loop {
                match from_echo.try_recv() {
                    Ok(sent) => {
                        histogram.saturating_record(sent.elapsed().as_nanos() as u64);
                        ops += 1;
                        if started.elapsed() >= duration {
                            break;
                        }
                        let _ = to_echo.send(Some(Instant::now()));
                    }
                    Err(crossbeam::channel::TryRecvError::Empty) => {
                        glommio::executor().yield_task_queue_now().await
                    }
                    Err(crossbeam::channel::TryRecvError::Disconnected) => break,
                }
            }
            let elapsed = started.elapsed();
            let _ = to_echo.send(None);
            (ops, elapsed, histogram)
        })
        .map_err(|e| format!("starting an executor: {e}"))?;
    let (ops, elapsed, histogram) = asker.join().map_err(|e| format!("{e:?}"))?;
    echo.join().map_err(|e| format!("{e:?}"))?;
    Ok(CaseResult {
        name: case_name("crossbeam channel, polled", in_flight),
        ops,
        elapsed,
        histogram,
    })
}
