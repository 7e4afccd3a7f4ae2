//! The replica: one member's consensus state machine, sans I/O, and its glue to raft-rs.
//!
//! The shell (`consensus`) owns timers, the log's writes, the transport, spawning and the
//! applied state; the replica owns raft-rs's `RawNode` and every decision around it, one
//! concern per file, each headed by a diagram of its flow:
//! - [`state`]: the [`Replica`], `step(now, input)` and the turns of raft-rs's Ready protocol;
//! - [`proposals`]: admission and the proposal queue; [`reads`]: ReadIndex rounds;
//! - [`persist`]: what each Ready makes durable and what waits for it;
//! - [`leadership`]: leader changes and leaderless warnings; [`membership`]: the checks and
//!   effects of membership changes; [`snapshots`]: when to take a snapshot;
//! - [`guard`]: what a peer's message must be before raft-rs sees it; [`stages`]: where commits
//!   spend their time;
//! - [`entry`]: the payload layout of lode's entries; [`storage`]: the log as raft-rs's
//!   `Storage`; [`logger`]: raft-rs's logger routed to `tracing`;
//! - [`disk`]: a full log disk: when to retry writing, and a leader handing over at once;
//!   [`unsynced`]: the Readies not yet durable a shell keeps, to write them again in order.

pub mod disk;
pub mod entry;
pub mod guard;
pub mod leadership;
pub mod logger;
pub mod membership;
pub mod peers;
pub mod persist;
pub mod proposals;
pub mod random;
pub mod reads;
pub mod snapshots;
pub mod stages;
pub mod state;
pub mod storage;
pub mod unsynced;

pub use state::{Input, MemberApplied, Outputs, PersistPlan, Replica, ReplicaConfig, Turn};
