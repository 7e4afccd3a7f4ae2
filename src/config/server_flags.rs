//! The typed flags of the `lode` server: etcd's names and meanings, then lode's own.
//!
//! The parser reads the normalized argument list `config::resolve` makes (from the command
//! line, the `ETCD_*`/`LODE_*` variables or a config file); it never reads the environment
//! itself. Boolean flags take `--flag=true|false` (`--flag` alone is true), as etcd's do.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::KnownFlag;
use crate::urls::{parse_urls, Urls};

/// etcd's default peer URL.
pub const DEFAULT_PEER_URL: &str = crate::membership::DEFAULT_PEER_URL;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompactionMode {
    Periodic,
    Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Logger {
    Zap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Dpanic,
    Panic,
    Fatal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// etcd's zap JSON lines.
    Json,
    /// One human-readable line per event.
    Console,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "lode",
    version,
    args_override_self = true,
    about = "lode: a Raft-replicated key-value store with etcd's data model",
    long_about = "lode: a Raft-replicated key-value store with etcd's data model and API.\n\n\
        lode takes etcd's flags with etcd's meanings (`-flag value`, `--flag=value`), each \
        also settable as an environment variable: ETCD_ or LODE_ followed by the flag in upper \
        case with - as _ (ETCD_INITIAL_CLUSTER_TOKEN). A flag on the command line wins over \
        its variables. --config-file FILE reads etcd's YAML config file instead, and then \
        every other flag and variable is ignored, as etcd does. etcd flags not listed here are \
        accepted where lode does what they ask or they do not apply (said once at start), and \
        refused with the reason otherwise (README: etcd's flags in lode)."
)]
pub struct ServerFlags {
    /// etcd's YAML configuration file; when given, every other flag and variable is ignored.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Data directory (created if missing) [default: <name>.lode].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A dedicated directory for the log (Raft's write-ahead log) [default: <data-dir>/wal].
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated http://host:port): etcd's gRPC
    /// API, its JSON gateway and HTTP endpoints, and lode's native protocol, on each.
    #[arg(long, default_value = "http://localhost:2379", value_parser = parse_urls)]
    pub listen_client_urls: Urls,
    /// URLs to listen on for the other members (comma-separated http://host:port).
    #[arg(long, default_value = DEFAULT_PEER_URL, value_parser = parse_urls)]
    pub listen_peer_urls: Urls,
    /// Extra URLs serving only /metrics, /health, /livez and /readyz (plain HTTP), as etcd's
    /// metrics listener does (Kubernetes probes etcd there).
    #[arg(long, value_parser = parse_urls)]
    pub listen_metrics_urls: Option<Urls>,
    /// This member's peer URLs as the initial cluster knows them (comma-separated
    /// http://host:port); with --initial-cluster-token they determine the member ID, as in etcd.
    #[arg(long, default_value = DEFAULT_PEER_URL, value_parser = parse_urls)]
    pub initial_advertise_peer_urls: Urls,
    /// The initial cluster: name=peer-url pairs, comma-separated [default:
    /// <name>=<initial-advertise-peer-urls>]. Read only when the data dir is created.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Token that makes member and cluster IDs unique to one cluster (etcd's default).
    #[arg(long, default_value = crate::membership::DEFAULT_CLUSTER_TOKEN)]
    pub initial_cluster_token: String,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, value_enum, default_value_t = ClusterState::New)]
    pub initial_cluster_state: ClusterState,
    /// Client URLs this member advertises to clients (comma-separated http://host:port).
    #[arg(long, default_value = "http://localhost:2379", value_parser = parse_urls)]
    pub advertise_client_urls: Urls,
    /// Largest request accepted, in bytes (etcd's default: 1.5 MiB).
    #[arg(long, default_value_t = 1_572_864,
          value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub max_request_bytes: u64,
    /// Most operations (compares, or ops in a branch) in one txn.
    #[arg(long, default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_txn_ops: u64,
    /// Time between Raft heartbeats, in milliseconds.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub heartbeat_interval: u64,
    /// Time without a leader before an election, in milliseconds (at least 2 heartbeats).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(2..=50_000))]
    pub election_timeout: u64,
    /// Pre-vote: a member that was cut off asks whether it could win before it disrupts the
    /// cluster with an election.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub pre_vote: bool,
    /// How often idle watchers that asked for progress notifications get one (Go duration
    /// notation, at least 100ms; etcd 3.5 spells it with `experimental-`).
    #[arg(long, default_value = "10m", alias = "experimental-watch-progress-notify-interval",
          value_parser = watch_progress_interval)]
    pub watch_progress_notify_interval: Duration,
    /// bcrypt's cost for users' passwords (4 to 31; another value is warned about and the
    /// default used, as etcd does).
    #[arg(long, default_value_t = 10)]
    pub bcrypt_cost: i64,
    /// How tokens are issued: `simple` (etcd's default: opaque, every member learns them from
    /// the log) or `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|ES256|...,ttl=5m`
    /// (signed; a member given only the public key verifies but does not issue).
    #[arg(long, default_value = "simple", value_parser = crate::auth::token::parse_token_settings)]
    pub auth_token: crate::auth::token::TokenSettings,
    /// Seconds a simple token stays valid after its last use (0: etcd's default, 300).
    #[arg(long, default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Streams one gRPC (HTTP/2) connection may have open at once.
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// How often the server pings a gRPC connection that has been quiet (Go duration; 0
    /// never), to find clients that went away without closing.
    #[arg(long, default_value = "2h", value_parser = crate::duration::parse_duration)]
    pub grpc_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed (Go duration).
    #[arg(long, default_value = "20s", value_parser = crate::duration::parse_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// Applied entries between snapshots; the log before a snapshot (less the catch-up entries)
    /// is then removed. 0 disables snapshots.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag (etcd 3.5 spells it
    /// with `experimental-`).
    #[arg(
        long,
        default_value_t = 5_000,
        alias = "experimental-snapshot-catchup-entries"
    )]
    pub snapshot_catchup_entries: u64,
    /// Space quota: writes that add data are refused and the NOSPACE alarm is raised when the
    /// keyspace's counted size (every version held: key, value and 64 bytes) would exceed it;
    /// the alarm clears itself once compaction brings the size under 90% of it. 0: 2 GiB
    /// (etcd's default); negative: no quota.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Auto-compaction: `periodic` keeps the history of the last --auto-compaction-retention
    /// (a duration), `revision` keeps the last that many revisions.
    #[arg(long, value_enum, default_value_t = CompactionMode::Periodic)]
    pub auto_compaction_mode: CompactionMode,
    /// What auto-compaction keeps: for `periodic` a duration (30m, 1h30m) or a number of hours,
    /// for `revision` a number of revisions; 0 turns auto-compaction off.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// The logger: etcd's `zap` (structured lines).
    #[arg(long, value_enum, default_value_t = Logger::Zap)]
    pub logger: Logger,
    /// Lowest level logged.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Where logs go, comma-separated: `default` (stderr), `stderr`, `stdout`, or file paths
    /// (appended to).
    #[arg(long, default_value = "default")]
    pub log_outputs: String,
    /// `json` (etcd's zap lines, which etcd's log pipelines parse) or `console` (one line of
    /// text per event).
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Certificate (PEM) served on the https client URLs, https metrics URLs and an https
    /// --listen-native; re-read when the file changes.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Key (PEM) of --cert-file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Certificate this member presents when it dials a client URL itself (forwarding to the
    /// leader) [default: --cert-file].
    #[arg(long)]
    pub client_cert_file: Option<PathBuf>,
    /// Key of --client-cert-file.
    #[arg(long)]
    pub client_key_file: Option<PathBuf>,
    /// Require client certificates signed by --trusted-ca-file on the https client URLs.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub client_cert_auth: bool,
    /// Certificate revocation list (PEM) for client certificates.
    #[arg(long)]
    pub client_crl_file: Option<PathBuf>,
    /// Client certificates must be valid for this host name.
    #[arg(long)]
    pub client_cert_allowed_hostname: Option<String>,
    /// Client certificates must have this subject CN (`allowed-cn` of etcd's
    /// client-transport-security block, which has no flag in etcd).
    #[arg(long)]
    pub client_cert_allowed_cn: Option<String>,
    /// CA (PEM) that signs client certificates; given, client certificates are required.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Serve the https client URLs with a self-signed certificate made under
    /// <data-dir>/fixtures/client when no --cert-file is given.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub auto_tls: bool,
    /// Certificate (PEM) of the https peer URLs, also presented when dialling members.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Key (PEM) of --peer-cert-file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// Certificate presented when dialling members [default: --peer-cert-file].
    #[arg(long)]
    pub peer_client_cert_file: Option<PathBuf>,
    /// Key of --peer-client-cert-file.
    #[arg(long)]
    pub peer_client_key_file: Option<PathBuf>,
    /// Require member certificates signed by --peer-trusted-ca-file on the peer URLs.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,
    /// CA (PEM) that signs the members' certificates.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Peer TLS with a self-signed certificate made under <data-dir>/fixtures/peer when no
    /// --peer-cert-file is given (members' certificates are then not verified).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub peer_auto_tls: bool,
    /// Certificate revocation list (PEM) for members' certificates.
    #[arg(long)]
    pub peer_crl_file: Option<PathBuf>,
    /// Members' certificates must have this subject CN.
    #[arg(long)]
    pub peer_cert_allowed_cn: Option<String>,
    /// Members' certificates must be valid for this host name.
    #[arg(long)]
    pub peer_cert_allowed_hostname: Option<String>,
    /// Accept members' certificates whatever address they connect from (by default a
    /// certificate with IP or DNS names must name the address the member connects from).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub experimental_peer_skip_client_san_verification: bool,
    /// Years a self-signed (auto-tls) certificate is valid.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub self_signed_cert_validity: u32,
    /// TLS 1.2 cipher suites allowed, Go's names, comma-separated [default: rustls's].
    #[arg(long)]
    pub cipher_suites: Option<String>,
    /// Lowest TLS version served: TLS1.2 or TLS1.3.
    #[arg(long, value_parser = tls_version)]
    pub tls_min_version: Option<crate::tls::TlsVersion>,
    /// Highest TLS version served: TLS1.2 or TLS1.3 [default: TLS1.3].
    #[arg(long, value_parser = tls_version)]
    pub tls_max_version: Option<crate::tls::TlsVersion>,
    /// lode: an extra address serving only lode's native protocol (host:port). The client
    /// URLs serve it too, so it is needed only to keep native clients on a port of their own.
    #[arg(long)]
    pub listen_native: Option<String>,
    /// lode: executors (one per core, pinned), each owning a shard of the keyspace and
    /// accepting clients [default: every core this process may run on].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub cores: Option<u64>,
    /// lode: CPUs the executors are pinned to, one each in ascending order: a list such as
    /// 0-3,6, or `unpinned` to leave them to the kernel (for machines running more lodes than
    /// CPUs) [default: the CPUs this process may run on, so `taskset -c` places lode].
    #[arg(long, value_parser = crate::cpus::parse)]
    pub cpuset: Option<crate::cpus::CpuChoice>,
    /// lode: microseconds an idle core spins before it sleeps. Spinning makes a message from
    /// another core cost ~13 us instead of ~60 us (`lode-bench mesh` on a 2-core VM) but burns
    /// the time it spins: worth it on dedicated cores, not where other processes share them
    /// (see tuning/README.md).
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub idle_spin_us: u64,
    /// lode: size of new log segment files, in bytes.
    #[arg(long, default_value_t = crate::wal::DEFAULT_SEGMENT_SIZE)]
    pub wal_segment_size: u64,
}

/// `--tls-min-version`/`--tls-max-version`.
fn tls_version(text: &str) -> Result<crate::tls::TlsVersion, String> {
    crate::tls::parse_tls_version(text)?.ok_or_else(|| "give TLS1.2 or TLS1.3".to_string())
}

/// `--watch-progress-notify-interval`: a duration of at least 100 ms, as etcd requires.
fn watch_progress_interval(text: &str) -> Result<Duration, String> {
    let interval = crate::duration::parse_duration(text)?;
    if interval < Duration::from_millis(100) {
        return Err(format!("{text} is below the minimum of 100ms"));
    }
    Ok(interval)
}

/// Every flag name (and alias) the parser knows, for `config::resolve`.
pub fn known_flags() -> Vec<KnownFlag> {
    let command = ServerFlags::command();
    let mut known = vec![
        KnownFlag {
            name: "help".into(),
            boolean: true,
        },
        KnownFlag {
            name: "version".into(),
            boolean: true,
        },
    ];
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // lode's booleans, as etcd's, take a value only after `=`.
        let boolean = arg.is_require_equals_set();
        let aliases = arg.get_all_aliases().unwrap_or_default();
        for name in std::iter::once(long).chain(aliases) {
            if !known.iter().any(|k| k.name == name) {
                known.push(KnownFlag {
                    name: name.to_string(),
                    boolean,
                });
            }
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::etcd_flags::{Treatment, ETCD_FLAGS};

    #[test]
    fn every_etcd_flag_marked_served_is_a_flag_of_the_parser_and_no_other_is() {
        let known = known_flags();
        for flag in ETCD_FLAGS {
            let parsed = known.iter().find(|k| k.name == flag.name);
            match flag.treatment {
                Treatment::Serves => {
                    let parsed = parsed.unwrap_or_else(|| panic!("--{} not parsed", flag.name));
                    assert_eq!(parsed.boolean, flag.boolean, "--{}", flag.name);
                }
                _ => assert!(parsed.is_none(), "--{} is parsed but not marked", flag.name),
            }
        }
    }

    #[test]
    fn the_normalized_arguments_parse() {
        let flags = ServerFlags::try_parse_from([
            "lode",
            "--pre-vote=false",
            "--experimental-watch-progress-notify-interval=5s",
            "--watch-progress-notify-interval=7s",
            "--log-level=debug",
        ])
        .expect("parsed");
        assert!(!flags.pre_vote);
        assert_eq!(flags.watch_progress_notify_interval, Duration::from_secs(7));
        assert_eq!(flags.log_level, LogLevel::Debug);
        // Every TLS flag, as a user spells it, reaches its field.
        let flags = ServerFlags::try_parse_from([
            "lode",
            "--cert-file=s.crt",
            "--key-file=s.key",
            "--client-cert-auth",
            "--trusted-ca-file=ca.crt",
            "--client-crl-file=c.crl",
            "--auto-tls=false",
            "--peer-cert-file=p.crt",
            "--peer-key-file=p.key",
            "--peer-client-cert-auth=true",
            "--peer-trusted-ca-file=ca.crt",
            "--peer-cert-allowed-cn=member",
            "--peer-auto-tls",
            "--experimental-peer-skip-client-san-verification",
            "--self-signed-cert-validity=3",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "--tls-min-version=TLS1.2",
            "--tls-max-version=TLS1.3",
        ])
        .expect("parsed");
        assert!(flags.client_cert_auth && flags.peer_client_cert_auth && flags.peer_auto_tls);
        assert!(!flags.auto_tls && flags.experimental_peer_skip_client_san_verification);
        assert_eq!(flags.peer_cert_allowed_cn.as_deref(), Some("member"));
        assert_eq!(flags.self_signed_cert_validity, 3);
        assert_eq!(
            crate::tls::parse_cipher_suites(flags.cipher_suites.as_deref().unwrap_or_default())
                .len(),
            2
        );
        assert_eq!(flags.tls_min_version, Some(crate::tls::TlsVersion::Tls12));
        assert_eq!(flags.tls_max_version, Some(crate::tls::TlsVersion::Tls13));
        assert!(ServerFlags::try_parse_from(["lode", "--tls-min-version=TLS1.0"]).is_err());
        let known = known_flags();
        assert!(known.iter().any(|k| k.name == "pre-vote" && k.boolean));
        assert!(known.iter().any(|k| k.name == "name" && !k.boolean));
    }
}
