//! etcd's `etcdserverpb.Watch` service: the Watch call, and the stream it serves on the core
//! (also the gateway's, `server::http`), with responses split into fragments as etcd's.

use std::rc::Rc;
use std::task::Poll;

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{credentials, on_core, requires_leader, status};
use crate::api::etcd;
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::mvcc::request::ResponseHeader;
use crate::server::node::Node;
use crate::server::Limits;

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
                .open(node.router(), crate::server::WATCH_STREAM_BUDGET_BYTES)
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
pub(in crate::server) async fn serve_watch_stream<R>(
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
    let mut owner = crate::server::WatchOwner::new(node);
    loop {
        // Everything queued goes out first (waiting while the client is slow to read), each
        // response after the watches were checked against any permission change applied
        // meanwhile.
        loop {
            crate::server::recheck_watches(&mut slot.stream.borrow_mut(), node, &mut owner);
            let next = slot.stream.borrow_mut().pop();
            let Some(response) = next else {
                break;
            };
            let mut header = ResponseHeader::at(response.revision);
            crate::server::stamp_header(&mut header, node);
            let fragment = response.fragment;
            let whole = etcd::watch_response(response, header);
            for part in fragments(whole, fragment, limits.max_request_bytes) {
                if responses.send(Ok(part)).await.is_err() {
                    return;
                }
            }
        }
        crate::server::start_catch_ups(node, slot);
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
                    crate::server::apply_watch_request(
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
