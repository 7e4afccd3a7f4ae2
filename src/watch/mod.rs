//! etcd's watches, pure: the events a change makes, the merge of every shard's events into
//! whole revisions, and the watchers of one client stream with etcd's guarantees. No I/O, no
//! clocks: the server feeds these from the shards and sends what they produce.
//!
//! - [`Event`]: one change as a watcher sees it (etcd's `mvccpb.Event`), made by the shard that
//!   owns the key, live when the change is applied (`MvccShard::change_event`) or from history
//!   (`MvccShard::history_events`);
//! - [`merge::RevisionMerger`]: each shard's events arrive in revision order with the shard's
//!   watermark (every change at or below it was applied there); the merger releases a revision
//!   only once every shard's watermark passed it, so a revision spanning shards comes out
//!   whole and revisions come out in order;
//! - [`stream::WatchStream`]: the watchers of one stream (create, cancel, progress), what each
//!   is owed, and the responses to send.
//!
//! Guarantees (etcd's `api_guarantees`), with where they come from:
//! - ordered and unique: a watcher's `next` revision only grows; it is given events at or
//!   above `next`, then `next` moves past them;
//! - reliable: a synced watcher gets every released revision; one that is not (created in the
//!   past, or dropped behind because its stream's buffer was full) is caught up from the
//!   shards' history, which is complete at and above the compaction point, and canceled with
//!   `compact_revision` when it needs revisions below it;
//! - atomic: events are handed to watchers a revision at a time, never split;
//! - bookmarkable: a progress response at revision R is sent only when every watcher of the
//!   stream has been given everything up to R.
//!
//! Memory: a stream holds at most its byte budget of undelivered events (plus one response);
//! a watcher whose events do not fit is set back to catch up from history, so a slow reader
//! costs reads later instead of memory now.

pub mod merge;
pub mod stream;

use bytes::Bytes;

use crate::mvcc::KeyValue;

/// Bytes an event is counted as besides its keys and values, for stream budgets.
pub const EVENT_OVERHEAD_BYTES: usize = 64;

/// What a change did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change as watchers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The pair after a put; after a delete, only the key and `mod_revision` (the deletion's
    /// revision) are set, as etcd sends it.
    pub kv: KeyValue,
    /// The pair before the change, when there was one (given to watchers that ask for it).
    pub prev_kv: Option<KeyValue>,
    /// Position of the change within its revision (a txn's changes are 0, 1, ...).
    pub sub: i64,
}

impl Event {
    /// The event of a change at (main, sub) to `key`: `pair` after a put, `None` for a
    /// delete; `previous` is the pair before it.
    pub fn new(
        main: i64,
        sub: i64,
        key: Bytes,
        pair: Option<KeyValue>,
        previous: Option<KeyValue>,
    ) -> Event {
        let (kind, kv) = match pair {
            Some(pair) => (EventKind::Put, pair),
            None => (
                EventKind::Delete,
                KeyValue {
                    key,
                    mod_revision: main,
                    ..KeyValue::default()
                },
            ),
        };
        Event {
            kind,
            kv,
            prev_kv: previous,
            sub,
        }
    }

    /// The main revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    /// True for a put that created the key (etcd's `IsCreate`).
    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.version == 1
    }

    /// Bytes counted against a stream's budget.
    pub fn counted_bytes(&self) -> usize {
        let pair = |kv: &KeyValue| kv.key.len() + kv.value.len();
        EVENT_OVERHEAD_BYTES + pair(&self.kv) + self.prev_kv.as_ref().map_or(0, pair)
    }
}
