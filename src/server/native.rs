//! The native protocol's connections: frames in, frames out, many requests in flight per
//! connection, answered in whatever order they complete. (Accepting them, and telling them
//! from HTTP by their first bytes, is `listener`'s.)
//!
//! Everything from the socket is checked before use: a frame whose header is bad (too large,
//! unknown version or flags) gets an error response and the connection is closed, since the
//! stream cannot be resynchronised; a frame whose flatbuffer does not verify, or that holds no
//! request, gets an error response and the connection goes on. Nothing malformed reaches the
//! consensus core.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use lode_protocol::frame::{decode_frame, encode_frame};

use super::admission::{self, Call, CallMeta};
use super::node::Node;
use super::watching::{self, Inbound, WatchClient};
use super::{fill_header, Limits};
use crate::api::native::{
    self, CoordinationRequest, CoordinationResponse, Request, Response, WatchRequest,
};
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::tls::Stream;

/// gRPC `InvalidArgument`, used for frames that cannot be decoded.
const INVALID_ARGUMENT: u32 = 3;

/// Requests one native connection may have in flight before its socket is read no further.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Bytes of answers one native connection may have queued for its writer before its socket is
/// read no further: a client that sends and never reads holds at most this much of answers
/// (plus what its requests in flight are building).
pub const MAX_QUEUED_ANSWER_BYTES: usize = 8 << 20;

/// Encoded responses waiting for the connection's writer task.
#[derive(Default)]
struct Outbox {
    frames: RefCell<VecDeque<Vec<u8>>>,
    /// Bytes in `frames`.
    queued_bytes: Cell<usize>,
    /// The reading side, waiting for room to take more requests.
    reader: RefCell<Option<Waker>>,
    writer: RefCell<Option<Waker>>,
    /// Streams waiting for the queue to drain before they add more.
    waiting_for_room: RefCell<Vec<Waker>>,
    /// The writer task ended (the socket failed or every answer is written).
    writer_gone: Cell<bool>,
    closed: Cell<bool>,
    /// Requests being served whose answers are still to come.
    in_flight: Cell<usize>,
}

impl Outbox {
    fn begin(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// Queues an answer to a request announced with `begin`.
    fn answer(&self, frame: Vec<u8>) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.push(frame);
        self.wake_reader();
    }

    fn wake_reader(&self) {
        if let Some(waker) = self.reader.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until the connection may take another request: fewer than
    /// `MAX_IN_FLIGHT_PER_CONNECTION` in flight and under `MAX_QUEUED_ANSWER_BYTES` queued (or
    /// the writer is gone, when nothing will drain). Back-pressure: meanwhile the socket is not
    /// read, so a client that only sends fills its own buffers, not the server's memory.
    async fn admit(&self) {
        poll_fn(|cx| {
            let full = self.in_flight.get() >= MAX_IN_FLIGHT_PER_CONNECTION
                || self.queued_bytes.get() >= MAX_QUEUED_ANSWER_BYTES;
            if !full || self.writer_gone.get() {
                return Poll::Ready(());
            }
            *self.reader.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Ends a request announced with `begin` that has no answer of its own (a request on a
    /// watch stream, or a watch stream that ended).
    fn settle(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.wake_reader();
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
    }

    fn push(&self, frame: Vec<u8>) {
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_add(frame.len()));
        self.frames.borrow_mut().push_back(frame);
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Frames every queued response into `wire`; false once closed, answered and drained.
    async fn take_all(&self, wire: &mut BytesMut) -> bool {
        poll_fn(|cx| {
            let mut frames = self.frames.borrow_mut();
            if frames.is_empty() {
                if self.closed.get() && self.in_flight.get() == 0 {
                    return Poll::Ready(false);
                }
                *self.writer.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            for frame in frames.drain(..) {
                encode_frame(wire, &frame);
            }
            self.queued_bytes.set(0);
            for waiting in self.waiting_for_room.borrow_mut().drain(..) {
                waiting.wake();
            }
            self.wake_reader();
            Poll::Ready(true)
        })
        .await
    }

    /// Waits until the writer has taken every queued frame (or the connection is gone), so a
    /// stream adds its next piece only when the previous one is on its way: memory per stream
    /// stays at about one piece and other requests' answers are not queued behind a snapshot.
    /// Resolves once the client closed the connection (or it broke), noticed within a second:
    /// how a request that waits on others (a lock) learns its caller left.
    async fn gone(&self) {
        while !self.closed.get() && !self.writer_gone.get() {
            glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    async fn room(&self) {
        poll_fn(|cx| {
            if self.frames.borrow().is_empty() || self.writer_gone.get() {
                return Poll::Ready(());
            }
            self.waiting_for_room.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// A watch stream of a native connection, named by the id of the requests on it: requests
/// waiting for the stream's task, and a wake-up for it.
#[derive(Default)]
struct NativeWatch {
    /// Each with the credentials of its frame.
    requests: RefCell<VecDeque<(WatchRequest, Credentials)>>,
    waker: RefCell<Option<Waker>>,
    woken: Cell<bool>,
    /// The connection's reading side ended: the stream ends.
    ended: Cell<bool>,
}

impl NativeWatch {
    fn wake(&self) {
        self.woken.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn poll_woken(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.woken.replace(false) {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A connection's watch streams by id.
type Watches = RefCell<HashMap<u64, Rc<NativeWatch>>>;

/// Bytes of a snapshot per response frame.
const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;

fn error_frame(id: u64, code: u32, message: String) -> Vec<u8> {
    native::encode_response(id, &Response::Error { code, message })
}

pub(super) async fn native_connection(
    stream: Stream,
    mut buffer: BytesMut,
    mut chunk: Vec<u8>,
    node: Rc<Node>,
    limits: Limits,
    name: Option<super::CertificateName>,
) {
    let common_name = name.map(|name| name.0.to_string());
    let (mut reader, mut writer) = stream.split();
    let outbox = Rc::new(Outbox::default());
    let watches: Rc<Watches> = Rc::default();
    let writer_outbox = outbox.clone();
    let writer_task = glommio::spawn_local(async move {
        let mut wire = BytesMut::new();
        // Every response ready by the time the socket is free goes out in one write.
        while writer_outbox.take_all(&mut wire).await {
            // Flushed at once: TLS holds written records until flushed.
            if writer.write_all(&wire).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            wire.clear();
        }
        writer_outbox.writer_gone.set(true);
        for waiting in writer_outbox.waiting_for_room.borrow_mut().drain(..) {
            waiting.wake();
        }
        writer_outbox.wake_reader();
        let _ = writer.close().await;
    });
    'connection: loop {
        loop {
            match decode_frame(&mut buffer, limits.max_frame_bytes) {
                Ok(Some(frame)) => {
                    outbox.admit().await;
                    let outbox = outbox.clone();
                    let node = node.clone();
                    let watches = watches.clone();
                    let common_name = common_name.clone();
                    outbox.begin();
                    glommio::spawn_local(async move {
                        let connection = Connection {
                            outbox: &outbox,
                            watches: &watches,
                            common_name,
                        };
                        handle_frame(frame, &node, limits, connection).await;
                    })
                    .detach();
                }
                Ok(None) => break,
                Err(error) => {
                    outbox.push(error_frame(0, INVALID_ARGUMENT, format!("lode: {error}")));
                    break 'connection;
                }
            }
        }
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
    }
    // Watch streams end with the connection's reading side.
    for watch in watches.borrow().values() {
        watch.ended.set(true);
        watch.wake();
    }
    // The writer ends once every request in flight is answered and written.
    outbox.close();
    writer_task.await;
}

/// Answers one request frame: one response, or for a snapshot a stream of them; a request on
/// a watch stream goes to that stream (the first one opens it and serves it in this task).
/// The kinds of native requests counted for the dashboard (named as etcd's gRPC methods where
/// one matches).
const NATIVE_KINDS: [&str; 14] = [
    "Range",
    "Put",
    "DeleteRange",
    "Txn",
    "Compact",
    "Lease",
    "Status",
    "Alarm",
    "Auth",
    "Member",
    "HashKV",
    "Watch",
    "Snapshot",
    "Lock/Election",
];

/// Native requests answered, per kind and gRPC status code.
static NATIVE_ANSWERED: [[AtomicU64; 17]; NATIVE_KINDS.len()] =
    [const { [const { AtomicU64::new(0) }; 17] }; NATIVE_KINDS.len()];

fn native_kind(request: &Request) -> usize {
    use crate::mvcc::request::WriteRequest;
    match request {
        Request::Range(_) => 0,
        Request::Write(WriteRequest::Put(_)) => 1,
        Request::Write(WriteRequest::DeleteRange(_)) => 2,
        Request::Write(WriteRequest::Txn(_)) => 3,
        Request::Write(WriteRequest::Compact(_)) => 4,
        Request::Write(WriteRequest::Lease(_)) | Request::Lease(_) => 5,
        Request::Status => 6,
        Request::Alarm(_) => 7,
        Request::Auth(_) => 8,
        Request::Member(_) | Request::MoveLeader(_) => 9,
        Request::HashKv(_) => 10,
        Request::Watch(_) => 11,
        Request::Snapshot => 12,
        Request::Coordination(_) => 13,
    }
}

/// Native requests answered so far: (kind, gRPC status code name, count).
pub(super) fn answered_counts() -> Vec<(&'static str, &'static str, u64)> {
    let codes = super::grpc::GRPC_CODES;
    let mut counts = Vec::new();
    for (kind, name) in NATIVE_KINDS.iter().enumerate() {
        for (code, code_name) in codes.iter().enumerate() {
            counts.push((
                *name,
                *code_name,
                NATIVE_ANSWERED[kind][code].load(Ordering::Relaxed),
            ));
        }
    }
    counts
}

async fn handle_frame(frame: Bytes, node: &Rc<Node>, limits: Limits, connection: Connection<'_>) {
    let Connection {
        outbox,
        watches,
        common_name,
    } = connection;
    let (id, request, frame_meta) = match native::decode_request_as(&frame) {
        Ok(decoded) => decoded,
        Err(error) => {
            let id = native::request_id(&frame).unwrap_or(0);
            outbox.answer(error_frame(id, INVALID_ARGUMENT, format!("lode: {error}")));
            return;
        }
    };
    let meta = CallMeta {
        credentials: Credentials {
            token: frame_meta.token,
            common_name,
        },
        require_leader: frame_meta.require_leader,
    };
    // Every request but a watch stream's (whose opening is admitted as a stream's, and whose
    // creations are permitted one by one as the stream applies them) passes the one
    // admission path first; a write is admitted by `admission::write` itself.
    if !matches!(request, Request::Write(_) | Request::Watch(_)) {
        if let Err(error) = admission::admit(node, limits, &meta, &request, Some(&frame)).await {
            outbox.answer(server_error_frame(id, error, node));
            return;
        }
    }
    let credentials = &meta.credentials;
    let kind = native_kind(&request);
    let result = match request {
        Request::Range(range) => node
            .range_as(credentials, &range)
            .await
            .map(Response::Range),
        Request::Lease(query) => {
            let token = credentials.token.clone();
            node.lease_query(query, token).await.map(Response::Lease)
        }
        Request::Coordination(request) => {
            if let CoordinationRequest::Observe { name } = request {
                observe(id, name, node, outbox).await;
                outbox.settle();
                return;
            }
            coordinate(node, request, outbox.gone(), credentials)
                .await
                .map(Response::Coordination)
        }
        Request::Write(write) => admission::write(node, limits, &meta, write, Some(&frame))
            .await
            .map(Response::Write),
        Request::Status => node.status().await.map(Response::Status),
        Request::Alarm(alarm) => node.alarm(alarm).await.map(Response::Alarm),
        Request::Auth(request) => node.auth(credentials, request).await.map(Response::Auth),
        request @ (Request::Member(_) | Request::MoveLeader(_)) => {
            let token = credentials.token.clone();
            node.cluster_as(request, token).await
        }
        Request::HashKv(revision) => node.hash_kv(revision).await,
        Request::Watch(request) => {
            let open = watches.borrow().get(&id).cloned();
            match open {
                Some(watch) => {
                    watch
                        .requests
                        .borrow_mut()
                        .push_back((request, meta.credentials));
                    watch.wake();
                }
                None => {
                    // The stream asks for a leader with the frame's `require_leader` (as gRPC's
                    // metadata) or its first creation's.
                    let require_leader = meta.require_leader
                        || matches!(
                            &request,
                            WatchRequest::Create(create) if create.require_leader
                        );
                    let opening = CallMeta {
                        require_leader,
                        ..meta
                    };
                    if let Err(error) = admission::admit_call(node, &opening, Call::WatchStream) {
                        outbox.answer(server_error_frame(id, error, node));
                        return;
                    }
                    let watch = Rc::new(NativeWatch::default());
                    watch
                        .requests
                        .borrow_mut()
                        .push_back((request, opening.credentials));
                    watches.borrow_mut().insert(id, watch.clone());
                    serve_watch(id, &watch, node, limits, outbox, require_leader).await;
                    watches.borrow_mut().remove(&id);
                }
            }
            outbox.settle();
            return;
        }
        Request::Snapshot => {
            // Answered by a stream of pieces; the last one is the request's answer proper.
            let snapshot = node.snapshot().await;
            let last = match snapshot {
                Ok((path, revision)) => {
                    let streamed = stream_snapshot(id, &path, revision, node, outbox).await;
                    let _ = std::fs::remove_file(&path);
                    streamed
                }
                Err(error) => Err(error),
            };
            outbox.answer(last.unwrap_or_else(|error| server_error_frame(id, error, node)));
            return;
        }
    };
    let code = match &result {
        Ok(_) => 0,
        Err(error) => (error.grpc_code() as usize).min(16),
    };
    NATIVE_ANSWERED[kind][code].fetch_add(1, Ordering::Relaxed);
    let frame = match result {
        Ok(mut response) => {
            fill_header(&mut response, node);
            native::encode_response(id, &response)
        }
        Err(error) => server_error_frame(id, error, node),
    };
    outbox.answer(frame);
}

/// A native connection's state a request handler uses.
struct Connection<'a> {
    outbox: &'a Outbox,
    watches: &'a Watches,
    /// The CN of the connection's verified client certificate.
    common_name: Option<String>,
}

/// Serves a lock or election request (not Observe); a Lock or Campaign whose connection
/// closes while it waits (`connection_gone`) withdraws.
async fn coordinate(
    node: &Rc<Node>,
    request: CoordinationRequest,
    connection_gone: impl std::future::Future<Output = ()>,
    credentials: &Credentials,
) -> Result<CoordinationResponse, ServerError> {
    use super::concurrency;
    Ok(match request {
        CoordinationRequest::Lock { name, lease } => {
            let (header, key) =
                concurrency::lock(node, name, lease, connection_gone, credentials).await?;
            CoordinationResponse::Locked { header, key }
        }
        CoordinationRequest::Unlock { key } => CoordinationResponse::Unlocked {
            header: concurrency::unlock(node, &key).await?,
        },
        CoordinationRequest::Campaign { name, lease, value } => {
            let (header, leader) =
                concurrency::campaign(node, name, lease, value, connection_gone, credentials)
                    .await?;
            CoordinationResponse::Campaigned { header, leader }
        }
        CoordinationRequest::Proclaim { leader, value } => CoordinationResponse::Proclaimed {
            header: concurrency::proclaim(node, &leader, value).await?,
        },
        CoordinationRequest::Leader { name } => {
            let (header, kv) = concurrency::leader(node, &name).await?;
            CoordinationResponse::Leader { header, kv }
        }
        CoordinationRequest::Resign { leader } => CoordinationResponse::Resigned {
            header: concurrency::resign(node, &leader).await?,
        },
        CoordinationRequest::Observe { .. } => {
            return Err(ServerError::Internal("Observe is a stream".into()))
        }
    })
}

/// Streams an election's leaders and proclamations as answers to request `id` until the
/// connection closes (or the stream fails, answered with its error).
async fn observe(id: u64, name: Bytes, node: &Rc<Node>, outbox: &Outbox) {
    let observing = super::concurrency::observe(node, name, |header, kv| {
        let mut response = Response::Coordination(CoordinationResponse::Leader { header, kv });
        fill_header(&mut response, node);
        outbox.push(native::encode_response(id, &response));
        // A client that stops reading holds the stream back, not the server's memory.
        async {
            outbox.room().await;
            !outbox.closed.get() && !outbox.writer_gone.get()
        }
    });
    let outcome = super::concurrency::unless_cancelled(observing, outbox.gone()).await;
    if let Some(Err(error)) = outcome {
        outbox.push(server_error_frame(id, error, node));
    }
}

fn server_error_frame(id: u64, error: ServerError, node: &Node) -> Vec<u8> {
    let mut response = Response::Error {
        code: error.grpc_code(),
        message: error.to_string(),
    };
    fill_header(&mut response, node);
    native::encode_response(id, &response)
}

/// Queues the export file at `path` as snapshot pieces, each once the previous one is on its
/// way, and returns the last piece's frame (the request's answer proper).
async fn stream_snapshot(
    id: u64,
    path: &std::path::Path,
    revision: i64,
    node: &Node,
    outbox: &Outbox,
) -> Result<Vec<u8>, ServerError> {
    let mut pieces = super::SnapshotPieces::open(path, SNAPSHOT_PIECE_BYTES).await?;
    loop {
        let Some((data, remaining_bytes)) = pieces.next().await? else {
            pieces.close().await;
            return Err(ServerError::Internal(
                "a snapshot stream ended early".into(),
            ));
        };
        let mut response = Response::Snapshot {
            header: crate::mvcc::request::ResponseHeader::at(revision),
            remaining_bytes,
            data,
        };
        fill_header(&mut response, node);
        let frame = native::encode_response(id, &response);
        if remaining_bytes == 0 {
            pieces.close().await;
            return Ok(frame);
        }
        outbox.push(frame);
        outbox.room().await;
        if outbox.writer_gone.get() {
            pieces.close().await;
            return Err(ServerError::Stopped);
        }
    }
}

/// A native watch stream's side of the shared stream loop: requests from its connection's
/// frames, responses out as frames through the connection's outbox.
struct NativeWatchClient<'a> {
    id: u64,
    watch: &'a NativeWatch,
    outbox: &'a Outbox,
    node: &'a Node,
}

impl WatchClient for NativeWatchClient<'_> {
    /// A native stream's requests are frames already read: nothing can break.
    type Broken = std::convert::Infallible;

    fn poll_inbound(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Inbound<Self::Broken>> {
        loop {
            if let Some((request, credentials)) = self.watch.requests.borrow_mut().pop_front() {
                return Poll::Ready(Inbound::Request(request, credentials));
            }
            if self.watch.ended.get() {
                return Poll::Ready(Inbound::Closed);
            }
            if self.watch.poll_woken(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    async fn send(
        &mut self,
        response: crate::watch::stream::WatchResponse,
        header: crate::mvcc::request::ResponseHeader,
    ) -> bool {
        let frame = native::encode_response(self.id, &Response::Watch { header, response });
        self.outbox.push(frame);
        // Waiting while the client is slow to read: its watchers fall back to history.
        self.outbox.room().await;
        !self.outbox.writer_gone.get()
    }

    fn encoded_len(
        &self,
        response: &crate::watch::stream::WatchResponse,
        _header: &crate::mvcc::request::ResponseHeader,
    ) -> usize {
        // flatbuffers has no cheap exact size; the events' bytes plus a bound on the rest.
        let events: usize = response.events.iter().map(|e| self.event_len(e) + 8).sum();
        NATIVE_WATCH_RESPONSE_OVERHEAD + response.cancel_reason.len() + events
    }

    fn event_len(&self, event: &crate::watch::Event) -> usize {
        let pair = |kv: &crate::mvcc::kv::KeyValue| kv.key.len() + kv.value.len() + 64;
        pair(&event.kv) + event.prev_kv.as_ref().map_or(0, pair)
    }

    fn gone(&self) -> bool {
        self.watch.ended.get() || self.outbox.writer_gone.get()
    }

    async fn fail(&mut self, error: ServerError) {
        self.outbox
            .push(server_error_frame(self.id, error, self.node));
    }

    async fn broke(&mut self, broken: Self::Broken) {
        match broken {}
    }
}

/// A bound on what a native watch response holds besides its events and cancel reason.
const NATIVE_WATCH_RESPONSE_OVERHEAD: usize = 256;

/// Serves the watch stream `id` of a connection, once its opening was admitted, through the
/// shared stream loop (`server::watching::serve`) until the connection's reading side ends.
/// A stream opened with `require_leader` (refused at its opening without a leader) ends with
/// "no leader" once the member lost it, as gRPC's `hasleader` streams.
async fn serve_watch(
    id: u64,
    watch: &NativeWatch,
    node: &Rc<Node>,
    limits: Limits,
    outbox: &Outbox,
    require_leader: bool,
) {
    let hub = node.router().local().watch_hub().clone();
    let (stream_id, slot) = match hub
        .open(node.router(), super::WATCH_STREAM_BUDGET_BYTES)
        .await
    {
        Ok(opened) => opened,
        Err(error) => {
            outbox.push(server_error_frame(id, error, node));
            return;
        }
    };
    let mut client = NativeWatchClient {
        id,
        watch,
        outbox,
        node,
    };
    watching::serve(node, &slot, &mut client, limits, require_leader).await;
    hub.close(stream_id, node.router());
}
