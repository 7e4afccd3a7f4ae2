//! lode: the server. Opens (or creates) the data directory, recovers the log, rebuilds the
//! keyspace by applying the committed log, and serves the native protocol until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use glommio::{Latency, Placement, Shares};
use lode::consensus::{Consensus, ConsensusConfig};
use lode::server::{self, Limits};
use lode::wal::io::DmaDir;
use lode::wal::{Wal, WalOptions, DEFAULT_SEGMENT_SIZE};

/// The native protocol's default port.
const DEFAULT_NATIVE_ADDRESS: &str = "127.0.0.1:2390";

#[derive(Parser)]
#[command(
    name = "lode",
    version,
    about = "lode: a Raft-replicated key-value store with etcd's data model",
    long_about = "lode: a Raft-replicated key-value store with etcd's data model.\n\n\
        Every flag can also be set through the environment variable named after it \
        (LODE_ followed by the flag in upper case with - as _, e.g. LODE_DATA_DIR)."
)]
struct Cli {
    /// Human-readable name of this member.
    #[arg(long, env = "LODE_NAME", default_value = "default")]
    name: String,
    /// Data directory (created if missing) [default: <name>.lode].
    #[arg(long, env = "LODE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address the native protocol listens on (host:port).
    #[arg(long, env = "LODE_LISTEN_NATIVE", default_value = DEFAULT_NATIVE_ADDRESS)]
    listen_native: String,
    /// Largest request accepted, in bytes (etcd's default: 1.5 MiB).
    #[arg(long, env = "LODE_MAX_REQUEST_BYTES", default_value_t = 1_572_864,
          value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    max_request_bytes: u64,
    /// Most operations (compares, or ops in a branch) in one txn.
    #[arg(long, env = "LODE_MAX_TXN_OPS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_txn_ops: u64,
    /// Time between Raft heartbeats, in milliseconds.
    #[arg(long, env = "LODE_HEARTBEAT_INTERVAL", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    heartbeat_interval: u64,
    /// Time without a leader before an election, in milliseconds (at least 2 heartbeats).
    #[arg(long, env = "LODE_ELECTION_TIMEOUT", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(2..=50_000))]
    election_timeout: u64,
    /// Size of new log segment files, in bytes.
    #[arg(long, env = "LODE_WAL_SEGMENT_SIZE", default_value_t = DEFAULT_SEGMENT_SIZE)]
    wal_segment_size: u64,
}

/// FNV-1a, for IDs derived from names.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn")),
        )
        .init();
    let cli = Cli::parse();
    if cli.election_timeout < 2 * cli.heartbeat_interval {
        eprintln!("lode: --election-timeout must be at least twice --heartbeat-interval");
        return ExitCode::from(2);
    }
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.lode", cli.name)));
    let wal_dir = data_dir.join("wal");
    if let Err(error) = std::fs::create_dir_all(&wal_dir) {
        eprintln!(
            "lode: cannot create data directory {}: {error}",
            wal_dir.display()
        );
        return ExitCode::from(1);
    }
    let shutdown = match server::install_shutdown_signals() {
        Ok(flag) => flag,
        Err(error) => {
            eprintln!("lode: cannot install signal handlers: {error}");
            return ExitCode::from(1);
        }
    };
    let member_id = fnv1a(format!("lode-member/{}", cli.name).as_bytes());
    let config = ConsensusConfig {
        member_id,
        cluster_id: fnv1a(&member_id.to_le_bytes()),
        heartbeat: Duration::from_millis(cli.heartbeat_interval),
        election_ticks: (cli.election_timeout / cli.heartbeat_interval) as usize,
        max_txn_ops: cli.max_txn_ops as usize,
        shards: 1,
    };
    let limits = Limits::for_max_request_bytes(cli.max_request_bytes as usize);
    let wal_options = WalOptions {
        segment_size: cli.wal_segment_size,
        // An entry holds one request frame (at most --max-request-bytes) and a proposal header.
        max_entry_bytes: cli.max_request_bytes as usize + 4096,
        create_if_missing: true,
        ..WalOptions::default()
    };
    let listen = cli.listen_native.clone();
    let started = lode::executor::builder(Placement::Unbound).spawn(move || async move {
        let dir = DmaDir::open(&wal_dir)
            .await
            .map_err(|error| format!("cannot open {}: {error}", wal_dir.display()))?;
        let wal = Rc::new(
            Wal::open(dir, wal_options)
                .await
                .map_err(|error| error.to_string())?,
        );
        let background = glommio::executor().create_task_queue(
            Shares::Static(100),
            Latency::NotImportant,
            "background",
        );
        glommio::spawn_local_into(Wal::run_preparer(Rc::downgrade(&wal)), background)
            .map_err(|error| error.to_string())?
            .detach();
        let consensus = Consensus::new(config, wal).map_err(|error| error.to_string())?;
        let listener = glommio::net::TcpListener::bind(&listen)
            .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
        glommio::spawn_local(server::native::serve(listener, consensus.clone(), limits)).detach();
        let watcher = consensus.clone();
        glommio::spawn_local(async move {
            while !server::shutdown_requested(&shutdown) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            tracing::info!("shutdown requested");
            watcher.stop();
        })
        .detach();
        eprintln!(
            "lode: member {member_id:x} serving the native protocol on {listen}, data dir {}",
            data_dir.display()
        );
        let outcome = consensus.clone().run().await;
        // Let connections write the answers of requests that just failed with "server stopped".
        glommio::timer::sleep(Duration::from_millis(100)).await;
        outcome.map_err(|error| error.to_string())
    });
    let result = match started {
        Ok(handle) => handle
            .join()
            .map_err(|error| error.to_string())
            .and_then(|r| r),
        Err(error) => Err(format!("cannot start an executor: {error}")),
    };
    match result {
        Ok(()) => {
            eprintln!("lode: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("lode: {error}");
            ExitCode::from(1)
        }
    }
}
