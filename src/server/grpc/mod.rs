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
//! they share (the core's node, the error mapping, a call's credentials) and the connection's
//! wiring; hyper's runtime on glommio is in `transport`, the `grpc_server_*` counters in
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
use std::sync::atomic::Ordering;

use crate::tls::Stream;
use bytes::Bytes;
use lode_protocol::etcd::etcdserverpb as pb;
use tonic::{Code, Status};

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

use metrics::{GRPC_CODES, GRPC_HANDLED, GRPC_METHODS, GRPC_STARTED};
use transport::{CoreTimer, LocalExecutor};

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

/// True when the call carries etcd's `hasleader` metadata: its client wants the stream to fail
/// rather than wait while there is no leader (etcd's clients set it on watch and keep-alive
/// streams).
fn requires_leader<T>(request: &tonic::Request<T>) -> bool {
    request
        .metadata()
        .get("hasleader")
        .and_then(|value| value.to_str().ok())
        == Some("true")
}

/// What a call presents: its token (metadata `token`, or `authorization` with or without
/// "Bearer ", as etcd reads them) and the CN of its connection's verified client certificate.
pub(super) fn credentials<T>(request: &tonic::Request<T>) -> Credentials {
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

/// Serves one HTTP/2 connection whose first bytes (`read_ahead`, read while telling the
/// protocols apart) were already taken from `stream`. Requests whose content type is not
/// gRPC's are HTTP requests over HTTP/2 and go to `server::http`.
pub async fn serve_connection(
    stream: Stream,
    read_ahead: Bytes,
    node: Rc<Node>,
    limits: Limits,
    name: Option<super::CertificateName>,
) {
    let max_message = limits.max_frame_bytes;
    let kv = pb::kv_server::KvServer::new(KvService).max_decoding_message_size(max_message);
    let cluster = pb::cluster_server::ClusterServer::new(ClusterService)
        .max_decoding_message_size(max_message);
    let maintenance = pb::maintenance_server::MaintenanceServer::new(MaintenanceService)
        .max_decoding_message_size(max_message);
    let auth = pb::auth_server::AuthServer::new(AuthService).max_decoding_message_size(max_message);
    let watch =
        pb::watch_server::WatchServer::new(WatchService).max_decoding_message_size(max_message);
    let lease =
        pb::lease_server::LeaseServer::new(LeaseService).max_decoding_message_size(max_message);
    let lock = lode_protocol::etcd::v3lockpb::lock_server::LockServer::new(
        super::concurrency::services::LockService,
    )
    .max_decoding_message_size(max_message);
    let election = lode_protocol::etcd::v3electionpb::election_server::ElectionServer::new(
        super::concurrency::services::ElectionService,
    )
    .max_decoding_message_size(max_message);
    let health = lode_protocol::etcd::health::health_server::HealthServer::new(HealthService);
    let service =
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let (mut kv, mut cluster, mut maintenance, mut auth, mut health, mut watch) = (
                kv.clone(),
                cluster.clone(),
                maintenance.clone(),
                auth.clone(),
                health.clone(),
                watch.clone(),
            );
            let mut lease = lease.clone();
            let (mut lock, mut election) = (lock.clone(), election.clone());
            let node = node.clone();
            if let Some(name) = &name {
                request.extensions_mut().insert(name.clone());
            }
            async move {
                use tower_service::Service;
                let grpc = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
                if !grpc {
                    let response = super::http::route(request, &node, limits).await;
                    return Ok(response.map(http_body_util::Either::Right));
                }
                let path = request.uri().path().to_string();
                let method = GRPC_METHODS.iter().position(|m| m.serves(&path));
                if let Some(method) = method {
                    GRPC_STARTED[method].fetch_add(1, Ordering::Relaxed);
                }
                let response = match path.split('/').nth(1).unwrap_or_default() {
                    "etcdserverpb.KV" => kv.call(request).await,
                    "etcdserverpb.Cluster" => cluster.call(request).await,
                    "etcdserverpb.Maintenance" => maintenance.call(request).await,
                    "etcdserverpb.Auth" => auth.call(request).await,
                    "etcdserverpb.Watch" => watch.call(request).await,
                    "etcdserverpb.Lease" => lease.call(request).await,
                    "v3lockpb.Lock" => lock.call(request).await,
                    "v3electionpb.Election" => election.call(request).await,
                    "grpc.health.v1.Health" => health.call(request).await,
                    _ => Ok(unimplemented_response(&path)),
                };
                if let (Some(method), Ok(response)) = (method, &response) {
                    // A call that failed before its first message answers with its status in
                    // the headers; any other has begun well (unary calls end as they began).
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<usize>().ok())
                        .filter(|code| *code < GRPC_CODES.len())
                        .unwrap_or(0);
                    GRPC_HANDLED[method][code].fetch_add(1, Ordering::Relaxed);
                }
                response.map(|response| response.map(http_body_util::Either::Left))
            }
        });
    let io = GlommioIo::new(stream, &read_ahead);
    let connection = hyper::server::conn::http2::Builder::new(LocalExecutor)
        .max_frame_size(1 << 20)
        .max_header_list_size(super::authority::MAX_HEADER_LIST_BYTES as u32)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .timer(CoreTimer)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .serve_connection(io, service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "gRPC connection ended");
    }
}

/// gRPC's answer to a method lode does not serve: status UNIMPLEMENTED, in trailers-only form.
fn unimplemented_response(path: &str) -> http::Response<tonic::body::Body> {
    Status::unimplemented(format!("lode does not serve {path}")).into_http()
}
