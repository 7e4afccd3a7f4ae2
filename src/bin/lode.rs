//! lode: the server. Opens (or creates) the data directory, recovers the log, rebuilds the
//! keyspace by applying the committed log, and serves the native protocol until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use lode::compactor;
use lode::config::server_flags::{
    self, ClusterState, CompactionMode, LogFormat, LogLevel, ServerFlags,
};
use lode::config::{self, Notice};
use lode::consensus::ConsensusConfig;
use lode::cpus::CpuChoice;
use lode::logging;
use lode::members::Member;
use lode::membership::{self, write_durably, Identity};
use lode::server::claim::{self, Wanted};
use lode::server::node::NodeConfig;
use lode::server::run::run_core;
use lode::server::{self, Limits};
use lode::shard::mesh::Mesh;
use lode::shard::CoreMessage;
use lode::urls::parse_url;
use lode::wal::WalOptions;

/// The data dir's identity: read from its identity file, or, for a new data dir, derived from
/// the bootstrap flags as etcd derives it and written durably before anything else.
fn member_identity(
    cli: &ServerFlags,
    data_dir: &std::path::Path,
    peer_tls: Option<&Arc<lode::tls::ClientTls>>,
) -> Result<Identity, String> {
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
        let identity = join_identity(cli, &cluster, peer_tls)?;
        write_durably(&path, identity.encode().as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        return Ok(identity);
    }
    let identity = membership::new_cluster_identity(&cluster, &cli.name)?;
    write_durably(&path, identity.encode().as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(identity)
}

/// Whether this member is the only one of its cluster: by its identity file when the data dir
/// has one, else by `--initial-cluster` (a member alone listens for peers only when told to).
fn alone_in_cluster(cli: &ServerFlags, data_dir: &std::path::Path) -> bool {
    let path = data_dir.join(membership::IDENTITY_FILE);
    if let Ok(identity) = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| Identity::decode(&text).map_err(|e| e.to_string()))
    {
        return identity.members.len() == 1;
    }
    cli.initial_cluster.as_ref().is_none_or(|spec| {
        spec.split(',')
            .filter(|member| !member.trim().is_empty())
            .count()
            <= 1
    })
}

/// The identity of a member joining a running cluster: the registry asked of the other
/// members in `--initial-cluster`, in which it was added (`member add`) at its advertised peer
/// URLs.
fn join_identity(
    cli: &ServerFlags,
    cluster: &membership::InitialCluster,
    peer_tls: Option<&Arc<lode::tls::ClientTls>>,
) -> Result<Identity, String> {
    let mut others = Vec::new();
    for member in cluster.members.iter().filter(|m| m.name != cli.name) {
        for url in &member.peer_urls {
            others.push(lode::peer::join::JoinTarget {
                address: url.socket_address()?.to_string(),
                tls_host: url.tls.then(|| url.host.clone()),
            });
        }
    }
    let (cluster_id, registry) = lode::peer::join::fetch_members(
        &others,
        peer_tls.map(|tls| tls.blocking_config()),
        Duration::from_secs(5),
    )?;
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

/// A start that failed: the exit code and why.
struct Failure {
    code: u8,
    message: String,
}

/// A configuration error (exit code 2, as etcd's flag errors).
fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

/// A failure to start or to run (exit code 1).
fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let (cli, matches, notices, config_file) = match configure(&argv, &env) {
        Ok(configured) => configured,
        Err(failure) => {
            eprintln!("lode: {}", failure.message);
            return ExitCode::from(failure.code);
        }
    };
    let outputs = match logging::parse_outputs(&cli.log_outputs) {
        Ok(outputs) => outputs,
        Err(error) => {
            eprintln!("lode: {error}");
            return ExitCode::from(2);
        }
    };
    let level = match cli.log_level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Dpanic | LogLevel::Panic | LogLevel::Fatal => "error",
    };
    if let Err(error) = logging::init(level, cli.log_format == LogFormat::Json, &outputs) {
        eprintln!("lode: {error}");
        return ExitCode::from(1);
    }
    // A panic on any core ends the process at once: a member with a dead core would stay up
    // and serve nothing, and no supervisor restarts a process that is still running.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(
            panic = %info,
            "a panic: lode stops at once so that its supervisor can restart it"
        );
        std::process::abort();
    }));
    tracing::info!(args = %argv.join(" "), "Running: ");
    raise_descriptor_limit();
    for notice in notices {
        match notice {
            Notice::Info(text) => tracing::info!("{text}"),
            Notice::Warn(text) => tracing::warn!("{text}"),
        }
    }
    match run(&cli, &matches, config_file.is_some()) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            tracing::error!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Raises the soft limit on open descriptors to the hard limit (as Go's runtime does for etcd):
/// every client connection holds one, and the default soft limit (1024 on most systems) would
/// refuse clients long before memory runs short (an idle connection costs about 4 KiB).
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and setting this process's own limit with a valid struct.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
            && {
                let wanted = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0
            }
    };
    if raised {
        tracing::info!(
            from = limit.rlim_cur,
            to = limit.rlim_max,
            "raised the open file limit"
        );
    }
}

/// The server's flags from the command line, the environment or a config file, with what to
/// log about them once logging is set up and the config file read, if any.
type Configured = (
    ServerFlags,
    clap::ArgMatches,
    Vec<Notice>,
    Option<std::path::PathBuf>,
);

fn configure(argv: &[String], env: &[(String, String)]) -> Result<Configured, Failure> {
    let known = server_flags::known_flags();
    let resolved = config::resolve(argv, env, &known, |path| std::fs::read_to_string(path))
        .map_err(|error| usage(error.to_string()))?;
    if resolved.passthrough {
        // --help or --version: clap prints and exits.
        ServerFlags::command().get_matches_from(argv);
    }
    let matches = match ServerFlags::command().try_get_matches_from(&resolved.args) {
        Ok(matches) => matches,
        Err(error) => {
            let rendered = error.render().to_string();
            let rendered = rendered.trim_end().trim_start_matches("error: ");
            return Err(usage(match &resolved.config_file {
                Some(path) => format!("config file {}: {rendered}", path.display()),
                None => rendered.to_string(),
            }));
        }
    };
    let cli = ServerFlags::from_arg_matches(&matches).map_err(|e| usage(e.to_string()))?;
    Ok((cli, matches, resolved.notices, resolved.config_file))
}

/// Starts the member and serves until it is told to stop.
fn run(cli: &ServerFlags, matches: &clap::ArgMatches, from_file: bool) -> Result<(), Failure> {
    let peer_urls_given =
        matches.value_source("listen_peer_urls") == Some(ValueSource::CommandLine);
    if cli.election_timeout < 2 * cli.heartbeat_interval {
        return Err(usage(
            "--election-timeout must be at least twice --heartbeat-interval",
        ));
    }
    let mut auto_compaction = compactor::parse_retention(
        match cli.auto_compaction_mode {
            CompactionMode::Periodic => compactor::Mode::Periodic,
            CompactionMode::Revision => compactor::Mode::Revision,
        },
        &cli.auto_compaction_retention,
    )
    .map_err(usage)?;
    // In a config file etcd has no default mode: a retention without one leaves
    // auto-compaction off there (etcd 3.5 refuses a duration, ignores a number of hours).
    if from_file
        && auto_compaction.is_some()
        && matches.value_source("auto_compaction_mode") == Some(ValueSource::DefaultValue)
    {
        tracing::warn!(
            retention = %cli.auto_compaction_retention,
            "auto-compaction-retention without auto-compaction-mode in the config file: \
             auto-compaction stays off, as in etcd"
        );
        auto_compaction = None;
    }
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.lode", cli.name)));
    // Absolute: glommio refuses to open a relative directory for syncing (EBADF).
    let data_dir = std::path::absolute(&data_dir)
        .map_err(|error| failed(format!("data directory {}: {error}", data_dir.display())))?;
    let wal_dir = match &cli.wal_dir {
        Some(dir) => std::path::absolute(dir)
            .map_err(|error| failed(format!("--wal-dir {}: {error}", dir.display())))?,
        None => data_dir.join("wal"),
    };
    // Every address is claimed before anything is written, so a start refused for a busy
    // address leaves the data dir as it was (its identity included).
    let bootstrapped_alone = alone_in_cluster(cli, &data_dir);
    let listen_peer = cli.listen_peer_urls.0[0]
        .socket_address()
        .map_err(|error| usage(format!("--listen-peer-urls: {error}")))?;
    let mut wanted = Vec::new();
    let mut take = |address: std::net::SocketAddr, what: &str| -> Result<String, Failure> {
        if wanted.iter().any(|w: &Wanted| w.address == address) {
            return Err(usage(format!(
                "{what}: {address} is the same address as another listener"
            )));
        }
        wanted.push(Wanted {
            address,
            what: what.to_string(),
        });
        Ok(address.to_string())
    };
    // (address, served over TLS) of every client-side listener.
    let mut listen = Vec::new();
    let listen_native = match &cli.listen_native {
        Some(address) => Some(parse_native_address(address).map_err(usage)?),
        None => None,
    };
    if let Some(url) = &listen_native {
        let address = url
            .socket_address()
            .map_err(|error| usage(format!("--listen-native: {error}")))?;
        listen.push((take(address, "--listen-native")?, url.tls));
    }
    for url in &cli.listen_client_urls.0 {
        let address = url
            .socket_address()
            .map_err(|error| usage(format!("--listen-client-urls: {error}")))?;
        listen.push((take(address, "--listen-client-urls")?, url.tls));
    }
    let mut listen_metrics = Vec::new();
    for url in cli
        .listen_metrics_urls
        .iter()
        .flat_map(|urls| urls.0.iter())
    {
        let address = url
            .socket_address()
            .map_err(|error| usage(format!("--listen-metrics-urls: {error}")))?;
        listen_metrics.push((take(address, "--listen-metrics-urls")?, url.tls));
    }
    // A member bootstrapped alone listens for peers only when told where (so that several
    // single-member lodes run side by side on their defaults); it needs to, to add members.
    let listen_peer = if !bootstrapped_alone || peer_urls_given {
        Some(take(listen_peer, "--listen-peer-urls")?)
    } else {
        None
    };
    let peer_tls_wanted = listen_peer.is_some() && cli.listen_peer_urls.0[0].tls;
    // Every core binds each address with SO_REUSEPORT, which would also let another process
    // share it: claim them all for this process first (waiting a moment for a previous run's
    // sockets that linger after a kill).
    let _claims = claim::claim(&wanted, claim::DEFAULT_CLAIM_WAIT, |waiting| {
        tracing::warn!(
            address = %waiting.address,
            flag = %waiting.what,
            "address in use; waiting up to {:?} for it to be released",
            claim::DEFAULT_CLAIM_WAIT
        );
    })
    .map_err(|error| failed(error.to_string()))?;
    // TLS settings are checked (and files read) before anything is written; only auto-TLS
    // writes, its certificates under the data dir.
    let tls = Tls::from_flags(cli, &data_dir, &listen_native, peer_tls_wanted)?;
    for dir in [&data_dir, &wal_dir] {
        std::fs::create_dir_all(dir).map_err(|error| {
            failed(format!(
                "cannot create data directory {}: {error}",
                dir.display()
            ))
        })?;
    }
    let shutdown = server::install_shutdown_signals()
        .map_err(|error| failed(format!("cannot install signal handlers: {error}")))?;
    let identity = member_identity(cli, &data_dir, tls.peer_dial.as_ref()).map_err(failed)?;
    let mut members = Vec::new();
    for (id, name, urls) in &identity.members {
        urls.first()
            .ok_or_else(|| format!("member {name} has no peer URL"))
            .and_then(|url| parse_url(url).map_err(|e| format!("member {name}: {e}")))
            .and_then(|url| url.socket_address())
            .map_err(failed)?;
        members.push(Member {
            id: *id,
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
            is_learner: identity.learners.contains(id),
        });
    }
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
        pre_vote: cli.pre_vote,
        max_txn_ops: cli.max_txn_ops as usize,
        snapshot_count: cli.snapshot_count,
        snapshot_catchup_entries: cli.snapshot_catchup_entries,
        snapshot_dir: data_dir.join("snap"),
        quota_bytes: match cli.quota_backend_bytes {
            0 => Some(lode::alarm::DEFAULT_QUOTA_BYTES),
            quota if quota < 0 => None,
            quota => Some(quota as u64),
        },
        forward_tls: tls.client_dial.clone(),
        bcrypt_cost: match u32::try_from(cli.bcrypt_cost) {
            Ok(cost @ 4..=31) => cost,
            _ => {
                tracing::warn!(
                    given = cli.bcrypt_cost,
                    default = lode::auth::token::DEFAULT_BCRYPT_COST,
                    "--bcrypt-cost is outside 4..31: the default is used, as etcd does"
                );
                lode::auth::token::DEFAULT_BCRYPT_COST
            }
        },
        auth: std::sync::Arc::new(token_provider(cli).map_err(failed)?),
        role: std::sync::Arc::new(lode::consensus::SharedRole::new(
            identity.learners.contains(&identity.member_id),
        )),
    };
    let secured = |(address, https): (String, bool)| server::Listen {
        tls: if https {
            tls.client_server.clone()
        } else {
            None
        },
        address,
    };
    let listen: Vec<server::Listen> = listen.into_iter().map(secured).collect();
    let listen_metrics: Vec<server::Listen> = listen_metrics.into_iter().map(secured).collect();
    let listen_peer = listen_peer.map(|address| server::Listen {
        address,
        tls: tls.peer_server.clone(),
    });
    let mut limits = Limits::for_max_request_bytes(cli.max_request_bytes as usize);
    limits.watch_progress_interval = cli.watch_progress_notify_interval;
    limits.max_concurrent_streams = cli.max_concurrent_streams;
    limits.keepalive_interval =
        (!cli.grpc_keepalive_interval.is_zero()).then_some(cli.grpc_keepalive_interval);
    limits.keepalive_timeout = cli.grpc_keepalive_timeout;
    let wal_options = WalOptions {
        segment_size: cli.wal_segment_size,
        // An entry holds one request frame (at most --max-request-bytes) and a proposal header.
        max_entry_bytes: cli.max_request_bytes as usize + 4096,
        create_if_missing: true,
        ..WalOptions::default()
    };
    let allowed = lode::cpus::allowed()
        .map_err(|error| failed(format!("reading this process's CPU affinity: {error}")))?;
    // Executor 0 (consensus, the log) goes where the data disk's completions are handled.
    let disk_cpu = lode::cpus::disk_interrupt_cpu(&wal_dir);
    let cores_wanted = cli.cores.map(|cores| cores as usize);
    let placement = match &cli.cpuset {
        Some(CpuChoice::Unpinned) => PoolPlacement::Unbound(cores_wanted.unwrap_or(allowed.len())),
        Some(CpuChoice::Pinned(chosen)) => {
            pinned_placement(chosen, &allowed, cores_wanted, disk_cpu)
                .map_err(|error| usage(format!("--cpuset: {error}")))?
        }
        None => pinned_placement(&allowed, &allowed, cores_wanted, disk_cpu).map_err(usage)?,
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
    if let Some(retention) = &auto_compaction {
        tracing::info!(retention = ?retention, "auto-compaction on");
    }
    let node = NodeConfig {
        consensus: config,
        wal_dir,
        wal_options,
        listen,
        listen_metrics,
        listen_peer,
        peer_dial_tls: tls.peer_dial.clone(),
        limits,
        auto_compaction,
        shutdown,
    };
    tracing::info!(
        name = %cli.name,
        data_dir = %data_dir.display(),
        listen_client_urls = %cli.listen_client_urls,
        advertise_client_urls = %cli.advertise_client_urls,
        cores,
        cpus = %cpus_said,
        "starting a lode member"
    );
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
    match started {
        Ok(handles) => handles
            .join_all()
            .into_iter()
            .map(|joined| joined.map_err(|error| error.to_string()).and_then(|r| r))
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
            .map_err(failed),
        Err(error) => Err(failed(format!("cannot start the executors: {error}"))),
    }
}

/// `--listen-native`: `host:port` (plain), or an `http://` or `https://` URL.
fn parse_native_address(text: &str) -> Result<lode::urls::Url, String> {
    if text.contains("://") {
        return parse_url(text).map_err(|e| format!("--listen-native: {e}"));
    }
    let address = text
        .parse::<std::net::SocketAddr>()
        .map_err(|error| format!("--listen-native {text}: {error}"))?;
    Ok(lode::urls::Url {
        tls: false,
        host: address.ip().to_string(),
        port: address.port(),
    })
}

/// A string setting given empty means the default (none), as in etcd.
fn non_empty(value: &Option<String>) -> Option<String> {
    value.clone().filter(|value| !value.is_empty())
}

/// The TLS this member serves and dials with, built from etcd's flags.
struct Tls {
    /// Served on https client, metrics and native listeners.
    client_server: Option<Arc<lode::tls::ServerTls>>,
    /// Used to reach the leader's https client URL.
    client_dial: Option<Arc<lode::tls::ClientTls>>,
    /// Served on an https peer URL.
    peer_server: Option<Arc<lode::tls::ServerTls>>,
    /// Used to reach members' https peer URLs.
    peer_dial: Option<Arc<lode::tls::ClientTls>>,
}

impl Tls {
    fn from_flags(
        cli: &ServerFlags,
        data_dir: &std::path::Path,
        listen_native: &Option<lode::urls::Url>,
        peer_https: bool,
    ) -> Result<Tls, Failure> {
        use lode::tls::{ClientTls, ServerTls, TlsCommon, TlsSide};
        let common = TlsCommon {
            cipher_suites: lode::tls::parse_cipher_suites(
                cli.cipher_suites.as_deref().unwrap_or_default(),
            ),
            min_version: cli.tls_min_version,
            max_version: cli.tls_max_version,
            self_signed_validity_years: cli.self_signed_cert_validity,
        };
        common.check().map_err(|e| usage(e.to_string()))?;
        let client = TlsSide {
            name: "client",
            cert_file: cli.cert_file.clone(),
            key_file: cli.key_file.clone(),
            client_cert_file: cli.client_cert_file.clone(),
            client_key_file: cli.client_key_file.clone(),
            trusted_ca_file: cli.trusted_ca_file.clone(),
            client_cert_auth: cli.client_cert_auth,
            crl_file: cli.client_crl_file.clone(),
            auto_tls: cli.auto_tls,
            allowed_cn: non_empty(&cli.client_cert_allowed_cn),
            allowed_hostname: non_empty(&cli.client_cert_allowed_hostname),
            verify_client_san: false,
        };
        let peer = TlsSide {
            name: "peer",
            cert_file: cli.peer_cert_file.clone(),
            key_file: cli.peer_key_file.clone(),
            client_cert_file: cli.peer_client_cert_file.clone(),
            client_key_file: cli.peer_client_key_file.clone(),
            trusted_ca_file: cli.peer_trusted_ca_file.clone(),
            client_cert_auth: cli.peer_client_cert_auth,
            crl_file: cli.peer_crl_file.clone(),
            auto_tls: cli.peer_auto_tls,
            allowed_cn: non_empty(&cli.peer_cert_allowed_cn),
            allowed_hostname: non_empty(&cli.peer_cert_allowed_hostname),
            verify_client_san: !cli.experimental_peer_skip_client_san_verification,
        };
        client.check().map_err(|e| usage(e.to_string()))?;
        peer.check().map_err(|e| usage(e.to_string()))?;
        let hosts = |urls: &[lode::urls::Url]| -> Vec<String> {
            let mut hosts: Vec<String> = urls.iter().map(|url| url.host.clone()).collect();
            hosts.sort();
            hosts.dedup();
            hosts
        };
        let mut client_urls: Vec<lode::urls::Url> = cli.listen_client_urls.0.clone();
        client_urls.extend(listen_native.iter().cloned());
        client_urls.extend(cli.listen_metrics_urls.iter().flat_map(|u| u.0.clone()));
        let client_https = client_urls.iter().any(|url| url.tls);
        let validity = common.self_signed_validity_years;
        let client = client
            .with_auto_certificate(data_dir, &hosts(&client_urls), validity)
            .map_err(|e| failed(e.to_string()))?;
        let peer = peer
            .with_auto_certificate(data_dir, &hosts(&cli.listen_peer_urls.0), validity)
            .map_err(|e| failed(e.to_string()))?;
        let client_server = match (client_https, client.is_empty()) {
            (true, true) => {
                return Err(usage(
                    "an https client, metrics or native URL needs --cert-file and --key-file \
                     (or --auto-tls)",
                ))
            }
            (true, false) => Some(
                ServerTls::new(client.clone(), common.clone())
                    .map_err(|e| failed(format!("client TLS: {e}")))?,
            ),
            (false, true) => None,
            (false, false) => {
                tracing::warn!(
                    "the client URLs are http while a certificate is given: it serves nothing \
                     (as etcd, lode serves TLS only on https URLs)"
                );
                None
            }
        };
        let peer_server = match (peer_https, peer.is_empty()) {
            (true, true) => {
                return Err(usage(
                    "an https peer URL needs --peer-cert-file and --peer-key-file (or \
                     --peer-auto-tls)",
                ))
            }
            (true, false) => Some(
                ServerTls::new(peer.clone(), common.clone())
                    .map_err(|e| failed(format!("peer TLS: {e}")))?,
            ),
            (false, _) => None,
        };
        let peer_dial = if peer.is_empty() {
            None
        } else {
            Some(
                ClientTls::new(peer, common.clone())
                    .map_err(|e| failed(format!("peer TLS: {e}")))?,
            )
        };
        // Forwarding to the leader's https client URL needs a CA to verify it by.
        let client_dial = if client.is_empty() {
            None
        } else {
            match ClientTls::new(client, common) {
                Ok(tls) => Some(tls),
                Err(error) => {
                    tracing::warn!(%error, "this member cannot dial https client URLs (forwarding a membership change to the leader will fail)");
                    None
                }
            }
        };
        Ok(Tls {
            client_server,
            client_dial,
            peer_server,
            peer_dial,
        })
    }
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

/// This member's tokens as `--auth-token` and `--auth-token-ttl` say (JWT keys read now, so a
/// missing or unreadable key stops the start with the reason).
fn token_provider(cli: &ServerFlags) -> Result<lode::auth::AuthShared, String> {
    use lode::auth::gate::TokenProvider;
    use lode::auth::token::{JwtTokens, TokenSettings};
    let provider = match &cli.auth_token {
        TokenSettings::Simple => TokenProvider::Simple {
            ttl: Duration::from_secs(match cli.auth_token_ttl {
                0 => 300,
                ttl => ttl,
            }),
        },
        TokenSettings::Jwt {
            public_key,
            private_key,
            method,
            ttl,
        } => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| format!("--auth-token: {}: {e}", path.display()))
            };
            let public = read(public_key)?;
            let private = private_key.as_deref().map(read).transpose()?;
            TokenProvider::Jwt(
                JwtTokens::new(method, &public, private.as_deref(), *ttl)
                    .map_err(|e| format!("--auth-token: {e}"))?,
            )
        }
    };
    Ok(lode::auth::AuthShared::new(provider))
}
