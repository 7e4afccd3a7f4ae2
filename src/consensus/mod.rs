//! The consensus core: one `raft::RawNode` driving lode's log, the apply path that turns
//! committed entries into KV changes, and linearizable reads through ReadIndex.
//!
//! ```text
//!  clients ──write──▶ proposals queue ─┐            ┌─▶ peers (messages, sent first)
//!                                      ▼            │
//!                         RawNode.propose / tick ── Ready ──▶ Wal.append(entries, hard state)
//!                                                   │              (group commit, fdatasync)
//!                                                   ▼
//!              answers ◀── apply(committed) ◀── advance ──▶ persisted messages
//!  clients ──read──▶ ReadIndex batch ──▶ read state ──▶ wait applied >= index ──▶ serve
//! ```
//!
//! The driver follows raft-rs's Ready protocol exactly: messages are sent before the entries
//! are persisted (a leader persists in parallel with replication), persisted messages only
//! after, and a write is answered only once its entry is committed and applied. Proposals that
//! arrive while a persist is in flight go into the next Ready, so each fdatasync carries every
//! write that arrived during the previous one (group commit without a timer).
//!
//! Single-core: the node lives on one executor and is shared by its tasks through `Rc`.

mod apply;
mod dashboard;
mod driver;
mod membership;
mod metrics;
mod nospace;
mod propose;
mod role;
pub mod sequencer;
mod snapshots;

pub use crate::api::error::ServerError;
pub use driver::{Consensus, ConsensusConfig};
pub use role::SharedRole;

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before it): how the
/// dashboard stamps what it shows.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
