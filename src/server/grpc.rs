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

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use crate::tls::Stream;
use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};
use lode_protocol::etcd::etcdserverpb as pb;
use lode_protocol::etcd::health;
use tonic::{Code, Status};

use super::authority::AuthorityFilter;
use super::node::Node;
use super::Limits;
use crate::alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmType};
use crate::api::etcd;
use crate::api::native::{self, LeaseAnswer, LeaseQuery, Request};
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::mvcc::request::{LeaseResponse, ResponseHeader, WriteRequest, WriteResponse};

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

/// Proposes `write` as the native protocol would: checked, encoded as a request frame (the
/// log's entry format), refused if larger than `--max-request-bytes`.
async fn write(
    node: Rc<Node>,
    limits: Limits,
    write: WriteRequest,
    credentials: Credentials,
) -> Result<WriteResponse, ServerError> {
    let mut response = node
        .write_as(&credentials, write, None, limits.max_request_bytes)
        .await?;
    let header = match &mut response {
        WriteResponse::Put(r) => &mut r.header,
        WriteResponse::DeleteRange(r) => &mut r.header,
        WriteResponse::Txn(r) => &mut r.header,
        WriteResponse::Compact(r) => &mut r.header,
        WriteResponse::Lease(r) => &mut r.header,
    };
    super::stamp_header(header, &node);
    Ok(response)
}

/// Why a write's answer was not the kind its request asked for.
fn mismatched(what: &str) -> ServerError {
    ServerError::Internal(format!(
        "a {what} was answered with another kind of response"
    ))
}

/// etcd's `etcdserverpb.KV` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvService;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: tonic::Request<pb::RangeRequest>,
    ) -> Result<tonic::Response<pb::RangeResponse>, Status> {
        let credentials = credentials(&request);
        let range = etcd::range_request(request.into_inner());
        on_core(move |node, _| async move {
            let mut response = node.range_as(&credentials, &range).await?;
            super::stamp_header(&mut response.header, &node);
            Ok(etcd::range_response(response))
        })
        .await
        .map(tonic::Response::new)
    }

    async fn put(
        &self,
        request: tonic::Request<pb::PutRequest>,
    ) -> Result<tonic::Response<pb::PutResponse>, Status> {
        let credentials = credentials(&request);
        let put = WriteRequest::Put(etcd::put_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, put, credentials).await? {
                WriteResponse::Put(response) => Ok(etcd::put_response(response)),
                _ => Err(mismatched("put")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn delete_range(
        &self,
        request: tonic::Request<pb::DeleteRangeRequest>,
    ) -> Result<tonic::Response<pb::DeleteRangeResponse>, Status> {
        let credentials = credentials(&request);
        let delete = WriteRequest::DeleteRange(etcd::delete_range_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, delete, credentials).await? {
                WriteResponse::DeleteRange(response) => Ok(etcd::delete_range_response(response)),
                _ => Err(mismatched("delete")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn txn(
        &self,
        request: tonic::Request<pb::TxnRequest>,
    ) -> Result<tonic::Response<pb::TxnResponse>, Status> {
        let credentials = credentials(&request);
        let txn = WriteRequest::Txn(etcd::txn_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, txn, credentials).await? {
                WriteResponse::Txn(response) => Ok(etcd::txn_response(response)),
                _ => Err(mismatched("txn")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn compact(
        &self,
        request: tonic::Request<pb::CompactionRequest>,
    ) -> Result<tonic::Response<pb::CompactionResponse>, Status> {
        let credentials = credentials(&request);
        let compaction = WriteRequest::Compact(etcd::compaction_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, compaction, credentials).await? {
                WriteResponse::Compact(response) => Ok(etcd::compaction_response(response)),
                _ => Err(mismatched("compaction")),
            }
        })
        .await
        .map(tonic::Response::new)
    }
}

/// etcd's `etcdserverpb.Watch` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchService;

/// The stream of a Watch call's responses: made on the core, sent through a channel whose
/// capacity (128 responses) pushes back on the stream (its watchers then catch up from
/// history); a smaller one wakes the stream's task too often (16 halved events/s).
type WatchResponses = futures::channel::mpsc::Receiver<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = WatchResponses;

    async fn watch(
        &self,
        request: tonic::Request<tonic::Streaming<pb::WatchRequest>>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        let credentials = credentials(&request);
        let require_leader = requires_leader(&request);
        let requests = request.into_inner();
        let (sender, receiver) = futures::channel::mpsc::channel(128);
        on_core(move |node, limits| async move {
            if require_leader && node.status().await?.leader == 0 {
                return Err(ServerError::NoLeader);
            }
            let (id, slot) = node
                .router()
                .local()
                .watch_hub()
                .open(node.router(), super::WATCH_STREAM_BUDGET_BYTES)
                .await?;
            glommio::spawn_local(async move {
                serve_watch_stream(
                    &node,
                    &slot,
                    requests,
                    sender,
                    limits,
                    require_leader,
                    &credentials,
                )
                .await;
                node.router().local().watch_hub().close(id, node.router());
            })
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }
}

/// etcd's `etcdserverpb.Lease` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseService;

/// The responses of a LeaseKeepAlive call.
type KeepAliveResponses =
    futures::channel::mpsc::Receiver<Result<pb::LeaseKeepAliveResponse, Status>>;

/// Most keep-alives of one stream waiting for their renewal at once; the stream reads no
/// further requests until one is answered.
const KEEP_ALIVES_IN_FLIGHT: usize = 1024;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: tonic::Request<pb::LeaseGrantRequest>,
    ) -> Result<tonic::Response<pb::LeaseGrantResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let grant = LeaseRequest::Grant {
            id: request.id,
            ttl: request.ttl,
        };
        on_core(move |node, _| async move {
            match node.lease_write_as(&credentials, grant).await? {
                WriteResponse::Lease(LeaseResponse {
                    mut header,
                    outcome: LeaseOutcome::Granted { id, ttl },
                }) => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::LeaseGrantResponse {
                        header: Some(etcd::header(header)),
                        id,
                        ttl,
                        error: String::new(),
                    })
                }
                _ => Err(mismatched("lease grant")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn lease_revoke(
        &self,
        request: tonic::Request<pb::LeaseRevokeRequest>,
    ) -> Result<tonic::Response<pb::LeaseRevokeResponse>, Status> {
        let credentials = credentials(&request);
        let revoke = LeaseRequest::Revoke {
            id: request.into_inner().id,
        };
        on_core(move |node, _| async move {
            match node.lease_write_as(&credentials, revoke).await? {
                WriteResponse::Lease(LeaseResponse {
                    mut header,
                    outcome: LeaseOutcome::Revoked,
                }) => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::LeaseRevokeResponse {
                        header: Some(etcd::header(header)),
                    })
                }
                _ => Err(mismatched("lease revoke")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    type LeaseKeepAliveStream = KeepAliveResponses;

    async fn lease_keep_alive(
        &self,
        request: tonic::Request<tonic::Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<tonic::Response<Self::LeaseKeepAliveStream>, Status> {
        let credentials = credentials(&request);
        let require_leader = requires_leader(&request);
        let requests = request.into_inner();
        let (sender, receiver) = futures::channel::mpsc::channel(128);
        on_core(move |node, _| async move {
            if require_leader && node.status().await?.leader == 0 {
                return Err(ServerError::NoLeader);
            }
            glommio::spawn_local(serve_keep_alives(node, requests, sender, credentials)).detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<pb::LeaseTimeToLiveResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let query = LeaseQuery::TimeToLive {
            id: request.id,
            keys: request.keys,
        };
        on_core(move |node, _| async move {
            node.permit_lease_query(&credentials, &query).await?;
            match node.lease_query(query, credentials.token.clone()).await? {
                LeaseAnswer::TimeToLive {
                    mut header,
                    id,
                    ttl,
                    granted_ttl,
                    keys,
                } => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::LeaseTimeToLiveResponse {
                        header: Some(etcd::header(header)),
                        id,
                        ttl,
                        granted_ttl,
                        keys,
                    })
                }
                _ => Err(mismatched("lease time-to-live")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn lease_leases(
        &self,
        request: tonic::Request<pb::LeaseLeasesRequest>,
    ) -> Result<tonic::Response<pb::LeaseLeasesResponse>, Status> {
        let credentials = credentials(&request);
        on_core(move |node, _| async move {
            node.permit_lease_query(&credentials, &LeaseQuery::Leases)
                .await?;
            match node
                .lease_query(LeaseQuery::Leases, credentials.token.clone())
                .await?
            {
                LeaseAnswer::Leases { mut header, ids } => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::LeaseLeasesResponse {
                        header: Some(etcd::header(header)),
                        leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
                    })
                }
                _ => Err(mismatched("lease list")),
            }
        })
        .await
        .map(tonic::Response::new)
    }
}

/// What a keep-alive stream's task woke up for.
enum KeepAliveEvent {
    Request(Option<Result<pb::LeaseKeepAliveRequest, Status>>),
    Renewed(Result<LeaseAnswer, ServerError>),
    Drained,
}

/// Serves one LeaseKeepAlive call: every request renews its lease in this core's next batch
/// (several in flight, answered as their batches apply); a lease that does not exist is
/// answered with TTL 0, as etcd's. The stream ends when the client closes its side and every
/// renewal is answered, or with the error of a renewal that failed (no leader, timeout).
pub(super) async fn serve_keep_alives<R>(
    node: Rc<Node>,
    mut requests: R,
    mut responses: futures::channel::mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
    credentials: Credentials,
) where
    R: futures::Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Unpin,
{
    use futures::stream::FuturesUnordered;
    use futures::{SinkExt, StreamExt};
    type Renewal = Pin<Box<dyn Future<Output = Result<LeaseAnswer, ServerError>>>>;
    let mut renewals: FuturesUnordered<Renewal> = FuturesUnordered::new();
    let mut requests_open = true;
    loop {
        let event = std::future::poll_fn(|cx| {
            if requests_open && renewals.len() < KEEP_ALIVES_IN_FLIGHT {
                if let Poll::Ready(request) = requests.poll_next_unpin(cx) {
                    return Poll::Ready(KeepAliveEvent::Request(request));
                }
            }
            match renewals.poll_next_unpin(cx) {
                Poll::Ready(Some(answer)) => Poll::Ready(KeepAliveEvent::Renewed(answer)),
                Poll::Ready(None) if !requests_open => Poll::Ready(KeepAliveEvent::Drained),
                _ => Poll::Pending,
            }
        })
        .await;
        match event {
            KeepAliveEvent::Request(Some(Ok(request))) => {
                let node = node.clone();
                let credentials = credentials.clone();
                renewals.push(Box::pin(async move {
                    let query = LeaseQuery::KeepAlive(request.id);
                    node.permit_lease_query(&credentials, &query).await?;
                    node.lease_query(query, credentials.token.clone()).await
                }));
            }
            KeepAliveEvent::Request(None) => requests_open = false,
            KeepAliveEvent::Request(Some(Err(error))) => {
                let _ = responses.send(Err(error)).await;
                return;
            }
            KeepAliveEvent::Renewed(Ok(LeaseAnswer::KeepAlive {
                mut header,
                id,
                ttl,
            })) => {
                super::stamp_header(&mut header, &node);
                let response = pb::LeaseKeepAliveResponse {
                    header: Some(etcd::header(header)),
                    id,
                    ttl,
                };
                if responses.send(Ok(response)).await.is_err() {
                    return;
                }
            }
            KeepAliveEvent::Renewed(Ok(_)) => {
                let _ = responses
                    .send(Err(status(mismatched("lease keep-alive"))))
                    .await;
                return;
            }
            KeepAliveEvent::Renewed(Err(error)) => {
                let _ = responses.send(Err(status(error))).await;
                return;
            }
            KeepAliveEvent::Drained => return,
        }
    }
}

/// What woke a watch stream's task.
enum WatchWakeup {
    Request(Option<Result<pb::WatchRequest, Status>>),
    Changed,
    ProgressTick,
    LeaderCheck,
    Liveness,
}

/// Consecutive checks (one per election timeout) without a leader after which a stream that
/// asked for one (`hasleader`) ends with "etcdserver: no leader", as etcd's.
const NO_LEADER_CHECKS: u32 = 3;

/// Serves one Watch call on this core: requests from the client change the stream's
/// watchers; responses go out as the hub queues them; watchers that are behind are caught up
/// from the shards' history.
pub(super) async fn serve_watch_stream<R>(
    node: &Rc<Node>,
    slot: &Rc<crate::shard::watch::WatchSlot>,
    mut requests: R,
    mut responses: futures::channel::mpsc::Sender<Result<pb::WatchResponse, Status>>,
    limits: Limits,
    require_leader: bool,
    credentials: &Credentials,
) where
    R: futures::Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
{
    use futures::{FutureExt, SinkExt, StreamExt};
    // As etcd's, a stream outlives the client's half of it (the gateway's requests end with
    // the HTTP body): it ends when the client goes away, which an idle stream notices by
    // checking its response channel every second.
    let mut requests_open = true;
    let mut liveness = Box::pin(glommio::timer::sleep(std::time::Duration::from_secs(1)));
    let interval = limits.watch_progress_interval;
    let mut tick = Box::pin(glommio::timer::sleep(interval));
    let election_timeout = node.config.election_timeout();
    let mut leader_check = Box::pin(glommio::timer::sleep(election_timeout));
    let mut checks_without_leader = 0;
    let mut owner = super::WatchOwner::new(node);
    loop {
        // Everything queued goes out first (waiting while the client is slow to read), each
        // response after the watches were checked against any permission change applied
        // meanwhile.
        loop {
            super::recheck_watches(&mut slot.stream.borrow_mut(), node, &mut owner);
            let next = slot.stream.borrow_mut().pop();
            let Some(response) = next else {
                break;
            };
            let mut header = ResponseHeader::at(response.revision);
            super::stamp_header(&mut header, node);
            let fragment = response.fragment;
            let whole = etcd::watch_response(response, header);
            for part in fragments(whole, fragment, limits.max_request_bytes) {
                if responses.send(Ok(part)).await.is_err() {
                    return;
                }
            }
        }
        super::start_catch_ups(node, slot);
        let wakeup = std::future::poll_fn(|cx| {
            if requests_open {
                if let Poll::Ready(request) = requests.poll_next_unpin(cx) {
                    return Poll::Ready(WatchWakeup::Request(request));
                }
            } else if liveness.poll_unpin(cx).is_ready() {
                return Poll::Ready(WatchWakeup::Liveness);
            }
            if slot.poll_woken(cx).is_ready() {
                return Poll::Ready(WatchWakeup::Changed);
            }
            if tick.poll_unpin(cx).is_ready() {
                return Poll::Ready(WatchWakeup::ProgressTick);
            }
            if require_leader && leader_check.poll_unpin(cx).is_ready() {
                return Poll::Ready(WatchWakeup::LeaderCheck);
            }
            Poll::Pending
        })
        .await;
        match wakeup {
            WatchWakeup::LeaderCheck => {
                leader_check = Box::pin(glommio::timer::sleep(election_timeout));
                let leader = node.status().await.map(|status| status.leader).unwrap_or(0);
                checks_without_leader = if leader == 0 {
                    checks_without_leader + 1
                } else {
                    0
                };
                if checks_without_leader >= NO_LEADER_CHECKS {
                    let _ = responses.send(Err(status(ServerError::NoLeader))).await;
                    return;
                }
            }
            WatchWakeup::Request(Some(Ok(request))) => {
                use crate::api::native::WatchRequest;
                use pb::watch_request::RequestUnion;
                let request = match request.request_union {
                    Some(RequestUnion::CreateRequest(create)) => {
                        Some(WatchRequest::Create(etcd::watch_create(create)))
                    }
                    Some(RequestUnion::CancelRequest(cancel)) => {
                        Some(WatchRequest::Cancel(cancel.watch_id))
                    }
                    Some(RequestUnion::ProgressRequest(_)) => Some(WatchRequest::Progress),
                    None => None,
                };
                if let Some(request) = request {
                    super::apply_watch_request(
                        &mut slot.stream.borrow_mut(),
                        request,
                        node,
                        credentials,
                        &mut owner,
                    );
                }
            }
            // The client closed its side: the stream goes on until the client is gone.
            WatchWakeup::Request(None) => requests_open = false,
            // The call broke, or a request could not be read: the stream ends, saying why.
            WatchWakeup::Request(Some(Err(error))) => {
                let _ = responses.send(Err(error)).await;
                return;
            }
            WatchWakeup::Liveness => {
                if responses.is_closed() {
                    return;
                }
                liveness = Box::pin(glommio::timer::sleep(std::time::Duration::from_secs(1)));
            }
            WatchWakeup::Changed => {}
            WatchWakeup::ProgressTick => {
                slot.stream.borrow_mut().progress_tick();
                tick = Box::pin(glommio::timer::sleep(interval));
            }
        }
        if node.router().local().stopping() {
            let _ = responses.send(Err(status(ServerError::Stopped))).await;
            return;
        }
    }
}

/// A watch response as it goes out: whole, or, for a watcher that allows it (`fragment`) and
/// a response over `limit` bytes with several events, in parts of about `limit` bytes with
/// every part but the last marked `fragment`, as etcd splits them.
fn fragments(response: pb::WatchResponse, fragment: bool, limit: usize) -> Vec<pb::WatchResponse> {
    use prost::Message;
    if !fragment || response.events.len() < 2 || response.encoded_len() <= limit {
        return vec![response];
    }
    let mut parts = Vec::new();
    let mut part = pb::WatchResponse {
        events: Vec::new(),
        ..response.clone()
    };
    let mut size = part.encoded_len();
    for event in response.events {
        let event_size = event.encoded_len() + 8;
        if !part.events.is_empty() && size + event_size > limit {
            let next = pb::WatchResponse {
                events: Vec::new(),
                ..part.clone()
            };
            size = next.encoded_len();
            part.fragment = true;
            parts.push(std::mem::replace(&mut part, next));
        }
        size += event_size;
        part.events.push(event);
    }
    part.fragment = false;
    parts.push(part);
    parts
}

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
    let health = health::health_server::HealthServer::new(HealthService);
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

/// hyper's timer (keep-alive pings) on the current core's timers.
#[derive(Clone, Copy, Debug)]
struct CoreTimer;

impl hyper::rt::Timer for CoreTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoreSleep::until(std::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoreSleep::until(deadline))
    }
}

/// A deadline hyper waits for. hyper wants it `Send + Sync` although it is only polled on
/// the core that made it: the core's timer runs in a task of its own that wakes whichever
/// waker was registered last (one task per sleep, armed at its first poll).
struct CoreSleep {
    deadline: std::time::Instant,
    waker: Option<std::sync::Arc<futures::task::AtomicWaker>>,
}

impl CoreSleep {
    fn until(deadline: std::time::Instant) -> CoreSleep {
        CoreSleep {
            deadline,
            waker: None,
        }
    }
}

impl Future for CoreSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = std::time::Instant::now();
        if now >= self.deadline {
            return Poll::Ready(());
        }
        match &self.waker {
            Some(waker) => waker.register(cx.waker()),
            None => {
                let waker = std::sync::Arc::new(futures::task::AtomicWaker::new());
                waker.register(cx.waker());
                let (timer_waker, wait) = (waker.clone(), self.deadline - now);
                glommio::spawn_local(async move {
                    glommio::timer::sleep(wait).await;
                    timer_waker.wake();
                })
                .detach();
                self.waker = Some(waker);
            }
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for CoreSleep {}

/// Spawns hyper's per-stream tasks on the current core.
#[derive(Clone, Copy, Debug)]
struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// A glommio TCP stream as hyper's I/O. What the client sends passes through an
/// [`AuthorityFilter`] (starting with the bytes read ahead) until the filter has seen that the
/// connection needs no mending, and is then read straight into hyper's buffers.
pub(super) struct GlommioIo {
    stream: Stream,
    /// `None` for HTTP/1, which has no `:authority` to mend.
    filter: Option<AuthorityFilter>,
    /// Filtered bytes hyper has not read yet.
    ready: BytesMut,
    /// Where the filter's input is read into.
    scratch: Vec<u8>,
    /// The filter refused the input: the connection ends.
    refused: Option<io::Error>,
}

impl GlommioIo {
    fn new(stream: Stream, read_ahead: &[u8]) -> GlommioIo {
        let mut io = GlommioIo {
            stream,
            filter: Some(AuthorityFilter::new()),
            ready: BytesMut::new(),
            scratch: Vec::new(),
            refused: None,
        };
        if let Some(Err(error)) = io
            .filter
            .as_mut()
            .map(|f| f.feed(read_ahead, &mut io.ready))
        {
            io.refused = Some(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        io
    }

    /// The stream with nothing between it and hyper but the bytes read ahead.
    pub(super) fn plain(stream: Stream, read_ahead: &[u8]) -> GlommioIo {
        GlommioIo {
            stream,
            filter: None,
            ready: BytesMut::from(read_ahead),
            scratch: Vec::new(),
            refused: None,
        }
    }
}

/// Most bytes asked of the socket per read: hyper offers large buffers, and the part handed
/// to the socket is zeroed first.
const READ_CHUNK: usize = 64 << 10;

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = this.refused.take() {
                return Poll::Ready(Err(error));
            }
            let Some(filter) = this.filter.as_mut().filter(|f| !f.passes_through()) else {
                return read_into(&mut this.stream, cx, buf);
            };
            this.scratch.resize(READ_CHUNK, 0);
            match Pin::new(&mut this.stream).poll_read(cx, &mut this.scratch) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => {
                    if let Err(error) = filter.feed(&this.scratch[..n], &mut this.ready) {
                        this.refused = Some(io::Error::new(io::ErrorKind::InvalidData, error));
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reads from the socket straight into hyper's buffer.
fn read_into(
    stream: &mut Stream,
    cx: &mut Context<'_>,
    mut buf: hyper::rt::ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: the first `len` bytes of the cursor's unfilled part are zeroed before they are
    // viewed as initialized, and `advance` is told only how many the read filled.
    unsafe {
        let unfilled = buf.as_mut();
        let len = unfilled.len().min(READ_CHUNK);
        let start = unfilled.as_mut_ptr().cast::<u8>();
        std::ptr::write_bytes(start, 0, len);
        let slice = std::slice::from_raw_parts_mut(start, len);
        match Pin::new(stream).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// A member as etcd's.
fn member(member: crate::members::Member) -> pb::Member {
    pb::Member {
        id: member.id,
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

/// Serves a membership request as the native protocol does; the header and members answered.
async fn cluster(
    node: Rc<Node>,
    request: Request,
    credentials: Credentials,
) -> Result<(pb::ResponseHeader, Option<pb::Member>, Vec<pb::Member>), ServerError> {
    node.permit_cluster(&credentials, &request)?;
    match node.cluster_as(request, credentials.token).await? {
        native::Response::Members {
            mut header,
            member: added,
            members,
        } => {
            super::stamp_header(&mut header, &node);
            Ok((
                etcd::header(header),
                added.map(member),
                members.into_iter().map(member).collect(),
            ))
        }
        _ => Err(mismatched("membership request")),
    }
}

/// etcd's `etcdserverpb.Cluster` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterService;

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        request: tonic::Request<pb::MemberAddRequest>,
    ) -> Result<tonic::Response<pb::MemberAddResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let request = Request::Member(native::MemberRequest::Add {
            peer_urls: request.peer_ur_ls,
            is_learner: request.is_learner,
        });
        on_core(move |node, _| cluster(node, request, credentials))
            .await
            .map(|(header, member, members)| {
                tonic::Response::new(pb::MemberAddResponse {
                    header: Some(header),
                    member,
                    members,
                })
            })
    }

    async fn member_remove(
        &self,
        request: tonic::Request<pb::MemberRemoveRequest>,
    ) -> Result<tonic::Response<pb::MemberRemoveResponse>, Status> {
        let credentials = credentials(&request);
        let request = Request::Member(native::MemberRequest::Remove(request.into_inner().id));
        on_core(move |node, _| cluster(node, request, credentials))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberRemoveResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_update(
        &self,
        request: tonic::Request<pb::MemberUpdateRequest>,
    ) -> Result<tonic::Response<pb::MemberUpdateResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let request = Request::Member(native::MemberRequest::Update {
            id: request.id,
            peer_urls: request.peer_ur_ls,
        });
        on_core(move |node, _| cluster(node, request, credentials))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberUpdateResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_list(
        &self,
        request: tonic::Request<pb::MemberListRequest>,
    ) -> Result<tonic::Response<pb::MemberListResponse>, Status> {
        let credentials = credentials(&request);
        let request = Request::Member(native::MemberRequest::List {
            linearizable: request.into_inner().linearizable,
        });
        on_core(move |node, _| cluster(node, request, credentials))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberListResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_promote(
        &self,
        request: tonic::Request<pb::MemberPromoteRequest>,
    ) -> Result<tonic::Response<pb::MemberPromoteResponse>, Status> {
        let credentials = credentials(&request);
        let request = Request::Member(native::MemberRequest::Promote(request.into_inner().id));
        on_core(move |node, _| cluster(node, request, credentials))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberPromoteResponse {
                    header: Some(header),
                    members,
                })
            })
    }
}

/// The etcd API level lode serves, reported where etcd reports its version.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// An alarm as etcd's enum value.
fn alarm_number(alarm: AlarmType) -> i32 {
    alarm as i32
}

/// etcd's text for an active alarm in `StatusResponse.errors`.
fn alarm_text(alarm: &AlarmMember) -> String {
    let name = match alarm.alarm {
        AlarmType::None => "NONE",
        AlarmType::Nospace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    };
    format!("memberID:{} alarm:{name} ", alarm.member_id)
}

/// A header for answers that carry only who answered and the current revision.
fn plain_header(node: &Node) -> pb::ResponseHeader {
    let mut header = ResponseHeader::at(node.revision());
    super::stamp_header(&mut header, node);
    etcd::header(header)
}

/// etcd's `etcdserverpb.Maintenance` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaintenanceService;

/// The stream answering a Snapshot call: pieces read on the core, sent through a channel.
type SnapshotStream = futures::channel::mpsc::Receiver<Result<pb::SnapshotResponse, Status>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: tonic::Request<pb::AlarmRequest>,
    ) -> Result<tonic::Response<pb::AlarmResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let action = AlarmAction::from_number(request.action as u32).ok_or_else(|| {
            Status::invalid_argument(format!("lode: unknown alarm action {}", request.action))
        })?;
        let alarm = AlarmType::from_number(request.alarm as u32).ok_or_else(|| {
            Status::invalid_argument(format!("lode: unknown alarm type {}", request.alarm))
        })?;
        let request = AlarmRequest {
            action,
            member_id: request.member_id,
            alarm,
        };
        on_core(move |node, _| async move {
            node.permit_alarm(&credentials, request.action)?;
            let mut response = node.alarm(request).await?;
            super::stamp_header(&mut response.header, &node);
            Ok(pb::AlarmResponse {
                header: Some(etcd::header(response.header)),
                alarms: response
                    .alarms
                    .iter()
                    .map(|alarm| pb::AlarmMember {
                        member_id: alarm.member_id,
                        alarm: alarm_number(alarm.alarm),
                    })
                    .collect(),
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn status(
        &self,
        request: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, Status> {
        let credentials = credentials(&request);
        on_core(move |node, _| async move {
            node.permit_user(&credentials)?;
            let mut status = node.status().await?;
            super::stamp_header(&mut status.header, &node);
            let alarms = node
                .alarm(AlarmRequest {
                    action: AlarmAction::Get,
                    member_id: 0,
                    alarm: AlarmType::None,
                })
                .await?;
            Ok(pb::StatusResponse {
                header: Some(etcd::header(status.header)),
                version: ETCD_API_VERSION.to_string(),
                db_size: status.db_size,
                leader: status.leader,
                raft_index: status.raft_index,
                raft_term: status.raft_term,
                raft_applied_index: status.raft_applied_index,
                errors: alarms.alarms.iter().map(alarm_text).collect(),
                db_size_in_use: status.db_size,
                is_learner: status.is_learner,
                // etcd reports its quota; with the quota switched off (negative
                // --quota-backend-bytes) lode has none, reported as 0.
                db_size_quota: node.config.quota_bytes.map_or(0, |quota| quota as i64),
                ..Default::default()
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn defragment(
        &self,
        request: tonic::Request<pb::DefragmentRequest>,
    ) -> Result<tonic::Response<pb::DefragmentResponse>, Status> {
        let credentials = credentials(&request);
        // lode's storage has nothing to defragment: the log's segments are removed whole once
        // compacted and the keyspace lives in memory, so the request succeeds at once.
        on_core(move |node, _| async move {
            node.permit_admin(&credentials)?;
            Ok(pb::DefragmentResponse {
                header: Some(plain_header(&node)),
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn hash(
        &self,
        request: tonic::Request<pb::HashRequest>,
    ) -> Result<tonic::Response<pb::HashResponse>, Status> {
        let credentials = credentials(&request);
        // etcd hashes its whole database file; lode's nearest is the keyspace's HashKV.
        on_core(move |node, _| async move {
            node.permit_admin(&credentials)?;
            match node.hash_kv(0).await? {
                native::Response::HashKv { hash, .. } => Ok(pb::HashResponse {
                    header: Some(plain_header(&node)),
                    hash,
                }),
                _ => Err(mismatched("hash")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn hash_kv(
        &self,
        request: tonic::Request<pb::HashKvRequest>,
    ) -> Result<tonic::Response<pb::HashKvResponse>, Status> {
        let credentials = credentials(&request);
        let revision = request.into_inner().revision;
        on_core(move |node, _| async move {
            node.permit_admin(&credentials)?;
            match node.hash_kv(revision).await? {
                native::Response::HashKv {
                    mut header,
                    hash,
                    compact_revision,
                    hash_revision,
                } => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::HashKvResponse {
                        header: Some(etcd::header(header)),
                        hash,
                        compact_revision,
                        hash_revision,
                    })
                }
                _ => Err(mismatched("HashKV")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: tonic::Request<pb::SnapshotRequest>,
    ) -> Result<tonic::Response<Self::SnapshotStream>, Status> {
        let credentials = credentials(&request);
        // Room for a few pieces: the reader stays just ahead of the client.
        let (sender, receiver) = futures::channel::mpsc::channel(2);
        on_core(move |node, _| async move {
            node.permit_admin(&credentials)?;
            let (path, revision) = node.snapshot().await?;
            glommio::spawn_local(async move {
                stream_snapshot_file(&node, &path, revision, sender).await;
                let _ = std::fs::remove_file(&path);
            })
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }

    async fn move_leader(
        &self,
        request: tonic::Request<pb::MoveLeaderRequest>,
    ) -> Result<tonic::Response<pb::MoveLeaderResponse>, Status> {
        let credentials = credentials(&request);
        let request = Request::MoveLeader(request.into_inner().target_id);
        on_core(move |node, _| async move {
            node.permit_cluster(&credentials, &request)?;
            match node.cluster_as(request, credentials.token).await? {
                native::Response::MoveLeader { mut header } => {
                    super::stamp_header(&mut header, &node);
                    Ok(pb::MoveLeaderResponse {
                        header: Some(etcd::header(header)),
                    })
                }
                _ => Err(mismatched("MoveLeader")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn downgrade(
        &self,
        request: tonic::Request<pb::DowngradeRequest>,
    ) -> Result<tonic::Response<pb::DowngradeResponse>, Status> {
        let credentials = credentials(&request);
        on_core(move |node, _| async move { node.permit_admin(&credentials) }).await?;
        // lode has no older storage versions to go back to.
        Err(Status::invalid_argument(
            "etcdserver: invalid downgrade target version",
        ))
    }
}

/// Sends the export file at `path` as Snapshot pieces, each once the client has taken the one
/// before (the channel holds two), and stops early if the client goes away.
async fn stream_snapshot_file(
    node: &Node,
    path: &std::path::Path,
    revision: i64,
    mut sender: futures::channel::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    use futures::SinkExt;
    let read = async {
        let mut pieces = super::SnapshotPieces::open(path, SNAPSHOT_PIECE_BYTES).await?;
        let mut header = ResponseHeader::at(revision);
        super::stamp_header(&mut header, node);
        while let Some((blob, remaining_bytes)) = pieces.next().await? {
            let response = pb::SnapshotResponse {
                header: Some(etcd::header(header)),
                remaining_bytes,
                blob,
                version: ETCD_API_VERSION.to_string(),
            };
            if sender.send(Ok(response)).await.is_err() {
                // The client went away.
                break;
            }
        }
        pieces.close().await;
        Ok(())
    };
    if let Err(error) = read.await {
        let _ = sender.send(Err(status(error))).await;
    }
}

/// Bytes per Snapshot piece (etcd sends 32 KiB pieces; larger ones cost fewer frames).
const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;

/// etcd's `etcdserverpb.Auth` service: every call is an [`AuthRequest`] answered by the
/// consensus core (`Node::auth`), as the native protocol's are.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthService;

use crate::auth::request::{AuthKind, AuthRequest, AuthResponse};

/// Runs `request` on the core and shapes its answer into `T`.
async fn auth_call<T: Send + 'static>(
    credentials: Credentials,
    request: AuthRequest,
    shape: impl FnOnce(pb::ResponseHeader, AuthResponse) -> T + Send + 'static,
) -> Result<tonic::Response<T>, Status> {
    on_core(move |node, _| async move {
        let mut answer = node.auth(&credentials, request).await?;
        super::stamp_header(&mut answer.header, &node);
        let header = etcd::header(answer.header);
        Ok(shape(header, answer))
    })
    .await
    .map(tonic::Response::new)
}

fn auth_request(kind: AuthKind, name: String) -> AuthRequest {
    AuthRequest {
        name,
        ..AuthRequest::new(kind)
    }
}

fn to_etcd_permission(
    permission: crate::auth::Permission,
) -> lode_protocol::etcd::authpb::Permission {
    lode_protocol::etcd::authpb::Permission {
        perm_type: permission.perm_type.to_i32(),
        key: permission.key,
        range_end: permission.range_end,
    }
}

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(
        &self,
        request: tonic::Request<pb::AuthEnableRequest>,
    ) -> Result<tonic::Response<pb::AuthEnableResponse>, Status> {
        let credentials = credentials(&request);
        auth_call(
            credentials,
            AuthRequest::new(AuthKind::Enable),
            |header, _| pb::AuthEnableResponse {
                header: Some(header),
            },
        )
        .await
    }

    async fn auth_disable(
        &self,
        request: tonic::Request<pb::AuthDisableRequest>,
    ) -> Result<tonic::Response<pb::AuthDisableResponse>, Status> {
        let credentials = credentials(&request);
        auth_call(
            credentials,
            AuthRequest::new(AuthKind::Disable),
            |header, _| pb::AuthDisableResponse {
                header: Some(header),
            },
        )
        .await
    }

    async fn auth_status(
        &self,
        request: tonic::Request<pb::AuthStatusRequest>,
    ) -> Result<tonic::Response<pb::AuthStatusResponse>, Status> {
        let credentials = credentials(&request);
        auth_call(
            credentials,
            AuthRequest::new(AuthKind::Status),
            |header, answer| pb::AuthStatusResponse {
                header: Some(header),
                enabled: answer.enabled,
                auth_revision: answer.auth_revision,
            },
        )
        .await
    }

    async fn authenticate(
        &self,
        request: tonic::Request<pb::AuthenticateRequest>,
    ) -> Result<tonic::Response<pb::AuthenticateResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            ..auth_request(AuthKind::Authenticate, request.name)
        };
        auth_call(credentials, call, |header, answer| {
            pb::AuthenticateResponse {
                header: Some(header),
                token: answer.token,
            }
        })
        .await
    }

    async fn user_add(
        &self,
        request: tonic::Request<pb::AuthUserAddRequest>,
    ) -> Result<tonic::Response<pb::AuthUserAddResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            no_password: request.options.is_some_and(|o| o.no_password),
            ..auth_request(AuthKind::UserAdd, request.name)
        };
        auth_call(credentials, call, |header, _| pb::AuthUserAddResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_get(
        &self,
        request: tonic::Request<pb::AuthUserGetRequest>,
    ) -> Result<tonic::Response<pb::AuthUserGetResponse>, Status> {
        let credentials = credentials(&request);
        let call = auth_request(AuthKind::UserGet, request.into_inner().name);
        auth_call(credentials, call, |header, answer| {
            pb::AuthUserGetResponse {
                header: Some(header),
                roles: answer.names,
            }
        })
        .await
    }

    async fn user_list(
        &self,
        request: tonic::Request<pb::AuthUserListRequest>,
    ) -> Result<tonic::Response<pb::AuthUserListResponse>, Status> {
        let credentials = credentials(&request);
        auth_call(
            credentials,
            AuthRequest::new(AuthKind::UserList),
            |header, answer| pb::AuthUserListResponse {
                header: Some(header),
                users: answer.names,
            },
        )
        .await
    }

    async fn user_delete(
        &self,
        request: tonic::Request<pb::AuthUserDeleteRequest>,
    ) -> Result<tonic::Response<pb::AuthUserDeleteResponse>, Status> {
        let credentials = credentials(&request);
        let call = auth_request(AuthKind::UserDelete, request.into_inner().name);
        auth_call(credentials, call, |header, _| pb::AuthUserDeleteResponse {
            header: Some(header),
        })
        .await
    }

    async fn user_change_password(
        &self,
        request: tonic::Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<tonic::Response<pb::AuthUserChangePasswordResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            password: request.password,
            ..auth_request(AuthKind::UserChangePassword, request.name)
        };
        auth_call(credentials, call, |header, _| {
            pb::AuthUserChangePasswordResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn user_grant_role(
        &self,
        request: tonic::Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<tonic::Response<pb::AuthUserGrantRoleResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            role: request.role,
            ..auth_request(AuthKind::UserGrantRole, request.user)
        };
        auth_call(credentials, call, |header, _| {
            pb::AuthUserGrantRoleResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn user_revoke_role(
        &self,
        request: tonic::Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<tonic::Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            role: request.role,
            ..auth_request(AuthKind::UserRevokeRole, request.name)
        };
        auth_call(credentials, call, |header, _| {
            pb::AuthUserRevokeRoleResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn role_add(
        &self,
        request: tonic::Request<pb::AuthRoleAddRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleAddResponse>, Status> {
        let credentials = credentials(&request);
        let call = auth_request(AuthKind::RoleAdd, request.into_inner().name);
        auth_call(credentials, call, |header, _| pb::AuthRoleAddResponse {
            header: Some(header),
        })
        .await
    }

    async fn role_get(
        &self,
        request: tonic::Request<pb::AuthRoleGetRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleGetResponse>, Status> {
        let credentials = credentials(&request);
        let call = auth_request(AuthKind::RoleGet, request.into_inner().role);
        auth_call(credentials, call, |header, answer| {
            pb::AuthRoleGetResponse {
                header: Some(header),
                perm: answer
                    .permissions
                    .into_iter()
                    .map(to_etcd_permission)
                    .collect(),
            }
        })
        .await
    }

    async fn role_list(
        &self,
        request: tonic::Request<pb::AuthRoleListRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleListResponse>, Status> {
        let credentials = credentials(&request);
        auth_call(
            credentials,
            AuthRequest::new(AuthKind::RoleList),
            |header, answer| pb::AuthRoleListResponse {
                header: Some(header),
                roles: answer.names,
            },
        )
        .await
    }

    async fn role_delete(
        &self,
        request: tonic::Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleDeleteResponse>, Status> {
        let credentials = credentials(&request);
        let call = auth_request(AuthKind::RoleDelete, request.into_inner().role);
        auth_call(credentials, call, |header, _| pb::AuthRoleDeleteResponse {
            header: Some(header),
        })
        .await
    }

    async fn role_grant_permission(
        &self,
        request: tonic::Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let permission = match request.perm {
            None => None,
            Some(perm) => Some(crate::auth::Permission {
                perm_type: crate::auth::PermType::from_i32(perm.perm_type).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "etcdserver: unknown permission type {}",
                        perm.perm_type
                    ))
                })?,
                key: perm.key,
                range_end: perm.range_end,
            }),
        };
        let call = AuthRequest {
            permission,
            ..auth_request(AuthKind::RoleGrantPermission, request.name)
        };
        auth_call(credentials, call, |header, _| {
            pb::AuthRoleGrantPermissionResponse {
                header: Some(header),
            }
        })
        .await
    }

    async fn role_revoke_permission(
        &self,
        request: tonic::Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<tonic::Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let credentials = credentials(&request);
        let request = request.into_inner();
        let call = AuthRequest {
            key: request.key,
            range_end: request.range_end,
            ..auth_request(AuthKind::RoleRevokePermission, request.role)
        };
        auth_call(credentials, call, |header, _| {
            pb::AuthRoleRevokePermissionResponse {
                header: Some(header),
            }
        })
        .await
    }
}

/// gRPC's standard health service: SERVING while this member knows a leader (it can take
/// writes and linearizable reads), NOT_SERVING otherwise; any named service is unknown, as in
/// etcd, which registers only the server-wide "".
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthService;

type HealthStream = futures::channel::mpsc::Receiver<Result<health::HealthCheckResponse, Status>>;

/// How often a Watch looks for a change of status.
const HEALTH_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

async fn serving_status(node: &Node) -> health::health_check_response::ServingStatus {
    use health::health_check_response::ServingStatus;
    match node.status().await {
        Ok(status) if status.leader != 0 => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    }
}

fn known_service(request: &health::HealthCheckRequest) -> Result<(), Status> {
    if request.service.is_empty() {
        Ok(())
    } else {
        Err(Status::not_found("unknown service"))
    }
}

#[tonic::async_trait]
impl health::health_server::Health for HealthService {
    async fn check(
        &self,
        request: tonic::Request<health::HealthCheckRequest>,
    ) -> Result<tonic::Response<health::HealthCheckResponse>, Status> {
        known_service(request.get_ref())?;
        on_core(move |node, _| async move {
            Ok(health::HealthCheckResponse {
                status: serving_status(&node).await as i32,
            })
        })
        .await
        .map(tonic::Response::new)
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        request: tonic::Request<health::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        known_service(request.get_ref())?;
        let (mut sender, receiver) = futures::channel::mpsc::channel(1);
        on_core(move |node, _| async move {
            glommio::spawn_local(async move {
                use futures::SinkExt;
                let mut last = None;
                loop {
                    let status = serving_status(&node).await;
                    if last != Some(status) {
                        last = Some(status);
                        let response = health::HealthCheckResponse {
                            status: status as i32,
                        };
                        if sender.send(Ok(response)).await.is_err() {
                            break;
                        }
                    } else if sender.is_closed() {
                        break;
                    }
                    glommio::timer::sleep(HEALTH_WATCH_INTERVAL).await;
                }
            })
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }
}

/// A gRPC method lode serves, for `grpc_server_*` metrics.
#[derive(Clone, Copy, Debug)]
struct GrpcMethod {
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
    fn serves(&self, path: &str) -> bool {
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
const GRPC_METHODS: [GrpcMethod; 50] = [
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
const GRPC_CODES: [&str; 17] = [
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
static GRPC_STARTED: [AtomicU64; GRPC_METHODS.len()] =
    [const { AtomicU64::new(0) }; GRPC_METHODS.len()];

/// Calls answered, per method and status code.
static GRPC_HANDLED: [[AtomicU64; GRPC_CODES.len()]; GRPC_METHODS.len()] =
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
