//! A whole keyspace split over shards, in one place: the revision counter and compaction point
//! with every shard's state. Pure. It is the reference arrangement the threaded server must
//! behave exactly like (tests run it with one shard and with several), and the building block
//! a single-core deployment can use directly.

use std::time::Duration;

use bytes::Bytes;

use super::error::KvError;
use super::event::Event;
use super::exec::{self, Change, ReadView};
use super::kv::{KeyRange, KeyValue};
use super::request::{
    CompactionRequest, CompactionResponse, LeaseResponse, RangeRequest, RangeResponse,
    ResponseHeader, WriteRequest, WriteResponse,
};
use super::shard::MvccShard;
use super::validate;
use crate::lease::Lessor;

/// The shard that owns `key` among `shard_count` shards. Stable across restarts and versions:
/// it decides where a key's history lives.
pub fn shard_for_key(key: &[u8], shard_count: usize) -> usize {
    (crc32c::crc32c(key) as usize) % shard_count.max(1)
}

/// Every shard of a keyspace plus its revision counter, compaction point and leases.
#[derive(Clone, Debug)]
pub struct ShardedKv {
    shards: Vec<MvccShard>,
    current_revision: i64,
    compact_revision: i64,
    leases: Lessor,
    /// The time lease changes are applied at (the model has no clock; callers move it).
    lease_clock: Duration,
}

impl ShardedKv {
    /// An empty keyspace over `shard_count` shards (at least one). Like etcd, an empty store is
    /// at revision 1.
    pub fn new(shard_count: usize) -> ShardedKv {
        ShardedKv {
            shards: (0..shard_count.max(1)).map(|_| MvccShard::new()).collect(),
            current_revision: 1,
            compact_revision: -1,
            leases: Lessor::new(),
            lease_clock: Duration::ZERO,
        }
    }

    /// The leases.
    pub fn leases(&self) -> &Lessor {
        &self.leases
    }

    /// Sets the time later lease changes are applied at.
    pub fn set_lease_clock(&mut self, now: Duration) {
        self.lease_clock = now;
    }

    /// The current revision.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The compaction point (-1 before the first compaction).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Serves a range request (validated here too).
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate::check_range(request)?;
        let revision = exec::resolve_read_revision(
            request.revision,
            self.current_revision,
            self.compact_revision,
        )?;
        let range = KeyRange::from_request(&request.key, &request.range_end);
        let max_items = exec::shard_read_limit(request);
        let (pairs, count) = self.gather(&range, revision, max_items);
        Ok(exec::assemble_range(
            request,
            pairs,
            count,
            self.current_revision,
        ))
    }

    fn gather(
        &self,
        range: &KeyRange,
        revision: i64,
        max_items: Option<usize>,
    ) -> (Vec<KeyValue>, usize) {
        if let KeyRange::Single(key) = range {
            let shard = &self.shards[shard_for_key(key, self.shards.len())];
            return shard.range(range, revision, max_items);
        }
        let mut pairs = Vec::new();
        let mut count = 0;
        for shard in &self.shards {
            let (mut part, part_count) = shard.range(range, revision, max_items);
            pairs.append(&mut part);
            count += part_count;
        }
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(max) = max_items {
            pairs.truncate(max);
        }
        (pairs, count)
    }

    /// Executes a request that goes through the log, after etcd's validation, and applies its
    /// changes. A request that fails changes nothing.
    pub fn write(
        &mut self,
        request: &WriteRequest,
        max_txn_ops: usize,
    ) -> Result<WriteResponse, KvError> {
        self.write_with_events(request, max_txn_ops)
            .map(|(response, _)| response)
    }

    /// `write`, also returning the watch events of its changes with the shard of each.
    pub fn write_with_events(
        &mut self,
        request: &WriteRequest,
        max_txn_ops: usize,
    ) -> Result<(WriteResponse, Vec<(usize, Event)>), KvError> {
        validate::check_write(request, max_txn_ops)?;
        let (response, changes) = match request {
            WriteRequest::Put(put) => {
                let (response, changes) = exec::execute_put(self, put)?;
                (WriteResponse::Put(response), changes)
            }
            WriteRequest::DeleteRange(delete) => {
                let (response, changes) = exec::execute_delete(self, delete)?;
                (WriteResponse::DeleteRange(response), changes)
            }
            WriteRequest::Txn(txn) => {
                let (response, changes) = exec::execute_txn(self, txn)?;
                (WriteResponse::Txn(response), changes)
            }
            WriteRequest::Compact(compaction) => {
                return self
                    .compact(compaction)
                    .map(|response| (WriteResponse::Compact(response), Vec::new()));
            }
            WriteRequest::Lease(lease) => {
                let (outcome, keys) = self.leases.apply(lease, self.lease_clock)?;
                let changes = keys
                    .into_iter()
                    .map(|key| Change { key, pair: None })
                    .collect();
                let events = self.apply(changes);
                let response = LeaseResponse {
                    header: ResponseHeader::at(self.current_revision),
                    outcome,
                };
                return Ok((WriteResponse::Lease(response), events));
            }
        };
        let events = self.apply(changes);
        Ok((response, events))
    }

    /// Applies the changes of one write: one new main revision if there is any change.
    /// Returns their watch events, each with the shard that owns its key.
    pub fn apply(&mut self, changes: Vec<Change>) -> Vec<(usize, Event)> {
        if changes.is_empty() {
            return Vec::new();
        }
        let revision = self.current_revision + 1;
        let shard_count = self.shards.len();
        let mut events = Vec::with_capacity(changes.len());
        for (sub, Change { key, pair }) in changes.into_iter().enumerate() {
            let owner = shard_for_key(&key, shard_count);
            let shard = &mut self.shards[owner];
            events.push((
                owner,
                shard.change_event(revision, sub as i64, &key, pair.as_ref()),
            ));
            self.leases
                .attach(&key, pair.as_ref().map_or(0, |pair| pair.lease));
            shard.apply(revision, sub as i64, key, pair);
        }
        self.current_revision = revision;
        events
    }

    /// Every change to keys in `range` with a main revision in `(after, upto]`, from every
    /// shard, as watch events in revision order.
    pub fn history_events(&self, range: &KeyRange, after: i64, upto: i64) -> Vec<Event> {
        self.history_events_within(range, after, upto, usize::MAX).0
    }

    /// `history_events` with each shard holding at most `max_bytes` (whole revisions): the
    /// events complete up to the revision returned, the lowest any shard reached, as the
    /// router merges them across cores.
    pub fn history_events_within(
        &self,
        range: &KeyRange,
        after: i64,
        upto: i64,
        max_bytes: usize,
    ) -> (Vec<Event>, i64) {
        let parts: Vec<(Vec<Event>, i64)> = self
            .shards
            .iter()
            .map(|shard| shard.history_events_within(range, after, upto, max_bytes))
            .collect();
        let reached = parts
            .iter()
            .map(|(_, reached)| *reached)
            .min()
            .unwrap_or(upto);
        let mut events: Vec<Event> = parts
            .into_iter()
            .flat_map(|(events, _)| events)
            .filter(|event| event.revision() <= reached)
            .collect();
        events.sort_by_key(|event| (event.revision(), event.sub));
        (events, reached)
    }

    /// etcd's Compact: drops history below `revision` on every shard.
    pub fn compact(&mut self, request: &CompactionRequest) -> Result<CompactionResponse, KvError> {
        if request.revision <= self.compact_revision {
            return Err(KvError::Compacted);
        }
        if request.revision > self.current_revision {
            return Err(KvError::FutureRevision);
        }
        self.compact_revision = request.revision;
        for shard in &mut self.shards {
            shard.compact(request.revision);
        }
        Ok(CompactionResponse {
            header: ResponseHeader::at(self.current_revision),
        })
    }

    /// The pair `key` holds now.
    pub fn get(&self, key: &Bytes) -> Option<&KeyValue> {
        self.shards[shard_for_key(key, self.shards.len())].get(key, self.current_revision)
    }
}

impl ReadView for ShardedKv {
    fn current_revision(&self) -> i64 {
        self.current_revision
    }

    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    fn range_at(&self, range: &KeyRange, revision: i64) -> Vec<KeyValue> {
        self.gather(range, revision, None).0
    }

    fn lease_exists(&self, lease: i64) -> bool {
        self.leases.contains(lease)
    }
}
