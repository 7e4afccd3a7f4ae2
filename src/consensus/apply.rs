//! Applying committed entries: KV writes, alarms and auth changes through the sequencer,
//! membership changes through the replica, and answering the proposals made here.

use std::time::Instant;

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};

use super::driver::{Applied, Consensus, Decided};
use crate::alarm::AlarmResponse;
use crate::api::error::ServerError;
use crate::api::native::{self, Request};
use crate::ids::{LogIndex, MemberId};
use crate::members::Member;
use crate::mvcc::request::ResponseHeader;
use crate::replica::entry::{decode_proposal, ProposalId};
use crate::replica::membership::MemberEffect;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// Applies committed entries raft-rs reported at `committed_at`.
    pub(super) async fn apply_entries(
        &self,
        entries: Vec<Entry>,
        committed_at: Instant,
    ) -> Result<(), ServerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let batch_started = Instant::now();
        for entry in entries {
            let started = Instant::now();
            match entry.entry_type {
                EntryType::EntryNormal => self.apply_proposal(&entry, committed_at).await,
                EntryType::EntryConfChange => {
                    let change: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.apply_member_change(change, committed_at)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let change: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.replica.borrow_mut().apply_conf_change(Ok(change))?;
                }
            }
            let mut replica = self.replica.borrow_mut();
            replica.applied_entry(LogIndex::new(entry.index), entry.data.len() as u64);
            replica.stages().entry_applied(started.elapsed());
        }
        self.sequencer.publish(self.term()).await?;
        let mut replica = self.replica.borrow_mut();
        replica.stages().applied(committed_at.elapsed());
        replica.stages().batch_applied(batch_started.elapsed());
        drop(replica);
        crate::shard::release_waiters(&self.applied_waiters, self.applied_index());
        Ok(())
    }

    /// True when `id` names a proposal this run of this member made (its waiter is here).
    fn proposed_here(&self, id: &ProposalId) -> bool {
        MemberId::new(id.proposer) == self.config.member_id && id.nonce == self.nonce
    }

    /// Answers the proposal filed under `sequence`, if its caller still waits.
    fn answer(&self, sequence: u64, answer: Result<Applied, ServerError>, committed_at: Instant) {
        if let Some(waiter) = self.waiters.borrow_mut().writes.remove(&sequence) {
            let decided = Decided {
                committed_at,
                applied_at: Instant::now(),
            };
            let _ = waiter.send((answer, decided));
        }
    }

    /// Applies a membership change entry (the replica decides) and does what it means for
    /// this member: the transport follows the registry.
    fn apply_member_change(
        &self,
        conf_change: ConfChange,
        committed_at: Instant,
    ) -> Result<(), ServerError> {
        let applied = self.replica.borrow_mut().apply_member_change(conf_change)?;
        // A learner promoted serves everything from now on.
        self.publish_role();
        match applied.effect {
            MemberEffect::None => {
                // Perhaps this member's own URLs changed: its hellos name them from now on.
                let own = self.member(self.config.member_id);
                if let (Some(transport), Some(own)) = (&self.transport, own) {
                    transport.set_own_urls(own.peer_urls.clone());
                }
            }
            MemberEffect::RemovedSelf => {
                tracing::warn!(
                    "this member was removed from the cluster: it stops (its data dir cannot \
                     rejoin; add a new member with a fresh one)"
                );
                self.removed.set(Some(Instant::now()));
            }
            MemberEffect::Forget(peer) => {
                if let Some(transport) = &self.transport {
                    transport.remove_peer(peer.get());
                    transport.refuse_removed(peer.get());
                }
            }
            MemberEffect::Connect(peer) => {
                let member = self.member(peer);
                if let (Some(transport), Some(member)) = (&self.transport, member) {
                    connect_peer(transport, &member);
                }
            }
        }
        if let Some(id) = applied.proposal.filter(|id| self.proposed_here(id)) {
            let answer = applied
                .result
                .map(|()| Applied::Members(self.replica.borrow().members().list()))
                .map_err(ServerError::from);
            self.answer(id.sequence, answer, committed_at);
        }
        Ok(())
    }

    /// Points the transport at every other member of the registry, and away from removed ones.
    pub(crate) fn connect_peers(&self) {
        let Some(transport) = &self.transport else {
            return;
        };
        let members = self.replica.borrow().members().clone();
        for member in members.list() {
            if member.id == self.config.member_id {
                transport.set_own_urls(member.peer_urls.clone());
            } else {
                connect_peer(transport, &member);
            }
        }
        for id in members.removed() {
            transport.remove_peer(id.get());
            transport.refuse_removed(id.get());
        }
    }

    async fn apply_proposal(&self, entry: &Entry, committed_at: Instant) {
        if entry.data.is_empty() {
            return; // a new leader's empty entry
        }
        let Some(proposal) = decode_proposal(&entry.data) else {
            tracing::error!(index = entry.index, "entry data is not a proposal; skipped");
            return;
        };
        let id = proposal.id;
        let decoded = native::decode_request(&proposal.frame);
        let result = match (decoded, self.sequencer.admits(proposal.auth_revision)) {
            (Ok(_), Err(refused)) => Err(ServerError::from(refused)),
            (Ok((_, Request::Write(request))), Ok(())) => {
                self.sequencer.apply(&request).await.map(Applied::Write)
            }
            (Ok((_, Request::Auth(request))), Ok(())) => {
                let applied = if request.kind == crate::auth::request::AuthKind::Authenticate {
                    self.sequencer.apply_authenticate(
                        &request.name,
                        &request.token_prefix,
                        entry.index,
                    )
                } else {
                    self.sequencer.apply_auth(&request)
                };
                applied.map(|mut response| {
                    response.header = ResponseHeader::at(self.revision().get());
                    Applied::Auth(response)
                })
            }
            (Ok((_, Request::Alarm(request))), Ok(())) => {
                let alarms = self.alarms.borrow_mut().apply(&request);
                Ok(Applied::Alarm(AlarmResponse {
                    header: ResponseHeader::at(self.revision().get()),
                    alarms,
                }))
            }
            (Ok(_), Ok(())) | (Err(_), _) => {
                tracing::error!(index = entry.index, "entry holds no write request; skipped");
                Err(ServerError::Internal("malformed log entry".into()))
            }
        };
        if self.proposed_here(&id) {
            self.answer(id.sequence, result, committed_at);
        }
    }
}

/// Points the transport at `member`'s first peer URL.
pub(super) fn connect_peer(
    transport: &std::rc::Rc<crate::peer::transport::PeerTransport>,
    member: &Member,
) {
    let address = member
        .peer_urls
        .first()
        .ok_or_else(|| "no peer URL".to_string())
        .and_then(|url| crate::peer::transport::PeerAddress::from_url(url));
    match address {
        Ok(address) => transport.set_peer(member.id.get(), address),
        Err(error) => {
            tracing::error!(member = %format!("{:x}", member.id), %error, "cannot reach a member")
        }
    }
}
