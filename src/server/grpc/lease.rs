//! etcd's `etcdserverpb.Lease` service: grant, revoke, time-to-live, list, and the
//! LeaseKeepAlive stream (also the gateway's, `server::http`).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, mismatched, on_core, status};
use crate::api::etcd;
use crate::api::native::{LeaseAnswer, LeaseQuery};
use crate::consensus::ServerError;
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::mvcc::request::{LeaseResponse, WriteResponse};
use crate::server::admission::{self, Call, CallMeta};
use crate::server::node::Node;
use crate::server::Limits;

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
        let meta = call_meta(&request);
        let request = request.into_inner();
        let grant = LeaseRequest::Grant {
            id: request.id,
            ttl: request.ttl,
        };
        on_core(move |node, limits| async move {
            match admit_lease_write(&node, limits, &meta, grant).await? {
                WriteResponse::Lease(LeaseResponse {
                    mut header,
                    outcome: LeaseOutcome::Granted { id, ttl },
                }) => {
                    crate::server::stamp_header(&mut header, &node);
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
        let meta = call_meta(&request);
        let revoke = LeaseRequest::Revoke {
            id: request.into_inner().id,
        };
        on_core(move |node, limits| async move {
            match admit_lease_write(&node, limits, &meta, revoke).await? {
                WriteResponse::Lease(LeaseResponse {
                    mut header,
                    outcome: LeaseOutcome::Revoked,
                }) => {
                    crate::server::stamp_header(&mut header, &node);
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
        let meta = call_meta(&request);
        let requests = request.into_inner();
        let (sender, receiver) = futures::channel::mpsc::channel(128);
        on_core(move |node, limits| async move {
            admission::admit_call(&node, &meta, Call::KeepAliveStream)?;
            glommio::spawn_local(serve_keep_alives(
                node,
                limits,
                requests,
                sender,
                meta.credentials,
            ))
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<pb::LeaseTimeToLiveResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let query = LeaseQuery::TimeToLive {
            id: request.id,
            keys: request.keys,
        };
        on_core(move |node, limits| async move {
            admit_lease_query(&node, limits, &meta, &query).await?;
            match node
                .lease_query(query, meta.credentials.token.clone())
                .await?
            {
                LeaseAnswer::TimeToLive {
                    mut header,
                    id,
                    ttl,
                    granted_ttl,
                    keys,
                } => {
                    crate::server::stamp_header(&mut header, &node);
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
        let meta = call_meta(&request);
        on_core(move |node, limits| async move {
            admit_lease_query(&node, limits, &meta, &LeaseQuery::Leases).await?;
            match node
                .lease_query(LeaseQuery::Leases, meta.credentials.token.clone())
                .await?
            {
                LeaseAnswer::Leases { mut header, ids } => {
                    crate::server::stamp_header(&mut header, &node);
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

/// A LeaseGrant or LeaseRevoke through the one admission path and the log.
async fn admit_lease_write(
    node: &Node,
    limits: Limits,
    meta: &CallMeta,
    request: LeaseRequest,
) -> Result<WriteResponse, ServerError> {
    let write = crate::mvcc::request::WriteRequest::Lease(request);
    admission::write(node, limits, meta, write, None).await
}

/// A keep-alive, TimeToLive or Leases through the one admission path.
async fn admit_lease_query(
    node: &Node,
    limits: Limits,
    meta: &CallMeta,
    query: &LeaseQuery,
) -> Result<(), ServerError> {
    let request = crate::api::native::Request::Lease(query.clone());
    admission::admit(node, limits, meta, &request, None).await?;
    Ok(())
}

/// What a keep-alive stream's task woke up for.
enum KeepAliveEvent {
    Request(Option<Result<pb::LeaseKeepAliveRequest, Status>>),
    Renewed(Result<LeaseAnswer, ServerError>),
    Drained,
}

/// Serves one LeaseKeepAlive call, once its opening was admitted (`Call::KeepAliveStream`):
/// every request renews its lease in this core's next batch (several in flight, answered as
/// their batches apply), each admitted as it comes with the call's `credentials` (the call's
/// `hasleader` was checked at its opening, as etcd's interceptor checks a stream's); a lease
/// that does not exist is answered with TTL 0, as etcd's. The stream ends when the client
/// closes its side and every renewal is answered, or with the error of a renewal that failed
/// (no leader, timeout).
pub(in crate::server) async fn serve_keep_alives<R>(
    node: Rc<Node>,
    limits: Limits,
    mut requests: R,
    mut responses: futures::channel::mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
    credentials: crate::auth::Credentials,
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
                let meta = CallMeta::of(credentials.clone());
                renewals.push(Box::pin(async move {
                    let query = LeaseQuery::KeepAlive(request.id);
                    admit_lease_query(&node, limits, &meta, &query).await?;
                    node.lease_query(query, meta.credentials.token).await
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
                crate::server::stamp_header(&mut header, &node);
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
