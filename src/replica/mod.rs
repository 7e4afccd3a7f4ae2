//! Glue between raft-rs and lode: the log as raft's `Storage`, the payload layout of lode's
//! entries, and raft's logger routed to `tracing`.

pub mod entry;
pub mod logger;
pub mod storage;
