//! etcd's server-side locks and elections (`v3lockpb.Lock`, `v3electionpb.Election`), built as
//! etcd builds them from the KV API, leases and watches, on the core serving the call:
//!
//! - every contender owns one key under the name's prefix, `<name>/<lease ID in hex>`, created
//!   with its lease by a txn that creates it only when absent (a contender asking again with
//!   the same lease finds its own key);
//! - ownership (the lock, or leadership) belongs to the oldest key under the prefix, the one
//!   with the lowest create revision: a contender waits until every older key is deleted,
//!   watching the newest older one at a time;
//! - a key lives as long as its lease: when the holder's lease expires or is revoked the key
//!   goes and the next contender takes over. Holding a lock therefore proves nothing by itself
//!   once the holder may have stalled past its TTL; a holder guards its writes with a compare
//!   on its key's create revision (fencing), which fails once the key is gone.
//!
//! Errors are etcd's, answered with gRPC code Unknown as etcd's handlers answer them.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use super::access::Access;
use super::node::Node;
use crate::consensus::ServerError;
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::mvcc::kv::{prefix_range_end, KeyValue};
use crate::mvcc::request::*;
use crate::watch::stream::CreateWatch;
use crate::watch::EventKind;

/// TTL of the lease a Lock or Campaign without one gets (etcd's default session TTL; etcd's
/// handlers grant it and never keep it alive).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// etcd's errors of the lock and election services.
pub const NOT_LEADER: &str = "election: not leader";
/// See [`NOT_LEADER`].
pub const NO_LEADER: &str = "election: no leader";
/// See [`NOT_LEADER`].
pub const SESSION_EXPIRED: &str = "mutex: session is expired";
/// See [`NOT_LEADER`].
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

pub use crate::api::native::{contender_key, prefix, LeaderKey};

/// A read of the oldest key under `prefix` (the owner).
fn owner_range(prefix: &Bytes) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: prefix_range_end(prefix),
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        limit: 1,
        ..RangeRequest::default()
    }
}

/// The txn that makes `key` with `value` and `lease` unless it exists, and reads the owner:
/// success `[put, owner]`, failure `[key, owner]`.
pub fn contend_txn(prefix: &Bytes, key: &Bytes, value: &Bytes, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create,
            key: key.clone(),
            range_end: Bytes::new(),
            operand: CompareOperand::Create(0),
        }],
        success: vec![
            RequestOp::Put(PutRequest {
                key: key.clone(),
                value: value.clone(),
                lease,
                ..PutRequest::default()
            }),
            RequestOp::Range(owner_range(prefix)),
        ],
        failure: vec![
            RequestOp::Range(RangeRequest {
                key: key.clone(),
                ..RangeRequest::default()
            }),
            RequestOp::Range(owner_range(prefix)),
        ],
    }
}

/// A txn doing `then` only while `key` still has create revision `rev`.
fn guarded(key: &Bytes, rev: i64, then: RequestOp) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create,
            key: key.clone(),
            range_end: Bytes::new(),
            operand: CompareOperand::Create(rev),
        }],
        success: vec![then],
        failure: Vec::new(),
    }
}

/// What the contend txn found: the contender's create revision, the owner's, and the header.
#[derive(Debug)]
struct Contended {
    header: ResponseHeader,
    own_rev: i64,
    owner_rev: Option<i64>,
    /// The value the key already had (a contender asking again).
    existing_value: Option<Bytes>,
}

fn contended(response: TxnResponse) -> Result<Contended, ServerError> {
    let ranges: Vec<&RangeResponse> = response
        .responses
        .iter()
        .filter_map(|op| match op {
            ResponseOp::Range(range) => Some(range),
            _ => None,
        })
        .collect();
    let owner_rev = ranges
        .last()
        .and_then(|range| range.kvs.first())
        .map(|kv| kv.create_revision);
    if response.succeeded {
        return Ok(Contended {
            header: response.header,
            own_rev: response.header.revision,
            owner_rev,
            existing_value: None,
        });
    }
    let own = ranges
        .first()
        .and_then(|range| range.kvs.first())
        .ok_or(ServerError::Coordination(SESSION_EXPIRED))?;
    Ok(Contended {
        header: response.header,
        own_rev: own.create_revision,
        owner_rev,
        existing_value: Some(own.value.clone()),
    })
}

async fn txn(node: &Node, request: TxnRequest) -> Result<TxnResponse, ServerError> {
    match node.propose(WriteRequest::Txn(request)).await? {
        WriteResponse::Txn(response) => Ok(response),
        _ => Err(ServerError::Internal(
            "a txn was answered as another write".into(),
        )),
    }
}

async fn delete(node: &Node, key: &Bytes) -> Result<ResponseHeader, ServerError> {
    let request = WriteRequest::DeleteRange(DeleteRangeRequest {
        key: key.clone(),
        ..DeleteRangeRequest::default()
    });
    match node.propose(request).await? {
        WriteResponse::DeleteRange(response) => Ok(response.header),
        _ => Err(ServerError::Internal(
            "a delete was answered as another write".into(),
        )),
    }
}

/// `lease`, or a new lease of `DEFAULT_SESSION_TTL` when it is 0, as etcd's handlers do.
async fn session_lease(node: &Node, lease: i64) -> Result<i64, ServerError> {
    if lease != 0 {
        return Ok(lease);
    }
    let grant = LeaseRequest::Grant {
        id: 0,
        ttl: DEFAULT_SESSION_TTL,
    };
    match node.lease_write(grant, None).await? {
        WriteResponse::Lease(LeaseResponse {
            outcome: LeaseOutcome::Granted { id, .. },
            ..
        }) => Ok(id),
        _ => Err(ServerError::Internal(
            "a grant was answered as another write".into(),
        )),
    }
}

/// A watch of this core's hub for the lock and election services; closed when dropped.
struct ServerWatch {
    node: Rc<Node>,
    hub: Rc<crate::shard::watch::WatchHub>,
    id: u64,
    slot: Rc<crate::shard::watch::WatchSlot>,
}

impl ServerWatch {
    async fn open(node: &Rc<Node>, create: CreateWatch) -> Result<ServerWatch, ServerError> {
        let hub = node.router().local().watch_hub().clone();
        let (id, slot) = hub
            .open(node.router(), super::WATCH_STREAM_BUDGET_BYTES)
            .await?;
        slot.stream.borrow_mut().create(create, node.revision());
        Ok(ServerWatch {
            node: node.clone(),
            hub,
            id,
            slot,
        })
    }

    /// The next response with events; `None` when the watch was canceled (its start was
    /// compacted away).
    async fn next(&self) -> Result<Option<crate::watch::stream::WatchResponse>, ServerError> {
        loop {
            loop {
                let next = self.slot.stream.borrow_mut().pop();
                let Some(response) = next else {
                    break;
                };
                if response.canceled {
                    return Ok(None);
                }
                if !response.events.is_empty() {
                    return Ok(Some(response));
                }
            }
            if self.node.router().local().stopping() {
                return Err(ServerError::Stopped);
            }
            super::watching::start_catch_ups(&self.node, &self.slot);
            std::future::poll_fn(|cx| self.slot.poll_woken(cx)).await;
        }
    }
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.hub.close(self.id, self.node.router());
    }
}

/// Waits until no key under `prefix` was created at or before `max_create_rev` (etcd's
/// `waitDeletes`): watches the newest such key until it is deleted, then looks again.
async fn wait_deletes(
    node: &Rc<Node>,
    prefix: &Bytes,
    max_create_rev: i64,
) -> Result<(), ServerError> {
    loop {
        let older = RangeRequest {
            key: prefix.clone(),
            range_end: prefix_range_end(prefix),
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Create,
            limit: 1,
            max_create_revision: max_create_rev,
            ..RangeRequest::default()
        };
        let found = node.range(&older).await?;
        let Some(newest_older) = found.kvs.first() else {
            return Ok(());
        };
        let watch = ServerWatch::open(
            node,
            CreateWatch {
                key: newest_older.key.clone(),
                start_revision: found.header.revision,
                no_put: true,
                ..CreateWatch::default()
            },
        )
        .await?;
        // A canceled watch (its start compacted away) just means looking again.
        while let Some(response) = watch.next().await? {
            if response
                .events
                .iter()
                .any(|event| event.kind == EventKind::Delete)
            {
                break;
            }
        }
    }
}

/// Runs `work` unless `cancelled` resolves first (the caller went away): `None` then.
pub(super) async fn unless_cancelled<T>(
    work: impl Future<Output = Result<T, ServerError>>,
    cancelled: impl Future<Output = ()>,
) -> Option<Result<T, ServerError>> {
    let mut work = pin!(work);
    let mut cancelled = pin!(cancelled);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(outcome));
        }
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// etcd's Lock: the ownership key once the caller holds the lock `name`. A caller that goes
/// away while waiting (`cancelled`) leaves the queue: its key is deleted. One that waited is
/// checked again before it is handed the lock (its user may have lost the lock's keys
/// meanwhile: then it leaves the queue with the refusal).
pub async fn lock(
    node: &Rc<Node>,
    name: Bytes,
    lease: i64,
    cancelled: impl Future<Output = ()>,
    credentials: &crate::auth::Credentials,
) -> Result<(ResponseHeader, Bytes), ServerError> {
    let lease = session_lease(node, lease).await?;
    let prefix = prefix(&name);
    let key = contender_key(&prefix, lease);
    let found = contended(txn(node, contend_txn(&prefix, &key, &Bytes::new(), lease)).await?)?;
    if found.owner_rev.is_none_or(|owner| owner == found.own_rev) {
        return Ok((found.header, key));
    }
    let waited = unless_cancelled(wait_deletes(node, &prefix, found.own_rev - 1), cancelled).await;
    match waited {
        Some(Ok(())) => {}
        Some(Err(error)) => {
            let _ = delete(node, &key).await;
            return Err(error);
        }
        None => {
            let _ = delete(node, &key).await;
            return Err(ServerError::Coordination("context canceled"));
        }
    }
    // The key may have gone with its lease while waiting.
    let own = match node
        .range(&RangeRequest {
            key: key.clone(),
            ..RangeRequest::default()
        })
        .await
    {
        Ok(own) => own,
        Err(error) => {
            let _ = delete(node, &key).await;
            return Err(error);
        }
    };
    if own.kvs.is_empty() {
        return Err(ServerError::Coordination(SESSION_EXPIRED));
    }
    if let Err(refused) = node.permit_name(credentials, &name, Access::ReadWrite) {
        let _ = delete(node, &key).await;
        return Err(refused);
    }
    Ok((own.header, key))
}

/// etcd's Unlock: deletes the ownership key.
pub async fn unlock(node: &Node, key: &Bytes) -> Result<ResponseHeader, ServerError> {
    delete(node, key).await
}

/// etcd's Campaign: the leadership once the caller leads election `name` with `value`. A
/// caller that goes away while waiting withdraws (its key is deleted); one whose user lost
/// the election's keys while it waited withdraws with the refusal.
pub async fn campaign(
    node: &Rc<Node>,
    name: Bytes,
    lease: i64,
    value: Bytes,
    cancelled: impl Future<Output = ()>,
    credentials: &crate::auth::Credentials,
) -> Result<(ResponseHeader, LeaderKey), ServerError> {
    let lease = session_lease(node, lease).await?;
    let prefix = prefix(&name);
    let key = contender_key(&prefix, lease);
    let found = contended(txn(node, contend_txn(&prefix, &key, &value, lease)).await?)?;
    let leader = LeaderKey {
        name,
        key: key.clone(),
        rev: found.own_rev,
        lease,
    };
    // A contender asking again with another value proclaims it (answering with the
    // campaign's header, as etcd); if that fails it withdraws.
    if found
        .existing_value
        .is_some_and(|existing| existing != value)
    {
        if let Err(error) = proclaim(node, &leader, value).await {
            let _ = resign(node, &leader).await;
            return Err(error);
        }
    }
    let header = found.header;
    let waited = unless_cancelled(wait_deletes(node, &prefix, leader.rev - 1), cancelled).await;
    match waited {
        Some(Ok(())) => match node.permit_name(credentials, &leader.name, Access::ReadWrite) {
            Ok(()) => Ok((header, leader)),
            Err(refused) => {
                let _ = resign(node, &leader).await;
                Err(refused)
            }
        },
        Some(Err(error)) => Err(error),
        None => {
            let _ = resign(node, &leader).await;
            Err(ServerError::Coordination("context canceled"))
        }
    }
}

/// etcd's Proclaim: the leader's new value, refused unless it still leads.
pub async fn proclaim(
    node: &Node,
    leader: &LeaderKey,
    value: Bytes,
) -> Result<ResponseHeader, ServerError> {
    let put = RequestOp::Put(PutRequest {
        key: leader.key.clone(),
        value,
        lease: leader.lease,
        ..PutRequest::default()
    });
    let response = txn(node, guarded(&leader.key, leader.rev, put)).await?;
    if !response.succeeded {
        return Err(ServerError::Coordination(NOT_LEADER));
    }
    Ok(response.header)
}

/// etcd's Resign: the leader's key is deleted if it still leads (no error otherwise).
pub async fn resign(node: &Node, leader: &LeaderKey) -> Result<ResponseHeader, ServerError> {
    let delete = RequestOp::DeleteRange(DeleteRangeRequest {
        key: leader.key.clone(),
        ..DeleteRangeRequest::default()
    });
    Ok(txn(node, guarded(&leader.key, leader.rev, delete))
        .await?
        .header)
}

/// etcd's Leader: the current leader's pair.
pub async fn leader(node: &Node, name: &[u8]) -> Result<(ResponseHeader, KeyValue), ServerError> {
    let found = node.range(&owner_range(&prefix(name))).await?;
    match found.kvs.into_iter().next() {
        Some(kv) => Ok((found.header, kv)),
        None => Err(ServerError::Coordination(NO_LEADER)),
    }
}

/// etcd's Observe: sends the leader's pair whenever leadership changes or the leader
/// proclaims, until `send` fails (the caller went away).
pub async fn observe<S, F>(node: &Rc<Node>, name: Bytes, mut send: S) -> Result<(), ServerError>
where
    S: FnMut(ResponseHeader, KeyValue) -> F,
    F: Future<Output = bool>,
{
    let prefix = prefix(&name);
    loop {
        let found = node.range(&owner_range(&prefix)).await?;
        // Where the leader's proclamations are watched from: after what was just read.
        let (header, leader, watch_from) = match found.kvs.into_iter().next() {
            Some(kv) => (found.header, kv, found.header.revision + 1),
            None => {
                // No leader yet: the first key created under the prefix is.
                let watch = ServerWatch::open(
                    node,
                    CreateWatch {
                        key: prefix.clone(),
                        range_end: prefix_range_end(&prefix),
                        start_revision: found.header.revision,
                        no_delete: true,
                        ..CreateWatch::default()
                    },
                )
                .await?;
                let Some(response) = watch.next().await? else {
                    continue;
                };
                let Some(event) = response.events.into_iter().next() else {
                    continue;
                };
                let revision = event.kv.mod_revision;
                (ResponseHeader::at(revision), event.kv, revision + 1)
            }
        };
        if !send(header, leader.clone()).await {
            return Ok(());
        }
        // Its proclamations until it goes.
        let watch = ServerWatch::open(
            node,
            CreateWatch {
                key: leader.key.clone(),
                start_revision: watch_from,
                ..CreateWatch::default()
            },
        )
        .await?;
        'leader: while let Some(response) = watch.next().await? {
            let header = ResponseHeader::at(response.revision);
            for event in response.events {
                if event.kind == EventKind::Delete {
                    break 'leader;
                }
                if !send(header, event.kv).await {
                    return Ok(());
                }
            }
        }
    }
}

/// The gRPC services: etcd's `v3lockpb.Lock` and `v3electionpb.Election`.
pub mod services {
    use std::rc::Rc;

    use bytes::Bytes;
    use lode_protocol::etcd::{v3electionpb as election_pb, v3lockpb as lock_pb};
    use tonic::Status;

    use super::super::admission::{self, CallMeta};
    use super::super::grpc::{call_meta, intercept, on_core, on_core_until_cancelled};
    use super::super::node::Node;
    use super::super::Limits;
    use super::LeaderKey;
    use crate::api::etcd;
    use crate::api::native::CoordinationRequest;
    use crate::consensus::ServerError;
    use crate::mvcc::request::ResponseHeader;

    /// etcd's concurrency handlers answer every failure with gRPC code Unknown and the
    /// error's message (their errors reach gRPC as plain errors, not statuses).
    fn unknown(status: Status) -> Status {
        Status::unknown(status.message().to_string())
    }

    /// A lock or election call through the one admission path (size, permissions), as the
    /// native protocol's.
    async fn admit(
        node: &Node,
        limits: Limits,
        meta: &CallMeta,
        request: CoordinationRequest,
    ) -> Result<(), ServerError> {
        let request = crate::api::native::Request::Coordination(request);
        admission::admit(node, limits, meta, &request, None).await?;
        Ok(())
    }

    /// etcd's interceptors for a lock or election call, before its handler: their refusals
    /// keep their gRPC code (Unavailable), where the handler's errors become Unknown.
    fn intercepted(meta: &CallMeta, request: &CoordinationRequest) -> Result<(), Status> {
        intercept(
            meta,
            &crate::api::native::Request::Coordination(request.clone()),
        )
    }

    fn status(error: ServerError) -> Status {
        Status::unknown(error.to_string())
    }

    fn header(
        mut header: ResponseHeader,
        node: &Node,
    ) -> Option<lode_protocol::etcd::etcdserverpb::ResponseHeader> {
        super::super::stamp_header(&mut header, node);
        Some(etcd::header(header))
    }

    fn leader_key(leader: Option<election_pb::LeaderKey>) -> Result<LeaderKey, ServerError> {
        let leader = leader.ok_or(ServerError::Coordination(super::MISSING_LEADER_KEY))?;
        Ok(LeaderKey {
            name: leader.name,
            key: leader.key,
            rev: leader.rev,
            lease: leader.lease,
        })
    }

    /// etcd's `v3lockpb.Lock`.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct LockService;

    #[tonic::async_trait]
    impl lock_pb::lock_server::Lock for LockService {
        async fn lock(
            &self,
            request: tonic::Request<lock_pb::LockRequest>,
        ) -> Result<tonic::Response<lock_pb::LockResponse>, Status> {
            let meta = call_meta(&request);
            let request = request.into_inner();
            let lock = CoordinationRequest::Lock {
                name: request.name.clone(),
                lease: request.lease,
            };
            intercepted(&meta, &lock)?;
            on_core_until_cancelled(move |node, limits, gone| async move {
                admit(&node, limits, &meta, lock).await?;
                // Resolves once the handler is dropped (the caller went away).
                let cancelled = futures::FutureExt::map(gone, drop);
                let credentials = &meta.credentials;
                let (held, key) =
                    super::lock(&node, request.name, request.lease, cancelled, credentials).await?;
                Ok(lock_pb::LockResponse {
                    header: header(held, &node),
                    key,
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }

        async fn unlock(
            &self,
            request: tonic::Request<lock_pb::UnlockRequest>,
        ) -> Result<tonic::Response<lock_pb::UnlockResponse>, Status> {
            let meta = call_meta(&request);
            let key = request.into_inner().key;
            let unlock = CoordinationRequest::Unlock { key: key.clone() };
            intercepted(&meta, &unlock)?;
            on_core(move |node, limits| async move {
                admit(&node, limits, &meta, unlock).await?;
                let done = super::unlock(&node, &key).await?;
                Ok(lock_pb::UnlockResponse {
                    header: header(done, &node),
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }
    }

    /// etcd's `v3electionpb.Election`.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct ElectionService;

    /// The responses of an Observe call.
    type Observations =
        futures::channel::mpsc::Receiver<Result<election_pb::LeaderResponse, Status>>;

    #[tonic::async_trait]
    impl election_pb::election_server::Election for ElectionService {
        async fn campaign(
            &self,
            request: tonic::Request<election_pb::CampaignRequest>,
        ) -> Result<tonic::Response<election_pb::CampaignResponse>, Status> {
            let meta = call_meta(&request);
            let request = request.into_inner();
            let campaign = CoordinationRequest::Campaign {
                name: request.name.clone(),
                lease: request.lease,
                value: request.value.clone(),
            };
            intercepted(&meta, &campaign)?;
            on_core_until_cancelled(move |node, limits, gone| async move {
                admit(&node, limits, &meta, campaign).await?;
                // Resolves once the handler is dropped (the caller went away).
                let cancelled = futures::FutureExt::map(gone, drop);
                let (led, leader) = super::campaign(
                    &node,
                    request.name,
                    request.lease,
                    request.value,
                    cancelled,
                    &meta.credentials,
                )
                .await?;
                Ok(election_pb::CampaignResponse {
                    header: header(led, &node),
                    leader: Some(election_pb::LeaderKey {
                        name: leader.name,
                        key: leader.key,
                        rev: leader.rev,
                        lease: leader.lease,
                    }),
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }

        async fn proclaim(
            &self,
            request: tonic::Request<election_pb::ProclaimRequest>,
        ) -> Result<tonic::Response<election_pb::ProclaimResponse>, Status> {
            let meta = call_meta(&request);
            let request = request.into_inner();
            // The interceptors look at the kind of call only; its leader key is the
            // handler's to check, after them.
            intercepted(
                &meta,
                &CoordinationRequest::Proclaim {
                    leader: LeaderKey::default(),
                    value: Bytes::new(),
                },
            )?;
            on_core(move |node, limits| async move {
                let leader = leader_key(request.leader)?;
                let proclaim = CoordinationRequest::Proclaim {
                    leader: leader.clone(),
                    value: request.value.clone(),
                };
                admit(&node, limits, &meta, proclaim).await?;
                let done = super::proclaim(&node, &leader, request.value).await?;
                Ok(election_pb::ProclaimResponse {
                    header: header(done, &node),
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }

        async fn leader(
            &self,
            request: tonic::Request<election_pb::LeaderRequest>,
        ) -> Result<tonic::Response<election_pb::LeaderResponse>, Status> {
            let meta = call_meta(&request);
            let name = request.into_inner().name;
            let leader = CoordinationRequest::Leader { name: name.clone() };
            intercepted(&meta, &leader)?;
            on_core(move |node, limits| async move {
                admit(&node, limits, &meta, leader).await?;
                let (found, kv) = super::leader(&node, &name).await?;
                Ok(election_pb::LeaderResponse {
                    header: header(found, &node),
                    kv: Some(etcd::key_value(kv)),
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }

        type ObserveStream = Observations;

        async fn observe(
            &self,
            request: tonic::Request<election_pb::LeaderRequest>,
        ) -> Result<tonic::Response<Self::ObserveStream>, Status> {
            let meta = call_meta(&request);
            let name = request.into_inner().name;
            let (sender, receiver) = futures::channel::mpsc::channel(16);
            on_core(move |node, limits| async move {
                let observe = CoordinationRequest::Observe { name: name.clone() };
                admit(&node, limits, &meta, observe).await?;
                glommio::spawn_local(observe_into(node, name, sender)).detach();
                Ok(())
            })
            .await?;
            Ok(tonic::Response::new(receiver))
        }

        async fn resign(
            &self,
            request: tonic::Request<election_pb::ResignRequest>,
        ) -> Result<tonic::Response<election_pb::ResignResponse>, Status> {
            let meta = call_meta(&request);
            let request = request.into_inner();
            // As Proclaim: the kind of call only, its leader key checked by the handler.
            intercepted(
                &meta,
                &CoordinationRequest::Resign {
                    leader: LeaderKey::default(),
                },
            )?;
            on_core(move |node, limits| async move {
                let leader = leader_key(request.leader)?;
                let resign = CoordinationRequest::Resign {
                    leader: leader.clone(),
                };
                admit(&node, limits, &meta, resign).await?;
                let done = super::resign(&node, &leader).await?;
                Ok(election_pb::ResignResponse {
                    header: header(done, &node),
                })
            })
            .await
            .map(tonic::Response::new)
            .map_err(unknown)
        }
    }

    /// Serves one Observe call into `sender` until the caller goes away (or the node stops,
    /// which ends the stream with its error).
    pub(in crate::server) async fn observe_into(
        node: Rc<Node>,
        name: Bytes,
        sender: futures::channel::mpsc::Sender<Result<election_pb::LeaderResponse, Status>>,
    ) {
        use futures::SinkExt;
        let observing = super::observe(&node, name, |found, kv| {
            let mut sender = sender.clone();
            let response = election_pb::LeaderResponse {
                header: header(found, &node),
                kv: Some(etcd::key_value(kv)),
            };
            async move { sender.send(Ok(response)).await.is_ok() }
        });
        // An election that stays quiet would keep a caller that went away observing: check
        // every second.
        let caller_gone = async {
            while !sender.is_closed() {
                glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
            }
        };
        if let Some(Err(error)) = super::unless_cancelled(observing, caller_gone).await {
            let mut sender = sender.clone();
            let _ = sender.send(Err(status(error))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_keys_are_etcds() {
        let prefix = prefix(b"lock");
        assert_eq!(&prefix[..], b"lock/");
        assert_eq!(
            &contender_key(&prefix, 0x694d_7b3e_2a1c_5f04)[..],
            b"lock/694d7b3e2a1c5f04"
        );
        assert_eq!(&contender_key(&prefix, 0x2a)[..], b"lock/2a");
        assert_eq!(&contender_key(&prefix, -1)[..], b"lock/-1");
    }

    #[test]
    fn the_contend_txn_creates_only_a_missing_key_and_reads_the_oldest() {
        let prefix = prefix(b"n");
        let key = contender_key(&prefix, 7);
        let txn = contend_txn(&prefix, &key, &Bytes::from_static(b"v"), 7);
        assert_eq!(txn.compare[0].operand, CompareOperand::Create(0));
        let RequestOp::Range(owner) = &txn.success[1] else {
            panic!("{txn:?}")
        };
        assert_eq!(
            (owner.sort_target, owner.sort_order, owner.limit),
            (SortTarget::Create, SortOrder::Ascend, 1)
        );
        assert_eq!(&owner.range_end[..], b"n0");
        let found = contended(TxnResponse {
            header: ResponseHeader::at(9),
            succeeded: false,
            responses: vec![
                ResponseOp::Range(RangeResponse {
                    kvs: vec![KeyValue {
                        key: key.clone(),
                        create_revision: 5,
                        value: Bytes::from_static(b"old"),
                        ..KeyValue::default()
                    }],
                    ..RangeResponse::default()
                }),
                ResponseOp::Range(RangeResponse {
                    kvs: vec![KeyValue {
                        create_revision: 3,
                        ..KeyValue::default()
                    }],
                    ..RangeResponse::default()
                }),
            ],
        })
        .unwrap();
        assert_eq!((found.own_rev, found.owner_rev), (5, Some(3)));
        assert_eq!(found.existing_value, Some(Bytes::from_static(b"old")));
    }
}
