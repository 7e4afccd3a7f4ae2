//! Membership as the replica applies it: the registry's verdict first (the same on every
//! member), then Raft's configuration; checks of a change or a leadership transfer before it is
//! proposed; Raft's description of a snapshot's configuration (voters and learners).

use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, SnapshotMetadata};

use super::Replica;
use crate::api::error::ServerError;
use crate::ids::MemberId;
use crate::members::{decode_change, MemberChange, MemberError, Members};
use crate::replica::entry::{decode_proposal, ProposalId};
use crate::replica::membership::{self, MemberEffect, Progress};
use crate::wal::io::LogDir;

/// An applied membership change, for the shell.
#[derive(Debug)]
pub struct MemberApplied {
    /// The proposal it came from, if it is one of lode's.
    pub proposal: Option<ProposalId>,
    /// The registry's verdict (the same on every member).
    pub result: Result<(), MemberError>,
    /// What the shell must do.
    pub effect: MemberEffect,
}

impl<D: LogDir> Replica<D> {
    /// Applies a membership change entry: the registry first (which may refuse it, the same
    /// way on every member), then Raft's configuration. Answers the proposal it came from
    /// (if it is one of lode's), the registry's verdict, and what the shell must do.
    pub fn apply_member_change(
        &mut self,
        conf_change: ConfChange,
    ) -> Result<MemberApplied, ServerError> {
        let context = bytes::Bytes::from(conf_change.context.to_vec());
        let decoded = decode_proposal(&context).and_then(|proposal| {
            decode_change(&proposal.frame).map(|change| (proposal.id, change))
        });
        let Some((id, change)) = decoded else {
            // Not one of lode's (none are made elsewhere): Raft's configuration only.
            self.apply_conf_change(Err(conf_change))?;
            return Ok(MemberApplied {
                proposal: None,
                result: Ok(()),
                effect: MemberEffect::None,
            });
        };
        let result = self.members.apply(&change);
        if result.is_err() {
            tracing::info!(?change, ?result, "membership change refused when applied");
            return Ok(MemberApplied {
                proposal: Some(id),
                result,
                effect: MemberEffect::None,
            });
        }
        // A leader applying its own removal keeps its own Raft configuration as it is for the
        // few heartbeats before it stops: raft-rs expects a leader to track its own progress
        // (it panics persisting entries otherwise). The others apply the removal; what this
        // leader commits meanwhile stays safe: configurations one change apart have
        // overlapping majorities, so an entry on a majority of the old one is on some member
        // of every majority of the new one, and Raft's vote rule keeps it.
        let removing_self_as_leader =
            change == MemberChange::Remove(self.config.member_id) && self.is_leader();
        if change.raft_change().is_some() && !removing_self_as_leader {
            self.apply_conf_change(Err(conf_change))?;
        }
        tracing::info!(?change, "membership changed");
        Ok(MemberApplied {
            proposal: Some(id),
            result: Ok(()),
            effect: membership::effect_of(self.config.member_id, &change),
        })
    }

    /// Applies a configuration change to raft-rs alone (v2, or v1 not made by lode).
    pub fn apply_conf_change(
        &mut self,
        change: Result<ConfChangeV2, ConfChange>,
    ) -> Result<(), ServerError> {
        let conf_state = match change {
            Ok(v2) => self.raw.apply_conf_change(&v2),
            Err(v1) => self.raw.apply_conf_change(&v1),
        }
        .map_err(|e| ServerError::Internal(format!("conf change: {e}")))?;
        self.raw.store().set_conf_state(conf_state);
        self.after_input();
        Ok(())
    }

    /// Checks a membership change against the registry and, on the leader, against the
    /// cluster's health and a learner's progress.
    pub fn check_change(&self, change: &MemberChange) -> Result<(), ServerError> {
        self.members.check(change)?;
        if !self.is_leader() {
            return match change {
                MemberChange::Promote(_) => Err(MemberError::NotLeader.into()),
                _ => Ok(()),
            };
        }
        let progress = self.raw.raft.prs();
        membership::check_on_leader(
            self.config.member_id,
            &self.voters(),
            |id| {
                progress.get(id.get()).map(|p| Progress {
                    matched: p.matched,
                    recent_active: p.recent_active,
                })
            },
            change,
        )?;
        Ok(())
    }

    /// Checks a leadership transfer to `target`: `Ok(true)` when it is this member already.
    pub fn check_transfer(&self, target: MemberId) -> Result<bool, ServerError> {
        if !self.is_leader() {
            return Err(MemberError::NotLeader.into());
        }
        if !self.voters().contains(&target) {
            return Err(MemberError::BadLeaderTransferee.into());
        }
        Ok(target == self.config.member_id)
    }
}

/// Raft's description of a snapshot lode took or installed.
pub fn snapshot_metadata(meta: &crate::snapshot::SnapshotMeta) -> SnapshotMetadata {
    match &meta.members {
        Some(members) => raft_snapshot_metadata(meta.applied_index, meta.applied_term, members),
        // Snapshots before format 3 hold voters only (and no learners could be in them).
        None => raft_metadata(
            meta.applied_index,
            meta.applied_term,
            meta.voters.clone(),
            Vec::new(),
        ),
    }
}

/// Raft's description of a snapshot at `index` of `term` whose registry is `members`: its
/// voters and its learners (a member installing it must keep replicating to the learners
/// should it lead).
pub fn raft_snapshot_metadata(index: u64, term: u64, members: &Members) -> SnapshotMetadata {
    let (voters, learners) = members.voters_and_learners();
    let raw = |ids: Vec<MemberId>| ids.into_iter().map(MemberId::get).collect();
    raft_metadata(index, term, raw(voters), raw(learners))
}

fn raft_metadata(index: u64, term: u64, voters: Vec<u64>, learners: Vec<u64>) -> SnapshotMetadata {
    SnapshotMetadata {
        conf_state: Some(ConfState {
            voters,
            learners,
            ..Default::default()
        })
        .into(),
        index,
        term,
        ..Default::default()
    }
}
