//! The peer transport: Raft messages to and from the other members over TCP, on the consensus
//! core's executor.
//!
//! - One outbound connection per peer (this member's messages to it) and one inbound per peer
//!   (its messages to us), TCP_NODELAY, each write a frame batching every message queued by
//!   then (up to `MAX_BATCH_BYTES`).
//! - Heartbeats, votes and every response go to the front of a batch, ahead of appends and
//!   snapshots, and a batch is capped in size: a control message waits behind at most one
//!   capped batch on the wire, never behind a backlog of appends (a slow disk or a big append
//!   must not cost an election).
//! - Messages to a peer that cannot be reached are dropped, not buffered without bound (the
//!   queue holds at most `MAX_QUEUED_MESSAGES`): Raft retransmits what matters, and the peer is
//!   reported unreachable so the leader probes it instead of streaming to it.
//! - Inbound frames are checked (`wire::decode_frame`): a peer of another cluster, another
//!   protocol version, an oversized or malformed frame is logged with the reason and the
//!   connection closed; nothing unchecked reaches Raft.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use raft::eraftpb::{Message, MessageType};

use super::wire::{decode_frame, encode_frame};

/// Largest batch of messages written as one frame.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Messages queued for one peer at most; beyond, new ones are dropped.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// Largest inbound frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Waits between attempts to connect to a peer.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Messages that must never wait behind appends.
fn is_control(message: &Message) -> bool {
    !matches!(
        message.get_msg_type(),
        MessageType::MsgAppend | MessageType::MsgSnapshot
    )
}

/// Messages received from peers, waiting for the consensus core.
#[derive(Default)]
pub struct Inbox {
    messages: RefCell<Vec<Message>>,
    waker: RefCell<Option<Waker>>,
}

impl Inbox {
    fn deliver(&self, messages: Vec<Message>) {
        self.messages.borrow_mut().extend(messages);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Every message received so far, in arrival order.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.messages.borrow_mut())
    }

    /// True when messages are waiting.
    pub fn has_messages(&self) -> bool {
        !self.messages.borrow().is_empty()
    }

    /// Wakes `waker` when messages arrive (or at once if some are waiting).
    pub fn wake_on_arrival(&self, waker: &Waker) {
        if self.has_messages() {
            waker.wake_by_ref();
        } else {
            *self.waker.borrow_mut() = Some(waker.clone());
        }
    }

    /// Waits until messages are waiting.
    pub async fn arrival(&self) {
        poll_fn(|cx| {
            if self.has_messages() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The outbound side of one peer.
struct Outbound {
    id: u64,
    address: RefCell<String>,
    control: RefCell<VecDeque<Message>>,
    bulk: RefCell<VecDeque<Message>>,
    waker: RefCell<Option<Waker>>,
    removed: Cell<bool>,
}

impl Outbound {
    fn queued(&self) -> usize {
        self.control.borrow().len() + self.bulk.borrow().len()
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until something is queued, the peer is removed or `closed` is set.
    async fn work_or(&self, closed: &Cell<bool>) {
        poll_fn(|cx| {
            if self.queued() > 0 || self.removed.get() || closed.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The next batch: control messages first, then appends, up to `MAX_BATCH_BYTES`.
    fn next_batch(&self) -> Vec<Message> {
        let mut batch: Vec<Message> = self.control.borrow_mut().drain(..).collect();
        let mut bytes = 0;
        let mut bulk = self.bulk.borrow_mut();
        while let Some(message) = bulk.front() {
            let size = message
                .get_entries()
                .iter()
                .map(|e| e.data.len() + 32)
                .sum::<usize>()
                + message.get_snapshot().get_data().len()
                + 64;
            if bytes > 0 && bytes + size > MAX_BATCH_BYTES {
                break;
            }
            bytes += size;
            if let Some(message) = bulk.pop_front() {
                batch.push(message);
            }
        }
        batch
    }

    fn clear(&self) {
        self.control.borrow_mut().clear();
        self.bulk.borrow_mut().clear();
    }
}

/// One member's connections to the others.
pub struct PeerTransport {
    cluster_id: u64,
    own_id: u64,
    peers: RefCell<HashMap<u64, Rc<Outbound>>>,
    inbox: Rc<Inbox>,
    /// Peers whose messages could not be delivered since last asked.
    unreachable: Rc<RefCell<Vec<u64>>>,
}

impl PeerTransport {
    /// A transport for member `own_id` of cluster `cluster_id`.
    pub fn new(cluster_id: u64, own_id: u64) -> Rc<PeerTransport> {
        Rc::new(PeerTransport {
            cluster_id,
            own_id,
            peers: RefCell::new(HashMap::new()),
            inbox: Rc::new(Inbox::default()),
            unreachable: Rc::default(),
        })
    }

    /// Where received messages wait.
    pub fn inbox(&self) -> &Rc<Inbox> {
        &self.inbox
    }

    /// Adds peer `id` at `address` (host:port), or moves it there.
    pub fn set_peer(self: &Rc<Self>, id: u64, address: &str) {
        if let Some(peer) = self.peers.borrow().get(&id) {
            *peer.address.borrow_mut() = address.to_string();
            return;
        }
        let peer = Rc::new(Outbound {
            id,
            address: RefCell::new(address.to_string()),
            control: RefCell::default(),
            bulk: RefCell::default(),
            waker: RefCell::new(None),
            removed: Cell::new(false),
        });
        self.peers.borrow_mut().insert(id, peer.clone());
        let transport = self.clone();
        glommio::spawn_local(async move { transport.send_loop(peer).await }).detach();
    }

    /// Forgets peer `id` (a removed member): its queue is dropped and its connection closed.
    pub fn remove_peer(&self, id: u64) {
        if let Some(peer) = self.peers.borrow_mut().remove(&id) {
            peer.removed.set(true);
            peer.clear();
            peer.wake();
        }
    }

    /// Queues messages for their peers (`to`); messages to unknown peers are dropped.
    pub fn send(&self, messages: Vec<Message>) {
        let peers = self.peers.borrow();
        for message in messages {
            let Some(peer) = peers.get(&message.to) else {
                tracing::debug!(to = message.to, "message to an unknown peer dropped");
                continue;
            };
            if peer.queued() >= MAX_QUEUED_MESSAGES {
                self.unreachable.borrow_mut().push(peer.id);
                continue;
            }
            if is_control(&message) {
                peer.control.borrow_mut().push_back(message);
            } else {
                peer.bulk.borrow_mut().push_back(message);
            }
            peer.wake();
        }
    }

    /// Peers that could not be reached since the last call (for `RawNode::report_unreachable`).
    pub fn take_unreachable(&self) -> Vec<u64> {
        let mut peers = std::mem::take(&mut *self.unreachable.borrow_mut());
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    async fn send_loop(self: Rc<Self>, peer: Rc<Outbound>) {
        let mut wire = BytesMut::new();
        while !peer.removed.get() {
            let address = peer.address.borrow().clone();
            let stream = match TcpStream::connect(&address).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(peer = %format!("{:x}", peer.id), %address, %error, "cannot reach peer");
                    if peer.queued() > 0 {
                        // Raft retransmits; holding old messages only delays newer ones.
                        peer.clear();
                        self.unreachable.borrow_mut().push(peer.id);
                    }
                    glommio::timer::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = futures::io::AsyncReadExt::split(stream);
            // The peer never writes on this connection: a read returning means it closed (it
            // stopped or refused us), and the connection is dropped at once rather than at the
            // next write, so neither side keeps a half-closed socket.
            let closed = Rc::new(Cell::new(false));
            let watcher = {
                let (closed, peer) = (closed.clone(), peer.clone());
                glommio::spawn_local(async move {
                    let mut byte = [0u8; 1];
                    let _ = reader.read(&mut byte).await;
                    closed.set(true);
                    peer.wake();
                })
            };
            loop {
                peer.work_or(&closed).await;
                if peer.removed.get() || *peer.address.borrow() != address || closed.get() {
                    if closed.get() {
                        self.unreachable.borrow_mut().push(peer.id);
                    }
                    break;
                }
                let batch = peer.next_batch();
                wire.clear();
                encode_frame(self.cluster_id, self.own_id, &batch, &mut wire);
                if let Err(error) = writer.write_all(&wire).await {
                    tracing::debug!(peer = %format!("{:x}", peer.id), %error, "peer connection lost");
                    self.unreachable.borrow_mut().push(peer.id);
                    break;
                }
            }
            let _ = writer.close().await;
            watcher.cancel().await;
        }
    }

    /// Accepts peers' connections on `listener` until it fails.
    pub async fn serve(self: Rc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let transport = self.clone();
                    glommio::spawn_local(async move { transport.receive(stream).await }).detach();
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    glommio::timer::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }

    async fn receive(&self, mut stream: TcpStream) {
        let peer_address = stream
            .peer_addr()
            .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
        let mut buffer = BytesMut::with_capacity(64 << 10);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let read = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            buffer.extend_from_slice(&chunk[..read]);
            loop {
                match decode_frame(&mut buffer, self.cluster_id, self.own_id, MAX_FRAME_BYTES) {
                    Ok(Some(frame)) => self.inbox.deliver(frame.messages),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(peer = %peer_address, %error, "refusing a peer connection");
                        let _ = stream.close().await;
                        return;
                    }
                }
            }
        }
    }
}
