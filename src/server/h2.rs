//! One HTTP/2 connection of a client listener: calls whose content type is gRPC's go to etcd's
//! gRPC services (`grpc`, and Lock and Election from `concurrency`), counted in the
//! `grpc_server_*` metrics; any other request is an HTTP request over HTTP/2 and goes to
//! `http` (browsers and curl speak h2 over TLS). Above both, so neither imports the other.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::grpc::{
    AuthService, ClusterService, CoreTimer, GlommioIo, HandledBody, HealthService, KvService,
    LeaseService, LocalExecutor, MaintenanceService, ReceivedBody, WatchService, GRPC_METHODS,
    GRPC_STARTED,
};
use super::node::Node;
use super::Limits;
use crate::tls::Stream;

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
                let request = request.map(ReceivedBody);
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
                // Counted in `grpc_server_handled_total` when the call ends.
                response.map(|response| {
                    let (parts, body) = response.into_parts();
                    let body = HandledBody::new(body, method, &parts.headers);
                    http::Response::from_parts(parts, http_body_util::Either::Left(body))
                })
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
