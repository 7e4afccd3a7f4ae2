//! etcd's v3 gRPC API, served on the cores that own the connections.
//!
//! hyper's HTTP/2 server runs each connection on the core that accepted it (glommio
//! `spawn_local`, no Tokio runtime), and tonic's generated services decode requests into
//! lode's model ([`crate::api::etcd`]), which then travels the same path as the native
//! protocol's: reads to the shards, writes encoded as a native request frame (the log's entry
//! format) and proposed.
//!
//! tonic wants `Send` handler futures while lode's per-core state is `Rc`: a handler hands
//! its work to a task spawned on the same core ([`on_core`]) and awaits only a `Send` oneshot,
//! so nothing core-local is held across an `.await` in the handler itself.
//!
//! One file per service: `kv`, `watch`, `lease`, `cluster`, `maintenance`, `auth` and
//! `health` (Lock and Election are served from `server::concurrency`). This module holds what
//! they share (the core's node, the error mapping, a call's credentials); the connection's
//! wiring (gRPC calls to these services, other HTTP/2 requests to `server::http`) is
//! `server::h2`; hyper's runtime on glommio is in `transport`, the `grpc_server_*` counters in
//! `metrics`.

mod auth;
mod cluster;
mod health;
mod kv;
mod lease;
mod maintenance;
mod metrics;
mod transport;
mod watch;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use tonic::{Code, Status};

use super::admission::CallMeta;
use super::node::Node;
use super::Limits;
use crate::auth::Credentials;
use crate::consensus::ServerError;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use health::HealthService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use metrics::expose_grpc;
pub use watch::WatchService;

pub(super) use lease::serve_keep_alives;
pub(super) use transport::GlommioIo;
pub(super) use watch::serve_watch_stream;

pub(super) use metrics::{
    handled_counts, HandledBody, ReceivedBody, GRPC_CODES, GRPC_METHODS, GRPC_STARTED,
};
pub(super) use transport::{CoreTimer, LocalExecutor};

thread_local! {
    /// This core's node, for the handlers running on it.
    static CORE_NODE: RefCell<Option<(Rc<Node>, Limits)>> = const { RefCell::new(None) };
}

/// Makes `node` the one this core's gRPC handlers serve from.
pub fn install(node: Rc<Node>, limits: Limits) {
    CORE_NODE.with(|slot| *slot.borrow_mut() = Some((node, limits)));
}

/// An error as the gRPC status etcd answers with (code and message).
pub(super) fn status(error: ServerError) -> Status {
    Status::new(Code::from_i32(error.grpc_code() as i32), error.to_string())
}

/// Runs `work` on this core with its node, from a handler whose future must be `Send`.
pub(super) async fn on_core<T, W, F>(work: W) -> Result<T, Status>
where
    T: Send + 'static,
    W: FnOnce(Rc<Node>, Limits) -> F + Send + 'static,
    F: Future<Output = Result<T, ServerError>> + 'static,
{
    let (sender, receiver) = futures::channel::oneshot::channel();
    {
        let Some((node, limits)) = CORE_NODE.with(|slot| slot.borrow().clone()) else {
            return Err(status(ServerError::Stopped));
        };
        glommio::spawn_local(async move {
            let _ = sender.send(work(node, limits).await);
        })
        .detach();
    }
    match receiver.await {
        Ok(result) => result.map_err(status),
        Err(_) => Err(status(ServerError::Stopped)),
    }
}

/// Admission's stage 0 (etcd's interceptors: a learner's refusals, `hasleader` without a
/// leader) for `request`, in the handler itself, with the gRPC code etcd's interceptors answer
/// with: for services whose handlers answer every later refusal with a code of their own.
pub(super) fn intercept(
    meta: &CallMeta,
    request: &crate::api::native::Request,
) -> Result<(), Status> {
    let Some((node, _)) = CORE_NODE.with(|slot| slot.borrow().clone()) else {
        return Err(status(ServerError::Stopped));
    };
    super::admission::intercept(&node, meta, request).map_err(status)
}

/// `on_core` for work that waits on others (a lock, a campaign): `work` also gets a future
/// that resolves if the caller goes away (the handler is dropped) before it is done.
pub(super) async fn on_core_until_cancelled<T, W, F>(work: W) -> Result<T, Status>
where
    T: Send + 'static,
    W: FnOnce(Rc<Node>, Limits, futures::channel::oneshot::Receiver<()>) -> F + Send + 'static,
    F: Future<Output = Result<T, ServerError>> + 'static,
{
    // Never sent on: dropped with this handler, which the work sees as its cancellation.
    let (alive, gone) = futures::channel::oneshot::channel::<()>();
    let outcome = on_core(move |node, limits| work(node, limits, gone)).await;
    drop(alive);
    outcome
}

/// True when the call carries etcd's `hasleader` metadata (exactly "true", as etcd compares
/// it): its client wants it refused, and a stream ended, rather than served or left waiting
/// while there is no leader (clientv3's `WithRequireLeader`, set on every call or on watch
/// and keep-alive streams).
fn requires_leader<T>(request: &tonic::Request<T>) -> bool {
    request
        .metadata()
        .get("hasleader")
        .and_then(|value| value.to_str().ok())
        == Some("true")
}

/// What a call carries besides its message, for the admission path: its credentials and its
/// `hasleader` metadata.
pub(super) fn call_meta<T>(request: &tonic::Request<T>) -> CallMeta {
    CallMeta {
        credentials: credentials(request),
        require_leader: requires_leader(request),
    }
}

/// What a call presents: its token (metadata `token`, or `authorization` with or without
/// "Bearer ", as etcd reads them) and the CN of its connection's verified client certificate.
fn credentials<T>(request: &tonic::Request<T>) -> Credentials {
    let metadata = request.metadata();
    let token = metadata
        .get("token")
        .or_else(|| metadata.get("authorization"))
        .and_then(|value| value.to_str().ok())
        .map(|token| Credentials::token_in_header(token).to_string());
    let common_name = request
        .extensions()
        .get::<super::CertificateName>()
        .map(|name| name.0.to_string());
    Credentials { token, common_name }
}

/// Why a write's answer was not the kind its request asked for.
fn mismatched(what: &str) -> ServerError {
    ServerError::Internal(format!(
        "a {what} was answered with another kind of response"
    ))
}

/// The etcd API level lode serves, reported where etcd reports its version.
pub const ETCD_API_VERSION: &str = "3.5.0";
