//! The integers that cross module boundaries, each given its own type so one cannot be
//! passed where another is meant (a log index and a revision both grow by one; a term and a
//! member ID are both `u64`):
//!
//! - [`Revision`]: the keyspace's revision (etcd's `int64`), as the sequencer decides it
//!   (`mvcc::sequence`: current and compaction revisions, the revisions of `ShardWrite`s,
//!   `Sequence::restore`) and the consensus shell reads it (`consensus::sequencer`);
//! - [`LogIndex`] and [`Term`]: positions in the Raft log, as the replica's public API
//!   (`replica::Replica`: applied and committed indexes, the term, read indexes in `Outputs`)
//!   answers them to the shell (`consensus`), and the shell's own accessors answer them on;
//! - [`MemberId`]: a member's ID (also its Raft ID), in `ReplicaConfig`, the replica's
//!   `Input`s and `Outputs` (peers, leader changes, transfers), the shell's configuration,
//!   the member registry (`members`: `Member`, `MemberChange`, lookups, voters and learners)
//!   and the bootstrap identity (`membership`).
//!
//! What is typed is the boundaries, not every local: inside a module, and at the edges where
//! values leave lode's own code, they stay plain integers. Wire formats (protobuf, flatbuffers,
//! etcd's JSON, the log, snapshots) keep their integer fields and convert at the codec; raft-rs
//! keeps its own `u64`s, converted where the replica meets `RawNode` and `Storage`.
//!
//! The API is kept small on purpose: `new` to make one, `.get()` for the integer,
//! `Revision::next()` where the next revision is meant, no arithmetic operators. `Debug`
//! prints the bare integer, so logs read as they did before. `MemberId` has no `Display`:
//! etcd prints member IDs in hex in some places and in decimal in others (`-w fields`, JSON),
//! so each place says which (`{:x}`, or `.get()`).

use std::fmt;

/// A revision of the keyspace: every change of keys makes the next one (etcd's `int64`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(i64);

impl Revision {
    /// Revision `value`.
    pub const fn new(value: i64) -> Revision {
        Revision(value)
    }

    /// The integer, for wire formats and arithmetic inside a module.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The revision after this one.
    pub const fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

/// Debug prints the bare integer, as the `{:?}` of the plain integer it replaced did (logs
/// stay the same).
impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The index of an entry in the Raft log (raft-rs's `u64`; 0 before the first entry).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(u64);

impl LogIndex {
    /// Log index `value`.
    pub const fn new(value: u64) -> LogIndex {
        LogIndex(value)
    }

    /// The integer, for raft-rs, wire formats and arithmetic inside a module.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Debug prints the bare integer, as the `{:?}` of the plain integer it replaced did (logs
/// stay the same).
impl fmt::Debug for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A Raft term (raft-rs's `u64`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(u64);

impl Term {
    /// Term `value`.
    pub const fn new(value: u64) -> Term {
        Term(value)
    }

    /// The integer, for raft-rs and wire formats.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Debug prints the bare integer, as the `{:?}` of the plain integer it replaced did (logs
/// stay the same).
impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A member's ID, also its Raft ID (etcd's `uint64`; 0 is no member: raft-rs's `INVALID_ID`).
/// `{:x}` prints it as etcd's hex (`8e9e05c52164694d`); `{:016x}` pads it, as lode's identity
/// file writes it.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(u64);

impl MemberId {
    /// Member ID `value`.
    pub const fn new(value: u64) -> MemberId {
        MemberId(value)
    }

    /// No member (raft-rs's `INVALID_ID`): no leader known.
    pub const NONE: MemberId = MemberId(0);

    /// The integer, for raft-rs and wire formats.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// True for [`MemberId::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// Debug prints the bare integer, as the `{:?}` of the plain integer it replaced did (logs
/// stay the same).
impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_print_as_etcd_prints_them() {
        let id = MemberId(0x8e9e05c52164694d);
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", MemberId(0x2a)), "2a");
        assert_eq!(format!("{:016x}", MemberId(0x2a)), "000000000000002a");
        // Debug stays the plain integer's, as logs printed it before.
        assert_eq!(format!("{:?}", MemberId(42)), "42");
        assert_eq!(format!("{:?}", Some(Revision(-1))), "Some(-1)");
    }

    #[test]
    fn successors_and_order() {
        assert_eq!(Revision(1).next(), Revision(2));
        assert_eq!(LogIndex::new(7).get(), 7);
        assert!(Revision(-1) < Revision(0));
        assert!(Term(3) > Term(2));
    }
}
