//! etcd's data model: multi-version keys, global revisions, ranges, puts, deletes, txns and
//! compaction, with etcd's exact semantics and error strings. Pure: no I/O, no clocks, no
//! threads, so it is tested deterministically against a reference model.
//!
//! - [`kv`]: keys, ranges, key-value pairs;
//! - [`event`]: one change as watchers see it;
//! - [`request`]: the internal request/response model both front ends decode into;
//! - [`validate`]: checks made before a request is proposed;
//! - [`shard`]: one shard's multi-version state;
//! - [`exec`]: executing requests against a read view, producing responses and changes;
//! - [`sequence`]: the sequencer's decisions: revisions and per-shard writes, in log order;
//! - [`sharded`]: a keyspace over several shards with its revision counter;
//! - [`error`]: etcd's errors and messages.
//!
//! Revisions: the store starts at revision 1; each request that changes something gets the next
//! main revision, and its changes sub revisions 0, 1, ... in execution order.

pub mod error;
pub mod event;
pub mod exec;
pub mod kv;
pub mod request;
pub mod sequence;
pub mod shard;
pub mod sharded;
pub mod validate;

pub use error::KvError;
pub use kv::{KeyRange, KeyValue};
pub use sharded::ShardedKv;
