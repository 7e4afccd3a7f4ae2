//! Applying committed entries: KV writes, alarms and auth changes through the sequencer,
//! membership changes through the replica, and answering the proposals made here.

use std::time::Instant;

use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};

use super::driver::{Applied, Consensus};
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
        for entry in entries {
            match entry.entry_type {
                EntryType::EntryNormal => self.apply_proposal(&entry).await,
                EntryType::EntryConfChange => {
                    let change: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.apply_member_change(change)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let change: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                        .map_err(|e| {
                            ServerError::Internal(format!("conf change {}: {e}", entry.index))
                        })?;
                    self.replica.borrow_mut().apply_conf_change(Ok(change))?;
                }
            }
            self.replica
                .borrow_mut()
                .applied_entry(LogIndex::new(entry.index), entry.data.len() as u64);
        }
        self.sequencer.publish(self.term()).await?;
        self.replica
            .borrow_mut()
            .stages()
            .applied(committed_at.elapsed());
        crate::shard::release_waiters(&self.applied_waiters, self.applied_index());
        Ok(())
    }

    /// True when `id` names a proposal this run of this member made (its waiter is here).
    fn proposed_here(&self, id: &ProposalId) -> bool {
        MemberId::new(id.proposer) == self.config.member_id && id.nonce == self.nonce
    }

    /// Answers the proposal filed under `sequence`, if its caller still waits.
    fn answer(&self, sequence: u64, answer: Result<Applied, ServerError>) {
        if let Some(waiter) = self.waiters.borrow_mut().writes.remove(&sequence) {
            let _ = waiter.send((answer, Instant::now()));
        }
    }

    /// Applies a membership change entry (the replica decides) and does what it means for
    /// this member: the transport follows the registry.
    fn apply_member_change(&self, conf_change: ConfChange) -> Result<(), ServerError> {
        let applied = self.replica.borrow_mut().apply_member_change(conf_change)?;
        // A learner promoted serves everything from now on.
        self.publish_role();
        match applied.effect {
            MemberEffect::None => {}
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
            self.answer(id.sequence, answer);
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
            if member.id != self.config.member_id {
                connect_peer(transport, &member);
            }
        }
        for id in members.removed() {
            transport.remove_peer(id.get());
            transport.refuse_removed(id.get());
        }
    }

    async fn apply_proposal(&self, entry: &Entry) {
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
            self.answer(id.sequence, result);
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
        .and_then(|url| crate::urls::parse_url(url))
        .and_then(|url| {
            Ok(crate::peer::transport::PeerAddress {
                address: url.socket_address()?.to_string(),
                host: url.host,
                tls: url.tls,
            })
        });
    match address {
        Ok(address) => transport.set_peer(member.id.get(), address),
        Err(error) => {
            tracing::error!(member = %format!("{:x}", member.id), %error, "cannot reach a member")
        }
    }
}
