//! Membership changes, as the replica decides them.
//!
//! ```text
//!  MemberAdd/Remove/Update/Promote ─▶ registry.check (every member)
//!        ─▶ on_leader: enough started voters after it? learner caught up (≥ 90%)?
//!        ─▶ proposed as a ConfChange (URL updates and publications too: one order,
//!           one at a time; the leader holds a second until the first applies)
//!  applied ─▶ registry.apply (may refuse, the same way everywhere)
//!        ─▶ raft-rs's configuration (unless a leader is removing itself: it keeps its own
//!           progress for the few heartbeats before it stops)
//!        ─▶ effects for the shell: connect to / forget a peer, stop when removed
//! ```

use crate::ids::MemberId;
use crate::members::{MemberChange, MemberError};

/// What the leader knows of one member's replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Highest log index known on it.
    pub matched: u64,
    /// Heard from within the last election timeout.
    pub recent_active: bool,
}

/// The checks only the leader can make: a learner is promoted only once it has caught up (its
/// log within 90% of the leader's, etcd's threshold), and a voter is added or removed only if
/// enough voters are active to keep a quorum afterwards. `progress` is the leader's view of
/// each member (`None` when it tracks none); `own` is the leader itself; `voters` the current
/// voters.
pub fn check_on_leader(
    own: MemberId,
    voters: &[MemberId],
    progress: impl Fn(MemberId) -> Option<Progress>,
    change: &MemberChange,
) -> Result<(), MemberError> {
    let leader_matched = progress(own).map_or(0, |p| p.matched);
    let active = |id: &MemberId| *id == own || progress(*id).is_some_and(|p| p.recent_active);
    match change {
        MemberChange::Promote(id) => {
            let matched = progress(*id).map_or(0, |p| p.matched);
            if (matched as f64) < leader_matched as f64 * 0.9 {
                return Err(MemberError::LearnerNotReady);
            }
        }
        MemberChange::Add(member) if !member.is_learner => {
            let after = voters.len() + 1;
            let started = voters.iter().filter(|id| active(id)).count();
            // etcd's exception: a one-member cluster may add its second voter (the usual way
            // to grow a cluster restored from a snapshot), though the pair has no quorum until
            // the new member starts.
            let growing_from_one = voters.len() == 1 && started == 1;
            if started < after / 2 + 1 && !growing_from_one {
                return Err(MemberError::NotEnoughStarted);
            }
        }
        MemberChange::Remove(id) if voters.contains(id) => {
            let remaining: Vec<&MemberId> = voters.iter().filter(|v| *v != id).collect();
            let active_after = remaining.iter().filter(|v| active(v)).count();
            if !remaining.is_empty() && active_after < remaining.len() / 2 + 1 {
                return Err(MemberError::NotEnoughStarted);
            }
        }
        _ => {}
    }
    Ok(())
}

/// What an applied membership change asks of the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEffect {
    /// Nothing beyond the registry.
    None,
    /// This member was removed: it stops once the removal has reached the others.
    RemovedSelf,
    /// Forget this peer and refuse it from now on.
    Forget(MemberId),
    /// Dial this peer (added, or its URLs changed).
    Connect(MemberId),
}

/// The effect of an applied `change` on member `own`.
pub fn effect_of(own: MemberId, change: &MemberChange) -> MemberEffect {
    match change {
        MemberChange::Remove(id) if *id == own => MemberEffect::RemovedSelf,
        MemberChange::Remove(id) => MemberEffect::Forget(*id),
        MemberChange::Add(member) if member.id != own => MemberEffect::Connect(member.id),
        MemberChange::Update { id, .. } if *id != own => MemberEffect::Connect(*id),
        _ => MemberEffect::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::Member;

    fn id(id: u64) -> MemberId {
        MemberId::new(id)
    }

    /// `check_on_leader` over plain numbers.
    fn check(
        own: u64,
        voters: &[u64],
        progress: impl Fn(u64) -> Option<Progress>,
        change: &MemberChange,
    ) -> Result<(), MemberError> {
        let voters: Vec<MemberId> = voters.iter().copied().map(id).collect();
        check_on_leader(id(own), &voters, |m| progress(m.get()), change)
    }

    fn member(id_: u64, is_learner: bool) -> Member {
        Member {
            id: id(id_),
            name: String::new(),
            peer_urls: vec![format!("http://127.0.0.1:{id_}")],
            client_urls: Vec::new(),
            is_learner,
        }
    }

    #[test]
    fn a_voter_is_added_only_with_a_quorum_started_after_it() {
        let active = |ids: &'static [u64]| {
            move |id: u64| {
                Some(Progress {
                    matched: 10,
                    recent_active: ids.contains(&id),
                })
            }
        };
        let add = MemberChange::Add(member(4, false));
        assert!(check(1, &[1, 2, 3], active(&[1, 2, 3]), &add).is_ok());
        assert_eq!(
            check(1, &[1, 2, 3], active(&[1]), &add),
            Err(MemberError::NotEnoughStarted)
        );
        // A learner needs no quorum; growing from one is etcd's exception.
        assert!(check(
            1,
            &[1, 2, 3],
            active(&[1]),
            &MemberChange::Add(member(4, true))
        )
        .is_ok());
        assert!(check(1, &[1], active(&[1]), &add).is_ok());
        assert_eq!(
            check(1, &[1, 2, 3], active(&[1]), &MemberChange::Remove(id(2))),
            Err(MemberError::NotEnoughStarted)
        );
        assert!(check(1, &[1, 2, 3], active(&[1, 3]), &MemberChange::Remove(id(2))).is_ok());
    }

    #[test]
    fn a_learner_is_promoted_once_within_ninety_percent() {
        let progress = |behind: u64| {
            move |id: u64| {
                Some(Progress {
                    matched: if id == 1 { 100 } else { 100 - behind },
                    recent_active: true,
                })
            }
        };
        let promote = MemberChange::Promote(id(2));
        assert!(check(1, &[1], progress(10), &promote).is_ok());
        assert_eq!(
            check(1, &[1], progress(11), &promote),
            Err(MemberError::LearnerNotReady)
        );
    }

    #[test]
    fn effects_name_the_peer_and_never_this_member() {
        assert_eq!(
            effect_of(id(1), &MemberChange::Remove(id(1))),
            MemberEffect::RemovedSelf
        );
        assert_eq!(
            effect_of(id(1), &MemberChange::Remove(id(2))),
            MemberEffect::Forget(id(2))
        );
        assert_eq!(
            effect_of(id(1), &MemberChange::Add(member(2, true))),
            MemberEffect::Connect(id(2))
        );
        assert_eq!(
            effect_of(id(1), &MemberChange::Add(member(1, true))),
            MemberEffect::None
        );
    }
}
