//! The cluster's member registry: who the members are (ID, name, peer and client URLs,
//! learner or voter), changed only by applying membership changes from the log. Pure.
//!
//! Invariants:
//! - every member agrees on the registry at every applied index: a change is checked against
//!   the registry when it is applied (`Members::apply`), so a change that was valid when
//!   proposed but conflicts with one applied before it is refused the same way everywhere;
//! - no two members share a peer URL; at most `MAX_LEARNERS` learners (etcd's
//!   `--max-learners` default);
//! - a removed member's ID is never reused (its messages are refused by the transport);
//! - membership changes go through Raft one at a time (raft-rs's simple configuration changes,
//!   as etcd makes them): a voter or learner added, a learner promoted, a member removed. URL
//!   changes and a member publishing its name and client URLs ride the same path but change only
//!   this registry, not Raft's configuration.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut};
use raft::eraftpb::ConfChangeType;

use crate::ids::MemberId;

/// At most this many learners at once (etcd's `--max-learners` default).
pub const MAX_LEARNERS: usize = 1;

/// A member of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Its ID (also its Raft ID).
    pub id: MemberId,
    /// Its name; empty until it has started and published it.
    pub name: String,
    /// Where its peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it has started and published them.
    pub client_urls: Vec<String>,
    /// True for a learner (replicated to, not voting).
    pub is_learner: bool,
}

/// One change of the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// A new voter or learner (etcd's MemberAdd).
    Add(Member),
    /// A member leaves (etcd's MemberRemove).
    Remove(MemberId),
    /// A learner becomes a voter (etcd's MemberPromote).
    Promote(MemberId),
    /// A member's peer URLs change (etcd's MemberUpdate).
    Update {
        /// The member.
        id: MemberId,
        /// Its new peer URLs.
        peer_urls: Vec<String>,
    },
    /// A started member tells its name and client URLs (etcd publishes these through Raft
    /// too).
    Publish {
        /// The member.
        id: MemberId,
        /// Its name.
        name: String,
        /// Its client URLs.
        client_urls: Vec<String>,
    },
}

impl MemberChange {
    /// The Raft configuration change this makes, if any (with raft-rs's node ID).
    pub fn raft_change(&self) -> Option<(ConfChangeType, u64)> {
        let (kind, id) = match self {
            MemberChange::Add(member) if member.is_learner => {
                (ConfChangeType::AddLearnerNode, member.id)
            }
            MemberChange::Add(member) => (ConfChangeType::AddNode, member.id),
            MemberChange::Remove(id) => (ConfChangeType::RemoveNode, *id),
            MemberChange::Promote(id) => (ConfChangeType::AddNode, *id),
            MemberChange::Update { .. } | MemberChange::Publish { .. } => return None,
        };
        Some((kind, id.get()))
    }

    /// The member the change is about.
    pub fn member_id(&self) -> MemberId {
        match self {
            MemberChange::Add(member) => member.id,
            MemberChange::Remove(id) | MemberChange::Promote(id) => *id,
            MemberChange::Update { id, .. } | MemberChange::Publish { id, .. } => *id,
        }
    }
}

/// Why a membership request was refused. `Display` is etcd's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// The ID is taken (or was removed).
    #[error("etcdserver: member ID already exist")]
    IdExists,
    /// Another member has one of the peer URLs.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// No such member.
    #[error("etcdserver: member not found")]
    NotFound,
    /// Promoting a voter.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// Promoting a learner still behind the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Adding a learner beyond `MAX_LEARNERS`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// URLs that do not parse.
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
    /// Removing the member would leave fewer started voters than a quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    /// A learner asked for something only voters serve (etcd's ErrGRPCNotSupportedForLearner:
    /// code Unavailable in etcd 3.4 and 3.5, whose API lode serves, so clients try another
    /// endpoint; etcd 3.6 answers FailedPrecondition).
    #[error("etcdserver: rpc not supported for learner")]
    LearnerNotSupported,
    /// Leadership cannot go to that member.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Only the leader serves this.
    #[error("etcdserver: not leader")]
    NotLeader,
}

impl MemberError {
    /// The gRPC status code etcd answers with.
    pub fn grpc_code(&self) -> u32 {
        const NOT_FOUND: u32 = 5;
        const FAILED_PRECONDITION: u32 = 9;
        const INVALID_ARGUMENT: u32 = 3;
        const UNAVAILABLE: u32 = 14;
        match self {
            MemberError::NotFound => NOT_FOUND,
            MemberError::BadUrls => INVALID_ARGUMENT,
            MemberError::LearnerNotSupported => UNAVAILABLE,
            _ => FAILED_PRECONDITION,
        }
    }
}

/// The registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    members: BTreeMap<MemberId, Member>,
    removed: BTreeSet<MemberId>,
}

impl Members {
    /// A registry of `members`, with `removed` IDs never to come back.
    pub fn new(members: impl IntoIterator<Item = Member>, removed: BTreeSet<MemberId>) -> Members {
        Members {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed,
        }
    }

    /// Every member, ascending by ID.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// IDs removed from the cluster.
    pub fn removed(&self) -> &BTreeSet<MemberId> {
        &self.removed
    }

    /// The member with `id`.
    pub fn get(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// True when `id` was removed.
    pub fn is_removed(&self, id: MemberId) -> bool {
        self.removed.contains(&id)
    }

    /// Voters' IDs and learners' IDs, ascending.
    pub fn voters_and_learners(&self) -> (Vec<MemberId>, Vec<MemberId>) {
        let (learners, voters): (Vec<&Member>, Vec<&Member>) =
            self.members.values().partition(|m| m.is_learner);
        (
            voters.iter().map(|m| m.id).collect(),
            learners.iter().map(|m| m.id).collect(),
        )
    }

    fn url_taken(&self, urls: &[String], except: MemberId) -> bool {
        self.members
            .values()
            .filter(|m| m.id != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }

    /// Whether `change` can be applied now.
    pub fn check(&self, change: &MemberChange) -> Result<(), MemberError> {
        match change {
            MemberChange::Add(member) => {
                if member.id.is_none()
                    || self.members.contains_key(&member.id)
                    || self.removed.contains(&member.id)
                {
                    return Err(MemberError::IdExists);
                }
                if member.peer_urls.is_empty() {
                    return Err(MemberError::BadUrls);
                }
                if self.url_taken(&member.peer_urls, member.id) {
                    return Err(MemberError::PeerUrlExists);
                }
                let learners = self.members.values().filter(|m| m.is_learner).count();
                if member.is_learner && learners >= MAX_LEARNERS {
                    return Err(MemberError::TooManyLearners);
                }
                Ok(())
            }
            MemberChange::Remove(id) => self.get(*id).map(|_| ()).ok_or(MemberError::NotFound),
            MemberChange::Promote(id) => match self.get(*id) {
                None => Err(MemberError::NotFound),
                Some(member) if !member.is_learner => Err(MemberError::NotLearner),
                Some(_) => Ok(()),
            },
            MemberChange::Update { id, peer_urls } => {
                if self.get(*id).is_none() {
                    return Err(MemberError::NotFound);
                }
                if peer_urls.is_empty() {
                    return Err(MemberError::BadUrls);
                }
                if self.url_taken(peer_urls, *id) {
                    return Err(MemberError::PeerUrlExists);
                }
                Ok(())
            }
            MemberChange::Publish { id, .. } => {
                self.get(*id).map(|_| ()).ok_or(MemberError::NotFound)
            }
        }
    }

    /// Applies `change` if `check` allows it.
    pub fn apply(&mut self, change: &MemberChange) -> Result<(), MemberError> {
        self.check(change)?;
        match change {
            MemberChange::Add(member) => {
                self.members.insert(member.id, member.clone());
            }
            MemberChange::Remove(id) => {
                self.members.remove(id);
                self.removed.insert(*id);
            }
            MemberChange::Promote(id) => {
                if let Some(member) = self.members.get_mut(id) {
                    member.is_learner = false;
                }
            }
            MemberChange::Update { id, peer_urls } => {
                if let Some(member) = self.members.get_mut(id) {
                    member.peer_urls = peer_urls.clone();
                }
            }
            MemberChange::Publish {
                id,
                name,
                client_urls,
            } => {
                if let Some(member) = self.members.get_mut(id) {
                    member.name = name.clone();
                    member.client_urls = client_urls.clone();
                }
            }
        }
        Ok(())
    }

    /// The registry's bytes, for snapshots.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32_le(self.members.len() as u32);
        for member in self.members.values() {
            encode_member(member, out);
        }
        out.put_u32_le(self.removed.len() as u32);
        for id in &self.removed {
            out.put_u64_le(id.get());
        }
    }

    /// Reads what `encode` wrote; `None` if the bytes do not hold a registry.
    pub fn decode(mut bytes: &[u8]) -> Option<Members> {
        let count = take_u32(&mut bytes)?;
        let mut members = Vec::new();
        for _ in 0..count {
            members.push(decode_member(&mut bytes)?);
        }
        let removed_count = take_u32(&mut bytes)?;
        let mut removed = BTreeSet::new();
        for _ in 0..removed_count {
            removed.insert(take_id(&mut bytes)?);
        }
        bytes.is_empty().then(|| Members::new(members, removed))
    }
}

const KIND_ADD: u8 = 1;
const KIND_REMOVE: u8 = 2;
const KIND_PROMOTE: u8 = 3;
const KIND_UPDATE: u8 = 4;
const KIND_PUBLISH: u8 = 5;

/// A change's bytes (in a configuration change entry's context).
pub fn encode_change(change: &MemberChange, out: &mut Vec<u8>) {
    match change {
        MemberChange::Add(member) => {
            out.put_u8(KIND_ADD);
            encode_member(member, out);
        }
        MemberChange::Remove(id) => {
            out.put_u8(KIND_REMOVE);
            out.put_u64_le(id.get());
        }
        MemberChange::Promote(id) => {
            out.put_u8(KIND_PROMOTE);
            out.put_u64_le(id.get());
        }
        MemberChange::Update { id, peer_urls } => {
            out.put_u8(KIND_UPDATE);
            out.put_u64_le(id.get());
            put_strings(peer_urls, out);
        }
        MemberChange::Publish {
            id,
            name,
            client_urls,
        } => {
            out.put_u8(KIND_PUBLISH);
            out.put_u64_le(id.get());
            put_string(name, out);
            put_strings(client_urls, out);
        }
    }
}

/// Reads what `encode_change` wrote; `None` if the bytes do not hold a change.
pub fn decode_change(mut bytes: &[u8]) -> Option<MemberChange> {
    let kind = take_u8(&mut bytes)?;
    let change = match kind {
        KIND_ADD => MemberChange::Add(decode_member(&mut bytes)?),
        KIND_REMOVE => MemberChange::Remove(take_id(&mut bytes)?),
        KIND_PROMOTE => MemberChange::Promote(take_id(&mut bytes)?),
        KIND_UPDATE => MemberChange::Update {
            id: take_id(&mut bytes)?,
            peer_urls: take_strings(&mut bytes)?,
        },
        KIND_PUBLISH => MemberChange::Publish {
            id: take_id(&mut bytes)?,
            name: take_string(&mut bytes)?,
            client_urls: take_strings(&mut bytes)?,
        },
        _ => return None,
    };
    bytes.is_empty().then_some(change)
}

fn encode_member(member: &Member, out: &mut Vec<u8>) {
    out.put_u64_le(member.id.get());
    out.put_u8(u8::from(member.is_learner));
    put_string(&member.name, out);
    put_strings(&member.peer_urls, out);
    put_strings(&member.client_urls, out);
}

fn decode_member(bytes: &mut &[u8]) -> Option<Member> {
    Some(Member {
        id: take_id(bytes)?,
        is_learner: match take_u8(bytes)? {
            0 => false,
            1 => true,
            _ => return None,
        },
        name: take_string(bytes)?,
        peer_urls: take_strings(bytes)?,
        client_urls: take_strings(bytes)?,
    })
}

fn put_string(text: &str, out: &mut Vec<u8>) {
    out.put_u32_le(text.len() as u32);
    out.put_slice(text.as_bytes());
}

fn put_strings(texts: &[String], out: &mut Vec<u8>) {
    out.put_u32_le(texts.len() as u32);
    for text in texts {
        put_string(text, out);
    }
}

fn take_u8(bytes: &mut &[u8]) -> Option<u8> {
    (bytes.remaining() >= 1).then(|| bytes.get_u8())
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    (bytes.remaining() >= 4).then(|| bytes.get_u32_le())
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    (bytes.remaining() >= 8).then(|| bytes.get_u64_le())
}

fn take_id(bytes: &mut &[u8]) -> Option<MemberId> {
    take_u64(bytes).map(MemberId::new)
}

fn take_string(bytes: &mut &[u8]) -> Option<String> {
    let length = take_u32(bytes)? as usize;
    if bytes.remaining() < length {
        return None;
    }
    let text = std::str::from_utf8(&bytes[..length]).ok()?.to_string();
    bytes.advance(length);
    Some(text)
}

fn take_strings(bytes: &mut &[u8]) -> Option<Vec<String>> {
    let count = take_u32(bytes)?;
    // Each string takes at least its 4-byte length: a count beyond that is damage.
    if count as usize > bytes.remaining() / 4 {
        return None;
    }
    (0..count).map(|_| take_string(bytes)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(id: u64) -> MemberId {
        MemberId::new(id)
    }

    fn ids(ids: &[u64]) -> Vec<MemberId> {
        ids.iter().copied().map(MemberId::new).collect()
    }

    fn member(id: u64, url: &str, is_learner: bool) -> Member {
        Member {
            id: MemberId::new(id),
            name: format!("m{id}"),
            peer_urls: vec![url.to_string()],
            client_urls: vec![format!("http://127.0.0.1:{}", 2000 + id)],
            is_learner,
        }
    }

    fn three() -> Members {
        Members::new(
            [
                member(1, "http://a:2380", false),
                member(2, "http://b:2380", false),
                member(3, "http://c:2380", false),
            ],
            BTreeSet::new(),
        )
    }

    #[test]
    fn changes_are_checked_like_etcd() {
        let mut members = three();
        assert_eq!(
            members.apply(&MemberChange::Add(member(2, "http://d:2380", false))),
            Err(MemberError::IdExists)
        );
        assert_eq!(
            members.apply(&MemberChange::Add(member(4, "http://b:2380", false))),
            Err(MemberError::PeerUrlExists)
        );
        members
            .apply(&MemberChange::Add(member(4, "http://d:2380", true)))
            .unwrap();
        assert_eq!(
            members.apply(&MemberChange::Add(member(5, "http://e:2380", true))),
            Err(MemberError::TooManyLearners)
        );
        assert_eq!(
            members.apply(&MemberChange::Promote(id(1))),
            Err(MemberError::NotLearner)
        );
        assert_eq!(
            members.apply(&MemberChange::Promote(id(9))),
            Err(MemberError::NotFound)
        );
        members.apply(&MemberChange::Promote(id(4))).unwrap();
        assert_eq!(members.voters_and_learners(), (ids(&[1, 2, 3, 4]), vec![]));
        assert_eq!(
            members.apply(&MemberChange::Update {
                id: id(4),
                peer_urls: vec!["http://a:2380".into()]
            }),
            Err(MemberError::PeerUrlExists)
        );
        members
            .apply(&MemberChange::Update {
                id: id(4),
                peer_urls: vec!["http://d2:2380".into()],
            })
            .unwrap();
        members.apply(&MemberChange::Remove(id(3))).unwrap();
        assert_eq!(
            members.apply(&MemberChange::Remove(id(3))),
            Err(MemberError::NotFound)
        );
        // A removed ID never comes back.
        assert_eq!(
            members.apply(&MemberChange::Add(member(3, "http://c:2380", false))),
            Err(MemberError::IdExists)
        );
        assert_eq!(members.voters_and_learners(), (ids(&[1, 2, 4]), vec![]));
        assert_eq!(
            members.get(id(4)).unwrap().peer_urls,
            vec!["http://d2:2380"]
        );
    }

    #[test]
    fn registries_and_changes_round_trip_and_damage_is_refused() {
        let mut members = three();
        members.apply(&MemberChange::Remove(id(2))).unwrap();
        let mut bytes = Vec::new();
        members.encode(&mut bytes);
        assert_eq!(Members::decode(&bytes), Some(members));
        assert_eq!(Members::decode(&bytes[..bytes.len() - 1]), None);

        let changes = [
            MemberChange::Add(member(7, "http://g:2380", true)),
            MemberChange::Remove(id(7)),
            MemberChange::Promote(id(7)),
            MemberChange::Update {
                id: id(7),
                peer_urls: vec!["http://h:2380".into(), "http://i:2380".into()],
            },
            MemberChange::Publish {
                id: id(7),
                name: "seven".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            },
        ];
        for change in changes {
            let mut bytes = Vec::new();
            encode_change(&change, &mut bytes);
            assert_eq!(decode_change(&bytes), Some(change.clone()));
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_change(&bytes[..cut]),
                    None,
                    "{change:?} cut at {cut}"
                );
            }
        }
        assert_eq!(decode_change(&[9]), None);
    }
}
