//! One change as a watcher sees it (etcd's `mvccpb.Event`, beside `mvccpb.KeyValue`): made by
//! the shard that owns the key, live when the change is applied (`MvccShard::change_event`) or
//! from history (`MvccShard::history_events`), and delivered by `crate::watch`, which
//! re-exports it.

use bytes::Bytes;

use super::kv::KeyValue;

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
