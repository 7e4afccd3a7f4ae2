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

pub use crate::mvcc::event::{Event, EventKind, EVENT_OVERHEAD_BYTES};
