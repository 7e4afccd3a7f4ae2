//! lode-tune: probes the host lode will run on and says what to change.
//!
//! `lode-tune disk --dir DATA_DIR` measures the durable-write latency of the data directory's
//! disk (4 KiB O_DIRECT write + fdatasync, lode's commit I/O) and judges it against etcd's
//! guidance: the WAL fsync p99 should stay under 10 ms. It also checks the file system type and
//! the locked-memory limit io_uring buffers need.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use glommio::Placement;

/// etcd's guidance for WAL fsync latency: p99 under 10 ms.
const FSYNC_P99_LIMIT_US: f64 = 10_000.0;

#[derive(Parser)]
#[command(name = "lode-tune", about = "Host probes and tuning guidance for lode")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure fdatasync latency of a data directory's disk and give a verdict.
    Disk {
        /// The directory to probe (lode's data dir, or any directory on the same disk).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Number of write+fdatasync samples.
        #[arg(long, default_value_t = 2000)]
        samples: u64,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Disk { dir, samples, json } => match disk(&dir, samples, json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(3),
            Err(error) => {
                eprintln!("lode-tune: {error}");
                ExitCode::from(1)
            }
        },
    }
}

/// Returns whether the disk meets the guidance.
fn disk(dir: &Path, samples: u64, json: bool) -> Result<bool, String> {
    if !(100..=1_000_000).contains(&samples) {
        return Err("--samples must be between 100 and 1000000".into());
    }
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let fs_type = filesystem_type(dir)?;
    let memlock = memlock_limit();
    let probe_dir = dir.to_path_buf();
    let result = lode::executor::builder(Placement::Unbound)
        .spawn(move || async move { lode::diskprobe::fdatasync_floor(&probe_dir, samples).await })
        .map_err(|e| format!("starting an executor: {e}"))?
        .join()
        .map_err(|e| format!("executor: {e}"))?
        .map_err(|e| format!("probing {}: {e}", dir.display()))?;
    let us = |q: f64| result.histogram.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p99, p999) = (us(0.5), us(0.99), us(0.999));
    let ok = p99 < FSYNC_P99_LIMIT_US;
    let mut advice = Vec::new();
    if fs_type == "tmpfs" {
        advice.push(
            "the directory is on tmpfs: nothing survives a reboot and O_DIRECT is not exercised; \
             put lode's data dir on a real disk"
                .to_string(),
        );
    }
    if !ok {
        advice.push(format!(
            "fsync p99 {p99:.0} us exceeds etcd's 10 ms guidance: use a dedicated SSD/NVMe for the \
             data dir, avoid network or shared disks, and keep other writers off this device"
        ));
    } else if p99 > FSYNC_P99_LIMIT_US / 4.0 {
        advice.push(
            "fsync p99 is within the guidance but leaves little headroom: expect commit tails of \
             several ms"
                .to_string(),
        );
    }
    if let Some(limit) = memlock {
        if limit < lode::executor::IO_MEMORY_BYTES as u64 * 2 {
            advice.push(format!(
                "locked-memory limit is {limit} bytes; raise it (ulimit -l / LimitMEMLOCK) so each \
                 core can register its io_uring buffers"
            ));
        }
    }
    if json {
        let line = serde_json::json!({
            "probe": "disk",
            "dir": dir.display().to_string(),
            "filesystem": fs_type,
            "samples": result.histogram.len(),
            "fdatasync_p50_us": p50,
            "fdatasync_p99_us": p99,
            "fdatasync_p999_us": p999,
            "meets_etcd_guidance": ok,
            "advice": advice,
        });
        println!("{line}");
    } else {
        println!("disk probe of {} ({fs_type})", dir.display());
        println!(
            "  4 KiB O_DIRECT write + fdatasync, {} samples: p50 {p50:.0} us, p99 {p99:.0} us, \
             p99.9 {p999:.0} us",
            result.histogram.len()
        );
        println!(
            "  verdict: {}",
            if ok {
                "OK: p99 is under etcd's 10 ms WAL fsync guidance"
            } else {
                "TOO SLOW: p99 is over etcd's 10 ms WAL fsync guidance"
            }
        );
        for line in &advice {
            println!("  advice: {line}");
        }
    }
    Ok(ok)
}

fn filesystem_type(dir: &Path) -> Result<String, String> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: statfs writes into the zeroed struct; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!(
            "statfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(match stat.f_type as i64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x2FC1_2FC1 => "zfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
    .to_string())
}

fn memlock_limit() -> Option<u64> {
    // SAFETY: getrlimit writes into the struct we pass.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}
