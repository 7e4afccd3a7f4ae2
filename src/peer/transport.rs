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
//! - Snapshots (Raft's `MsgSnapshot`, for a member behind the log's compaction point) travel on
//!   a connection of their own, never in the message stream: the snapshot file is read in
//!   `SNAPSHOT_CHUNK_BYTES` chunks, each checksummed, paced at `SNAPSHOT_SEND_BYTES_PER_SECOND`
//!   so the leader's disk and core stay with the commit path, then the `MsgSnapshot` itself.
//!   The receiver writes the chunks to `received-<index>.snap` in its snapshot directory,
//!   syncs it, hands Raft the message and answers one byte; the sender reports the outcome
//!   (`take_snapshot_reports`, for `RawNode::report_snapshot`). One snapshot per peer at a time.
//! - Each message connection opens with a hello naming the sender's peer URLs. A receiver
//!   remembers the addresses of senders its configuration does not list (the last
//!   `MAX_HEARD_SENDERS`), so that when Raft answers such a sender (the peer guard let it
//!   through: a member added while this one was away, now leading) the answer has somewhere to
//!   go. A hello never moves a configured peer: the registry decides where members are.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use raft::eraftpb::{Message, MessageType};

use super::wire::{
    encode_frame, encode_hello, encode_snapshot_chunk, SnapshotChunk, REMOVED_NOTICE,
    SNAPSHOT_ACCEPTED, SNAPSHOT_REFUSED,
};
use crate::snapshotter::snapshot_file_name;
use crate::tls::{ClientTls, Stream};

mod inbound;
mod report;

/// Largest batch of messages written as one frame.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Messages queued for one peer at most; beyond, new ones are dropped.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// Writes `bytes` and flushes them (TLS holds records until flushed).
async fn write_flushed<W: futures::io::AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Largest inbound frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// Waits between attempts to connect to a peer.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Bytes of a snapshot file per chunk frame.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 << 10;

/// The pace snapshots are sent at: fast enough to bring a member back in seconds for
/// keyspaces of hundreds of megabytes, slow enough that reading the file and pushing it through
/// loopback or a LAN leaves the leader's disk and core to the commit path.
pub const SNAPSHOT_SEND_BYTES_PER_SECOND: u64 = 64 << 20;

/// How long a snapshot transfer may make no progress (a write of a chunk, the receiver's
/// answer) before it is given up and reported failed; Raft then sends a new one.
const SNAPSHOT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `work`, or `None` when it takes longer than `limit`.
async fn within<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    match futures::future::select(pin!(work), pin!(glommio::timer::sleep(limit))).await {
        futures::future::Either::Left((value, _)) => Some(value),
        futures::future::Either::Right(_) => None,
    }
}

/// Senders missing from the configuration whose addresses are remembered, at most.
const MAX_HEARD_SENDERS: usize = 16;

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
        if messages.is_empty() {
            return;
        }
        self.messages.borrow_mut().extend(messages);
        self.wake();
    }

    /// Wakes whoever waits for arrivals (something else needs the consensus core's
    /// attention).
    fn wake(&self) {
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

/// Where a peer is dialled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddress {
    /// `ip:port`, resolved from the peer URL.
    pub address: String,
    /// The URL's host, which the peer's certificate must name (TLS only).
    pub host: String,
    /// The peer URL is `https`.
    pub tls: bool,
}

impl PeerAddress {
    /// Where the peer at `url` is dialled.
    pub fn from_url(url: &str) -> Result<PeerAddress, String> {
        let url = crate::urls::parse_url(url)?;
        Ok(PeerAddress {
            address: url.socket_address()?.to_string(),
            host: url.host,
            tls: url.tls,
        })
    }
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

/// The outbound side of one peer.
struct Outbound {
    id: u64,
    address: RefCell<PeerAddress>,
    control: RefCell<VecDeque<Message>>,
    bulk: RefCell<VecDeque<Message>>,
    waker: RefCell<Option<Waker>>,
    removed: Cell<bool>,
    /// True while a snapshot is being sent to this peer.
    sending_snapshot: Cell<bool>,
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
    /// Where snapshots are read from (sending) and written to (receiving).
    snapshot_dir: PathBuf,
    /// Snapshots sent since last asked: (peer, whether it took it).
    snapshot_reports: RefCell<Vec<(u64, bool)>>,
    /// The member registry's bytes as of now, for answering a joining member's query.
    registry: RefCell<Option<RegistrySource>>,
    /// Members removed from the cluster: what they send is refused with `REMOVED_NOTICE`.
    removed: RefCell<std::collections::BTreeSet<u64>>,
    /// Set when a peer told this member it was removed from the cluster.
    told_removed: Cell<bool>,
    /// How this member dials `https` peer URLs (`None`: it has no peer TLS settings).
    dial_tls: Option<Arc<ClientTls>>,
    /// When a refused peer connection was last logged (at most one a second is).
    last_refusal_logged: Cell<Option<std::time::Instant>>,
    /// This member's peer URLs, named in the hello opening each message connection.
    own_urls: RefCell<Vec<String>>,
    /// Where senders missing from the configuration said they are (newest last).
    heard: RefCell<VecDeque<(u64, PeerAddress)>>,
    /// Traffic per peer, for etcd's `etcd_network_peer_*` metrics.
    traffic: RefCell<BTreeMap<u64, PeerTraffic>>,
    /// This member's dashboard report, for the other members' dashboards.
    report: RefCell<Option<ReportSource>>,
}

/// Bytes to and from one peer, and messages that could not be sent to it.
#[derive(Debug, Default, Clone, Copy)]
struct PeerTraffic {
    sent_bytes: u64,
    received_bytes: u64,
    sent_failures: u64,
}

/// Gives the member registry's current bytes (`Members::encode`).
pub type RegistrySource = Box<dyn Fn() -> Vec<u8>>;

/// Gives this member's dashboard report (`dashboard::MemberReport` as JSON) with its samples
/// numbered from the argument on.
pub type ReportSource = Box<dyn Fn(u64) -> Vec<u8>>;

impl PeerTransport {
    /// A transport for member `own_id` of cluster `cluster_id`, sending and receiving
    /// snapshots in `snapshot_dir`.
    pub fn new(
        cluster_id: u64,
        own_id: u64,
        snapshot_dir: &Path,
        dial_tls: Option<Arc<ClientTls>>,
    ) -> Rc<PeerTransport> {
        Rc::new(PeerTransport {
            cluster_id,
            own_id,
            peers: RefCell::new(HashMap::new()),
            inbox: Rc::new(Inbox::default()),
            unreachable: Rc::default(),
            snapshot_dir: snapshot_dir.to_path_buf(),
            snapshot_reports: RefCell::default(),
            registry: RefCell::new(None),
            removed: RefCell::default(),
            told_removed: Cell::new(false),
            dial_tls,
            last_refusal_logged: Cell::new(None),
            own_urls: RefCell::default(),
            heard: RefCell::default(),
            traffic: RefCell::default(),
            report: RefCell::new(None),
        })
    }

    /// Opens a connection to `peer`: plain TCP, or TLS for an `https` peer URL (the peer's
    /// certificate verified against the peer CA, this member's presented).
    async fn dial(&self, peer: &PeerAddress) -> Result<Stream, String> {
        let tcp = TcpStream::connect(&peer.address)
            .await
            .map_err(|e| format!("connecting to {peer}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !peer.tls {
            return Ok(Stream::Plain(tcp));
        }
        let Some(tls) = &self.dial_tls else {
            return Err(format!(
                "{peer}: the member's peer URL is https and this member has no peer TLS \
                 settings (--peer-cert-file/--peer-key-file or --peer-auto-tls)"
            ));
        };
        let stream = tls.connect(&peer.host, tcp).await?;
        Ok(Stream::Client(Box::new(stream)))
    }

    /// Logs a refused connection, at most once a second.
    fn log_refusal(&self, remote: &str, error: &str) {
        let now = std::time::Instant::now();
        let recent = self
            .last_refusal_logged
            .get()
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1));
        if !recent {
            self.last_refusal_logged.set(Some(now));
            tracing::warn!(peer = %remote, %error, "refusing a peer connection");
        }
    }

    /// Refuses what member `id` sends from now on (it was removed from the cluster).
    pub fn refuse_removed(&self, id: u64) {
        self.removed.borrow_mut().insert(id);
    }

    /// True once a peer has told this member that it was removed from the cluster.
    pub fn told_removed(&self) -> bool {
        self.told_removed.get()
    }

    /// Where answers to joining members' queries come from.
    pub fn set_registry_source(&self, source: RegistrySource) {
        *self.registry.borrow_mut() = Some(source);
    }

    /// This member's peer URLs, for the hello that opens each connection it makes.
    pub fn set_own_urls(&self, urls: Vec<String>) {
        *self.own_urls.borrow_mut() = urls;
    }

    /// Remembers where `from`, a sender missing from the configuration, said it is.
    fn heard_from(&self, from: u64, address: PeerAddress) {
        let mut heard = self.heard.borrow_mut();
        heard.retain(|(id, _)| *id != from);
        if heard.len() == MAX_HEARD_SENDERS {
            heard.pop_front();
        }
        heard.push_back((from, address));
    }

    fn count(&self, peer: u64, change: impl FnOnce(&mut PeerTraffic)) {
        change(self.traffic.borrow_mut().entry(peer).or_default());
    }

    fn sent(&self, peer: u64, bytes: usize) {
        self.count(peer, |traffic| traffic.sent_bytes += bytes as u64);
    }

    pub(super) fn received(&self, peer: u64, bytes: usize) {
        self.count(peer, |traffic| traffic.received_bytes += bytes as u64);
    }

    fn send_failed(&self, peer: u64, messages: usize) {
        self.count(peer, |traffic| traffic.sent_failures += messages as u64);
    }

    /// Adds etcd's peer traffic metrics to a `/metrics` exposition (labels: the peer's member
    /// ID in hex, as etcd writes it).
    pub fn expose(&self, out: &mut crate::metrics::Exposition) {
        type Count = fn(&PeerTraffic) -> u64;
        let families: [(&str, &str, &str, Count); 3] = [
            (
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
                |traffic| traffic.sent_bytes,
            ),
            (
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
                |traffic| traffic.received_bytes,
            ),
            (
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
                |traffic| traffic.sent_failures,
            ),
        ];
        let traffic = self.traffic.borrow();
        // Each family's samples together, as the text format requires.
        for (name, help, label, count) in families {
            for (peer, counts) in traffic.iter() {
                out.counter(name, help, &[(label, &format!("{peer:x}"))], count(counts));
            }
        }
    }

    /// Where received messages wait.
    pub fn inbox(&self) -> &Rc<Inbox> {
        &self.inbox
    }

    /// Adds peer `id` at `address`, or moves it there.
    pub fn set_peer(self: &Rc<Self>, id: u64, address: PeerAddress) {
        if let Some(peer) = self.peers.borrow().get(&id) {
            *peer.address.borrow_mut() = address;
            return;
        }
        self.add_outbound(id, address);
    }

    fn add_outbound(self: &Rc<Self>, id: u64, address: PeerAddress) -> Rc<Outbound> {
        self.heard.borrow_mut().retain(|(heard, _)| *heard != id);
        let peer = Rc::new(Outbound {
            id,
            address: RefCell::new(address),
            control: RefCell::default(),
            bulk: RefCell::default(),
            waker: RefCell::new(None),
            removed: Cell::new(false),
            sending_snapshot: Cell::new(false),
        });
        self.peers.borrow_mut().insert(id, peer.clone());
        let (transport, outbound) = (self.clone(), peer.clone());
        glommio::spawn_local(async move { transport.send_loop(outbound).await }).detach();
        peer
    }

    /// The peer a message to `to` goes to: a configured one, or a sender missing from the
    /// configuration that said where it is (Raft answers it: the peer guard heard it).
    fn outbound_to(self: &Rc<Self>, to: u64) -> Option<Rc<Outbound>> {
        if let Some(peer) = self.peers.borrow().get(&to) {
            return Some(peer.clone());
        }
        let address = self
            .heard
            .borrow()
            .iter()
            .find(|(id, _)| *id == to)
            .map(|(_, address)| address.clone())?;
        tracing::info!(
            peer = %format!("{to:x}"),
            %address,
            "answering a member this one's configuration does not list yet, at the address it gave"
        );
        Some(self.add_outbound(to, address))
    }

    /// Forgets peer `id` (a removed member): its queue is dropped and its connection closed.
    pub fn remove_peer(&self, id: u64) {
        self.heard.borrow_mut().retain(|(heard, _)| *heard != id);
        if let Some(peer) = self.peers.borrow_mut().remove(&id) {
            peer.removed.set(true);
            peer.clear();
            peer.wake();
        }
    }

    /// Queues messages for their peers (`to`); messages to unknown peers are dropped. A
    /// snapshot starts its own transfer (unless one to that peer is under way).
    pub fn send(self: &Rc<Self>, messages: Vec<Message>) {
        for message in messages {
            let Some(peer) = self.outbound_to(message.to) else {
                tracing::debug!(to = message.to, "message to an unknown peer dropped");
                continue;
            };
            if message.get_msg_type() == MessageType::MsgSnapshot {
                if !peer.sending_snapshot.replace(true) {
                    let (transport, peer) = (self.clone(), peer.clone());
                    glommio::spawn_local(async move {
                        let accepted = transport.send_snapshot(&peer, message).await;
                        peer.sending_snapshot.set(false);
                        transport
                            .snapshot_reports
                            .borrow_mut()
                            .push((peer.id, accepted));
                        // The consensus core looks at reports when it next runs.
                        transport.inbox.wake();
                    })
                    .detach();
                }
                continue;
            }
            if peer.queued() >= MAX_QUEUED_MESSAGES {
                self.unreachable.borrow_mut().push(peer.id);
                self.send_failed(peer.id, 1);
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

    /// Snapshot transfers finished since the last call: (peer, whether it took the snapshot),
    /// for `RawNode::report_snapshot`.
    pub fn take_snapshot_reports(&self) -> Vec<(u64, bool)> {
        std::mem::take(&mut *self.snapshot_reports.borrow_mut())
    }

    /// True when snapshot transfers finished since the last `take_snapshot_reports`.
    pub fn has_snapshot_reports(&self) -> bool {
        !self.snapshot_reports.borrow().is_empty()
    }

    /// Sends the snapshot `message` refers to, then the message; true when the peer took it.
    async fn send_snapshot(&self, peer: &Outbound, message: Message) -> bool {
        let metadata = message.get_snapshot().get_metadata();
        let (index, term) = (metadata.index, metadata.term);
        let path = self.snapshot_dir.join(snapshot_file_name(index));
        let started = std::time::Instant::now();
        match self.stream_snapshot(peer, &message, &path).await {
            Ok(size) => {
                tracing::info!(
                    peer = %format!("{:x}", peer.id),
                    index,
                    term,
                    bytes = size,
                    elapsed = ?started.elapsed(),
                    "snapshot sent"
                );
                true
            }
            Err(error) => {
                tracing::warn!(peer = %format!("{:x}", peer.id), index, %error, "sending a snapshot failed");
                false
            }
        }
    }

    async fn stream_snapshot(
        &self,
        peer: &Outbound,
        message: &Message,
        path: &Path,
    ) -> Result<u64, String> {
        let metadata = message.get_snapshot().get_metadata();
        let file = glommio::io::BufferedFile::open(path)
            .await
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        let file_size = file
            .file_size()
            .await
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let address = peer.address.borrow().clone();
        let mut stream = within(SNAPSHOT_STALL_TIMEOUT, self.dial(&address))
            .await
            .ok_or("connecting timed out")??;
        let pause = Duration::from_secs_f64(
            SNAPSHOT_CHUNK_BYTES as f64 / SNAPSHOT_SEND_BYTES_PER_SECOND as f64,
        );
        let mut wire = BytesMut::new();
        let mut offset = 0;
        while offset < file_size {
            let length = (file_size - offset).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
            let read = file
                .read_at(offset, length)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            if read.len() != length {
                return Err(format!("{} shrank while being sent", path.display()));
            }
            let chunk = SnapshotChunk {
                index: metadata.index,
                term: metadata.term,
                offset,
                file_size,
                data: bytes::Bytes::copy_from_slice(&read),
            };
            wire.clear();
            encode_snapshot_chunk(self.cluster_id, self.own_id, &chunk, &mut wire);
            within(SNAPSHOT_STALL_TIMEOUT, write_flushed(&mut stream, &wire))
                .await
                .ok_or("the peer stopped taking chunks")?
                .map_err(|e| format!("sending a chunk: {e}"))?;
            self.sent(peer.id, wire.len());
            offset += length as u64;
            glommio::timer::sleep(pause).await;
        }
        let _ = file.close().await;
        wire.clear();
        encode_frame(
            self.cluster_id,
            self.own_id,
            std::slice::from_ref(message),
            &mut wire,
        );
        within(SNAPSHOT_STALL_TIMEOUT, write_flushed(&mut stream, &wire))
            .await
            .ok_or("the peer stopped taking the snapshot")?
            .map_err(|e| format!("sending the snapshot message: {e}"))?;
        self.sent(peer.id, wire.len());
        let mut answer = [SNAPSHOT_REFUSED];
        within(SNAPSHOT_STALL_TIMEOUT, stream.read_exact(&mut answer))
            .await
            .ok_or("no answer from the peer")?
            .map_err(|e| format!("reading the answer: {e}"))?;
        let _ = stream.close().await;
        if answer[0] == SNAPSHOT_ACCEPTED {
            Ok(file_size)
        } else {
            Err("the peer refused the snapshot".into())
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
            let stream = match self.dial(&address).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(peer = %format!("{:x}", peer.id), %address, %error, "cannot reach peer");
                    if peer.queued() > 0 {
                        // Raft retransmits; holding old messages only delays newer ones.
                        self.send_failed(peer.id, peer.queued());
                        peer.clear();
                        self.unreachable.borrow_mut().push(peer.id);
                    }
                    glommio::timer::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            };
            let (mut reader, mut writer) = futures::io::AsyncReadExt::split(stream);
            wire.clear();
            encode_hello(
                self.cluster_id,
                self.own_id,
                &self.own_urls.borrow(),
                &mut wire,
            );
            if let Err(error) = write_flushed(&mut writer, &wire).await {
                tracing::debug!(peer = %format!("{:x}", peer.id), %error, "peer connection lost");
                self.unreachable.borrow_mut().push(peer.id);
                glommio::timer::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            // The peer never writes on this connection: a read returning means it closed (it
            // stopped or refused us), and the connection is dropped at once rather than at the
            // next write, so neither side keeps a half-closed socket.
            let closed = Rc::new(Cell::new(false));
            let watcher = {
                let (closed, peer, transport) = (closed.clone(), peer.clone(), self.clone());
                glommio::spawn_local(async move {
                    let mut byte = [0u8; 1];
                    if matches!(reader.read(&mut byte).await, Ok(1)) && byte[0] == REMOVED_NOTICE {
                        tracing::warn!(peer = %format!("{:x}", peer.id), "a peer says this member was removed from the cluster");
                        transport.told_removed.set(true);
                        transport.inbox.wake();
                    }
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
                if let Err(error) = write_flushed(&mut writer, &wire).await {
                    tracing::debug!(peer = %format!("{:x}", peer.id), %error, "peer connection lost");
                    self.unreachable.borrow_mut().push(peer.id);
                    self.send_failed(peer.id, batch.len());
                    break;
                }
                self.sent(peer.id, wire.len());
            }
            let _ = writer.close().await;
            watcher.cancel().await;
        }
    }
}
