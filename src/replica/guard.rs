//! What a Raft message from the peer port must be before raft-rs sees it. Pure.
//!
//! raft-rs trusts its peers: a message that no correct member sends can make it panic (a
//! heartbeat whose commit index is beyond the receiver's log: `to_commit ... is out of range`)
//! or act on what only the local node may decide (a campaign). A panic on the consensus core
//! ends the member. So every message stepped from the network passes these checks first; a
//! message that fails is dropped (counted and logged, never stepped): the member goes on and
//! its log and data are unchanged.
//!
//! The checks hold for every message a correct member sends, so they never drop one:
//! - the sender is another member, never one removed from the cluster, and one of this
//!   member's configuration unless this member knows no leader or follows that very sender:
//!   a member added after the last change this member applied is not known here yet and may
//!   already lead, and a member behind that refused it could never catch up (the simulator
//!   found exactly that; etcd's transport likewise takes messages from members it does not
//!   know yet). While this member leads or follows another leader, a sender it does not know
//!   cannot move its term;
//! - the type is one peers exchange (not the local-only `MsgHup`, `MsgBeat`, `MsgUnreachable`,
//!   `MsgSnapStatus`, `MsgCheckQuorum`);
//! - a heartbeat commits no further than the receiver's log goes (a leader sends
//!   min(the follower's match, its commit));
//! - an append's entries follow its index one by one, with terms that never decrease, start at
//!   or after the term it names, and stay at or below the message's term;
//! - an accepting append response acknowledges no index beyond the leader's own log (the
//!   leader would count a quorum for entries it does not have);
//! - a snapshot's metadata is at or above its own configuration's reach (its index and term
//!   are not zero).

use raft::eraftpb::{Message, MessageType};

/// What the receiving member's Raft state says about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receiver {
    /// This member's ID.
    pub id: u64,
    /// The last index of its log.
    pub last_index: u64,
    /// The leader it knows (itself when it leads; `raft::INVALID_ID`: none).
    pub leader: u64,
}

/// What the receiving member's registry says about a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// In its current configuration.
    Configured,
    /// Not known here (perhaps added after the last change this member applied).
    Unknown,
    /// Removed from the cluster.
    Removed,
}

/// Why a message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("from {0:x}, which is this member or no member at all")]
    NotAPeer(u64),
    #[error("from {0:x}, which is not a member this member knows, while it has a leader")]
    Unknown(u64),
    #[error("from {0:x}, which was removed from the cluster")]
    Removed(u64),
    #[error("a {0:?}, which only the member itself may make")]
    LocalOnly(MessageType),
    #[error("a heartbeat committing {commit}, beyond this member's last index {last_index}")]
    CommitBeyondLog { commit: u64, last_index: u64 },
    #[error("an append whose entry {position} has index {index}, where {expected} follows")]
    EntriesNotContiguous {
        position: usize,
        index: u64,
        expected: u64,
    },
    #[error("an append whose entry at index {index} has term {term} against {bound}")]
    EntryTermOutOfOrder { index: u64, term: u64, bound: u64 },
    #[error("an append response acknowledging index {index}, beyond this member's last index {last_index}")]
    AcknowledgedBeyondLog { index: u64, last_index: u64 },
    #[error("a snapshot without an index or term")]
    EmptySnapshot,
}

/// Whether `message`, received from the network, may be stepped; `sender` says what this
/// member's registry knows of an ID.
pub fn check(
    message: &Message,
    receiver: Receiver,
    sender: impl Fn(u64) -> Sender,
) -> Result<(), Rejected> {
    if message.from == receiver.id || message.from == raft::INVALID_ID {
        return Err(Rejected::NotAPeer(message.from));
    }
    match sender(message.from) {
        Sender::Configured => {}
        Sender::Unknown
            if receiver.leader == raft::INVALID_ID || receiver.leader == message.from => {}
        Sender::Unknown => return Err(Rejected::Unknown(message.from)),
        Sender::Removed => return Err(Rejected::Removed(message.from)),
    }
    let kind = message.get_msg_type();
    match kind {
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum => Err(Rejected::LocalOnly(kind)),
        MessageType::MsgHeartbeat if message.commit > receiver.last_index => {
            Err(Rejected::CommitBeyondLog {
                commit: message.commit,
                last_index: receiver.last_index,
            })
        }
        MessageType::MsgAppend => check_entries(message),
        MessageType::MsgAppendResponse
            if !message.reject && message.index > receiver.last_index =>
        {
            Err(Rejected::AcknowledgedBeyondLog {
                index: message.index,
                last_index: receiver.last_index,
            })
        }
        MessageType::MsgSnapshot => {
            let metadata = message.get_snapshot().get_metadata();
            if metadata.index == 0 || metadata.term == 0 {
                Err(Rejected::EmptySnapshot)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// An append's entries: one index after another from the message's, terms never decreasing
/// from the term it names up to the message's own.
fn check_entries(message: &Message) -> Result<(), Rejected> {
    let mut term_floor = message.log_term;
    for (position, entry) in message.entries.iter().enumerate() {
        let expected = message
            .index
            .saturating_add(1)
            .saturating_add(position as u64);
        if entry.index != expected {
            return Err(Rejected::EntriesNotContiguous {
                position,
                index: entry.index,
                expected,
            });
        }
        if entry.term < term_floor {
            return Err(Rejected::EntryTermOutOfOrder {
                index: entry.index,
                term: entry.term,
                bound: term_floor,
            });
        }
        if entry.term > message.term {
            return Err(Rejected::EntryTermOutOfOrder {
                index: entry.index,
                term: entry.term,
                bound: message.term,
            });
        }
        term_floor = entry.term;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    const RECEIVER: Receiver = Receiver {
        id: 2,
        last_index: 5,
        leader: 1,
    };

    /// Member 9 was removed; 1 to 3 are in the configuration; others are not known here.
    fn removed(id: u64) -> Sender {
        match id {
            9 => Sender::Removed,
            1..=3 => Sender::Configured,
            _ => Sender::Unknown,
        }
    }

    fn message(kind: MessageType, from: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.from = from;
        message.to = RECEIVER.id;
        message.term = 3;
        message
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn a_forged_heartbeat_committing_past_the_log_is_dropped() {
        let mut heartbeat = message(MessageType::MsgHeartbeat, 1);
        heartbeat.commit = 1_000_000_000;
        assert_eq!(
            check(&heartbeat, RECEIVER, removed),
            Err(Rejected::CommitBeyondLog {
                commit: 1_000_000_000,
                last_index: 5
            })
        );
        heartbeat.commit = 5;
        assert_eq!(check(&heartbeat, RECEIVER, removed), Ok(()));
    }

    #[test]
    fn removed_members_itself_and_local_only_messages_are_dropped() {
        let heartbeat = message(MessageType::MsgHeartbeat, 9);
        assert_eq!(
            check(&heartbeat, RECEIVER, removed),
            Err(Rejected::Removed(9))
        );
        let own = message(MessageType::MsgHeartbeat, 2);
        assert_eq!(check(&own, RECEIVER, removed), Err(Rejected::NotAPeer(2)));
        let nobody = message(MessageType::MsgHeartbeat, 0);
        assert_eq!(
            check(&nobody, RECEIVER, removed),
            Err(Rejected::NotAPeer(0))
        );
        // A member not known here is heard only while this one knows no leader: one added
        // after the last change this member applied may lead already.
        let newcomer = message(MessageType::MsgHeartbeat, 7);
        assert_eq!(
            check(&newcomer, RECEIVER, removed),
            Err(Rejected::Unknown(7))
        );
        let leaderless = Receiver {
            leader: raft::INVALID_ID,
            ..RECEIVER
        };
        assert_eq!(check(&newcomer, leaderless, removed), Ok(()));
        let following_it = Receiver {
            leader: 7,
            ..RECEIVER
        };
        assert_eq!(check(&newcomer, following_it, removed), Ok(()));
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert_eq!(
                check(&message(kind, 1), RECEIVER, removed),
                Err(Rejected::LocalOnly(kind))
            );
        }
        for kind in [
            MessageType::MsgRequestVote,
            MessageType::MsgRequestPreVote,
            MessageType::MsgPropose,
            MessageType::MsgReadIndex,
            MessageType::MsgTransferLeader,
            MessageType::MsgTimeoutNow,
            MessageType::MsgHeartbeatResponse,
        ] {
            assert_eq!(
                check(&message(kind, 1), RECEIVER, removed),
                Ok(()),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn appends_must_hold_their_entries_in_order() {
        let mut append = message(MessageType::MsgAppend, 1);
        append.index = 5;
        append.log_term = 2;
        append.entries = vec![entry(6, 2), entry(7, 3)].into();
        assert_eq!(check(&append, RECEIVER, removed), Ok(()));
        append.entries = vec![entry(6, 2), entry(8, 3)].into();
        assert!(matches!(
            check(&append, RECEIVER, removed),
            Err(Rejected::EntriesNotContiguous { position: 1, .. })
        ));
        append.entries = vec![entry(6, 3), entry(7, 2)].into();
        assert!(matches!(
            check(&append, RECEIVER, removed),
            Err(Rejected::EntryTermOutOfOrder { index: 7, .. })
        ));
        append.entries = vec![entry(6, 1)].into();
        assert!(matches!(
            check(&append, RECEIVER, removed),
            Err(Rejected::EntryTermOutOfOrder { index: 6, .. })
        ));
        append.entries = vec![entry(6, 4)].into();
        assert!(matches!(
            check(&append, RECEIVER, removed),
            Err(Rejected::EntryTermOutOfOrder { bound: 3, .. })
        ));
        append.index = u64::MAX;
        append.entries = vec![entry(0, 3)].into();
        assert!(check(&append, RECEIVER, removed).is_err(), "no overflow");
    }

    #[test]
    fn responses_and_snapshots_are_bounded_by_what_exists() {
        let mut response = message(MessageType::MsgAppendResponse, 3);
        response.index = 6;
        assert!(matches!(
            check(&response, RECEIVER, removed),
            Err(Rejected::AcknowledgedBeyondLog { index: 6, .. })
        ));
        response.reject = true;
        assert_eq!(check(&response, RECEIVER, removed), Ok(()));
        response.reject = false;
        response.index = 5;
        assert_eq!(check(&response, RECEIVER, removed), Ok(()));
        let snapshot = message(MessageType::MsgSnapshot, 1);
        assert_eq!(
            check(&snapshot, RECEIVER, removed),
            Err(Rejected::EmptySnapshot)
        );
    }
}
