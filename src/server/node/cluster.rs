//! Membership and leadership requests on the consensus core (`serve_cluster`), forwarded to
//! the leader when this member does not lead, and the member's status.

use super::auth::serve_auth;
use crate::api::native::{MemberRequest, Request, Response, StatusResponse};
use crate::consensus::{Consensus, ServerError};
use crate::ids::MemberId;
use crate::members::{MemberChange, MemberError};
use crate::mvcc::request::ResponseHeader;
use crate::urls::parse_url;
use crate::wal::io::DmaDir;

/// Serves a membership or leadership request on the consensus core. Every change goes to the
/// leader: only it knows a learner's progress and can hand leadership over, and only it holds a
/// membership change back while another is in flight (raft-rs turns a change forwarded to a
/// leader with one pending into an empty entry, and its proposer would wait until it timed
/// out). A follower forwards them to the leader's client URL, as etcd forwards promotions;
/// member lists are answered here.
pub(super) async fn serve_cluster(
    consensus: &Consensus<DmaDir>,
    request: Request,
    token: Option<String>,
) -> Result<Response, ServerError> {
    if let Request::Auth(auth) = request {
        return serve_auth(consensus, auth).await.map(Response::Auth);
    }
    let leader = consensus.leader();
    let needs_leader = !matches!(request, Request::Member(MemberRequest::List { .. }));
    if needs_leader && !leader.is_none() && leader != consensus.config().member_id {
        let tls = consensus.config().forward_tls.clone();
        return forward_to_leader(consensus, tls.as_ref(), leader, &request, token).await;
    }
    let members = |member, members| Response::Members {
        header: ResponseHeader::at(consensus.revision().get()),
        member,
        members,
    };
    match request {
        Request::Member(MemberRequest::Add {
            peer_urls,
            is_learner,
        }) => {
            let (member, all) = consensus.add_member(peer_urls, is_learner).await?;
            Ok(members(Some(member), all))
        }
        Request::Member(MemberRequest::Remove(id)) => consensus
            .change_members(MemberChange::Remove(MemberId::new(id)))
            .await
            .map(|all| members(None, all)),
        Request::Member(MemberRequest::Update { id, peer_urls }) => {
            let mut parsed = Vec::new();
            for url in &peer_urls {
                parsed.push(
                    parse_url(url)
                        .map_err(|_| MemberError::BadUrls)?
                        .to_string(),
                );
            }
            consensus
                .change_members(MemberChange::Update {
                    id: MemberId::new(id),
                    peer_urls: parsed,
                })
                .await
                .map(|all| members(None, all))
        }
        Request::Member(MemberRequest::Promote(id)) => consensus
            .change_members(MemberChange::Promote(MemberId::new(id)))
            .await
            .map(|all| members(None, all)),
        Request::Member(MemberRequest::List { linearizable }) => consensus
            .member_list(linearizable)
            .await
            .map(|all| members(None, all)),
        Request::Lease(query) => consensus.lease_query(&query).await.map(Response::Lease),
        Request::MoveLeader(target) => {
            consensus.move_leader(MemberId::new(target)).await?;
            Ok(Response::MoveLeader {
                header: ResponseHeader::at(consensus.revision().get()),
            })
        }
        _ => Err(ServerError::Internal(
            "not a membership or leadership request".into(),
        )),
    }
}

/// Sends `request` to the leader's first client URL and answers what it answers.
async fn forward_to_leader(
    consensus: &Consensus<DmaDir>,
    tls: Option<&std::sync::Arc<crate::tls::ClientTls>>,
    leader: MemberId,
    request: &Request,
    token: Option<String>,
) -> Result<Response, ServerError> {
    let url = consensus
        .member(leader)
        .and_then(|member| member.client_urls.first().cloned())
        .and_then(|url| parse_url(&url).ok())
        .ok_or(MemberError::NotLeader)?;
    let address = url.authority();
    let forwarded = async {
        let tls =
            match (url.tls, tls) {
                (false, _) => None,
                (true, Some(tls)) => Some((&**tls, url.host.as_str())),
                (true, None) => return Err(crate::client::ClientError::Closed(
                    "the leader's client URL is https and this member has no client TLS settings"
                        .into(),
                )),
            };
        let client = crate::client::Client::connect_secured(&address, tls).await?;
        // The leader checks the caller again: the token goes along.
        client.set_token(token);
        client.request(request).await
    };
    let expired = glommio::timer::sleep(consensus.config().request_timeout);
    let outcome =
        match futures::future::select(std::pin::pin!(forwarded), std::pin::pin!(expired)).await {
            futures::future::Either::Left((outcome, _)) => Some(outcome),
            futures::future::Either::Right(_) => None,
        };
    match outcome {
        Some(Ok(response)) => Ok(response),
        Some(Err(crate::client::ClientError::Server { code, message })) => {
            Err(ServerError::Forwarded { code, message })
        }
        Some(Err(error)) => {
            tracing::warn!(%error, leader = %format!("{leader:x}"), %address, "forwarding to the leader failed");
            Err(ServerError::NoLeader)
        }
        None => Err(ServerError::Timeout),
    }
}

pub(crate) fn status_of(consensus: &Consensus<DmaDir>) -> StatusResponse {
    StatusResponse {
        header: ResponseHeader::at(consensus.revision().get()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        db_size: consensus.keyspace_size() as i64,
        // What this member's cores act on (`SharedRole`), so a client told "no leader" or
        // "learner" here is refused or served accordingly by the admission path.
        leader: consensus.config().role.leader().get(),
        raft_index: consensus.last_index().get(),
        raft_term: consensus.term().get(),
        raft_applied_index: consensus.applied_index().get(),
        stages: consensus.commit_stages(),
        is_learner: consensus.config().role.is_learner(),
    }
}
