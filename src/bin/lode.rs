//! lode: the server binary. Today it opens (or creates) a node's data directory and recovers
//! its log: every segment is scanned and verified, a torn tail is cleared, and corruption stops
//! it with the file and offset. Serving clients arrives with the single-node server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use glommio::Placement;
use lode::wal::io::DmaDir;
use lode::wal::{Wal, WalOptions, DEFAULT_SEGMENT_SIZE};

#[derive(Parser)]
#[command(
    name = "lode",
    version,
    about = "lode: a Raft-replicated key-value store speaking etcd's API"
)]
struct Cli {
    /// Data directory (created if missing); the log lives in its `wal/` subdirectory.
    #[arg(long, default_value = "default.lode")]
    data_dir: PathBuf,
    /// Size of new log segment files in bytes.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE)]
    wal_segment_size: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let wal_dir = cli.data_dir.join("wal");
    if let Err(error) = std::fs::create_dir_all(&wal_dir) {
        eprintln!(
            "lode: cannot create data directory {}: {error}",
            wal_dir.display()
        );
        return ExitCode::from(1);
    }
    let options = WalOptions {
        segment_size: cli.wal_segment_size,
        create_if_missing: true,
        ..WalOptions::default()
    };
    let outcome = lode::executor::builder(Placement::Unbound).spawn(move || async move {
        let dir = DmaDir::open(&wal_dir)
            .await
            .map_err(|error| format!("cannot open {}: {error}", wal_dir.display()))?;
        let wal = Wal::open(dir, options)
            .await
            .map_err(|error| error.to_string())?;
        let hard_state = wal.hard_state();
        let (compacted, _) = wal.compacted();
        Ok::<_, String>(format!(
            "log recovered in {}: entries {}..={}, compacted to {compacted}, hard state term={} \
             vote={} commit={}, segments {:?}",
            wal_dir.display(),
            wal.first_index(),
            wal.last_index(),
            hard_state.term,
            hard_state.vote,
            hard_state.commit,
            wal.segments()
        ))
    });
    let result = match outcome {
        Ok(handle) => handle
            .join()
            .map_err(|error| error.to_string())
            .and_then(|r| r),
        Err(error) => Err(format!("cannot start an executor: {error}")),
    };
    match result {
        Ok(summary) => {
            println!("lode: {summary}");
            println!("lode: the data directory is ready; serving clients is not built yet");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lode: {error}");
            ExitCode::from(1)
        }
    }
}
