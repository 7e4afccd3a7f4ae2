//! Membership requests: etcd's MemberList, MemberAdd/Remove/Update/Promote, and this member
//! publishing its name and client URLs. The replica checks and applies them; this waits.

use std::rc::Rc;
use std::time::Duration;

use raft::eraftpb::{ConfChange, ConfChangeType};

use super::driver::{Applied, Consensus};
use crate::api::error::ServerError;
use crate::ids::MemberId;
use crate::members::{encode_change, Member, MemberChange, MemberError};
use crate::replica::entry::encode_proposal;
use crate::replica::proposals::Proposal;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// etcd's MemberList: the registry as this member has applied it (after a ReadIndex round
    /// when `linearizable`).
    pub async fn member_list(&self, linearizable: bool) -> Result<Vec<Member>, ServerError> {
        if linearizable {
            self.read_index().await?;
        }
        Ok(self.replica.borrow().members().list())
    }

    /// Proposes a membership change and waits until it is applied; answers the registry after
    /// it. Checked here first against the applied registry (and, on the leader, against the
    /// cluster's health and a learner's progress), and again when applied.
    pub async fn change_members(&self, change: MemberChange) -> Result<Vec<Member>, ServerError> {
        self.change_members_within(change, self.config.request_timeout)
            .await
    }

    /// `change_members`, giving up after `timeout`.
    async fn change_members_within(
        &self,
        change: MemberChange,
        timeout: Duration,
    ) -> Result<Vec<Member>, ServerError> {
        self.replica.borrow().refuse_if_learner()?;
        if self.transport.is_none() && matches!(change, MemberChange::Add(_)) {
            return Err(ServerError::Internal(
                "this member does not listen for peers: start it with --listen-peer-urls to \
                 change the cluster's membership"
                    .into(),
            ));
        }
        self.replica.borrow().check_change(&change)?;
        // URL updates and publications change only the registry; they travel as configuration
        // changes all the same (never applied to raft-rs's configuration), which keeps every
        // membership change in one order, one at a time.
        let (change_type, node_id) = change
            .raft_change()
            .unwrap_or((ConfChangeType::AddNode, change.member_id().get()));
        let applied = self
            .propose_within(timeout, |id| {
                let mut body = Vec::new();
                encode_change(&change, &mut body);
                let mut conf_change = ConfChange::default();
                conf_change.set_change_type(change_type);
                conf_change.node_id = node_id;
                conf_change.context = encode_proposal(id, None, &body).to_vec().into();
                Proposal::Change(conf_change)
            })
            .await?;
        match applied {
            Applied::Members(members) => Ok(members),
            _ => Err(ServerError::Internal(
                "a membership change was applied as something else".into(),
            )),
        }
    }

    /// etcd's MemberAdd: a new voter or learner at `peer_urls`, with an ID picked here (from
    /// the URLs, the cluster and the time, as etcd picks one); answers it and the registry.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ServerError> {
        let mut parsed = Vec::new();
        for url in &peer_urls {
            parsed.push(crate::urls::parse_url(url).map_err(|_| MemberError::BadUrls)?);
        }
        if parsed.is_empty() {
            return Err(MemberError::BadUrls.into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let salt = format!("{:x}{now}{}", self.config.cluster_id, self.nonce);
        let member = Member {
            id: crate::membership::member_id(&parsed, &salt).max(MemberId::new(1)),
            name: String::new(),
            peer_urls: parsed.iter().map(ToString::to_string).collect(),
            client_urls: Vec::new(),
            is_learner,
        };
        let members = self
            .change_members(MemberChange::Add(member.clone()))
            .await?;
        Ok((member, members))
    }

    /// Puts this member's name and client URLs in the registry once a leader is known, if
    /// they are not there yet (retried on the next turns if the proposal fails).
    pub(super) fn maybe_publish(self: &Rc<Self>) {
        if self.publishing.get() || !self.replica.borrow().leader_known() {
            return;
        }
        let published = self.member(self.config.member_id).is_none_or(|member| {
            member.name == self.config.name && member.client_urls == self.config.client_urls
        });
        if published {
            return;
        }
        self.publishing.set(true);
        let this = self.clone();
        glommio::spawn_local(async move {
            let change = MemberChange::Publish {
                id: this.config.member_id,
                name: this.config.name.clone(),
                client_urls: this.config.client_urls.clone(),
            };
            // raft-rs drops a membership change proposed while another is pending (members
            // starting together all publish at once): a short wait, then again.
            let patience = this.config.election_timeout();
            if let Err(error) = this.change_members_within(change, patience).await {
                tracing::debug!(%error, "publishing this member's name and client URLs failed");
                this.publishing.set(false);
            }
        })
        .detach();
    }
}
