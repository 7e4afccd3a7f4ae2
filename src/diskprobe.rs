//! Measures the durable-write floor of a directory's disk: a 4 KiB O_DIRECT write followed by
//! fdatasync, repeated, into a preallocated zero-filled file: what any write-ahead log pays per
//! commit (etcd's WAL does exactly this; lode's log makes the same write durable with one
//! `RWF_DSYNC` request, which the kernel completes with the same cache flush). Used by
//! `lode-bench log` (its baseline) and `lode-tune disk` (its verdict).
//! Runs on a glommio executor.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use glommio::io::OpenOptions;
use hdrhistogram::Histogram;

use crate::wal::io::zero_fill;

/// Bytes written per sample.
pub const PROBE_WRITE_BYTES: usize = 4096;

/// Latencies of write+fdatasync pairs, in nanoseconds.
pub struct ProbeResult {
    /// One value per write+fdatasync.
    pub histogram: Histogram<u64>,
    /// Wall time of the measured loop.
    pub elapsed: Duration,
}

/// New histogram for latencies from 1 ns to 60 s with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Writes `samples` sequential 4 KiB blocks with O_DIRECT into a fresh file in `dir`, each
/// followed by fdatasync, and returns the latencies. The file is removed afterwards.
pub async fn fdatasync_floor(dir: &Path, samples: u64) -> io::Result<ProbeResult> {
    let path = dir.join(format!("lode-probe-{}.tmp", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(io::Error::from)?;
    let size = samples * PROBE_WRITE_BYTES as u64;
    let result = async {
        zero_fill(&file, size).await?;
        file.fdatasync().await.map_err(io::Error::from)?;
        let mut histogram = latency_histogram();
        let started = Instant::now();
        for sample in 0..samples {
            let mut buffer = file.alloc_dma_buffer(PROBE_WRITE_BYTES);
            buffer.as_bytes_mut().fill((sample % 251) as u8);
            let begin = Instant::now();
            file.write_at(buffer, sample * PROBE_WRITE_BYTES as u64)
                .await
                .map_err(io::Error::from)?;
            file.fdatasync().await.map_err(io::Error::from)?;
            histogram.saturating_record(begin.elapsed().as_nanos() as u64);
        }
        Ok(ProbeResult {
            histogram,
            elapsed: started.elapsed(),
        })
    }
    .await;
    let _ = file.close().await;
    let _ = std::fs::remove_file(&path);
    result
}
