//! etcd's `etcdserverpb.Watch` service: the Watch call, and its side of the shared stream loop
//! (`server::watching`; also the gateway's, `server::http`): requests decoded from and
//! responses encoded as etcd's protobuf messages, sized for fragmenting as protobuf.

use std::rc::Rc;
use std::task::Poll;

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, on_core, status};
use crate::api::etcd;
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::mvcc::request::ResponseHeader;
use crate::server::admission::{self, Call};
use crate::server::node::Node;
use crate::server::watching::{self, Inbound, WatchClient};
use crate::server::Limits;
use crate::watch::stream::WatchResponse;

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
        let meta = call_meta(&request);
        let requests = request.into_inner();
        let (sender, receiver) = futures::channel::mpsc::channel(128);
        on_core(move |node, limits| async move {
            admission::admit_call(&node, &meta, Call::WatchStream)?;
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
                    meta.require_leader,
                    &meta.credentials,
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

/// A Watch call's side of the shared stream loop: its requests in, its responses out as
/// etcd's protobuf messages.
struct GrpcWatch<'a, R> {
    requests: R,
    responses: futures::channel::mpsc::Sender<Result<pb::WatchResponse, Status>>,
    credentials: &'a Credentials,
}

impl<R> WatchClient for GrpcWatch<'_, R>
where
    R: futures::Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
{
    type Broken = Status;

    fn poll_inbound(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Inbound<Status>> {
        use crate::api::native::WatchRequest;
        use futures::StreamExt;
        use pb::watch_request::RequestUnion;
        let request = match self.requests.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(Inbound::Closed),
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Inbound::Broken(error)),
            Poll::Ready(Some(Ok(request))) => request,
        };
        let request = match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                WatchRequest::Create(etcd::watch_create(create))
            }
            Some(RequestUnion::CancelRequest(cancel)) => WatchRequest::Cancel(cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => WatchRequest::Progress,
            None => return Poll::Ready(Inbound::Nothing),
        };
        Poll::Ready(Inbound::Request(request, self.credentials.clone()))
    }

    async fn send(&mut self, response: WatchResponse, header: ResponseHeader) -> bool {
        use futures::SinkExt;
        let more = response.fragment;
        let mut message = etcd::watch_response(response, header);
        message.fragment = more;
        self.responses.send(Ok(message)).await.is_ok()
    }

    fn encoded_len(&self, response: &WatchResponse, header: &ResponseHeader) -> usize {
        use prost::Message;
        etcd::watch_response(response.clone(), *header).encoded_len()
    }

    fn event_len(&self, event: &crate::watch::Event) -> usize {
        use prost::Message;
        etcd::event(event.clone()).encoded_len()
    }

    fn gone(&self) -> bool {
        self.responses.is_closed()
    }

    async fn fail(&mut self, error: ServerError) {
        use futures::SinkExt;
        let _ = self.responses.send(Err(status(error))).await;
    }

    async fn broke(&mut self, broken: Status) {
        use futures::SinkExt;
        let _ = self.responses.send(Err(broken)).await;
    }
}

/// Serves one Watch call on this core through the shared stream loop
/// (`server::watching::serve`).
pub(in crate::server) async fn serve_watch_stream<R>(
    node: &Rc<Node>,
    slot: &Rc<crate::shard::watch::WatchSlot>,
    requests: R,
    responses: futures::channel::mpsc::Sender<Result<pb::WatchResponse, Status>>,
    limits: Limits,
    require_leader: bool,
    credentials: &Credentials,
) where
    R: futures::Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
{
    let mut client = GrpcWatch {
        requests,
        responses,
        credentials,
    };
    watching::serve(node, slot, &mut client, limits, require_leader).await;
}
