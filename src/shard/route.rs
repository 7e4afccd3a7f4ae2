//! A core's view of the shard layer: which core owns a key, sending to other cores, and ranges
//! gathered from every shard at one revision.

use std::rc::Rc;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;

use super::{CoreMessage, ShardState};
use crate::consensus::ServerError;
use crate::mvcc::exec;
use crate::mvcc::kv::{KeyRange, KeyValue};
use crate::mvcc::request::{RangeRequest, RangeResponse};
use crate::mvcc::sharded::shard_for_key;

/// One core's handle on the shard layer.
pub struct Router {
    core: usize,
    cores: usize,
    senders: Option<Senders<CoreMessage>>,
    local: Rc<ShardState>,
}

impl Router {
    /// A router for core `core` of `cores`; `senders` is `None` for a single core.
    pub fn new(
        core: usize,
        cores: usize,
        senders: Option<Senders<CoreMessage>>,
        local: Rc<ShardState>,
    ) -> Router {
        Router {
            core,
            cores: cores.max(1),
            senders,
            local,
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
    pub async fn deliver(&self, core: usize, message: CoreMessage) -> Result<(), ServerError> {
        if core == self.core {
            self.local.handle(message);
            return Ok(());
        }
        let Some(senders) = &self.senders else {
            return Err(ServerError::Internal(format!("no channel to core {core}")));
        };
        senders
            .send_to(core, message)
            .await
            .map_err(|_| ServerError::Stopped)
    }

    /// The pairs of `range` at `revision` from every shard that can hold them, merged in key
    /// order: at most `max_items` of them, with the total count.
    pub async fn gather(
        &self,
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
            let (reply, answer) = oneshot::channel();
            self.deliver(
                core,
                CoreMessage::Read {
                    range: range.clone(),
                    revision,
                    max_items,
                    reply,
                },
            )
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
            let (mut part, part_count) = answer.await.map_err(|_| ServerError::Stopped)?;
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
        &self,
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
