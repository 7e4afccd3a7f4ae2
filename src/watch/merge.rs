//! Merging every shard's events into whole revisions, in order.
//!
//! Each shard applies its part of each revision and reports, in order, the events it made and
//! its watermark: every change at or below the watermark has been applied there. A revision
//! may touch several shards (a txn), and shards report independently, so a core that delivers
//! events can release revision R only once every shard's watermark is at least R: then no
//! event of R, or of any earlier revision, can still arrive.
//!
//! Invariants: each shard's queue holds events above the released revision in (revision,
//! sub) order; `released` only grows and is at most the smallest watermark.

use std::collections::VecDeque;

use super::Event;

/// One shard's reported, unreleased events.
#[derive(Debug, Default)]
struct ShardQueue {
    events: VecDeque<Event>,
    watermark: i64,
}

/// Releases revisions once every shard has reported them.
#[derive(Debug)]
pub struct RevisionMerger {
    shards: Vec<ShardQueue>,
    released: i64,
}

impl RevisionMerger {
    /// A merger for `shard_count` shards, every revision up to `start` already released.
    pub fn new(shard_count: usize, start: i64) -> RevisionMerger {
        RevisionMerger {
            shards: (0..shard_count.max(1))
                .map(|_| ShardQueue {
                    events: VecDeque::new(),
                    watermark: start,
                })
                .collect(),
            released: start,
        }
    }

    /// The revision up to which everything was released.
    pub fn released(&self) -> i64 {
        self.released
    }

    /// Records what `shard` reported: `events` in order, all at or below `watermark`. Events
    /// at or below what was already released, or a watermark going backwards, are ignored
    /// (a report repeated after a restart of the reporting side changes nothing).
    pub fn push(&mut self, shard: usize, events: Vec<Event>, watermark: i64) {
        let released = self.released;
        let Some(queue) = self.shards.get_mut(shard) else {
            return;
        };
        let last = queue
            .events
            .back()
            .map_or((released, i64::MAX), |e| (e.revision(), e.sub));
        for event in events {
            let position = (event.revision(), event.sub);
            if event.revision() > released && event.revision() <= watermark && position > last {
                queue.events.push_back(event);
            }
        }
        queue.watermark = queue.watermark.max(watermark);
    }

    /// Treats every revision up to `revision` as released without releasing it: its events
    /// are dropped (a core that starts listening part-way uses this to begin where every
    /// shard's reports are complete).
    pub fn skip_to(&mut self, revision: i64) {
        for queue in &mut self.shards {
            let skipped = queue.events.partition_point(|e| e.revision() <= revision);
            queue.events.drain(..skipped);
        }
        self.released = self.released.max(revision);
    }

    /// Releases every revision that every shard has reported: their events in (revision, sub)
    /// order, and the revision released up to (unchanged when nothing new is complete).
    pub fn release(&mut self) -> (Vec<Event>, i64) {
        let upto = self
            .shards
            .iter()
            .map(|queue| queue.watermark)
            .min()
            .unwrap_or(self.released);
        if upto <= self.released {
            return (Vec::new(), self.released);
        }
        let mut out = Vec::new();
        for queue in &mut self.shards {
            let ready = queue.events.partition_point(|e| e.revision() <= upto);
            out.extend(queue.events.drain(..ready));
        }
        // Each queue is sorted; a stable sort of their concatenation merges them.
        out.sort_by_key(|event| (event.revision(), event.sub));
        self.released = upto;
        (out, upto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(revision: i64, sub: i64, key: &str) -> Event {
        Event::new(
            revision,
            sub,
            Bytes::copy_from_slice(key.as_bytes()),
            Some(crate::mvcc::KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: Bytes::new(),
                lease: 0,
            }),
            None,
        )
    }

    fn positions(events: &[Event]) -> Vec<(i64, i64)> {
        events.iter().map(|e| (e.revision(), e.sub)).collect()
    }

    #[test]
    fn a_revision_spanning_shards_is_released_whole_once_every_shard_reported_it() {
        let mut merger = RevisionMerger::new(2, 1);
        // Revision 2 is a txn writing on both shards; shard 0 reports first.
        merger.push(0, vec![put(2, 0, "a")], 2);
        assert_eq!(merger.release(), (vec![], 1), "shard 1 has not reported 2");
        merger.push(1, vec![put(2, 1, "b"), put(3, 0, "c")], 3);
        let (events, upto) = merger.release();
        assert_eq!(upto, 2);
        assert_eq!(positions(&events), vec![(2, 0), (2, 1)]);
        // Revision 3 waits for shard 0's watermark, even though shard 0 has nothing in it.
        merger.push(0, vec![], 4);
        let (events, upto) = merger.release();
        assert_eq!((positions(&events), upto), (vec![(3, 0)], 3));
    }

    #[test]
    fn repeated_and_stale_reports_change_nothing() {
        let mut merger = RevisionMerger::new(1, 1);
        merger.push(0, vec![put(2, 0, "a")], 2);
        assert_eq!(merger.release().1, 2);
        merger.push(0, vec![put(2, 0, "a")], 2);
        merger.push(0, vec![put(3, 0, "a")], 1);
        assert_eq!(merger.release(), (vec![], 2));
        merger.push(7, vec![put(3, 0, "a")], 9);
        assert_eq!(merger.release(), (vec![], 2), "an unknown shard is ignored");
    }
}
