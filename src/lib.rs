//! lode: a Raft-replicated, thread-per-core key-value store that does etcd's job.
//!
//! This crate is the server library behind the `lode` and `lodectl` binaries. Today it holds the
//! durable log ([`wal`]) that Raft entries are made durable in, and the disk probe
//! ([`diskprobe`]) used by the benchmark and the tuning tools. ARCHITECTURE.md maps the parts.

pub mod alarm;
pub mod api;
pub mod auth;
pub mod bbolt;
pub mod client;
pub mod compactor;
pub mod config;
pub mod consensus;
pub mod cpus;
pub mod ctl;
pub mod dashboard;
pub mod diskprobe;
pub mod duration;
pub mod etcd_db;
pub mod executor;
pub mod fuzz;
pub mod ids;
pub mod lease;
pub mod linearize;
pub mod logging;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod process_metrics;
pub mod replica;
pub mod restore;
pub mod server;
pub mod shard;
pub mod sim;
pub mod snapshot;
pub mod snapshotter;
pub mod tls;
pub mod urls;
pub mod wal;
pub mod watch;

pub use ids::{LogIndex, MemberId, Revision, Term};
