//! The `grpc_server_*` counters: calls started and answered, per method and status code, as
//! etcd exposes them (go-grpc-prometheus's names and labels).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

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
/// with go-grpc-prometheus's labels) to a `/metrics` exposition. Every method and code is
/// there from the start, at 0, as etcd initialises them: a dashboard's "started minus handled"
/// must have both series to subtract.
pub fn expose_grpc(out: &mut crate::metrics::Exposition) {
    out.counter(
        "etcd_network_client_grpc_sent_bytes_total",
        "The total number of bytes sent to grpc clients.",
        &[],
        CLIENT_SENT_BYTES.load(Ordering::Relaxed),
    );
    out.counter(
        "etcd_network_client_grpc_received_bytes_total",
        "The total number of bytes received from grpc clients.",
        &[],
        CLIENT_RECEIVED_BYTES.load(Ordering::Relaxed),
    );
    let kind = |method: &GrpcMethod| method.kind;
    // Each metric's samples together, as the text format requires.
    for (index, method) in GRPC_METHODS.iter().enumerate() {
        out.counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &[
                ("grpc_method", method.method),
                ("grpc_service", method.service),
                ("grpc_type", kind(method)),
            ],
            GRPC_STARTED[index].load(Ordering::Relaxed),
        );
    }
    for (index, method) in GRPC_METHODS.iter().enumerate() {
        for (code, name) in GRPC_CODES.iter().enumerate() {
            out.counter(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &[
                    ("grpc_code", name),
                    ("grpc_method", method.method),
                    ("grpc_service", method.service),
                    ("grpc_type", kind(method)),
                ],
                GRPC_HANDLED[index][code].load(Ordering::Relaxed),
            );
        }
    }
}

/// Bytes of gRPC messages sent to and received from clients (etcd's
/// `etcd_network_client_grpc_{sent,received}_bytes_total`), each message counted with its
/// 5-byte gRPC prefix as it crosses the stream.
pub(in crate::server) static CLIENT_SENT_BYTES: AtomicU64 = AtomicU64::new(0);
/// See `CLIENT_SENT_BYTES`.
pub(in crate::server) static CLIENT_RECEIVED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Adds a data frame's bytes to `counter`.
fn count_data<D: bytes::Buf>(frame: &Frame<D>, counter: &AtomicU64) {
    if let Some(data) = frame.data_ref() {
        counter.fetch_add(data.remaining() as u64, Ordering::Relaxed);
    }
}

/// A gRPC request's body, counting the bytes that arrive in `CLIENT_RECEIVED_BYTES`.
pub(in crate::server) struct ReceivedBody<B>(pub(in crate::server) B);

impl<B: Body + Unpin> Body for ReceivedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.0).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            count_data(frame, &CLIENT_RECEIVED_BYTES);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Calls answered so far: (method, status code name, count) for every method and code.
pub(in crate::server) fn handled_counts() -> Vec<(&'static str, &'static str, u64)> {
    let mut counts = Vec::with_capacity(GRPC_METHODS.len() * GRPC_CODES.len());
    for (index, method) in GRPC_METHODS.iter().enumerate() {
        for (code, name) in GRPC_CODES.iter().enumerate() {
            counts.push((
                method.method,
                *name,
                GRPC_HANDLED[index][code].load(Ordering::Relaxed),
            ));
        }
    }
    counts
}

/// The status code a `grpc-status` header or trailer names (`None`: absent or not a code).
fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|code| *code < GRPC_CODES.len())
}

/// A call's response body that counts the call in `grpc_server_handled_total` when it ends, as
/// go-grpc-prometheus does: a stream (a watch, a keep-alive) when its trailers go out, not when
/// it opens, so "started minus handled" is the number of streams open. A call whose status came
/// in the headers (trailers-only) ends there; a body dropped before its end (the client went
/// away) counts as `Canceled`.
pub(in crate::server) struct HandledBody<B> {
    inner: B,
    /// The method called (an index of `GRPC_METHODS`); `None` for a path lode does not serve,
    /// which is not counted.
    method: Option<usize>,
    counted: bool,
}

impl<B> HandledBody<B> {
    /// Wraps the body of a response to `method` whose headers are `headers`.
    pub(in crate::server) fn new(
        inner: B,
        method: Option<usize>,
        headers: &http::HeaderMap,
    ) -> Self {
        let mut body = HandledBody {
            inner,
            method,
            counted: false,
        };
        if let Some(code) = status_code(headers) {
            body.count(code);
        }
        body
    }

    fn count(&mut self, code: usize) {
        if let (false, Some(method)) = (self.counted, self.method) {
            GRPC_HANDLED[method][code].fetch_add(1, Ordering::Relaxed);
        }
        self.counted = true;
    }
}

/// `Unknown`: a body that ended without saying how.
const UNKNOWN: usize = 2;
/// `Canceled`: a body dropped before its end.
const CANCELED: usize = 1;

impl<B: Body + Unpin> Body for HandledBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                count_data(frame, &CLIENT_SENT_BYTES);
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or(UNKNOWN);
                    self.count(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.count(UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for HandledBody<B> {
    fn drop(&mut self) {
        self.count(CANCELED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn handled(method: usize, code: usize) -> u64 {
        GRPC_HANDLED[method][code].load(Ordering::Relaxed)
    }

    fn method(name: &str) -> usize {
        GRPC_METHODS
            .iter()
            .position(|m| m.method == name)
            .expect("method")
    }

    #[test]
    fn a_call_is_counted_once_when_it_ends() {
        let runtime = futures::executor::block_on;
        // A stream: not counted while it runs, counted by its trailers' status.
        let watch = method("Watch");
        let before = handled(watch, 0);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(bytes::Bytes::from_static(b"event"))),
            Ok(Frame::trailers(trailers)),
        ];
        let stream = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let mut body = HandledBody::new(stream, Some(watch), &http::HeaderMap::new());
        runtime(async {
            assert!(body.frame().await.is_some());
            assert_eq!(handled(watch, 0), before, "counted while open");
            while body.frame().await.is_some() {}
        });
        drop(body);
        assert_eq!(handled(watch, 0), before + 1);

        // Trailers-only: counted from the headers, once.
        let put = method("Put");
        let before = handled(put, 9);
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("9"));
        drop(HandledBody::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            Some(put),
            &headers,
        ));
        assert_eq!(handled(put, 9), before + 1);

        // Dropped before its end: the client went away.
        let keep_alive = method("LeaseKeepAlive");
        let before = handled(keep_alive, CANCELED);
        drop(HandledBody::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            Some(keep_alive),
            &http::HeaderMap::new(),
        ));
        assert_eq!(handled(keep_alive, CANCELED), before + 1);
    }
}
