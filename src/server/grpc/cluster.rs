//! etcd's `etcdserverpb.Cluster` service: membership changes and the member list, served as
//! the native protocol's membership requests.

use std::rc::Rc;

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, mismatched, on_core};
use crate::api::etcd;
use crate::api::native::{self, Request};
use crate::consensus::ServerError;
use crate::server::admission::{self, CallMeta};
use crate::server::node::Node;

/// A member as etcd's.
fn member(member: crate::members::Member) -> pb::Member {
    pb::Member {
        id: member.id.get(),
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

/// Serves a membership request as the native protocol does; the header and members answered.
async fn cluster(
    node: Rc<Node>,
    limits: crate::server::Limits,
    request: Request,
    meta: CallMeta,
) -> Result<(pb::ResponseHeader, Option<pb::Member>, Vec<pb::Member>), ServerError> {
    admission::admit(&node, limits, &meta, &request, None).await?;
    match node.cluster_as(request, meta.credentials.token).await? {
        native::Response::Members {
            mut header,
            member: added,
            members,
        } => {
            crate::server::stamp_header(&mut header, &node);
            Ok((
                etcd::header(header),
                added.map(member),
                members.into_iter().map(member).collect(),
            ))
        }
        _ => Err(mismatched("membership request")),
    }
}

/// etcd's `etcdserverpb.Cluster` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterService;

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        request: tonic::Request<pb::MemberAddRequest>,
    ) -> Result<tonic::Response<pb::MemberAddResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let request = Request::Member(native::MemberRequest::Add {
            peer_urls: request.peer_ur_ls,
            is_learner: request.is_learner,
        });
        on_core(move |node, limits| cluster(node, limits, request, meta))
            .await
            .map(|(header, member, members)| {
                tonic::Response::new(pb::MemberAddResponse {
                    header: Some(header),
                    member,
                    members,
                })
            })
    }

    async fn member_remove(
        &self,
        request: tonic::Request<pb::MemberRemoveRequest>,
    ) -> Result<tonic::Response<pb::MemberRemoveResponse>, Status> {
        let meta = call_meta(&request);
        let request = Request::Member(native::MemberRequest::Remove(request.into_inner().id));
        on_core(move |node, limits| cluster(node, limits, request, meta))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberRemoveResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_update(
        &self,
        request: tonic::Request<pb::MemberUpdateRequest>,
    ) -> Result<tonic::Response<pb::MemberUpdateResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let request = Request::Member(native::MemberRequest::Update {
            id: request.id,
            peer_urls: request.peer_ur_ls,
        });
        on_core(move |node, limits| cluster(node, limits, request, meta))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberUpdateResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_list(
        &self,
        request: tonic::Request<pb::MemberListRequest>,
    ) -> Result<tonic::Response<pb::MemberListResponse>, Status> {
        let meta = call_meta(&request);
        let request = Request::Member(native::MemberRequest::List {
            linearizable: request.into_inner().linearizable,
        });
        on_core(move |node, limits| cluster(node, limits, request, meta))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberListResponse {
                    header: Some(header),
                    members,
                })
            })
    }

    async fn member_promote(
        &self,
        request: tonic::Request<pb::MemberPromoteRequest>,
    ) -> Result<tonic::Response<pb::MemberPromoteResponse>, Status> {
        let meta = call_meta(&request);
        let request = Request::Member(native::MemberRequest::Promote(request.into_inner().id));
        on_core(move |node, limits| cluster(node, limits, request, meta))
            .await
            .map(|(header, _, members)| {
                tonic::Response::new(pb::MemberPromoteResponse {
                    header: Some(header),
                    members,
                })
            })
    }
}
