//! A core's view of the shard layer: which core owns a key, sending to other cores, requests
//! answered over the mesh, and ranges gathered from every shard at one revision.
//!
//! Invariant: a request's answer is delivered to the asking core, which completes its own
//! pending entry; the local oneshot that wakes the asking task is only touched by its own
//! executor.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::ConnectedSender;
use glommio::{GlommioError, ResourceType};

use super::{CoreMessage, Reply, ShardState};
use crate::consensus::ServerError;
use crate::mvcc::exec;
use crate::mvcc::kv::{KeyRange, KeyValue};
use crate::mvcc::request::{RangeRequest, RangeResponse};
use crate::mvcc::sharded::shard_for_key;

/// Where an answer goes: the asking core and its request number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The asking core.
    pub core: usize,
    /// The request's number on that core.
    pub id: u64,
}

/// One core's handle on the shard layer.
pub struct Router {
    core: usize,
    cores: usize,
    /// To every other core by index (`None` for this one); empty with a single core.
    senders: Rc<Vec<Option<ConnectedSender<CoreMessage>>>>,
    local: Rc<ShardState>,
    /// Requests of this core waiting for their `Reply`, by number.
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request: Cell<u64>,
    /// Messages posted in order to a core whose channel was full, by core; an entry exists
    /// while a task is sending them.
    ordered: RefCell<HashMap<usize, VecDeque<CoreMessage>>>,
}

impl Router {
    /// A router for core `core` of `cores`, sending to core `i` through `senders[i]`.
    pub fn new(
        core: usize,
        cores: usize,
        senders: Vec<Option<ConnectedSender<CoreMessage>>>,
        local: Rc<ShardState>,
    ) -> Router {
        Router {
            core,
            cores: cores.max(1),
            senders: Rc::new(senders),
            local,
            pending: RefCell::new(HashMap::new()),
            next_request: Cell::new(0),
            ordered: RefCell::new(HashMap::new()),
        }
    }

    /// This core's index.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Number of cores (and shards).
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// This core's shard.
    pub fn local(&self) -> &Rc<ShardState> {
        &self.local
    }

    /// The core owning `key`.
    pub fn owner(&self, key: &[u8]) -> usize {
        shard_for_key(key, self.cores)
    }

    /// Delivers a message to `core`: handled at once when it is this core, sent in FIFO order
    /// otherwise.
    pub async fn deliver(
        self: &Rc<Self>,
        core: usize,
        message: CoreMessage,
    ) -> Result<(), ServerError> {
        if core == self.core {
            self.local.handle(message, self);
            return Ok(());
        }
        let Some(Some(sender)) = self.senders.get(core) else {
            return Err(ServerError::Internal(format!("no channel to core {core}")));
        };
        sender.send(message).await.map_err(|_| ServerError::Stopped)
    }

    /// Sends the request `make` builds (given where its answer goes) to `core` and waits for
    /// the answer. `Stopped` when the node stops first.
    pub async fn ask(
        self: &Rc<Self>,
        core: usize,
        make: impl FnOnce(ReplyTo) -> CoreMessage,
    ) -> Result<Reply, ServerError> {
        let answer = self.send_request(core, make).await?;
        answer.await.map_err(|_| ServerError::Stopped)
    }

    /// Sends a request and returns the receiver of its answer, so several can be in flight.
    pub async fn send_request(
        self: &Rc<Self>,
        core: usize,
        make: impl FnOnce(ReplyTo) -> CoreMessage,
    ) -> Result<oneshot::Receiver<Reply>, ServerError> {
        let id = self.next_request.get();
        self.next_request.set(id.wrapping_add(1));
        let (sender, receiver) = oneshot::channel();
        self.pending.borrow_mut().insert(id, sender);
        let to = ReplyTo {
            core: self.core,
            id,
        };
        if let Err(error) = self.deliver(core, make(to)).await {
            self.pending.borrow_mut().remove(&id);
            return Err(error);
        }
        Ok(receiver)
    }

    /// Sends an answer to the core that asked. Never waits: when the channel is full the
    /// answer is sent by a task of its own, so a core's message loop never blocks on another
    /// core's (two loops waiting on each other would deadlock).
    pub fn reply(self: &Rc<Self>, to: ReplyTo, reply: Reply) {
        if to.core == self.core {
            self.complete(to.id, reply);
            return;
        }
        let Some(Some(sender)) = self.senders.get(to.core) else {
            return;
        };
        let message = CoreMessage::Reply { id: to.id, reply };
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(message))) =
            sender.try_send(message)
        {
            let senders = self.senders.clone();
            glommio::spawn_local(async move {
                // A closed channel means the asking core is gone: nobody waits any more.
                if let Some(Some(sender)) = senders.get(to.core) {
                    let _ = sender.send(message).await;
                }
            })
            .detach();
        }
    }

    /// Sends `message` to another core without waiting, after every message posted to it
    /// earlier: when its channel is full, the messages queue here and a task sends them in
    /// order. A message loop can post without ever blocking on another core's.
    pub fn post_in_order(self: &Rc<Self>, core: usize, message: CoreMessage) {
        let Some(Some(sender)) = self.senders.get(core) else {
            return;
        };
        {
            let mut ordered = self.ordered.borrow_mut();
            if let Some(queue) = ordered.get_mut(&core) {
                queue.push_back(message);
                return;
            }
            match sender.try_send(message) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(message))) => {
                    ordered.insert(core, VecDeque::from([message]));
                }
                // Closed: the core is gone, nobody listens any more.
                Err(_) => return,
            }
        }
        let router = self.clone();
        glommio::spawn_local(async move {
            loop {
                let next = {
                    let mut ordered = router.ordered.borrow_mut();
                    match ordered.get_mut(&core).and_then(VecDeque::pop_front) {
                        Some(message) => message,
                        None => {
                            ordered.remove(&core);
                            return;
                        }
                    }
                };
                let sent = match router.senders.get(core) {
                    Some(Some(sender)) => sender.send(next).await.is_ok(),
                    _ => false,
                };
                if !sent {
                    router.ordered.borrow_mut().remove(&core);
                    return;
                }
            }
        })
        .detach();
    }

    /// Completes this core's request `id` (an answer that arrived).
    pub fn complete(&self, id: u64, reply: Reply) {
        let waiter = self.pending.borrow_mut().remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(reply);
        }
    }

    /// Fails every request of this core still waiting for an answer (the node is stopping).
    pub fn abandon_pending(&self) {
        let abandoned = std::mem::take(&mut *self.pending.borrow_mut());
        drop(abandoned);
    }

    /// The pairs of `range` at `revision` from every shard that can hold them, merged in key
    /// order: at most `max_items` of them, with the total count.
    pub async fn gather(
        self: &Rc<Self>,
        range: &KeyRange,
        revision: i64,
        max_items: Option<usize>,
    ) -> Result<(Vec<KeyValue>, usize), ServerError> {
        let targets: Vec<usize> = match range {
            KeyRange::Single(key) => vec![self.owner(key)],
            _ => (0..self.cores).collect(),
        };
        let mut pending = Vec::new();
        let mut pairs = Vec::new();
        let mut count = 0;
        for core in targets {
            if core == self.core {
                continue;
            }
            let answer = self
                .send_request(core, |reply| CoreMessage::Read {
                    range: range.clone(),
                    revision,
                    max_items,
                    reply,
                })
                .await?;
            pending.push(answer);
        }
        if matches!(range, KeyRange::Single(key) if self.owner(key) != self.core) {
            // Only the owner holds a single key.
        } else {
            let (mut part, part_count) = self
                .local
                .read(range, revision, max_items)
                .await
                .ok_or(ServerError::Stopped)?;
            pairs.append(&mut part);
            count += part_count;
        }
        for answer in pending {
            let (mut part, part_count) = match answer.await {
                Ok(Reply::Read(Some(answer))) => answer,
                Ok(Reply::Read(None)) | Err(_) => return Err(ServerError::Stopped),
                Ok(_) => return Err(unexpected_reply("Read")),
            };
            pairs.append(&mut part);
            count += part_count;
        }
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(max) = max_items {
            pairs.truncate(max);
        }
        Ok((pairs, count))
    }

    /// Serves a range at `current`, the revision the reader treats as current.
    pub async fn range(
        self: &Rc<Self>,
        request: &RangeRequest,
        current: i64,
    ) -> Result<RangeResponse, ServerError> {
        let revision =
            exec::resolve_read_revision(request.revision, current, self.local.compact_revision())?;
        let range = KeyRange::from_request(&request.key, &request.range_end);
        let max_items = exec::shard_read_limit(request);
        let (pairs, count) = self.gather(&range, revision, max_items).await?;
        Ok(exec::assemble_range(request, pairs, count, current))
    }
}

impl Router {
    /// etcd's HashKV of the whole keyspace after `after` up to `upto`: every shard's part,
    /// added.
    pub async fn hash_kv(self: &Rc<Self>, after: i64, upto: i64) -> Result<u32, ServerError> {
        let mut pending = Vec::new();
        for core in (0..self.cores).filter(|&core| core != self.core) {
            pending.push(
                self.send_request(core, |reply| CoreMessage::HashKv { after, upto, reply })
                    .await?,
            );
        }
        let mut total = self
            .local
            .hash_kv(after, upto)
            .await
            .ok_or(ServerError::Stopped)?;
        for answer in pending {
            match answer.await {
                Ok(Reply::Hashed(Some(part))) => total = total.wrapping_add(part),
                Ok(Reply::Hashed(None)) | Err(_) => return Err(ServerError::Stopped),
                Ok(_) => return Err(unexpected_reply("HashKv")),
            }
        }
        Ok(total)
    }
}

impl Router {
    /// Watch events of `range` in `(after, upto]` from every shard that can hold them, in
    /// revision order, with the highest compaction point among those shards and the revision
    /// the events are complete up to: each shard holds at most `max_bytes` (whole revisions),
    /// so the answer is complete up to the lowest revision a shard reached.
    pub async fn watch_history(
        self: &Rc<Self>,
        range: &KeyRange,
        after: i64,
        upto: i64,
        max_bytes: usize,
    ) -> Result<(Vec<crate::watch::Event>, i64, i64), ServerError> {
        let targets: Vec<usize> = match range {
            KeyRange::Single(key) => vec![self.owner(key)],
            _ => (0..self.cores).collect(),
        };
        let mut pending = Vec::new();
        for &core in &targets {
            if core != self.core {
                let answer = self
                    .send_request(core, |reply| CoreMessage::WatchHistory {
                        range: range.clone(),
                        after,
                        upto,
                        max_bytes,
                        reply,
                    })
                    .await?;
                pending.push(answer);
            }
        }
        let mut events = Vec::new();
        let mut compacted = -1;
        let mut reached = upto;
        if targets.contains(&self.core) {
            let (mine, point, mine_reached) = self
                .local
                .history(range, after, upto, max_bytes)
                .await
                .ok_or(ServerError::Stopped)?;
            events.extend(mine);
            compacted = compacted.max(point);
            reached = reached.min(mine_reached);
        }
        for answer in pending {
            match answer.await.map_err(|_| ServerError::Stopped)? {
                Reply::History(Some((theirs, point, their_reached))) => {
                    events.extend(theirs);
                    compacted = compacted.max(point);
                    reached = reached.min(their_reached);
                }
                Reply::History(None) => return Err(ServerError::Stopped),
                _ => return Err(unexpected_reply("watch history")),
            }
        }
        events.retain(|event| event.revision() <= reached);
        events.sort_by_key(|event| (event.revision(), event.sub));
        Ok((events, compacted, reached))
    }
}

/// The error for an answer of the wrong kind (a bug: every request has one answer kind).
pub fn unexpected_reply(request: &str) -> ServerError {
    ServerError::Internal(format!("unexpected answer to {request}"))
}
