//! lode: the server. Opens (or creates) the data directory, recovers the log, rebuilds the
//! keyspace by applying the committed log, and serves the native protocol until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use lode::consensus::ConsensusConfig;
use lode::cpus::CpuChoice;
use lode::members::Member;
use lode::membership::{self, write_durably, Identity};
use lode::server::claim::{self, Wanted};
use lode::server::node::{run_core, NodeConfig};
use lode::server::urls::{parse_url, parse_urls, Urls};
use lode::server::{self, Limits};
use lode::shard::mesh::Mesh;
use lode::shard::CoreMessage;
use lode::wal::{WalOptions, DEFAULT_SEGMENT_SIZE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ClusterState {
    New,
    Existing,
}

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
    /// An extra address serving only lode's native protocol (host:port). The client URLs serve
    /// it too (next to etcd's gRPC and HTTP APIs), so it is needed only to keep native clients
    /// on a port of their own.
    #[arg(long, env = "LODE_LISTEN_NATIVE")]
    listen_native: Option<String>,
    /// URLs to listen on for client traffic (comma-separated http://host:port). They serve the
    /// native protocol today; etcd's gRPC API joins them on the same ports.
    #[arg(long, env = "LODE_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379",
          value_parser = parse_urls)]
    listen_client_urls: Urls,
    /// URLs to listen on for the other members (comma-separated http://host:port).
    #[arg(long, env = "LODE_LISTEN_PEER_URLS", default_value = membership::DEFAULT_PEER_URL,
          value_parser = parse_urls)]
    listen_peer_urls: Urls,
    /// This member's peer URLs as the initial cluster knows them (comma-separated
    /// http://host:port); with --initial-cluster-token they determine the member ID, as in etcd.
    #[arg(long, env = "LODE_INITIAL_ADVERTISE_PEER_URLS", default_value = membership::DEFAULT_PEER_URL,
          value_parser = parse_urls)]
    initial_advertise_peer_urls: Urls,
    /// The initial cluster: name=peer-url pairs, comma-separated [default:
    /// <name>=<initial-advertise-peer-urls>]. Read only when the data dir is created.
    #[arg(long, env = "LODE_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    /// Token that makes member and cluster IDs unique to one cluster (etcd's default).
    #[arg(long, env = "LODE_INITIAL_CLUSTER_TOKEN", default_value = membership::DEFAULT_CLUSTER_TOKEN)]
    initial_cluster_token: String,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, env = "LODE_INITIAL_CLUSTER_STATE", value_enum, default_value_t = ClusterState::New)]
    initial_cluster_state: ClusterState,
    /// Client URLs this member advertises to clients (comma-separated http://host:port).
    #[arg(long, env = "LODE_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379",
          value_parser = parse_urls)]
    advertise_client_urls: Urls,
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
    /// How often idle watchers that asked for progress notifications get one (Go duration
    /// notation, at least 100ms; etcd's flag, also accepted with its `--experimental-` name).
    #[arg(long, env = "LODE_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m",
          alias = "experimental-watch-progress-notify-interval",
          value_parser = watch_progress_interval)]
    watch_progress_notify_interval: Duration,
    /// Executors (one per core, pinned), each owning a shard of the keyspace and accepting
    /// clients [default: every core this process may run on].
    #[arg(long, env = "LODE_CORES", value_parser = clap::value_parser!(u64).range(1..=1024))]
    cores: Option<u64>,
    /// CPUs the executors are pinned to, one each in ascending order: a list such as 0-3,6,
    /// or `unpinned` to leave them to the kernel (for machines running more lodes than CPUs)
    /// [default: the CPUs this process may run on, so `taskset -c` places lode].
    #[arg(long, env = "LODE_CPUSET", value_parser = lode::cpus::parse)]
    cpuset: Option<lode::cpus::CpuChoice>,
    /// Applied entries between snapshots; the log before a snapshot (less the catch-up entries)
    /// is then removed. 0 disables snapshots.
    #[arg(long, env = "LODE_SNAPSHOT_COUNT", default_value_t = 100_000)]
    snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag.
    #[arg(long, env = "LODE_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5_000)]
    snapshot_catchup_entries: u64,
    /// Microseconds an idle core spins before it sleeps. Spinning makes a message from another
    /// core cost ~13 us instead of ~60 us (`lode-bench mesh` on a 2-core VM) but burns the
    /// time it spins: worth it on dedicated cores, not where other processes share them (see
    /// tuning/README.md).
    #[arg(long, env = "LODE_IDLE_SPIN_US", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    idle_spin_us: u64,
    /// Space quota: writes that add data are refused and the NOSPACE alarm is raised when the
    /// keyspace's counted size (every version held: key, value and 64 bytes) would exceed it;
    /// the alarm clears itself once compaction brings the size under 90% of it. 0: 2 GiB
    /// (etcd's default); negative: no quota.
    #[arg(
        long,
        env = "LODE_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    quota_backend_bytes: i64,
    /// Size of new log segment files, in bytes.
    #[arg(long, env = "LODE_WAL_SEGMENT_SIZE", default_value_t = DEFAULT_SEGMENT_SIZE)]
    wal_segment_size: u64,
}

/// The data dir's identity: read from its identity file, or, for a new data dir, derived from
/// the bootstrap flags as etcd derives it and written durably before anything else.
fn member_identity(cli: &Cli, data_dir: &std::path::Path) -> Result<Identity, String> {
    let path = data_dir.join(membership::IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return Identity::decode(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("reading {}: {error}", path.display())),
    }
    let default_cluster: Vec<String> = cli
        .initial_advertise_peer_urls
        .0
        .iter()
        .map(|url| format!("{}={url}", cli.name))
        .collect();
    let spec = cli
        .initial_cluster
        .clone()
        .unwrap_or_else(|| default_cluster.join(","));
    let cluster = membership::initial_cluster(
        &spec,
        &cli.name,
        &cli.initial_advertise_peer_urls,
        &cli.initial_cluster_token,
    )?;
    if cli.initial_cluster_state == ClusterState::Existing {
        let identity = join_identity(cli, &cluster)?;
        write_durably(&path, identity.encode().as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        return Ok(identity);
    }
    let identity = membership::new_cluster_identity(&cluster, &cli.name)?;
    write_durably(&path, identity.encode().as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(identity)
}

/// The identity of a member joining a running cluster: the registry asked of the other
/// members in `--initial-cluster`, in which it was added (`member add`) at its advertised peer
/// URLs.
fn join_identity(cli: &Cli, cluster: &membership::InitialCluster) -> Result<Identity, String> {
    let mut others = Vec::new();
    for member in cluster.members.iter().filter(|m| m.name != cli.name) {
        for url in &member.peer_urls {
            others.push(url.socket_address()?.to_string());
        }
    }
    let (cluster_id, registry) = lode::peer::join::fetch_members(&others, Duration::from_secs(5))?;
    let mut own_urls: Vec<String> = cli
        .initial_advertise_peer_urls
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    own_urls.sort();
    let own = registry
        .list()
        .into_iter()
        .find(|member| {
            let mut urls = member.peer_urls.clone();
            urls.sort();
            urls == own_urls
        })
        .ok_or_else(|| {
            format!(
                "no member of cluster {cluster_id:x} has the peer URLs {}: add this member \
                 first (lodectl member add {} --peer-urls {})",
                own_urls.join(","),
                cli.name,
                own_urls.join(",")
            )
        })?;
    if !own.name.is_empty() {
        return Err(format!(
            "member {:x} has already been bootstrapped (as {}): a member joins once, with a \
             fresh data dir",
            own.id, own.name
        ));
    }
    let members = registry.list();
    Ok(Identity {
        name: cli.name.clone(),
        member_id: own.id,
        cluster_id,
        learners: members
            .iter()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect(),
        members: members
            .into_iter()
            .map(|m| {
                let name = if m.id == own.id {
                    cli.name.clone()
                } else {
                    m.name
                };
                (m.id, name, m.peer_urls)
            })
            .collect(),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn")),
        )
        .init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let peer_urls_given = matches!(
        matches.value_source("listen_peer_urls"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if cli.election_timeout < 2 * cli.heartbeat_interval {
        eprintln!("lode: --election-timeout must be at least twice --heartbeat-interval");
        return ExitCode::from(2);
    }
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.lode", cli.name)));
    // Absolute: glommio refuses to open a relative directory for syncing (EBADF).
    let data_dir = match std::path::absolute(&data_dir) {
        Ok(absolute) => absolute,
        Err(error) => {
            eprintln!("lode: data directory {}: {error}", data_dir.display());
            return ExitCode::from(1);
        }
    };
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
    let identity = match member_identity(&cli, &data_dir) {
        Ok(identity) => identity,
        Err(error) => {
            eprintln!("lode: {error}");
            return ExitCode::from(1);
        }
    };
    let mut members = Vec::new();
    for (id, name, urls) in &identity.members {
        let address = urls
            .first()
            .ok_or_else(|| format!("member {name} has no peer URL"))
            .and_then(|url| parse_url(url).map_err(|e| format!("member {name}: {e}")))
            .and_then(|url| url.socket_address());
        if let Err(error) = address {
            eprintln!("lode: {error}");
            return ExitCode::from(1);
        }
        members.push(Member {
            id: *id,
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
            is_learner: identity.learners.contains(id),
        });
    }
    let bootstrapped_alone = members.len() == 1;
    let listen_peer = match cli.listen_peer_urls.0[0].socket_address() {
        Ok(address) => address.to_string(),
        Err(error) => {
            eprintln!("lode: --listen-peer-urls: {error}");
            return ExitCode::from(2);
        }
    };
    let config = ConsensusConfig {
        member_id: identity.member_id,
        cluster_id: identity.cluster_id,
        members,
        name: cli.name.clone(),
        client_urls: cli
            .advertise_client_urls
            .0
            .iter()
            .map(ToString::to_string)
            .collect(),
        heartbeat: Duration::from_millis(cli.heartbeat_interval),
        request_timeout: Duration::from_secs(5) + 2 * Duration::from_millis(cli.election_timeout),
        election_ticks: (cli.election_timeout / cli.heartbeat_interval) as usize,
        max_txn_ops: cli.max_txn_ops as usize,
        snapshot_count: cli.snapshot_count,
        snapshot_catchup_entries: cli.snapshot_catchup_entries,
        snapshot_dir: data_dir.join("snap"),
        quota_bytes: match cli.quota_backend_bytes {
            0 => Some(lode::alarm::DEFAULT_QUOTA_BYTES),
            quota if quota < 0 => None,
            quota => Some(quota as u64),
        },
    };
    let mut limits = Limits::for_max_request_bytes(cli.max_request_bytes as usize);
    limits.watch_progress_interval = cli.watch_progress_notify_interval;
    let wal_options = WalOptions {
        segment_size: cli.wal_segment_size,
        // An entry holds one request frame (at most --max-request-bytes) and a proposal header.
        max_entry_bytes: cli.max_request_bytes as usize + 4096,
        create_if_missing: true,
        ..WalOptions::default()
    };
    let allowed = match lode::cpus::allowed() {
        Ok(allowed) => allowed,
        Err(error) => {
            eprintln!("lode: reading this process's CPU affinity: {error}");
            return ExitCode::from(1);
        }
    };
    // Executor 0 (consensus, the log) goes where the data disk's completions are handled.
    let disk_cpu = lode::cpus::disk_interrupt_cpu(&data_dir);
    let placement = match &cli.cpuset {
        Some(CpuChoice::Unpinned) => {
            let cores = cli.cores.map_or(allowed.len(), |cores| cores as usize);
            PoolPlacement::Unbound(cores)
        }
        Some(CpuChoice::Pinned(chosen)) => {
            match pinned_placement(chosen, &allowed, cli.cores.map(|c| c as usize), disk_cpu) {
                Ok(placement) => placement,
                Err(error) => {
                    eprintln!("lode: --cpuset: {error}");
                    return ExitCode::from(2);
                }
            }
        }
        None => match pinned_placement(&allowed, &allowed, cli.cores.map(|c| c as usize), disk_cpu)
        {
            Ok(placement) => placement,
            Err(error) => {
                eprintln!("lode: {error}");
                return ExitCode::from(2);
            }
        },
    };
    let cores = placement.executor_count();
    let cpus_said = match &placement {
        PoolPlacement::Custom(sets) => {
            let cpus: Vec<usize> = sets
                .iter()
                .flat_map(|set| set.iter().map(|location| location.cpu))
                .collect();
            let mut said = format!("pinned to CPU {}", lode::cpus::format_list(&cpus));
            if let (Some(first), Some(disk)) = (cpus.first(), disk_cpu) {
                if *first == disk {
                    said.push_str(&format!(
                        " (consensus on CPU {disk}, which takes the data disk's interrupts)"
                    ));
                }
            }
            said
        }
        _ => "unpinned".to_string(),
    };
    let mut listen: Vec<String> = cli.listen_native.iter().cloned().collect();
    let mut wanted = Vec::new();
    for address in &listen {
        match address.parse::<std::net::SocketAddr>() {
            Ok(address) => wanted.push(Wanted {
                address,
                what: "--listen-native".into(),
            }),
            Err(error) => {
                eprintln!("lode: --listen-native {address}: {error}");
                return ExitCode::from(2);
            }
        }
    }
    for url in &cli.listen_client_urls.0 {
        match url.socket_address() {
            Ok(address) if listen.contains(&address.to_string()) => {
                eprintln!("lode: {url} is the same address as another listener");
                return ExitCode::from(2);
            }
            Ok(address) => {
                listen.push(address.to_string());
                wanted.push(Wanted {
                    address,
                    what: "--listen-client-urls".into(),
                });
            }
            Err(error) => {
                eprintln!("lode: --listen-client-urls: {error}");
                return ExitCode::from(2);
            }
        }
    }
    // A member bootstrapped alone listens for peers only when told where (so that several
    // single-member lodes run side by side on their defaults); it needs to, to add members.
    let listen_peer = (!bootstrapped_alone || peer_urls_given).then_some(listen_peer);
    if let Some(address) = &listen_peer {
        match address.parse::<std::net::SocketAddr>() {
            Ok(address) => wanted.push(Wanted {
                address,
                what: "--listen-peer-urls".into(),
            }),
            Err(error) => {
                eprintln!("lode: --listen-peer-urls {address}: {error}");
                return ExitCode::from(2);
            }
        }
    }
    // Every core binds each address with SO_REUSEPORT, which would also let another process
    // share it: claim them all for this process first (waiting a moment for a previous run's
    // sockets that linger after a kill).
    let _claims = match claim::claim(&wanted, claim::DEFAULT_CLAIM_WAIT, |waiting| {
        eprintln!(
            "lode: {} ({}) is in use; waiting up to {:?} for it to be released",
            waiting.address,
            waiting.what,
            claim::DEFAULT_CLAIM_WAIT
        );
    }) {
        Ok(claims) => claims,
        Err(error) => {
            eprintln!("lode: {error}");
            return ExitCode::from(1);
        }
    };
    let node = NodeConfig {
        consensus: config,
        wal_dir,
        wal_options,
        listen,
        listen_peer,
        limits,
        shutdown,
    };
    eprintln!(
        "lode: client URLs {} (advertised: {})",
        cli.listen_client_urls, cli.advertise_client_urls
    );
    eprintln!("lode: data dir {}", data_dir.display());
    eprintln!("lode: {cores} core(s), {cpus_said}");
    let mesh = Arc::new(Mesh::<CoreMessage>::new(cores, 1024));
    let started = LocalExecutorPoolBuilder::new(placement)
        .io_memory(lode::executor::IO_MEMORY_BYTES)
        .spin_before_park(Duration::from_micros(cli.idle_spin_us))
        .on_all_shards(move || {
            let node = node.clone();
            let ends = mesh.take_next();
            async move {
                match ends {
                    Some(ends) => run_core(node, ends, cores).await,
                    None => Err("more executors than cores in the mesh".to_string()),
                }
            }
        });
    let result = match started {
        Ok(handles) => handles
            .join_all()
            .into_iter()
            .map(|joined| joined.map_err(|error| error.to_string()).and_then(|r| r))
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ()),
        Err(error) => Err(format!("cannot start the executors: {error}")),
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

/// `--watch-progress-notify-interval`: a duration of at least 100 ms, as etcd requires.
fn watch_progress_interval(text: &str) -> Result<Duration, String> {
    let interval = lode::server::parse_duration(text)?;
    if interval < Duration::from_millis(100) {
        return Err(format!("{text} is below the minimum of 100ms"));
    }
    Ok(interval)
}

/// One executor per CPU: the first `cores` CPUs of `chosen` (all of them by default), with
/// `consensus_cpu` first when it is among them.
fn pinned_placement(
    chosen: &[usize],
    allowed: &[usize],
    cores: Option<usize>,
    consensus_cpu: Option<usize>,
) -> Result<PoolPlacement, String> {
    let cpus = lode::cpus::assign(chosen, allowed, cores, consensus_cpu)?;
    let online = CpuSet::online().map_err(|e| format!("reading the CPU topology: {e}"))?;
    let mut sets = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        let set = online.clone().filter(|location| location.cpu == cpu);
        if set.is_empty() {
            return Err(format!("CPU {cpu} is not online"));
        }
        sets.push(set);
    }
    Ok(PoolPlacement::Custom(sets))
}
