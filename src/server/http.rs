//! HTTP/1 on the client URLs, as etcd serves it there: `/health`, `/livez`, `/readyz`,
//! `/version`, and etcd's JSON gateway (`POST /v3/kv/range`, ...), whose bodies are the gRPC
//! messages in proto3's JSON mapping with etcd's field names (int64 as strings, bytes as
//! base64) and whose errors are `{"error", "code", "message"}` with the HTTP status of the gRPC
//! code, as grpc-gateway answers.
//!
//! A gateway call is served by the same service code as its gRPC twin (`server::grpc`), so the
//! two cannot disagree. Bodies are limited to the gRPC receive limit; anything unreadable gets
//! a 400 with the reason and changes nothing.

use std::rc::Rc;

use crate::tls::Stream;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use lode_protocol::etcd::etcdserverpb as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use super::admission::Call;
use super::grpc::{
    AuthService, ClusterService, GlommioIo, KvService, LeaseService, MaintenanceService,
    ETCD_API_VERSION,
};
use super::node::Node;
use super::Limits;
use crate::mvcc::request::RangeRequest;

/// Serves one HTTP/1 connection whose first bytes (`read_ahead`) were already read.
pub async fn serve_connection(stream: Stream, read_ahead: Bytes, node: Rc<Node>, limits: Limits) {
    let io = GlommioIo::plain(stream, &read_ahead);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let node = node.clone();
        async move { Ok::<_, std::convert::Infallible>(route(request, &node, limits).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "HTTP connection ended");
    }
}

/// A whole body, or a streamed one (the gateway's server-streaming Snapshot).
pub(super) type HttpBody = Either<Full<Bytes>, StreamBody<StreamedFrames>>;
pub(super) type StreamedFrames = futures::stream::LocalBoxStream<
    'static,
    Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
>;
type HttpResponse = Response<HttpBody>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Either::Left(Full::new(body.into())));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(error) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("encoding the answer: {error}\n"),
        ),
    }
}

/// The HTTP status grpc-gateway gives a gRPC code.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's error body.
fn error_response(status: &Status) -> HttpResponse {
    json_response(
        http_status(status.code()),
        &serde_json::json!({
            "error": status.message(),
            "code": status.code() as i32,
            "message": status.message(),
        }),
    )
}

/// Accepts connections on a `--listen-metrics-urls` address until the listener fails: plain
/// HTTP/1 serving only what etcd's metrics listener serves (`/metrics`, `/health`, `/livez`,
/// `/readyz`), over TLS when `listen` says so.
pub async fn serve_monitoring(
    listener: glommio::net::TcpListener,
    listen: super::Listen,
    node: Rc<Node>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (node, tls) = (node.clone(), listen.tls.clone());
                glommio::spawn_local(async move {
                    let Some((stream, _)) = super::secure(stream, tls.as_ref()).await else {
                        return;
                    };
                    let io = GlommioIo::plain(stream, &Bytes::new());
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let node = node.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let query = request.uri().query().unwrap_or_default().to_string();
                            let response =
                                match monitoring(request.method(), &path, &query, &node).await {
                                    Some(response) => response,
                                    None => not_found(&path),
                                };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(io, service);
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "metrics connection ended");
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// The metrics and health probes etcd serves on both its client and metrics listeners;
/// `None` for any other path.
async fn monitoring(
    method: &Method,
    path: &str,
    query: &str,
    node: &Rc<Node>,
) -> Option<HttpResponse> {
    Some(match (method, path) {
        (&Method::GET, "/health") => health(node, query).await,
        (&Method::GET, "/livez") => probe(node, query, false).await,
        (&Method::GET, "/readyz") => probe(node, query, true).await,
        (&Method::GET, "/metrics") => metrics(node).await,
        (&Method::GET, "/dashboard/state") => respond(
            StatusCode::OK,
            "application/json",
            super::dashboard::state_json(node),
        ),
        (&Method::GET, "/dashboard/events") => dashboard_events(query),
        (&Method::GET, asset) => match super::dashboard::asset(asset) {
            Some((content_type, bytes)) => {
                respond(StatusCode::OK, content_type, Bytes::from_static(bytes))
            }
            None => return None,
        },
        (_, "/health" | "/livez" | "/readyz" | "/metrics") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => return None,
    })
}

/// The dashboard's server-sent events (`?from=n`: samples from number n on).
fn dashboard_events(query: &str) -> HttpResponse {
    let from = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("from="))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let frames: StreamedFrames = super::dashboard::events(from)
        .map(|bytes| Ok(hyper::body::Frame::data(bytes)))
        .boxed_local();
    let mut response = Response::new(Either::Right(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

fn not_found(path: &str) -> HttpResponse {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain",
        format!("404 page not found: lode serves no {path}\n"),
    )
}

/// Answers one HTTP request (HTTP/1, or HTTP/2 that is not gRPC: curl and browsers ask for h2
/// over TLS, and etcd answers its HTTP endpoints there too).
pub(super) async fn route(
    request: Request<Incoming>,
    node: &Rc<Node>,
    limits: Limits,
) -> HttpResponse {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    if let Some(response) = monitoring(request.method(), &path, &query, node).await {
        return response;
    }
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/version") => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "etcdserver": ETCD_API_VERSION,
                "etcdcluster": ETCD_API_VERSION,
            }),
        ),
        (Method::POST, "/v3/watch") => watch_call(request, node, limits).await,
        (Method::POST, "/v3/lease/keepalive") => keep_alive_call(request, node, limits),
        (Method::POST, gateway) if gateway.starts_with("/v3/") => {
            let metadata = metadata_of(&request);
            match read_body(request, limits).await {
                Ok(body) => gateway_call(gateway, body, metadata).await,
                Err(response) => response,
            }
        }
        (_, "/version") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => not_found(&path),
    }
}

/// What a gateway call carries as gRPC metadata, as grpc-gateway passes it on to etcd's
/// handlers: the `Authorization` header as `authorization` (a token, with or without
/// "Bearer "), and every `Grpc-Metadata-<key>` header as `<key>` (etcd reads `token` and
/// `hasleader` there: `Grpc-Metadata-Hasleader: true` asks for a leader). Binary (`-bin`)
/// keys and values that are not visible ASCII are left out: no etcd handler reads them. As
/// etcd's gateway, a call never speaks for the connection's client certificate.
fn metadata_of(request: &Request<Incoming>) -> tonic::metadata::MetadataMap {
    use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in request.headers() {
        let key = if name == http::header::AUTHORIZATION {
            "authorization"
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            key
        } else {
            continue;
        };
        let (Ok(key), Ok(value)) = (
            AsciiMetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        metadata.append(key, value);
    }
    metadata
}

/// A gateway call as the gRPC handlers take it: `message` with the call's `metadata`.
fn with_metadata<T>(message: T, metadata: &tonic::metadata::MetadataMap) -> tonic::Request<T> {
    tonic::Request::from_parts(metadata.clone(), tonic::Extensions::default(), message)
}

/// What a gateway stream's call carries for the admission path (its credentials and
/// `hasleader`), read from its headers as its gRPC twin reads its metadata.
fn call_meta_of(request: &Request<Incoming>) -> super::admission::CallMeta {
    super::grpc::call_meta(&with_metadata((), &metadata_of(request)))
}

/// A request body up to the gRPC receive limit.
async fn read_body(request: Request<Incoming>, limits: Limits) -> Result<Bytes, HttpResponse> {
    match Limited::new(request.into_body(), limits.max_frame_bytes)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(error_response(&Status::invalid_argument(format!(
            "reading the request body: {error}"
        )))),
    }
}

/// Decodes `body` as `Req`, calls `call`, and encodes its answer or error.
async fn json_call<Req, Resp, F, Fut>(
    body: Bytes,
    metadata: &tonic::metadata::MetadataMap,
    call: F,
) -> HttpResponse
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    // An empty body is an empty message, as grpc-gateway reads it.
    let request: Req = if body.iter().all(u8::is_ascii_whitespace) {
        Req::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return error_response(&Status::invalid_argument(format!(
                    "the request body is not a valid message: {error}"
                )))
            }
        }
    };
    match call(with_metadata(request, metadata)).await {
        Ok(response) => json_response(StatusCode::OK, response.get_ref()),
        Err(status) => error_response(&status),
    }
}

/// etcd's JSON gateway: the path names the RPC.
async fn gateway_call(
    path: &str,
    body: Bytes,
    metadata: tonic::metadata::MetadataMap,
) -> HttpResponse {
    use lode_protocol::etcd::v3electionpb::election_server::Election;
    use lode_protocol::etcd::v3lockpb::lock_server::Lock;
    use pb::auth_server::Auth;
    use pb::cluster_server::Cluster;
    use pb::kv_server::Kv;
    use pb::lease_server::Lease;
    use pb::maintenance_server::Maintenance;
    let lock = super::concurrency::services::LockService;
    let election = super::concurrency::services::ElectionService;
    let (kv, cluster, maintenance, auth, lease) = (
        KvService,
        ClusterService,
        MaintenanceService,
        AuthService,
        LeaseService,
    );
    match path {
        "/v3/kv/range" => json_call(body, &metadata, |r| kv.range(r)).await,
        "/v3/lease/grant" => json_call(body, &metadata, |r| lease.lease_grant(r)).await,
        "/v3/lock/lock" => json_call(body, &metadata, |r| lock.lock(r)).await,
        "/v3/lock/unlock" => json_call(body, &metadata, |r| lock.unlock(r)).await,
        "/v3/election/campaign" => json_call(body, &metadata, |r| election.campaign(r)).await,
        "/v3/election/proclaim" => json_call(body, &metadata, |r| election.proclaim(r)).await,
        "/v3/election/leader" => json_call(body, &metadata, |r| election.leader(r)).await,
        "/v3/election/resign" => json_call(body, &metadata, |r| election.resign(r)).await,
        "/v3/election/observe" => {
            match serde_json::from_slice::<lode_protocol::etcd::v3electionpb::LeaderRequest>(&body)
            {
                Ok(request) => match election.observe(with_metadata(request, &metadata)).await {
                    Ok(stream) => json_lines(stream.into_inner()),
                    Err(status) => stream_refused(&status),
                },
                Err(error) => error_response(&Status::invalid_argument(format!(
                    "the request body is not a valid message: {error}"
                ))),
            }
        }
        "/v3/lease/revoke" | "/v3/kv/lease/revoke" => {
            json_call(body, &metadata, |r| lease.lease_revoke(r)).await
        }
        "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
            json_call(body, &metadata, |r| lease.lease_time_to_live(r)).await
        }
        "/v3/lease/leases" | "/v3/kv/lease/leases" => {
            json_call(body, &metadata, |r| lease.lease_leases(r)).await
        }
        "/v3/kv/put" => json_call(body, &metadata, |r| kv.put(r)).await,
        "/v3/kv/deleterange" => json_call(body, &metadata, |r| kv.delete_range(r)).await,
        "/v3/kv/txn" => json_call(body, &metadata, |r| kv.txn(r)).await,
        "/v3/kv/compaction" => json_call(body, &metadata, |r| kv.compact(r)).await,
        "/v3/cluster/member/add" => json_call(body, &metadata, |r| cluster.member_add(r)).await,
        "/v3/cluster/member/remove" => {
            json_call(body, &metadata, |r| cluster.member_remove(r)).await
        }
        "/v3/cluster/member/update" => {
            json_call(body, &metadata, |r| cluster.member_update(r)).await
        }
        "/v3/cluster/member/list" => json_call(body, &metadata, |r| cluster.member_list(r)).await,
        "/v3/cluster/member/promote" => {
            json_call(body, &metadata, |r| cluster.member_promote(r)).await
        }
        "/v3/maintenance/alarm" => json_call(body, &metadata, |r| maintenance.alarm(r)).await,
        "/v3/maintenance/status" => json_call(body, &metadata, |r| maintenance.status(r)).await,
        "/v3/maintenance/defragment" => {
            json_call(body, &metadata, |r| maintenance.defragment(r)).await
        }
        "/v3/maintenance/hash" => json_call(body, &metadata, |r| maintenance.hash(r)).await,
        "/v3/maintenance/hashkv" => json_call(body, &metadata, |r| maintenance.hash_kv(r)).await,
        "/v3/maintenance/transfer-leadership" => {
            json_call(body, &metadata, |r| maintenance.move_leader(r)).await
        }
        "/v3/maintenance/downgrade" => {
            json_call(body, &metadata, |r| maintenance.downgrade(r)).await
        }
        "/v3/maintenance/snapshot" => snapshot_call(body, &maintenance, &metadata).await,
        "/v3/auth/enable" => json_call(body, &metadata, |r| auth.auth_enable(r)).await,
        "/v3/auth/disable" => json_call(body, &metadata, |r| auth.auth_disable(r)).await,
        "/v3/auth/status" => json_call(body, &metadata, |r| auth.auth_status(r)).await,
        "/v3/auth/authenticate" => json_call(body, &metadata, |r| auth.authenticate(r)).await,
        "/v3/auth/user/add" => json_call(body, &metadata, |r| auth.user_add(r)).await,
        "/v3/auth/user/get" => json_call(body, &metadata, |r| auth.user_get(r)).await,
        "/v3/auth/user/list" => json_call(body, &metadata, |r| auth.user_list(r)).await,
        "/v3/auth/user/delete" => json_call(body, &metadata, |r| auth.user_delete(r)).await,
        "/v3/auth/user/changepw" => {
            json_call(body, &metadata, |r| auth.user_change_password(r)).await
        }
        "/v3/auth/user/grant" => json_call(body, &metadata, |r| auth.user_grant_role(r)).await,
        "/v3/auth/user/revoke" => json_call(body, &metadata, |r| auth.user_revoke_role(r)).await,
        "/v3/auth/role/add" => json_call(body, &metadata, |r| auth.role_add(r)).await,
        "/v3/auth/role/get" => json_call(body, &metadata, |r| auth.role_get(r)).await,
        "/v3/auth/role/list" => json_call(body, &metadata, |r| auth.role_list(r)).await,
        "/v3/auth/role/delete" => json_call(body, &metadata, |r| auth.role_delete(r)).await,
        "/v3/auth/role/grant" => {
            json_call(body, &metadata, |r| auth.role_grant_permission(r)).await
        }
        "/v3/auth/role/revoke" => {
            json_call(body, &metadata, |r| auth.role_revoke_permission(r)).await
        }
        _ => error_response(&Status::unimplemented(format!(
            "lode serves no gateway path {path}"
        ))),
    }
}

/// The gateway's Snapshot: as grpc-gateway streams a server-streaming call, one JSON object
/// per line, `{"result": SnapshotResponse}` for each piece and `{"error": ...}` if the stream
/// fails midway; refused before the first piece, the error line alone with the HTTP status of
/// its code (`stream_refused`).
async fn snapshot_call(
    body: Bytes,
    maintenance: &MaintenanceService,
    metadata: &tonic::metadata::MetadataMap,
) -> HttpResponse {
    use pb::maintenance_server::Maintenance;
    if !body.iter().all(u8::is_ascii_whitespace) {
        if let Err(error) = serde_json::from_slice::<pb::SnapshotRequest>(&body) {
            return error_response(&Status::invalid_argument(format!(
                "the request body is not a valid message: {error}"
            )));
        }
    }
    let pieces = match maintenance
        .snapshot(with_metadata(pb::SnapshotRequest {}, metadata))
        .await
    {
        Ok(pieces) => pieces.into_inner(),
        Err(status) => return stream_refused(&status),
    };
    json_lines(pieces)
}

/// The gateway's Watch, as grpc-gateway serves the bidirectional stream: the request body is a
/// sequence of JSON `WatchRequest`s (often one, `{"create_request":{"key":"Zm9v"}}`), read as
/// they arrive; the answer streams one `{"result": WatchResponse}` per line until the client
/// goes away. The stream is served by the gRPC service's own loop.
async fn watch_call(request: Request<Incoming>, node: &Rc<Node>, limits: Limits) -> HttpResponse {
    let meta = call_meta_of(&request);
    if let Err(error) = super::admission::admit_call(node, &meta, Call::WatchStream) {
        return stream_refused(&super::grpc::status(error));
    }
    let hub = node.router().local().watch_hub().clone();
    let (id, slot) = match hub
        .open(node.router(), super::WATCH_STREAM_BUDGET_BYTES)
        .await
    {
        Ok(opened) => opened,
        Err(error) => return stream_refused(&super::grpc::status(error)),
    };
    let requests = json_requests(request.into_body(), limits.max_frame_bytes);
    let (sender, receiver) = futures::channel::mpsc::channel(128);
    let node = node.clone();
    glommio::spawn_local(async move {
        super::grpc::serve_watch_stream(
            &node,
            &slot,
            requests,
            sender,
            limits,
            meta.require_leader,
            &meta.credentials,
        )
        .await;
        hub.close(id, node.router());
    })
    .detach();
    json_lines(receiver)
}

/// The gateway's LeaseKeepAlive: the body's JSON `LeaseKeepAliveRequest`s are renewed as
/// they arrive, and the answers stream one `{"result": ...}` per line, by the gRPC service's
/// own loop.
fn keep_alive_call(request: Request<Incoming>, node: &Rc<Node>, limits: Limits) -> HttpResponse {
    let meta = call_meta_of(&request);
    if let Err(error) = super::admission::admit_call(node, &meta, Call::KeepAliveStream) {
        return stream_refused(&super::grpc::status(error));
    }
    let requests = json_requests(request.into_body(), limits.max_frame_bytes);
    let (sender, receiver) = futures::channel::mpsc::channel(128);
    glommio::spawn_local(super::grpc::serve_keep_alives(
        node.clone(),
        limits,
        requests,
        sender,
        meta.credentials,
    ))
    .detach();
    json_lines(receiver)
}

/// A stream's failure as grpc-gateway writes it in the stream: `{"error": {...}}`.
fn stream_error(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "grpc_code": status.code() as i32,
            "http_code": http_status(status.code()).as_u16(),
            "message": status.message(),
            "http_status": http_status(status.code())
                .canonical_reason()
                .unwrap_or_default(),
        }
    })
}

/// A streaming call refused before its first item, as grpc-gateway answers it: the HTTP status
/// of its code and the stream's error line (etcd's gateway answers a learner's Watch or a
/// `hasleader` stream without a leader so).
fn stream_refused(status: &Status) -> HttpResponse {
    let mut line = stream_error(status).to_string();
    line.push('\n');
    respond(http_status(status.code()), "application/json", line)
}

/// A server stream as grpc-gateway answers one: a JSON object per line, `{"result": item}` for
/// each item and `{"error": ...}` for a failure.
fn json_lines<T, S>(items: S) -> HttpResponse
where
    T: Serialize,
    S: futures::Stream<Item = Result<T, Status>> + 'static,
{
    let lines: StreamedFrames = items
        .map(|item| {
            let value = match item {
                Ok(item) => serde_json::json!({ "result": item }),
                Err(status) => stream_error(&status),
            };
            let mut line = value.to_string().into_bytes();
            line.push(b'\n');
            Ok(hyper::body::Frame::data(Bytes::from(line)))
        })
        .boxed_local();
    let mut response = Response::new(Either::Right(StreamBody::new(lines)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON requests of a streaming call's body, each as soon as it is complete; an
/// undecodable one (or more than `limit` bytes without a whole one) ends the stream with an
/// error.
fn json_requests<T: DeserializeOwned + 'static>(
    body: Incoming,
    limit: usize,
) -> futures::stream::LocalBoxStream<'static, Result<T, Status>> {
    struct Reading<T> {
        body: Incoming,
        buffer: Vec<u8>,
        ready: std::collections::VecDeque<Result<T, Status>>,
        done: bool,
    }
    let reading = Reading {
        body,
        buffer: Vec::new(),
        ready: std::collections::VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(reading, move |mut reading| async move {
        loop {
            if let Some(next) = reading.ready.pop_front() {
                if next.is_err() {
                    reading.done = true;
                    reading.ready.clear();
                }
                return Some((next, reading));
            }
            if reading.done {
                return None;
            }
            match reading.body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    reading.buffer.extend_from_slice(&data);
                    // A message can only have ended in a chunk holding a closing brace: no
                    // re-parsing of a long message arriving in small pieces.
                    if !data.contains(&b'}') {
                        if reading.buffer.len() > limit {
                            reading.ready.push_back(Err(Status::invalid_argument(
                                "a streamed request is too large",
                            )));
                        }
                        continue;
                    }
                }
                Some(Err(error)) => {
                    reading
                        .ready
                        .push_back(Err(Status::invalid_argument(format!(
                            "reading the request body: {error}"
                        ))));
                    continue;
                }
                None => {
                    reading.done = true;
                    if !reading.buffer.iter().all(u8::is_ascii_whitespace) {
                        return Some((
                            Err(Status::invalid_argument(
                                "the request body ends inside a message",
                            )),
                            reading,
                        ));
                    }
                    return None;
                }
            }
            let mut values = serde_json::Deserializer::from_slice(&reading.buffer).into_iter::<T>();
            let mut consumed = 0;
            while let Some(value) = values.next() {
                match value {
                    Ok(request) => {
                        consumed = values.byte_offset();
                        reading.ready.push_back(Ok(request));
                    }
                    Err(error) if error.is_eof() => break,
                    Err(error) => {
                        reading
                            .ready
                            .push_back(Err(Status::invalid_argument(format!(
                                "the request body is not a valid message: {error}"
                            ))));
                        break;
                    }
                }
            }
            reading.buffer.drain(..consumed);
            if reading.buffer.len() > limit {
                reading.ready.push_back(Err(Status::invalid_argument(
                    "a streamed request is too large",
                )));
            }
        }
    })
    .boxed_local()
}

/// Prometheus's `/metrics`: the consensus core's metrics, the gRPC counters, the process's
/// figures, and the version etcd reports.
async fn metrics(node: &Rc<Node>) -> HttpResponse {
    let mut exposition = crate::metrics::Exposition::new();
    exposition.gauge(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &[("server_version", ETCD_API_VERSION)],
        1.0,
    );
    exposition.gauge(
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &[("cluster_version", "3.5")],
        1.0,
    );
    super::grpc::expose_grpc(&mut exposition);
    crate::process_metrics::expose(&mut exposition);
    if let Ok(stats) = node.keyspace_stats().await {
        exposition.gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            &[],
            stats.live_keys as f64,
        );
        exposition.gauge(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams.",
            &[],
            stats.watch_streams as f64,
        );
        exposition.gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            &[],
            stats.watchers as f64,
        );
    }
    let mut text = exposition.finish();
    match node.consensus_metrics().await {
        Ok(consensus) => {
            text.push_str(&consensus);
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        Err(error) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("collecting metrics: {error}\n"),
        ),
    }
}

/// etcd's `/health`: unhealthy (503) while an alarm is raised, without a leader, or when a read
/// fails (linearizable unless `?serializable=true`); `?exclude=NOSPACE` ignores that alarm.
async fn health(node: &Rc<Node>, query: &str) -> HttpResponse {
    let serializable = query_flag(query, "serializable");
    let excluded: Vec<String> = query_values(query, "exclude");
    let reason: String = health_problem(node, serializable, &excluded)
        .await
        .unwrap_or_default();
    let healthy = reason.is_empty();
    json_response(
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &serde_json::json!({
            "health": if healthy { "true" } else { "false" },
            "reason": reason,
        }),
    )
}

/// What makes this member unhealthy, in etcd's words; `None` when nothing does.
async fn health_problem(
    node: &Rc<Node>,
    serializable: bool,
    excluded: &[String],
) -> Option<String> {
    use crate::alarm::{AlarmAction, AlarmRequest, AlarmType};
    match node
        .alarm(AlarmRequest {
            action: AlarmAction::Get,
            member_id: 0,
            alarm: AlarmType::None,
        })
        .await
    {
        Ok(alarms) => {
            for alarm in alarms.alarms {
                let name = match alarm.alarm {
                    AlarmType::None => continue,
                    AlarmType::Nospace | AlarmType::LogDiskFull => "NOSPACE",
                    AlarmType::Corrupt => "CORRUPT",
                };
                if !excluded.iter().any(|e| e == name) {
                    return Some(format!("ALARM {name}"));
                }
            }
        }
        Err(error) => return Some(format!("ALARM ERROR: {error}")),
    }
    match node.status().await {
        Ok(status) if status.leader == 0 => return Some("RAFT NO LEADER".into()),
        Ok(_) => {}
        Err(error) => return Some(format!("STATUS ERROR: {error}")),
    }
    read_problem(node, serializable).await
}

/// A read of one key, as etcd's health check makes: `None` when it succeeds.
async fn read_problem(node: &Rc<Node>, serializable: bool) -> Option<String> {
    let read = RangeRequest {
        key: Bytes::from_static(b"health"),
        serializable,
        ..RangeRequest::default()
    };
    match node.range(&read).await {
        Ok(_) => None,
        Err(error) => Some(format!(
            "{} ERROR: {error}",
            if serializable { "SGET" } else { "QGET" }
        )),
    }
}

/// etcd's `/livez` (the member serves a local read) and `/readyz` (it also has a leader, no
/// corruption alarm, and serves a linearizable read); `?verbose` lists each check.
async fn probe(node: &Rc<Node>, query: &str, ready: bool) -> HttpResponse {
    let mut checks: Vec<(&str, Option<String>)> =
        vec![("serializable_read", read_problem(node, true).await)];
    if ready {
        let corrupt = match health_problem(node, true, &["NOSPACE".to_string()]).await {
            Some(reason) if reason.contains("CORRUPT") => Some(reason),
            _ => None,
        };
        checks.push(("data_corruption", corrupt));
        checks.push(("linearizable_read", read_problem(node, false).await));
    }
    let failed = checks.iter().any(|(_, problem)| problem.is_some());
    let what = if ready { "readyz" } else { "livez" };
    let mut body = String::new();
    if query_flag(query, "verbose") || failed {
        for (name, problem) in &checks {
            match problem {
                None => body.push_str(&format!("[+]{name} ok\n")),
                Some(reason) => body.push_str(&format!("[-]{name} failed: {reason}\n")),
            }
        }
    }
    if failed {
        body.push_str(&format!("{what} check failed\n"));
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            body,
        )
    } else {
        body.push_str("ok\n");
        respond(StatusCode::OK, "text/plain; charset=utf-8", body)
    }
}

/// True when the query sets `name` (`name`, `name=true`, `name=1`).
fn query_flag(query: &str, name: &str) -> bool {
    query_values(query, name)
        .iter()
        .any(|value| value.is_empty() || value == "true" || value == "1")
}

/// Every value of `name` in the query (`a=1&a=2`).
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| value.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_and_values() {
        assert!(query_flag("serializable=true", "serializable"));
        assert!(query_flag("verbose", "verbose"));
        assert!(!query_flag("serializable=false", "serializable"));
        assert!(!query_flag("", "serializable"));
        assert_eq!(
            query_values("exclude=NOSPACE&x=1&exclude=CORRUPT", "exclude"),
            vec!["NOSPACE".to_string(), "CORRUPT".to_string()]
        );
    }

    #[test]
    fn grpc_codes_map_to_grpc_gateways_statuses() {
        assert_eq!(
            http_status(tonic::Code::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(tonic::Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(tonic::Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
