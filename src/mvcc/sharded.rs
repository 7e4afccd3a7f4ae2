//! A whole keyspace split over shards, in one place: the revision counter and compaction point
//! with every shard's state. Pure. It is the reference arrangement the threaded server must
//! behave exactly like (tests run it with one shard and with several), and the building block
//! a single-core deployment can use directly.

use std::time::Duration;

use bytes::Bytes;

use super::error::KvError;
use super::event::Event;
use super::exec::{self, ReadView};
use super::kv::{KeyRange, KeyValue};
use super::request::{
    CompactionRequest, CompactionResponse, RangeRequest, RangeResponse, WriteRequest, WriteResponse,
};
pub use super::sequence::shard_for_key;
use super::sequence::{EvaluateError, Plan, Sequence};
use super::shard::MvccShard;
use super::validate;
use crate::lease::Lessor;

/// Every shard of a keyspace plus the sequencer that decides its writes.
#[derive(Clone, Debug)]
pub struct ShardedKv {
    shards: Vec<MvccShard>,
    sequence: Sequence,
    /// The time lease changes are applied at (the model has no clock; callers move it).
    lease_clock: Duration,
}

impl ShardedKv {
    /// An empty keyspace over `shard_count` shards (at least one). Like etcd, an empty store is
    /// at revision 1.
    pub fn new(shard_count: usize) -> ShardedKv {
        let shard_count = shard_count.max(1);
        ShardedKv {
            shards: (0..shard_count).map(|_| MvccShard::new()).collect(),
            // `write` gives the sequencer the caller's limit.
            sequence: Sequence::new(shard_count, u32::MAX as usize),
            lease_clock: Duration::ZERO,
        }
    }

    /// The leases.
    pub fn leases(&self) -> &Lessor {
        self.sequence.leases()
    }

    /// The leases, for what is not a log entry (a new leader's promotion).
    pub fn leases_mut(&mut self) -> &mut Lessor {
        self.sequence.leases_mut()
    }

    /// Sets the time later lease changes are applied at.
    pub fn set_lease_clock(&mut self, now: Duration) {
        self.lease_clock = now;
    }

    /// The current revision.
    pub fn current_revision(&self) -> i64 {
        self.sequence.current_revision().get()
    }

    /// The compaction point (-1 before the first compaction).
    pub fn compact_revision(&self) -> i64 {
        self.sequence.compact_revision().get()
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
            self.current_revision(),
            self.compact_revision(),
        )?;
        let range = KeyRange::from_request(&request.key, &request.range_end);
        let max_items = exec::shard_read_limit(request);
        let (pairs, count) = self.gather(&range, revision, max_items);
        Ok(exec::assemble_range(
            request,
            pairs,
            count,
            self.current_revision(),
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

    /// `write`, also returning the watch events of its changes with the shard of each. The
    /// sequencer validates and decides (`mvcc::sequence`, as on the threaded server); the
    /// shards apply.
    pub fn write_with_events(
        &mut self,
        request: &WriteRequest,
        max_txn_ops: usize,
    ) -> Result<(WriteResponse, Vec<(usize, Event)>), KvError> {
        self.sequence.set_max_txn_ops(max_txn_ops);
        let decided = match self.sequence.plan(request, self.lease_clock)? {
            Plan::Ready(decided) => decided,
            Plan::NeedsReads(reads) => {
                let prefetched = reads
                    .into_iter()
                    .map(|(range, revision)| {
                        let pairs = self.gather(&range, revision, None).0;
                        ((range, revision), pairs)
                    })
                    .collect();
                match self.sequence.evaluate(request, prefetched) {
                    Ok(decided) => decided,
                    Err(EvaluateError::Kv(error)) => return Err(error),
                    // Every pair is at hand here: a read outside the set is the sequencer's bug.
                    Err(bug) => panic!("{bug}"),
                }
            }
        };
        let mut events = Vec::new();
        for (shard, write) in decided.writes {
            let mut recorded = Vec::new();
            self.shards[shard].apply_write(write, Some(&mut recorded));
            events.extend(recorded.into_iter().map(|event| (shard, event)));
        }
        // In execution order, as a watcher merging the shards sees them.
        events.sort_by_key(|(_, event)| event.sub);
        let response = self.sequence.settle(request, decided.settle)?;
        self.sequence.publish();
        Ok((response, events))
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
        match self.write(&WriteRequest::Compact(request.clone()), 0)? {
            WriteResponse::Compact(response) => Ok(response),
            other => panic!("a compaction answered {other:?}"),
        }
    }

    /// The pair `key` holds now.
    pub fn get(&self, key: &Bytes) -> Option<&KeyValue> {
        self.shards[shard_for_key(key, self.shards.len())].get(key, self.current_revision())
    }
}

impl ReadView for ShardedKv {
    fn current_revision(&self) -> i64 {
        self.sequence.current_revision().get()
    }

    fn compact_revision(&self) -> i64 {
        self.sequence.compact_revision().get()
    }

    fn range_at(&self, range: &KeyRange, revision: i64) -> Vec<KeyValue> {
        self.gather(range, revision, None).0
    }

    fn lease_exists(&self, lease: i64) -> bool {
        self.leases().contains(lease)
    }
}
