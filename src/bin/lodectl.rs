//! lodectl: lode's command-line client, shaped like etcdctl (commands, flags and output
//! formats), speaking lode's native protocol. `lodectl log inspect` works offline on a data dir.

use std::cell::Cell;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use glommio::Placement;
use lode::alarm::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType};
use lode::api::native::{
    CoordinationRequest, CoordinationResponse, LeaseAnswer, LeaseQuery, MemberRequest, Request,
    Response, StatusResponse,
};
use lode::client::Client;
use lode::ctl::{flags, output, perf, requests, txn_syntax};
use lode::lease::{LeaseOutcome, LeaseRequest};
use lode::mvcc::request::{CompactionRequest, LeaseResponse, WriteRequest, WriteResponse};

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
    Perf,
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

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Stores a fresh snapshot of the whole keyspace from the server in FILE.
    Save {
        /// Where to store it.
        file: PathBuf,
    },
    /// Makes a new data dir from a snapshot (offline): the keyspace from FILE, the membership
    /// of a new cluster from the flags, which mean what lode's bootstrap flags mean.
    Restore {
        /// The snapshot (from `lodectl snapshot save` or `etcdctl snapshot save`).
        file: PathBuf,
        /// The data dir to create [default: <name>.lode].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The restored member's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new cluster: name=peer-url pairs [default: <name>=<initial-advertise-peer-urls>].
        #[arg(long)]
        initial_cluster: Option<String>,
        /// The new cluster's token.
        #[arg(long, default_value = lode::membership::DEFAULT_CLUSTER_TOKEN)]
        initial_cluster_token: String,
        /// The restored member's peer URLs.
        #[arg(long, default_value = lode::membership::DEFAULT_PEER_URL)]
        initial_advertise_peer_urls: String,
        /// Restore even if the SHA-256 at the end of a download does not match (every block's
        /// checksum is still checked).
        #[arg(long)]
        skip_hash_check: bool,
    },
    /// Checks a snapshot file (offline) and prints its hash, revision, keys and size.
    Status {
        /// The snapshot (from `lodectl snapshot save` or `etcdctl snapshot save`).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Adds a member (it is then started with --initial-cluster-state existing).
    Add {
        /// The new member's name (for the settings printed).
        name: String,
        /// Its peer URLs, comma separated.
        #[arg(long)]
        peer_urls: String,
        /// Add it as a learner (replicated to, not voting).
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member.
    Remove {
        /// Its ID (hexadecimal).
        id: String,
    },
    /// Changes a member's peer URLs.
    Update {
        /// Its ID (hexadecimal).
        id: String,
        /// Its new peer URLs, comma separated.
        #[arg(long)]
        peer_urls: String,
    },
    /// Lists the members.
    List {
        /// Confirm with the leader first (etcd's --consistency=l).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Promotes a learner that has caught up to a voting member.
    Promote {
        /// Its ID (hexadecimal).
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user: NAME or NAME:PASSWORD (the password is read from standard input when not
    /// given).
    Add {
        #[arg(value_name = "USER")]
        name: String,
        /// A user without a password (it authenticates by its TLS certificate's CN).
        #[arg(long)]
        no_password: bool,
        /// The password, instead of NAME:PASSWORD or standard input.
        #[arg(long)]
        new_user_password: Option<String>,
        /// Read the password as a line of standard input without prompting.
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Shows a user's roles.
    Get {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Lists the users.
    List,
    /// Deletes a user.
    Delete {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Changes a user's password (read from standard input).
    Passwd {
        #[arg(value_name = "USER")]
        name: String,
        /// Read the password as a line of standard input without prompting.
        #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        interactive: bool,
    },
    /// Grants a role to a user.
    GrantRole {
        #[arg(value_name = "USER")]
        name: String,
        role: String,
    },
    /// Revokes a role from a user.
    RevokeRole {
        #[arg(value_name = "USER")]
        name: String,
        role: String,
    },
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Adds a role.
    Add { role: String },
    /// Shows a role's permissions.
    Get { role: String },
    /// Lists the roles.
    List,
    /// Deletes a role.
    Delete { role: String },
    /// Grants a permission (read, write or readwrite) on a key or range to a role.
    GrantPermission {
        role: String,
        perm_type: String,
        key: String,
        range_end: Option<String>,
        /// The permission covers every key with this prefix.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        /// The permission covers every key from this one on.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
    /// Revokes a permission from a role.
    RevokePermission {
        role: String,
        key: String,
        range_end: Option<String>,
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        prefix: bool,
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
        from_key: bool,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Turns authentication on.
    Enable,
    /// Turns authentication off.
    Disable,
    /// Whether authentication is on, and the auth revision.
    Status,
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Lists the active alarms.
    List,
    /// Clears every active alarm.
    Disarm,
}

#[derive(Subcommand)]
enum LeaseCommand {
    /// Creates a lease with a TTL in seconds.
    Grant {
        /// TTL in seconds.
        ttl: String,
    },
    /// Revokes a lease and deletes its keys.
    Revoke {
        /// The lease ID (hexadecimal).
        id: String,
    },
    /// Shows a lease's TTL and remaining time.
    Timetolive {
        /// The lease ID (hexadecimal).
        id: String,
        /// Also list the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
    /// Lists every lease.
    List,
    /// Keeps a lease alive until interrupted (or once).
    KeepAlive {
        /// The lease ID (hexadecimal).
        id: String,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// etcdctl's check perf: 60 seconds of rate-limited puts under the prefix from many
    /// clients, then PASS or FAIL on throughput, slowest request and standard deviation; the
    /// keys are deleted after.
    Perf {
        /// Workload: s (150 writes/s, 50 clients), m (1,000/200), l (8,000/500) or xl
        /// (15,000/1,000); small, medium, large, xLarge too.
        #[arg(long, default_value = "s")]
        load: String,
        /// Prefix of the keys written.
        #[arg(long, default_value = perf::DEFAULT_PREFIX)]
        prefix: String,
        /// Compact to the revision of the cleanup after the check.
        #[arg(long)]
        auto_compact: bool,
        /// Defragment after the check (lode never needs it: says so).
        #[arg(long)]
        auto_defrag: bool,
    },
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Checks each endpoint: a linearizable read of the key "health" and no active alarm.
    Health,
    /// Prints the status of each endpoint.
    Status,
    /// Prints the hash of the endpoint's history above its compaction point (etcd's HashKV),
    /// for comparing members at the same revision.
    Hashkv {
        /// The revision to hash up to (0: the latest applied).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Decode every segment: records, terms, indexes, checksums, torn tails and corruption.
    /// Exits 0 when recovery would accept the log, 1 when it would refuse.
    Inspect {
        /// The log directory (a data dir's `wal/`, or the data dir itself).
        dir: PathBuf,
        /// List every record, not only per-segment summaries.
        #[arg(long)]
        records: bool,
    },
}

/// What a command asks the server, and how to print the answer.
enum Action {
    Send(Request, Printer),
    EndpointStatus {
        cluster: bool,
    },
    HashKv {
        revision: i64,
        cluster: bool,
    },
    Health {
        cluster: bool,
    },
    Defrag {
        cluster: bool,
    },
    Perf,
    /// A membership or leadership request, sent to the leader among the endpoints when
    /// `to_leader`.
    Cluster {
        request: Request,
        printer: ClusterPrinter,
        to_leader: bool,
    },
    SnapshotSave(PathBuf),
    AlarmList,
    AlarmDisarm,
}

enum ClusterPrinter {
    Added(String),
    Removed(u64),
    Updated(u64),
    Promoted(u64),
    List,
    MovedTo(u64),
}

fn member_id_arg(id: &str) -> Result<u64, String> {
    u64::from_str_radix(id, 16)
        .map_err(|_| format!("bad member ID arg ({id}), expecting ID in Hex"))
}

fn peer_urls_arg(urls: &str) -> Vec<String> {
    urls.split(',').map(str::to_string).collect()
}

enum Printer {
    Range {
        keys_only: bool,
        count_only: bool,
        values_only: bool,
        request: Box<lode::mvcc::request::RangeRequest>,
    },
    Write,
    Compaction(i64),
    LeaseGranted,
    LeaseRevoked(i64),
    TimeToLive {
        keys: bool,
    },
    Leases,
    /// An auth call's answer, printed as etcdctl prints it.
    Auth(AuthPrinter),
}

/// What etcdctl prints for each auth call.
#[derive(Clone, Debug)]
enum AuthPrinter {
    UserAdded(String),
    UserGot(String),
    Users,
    UserDeleted(String),
    PasswordUpdated,
    RoleGranted {
        user: String,
        role: String,
    },
    RoleRevoked {
        user: String,
        role: String,
    },
    RoleAdded(String),
    RoleGot(String),
    Roles,
    RoleDeleted(String),
    RoleUpdated(String),
    PermissionRevoked {
        role: String,
        key: String,
        end: String,
    },
    Enabled,
    Disabled,
    Status,
}

/// The key range an auth permission command names, as etcdctl reads KEY [RANGE_END]
/// --prefix/--from-key.
fn permission_range(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> Result<(bytes::Bytes, bytes::Bytes), String> {
    if prefix && from_key {
        return Err("--from-key and --prefix flags are mutually exclusive".into());
    }
    let end = match (range_end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) => {
            return Err("too many arguments".into());
        }
        (Some(end), false, false) => end.as_bytes().to_vec(),
        (None, true, false) => lode::mvcc::kv::prefix_range_end(key.as_bytes()).to_vec(),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (None, true, true) => unreachable!("refused above"),
    };
    Ok((
        bytes::Bytes::copy_from_slice(key.as_bytes()),
        bytes::Bytes::from(end),
    ))
}

/// A password: a line read from standard input, or when `interactive` asked for on the
/// terminal without echo (twice for a new one, as etcdctl asks).
fn password_input(user: &str, interactive: bool, confirm: bool) -> Result<String, String> {
    if !interactive {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: String| {
        rpassword::prompt_password(prompt).map_err(|e| format!("reading the password: {e}"))
    };
    let first = ask(format!("Password of {user}: "))?;
    if confirm && ask(format!("Type password of {user} again for confirmation: "))? != first {
        return Err("given passwords are different".into());
    }
    Ok(first)
}

fn lease_id_arg(id: &str) -> Result<i64, String> {
    i64::from_str_radix(id, 16)
        .map_err(|error| format!("bad lease ID arg ({error}), expecting ID in Hex"))
}

fn build(command: Command) -> Result<Action, String> {
    Ok(match command {
        Command::Put {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        } => {
            let value = match (value, ignore_value) {
                (Some(value), false) => value,
                (None, true) => String::new(),
                (Some(_), true) => {
                    return Err("put command needs 1 argument when --ignore-value is set".into())
                }
                (None, false) => {
                    return Err(
                        "put command needs 1 argument and input from stdin or 2 arguments".into(),
                    )
                }
            };
            let lease = i64::from_str_radix(&lease, 16)
                .map_err(|_| format!("bad lease ID ({lease}), expecting ID in Hex"))?;
            let request =
                requests::put_request(&key, &value, lease, prev_kv, ignore_value, ignore_lease);
            Action::Send(Request::Write(WriteRequest::Put(request)), Printer::Write)
        }
        Command::Get {
            key,
            range_end,
            prefix,
            from_key,
            limit,
            rev,
            keys_only,
            count_only,
            sort_by,
            order,
            consistency,
            print_value_only,
            min_mod_revision,
            max_mod_revision,
            min_create_revision,
            max_create_revision,
        } => {
            let options = requests::GetOptions {
                prefix,
                from_key,
                limit,
                rev,
                keys_only,
                count_only,
                sort_by,
                order,
                consistency: Some(consistency),
                min_mod_revision,
                max_mod_revision,
                min_create_revision,
                max_create_revision,
            };
            let request = requests::range_request(&key, range_end.as_deref(), &options)?;
            Action::Send(
                Request::Range(request.clone()),
                Printer::Range {
                    keys_only,
                    count_only,
                    values_only: print_value_only,
                    request: Box::new(request),
                },
            )
        }
        Command::Del {
            key,
            range_end,
            prefix,
            from_key,
            prev_kv,
        } => {
            let request =
                requests::delete_request(&key, range_end.as_deref(), prefix, from_key, prev_kv)?;
            Action::Send(
                Request::Write(WriteRequest::DeleteRange(request)),
                Printer::Write,
            )
        }
        Command::Txn { interactive } => {
            if interactive {
                eprintln!("compares:\n(blank line)\nsuccess requests (get, put, del):\n(blank line)\nfailure requests (get, put, del):\n(blank line)");
            }
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| format!("reading stdin: {e}"))?;
            let txn = txn_syntax::parse_txn(&input)?;
            Action::Send(Request::Write(WriteRequest::Txn(txn)), Printer::Write)
        }
        Command::Compaction { revision, physical } => Action::Send(
            Request::Write(WriteRequest::Compact(CompactionRequest {
                revision,
                physical,
            })),
            Printer::Compaction(revision),
        ),
        Command::Lease { command } => match command {
            LeaseCommand::Grant { ttl } => {
                let ttl: i64 = ttl.parse().map_err(|error| format!("bad TTL ({error})"))?;
                Action::Send(
                    Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl })),
                    Printer::LeaseGranted,
                )
            }
            LeaseCommand::Revoke { id } => {
                let id = lease_id_arg(&id)?;
                Action::Send(
                    Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id })),
                    Printer::LeaseRevoked(id),
                )
            }
            LeaseCommand::Timetolive { id, keys } => Action::Send(
                Request::Lease(LeaseQuery::TimeToLive {
                    id: lease_id_arg(&id)?,
                    keys,
                }),
                Printer::TimeToLive { keys },
            ),
            LeaseCommand::List => Action::Send(Request::Lease(LeaseQuery::Leases), Printer::Leases),
            LeaseCommand::KeepAlive { .. } => unreachable!("handled before connecting"),
        },
        Command::User { command } => {
            use lode::auth::request::{AuthKind, AuthRequest};
            let call = |kind: AuthKind, name: &str| AuthRequest {
                name: name.to_string(),
                ..AuthRequest::new(kind)
            };
            let (request, printer) = match command {
                UserCommand::Add {
                    name: user,
                    no_password,
                    new_user_password,
                    interactive,
                } => {
                    let (name, password) = match (user.split_once(':'), new_user_password) {
                        _ if no_password => (user.clone(), String::new()),
                        (Some((name, password)), _) => (name.to_string(), password.to_string()),
                        (None, Some(password)) => (user.clone(), password),
                        (None, None) => (user.clone(), password_input(&user, interactive, true)?),
                    };
                    let request = AuthRequest {
                        password,
                        no_password,
                        ..call(AuthKind::UserAdd, &name)
                    };
                    (request, AuthPrinter::UserAdded(name))
                }
                UserCommand::Get { name: user } => {
                    (call(AuthKind::UserGet, &user), AuthPrinter::UserGot(user))
                }
                UserCommand::List => (AuthRequest::new(AuthKind::UserList), AuthPrinter::Users),
                UserCommand::Delete { name: user } => (
                    call(AuthKind::UserDelete, &user),
                    AuthPrinter::UserDeleted(user),
                ),
                UserCommand::Passwd {
                    name: user,
                    interactive,
                } => {
                    let password = password_input(&user, interactive, true)?;
                    let request = AuthRequest {
                        password,
                        ..call(AuthKind::UserChangePassword, &user)
                    };
                    (request, AuthPrinter::PasswordUpdated)
                }
                UserCommand::GrantRole { name: user, role } => {
                    let request = AuthRequest {
                        role: role.clone(),
                        ..call(AuthKind::UserGrantRole, &user)
                    };
                    (request, AuthPrinter::RoleGranted { user, role })
                }
                UserCommand::RevokeRole { name: user, role } => {
                    let request = AuthRequest {
                        role: role.clone(),
                        ..call(AuthKind::UserRevokeRole, &user)
                    };
                    (request, AuthPrinter::RoleRevoked { user, role })
                }
            };
            Action::Send(Request::Auth(request), Printer::Auth(printer))
        }
        Command::Role { command } => {
            use lode::auth::request::{AuthKind, AuthRequest};
            let call = |kind: AuthKind, name: &str| AuthRequest {
                name: name.to_string(),
                ..AuthRequest::new(kind)
            };
            let (request, printer) = match command {
                RoleCommand::Add { role } => {
                    (call(AuthKind::RoleAdd, &role), AuthPrinter::RoleAdded(role))
                }
                RoleCommand::Get { role } => {
                    (call(AuthKind::RoleGet, &role), AuthPrinter::RoleGot(role))
                }
                RoleCommand::List => (AuthRequest::new(AuthKind::RoleList), AuthPrinter::Roles),
                RoleCommand::Delete { role } => (
                    call(AuthKind::RoleDelete, &role),
                    AuthPrinter::RoleDeleted(role),
                ),
                RoleCommand::GrantPermission {
                    role,
                    perm_type,
                    key,
                    range_end,
                    prefix,
                    from_key,
                } => {
                    let perm_type = match perm_type.to_ascii_lowercase().as_str() {
                        "read" => lode::auth::PermType::Read,
                        "write" => lode::auth::PermType::Write,
                        "readwrite" => lode::auth::PermType::ReadWrite,
                        other => return Err(format!("invalid permission type {other}")),
                    };
                    let (key, range_end) =
                        permission_range(&key, range_end.as_deref(), prefix, from_key)?;
                    let request = AuthRequest {
                        permission: Some(lode::auth::Permission {
                            perm_type,
                            key,
                            range_end,
                        }),
                        ..call(AuthKind::RoleGrantPermission, &role)
                    };
                    (request, AuthPrinter::RoleUpdated(role))
                }
                RoleCommand::RevokePermission {
                    role,
                    key,
                    range_end,
                    prefix,
                    from_key,
                } => {
                    let (key, range_end) =
                        permission_range(&key, range_end.as_deref(), prefix, from_key)?;
                    let printer = AuthPrinter::PermissionRevoked {
                        role: role.clone(),
                        key: String::from_utf8_lossy(&key).into_owned(),
                        end: String::from_utf8_lossy(&range_end).into_owned(),
                    };
                    let request = AuthRequest {
                        key,
                        range_end,
                        ..call(AuthKind::RoleRevokePermission, &role)
                    };
                    (request, printer)
                }
            };
            Action::Send(Request::Auth(request), Printer::Auth(printer))
        }
        Command::Auth { command } => {
            use lode::auth::request::{AuthKind, AuthRequest};
            let (kind, printer) = match command {
                AuthCommand::Enable => (AuthKind::Enable, AuthPrinter::Enabled),
                AuthCommand::Disable => (AuthKind::Disable, AuthPrinter::Disabled),
                AuthCommand::Status => (AuthKind::Status, AuthPrinter::Status),
            };
            Action::Send(
                Request::Auth(AuthRequest::new(kind)),
                Printer::Auth(printer),
            )
        }
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
        Command::Perf => Action::Perf,
        Command::Member { command } => {
            let (request, printer, to_leader) = match command {
                MemberCommand::Add {
                    name,
                    peer_urls,
                    learner,
                } => (
                    MemberRequest::Add {
                        peer_urls: peer_urls_arg(&peer_urls),
                        is_learner: learner,
                    },
                    ClusterPrinter::Added(name),
                    false,
                ),
                MemberCommand::Remove { id } => {
                    let id = member_id_arg(&id)?;
                    (
                        MemberRequest::Remove(id),
                        ClusterPrinter::Removed(id),
                        false,
                    )
                }
                MemberCommand::Update { id, peer_urls } => {
                    let id = member_id_arg(&id)?;
                    (
                        MemberRequest::Update {
                            id,
                            peer_urls: peer_urls_arg(&peer_urls),
                        },
                        ClusterPrinter::Updated(id),
                        false,
                    )
                }
                MemberCommand::List { consistency } => {
                    let linearizable = match consistency.as_str() {
                        "l" => true,
                        "s" => false,
                        other => return Err(format!("unknown consistency flag {other:?}")),
                    };
                    (
                        MemberRequest::List { linearizable },
                        ClusterPrinter::List,
                        false,
                    )
                }
                // Only the leader knows whether a learner caught up.
                MemberCommand::Promote { id } => {
                    let id = member_id_arg(&id)?;
                    (
                        MemberRequest::Promote(id),
                        ClusterPrinter::Promoted(id),
                        true,
                    )
                }
            };
            Action::Cluster {
                request: Request::Member(request),
                printer,
                to_leader,
            }
        }
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

/// Runs a lock or election session on an executor with SIGINT and SIGTERM caught (`work` gets
/// the flag they set); its result is the exit status.
fn run_session<W, F>(work: W) -> ExitCode
where
    W: FnOnce(Arc<AtomicBool>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<u8, String>> + 'static,
{
    let signals = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, signals.clone()) {
            eprintln!("Error: catching signals: {error}");
            return ExitCode::from(1);
        }
    }
    let outcome = lode::executor::builder(Placement::Unbound)
        .spawn(move || async move { work(signals).await })
        .map_err(|e| e.to_string())
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result);
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}

/// A lease kept alive in the background for a lock or election (etcd's concurrency session).
struct Session {
    client: Rc<Client>,
    lease: i64,
    lost: Rc<Cell<bool>>,
    keeper: glommio::task::JoinHandle<()>,
}

impl Session {
    async fn open(client: Rc<Client>, ttl: i64) -> Result<Session, String> {
        let grant = Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id: 0, ttl }));
        let (lease, ttl) = match client.request(&grant).await.map_err(|e| e.to_string())? {
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })) => (id, ttl),
            other => return Err(format!("unexpected response {other:?}")),
        };
        let lost = Rc::new(Cell::new(false));
        let (keeper_client, keeper_lost) = (client.clone(), lost.clone());
        let keeper = glommio::spawn_local(async move {
            let period = std::time::Duration::from_secs_f64((ttl as f64 / 3.0).max(0.5));
            let full = std::time::Duration::from_secs(ttl.max(1) as u64);
            let mut renewed_at = std::time::Instant::now();
            loop {
                glommio::timer::sleep(period).await;
                let sent = std::time::Instant::now();
                let renewed = keeper_client
                    .request(&Request::Lease(LeaseQuery::KeepAlive(lease)))
                    .await;
                match renewed {
                    Ok(Response::Lease(LeaseAnswer::KeepAlive { ttl, .. })) if ttl > 0 => {
                        renewed_at = sent;
                    }
                    // Failed renewals (no leader, a timeout) are retried, but once a whole
                    // TTL passed since the last one the cluster may have expired the lease:
                    // the session is lost, as etcd's client decides.
                    Err(lode::client::ClientError::Server { .. })
                        if renewed_at.elapsed() < full => {}
                    _ => {
                        keeper_lost.set(true);
                        return;
                    }
                }
            }
        })
        .detach();
        Ok(Session {
            client,
            lease,
            lost,
            keeper,
        })
    }

    /// Sends a request that waits (Lock, Campaign) and its answer; when it fails, or a signal
    /// arrives first, the session ends: revoking its lease takes this contender's key out of
    /// the queue.
    async fn wait(
        self,
        request: &Request,
        signals: &AtomicBool,
    ) -> Result<(Session, Response), String> {
        match unless_signalled(&self.client, request, signals).await {
            Some(Ok(response)) => Ok((self, response)),
            Some(Err(error)) => {
                self.close().await;
                Err(error)
            }
            None => {
                self.close().await;
                Err("context canceled".into())
            }
        }
    }

    /// Holds what the session won until a signal arrives, then sends `release` (Unlock,
    /// Resign), ends the session and answers exit status 0; if the lease is lost first, fails
    /// with `lost`.
    async fn hold(self, release: Request, signals: &AtomicBool, lost: &str) -> Result<u8, String> {
        if !signal_or_lost(signals, &self.lost).await {
            return Err(lost.into());
        }
        let _ = self.client.request(&release).await;
        self.close().await;
        Ok(0)
    }

    /// Ends the session: its lease is revoked (deleting any key still held with it).
    async fn close(self) {
        self.keeper.cancel();
        let revoke = Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: self.lease }));
        let _ = self.client.request(&revoke).await;
    }
}

/// Waits until a signal arrives (true) or `lost` is set (false).
async fn signal_or_lost(signals: &AtomicBool, lost: &Cell<bool>) -> bool {
    loop {
        if signals.load(Ordering::Relaxed) {
            return true;
        }
        if lost.get() {
            return false;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends `request`, unless a signal arrives first (`None`).
async fn unless_signalled(
    client: &Client,
    request: &Request,
    signals: &AtomicBool,
) -> Option<Result<Response, String>> {
    let answer = client.request(request);
    let signalled = async {
        while !signals.load(Ordering::Relaxed) {
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    match futures::future::select(Box::pin(answer), Box::pin(signalled)).await {
        futures::future::Either::Left((answer, _)) => Some(answer.map_err(|e| e.to_string())),
        futures::future::Either::Right(_) => None,
    }
}

/// `lodectl lock`.
async fn lock(
    endpoints: &[String],
    name: String,
    command: Vec<String>,
    ttl: i64,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let client = Rc::new(client);
    let session = Session::open(client.clone(), ttl).await?;
    let request = Request::Coordination(CoordinationRequest::Lock {
        name: bytes::Bytes::from(name.into_bytes()),
        lease: session.lease,
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let (header, key) = match answer {
        Response::Coordination(CoordinationResponse::Locked { header, key }) => (header, key),
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let unlock = Request::Coordination(CoordinationRequest::Unlock { key: key.clone() });
    if let Some((program, arguments)) = command.split_first() {
        let mut child = std::process::Command::new(program)
            .args(arguments)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", header.revision.to_string())
            .spawn()
            .map_err(|e| format!("running {program}: {e}"))?;
        // Polled, not waited on: the session's keep-alives run on this thread.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => glommio::timer::sleep(std::time::Duration::from_millis(20)).await,
                Err(error) => return Err(format!("waiting for {program}: {error}")),
            }
        };
        let _ = client.request(&unlock).await;
        session.close().await;
        return match status.code() {
            Some(0) => Ok(0),
            Some(code) => {
                eprintln!("Error: exit status {code}");
                Ok(code.clamp(1, 255) as u8)
            }
            None => Err("the command was killed by a signal".into()),
        };
    }
    print!("{}\n\n", String::from_utf8_lossy(&key));
    let _ = std::io::stdout().flush();
    session.hold(unlock, &signals, "session expired").await
}

/// `lodectl elect`: campaigns with `proposal`, or (none) observes.
async fn elect(
    endpoints: &[String],
    name: String,
    proposal: Option<String>,
    signals: Arc<AtomicBool>,
) -> Result<u8, String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let name = bytes::Bytes::from(name.into_bytes());
    let Some(proposal) = proposal else {
        let mut observed = client.observe(name).await.map_err(|e| e.to_string())?;
        loop {
            let next = observed.next();
            let signalled = async {
                while !signals.load(Ordering::Relaxed) {
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                }
            };
            match futures::future::select(Box::pin(next), Box::pin(signalled)).await {
                futures::future::Either::Left((Ok((_, kv)), _)) => {
                    print!(
                        "{}\n{}\n",
                        String::from_utf8_lossy(&kv.key),
                        String::from_utf8_lossy(&kv.value)
                    );
                    let _ = std::io::stdout().flush();
                }
                futures::future::Either::Left((Err(error), _)) => {
                    return Err(format!("elect: observer lost ({error})"))
                }
                futures::future::Either::Right(_) => return Ok(0),
            }
        }
    };
    let client = Rc::new(client);
    let session = Session::open(client.clone(), 60).await?;
    let request = Request::Coordination(CoordinationRequest::Campaign {
        name,
        lease: session.lease,
        value: bytes::Bytes::from(proposal.into_bytes()),
    });
    let (session, answer) = session.wait(&request, &signals).await?;
    let leader = match answer {
        Response::Coordination(CoordinationResponse::Campaigned { leader, .. }) => leader,
        other => {
            session.close().await;
            return Err(format!("unexpected response {other:?}"));
        }
    };
    let current = Request::Coordination(CoordinationRequest::Leader {
        name: leader.name.clone(),
    });
    if let Ok(Response::Coordination(CoordinationResponse::Leader { kv, .. })) =
        client.request(&current).await
    {
        print!(
            "{}\n{}\n",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value)
        );
        let _ = std::io::stdout().flush();
    }
    let resign = Request::Coordination(CoordinationRequest::Resign { leader });
    session
        .hold(resign, &signals, "elect: session expired")
        .await
}

/// `lodectl lease keep-alive`: renews the lease every third of its TTL and prints each answer,
/// until the lease is gone (or after one renewal with `once`), as etcdctl's.
async fn keep_alive(
    endpoints: &[String],
    id: i64,
    once: bool,
    format: Format,
) -> Result<(), String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    loop {
        let response = client
            .request(&Request::Lease(LeaseQuery::KeepAlive(id)))
            .await
            .map_err(|e| e.to_string())?;
        let Response::Lease(LeaseAnswer::KeepAlive { header, ttl, .. }) = response else {
            return Err(format!("unexpected response {response:?}"));
        };
        if ttl <= 0 {
            if once {
                return Err("etcdserver: requested lease not found".into());
            }
            if format != Format::Json {
                println!("lease {id:016x} expired or revoked.");
            }
            return Ok(());
        }
        let line = match format {
            Format::Json => output::json_keep_alive(&header, id, ttl).to_string() + "\n",
            Format::Fields => output::fields_keep_alive(&header, id, ttl),
            _ => output::simple_keep_alive(id, ttl),
        };
        print!("{line}");
        let _ = std::io::stdout().flush();
        if once {
            return Ok(());
        }
        glommio::timer::sleep(std::time::Duration::from_secs_f64(
            (ttl as f64 / 3.0).max(0.5),
        ))
        .await;
    }
}

/// `lodectl watch`: creates the watch and prints what it is given until the stream ends.
async fn watch(
    endpoints: &[String],
    create: lode::watch::stream::CreateWatch,
    format: Format,
    hex: bool,
    exec: &[String],
) -> Result<(), String> {
    use std::io::Write as _;
    let (client, _) = connect(endpoints).await?;
    let mut stream = client.watch();
    stream
        .send(lode::api::native::WatchRequest::Create(create))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let (header, response) = stream.next().await.map_err(|e| e.to_string())?;
        if response.canceled {
            let why = if response.compact_revision != 0 {
                format!(
                    "etcdserver: mvcc: required revision has been compacted (compact revision {})",
                    response.compact_revision
                )
            } else {
                response.cancel_reason.clone()
            };
            return Err(format!("watch is canceled by the server: {why}"));
        }
        if response.created {
            continue;
        }
        let mut text = String::new();
        if response.events.is_empty() && response.compact_revision == 0 && header.revision != 0 {
            text.push_str(&format!("progress notify: {}\n", header.revision));
        }
        text.push_str(&match format {
            Format::Json => output::json_watch(&header, &response).to_string() + "\n",
            Format::Fields => output::fields_watch(&header, &response),
            Format::Simple | Format::Table | Format::Protobuf => {
                output::simple_watch(&response, hex)
            }
        });
        {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // Whoever read our output is gone.
                return Ok(());
            }
        }
        for event in &response.events {
            run_for_event(exec, header.revision, event).await?;
        }
    }
}

/// A client of the endpoint that leads (etcdctl's move-leader looks for it the same way).
async fn connect_to_leader(endpoints: &[String]) -> Result<Client, String> {
    for endpoint in endpoints {
        let Ok((client, _)) = connect(std::slice::from_ref(endpoint)).await else {
            continue;
        };
        if let Ok(status) = fetch_status(&client).await {
            if status.leader != 0 && status.leader == status.header.member_id {
                return Ok(client);
            }
        }
    }
    Err(format!("no leader endpoint given at {endpoints:?}"))
}

fn print_cluster(
    printer: &ClusterPrinter,
    response: &Response,
    format: Format,
) -> Result<String, String> {
    match (printer, response, format) {
        (ClusterPrinter::MovedTo(target), Response::MoveLeader { header }, _) => Ok(format!(
            "Leadership transferred from {:x} to {target:x}\n",
            header.member_id
        )),
        (
            _,
            Response::Members {
                header,
                member,
                members,
            },
            Format::Json,
        ) => Ok(output::json_members(header, member.as_ref(), members).to_string() + "\n"),
        (ClusterPrinter::List, Response::Members { members, .. }, Format::Table) => {
            Ok(output::table_members(members))
        }
        (
            ClusterPrinter::List,
            Response::Members {
                header, members, ..
            },
            Format::Fields,
        ) => Ok(output::fields_members(header, members)),
        (_, _, Format::Fields | Format::Protobuf) => {
            Err("fields not supported as output format by this command".into())
        }
        (_, Response::Members { .. }, Format::Table) => {
            Err("table format is only supported by endpoint status and member list".into())
        }
        (ClusterPrinter::List, Response::Members { members, .. }, _) => {
            Ok(output::simple_members(members))
        }
        (
            ClusterPrinter::Added(name),
            Response::Members {
                header,
                member: Some(added),
                members,
            },
            _,
        ) => Ok(output::member_added(
            name,
            header.cluster_id,
            added,
            members,
        )),
        (ClusterPrinter::Removed(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} removed from cluster {:16x}\n",
            header.cluster_id
        )),
        (ClusterPrinter::Updated(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} updated in cluster {:16x}\n",
            header.cluster_id
        )),
        (ClusterPrinter::Promoted(id), Response::Members { header, .. }, _) => Ok(format!(
            "Member {id:16x} promoted in cluster {:16x}\n",
            header.cluster_id
        )),
        (_, other, _) => Err(format!("unexpected response {other:?}")),
    }
}

async fn fetch_status(client: &Client) -> Result<StatusResponse, String> {
    match client.request(&Request::Status).await {
        Ok(Response::Status(status)) => Ok(status),
        Ok(response) => Err(format!("unexpected response {response:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// An auth call's answer as etcdctl's simple output prints it.
fn simple_auth(printer: &AuthPrinter, answer: &lode::auth::request::AuthResponse) -> String {
    let range = |key: &[u8], end: &[u8]| -> String {
        let (key_text, end_text) = (
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(end).into_owned(),
        );
        let mut line = if end == b"\0" {
            format!("\t[{key_text}, <open ended>")
        } else {
            format!("\t[{key_text}, {end_text})")
        };
        if !key.is_empty() && lode::mvcc::kv::prefix_range_end(key).as_ref() == end {
            line.push_str(&format!(" (prefix {key_text})"));
        }
        line + "\n"
    };
    match printer {
        AuthPrinter::UserAdded(name) => format!("User {name} created\n"),
        AuthPrinter::UserGot(name) => {
            let mut out = format!("User: {name}\nRoles:");
            for role in &answer.names {
                out.push_str(&format!(" {role}"));
            }
            out + "\n"
        }
        AuthPrinter::Users | AuthPrinter::Roles => answer
            .names
            .iter()
            .map(|name| format!("{name}\n"))
            .collect(),
        AuthPrinter::UserDeleted(name) => format!("User {name} deleted\n"),
        AuthPrinter::PasswordUpdated => "Password updated\n".into(),
        AuthPrinter::RoleGranted { user, role } => {
            format!("Role {role} is granted to user {user}\n")
        }
        AuthPrinter::RoleRevoked { user, role } => {
            format!("Role {role} is revoked from user {user}\n")
        }
        AuthPrinter::RoleAdded(name) => format!("Role {name} created\n"),
        AuthPrinter::RoleGot(name) => {
            let mut out = format!("Role {name}\n");
            for (title, wanted) in [
                ("KV Read:", lode::auth::PermType::Read),
                ("KV Write:", lode::auth::PermType::Write),
            ] {
                out.push_str(title);
                out.push('\n');
                for permission in &answer.permissions {
                    let covers = permission.perm_type == wanted
                        || permission.perm_type == lode::auth::PermType::ReadWrite;
                    if !covers {
                        continue;
                    }
                    if permission.range_end.is_empty() {
                        out.push_str(&format!("\t{}\n", String::from_utf8_lossy(&permission.key)));
                    } else {
                        out.push_str(&range(&permission.key, &permission.range_end));
                    }
                }
            }
            out
        }
        AuthPrinter::RoleDeleted(name) => format!("Role {name} deleted\n"),
        AuthPrinter::RoleUpdated(name) => format!("Role {name} updated\n"),
        AuthPrinter::PermissionRevoked { role, key, end } => {
            if end.is_empty() {
                format!("Permission of key {key} is revoked from role {role}\n")
            } else if end == "\0" {
                format!("Permission of range [{key}, <open ended> is revoked from role {role}\n")
            } else {
                format!("Permission of range [{key}, {end}) is revoked from role {role}\n")
            }
        }
        AuthPrinter::Enabled => "Authentication Enabled\n".into(),
        AuthPrinter::Disabled => "Authentication Disabled\n".into(),
        AuthPrinter::Status => format!(
            "Authentication Status: {}\nAuthRevision: {}\n",
            answer.enabled, answer.auth_revision
        ),
    }
}

fn print(
    printer: &Printer,
    response: &Response,
    format: Format,
    hex: bool,
) -> Result<String, String> {
    if format == Format::Table {
        return Err("table format is only supported by endpoint status".into());
    }
    if format == Format::Fields {
        return print_fields(printer, response);
    }
    Ok(match (printer, response, format) {
        (Printer::Range { .. }, Response::Range(r), Format::Json) => {
            output::json_range(r).to_string() + "\n"
        }
        (
            Printer::Range {
                values_only: true,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut out = String::new();
            if request.count_only {
                out = format!("{}\n", r.count);
            } else {
                for kv in &r.kvs {
                    out.push_str(&output::simple_bytes(&kv.value, hex));
                    out.push('\n');
                }
            }
            out
        }
        (
            Printer::Range {
                keys_only,
                count_only,
                request,
                ..
            },
            Response::Range(r),
            _,
        ) => {
            let mut request = (**request).clone();
            request.keys_only = *keys_only;
            request.count_only = *count_only;
            output::simple_range(r, &request, hex)
        }
        (Printer::LeaseRevoked(id), Response::Write(WriteResponse::Lease(_)), Format::Simple) => {
            output::simple_lease_revoked(*id)
        }
        (Printer::Auth(printer), Response::Auth(answer), Format::Simple) => {
            simple_auth(printer, answer)
        }
        (
            Printer::LeaseGranted,
            Response::Write(WriteResponse::Lease(LeaseResponse {
                outcome: LeaseOutcome::Granted { id, ttl },
                ..
            })),
            Format::Simple,
        ) => output::simple_lease_granted(*id, *ttl),
        (_, Response::Write(w), Format::Json) => output::json_write(w).to_string() + "\n",
        (
            Printer::TimeToLive { keys: with_keys },
            Response::Lease(LeaseAnswer::TimeToLive {
                header,
                id,
                ttl,
                granted_ttl,
                keys,
            }),
            format,
        ) => match format {
            Format::Json => {
                output::json_time_to_live(header, *id, *ttl, *granted_ttl, keys).to_string() + "\n"
            }
            _ => output::simple_time_to_live(*id, *ttl, *granted_ttl, with_keys.then_some(keys)),
        },
        (Printer::Leases, Response::Lease(LeaseAnswer::Leases { header, ids }), format) => {
            match format {
                Format::Json => output::json_leases(header, ids).to_string() + "\n",
                _ => output::simple_leases(ids),
            }
        }
        (Printer::Compaction(revision), Response::Write(WriteResponse::Compact(_)), _) => {
            format!("compacted revision {revision}\n")
        }
        (_, Response::Write(WriteResponse::Put(r)), _) => output::simple_put(r, hex),
        (_, Response::Write(WriteResponse::DeleteRange(r)), _) => output::simple_delete(r, hex),
        (_, Response::Write(WriteResponse::Txn(r)), _) => output::simple_txn(r, hex),
        (_, other, _) => return Err(format!("unexpected response {other:?}")),
    })
}

/// An answer with `-w fields` (etcdctl's printer_fields): header fields first, then the
/// answer's own, `"Name" : value` a line.
fn print_fields(printer: &Printer, response: &Response) -> Result<String, String> {
    match (printer, response) {
        (
            Printer::Range {
                values_only: true, ..
            },
            _,
        ) => Err("print-value-only is only for `--write-out=simple`".into()),
        (Printer::Range { .. }, Response::Range(r)) => Ok(output::fields_range(r)),
        (Printer::Compaction(revision), Response::Write(WriteResponse::Compact(_))) => {
            Ok(format!("compacted revision {revision}\n"))
        }
        (_, Response::Write(w)) => output::fields_write(w)
            .ok_or_else(|| "fields not supported as output format for this answer".into()),
        (
            _,
            Response::Lease(LeaseAnswer::TimeToLive {
                header,
                id,
                ttl,
                granted_ttl,
                keys,
            }),
        ) => Ok(output::fields_time_to_live(
            header,
            *id,
            *ttl,
            *granted_ttl,
            keys,
        )),
        (_, Response::Lease(LeaseAnswer::Leases { header, ids })) => {
            Ok(output::fields_leases(header, ids))
        }
        (_, other) => Err(format!("unexpected response {other:?}")),
    }
}

/// Streams a snapshot into `path`: written to `<path>.part` piece by piece, synced, then
/// renamed, so `path` only ever holds a complete snapshot (as etcdctl does).
async fn save_snapshot(client: &Client, path: &std::path::Path) -> Result<(), String> {
    use std::io::Write as _;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".part");
    let temporary = std::path::PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)
        .map_err(|e| format!("creating {}: {e}", temporary.display()))?;
    let streamed = client
        .snapshot(|piece, _remaining| {
            file.write_all(piece)
                .map_err(|e| format!("writing {}: {e}", temporary.display()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|()| {
            file.sync_all()
                .map_err(|e| format!("syncing {}: {e}", temporary.display()))
        })
        .and_then(|()| {
            std::fs::rename(&temporary, path)
                .map_err(|e| format!("renaming to {}: {e}", path.display()))
        });
    if streamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    streamed
}

async fn alarm(
    client: &Client,
    action: AlarmAction,
    member_id: u64,
    alarm: AlarmType,
) -> Result<AlarmResponse, String> {
    let request = Request::Alarm(AlarmRequest {
        action,
        member_id,
        alarm,
    });
    match client.request(&request).await.map_err(|e| e.to_string())? {
        Response::Alarm(answer) => Ok(answer),
        other => Err(format!("unexpected response {other:?}")),
    }
}

/// `--dial-timeout`, set once at start.
static DIAL_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// etcdctl's default dial timeout.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// `work`'s output, or `None` if `limit` passed first.
async fn within<F: std::future::Future>(limit: Duration, work: F) -> Option<F::Output> {
    let expired = glommio::timer::sleep(limit);
    match futures::future::select(Box::pin(work), Box::pin(expired)).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(_) => None,
    }
}

/// `work`'s result, or etcdctl's "context deadline exceeded" once `limit` passed.
async fn deadline<T, F: std::future::Future<Output = Result<T, String>>>(
    limit: Duration,
    work: F,
) -> Result<T, String> {
    within(limit, work)
        .await
        .unwrap_or_else(|| Err("context deadline exceeded".into()))
}

/// The `host:port` of an endpoint given as host:port or as a client URL.
/// An endpoint's `host:port`, and whether it is dialled over TLS: `https://` always,
/// `http://` never, a bare `host:port` when `tls_by_default` (etcdctl's rules).
fn endpoint_address(
    endpoint: &str,
    tls_by_default: bool,
) -> Result<(String, String, bool), String> {
    if endpoint.contains("://") {
        lode::urls::parse_url(endpoint).map(|url| (url.authority(), url.host, url.tls))
    } else {
        let host = match endpoint.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => endpoint,
        };
        Ok((endpoint.to_string(), host.to_string(), tls_by_default))
    }
}

/// How lodectl dials: etcdctl's TLS settings (`--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`, `--insecure-transport`).
struct Dialer {
    security: flags::Security,
    /// Built at the first TLS dial.
    tls: OnceLock<Result<Arc<lode::tls::ClientTls>, String>>,
    /// The user and password to authenticate as (asked for once, at the first dial).
    login: OnceLock<Result<Option<(String, String)>, String>>,
}

impl Dialer {
    fn new(security: flags::Security) -> Dialer {
        Dialer {
            security,
            tls: OnceLock::new(),
            login: OnceLock::new(),
        }
    }

    fn login(&self) -> Result<Option<(String, String)>, String> {
        self.login
            .get_or_init(|| match self.security.login() {
                None => Ok(None),
                Some((user, Some(password))) => Ok(Some((user, password))),
                // As etcdctl: asked for on the terminal, not echoed.
                Some((user, None)) => rpassword::prompt_password("Password: ")
                    .map(|password| Some((user, password)))
                    .map_err(|e| format!("reading the password: {e}")),
            })
            .clone()
    }

    /// Authenticates `client` when a user was given (a server whose auth is off is used
    /// without a token, as etcd's clients do).
    async fn authenticated(&self, client: Client) -> Result<Client, String> {
        if let Some((user, password)) = self.login()? {
            client
                .authenticate(&user, &password)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(client)
    }

    fn tls(&self) -> Result<Arc<lode::tls::ClientTls>, String> {
        self.tls
            .get_or_init(|| {
                let path = |value: &Option<String>| value.as_ref().map(std::path::PathBuf::from);
                lode::tls::command_line_client_config(
                    path(&self.security.cacert).as_deref(),
                    path(&self.security.cert).as_deref(),
                    path(&self.security.key).as_deref(),
                    self.security.insecure_skip_tls_verify,
                )
                .map(lode::tls::ClientTls::fixed)
                .map_err(|e| e.to_string())
            })
            .clone()
    }

    async fn dial(&self, endpoint: &str) -> Result<Client, String> {
        let (address, host, tls) = endpoint_address(endpoint, self.security.tls_by_default())?;
        let client = if tls {
            let config = self.tls()?;
            Client::connect_secured(&address, Some((&config, &host))).await
        } else {
            Client::connect(&address).await
        };
        self.authenticated(client.map_err(|e| e.to_string())?).await
    }
}

/// The global flags' dialler (set once at start).
static DIALER: OnceLock<Dialer> = OnceLock::new();
/// make-mirror's `--dest-*` dialler.
static DEST_DIALER: OnceLock<Dialer> = OnceLock::new();

/// A client of the first endpoint that answers within the dial timeout, and that endpoint.
async fn connect(endpoints: &[String]) -> Result<(Client, String), String> {
    let dialer = DIALER.get_or_init(|| Dialer::new(flags::Security::default()));
    connect_with(endpoints, dialer).await
}

/// `connect` with a dialler of its own (make-mirror's destination).
async fn connect_with(endpoints: &[String], dialer: &Dialer) -> Result<(Client, String), String> {
    let dial_timeout = *DIAL_TIMEOUT.get().unwrap_or(&DEFAULT_DIAL_TIMEOUT);
    let mut last = String::from("no endpoints given");
    for endpoint in endpoints {
        match within(dial_timeout, dialer.dial(endpoint)).await {
            Some(Ok(client)) => return Ok((client, endpoint.clone())),
            Some(Err(error)) => last = format!("{endpoint}: {error}"),
            None => last = format!("{endpoint}: context deadline exceeded (--dial-timeout)"),
        }
    }
    Err(format!("cannot connect to any endpoint ({last})"))
}

/// The endpoints a command covers: --endpoints, or with `cluster` every member's client URLs
/// from the member list of the first endpoint that answers (etcdctl's `--cluster`).
async fn endpoints_of(
    endpoints: &[String],
    cluster: bool,
    command_timeout: Duration,
) -> Result<Vec<String>, String> {
    if !cluster {
        return Ok(endpoints.to_vec());
    }
    let listed = deadline(command_timeout, async {
        let (client, _) = connect(endpoints).await?;
        let request = Request::Member(MemberRequest::List { linearizable: true });
        match client.request(&request).await.map_err(|e| e.to_string())? {
            Response::Members { members, .. } => Ok(members),
            other => Err(format!("unexpected response {other:?}")),
        }
    })
    .await
    .map_err(|e| format!("failed to fetch endpoints from etcd cluster member list: {e}"))?;
    Ok(listed
        .into_iter()
        .flat_map(|member| member.client_urls)
        .collect())
}

/// One endpoint's health as etcdctl's `endpoint health` checks it: a linearizable read of
/// the key "health" (timed), then no active alarm.
async fn endpoint_health(endpoint: String, command_timeout: Duration) -> output::EndpointHealth {
    let mut health = output::EndpointHealth {
        endpoint,
        ..Default::default()
    };
    let client = match connect(std::slice::from_ref(&health.endpoint)).await {
        Ok((client, _)) => client,
        Err(error) => {
            health.error = error;
            return health;
        }
    };
    let started = Instant::now();
    let checked = within(command_timeout, async {
        let read = Request::Range(lode::mvcc::request::RangeRequest {
            key: bytes::Bytes::from_static(b"health"),
            ..Default::default()
        });
        let read = client.request(&read).await.map_err(|e| e.to_string());
        let took = flags::go_duration_string(started.elapsed());
        // As etcdctl: a user who may not read the key still got an answer through consensus.
        let denied = lode::auth::AuthError::PermissionDenied.to_string();
        match read {
            Err(error) if error != denied => return (took, Err(error)),
            _ => {}
        }
        let alarms = alarm(&client, AlarmAction::Get, 0, AlarmType::None).await;
        (took, Ok(alarms))
    })
    .await;
    match checked {
        None => {
            health.took = flags::go_duration_string(started.elapsed());
            health.error = "context deadline exceeded".into();
        }
        Some((took, Err(error))) => {
            health.took = took;
            health.error = error;
        }
        Some((took, Ok(alarms))) => {
            health.took = took;
            match alarms {
                Ok(answer) if answer.alarms.is_empty() => health.health = true,
                Ok(answer) => {
                    health.error = String::from("Active Alarm(s): ");
                    for member in &answer.alarms {
                        health.error.push_str(match member.alarm {
                            AlarmType::Nospace => "NOSPACE ",
                            AlarmType::Corrupt => "CORRUPT ",
                            AlarmType::None => "UNKNOWN ",
                        });
                    }
                }
                Err(_) => health.error = "Unable to fetch the alarm list".into(),
            }
        }
    }
    health
}

/// What `defrag` says of a member: lode has nothing to defragment.
fn defrag_line(endpoint: &str) -> String {
    format!(
        "Nothing to defragment on member[{endpoint}]: lode keeps the keyspace in memory, so freed versions are freed memory\n"
    )
}

/// `defrag`: every endpoint is asked for its status (so the answer is a member's, not a
/// guess), then said to need no defragmenting; those that do not answer fail as etcdctl's.
async fn defrag(endpoints: &[String], command_timeout: Duration) -> Result<String, String> {
    use std::io::Write as _;
    let mut failures = 0;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            fetch_status(&client).await
        })
        .await;
        match answered {
            Ok(_) => print!("{}", defrag_line(endpoint)),
            Err(error) => {
                eprintln!("Failed to defragment etcd member[{endpoint}] ({error})");
                failures += 1;
            }
        }
        let _ = std::io::stdout().flush();
    }
    if failures > 0 {
        // etcdctl exits 1 with no further message.
        return Err(String::new());
    }
    Ok(String::new())
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

/// Exit status 1, after `error` on standard error (nothing when it is empty: the command
/// said what went wrong already).
fn fail(error: &str) -> ExitCode {
    if !error.is_empty() {
        eprintln!("Error: {error}");
    }
    ExitCode::from(1)
}

/// The key and range end of `watch`: from the arguments, or from ETCDCTL_WATCH_KEY and
/// ETCDCTL_WATCH_RANGE_END, with etcdctl's checks.
fn watch_range(
    key: Option<String>,
    range_end: Option<String>,
    prefix: bool,
    exec: &[String],
) -> Result<(bytes::Bytes, bytes::Bytes), String> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={env_range:?}"
        ));
    }
    if exec.is_empty() && std::env::args().any(|arg| arg == "--") {
        return Err("bad number of arguments (found separator --, but no commands)".into());
    }
    let (key, range_end) = match (key, env_key.is_empty()) {
        (Some(_), false) => {
            return Err("bad number of arguments (found conflicting environment key)".into())
        }
        (None, true) => return Err("bad number of arguments".into()),
        (Some(key), true) => (key, range_end),
        (None, false) => (env_key, (!env_range.is_empty()).then_some(env_range)),
    };
    let key = bytes::Bytes::from(key.into_bytes());
    let range_end = match (range_end, prefix) {
        (Some(_), true) => return Err("`range_end` and `--prefix` are mutually exclusive".into()),
        (Some(end), false) => bytes::Bytes::from(end.into_bytes()),
        (None, true) => lode::mvcc::kv::prefix_range_end(&key),
        (None, false) => bytes::Bytes::new(),
    };
    Ok((key, range_end))
}

/// Runs `work` on an executor; its result, or why it could not run.
fn on_executor<T, W, F>(work: W) -> Result<T, String>
where
    W: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<T, String>> + 'static,
    T: Send + 'static,
{
    lode::executor::builder(Placement::Unbound)
        .spawn(work)
        .map_err(|e| format!("cannot start an executor: {e}"))
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result)
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
    if let Command::Version = &cli.command {
        println!("etcdctl version: 3.5.0");
        println!("API version: 3.5");
        println!("lodectl version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Command::Log {
        command: LogCommand::Inspect { dir, records },
    } = &cli.command
    {
        let dir = if dir.join("wal").is_dir() {
            dir.join("wal")
        } else {
            dir.clone()
        };
        return match lode::wal::inspect::inspect_dir(&dir) {
            Ok(report) => {
                print!("{}", lode::wal::inspect::render(&report, *records));
                if report.is_healthy() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Snapshot {
        command: SnapshotCommand::Status { file },
    } = &cli.command
    {
        return match lode::restore::status(file) {
            Ok(status) => {
                match cli.write_out {
                    Format::Simple => print!("{}", output::simple_snapshot_status(&status)),
                    Format::Table => print!("{}", output::table_snapshot_status(&status)),
                    Format::Json => println!("{}", output::json_snapshot_status(&status)),
                    Format::Fields | Format::Protobuf => {
                        return fail("fields not supported as output format by snapshot status")
                    }
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Snapshot {
        command:
            SnapshotCommand::Restore {
                file,
                data_dir,
                name,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
                skip_hash_check,
            },
    } = &cli.command
    {
        let restored = lode::urls::parse_urls(initial_advertise_peer_urls)
            .map_err(|e| format!("--initial-advertise-peer-urls: {e}"))
            .and_then(|peer_urls| {
                let spec = initial_cluster.clone().unwrap_or_else(|| {
                    peer_urls
                        .0
                        .iter()
                        .map(|url| format!("{name}={url}"))
                        .collect::<Vec<_>>()
                        .join(",")
                });
                let cluster = lode::membership::initial_cluster(
                    &spec,
                    name,
                    &peer_urls,
                    initial_cluster_token,
                )?;
                let data_dir = data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{name}.lode")));
                lode::restore::restore(file, &data_dir, &cluster, name, !skip_hash_check)
                    .map(|restored| (restored, data_dir))
            });
        return match restored {
            Ok((restored, data_dir)) => {
                println!(
                    "Restored revision {} ({} keys) into {} as member {:x} of cluster {:x}",
                    restored.revision,
                    restored.keys,
                    data_dir.display(),
                    restored.identity.member_id,
                    restored.identity.cluster_id
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Watch {
        key,
        range_end,
        prefix,
        rev,
        prev_kv,
        progress_notify,
        exec,
    } = &cli.command
    {
        let (key, range_end) = match watch_range(key.clone(), range_end.clone(), *prefix, exec) {
            Ok(range) => range,
            Err(error) => return fail(&error),
        };
        let create = lode::watch::stream::CreateWatch {
            key,
            range_end,
            start_revision: *rev,
            progress_notify: *progress_notify,
            prev_kv: *prev_kv,
            ..Default::default()
        };
        let (endpoints, format, hex, exec) =
            (cli.endpoints.clone(), cli.write_out, cli.hex, exec.clone());
        return match on_executor(move || async move {
            watch(&endpoints, create, format, hex, &exec).await
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        };
    }
    if let Command::Check {
        command:
            CheckCommand::Perf {
                load,
                prefix,
                auto_compact,
                auto_defrag,
            },
    } = &cli.command
    {
        let profile = match perf::profile(load) {
            Ok(profile) => profile,
            Err(error) => return fail(&error),
        };
        let run = CheckPerf {
            endpoints: cli.endpoints.clone(),
            profile,
            prefix: prefix.clone(),
            auto_compact: *auto_compact,
            auto_defrag: *auto_defrag,
            command_timeout: cli.command_timeout,
        };
        return run_session(move |signals| async move { check_perf(run, signals).await });
    }
    if let Command::MakeMirror {
        destination,
        prefix,
        dest_prefix,
        no_dest_prefix,
        dest_cacert,
        dest_cert,
        dest_key,
        dest_insecure_transport,
        dest_user,
        dest_password,
    } = &cli.command
    {
        let security = flags::Security {
            cacert: dest_cacert.clone(),
            cert: dest_cert.clone(),
            key: dest_key.clone(),
            insecure_transport: *dest_insecure_transport,
            insecure_skip_tls_verify: false,
            user: dest_user.clone(),
            password: dest_password.clone(),
            discovery_srv: None,
        };
        if let Err(error) = security.check("dest-") {
            return fail(&error.to_string());
        }
        let _ = DEST_DIALER.set(Dialer::new(security));
        let Some(destination) = destination.clone() else {
            return fail("make-mirror takes one destination argument");
        };
        let dest_prefix = match (dest_prefix, no_dest_prefix) {
            (Some(_), true) => return fail(
                "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
            ),
            (Some(dest), false) => dest.clone(),
            (None, true) => String::new(),
            (None, false) => prefix.clone(),
        };
        let mirror = Mirror {
            source: cli.endpoints.clone(),
            destination,
            prefix: prefix.clone(),
            dest_prefix,
            command_timeout: cli.command_timeout,
        };
        return match on_executor(move || async move { make_mirror(mirror).await }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        };
    }
    if let Command::Lock { name, command, ttl } = &cli.command {
        let (endpoints, name, command, ttl) =
            (cli.endpoints.clone(), name.clone(), command.clone(), *ttl);
        return run_session(move |signals| async move {
            lock(&endpoints, name, command, ttl, signals).await
        });
    }
    if let Command::Elect {
        name,
        proposal,
        listen,
    } = &cli.command
    {
        let (endpoints, name, proposal, listen) = (
            cli.endpoints.clone(),
            name.clone(),
            proposal.clone(),
            *listen,
        );
        match (&proposal, listen) {
            (None, false) => {
                eprintln!("Error: no proposal argument but -l not set");
                return ExitCode::from(1);
            }
            (Some(_), true) => {
                eprintln!("Error: proposal given but -l is set");
                return ExitCode::from(1);
            }
            _ => {}
        }
        return run_session(move |signals| async move {
            elect(&endpoints, name, proposal, signals).await
        });
    }
    if let Command::Lease {
        command: LeaseCommand::KeepAlive { id, once },
    } = &cli.command
    {
        let id = match lease_id_arg(id) {
            Ok(id) => id,
            Err(error) => {
                eprintln!("Error: {error}");
                return ExitCode::from(1);
            }
        };
        let (endpoints, format, once) = (cli.endpoints.clone(), cli.write_out, *once);
        if matches!(format, Format::Table) {
            return fail("table not supported as output format by lease keep-alive");
        }
        let outcome = lode::executor::builder(Placement::Unbound)
            .spawn(move || async move { keep_alive(&endpoints, id, once, format).await })
            .map_err(|e| e.to_string())
            .and_then(|handle| handle.join().map_err(|e| e.to_string()))
            .and_then(|result| result);
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error}");
                ExitCode::from(1)
            }
        };
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
    // A snapshot streams for as long as it takes, as etcdctl's does; the commands that visit
    // several endpoints time each visit.
    let timeout = (!matches!(
        action,
        Action::SnapshotSave(_)
            | Action::Health { .. }
            | Action::Defrag { .. }
            | Action::EndpointStatus { .. }
            | Action::HashKv { .. }
    ))
    .then_some(command_timeout);
    let outcome = lode::executor::builder(Placement::Unbound).spawn(move || async move {
        let work = async move {
            match action {
                Action::Health { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    let checks = endpoints
                        .into_iter()
                        .map(|endpoint| endpoint_health(endpoint, command_timeout));
                    let list = futures::future::join_all(checks).await;
                    let text = match format {
                        Format::Json => output::json_health(&list).to_string() + "\n",
                        Format::Table => output::table_health(&list),
                        Format::Fields => output::fields_health(&list),
                        Format::Simple | Format::Protobuf => {
                            let (out, err) = output::simple_health(&list);
                            eprint!("{err}");
                            out
                        }
                    };
                    if list.iter().any(|health| !health.error.is_empty()) {
                        print!("{text}");
                        return Err("unhealthy cluster".into());
                    }
                    return Ok(text);
                }
                Action::Defrag { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return defrag(&endpoints, command_timeout).await;
                }
                Action::EndpointStatus { cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return endpoint_statuses(&endpoints, command_timeout, format).await;
                }
                Action::HashKv { revision, cluster } => {
                    let endpoints = endpoints_of(&endpoints, cluster, command_timeout).await?;
                    return endpoint_hashes(&endpoints, revision, command_timeout, format).await;
                }
                _ => {}
            }
            let (client, endpoint) = connect(&endpoints).await?;
            match action {
                Action::Health { .. }
                | Action::Defrag { .. }
                | Action::EndpointStatus { .. }
                | Action::HashKv { .. } => Err("handled above".into()),
                Action::Send(request, printer) => {
                    let response = client.request(&request).await.map_err(|e| match printer {
                        // etcdctl's words around the server's.
                        Printer::LeaseGranted => format!("failed to grant lease ({e})"),
                        Printer::LeaseRevoked(_) => format!("failed to revoke lease ({e})"),
                        _ => e.to_string(),
                    })?;
                    print(&printer, &response, format, hex)
                }
                Action::SnapshotSave(file) => {
                    save_snapshot(&client, &file).await?;
                    Ok(format!("Snapshot saved at {}\n", file.display()))
                }
                Action::AlarmList | Action::AlarmDisarm => {
                    let listed = alarm(&client, AlarmAction::Get, 0, AlarmType::None).await?;
                    let answer = if matches!(action, Action::AlarmList) {
                        listed
                    } else {
                        // etcdctl's disarm: deactivate each active alarm, answer what was cleared.
                        let mut cleared = AlarmResponse {
                            header: listed.header,
                            alarms: Vec::new(),
                        };
                        for member in &listed.alarms {
                            let answer = alarm(
                                &client,
                                AlarmAction::Deactivate,
                                member.member_id,
                                member.alarm,
                            )
                            .await?;
                            cleared.header = answer.header;
                            cleared.alarms.extend(answer.alarms);
                        }
                        cleared
                    };
                    match format {
                        Format::Json => Ok(output::json_alarms(&answer).to_string() + "\n"),
                        Format::Fields => Ok(output::fields_alarms(&answer)),
                        Format::Table | Format::Protobuf => {
                            Err("table format is only supported by endpoint status".into())
                        }
                        Format::Simple => Ok(output::simple_alarms(&answer)),
                    }
                }
                Action::Cluster {
                    request,
                    printer,
                    to_leader,
                } => {
                    let client = if to_leader {
                        connect_to_leader(&endpoints).await?
                    } else {
                        client
                    };
                    let response = client.request(&request).await.map_err(|e| e.to_string())?;
                    print_cluster(&printer, &response, format)
                }
                Action::Perf => {
                    let status = fetch_status(&client).await?;
                    match format {
                        Format::Simple => Ok(output::simple_perf(&endpoint, &status)),
                        Format::Json => {
                            Ok(output::json_perf(&endpoint, &status).to_string() + "\n")
                        }
                        Format::Table | Format::Fields | Format::Protobuf => Err(format!(
                            "{} not supported as output format by perf",
                            format!("{format:?}").to_ascii_lowercase()
                        )),
                    }
                }
            }
        };
        match timeout {
            None => work.await,
            Some(timeout) => deadline(timeout, work).await,
        }
    });
    let result = match outcome {
        Ok(handle) => handle.join().map_err(|e| e.to_string()).and_then(|r| r),
        Err(error) => Err(format!("cannot start an executor: {error}")),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // What was printed before the failure (a health report) is kept.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            fail(&error)
        }
    }
}

/// `endpoint status` of every endpoint, as etcdctl: those that do not answer are reported on
/// standard error and make the command fail after the others are printed.
async fn endpoint_statuses(
    endpoints: &[String],
    command_timeout: Duration,
    format: Format,
) -> Result<String, String> {
    let mut statuses = Vec::new();
    let mut failed = false;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            fetch_status(&client).await
        })
        .await;
        match answered {
            Ok(status) => statuses.push((endpoint.clone(), status)),
            Err(error) => {
                eprintln!("Failed to get the status of endpoint {endpoint} ({error})");
                failed = true;
            }
        }
    }
    let text = match format {
        Format::Simple | Format::Protobuf => statuses
            .iter()
            .map(|(endpoint, status)| output::simple_status(endpoint, status))
            .collect(),
        Format::Json => {
            let list: Vec<serde_json::Value> = statuses
                .iter()
                .map(|(endpoint, status)| output::json_status(endpoint, status)[0].clone())
                .collect();
            serde_json::Value::Array(list).to_string() + "\n"
        }
        Format::Table => output::table_statuses(&statuses),
        Format::Fields => statuses
            .iter()
            .map(|(endpoint, status)| output::fields_status(endpoint, status))
            .collect(),
    };
    if failed {
        print!("{text}");
        return Err(String::new());
    }
    Ok(text)
}

/// `endpoint hashkv` of every endpoint, as etcdctl.
async fn endpoint_hashes(
    endpoints: &[String],
    revision: i64,
    command_timeout: Duration,
    format: Format,
) -> Result<String, String> {
    let mut hashes = Vec::new();
    let mut last_error = None;
    for endpoint in endpoints {
        let answered = deadline(command_timeout, async {
            let (client, _) = connect(std::slice::from_ref(endpoint)).await?;
            client
                .request(&Request::HashKv(revision))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match answered {
            Ok(Response::HashKv {
                header,
                hash,
                compact_revision,
                hash_revision,
            }) => hashes.push((
                endpoint.clone(),
                header,
                hash,
                compact_revision,
                hash_revision,
            )),
            Ok(other) => last_error = Some(format!("unexpected response {other:?}")),
            Err(error) => {
                eprintln!("Failed to get the hash of endpoint {endpoint} ({error})");
                last_error = Some(error);
            }
        }
    }
    let text = match format {
        Format::Simple | Format::Protobuf => hashes
            .iter()
            .map(|(endpoint, header, hash, compact, hash_revision)| {
                output::hash_kv(
                    endpoint,
                    header,
                    *hash,
                    *compact,
                    *hash_revision,
                    false,
                    false,
                )
            })
            .collect(),
        Format::Json => {
            let list: Vec<serde_json::Value> = hashes
                .iter()
                .map(|(endpoint, header, hash, compact, hash_revision)| {
                    output::json_hash_kv(endpoint, header, *hash, *compact, *hash_revision)
                })
                .collect();
            serde_json::Value::Array(list).to_string() + "\n"
        }
        Format::Table => {
            let rows: Vec<(String, u32, i64, i64)> = hashes
                .iter()
                .map(|(endpoint, _, hash, compact, hash_revision)| {
                    (endpoint.clone(), *hash, *hash_revision, *compact)
                })
                .collect();
            output::table_hash_kv(&rows)
        }
        Format::Fields => hashes
            .iter()
            .map(|(endpoint, header, hash, _, _)| output::fields_hash_kv(endpoint, header, *hash))
            .collect(),
    };
    if let Some(error) = last_error {
        print!("{text}");
        return Err(error);
    }
    Ok(text)
}

/// What `check perf` runs.
struct CheckPerf {
    endpoints: Vec<String>,
    profile: perf::Profile,
    prefix: String,
    auto_compact: bool,
    auto_defrag: bool,
    command_timeout: Duration,
}

/// Raises the soft limit of open files to the hard limit (`check perf --load xl` opens a
/// thousand connections).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A small xorshift source for the keys' random numbers.
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Xorshift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Xorshift((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `check perf`: etcdctl's run (a put every 1/limit seconds handed to whichever of the
/// clients is free, for 60 seconds or until interrupted), its cleanup and its verdict; the
/// exit status is 0 on PASS, 1 on FAIL.
async fn check_perf(run: CheckPerf, signals: Arc<AtomicBool>) -> Result<u8, String> {
    use futures::{SinkExt as _, StreamExt as _};
    use std::io::Write as _;
    if run.profile.clients > 900 {
        raise_open_files_limit();
    }
    let (first, endpoint) = connect(&run.endpoints).await?;
    let first = Rc::new(first);
    let mut clients = vec![first.clone()];
    while clients.len() < run.profile.clients {
        let (client, _) = connect(std::slice::from_ref(&endpoint)).await?;
        clients.push(Rc::new(client));
    }
    let options = requests::GetOptions {
        prefix: true,
        limit: 1,
        ..Default::default()
    };
    let existing = requests::range_request(&run.prefix, None, &options)?;
    let existing = deadline(run.command_timeout, async {
        first
            .request(&Request::Range(existing))
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    if matches!(&existing, Response::Range(r) if !r.kvs.is_empty()) {
        return Err(format!(
            "prefix {:?} has keys. Delete with 'lodectl del --prefix {}' first",
            run.prefix, run.prefix
        ));
    }

    let measured = Rc::new(std::cell::RefCell::new(perf::Measured::default()));
    let (mut sender, receiver) =
        futures::channel::mpsc::channel::<bytes::Bytes>(run.profile.clients);
    let receiver = Rc::new(futures::lock::Mutex::new(receiver));
    let value = bytes::Bytes::from(vec![0u8; perf::VALUE_SIZE]);
    let started = Instant::now();
    let mut workers = Vec::new();
    for client in &clients {
        let (client, receiver, measured, value) = (
            client.clone(),
            receiver.clone(),
            measured.clone(),
            value.clone(),
        );
        workers.push(glommio::spawn_local(async move {
            loop {
                let key = {
                    let mut receiver = receiver.lock().await;
                    receiver.next().await
                };
                let Some(key) = key else { return };
                let put = Request::Write(WriteRequest::Put(lode::mvcc::request::PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                }));
                let sent = Instant::now();
                let answer = client.request(&put).await;
                let latency = sent.elapsed().as_secs_f64();
                let mut measured = measured.borrow_mut();
                match answer {
                    Ok(_) => measured.latencies.push(latency),
                    Err(error) => *measured.errors.entry(error.to_string()).or_default() += 1,
                }
            }
        }));
    }
    // The rate limiter: the n-th put is due n/limit seconds after the start (a stall is
    // made up for at once, up to a second's worth).
    let interval = Duration::from_secs_f64(1.0 / run.profile.limit as f64);
    let run_for = Duration::from_secs(perf::DURATION_SECONDS);
    let mut random = Xorshift::seeded();
    let mut due = started;
    loop {
        let now = Instant::now();
        if now >= started + run_for || signals.load(Ordering::Relaxed) {
            break;
        }
        if due > now {
            glommio::timer::sleep(due - now).await;
        } else if now - due > Duration::from_secs(1) {
            due = now;
        }
        let key = bytes::Bytes::from(perf::key(&run.prefix, random.next()));
        if sender.send(key).await.is_err() {
            break;
        }
        due += interval;
    }
    drop(sender);
    for worker in workers {
        worker.await;
    }
    let mut measured = measured.take();
    measured.total_seconds = started.elapsed().as_secs_f64();

    // Cleanup, as etcdctl's: delete the prefix, then compact to that revision if asked.
    let delete = requests::delete_request(&run.prefix, None, true, false, false)?;
    let deleted = deadline(Duration::from_secs(30), async {
        first
            .request(&Request::Write(WriteRequest::DeleteRange(delete)))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match deleted {
        Err(error) => println!("FAIL: Cleanup failed during key deletion: ERROR({error})"),
        Ok(Response::Write(WriteResponse::DeleteRange(answer))) if run.auto_compact => {
            let revision = answer.header.revision;
            println!("Compacting with revision {revision}");
            let _ = std::io::stdout().flush();
            let compact = Request::Write(WriteRequest::Compact(CompactionRequest {
                revision,
                physical: true,
            }));
            deadline(Duration::from_secs(30), async {
                first.request(&compact).await.map_err(|e| e.to_string())
            })
            .await?;
            println!("Compacted with revision {revision}");
        }
        Ok(_) => {}
    }
    if run.auto_defrag {
        for endpoint in &run.endpoints {
            print!("{}", defrag_line(endpoint));
        }
    }
    let (text, ok) = perf::verdict(&measured, run.profile);
    print!("{text}");
    let _ = std::io::stdout().flush();
    Ok(if ok { 0 } else { 1 })
}

/// What `make-mirror` mirrors where.
struct Mirror {
    source: Vec<String>,
    destination: String,
    prefix: String,
    dest_prefix: String,
    command_timeout: Duration,
}

impl Mirror {
    /// A source key's name in the destination: the prefix replaced by the destination's.
    fn destination_key(&self, key: &[u8]) -> bytes::Bytes {
        let rest = key.strip_prefix(self.prefix.as_bytes()).unwrap_or(key);
        let mut out = self.dest_prefix.as_bytes().to_vec();
        out.extend_from_slice(rest);
        bytes::Bytes::from(out)
    }

    /// The source range: the prefix's keys, or every key when it is empty.
    fn range(&self) -> (bytes::Bytes, bytes::Bytes) {
        if self.prefix.is_empty() {
            (
                bytes::Bytes::from_static(&[0]),
                bytes::Bytes::from_static(&[0]),
            )
        } else {
            let key = bytes::Bytes::from(self.prefix.clone().into_bytes());
            let end = lode::mvcc::kv::prefix_range_end(&key);
            (key, end)
        }
    }
}

/// `make-mirror`: etcdctl's syncer. The keys at one revision are put to the destination in
/// pages of 1,000; then a watch from the next revision applies each revision's changes as
/// one txn. Every 30 seconds the number of keys synced so far is printed.
async fn make_mirror(mirror: Mirror) -> Result<(), String> {
    use std::io::Write as _;
    let dest_dialer = DEST_DIALER.get_or_init(|| Dialer::new(flags::Security::default()));
    let (destination, _) =
        connect_with(std::slice::from_ref(&mirror.destination), dest_dialer).await?;
    let (source, _) = connect(&mirror.source).await?;
    let total = Rc::new(Cell::new(0u64));
    let printed = total.clone();
    let _printer = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_secs(30)).await;
            println!("{}", printed.get());
            let _ = std::io::stdout().flush();
        }
    })
    .detach();
    let write = |request: WriteRequest| {
        let destination = &destination;
        async move {
            deadline(mirror.command_timeout, async {
                destination
                    .request(&Request::Write(request))
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
        }
    };

    // The revision to copy at: the header of a read of the prefix (etcdctl reads "foo" when
    // mirroring everything).
    let probe = if mirror.prefix.is_empty() {
        "foo".to_string()
    } else {
        mirror.prefix.clone()
    };
    let probe = Request::Range(lode::mvcc::request::RangeRequest {
        key: bytes::Bytes::from(probe.into_bytes()),
        ..Default::default()
    });
    let revision = match source.request(&probe).await.map_err(|e| e.to_string())? {
        Response::Range(answer) => answer.header.revision,
        other => return Err(format!("unexpected response {other:?}")),
    };
    let (mut key, range_end) = mirror.range();
    loop {
        let page = Request::Range(lode::mvcc::request::RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: 1_000,
            revision,
            ..Default::default()
        });
        let page = match source.request(&page).await.map_err(|e| e.to_string())? {
            Response::Range(answer) => answer,
            other => return Err(format!("unexpected response {other:?}")),
        };
        for kv in &page.kvs {
            write(WriteRequest::Put(lode::mvcc::request::PutRequest {
                key: mirror.destination_key(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            }))
            .await?;
            total.set(total.get() + 1);
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                key = bytes::Bytes::from(next);
            }
            _ => break,
        }
    }

    let (key, range_end) = mirror.range();
    let mut stream = source.watch();
    stream
        .send(lode::api::native::WatchRequest::Create(
            lode::watch::stream::CreateWatch {
                key,
                range_end,
                start_revision: revision + 1,
                ..Default::default()
            },
        ))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let (_, response) = stream.next().await.map_err(|e| e.to_string())?;
        if response.compact_revision != 0 {
            return Err("etcdserver: mvcc: required revision has been compacted".into());
        }
        if response.canceled {
            return Err(format!(
                "watch is canceled by the server: {}",
                response.cancel_reason
            ));
        }
        // One txn per revision, as etcdctl's mirror applies them.
        let mut ops = Vec::new();
        let mut last_revision = 0;
        for event in &response.events {
            if last_revision != 0 && event.kv.mod_revision > last_revision {
                let txn = lode::mvcc::request::TxnRequest {
                    success: std::mem::take(&mut ops),
                    ..Default::default()
                };
                write(WriteRequest::Txn(txn)).await?;
            }
            last_revision = event.kv.mod_revision;
            let key = mirror.destination_key(&event.kv.key);
            ops.push(match event.kind {
                lode::watch::EventKind::Put => {
                    lode::mvcc::request::RequestOp::Put(lode::mvcc::request::PutRequest {
                        key,
                        value: event.kv.value.clone(),
                        ..Default::default()
                    })
                }
                lode::watch::EventKind::Delete => lode::mvcc::request::RequestOp::DeleteRange(
                    lode::mvcc::request::DeleteRangeRequest {
                        key,
                        ..Default::default()
                    },
                ),
            });
            total.set(total.get() + 1);
        }
        if !ops.is_empty() {
            let txn = lode::mvcc::request::TxnRequest {
                success: ops,
                ..Default::default()
            };
            write(WriteRequest::Txn(txn)).await?;
        }
    }
}

/// etcdctl's form of a command line in errors: `["cmd" "arg"]`.
fn quoted_command(command: &[String]) -> String {
    let words: Vec<String> = command
        .iter()
        .map(|word| output::go_quote(word.as_bytes()))
        .collect();
    format!("[{}]", words.join(" "))
}

/// Runs the watch's command for one event, with etcdctl's variables (Go-quoted as etcdctl
/// sets them: `"PUT"`, `"key"`), and waits for it (polled: the connection's reader runs on
/// this thread).
async fn run_for_event(
    command: &[String],
    revision: i64,
    event: &lode::watch::Event,
) -> Result<(), String> {
    let Some((program, arguments)) = command.split_first() else {
        return Ok(());
    };
    let kind = match event.kind {
        lode::watch::EventKind::Put => "\"PUT\"",
        lode::watch::EventKind::Delete => "\"DELETE\"",
    };
    let spawned = std::process::Command::new(program)
        .args(arguments)
        .env("ETCD_WATCH_REVISION", revision.to_string())
        .env("ETCD_WATCH_EVENT_TYPE", kind)
        .env("ETCD_WATCH_KEY", output::go_quote(&event.kv.key))
        .env("ETCD_WATCH_VALUE", output::go_quote(&event.kv.value))
        .spawn();
    let failed = |error: String| {
        eprintln!("command {} error ({error})", quoted_command(command));
        // etcdctl exits 1 with that line only.
        Err(String::new())
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return failed(error.to_string()),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return failed(match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => "signal: killed".into(),
                })
            }
            Ok(None) => glommio::timer::sleep(Duration::from_millis(5)).await,
            Err(error) => return failed(error.to_string()),
        }
    }
}
