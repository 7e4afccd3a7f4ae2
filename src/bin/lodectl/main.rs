//! lodectl: lode's command-line client, shaped like etcdctl (commands, flags and output
//! formats), speaking lode's native protocol. `lodectl log inspect` works offline on a data dir.
//!
//! This file holds the command line (clap's definitions) and the dispatch; each group of
//! commands has a module of its own, and what they share is in `common`.

mod action;
mod auth;
mod check;
mod common;
mod endpoint;
mod kv;
mod lease;
mod lock;
mod log;
mod maintenance;
mod member;
mod mirror;
mod snapshot;
mod top;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use lode::api::native::Request;
use lode::ctl::flags;

use action::Action;
use auth::{AuthCommand, RoleCommand, UserCommand};
use check::CheckCommand;
use common::{fail, Dialer, DIALER, DIAL_TIMEOUT};
use endpoint::EndpointCommand;
use lease::LeaseCommand;
use log::LogCommand;
use maintenance::AlarmCommand;
use member::{member_id_arg, ClusterPrinter, MemberCommand};
use snapshot::SnapshotCommand;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Simple,
    Json,
    Table,
    Fields,
    /// etcdctl's protobuf output: refused (lodectl has no protobuf encoder for its answers).
    Protobuf,
}

/// etcdctl's boolean flags: `--flag`, `--flag=true` or `--flag=false` (Go's spellings).
fn go_bool(text: &str) -> Result<bool, String> {
    flags::parse_go_bool(text).map_err(|e| e.to_string())
}

fn go_duration(text: &str) -> Result<Duration, String> {
    flags::parse_go_duration(text).map_err(|e| e.to_string())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    flags::parse_positive_duration(text).map_err(|e| e.to_string())
}

fn command_timeout(text: &str) -> Result<Duration, String> {
    flags::parse_command_timeout(text).map_err(|e| e.to_string())
}

#[derive(Parser)]
#[command(
    name = "lodectl",
    version,
    about = "lode's command-line client (etcdctl's commands and flags)"
)]
struct Cli {
    /// Server addresses, comma separated: host:port, or a client URL (http:// or https://, as
    /// lode's --listen-client-urls and etcdctl take them); the first that answers is used.
    /// LODECTL_ENDPOINTS, when set, is read before ETCDCTL_ENDPOINTS.
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// How long a command may take before it fails with etcdctl's "context deadline exceeded"
    /// (not `snapshot save`, which streams as long as it takes): a Go duration (5s, 1m) or a
    /// number of seconds.
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = command_timeout)]
    command_timeout: Duration,
    /// How long connecting to an endpoint may take (a Go duration).
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    dial_timeout: Duration,
    /// Accepted for etcdctl's sake (gRPC keepalive; lode's native connections need none).
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", default_value = "2s", value_parser = go_duration)]
    keepalive_time: Duration,
    /// Accepted for etcdctl's sake (gRPC keepalive; lode's native connections need none).
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", default_value = "6s", value_parser = go_duration)]
    keepalive_timeout: Duration,
    /// Output format: simple, json, table or fields (protobuf is refused).
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        value_enum,
        default_value = "simple"
    )]
    write_out: Format,
    /// Print keys and values hex-encoded (`\x66\x6f\x6f`), as etcdctl's --hex.
    #[arg(long, global = true, env = "ETCDCTL_HEX", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    hex: bool,
    /// Print the settings in effect on standard error (as etcdctl's --debug does).
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    debug: bool,
    /// Dial endpoints given without a scheme in the clear (`false`: over TLS).
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    insecure_transport: bool,
    /// Accepted for etcdctl's sake (DNS discovery is refused anyway).
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    insecure_discovery: bool,
    /// Do not verify the server's certificate (TLS).
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    insecure_skip_tls_verify: bool,
    /// CA bundle (PEM) the server's certificate is verified by [default: the system's].
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    cacert: Option<String>,
    /// Client certificate (PEM) presented to the server.
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    cert: Option<String>,
    /// Key (PEM) of --cert.
    #[arg(long = "key", id = "tls_key", global = true, env = "ETCDCTL_KEY")]
    tls_key: Option<String>,
    /// user[:password]: refused (lode has no authentication yet).
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    user: Option<String>,
    /// Password: refused (lode has no authentication yet).
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    password: Option<String>,
    /// DNS SRV discovery domain: refused (lodectl does not look endpoints up in DNS).
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    discovery_srv: Option<String>,
    /// Accepted for etcdctl's sake (used only with --discovery-srv).
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    discovery_srv_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    fn security(&self) -> flags::Security {
        flags::Security {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.tls_key.clone(),
            insecure_transport: self.insecure_transport,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            user: self.user.clone(),
            password: self.password.clone(),
            discovery_srv: self.discovery_srv.clone(),
        }
    }

    /// The settings in effect as etcdctl's --debug prints them: `ETCDCTL_<FLAG>=<value>`.
    fn debug_lines(&self) -> String {
        let optional = |value: &Option<String>| value.clone().unwrap_or_default();
        let format = format!("{:?}", self.write_out).to_ascii_lowercase();
        [
            ("CACERT", optional(&self.cacert)),
            ("CERT", optional(&self.cert)),
            (
                "COMMAND_TIMEOUT",
                flags::go_duration_string(self.command_timeout),
            ),
            ("DEBUG", self.debug.to_string()),
            ("DIAL_TIMEOUT", flags::go_duration_string(self.dial_timeout)),
            ("DISCOVERY_SRV", optional(&self.discovery_srv)),
            ("DISCOVERY_SRV_NAME", optional(&self.discovery_srv_name)),
            ("ENDPOINTS", format!("[{}]", self.endpoints.join(","))),
            ("HEX", self.hex.to_string()),
            ("INSECURE_DISCOVERY", self.insecure_discovery.to_string()),
            (
                "INSECURE_SKIP_TLS_VERIFY",
                self.insecure_skip_tls_verify.to_string(),
            ),
            ("INSECURE_TRANSPORT", self.insecure_transport.to_string()),
            (
                "KEEPALIVE_TIME",
                flags::go_duration_string(self.keepalive_time),
            ),
            (
                "KEEPALIVE_TIMEOUT",
                flags::go_duration_string(self.keepalive_timeout),
            ),
            ("KEY", optional(&self.tls_key)),
            ("PASSWORD", optional(&self.password)),
            ("USER", optional(&self.user)),
            ("WRITE_OUT", format),
        ]
        .iter()
        .map(|(name, value)| format!("ETCDCTL_{name}={value}\n"))
        .collect()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Puts the given key into the store.
    Put {
        /// The key.
        key: String,
        /// The value (omit with --ignore-value).
        value: Option<String>,
        /// Lease ID (in hexadecimal) to attach the key to.
        #[arg(long, default_value = "0")]
        lease: String,
        /// Return the previous key-value pair.
        #[arg(long)]
        prev_kv: bool,
        /// Keep the current value.
        #[arg(long)]
        ignore_value: bool,
        /// Keep the current lease.
        #[arg(long)]
        ignore_lease: bool,
    },
    /// Gets the key or a range of keys.
    Get {
        /// The key.
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Get keys with matching prefix.
        #[arg(long)]
        prefix: bool,
        /// Get keys that are greater than or equal to the given key.
        #[arg(long)]
        from_key: bool,
        /// Maximum number of results.
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Revision to read at (0: latest).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Get only the keys.
        #[arg(long)]
        keys_only: bool,
        /// Get only the count.
        #[arg(long)]
        count_only: bool,
        /// Sort target: CREATE, KEY, MODIFY, VALUE, or VERSION.
        #[arg(long)]
        sort_by: Option<String>,
        /// Order of results: ASCEND or DESCEND.
        #[arg(long)]
        order: Option<String>,
        /// Linearizable (l) or serializable (s).
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Print only values.
        #[arg(long)]
        print_value_only: bool,
        /// Only keys last modified at or after this revision (etcd's RangeRequest filter).
        #[arg(long, alias = "min-mod-rev", default_value_t = 0)]
        min_mod_revision: i64,
        /// Only keys last modified at or before this revision.
        #[arg(long, alias = "max-mod-rev", default_value_t = 0)]
        max_mod_revision: i64,
        /// Only keys created at or after this revision.
        #[arg(long, alias = "min-create-rev", default_value_t = 0)]
        min_create_revision: i64,
        /// Only keys created at or before this revision.
        #[arg(long, alias = "max-create-rev", default_value_t = 0)]
        max_create_revision: i64,
    },
    /// Removes the key or a range of keys.
    Del {
        /// The key.
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Delete keys with matching prefix.
        #[arg(long)]
        prefix: bool,
        /// Delete keys that are greater than or equal to the given key.
        #[arg(long)]
        from_key: bool,
        /// Return the deleted key-value pairs.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Runs a transaction read from standard input in etcdctl's syntax: compares, a blank
    /// line, success requests, a blank line, failure requests.
    Txn {
        /// Print prompts for each section.
        #[arg(short, long)]
        interactive: bool,
    },
    /// Compacts the history up to a revision.
    Compaction {
        /// The revision.
        revision: i64,
        /// Wait until the compaction is physically done.
        #[arg(long)]
        physical: bool,
    },
    /// Snapshot commands.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Watches a key or range and prints its events as they happen (until interrupted); with
    /// `-- CMD [ARGS...]` runs CMD after each event with ETCD_WATCH_REVISION, ETCD_WATCH_KEY,
    /// ETCD_WATCH_EVENT_TYPE and ETCD_WATCH_VALUE set (as etcdctl, values Go-quoted). The key
    /// (and range end) may come from ETCDCTL_WATCH_KEY (and ETCDCTL_WATCH_RANGE_END) instead.
    Watch {
        /// The key (or the start of the range).
        key: Option<String>,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Watch every key with the key as prefix.
        #[arg(long)]
        prefix: bool,
        /// Revision to start watching from (0: the next one).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Print each event's previous pair too.
        #[arg(long)]
        prev_kv: bool,
        /// Ask for progress notifications while idle.
        #[arg(long)]
        progress_notify: bool,
        /// The command to run for every event (after `--`), with its arguments.
        #[arg(last = true)]
        exec: Vec<String>,
    },
    /// Acquires a named lock (as etcdctl's `lock`): runs a command while holding it, with
    /// ETCD_LOCK_KEY and ETCD_LOCK_REV set, or prints the lock's key and holds it until
    /// interrupted.
    Lock {
        /// The lock.
        name: String,
        /// The command to run while holding the lock, with its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        /// TTL of the lock's lease in seconds: how long a holder that stops answering (or
        /// is cut off) keeps the lock.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
    },
    /// Observes and takes part in a leader election (as etcdctl's `elect`): campaigns with
    /// the proposal and holds leadership until interrupted, or with -l prints every leader.
    Elect {
        /// The election.
        name: String,
        /// The value to lead with.
        proposal: Option<String>,
        /// Observe only.
        #[arg(short = 'l', long)]
        listen: bool,
    },
    /// Lease commands.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// Endpoint commands.
    Endpoint {
        /// Use every member's client URLs (from the member list of the first endpoint that
        /// answers) instead of --endpoints.
        #[arg(long, global = true)]
        cluster: bool,
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// etcdctl's defrag: lode never needs defragmenting (it keeps the keyspace in memory, so
    /// freed versions are freed memory); says so for each endpoint that answers.
    Defrag {
        /// Every member's client URLs instead of --endpoints.
        #[arg(long)]
        cluster: bool,
    },
    /// Prints etcdctl's version lines (the etcd API lode speaks) and lodectl's version.
    Version,
    /// Checks properties of the cluster.
    Check {
        #[command(subcommand)]
        command: CheckCommand,
    },
    /// Mirrors the keys under a prefix to a destination cluster (etcdctl's make-mirror):
    /// copies them at one revision, then applies every later change until interrupted,
    /// printing the number of keys synced every 30 seconds.
    MakeMirror {
        /// The destination endpoint (host:port or a client URL).
        destination: Option<String>,
        /// Key prefix to mirror (every key when empty).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Prefix to mirror to in the destination (default: the same prefix).
        #[arg(long)]
        dest_prefix: Option<String>,
        /// Mirror to the root of the destination (the prefix removed).
        #[arg(long)]
        no_dest_prefix: bool,
        /// Destination TLS CA bundle.
        #[arg(long)]
        dest_cacert: Option<String>,
        /// Destination TLS certificate.
        #[arg(long)]
        dest_cert: Option<String>,
        /// Destination TLS key.
        #[arg(long)]
        dest_key: Option<String>,
        /// Dial a destination given without a scheme in the clear (`false`: over TLS).
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        dest_insecure_transport: bool,
        /// Destination user: refused (lode has no authentication yet).
        #[arg(long)]
        dest_user: Option<String>,
        /// Destination password: refused.
        #[arg(long)]
        dest_password: Option<String>,
    },
    /// Where the endpoint's commits spend their time: p50/p99 of each stage (proposal
    /// queueing, log syncs, replication round trip per follower, commit to apply, apply to
    /// response) since it started.
    Perf {
        /// The leader-latency view, live: each stage's p50/p99/p99.9 over the last second and
        /// each follower's lag, redrawn every second until interrupted (the dashboard's feed).
        #[arg(long)]
        watch: bool,
    },
    /// Membership commands.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Transfers leadership to another voting member (asked of the leader among the
    /// endpoints).
    MoveLeader {
        /// The member ID (hexadecimal) to lead.
        transferee: String,
    },
    /// Alarm commands.
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
    /// User commands (etcdctl's `user`).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Role commands (etcdctl's `role`).
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Authentication: enable, disable, status (etcdctl's `auth`).
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Work with a log directory offline (lode must not be running on it).
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

/// What a command that talks to the server asks, and how its answer is printed; each group's
/// module builds its own.
fn build(command: Command) -> Result<Action, String> {
    Ok(match command {
        command @ (Command::Put { .. }
        | Command::Get { .. }
        | Command::Del { .. }
        | Command::Txn { .. }
        | Command::Compaction { .. }) => kv::build(command)?,
        Command::Lease { command } => lease::build(command)?,
        Command::User { command } => auth::build_user(command)?,
        Command::Role { command } => auth::build_role(command)?,
        Command::Auth { command } => auth::build_auth(command),
        Command::Endpoint {
            cluster,
            command: EndpointCommand::Status,
        } => Action::EndpointStatus { cluster },
        Command::Endpoint {
            cluster,
            command: EndpointCommand::Hashkv { rev },
        } => Action::HashKv {
            revision: rev,
            cluster,
        },
        Command::Endpoint {
            cluster,
            command: EndpointCommand::Health,
        } => Action::Health { cluster },
        Command::Defrag { cluster } => Action::Defrag { cluster },
        Command::Perf { watch } => Action::Perf { watch },
        Command::Member { command } => member::build(command)?,
        Command::MoveLeader { transferee } => {
            let target = member_id_arg(&transferee)?;
            Action::Cluster {
                request: Request::MoveLeader(target),
                printer: ClusterPrinter::MovedTo(target),
                to_leader: true,
            }
        }
        Command::Snapshot {
            command: SnapshotCommand::Save { file },
        } => Action::SnapshotSave(file),
        Command::Alarm {
            command: AlarmCommand::List,
        } => Action::AlarmList,
        Command::Alarm {
            command: AlarmCommand::Disarm,
        } => Action::AlarmDisarm,
        Command::Log { .. }
        | Command::Version
        | Command::Check { .. }
        | Command::MakeMirror { .. }
        | Command::Lock { .. }
        | Command::Elect { .. }
        | Command::Watch { .. }
        | Command::Snapshot {
            command: SnapshotCommand::Restore { .. } | SnapshotCommand::Status { .. },
        } => unreachable!("handled before connecting"),
    })
}

/// The command line, with LODECTL_ENDPOINTS (when set) read for --endpoints before
/// ETCDCTL_ENDPOINTS; every other global flag has its ETCDCTL_ variable.
fn parse_cli() -> Cli {
    let mut command = Cli::command();
    if std::env::var_os("LODECTL_ENDPOINTS").is_some() {
        command = command.mut_arg("endpoints", |arg| arg.env("LODECTL_ENDPOINTS"));
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

fn main() -> ExitCode {
    if let Err(error) = flags::check_api_version(std::env::var("ETCDCTL_API").ok().as_deref()) {
        return fail(&error.to_string());
    }
    let cli = parse_cli();
    if let Err(error) = cli.security().check("") {
        return fail(&error.to_string());
    }
    let _ = DIALER.set(Dialer::new(cli.security()));
    if cli.write_out == Format::Protobuf {
        return fail(
            "protobuf not supported as output format by lodectl (simple, json, table, fields)",
        );
    }
    if cli.debug {
        eprint!("{}", cli.debug_lines());
    }
    let _ = DIAL_TIMEOUT.set(cli.dial_timeout);
    // The commands that do not send one request: offline, or running until interrupted.
    match &cli.command {
        Command::Version => {
            println!("etcdctl version: 3.5.0");
            println!("API version: 3.5");
            println!("lodectl version: {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Log { .. } => return log::inspect(&cli),
        Command::Snapshot {
            command: SnapshotCommand::Status { .. },
        } => return snapshot::status(&cli),
        Command::Snapshot {
            command: SnapshotCommand::Restore { .. },
        } => return snapshot::restore(&cli),
        Command::Watch { .. } => return watch::run(&cli),
        Command::Check { .. } => return check::run(&cli),
        Command::MakeMirror { .. } => return mirror::run(&cli),
        Command::Lock { .. } => return lock::run_lock(&cli),
        Command::Elect { .. } => return lock::run_elect(&cli),
        Command::Lease {
            command: LeaseCommand::KeepAlive { .. },
        } => return lease::run_keep_alive(&cli),
        _ => {}
    }
    let format = cli.write_out;
    let hex = cli.hex;
    let endpoints = cli.endpoints.clone();
    let command_timeout = cli.command_timeout;
    let action = match build(cli.command) {
        Ok(action) => action,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::from(1);
        }
    };
    action::run(action, format, hex, endpoints, command_timeout)
}
