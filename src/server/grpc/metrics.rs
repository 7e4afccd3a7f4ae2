//! The `grpc_server_*` counters: calls started and answered, per method and status code, as
//! etcd exposes them (go-grpc-prometheus's names and labels).

use std::sync::atomic::{AtomicU64, Ordering};

/// A gRPC method lode serves, for `grpc_server_*` metrics.
#[derive(Clone, Copy, Debug)]
pub(in crate::server) struct GrpcMethod {
    service: &'static str,
    method: &'static str,
    /// go-grpc-prometheus's `grpc_type`.
    kind: &'static str,
}

impl GrpcMethod {
    const fn unary(service: &'static str, method: &'static str) -> GrpcMethod {
        GrpcMethod {
            service,
            method,
            kind: "unary",
        }
    }

    const fn server_stream(service: &'static str, method: &'static str) -> GrpcMethod {
        GrpcMethod {
            service,
            method,
            kind: "server_stream",
        }
    }

    const fn bidi_stream(service: &'static str, method: &'static str) -> GrpcMethod {
        GrpcMethod {
            service,
            method,
            kind: "bidi_stream",
        }
    }

    /// True when `path` (`/service/method`) names this method.
    pub(in crate::server) fn serves(&self, path: &str) -> bool {
        path.strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| service == self.service && method == self.method)
    }
}

const KV: &str = "etcdserverpb.KV";
const CLUSTER: &str = "etcdserverpb.Cluster";
const MAINTENANCE: &str = "etcdserverpb.Maintenance";
const AUTH: &str = "etcdserverpb.Auth";
const WATCH: &str = "etcdserverpb.Watch";
const LEASE: &str = "etcdserverpb.Lease";
const LOCK: &str = "v3lockpb.Lock";
const ELECTION: &str = "v3electionpb.Election";
const HEALTH: &str = "grpc.health.v1.Health";

/// Every method served.
pub(in crate::server) const GRPC_METHODS: [GrpcMethod; 50] = [
    GrpcMethod::unary(KV, "Range"),
    GrpcMethod::unary(KV, "Put"),
    GrpcMethod::unary(KV, "DeleteRange"),
    GrpcMethod::unary(KV, "Txn"),
    GrpcMethod::unary(KV, "Compact"),
    GrpcMethod::unary(CLUSTER, "MemberAdd"),
    GrpcMethod::unary(CLUSTER, "MemberRemove"),
    GrpcMethod::unary(CLUSTER, "MemberUpdate"),
    GrpcMethod::unary(CLUSTER, "MemberList"),
    GrpcMethod::unary(CLUSTER, "MemberPromote"),
    GrpcMethod::unary(MAINTENANCE, "Alarm"),
    GrpcMethod::unary(MAINTENANCE, "Status"),
    GrpcMethod::unary(MAINTENANCE, "Defragment"),
    GrpcMethod::unary(MAINTENANCE, "Hash"),
    GrpcMethod::unary(MAINTENANCE, "HashKV"),
    GrpcMethod::server_stream(MAINTENANCE, "Snapshot"),
    GrpcMethod::unary(MAINTENANCE, "MoveLeader"),
    GrpcMethod::unary(MAINTENANCE, "Downgrade"),
    GrpcMethod::unary(AUTH, "AuthEnable"),
    GrpcMethod::unary(AUTH, "AuthDisable"),
    GrpcMethod::unary(AUTH, "AuthStatus"),
    GrpcMethod::unary(AUTH, "Authenticate"),
    GrpcMethod::unary(AUTH, "UserAdd"),
    GrpcMethod::unary(AUTH, "UserGet"),
    GrpcMethod::unary(AUTH, "UserList"),
    GrpcMethod::unary(AUTH, "UserDelete"),
    GrpcMethod::unary(AUTH, "UserChangePassword"),
    GrpcMethod::unary(AUTH, "UserGrantRole"),
    GrpcMethod::unary(AUTH, "UserRevokeRole"),
    GrpcMethod::unary(AUTH, "RoleAdd"),
    GrpcMethod::unary(AUTH, "RoleGet"),
    GrpcMethod::unary(AUTH, "RoleList"),
    GrpcMethod::unary(AUTH, "RoleDelete"),
    GrpcMethod::unary(AUTH, "RoleGrantPermission"),
    GrpcMethod::unary(AUTH, "RoleRevokePermission"),
    GrpcMethod::unary(HEALTH, "Check"),
    GrpcMethod::server_stream(HEALTH, "Watch"),
    GrpcMethod::bidi_stream(WATCH, "Watch"),
    GrpcMethod::unary(LEASE, "LeaseGrant"),
    GrpcMethod::unary(LEASE, "LeaseRevoke"),
    GrpcMethod::bidi_stream(LEASE, "LeaseKeepAlive"),
    GrpcMethod::unary(LEASE, "LeaseTimeToLive"),
    GrpcMethod::unary(LEASE, "LeaseLeases"),
    GrpcMethod::unary(LOCK, "Lock"),
    GrpcMethod::unary(LOCK, "Unlock"),
    GrpcMethod::unary(ELECTION, "Campaign"),
    GrpcMethod::unary(ELECTION, "Proclaim"),
    GrpcMethod::unary(ELECTION, "Leader"),
    GrpcMethod::server_stream(ELECTION, "Observe"),
    GrpcMethod::unary(ELECTION, "Resign"),
];

/// gRPC's status codes by number, as Go's gRPC names them in metrics.
pub(in crate::server) const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Calls started, per method (shared by every core: one relaxed atomic add per call).
pub(in crate::server) static GRPC_STARTED: [AtomicU64; GRPC_METHODS.len()] =
    [const { AtomicU64::new(0) }; GRPC_METHODS.len()];

/// Calls answered, per method and status code.
pub(in crate::server) static GRPC_HANDLED: [[AtomicU64; GRPC_CODES.len()]; GRPC_METHODS.len()] =
    [const { [const { AtomicU64::new(0) }; GRPC_CODES.len()] }; GRPC_METHODS.len()];

/// Adds the gRPC counters (etcd's `grpc_server_started_total` and `grpc_server_handled_total`,
/// with go-grpc-prometheus's labels) to a `/metrics` exposition; methods never called are left
/// out.
pub fn expose_grpc(out: &mut crate::metrics::Exposition) {
    let kind = |method: &GrpcMethod| method.kind;
    // Each metric's samples together, as the text format requires.
    for (index, method) in GRPC_METHODS.iter().enumerate() {
        let started = GRPC_STARTED[index].load(Ordering::Relaxed);
        if started > 0 {
            out.counter(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &[
                    ("grpc_method", method.method),
                    ("grpc_service", method.service),
                    ("grpc_type", kind(method)),
                ],
                started,
            );
        }
    }
    for (index, method) in GRPC_METHODS.iter().enumerate() {
        for (code, name) in GRPC_CODES.iter().enumerate() {
            let handled = GRPC_HANDLED[index][code].load(Ordering::Relaxed);
            if handled > 0 {
                out.counter(
                    "grpc_server_handled_total",
                    "Total number of RPCs completed on the server, regardless of success or \
                     failure.",
                    &[
                        ("grpc_code", name),
                        ("grpc_method", method.method),
                        ("grpc_service", method.service),
                        ("grpc_type", kind(method)),
                    ],
                    handled,
                );
            }
        }
    }
}
