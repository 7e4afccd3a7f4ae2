//! Every flag of etcd 3.5's server (and the 3.6 spellings of those that lost their
//! `experimental-` prefix) and what lode does with it.
//!
//! Invariant (checked by tests): each entry marked `Serves` is a flag of lode's typed parser
//! with etcd's meaning; every other entry is not, and is either accepted with a notice that it
//! has no effect (true of bbolt's knobs, Go's runtime, the v2 API...) or accepted only at the
//! values that describe what lode does and refused otherwise with the reason. Security
//! settings lode does not serve (CORS, host checks) are never ignored: they are `Fixed` at the
//! values that leave the feature off.

/// What lode does with an etcd flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// A flag of lode's with etcd's meaning.
    Serves,
    /// Accepted, logged once as having no effect, for this reason.
    NoEffect(&'static str),
    /// Accepted only at these values (booleans as `true`/`false`); any other is refused.
    Fixed {
        accepts: &'static [&'static str],
        why: &'static str,
    },
}

/// One etcd flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtcdFlag {
    pub name: &'static str,
    /// A Go boolean flag: `--flag` alone means true, a value only after `=`.
    pub boolean: bool,
    pub treatment: Treatment,
}

const CORS: &str =
    "lode answers HTTP requests from any origin and host, as etcd's defaults do; a restriction \
     would be ignored, so it is refused";
const NO_V2: &str = "lode serves etcd's v3 API only (etcd 3.5 turns v2 off by default too)";
const NO_PROXY: &str = "lode has no v2 proxy mode";
const NO_DISCOVERY: &str = "lode bootstraps from --initial-cluster; discovery is not supported";
const BBOLT: &str =
    "a bbolt backend setting: lode keeps the keyspace in memory and its log on disk";
const NO_ROTATION: &str = "lode does not rotate log files; use logrotate with copytruncate";
const PURGE: &str =
    "lode removes log segments and snapshots itself once a newer snapshot covers them";

const fn serves(name: &'static str) -> EtcdFlag {
    EtcdFlag {
        name,
        boolean: false,
        treatment: Treatment::Serves,
    }
}

const fn serves_bool(name: &'static str) -> EtcdFlag {
    EtcdFlag {
        name,
        boolean: true,
        treatment: Treatment::Serves,
    }
}

const fn no_effect(name: &'static str, boolean: bool, why: &'static str) -> EtcdFlag {
    EtcdFlag {
        name,
        boolean,
        treatment: Treatment::NoEffect(why),
    }
}

const fn fixed(
    name: &'static str,
    boolean: bool,
    accepts: &'static [&'static str],
    why: &'static str,
) -> EtcdFlag {
    EtcdFlag {
        name,
        boolean,
        treatment: Treatment::Fixed { accepts, why },
    }
}

/// A string setting accepted only when empty.
const fn unset(name: &'static str, why: &'static str) -> EtcdFlag {
    fixed(name, false, &[""], why)
}

/// A boolean accepted only when false.
const fn off(name: &'static str, why: &'static str) -> EtcdFlag {
    fixed(name, true, &["false"], why)
}

/// etcd 3.5's server flags, in the order of its `--help`, then the 3.6 spellings.
pub static ETCD_FLAGS: &[EtcdFlag] = &[
    serves("config-file"),
    // Member.
    serves("name"),
    serves("data-dir"),
    serves("wal-dir"),
    serves("snapshot-count"),
    serves("heartbeat-interval"),
    serves("election-timeout"),
    no_effect(
        "initial-election-tick-advance",
        true,
        "a member that restarts waits out one election timeout before campaigning",
    ),
    serves("listen-peer-urls"),
    serves("listen-client-urls"),
    unset(
        "listen-client-http-urls",
        "separate HTTP-only client listeners are not supported: --listen-client-urls serves \
         gRPC, the JSON gateway and HTTP on each address",
    ),
    no_effect("max-snapshots", false, PURGE),
    no_effect("max-wals", false, PURGE),
    serves("quota-backend-bytes"),
    no_effect("backend-bbolt-freelist-type", false, BBOLT),
    no_effect("backend-batch-interval", false, BBOLT),
    no_effect("backend-batch-limit", false, BBOLT),
    serves("max-txn-ops"),
    serves("max-request-bytes"),
    serves("max-concurrent-streams"),
    no_effect(
        "grpc-keepalive-min-time",
        false,
        "lode answers client keep-alive pings at any rate (HTTP/2 holds one answer at a \
         time, so a flood costs no memory) and never sends GOAWAY too_many_pings",
    ),
    serves("grpc-keepalive-interval"),
    serves("grpc-keepalive-timeout"),
    no_effect(
        "socket-reuse-port",
        true,
        "lode's cores always share each client address with SO_REUSEPORT, and one process \
         owns an address",
    ),
    no_effect(
        "socket-reuse-address",
        true,
        "lode always binds with SO_REUSEADDR",
    ),
    no_effect(
        "raft-read-timeout",
        false,
        "lode's peer connections are checked by Raft's heartbeats",
    ),
    no_effect(
        "raft-write-timeout",
        false,
        "lode's peer connections are checked by Raft's heartbeats",
    ),
    // Clustering.
    serves("initial-advertise-peer-urls"),
    serves("initial-cluster"),
    serves("initial-cluster-state"),
    serves("initial-cluster-token"),
    serves("advertise-client-urls"),
    unset("discovery", NO_DISCOVERY),
    fixed(
        "discovery-fallback",
        false,
        &["proxy", "exit"],
        NO_DISCOVERY,
    ),
    unset("discovery-proxy", NO_DISCOVERY),
    unset("discovery-srv", NO_DISCOVERY),
    unset("discovery-srv-name", NO_DISCOVERY),
    fixed(
        "strict-reconfig-check",
        true,
        &["true"],
        "lode always refuses membership changes that could lose the quorum",
    ),
    serves_bool("pre-vote"),
    serves("auto-compaction-retention"),
    serves("auto-compaction-mode"),
    fixed("enable-v2", true, &["false"], NO_V2),
    unset("experimental-enable-v2v3", NO_V2),
    fixed(
        "v2-deprecation",
        false,
        &["not-yet", "write-only", "write-only-drop-data", "gone"],
        NO_V2,
    ),
    // Proxy (v2).
    fixed("proxy", false, &["off"], NO_PROXY),
    no_effect("proxy-failure-wait", false, NO_PROXY),
    no_effect("proxy-refresh-interval", false, NO_PROXY),
    no_effect("proxy-dial-timeout", false, NO_PROXY),
    no_effect("proxy-write-timeout", false, NO_PROXY),
    no_effect("proxy-read-timeout", false, NO_PROXY),
    // Security.
    serves("cert-file"),
    serves("key-file"),
    serves("client-cert-file"),
    serves("client-key-file"),
    serves_bool("client-cert-auth"),
    serves("client-crl-file"),
    serves("client-cert-allowed-hostname"),
    serves("trusted-ca-file"),
    serves_bool("auto-tls"),
    serves("peer-cert-file"),
    serves("peer-key-file"),
    serves("peer-client-cert-file"),
    serves("peer-client-key-file"),
    serves_bool("peer-client-cert-auth"),
    serves("peer-trusted-ca-file"),
    serves_bool("peer-auto-tls"),
    serves("self-signed-cert-validity"),
    serves("peer-crl-file"),
    serves("peer-cert-allowed-cn"),
    serves("peer-cert-allowed-hostname"),
    serves("cipher-suites"),
    serves_bool("experimental-peer-skip-client-san-verification"),
    serves("tls-min-version"),
    serves("tls-max-version"),
    fixed("cors", false, &["", "*"], CORS),
    fixed("host-whitelist", false, &["", "*"], CORS),
    // Auth.
    serves("auth-token"),
    serves("bcrypt-cost"),
    serves("auth-token-ttl"),
    // Profiling and monitoring.
    no_effect(
        "enable-pprof",
        true,
        "Go's profiler does not exist in lode; `lodectl perf` shows where commits spend time",
    ),
    no_effect(
        "metrics",
        false,
        "lode exports one set of metrics (etcd's names where the meaning is the same)",
    ),
    serves("listen-metrics-urls"),
    // Logging.
    serves("logger"),
    serves("log-outputs"),
    serves("log-level"),
    off("enable-log-rotation", NO_ROTATION),
    no_effect("log-rotation-config-json", false, NO_ROTATION),
    // Distributed tracing.
    off(
        "experimental-enable-distributed-tracing",
        "lode does not export OpenTelemetry traces",
    ),
    no_effect(
        "experimental-distributed-tracing-address",
        false,
        "lode does not export OpenTelemetry traces",
    ),
    no_effect(
        "experimental-distributed-tracing-service-name",
        false,
        "lode does not export OpenTelemetry traces",
    ),
    no_effect(
        "experimental-distributed-tracing-instance-id",
        false,
        "lode does not export OpenTelemetry traces",
    ),
    no_effect(
        "experimental-distributed-tracing-sampling-rate",
        false,
        "lode does not export OpenTelemetry traces",
    ),
    // Version and help.
    serves_bool("version"),
    // Other.
    fixed(
        "enable-grpc-gateway",
        true,
        &["true"],
        "lode always serves etcd's JSON gateway on its client URLs",
    ),
    // Experimental (3.5 spellings).
    no_effect(
        "experimental-initial-corrupt-check",
        true,
        "lode verifies the checksum of every log record and snapshot block it loads at start; \
         it does not compare hashes with the other members before serving",
    ),
    no_effect(
        "experimental-corrupt-check-time",
        false,
        "members' hashes are compared on demand (lodectl endpoint hashkv), not periodically",
    ),
    no_effect(
        "experimental-compact-hash-check-enabled",
        true,
        "members' hashes are compared on demand (lodectl endpoint hashkv), not periodically",
    ),
    no_effect(
        "experimental-compact-hash-check-time",
        false,
        "members' hashes are compared on demand (lodectl endpoint hashkv), not periodically",
    ),
    no_effect(
        "experimental-enable-lease-checkpoint",
        true,
        "lode keeps every lease's remaining TTL across leader changes and restarts always",
    ),
    no_effect(
        "experimental-enable-lease-checkpoint-persist",
        true,
        "lode keeps every lease's remaining TTL across leader changes and restarts always",
    ),
    no_effect(
        "experimental-compaction-batch-limit",
        false,
        "lode compacts in small steps between other work on every core",
    ),
    no_effect(
        "experimental-compaction-sleep-interval",
        false,
        "lode compacts in small steps between other work on every core",
    ),
    serves("experimental-watch-progress-notify-interval"),
    no_effect(
        "experimental-downgrade-check-time",
        false,
        "lode has no downgrade process",
    ),
    no_effect(
        "experimental-warning-apply-duration",
        false,
        "lode counts applies slower than etcd's default 100ms (etcd_server_slow_apply_total) and times every commit stage (lodectl perf)",
    ),
    no_effect(
        "experimental-warning-unary-request-duration",
        false,
        "lode reports slow commits through its commit-stage histograms (lodectl perf)",
    ),
    no_effect(
        "experimental-memory-mlock",
        true,
        "lode does not lock its memory",
    ),
    no_effect(
        "experimental-txn-mode-write-with-shared-buffer",
        true,
        BBOLT,
    ),
    no_effect(
        "experimental-stop-grpc-service-on-defrag",
        true,
        "lode never defragments (freed versions are freed memory)",
    ),
    no_effect(
        "experimental-bootstrap-defrag-threshold-megabytes",
        false,
        "lode never defragments (freed versions are freed memory)",
    ),
    serves("experimental-snapshot-catchup-entries"),
    fixed(
        "experimental-max-learners",
        false,
        &["1"],
        "lode admits one learner at a time",
    ),
    no_effect(
        "experimental-wait-cluster-ready-timeout",
        false,
        "lode serves serializable reads at once and queues the rest until a leader is known",
    ),
    // Unsafe.
    off(
        "unsafe-no-fsync",
        "lode always makes a write durable before acknowledging it",
    ),
    off(
        "force-new-cluster",
        "recreating a cluster from one member's data is done offline: lodectl snapshot \
         restore --initial-cluster ...",
    ),
    // Flags etcd 3.5 still accepts and ignores (etcd 0.4's).
    no_effect("cluster-active-size", false, "etcd 0.4's flag"),
    no_effect("cluster-remove-delay", false, "etcd 0.4's flag"),
    no_effect("cluster-sync-interval", false, "etcd 0.4's flag"),
    no_effect("config", false, "etcd 0.4's flag"),
    no_effect("force", true, "etcd 0.4's flag"),
    no_effect("max-result-buffer", false, "etcd 0.4's flag"),
    no_effect("max-retry-attempts", false, "etcd 0.4's flag"),
    no_effect("peer-heartbeat-interval", false, "etcd 0.4's flag"),
    no_effect("peer-election-timeout", false, "etcd 0.4's flag"),
    no_effect("retry-interval", false, "etcd 0.4's flag"),
    no_effect("snapshot", true, "etcd 0.4's flag"),
    no_effect("v", true, "etcd 0.4's flag"),
    no_effect("vv", true, "etcd 0.4's flag"),
    // etcd 3.4's flags that 3.5 dropped, and 3.6's feature gates: config files written for
    // those versions still start.
    no_effect(
        "debug",
        true,
        "etcd 3.4's flag (3.5 dropped it); use --log-level debug",
    ),
    no_effect(
        "log-package-levels",
        false,
        "etcd 3.4's flag (3.5 dropped it); use --log-level",
    ),
    no_effect(
        "feature-gates",
        false,
        "etcd 3.6's feature gates name etcd's own experiments",
    ),
    // etcd 3.6's spellings of flags that lost their `experimental-` prefix.
    serves("watch-progress-notify-interval"),
    serves("snapshot-catchup-entries"),
    fixed(
        "max-learners",
        false,
        &["1"],
        "lode admits one learner at a time",
    ),
    no_effect(
        "compaction-batch-limit",
        false,
        "lode compacts in small steps between other work on every core",
    ),
    no_effect(
        "compaction-sleep-interval",
        false,
        "lode compacts in small steps between other work on every core",
    ),
    no_effect(
        "warning-apply-duration",
        false,
        "lode counts applies slower than etcd's default 100ms (etcd_server_slow_apply_total) and times every commit stage (lodectl perf)",
    ),
    no_effect(
        "warning-unary-request-duration",
        false,
        "lode reports slow commits through its commit-stage histograms (lodectl perf)",
    ),
    no_effect(
        "corrupt-check-time",
        false,
        "members' hashes are compared on demand (lodectl endpoint hashkv), not periodically",
    ),
    no_effect(
        "compact-hash-check-time",
        false,
        "members' hashes are compared on demand (lodectl endpoint hashkv), not periodically",
    ),
];

/// The YAML keys (etcd's `embed.Config`) whose values are Go durations: a bare integer there
/// is nanoseconds.
const DURATION_KEYS: &[&str] = &[
    "backend-batch-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-corrupt-check-time",
    "experimental-compact-hash-check-time",
    "experimental-compaction-sleep-interval",
    "experimental-watch-progress-notify-interval",
    "experimental-downgrade-check-time",
    "experimental-warning-apply-duration",
    "experimental-warning-unary-request-duration",
    "experimental-wait-cluster-ready-timeout",
    "watch-progress-notify-interval",
    "compaction-sleep-interval",
    "warning-apply-duration",
    "warning-unary-request-duration",
    "corrupt-check-time",
    "compact-hash-check-time",
];

/// etcd's YAML keys spelled differently from their flags.
pub const YAML_KEY_ALIASES: &[(&str, &str)] = &[(
    "experimental-snapshot-catch-up-entries",
    "experimental-snapshot-catchup-entries",
)];

/// The entry for `name`.
pub fn lookup(name: &str) -> Option<&'static EtcdFlag> {
    ETCD_FLAGS.iter().find(|flag| flag.name == name)
}

/// Whether the YAML key `key` holds a Go duration.
pub fn is_duration(key: &str) -> bool {
    DURATION_KEYS.contains(&key)
}

/// The table of etcd's flags and what lode does with each, as README.md shows it.
pub fn markdown_table() -> String {
    let mut table = String::from("| etcd flag | in lode |\n| --- | --- |\n");
    for flag in ETCD_FLAGS {
        let name = if flag.boolean {
            format!("`--{}[=true\\|false]`", flag.name)
        } else {
            format!("`--{}`", flag.name)
        };
        let what = match flag.treatment {
            Treatment::Serves => "served, with etcd's meaning".to_string(),
            Treatment::NoEffect(why) => format!("accepted, no effect (said at start): {why}"),
            Treatment::Fixed { accepts, why } => {
                let values: Vec<String> = accepts
                    .iter()
                    .map(|v| {
                        if v.is_empty() {
                            "unset".to_string()
                        } else {
                            format!("`{v}`")
                        }
                    })
                    .collect();
                format!("only {}, else refused: {why}", values.join(" or "))
            }
        };
        table.push_str(&format!("| {name} | {what} |\n"));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's flag table is out of date; it should read:\n{table}"
        );
    }

    #[test]
    fn each_flag_is_listed_once_and_fixed_booleans_accept_only_booleans() {
        for (i, flag) in ETCD_FLAGS.iter().enumerate() {
            assert!(
                !ETCD_FLAGS[..i].iter().any(|f| f.name == flag.name),
                "{} listed twice",
                flag.name
            );
            if let (true, Treatment::Fixed { accepts, .. }) = (flag.boolean, flag.treatment) {
                assert!(
                    accepts.iter().all(|v| *v == "true" || *v == "false"),
                    "{}",
                    flag.name
                );
            }
        }
    }
}
