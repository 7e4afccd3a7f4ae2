//! The native protocol's codec: lode's request envelope (`api::request`, re-exported here) to
//! and from the flatbuffers frames of `lode-protocol`. Pure.
//!
//! Decoding verifies the flatbuffer before reading it (bounds, alignment, depth) and never
//! panics on any input; byte fields are zero-copy slices of the frame. The same `RequestFrame`
//! encoding is what a write is stored as in the Raft log.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};
use lode_protocol::fb;

use crate::alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::members::Member;
use crate::mvcc::kv::KeyValue;
use crate::mvcc::request::*;
use crate::replica::stages::StageSummary;

pub use super::request::*;

/// Why a frame's flatbuffer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The flatbuffer failed verification.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame without a request (or response).
    #[error("frame carries no request")]
    Empty,
}

// ----- encoding -----

type Builder<'a> = FlatBufferBuilder<'a>;

fn bytes_vector<'a>(b: &mut Builder<'a>, bytes: &[u8]) -> Option<WIPOffset<Vector<'a, u8>>> {
    Some(b.create_vector(bytes))
}

fn encode_kv<'a>(b: &mut Builder<'a>, kv: &KeyValue) -> WIPOffset<fb::KeyValue<'a>> {
    let key = bytes_vector(b, &kv.key);
    let value = bytes_vector(b, &kv.value);
    fb::KeyValue::create(
        b,
        &fb::KeyValueArgs {
            key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value,
            lease: kv.lease,
        },
    )
}

fn encode_kvs<'a>(
    b: &mut Builder<'a>,
    kvs: &[KeyValue],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::KeyValue<'a>>>> {
    let offsets: Vec<_> = kvs.iter().map(|kv| encode_kv(b, kv)).collect();
    b.create_vector(&offsets)
}

fn encode_leader_key<'a>(b: &mut Builder<'a>, leader: &LeaderKey) -> WIPOffset<fb::LeaderKey<'a>> {
    let name = bytes_vector(b, &leader.name);
    let key = bytes_vector(b, &leader.key);
    fb::LeaderKey::create(
        b,
        &fb::LeaderKeyArgs {
            name,
            key,
            rev: leader.rev,
            lease: leader.lease,
        },
    )
}

fn decode_leader_key(frame: &Bytes, leader: Option<fb::LeaderKey<'_>>) -> LeaderKey {
    match leader {
        Some(l) => LeaderKey {
            name: slice(frame, l.name()),
            key: slice(frame, l.key()),
            rev: l.rev(),
            lease: l.lease(),
        },
        None => LeaderKey::default(),
    }
}

fn encode_header<'a>(b: &mut Builder<'a>, h: &ResponseHeader) -> WIPOffset<fb::ResponseHeader<'a>> {
    fb::ResponseHeader::create(
        b,
        &fb::ResponseHeaderArgs {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: h.revision,
            raft_term: h.raft_term,
        },
    )
}

fn sort_order_value(order: SortOrder) -> i32 {
    match order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
        SortOrder::Unknown(v) => v,
    }
}

fn sort_target_value(target: SortTarget) -> i32 {
    match target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
        SortTarget::Unknown(v) => v,
    }
}

fn encode_range<'a>(b: &mut Builder<'a>, r: &RangeRequest) -> WIPOffset<fb::RangeRequest<'a>> {
    let key = bytes_vector(b, &r.key);
    let range_end = bytes_vector(b, &r.range_end);
    fb::RangeRequest::create(
        b,
        &fb::RangeRequestArgs {
            key,
            range_end,
            limit: r.limit,
            revision: r.revision,
            sort_order: fb::SortOrder(sort_order_value(r.sort_order)),
            sort_target: fb::SortTarget(sort_target_value(r.sort_target)),
            serializable: r.serializable,
            keys_only: r.keys_only,
            count_only: r.count_only,
            min_mod_revision: r.min_mod_revision,
            max_mod_revision: r.max_mod_revision,
            min_create_revision: r.min_create_revision,
            max_create_revision: r.max_create_revision,
        },
    )
}

fn encode_put<'a>(b: &mut Builder<'a>, p: &PutRequest) -> WIPOffset<fb::PutRequest<'a>> {
    let key = bytes_vector(b, &p.key);
    let value = bytes_vector(b, &p.value);
    fb::PutRequest::create(
        b,
        &fb::PutRequestArgs {
            key,
            value,
            lease: p.lease,
            prev_kv: p.prev_kv,
            ignore_value: p.ignore_value,
            ignore_lease: p.ignore_lease,
        },
    )
}

fn encode_delete<'a>(
    b: &mut Builder<'a>,
    d: &DeleteRangeRequest,
) -> WIPOffset<fb::DeleteRangeRequest<'a>> {
    let key = bytes_vector(b, &d.key);
    let range_end = bytes_vector(b, &d.range_end);
    fb::DeleteRangeRequest::create(
        b,
        &fb::DeleteRangeRequestArgs {
            key,
            range_end,
            prev_kv: d.prev_kv,
        },
    )
}

fn encode_compare<'a>(b: &mut Builder<'a>, c: &Compare) -> WIPOffset<fb::Compare<'a>> {
    let key = bytes_vector(b, &c.key);
    let range_end = bytes_vector(b, &c.range_end);
    let (operand, number, value) = match &c.operand {
        CompareOperand::None => (fb::CompareOperand::None, 0, None),
        CompareOperand::Version(n) => (fb::CompareOperand::Version, *n, None),
        CompareOperand::Create(n) => (fb::CompareOperand::Create, *n, None),
        CompareOperand::Mod(n) => (fb::CompareOperand::Mod, *n, None),
        CompareOperand::Lease(n) => (fb::CompareOperand::Lease, *n, None),
        CompareOperand::Value(v) => (fb::CompareOperand::Value, 0, bytes_vector(b, v)),
    };
    let result = match c.result {
        CompareResult::Equal => 0,
        CompareResult::Greater => 1,
        CompareResult::Less => 2,
        CompareResult::NotEqual => 3,
        CompareResult::Unknown(v) => v,
    };
    let target = match c.target {
        CompareTarget::Version => 0,
        CompareTarget::Create => 1,
        CompareTarget::Mod => 2,
        CompareTarget::Value => 3,
        CompareTarget::Lease => 4,
        CompareTarget::Unknown(v) => v,
    };
    fb::Compare::create(
        b,
        &fb::CompareArgs {
            result: fb::CompareResult(result),
            target: fb::CompareTarget(target),
            key,
            range_end,
            operand,
            number,
            value,
        },
    )
}

fn encode_ops<'a>(
    b: &mut Builder<'a>,
    ops: &[RequestOp],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::RequestOp<'a>>>> {
    let offsets: Vec<_> = ops
        .iter()
        .map(|op| {
            let (request_type, request) = match op {
                RequestOp::Range(r) => (
                    fb::Request::RangeRequest,
                    Some(encode_range(b, r).as_union_value()),
                ),
                RequestOp::Put(p) => (
                    fb::Request::PutRequest,
                    Some(encode_put(b, p).as_union_value()),
                ),
                RequestOp::DeleteRange(d) => (
                    fb::Request::DeleteRangeRequest,
                    Some(encode_delete(b, d).as_union_value()),
                ),
                RequestOp::Txn(t) => (
                    fb::Request::TxnRequest,
                    Some(encode_txn(b, t).as_union_value()),
                ),
                RequestOp::Empty => (fb::Request::NONE, None),
            };
            fb::RequestOp::create(
                b,
                &fb::RequestOpArgs {
                    request_type,
                    request,
                },
            )
        })
        .collect();
    b.create_vector(&offsets)
}

fn encode_txn<'a>(b: &mut Builder<'a>, t: &TxnRequest) -> WIPOffset<fb::TxnRequest<'a>> {
    let compares: Vec<_> = t.compare.iter().map(|c| encode_compare(b, c)).collect();
    let compare = Some(b.create_vector(&compares));
    let success = Some(encode_ops(b, &t.success));
    let failure = Some(encode_ops(b, &t.failure));
    fb::TxnRequest::create(
        b,
        &fb::TxnRequestArgs {
            compare,
            success,
            failure,
        },
    )
}

/// Encodes a request frame.
pub fn encode_request(id: u64, request: &Request) -> Vec<u8> {
    encode_request_as(id, request, None)
}

/// `encode_request`, carrying an auth token (who the request speaks for while auth is on).
pub fn encode_request_as(id: u64, request: &Request, token: Option<&str>) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(256);
    let (request_type, body) = match request {
        Request::Range(r) => (
            fb::Request::RangeRequest,
            encode_range(&mut b, r).as_union_value(),
        ),
        Request::Write(WriteRequest::Put(p)) => (
            fb::Request::PutRequest,
            encode_put(&mut b, p).as_union_value(),
        ),
        Request::Write(WriteRequest::DeleteRange(d)) => (
            fb::Request::DeleteRangeRequest,
            encode_delete(&mut b, d).as_union_value(),
        ),
        Request::Write(WriteRequest::Txn(t)) => (
            fb::Request::TxnRequest,
            encode_txn(&mut b, t).as_union_value(),
        ),
        Request::Write(WriteRequest::Compact(c)) => (
            fb::Request::CompactionRequest,
            fb::CompactionRequest::create(
                &mut b,
                &fb::CompactionRequestArgs {
                    revision: c.revision,
                    physical: c.physical,
                },
            )
            .as_union_value(),
        ),
        Request::Status => (
            fb::Request::StatusRequest,
            fb::StatusRequest::create(&mut b, &fb::StatusRequestArgs {}).as_union_value(),
        ),
        Request::Snapshot => (
            fb::Request::SnapshotRequest,
            fb::SnapshotRequest::create(&mut b, &fb::SnapshotRequestArgs {}).as_union_value(),
        ),
        Request::Alarm(a) => (
            fb::Request::AlarmRequest,
            fb::AlarmRequest::create(
                &mut b,
                &fb::AlarmRequestArgs {
                    action: a.action as u32,
                    member_id: a.member_id,
                    alarm: a.alarm as u32,
                },
            )
            .as_union_value(),
        ),
        Request::Member(MemberRequest::Add {
            peer_urls,
            is_learner,
        }) => {
            let peer_urls = Some(string_vector(&mut b, peer_urls));
            (
                fb::Request::MemberAddRequest,
                fb::MemberAddRequest::create(
                    &mut b,
                    &fb::MemberAddRequestArgs {
                        peer_urls,
                        is_learner: *is_learner,
                    },
                )
                .as_union_value(),
            )
        }
        Request::Member(MemberRequest::Remove(id)) => (
            fb::Request::MemberRemoveRequest,
            fb::MemberRemoveRequest::create(&mut b, &fb::MemberRemoveRequestArgs { id: *id })
                .as_union_value(),
        ),
        Request::Member(MemberRequest::Update { id, peer_urls }) => {
            let peer_urls = Some(string_vector(&mut b, peer_urls));
            (
                fb::Request::MemberUpdateRequest,
                fb::MemberUpdateRequest::create(
                    &mut b,
                    &fb::MemberUpdateRequestArgs { id: *id, peer_urls },
                )
                .as_union_value(),
            )
        }
        Request::Member(MemberRequest::List { linearizable }) => (
            fb::Request::MemberListRequest,
            fb::MemberListRequest::create(
                &mut b,
                &fb::MemberListRequestArgs {
                    linearizable: *linearizable,
                },
            )
            .as_union_value(),
        ),
        Request::Member(MemberRequest::Promote(id)) => (
            fb::Request::MemberPromoteRequest,
            fb::MemberPromoteRequest::create(&mut b, &fb::MemberPromoteRequestArgs { id: *id })
                .as_union_value(),
        ),
        Request::HashKv(revision) => (
            fb::Request::HashKvRequest,
            fb::HashKvRequest::create(
                &mut b,
                &fb::HashKvRequestArgs {
                    revision: *revision,
                },
            )
            .as_union_value(),
        ),
        Request::Watch(watch) => {
            let (action, creation, watch_id) = match watch {
                WatchRequest::Create(create) => {
                    let key = bytes_vector(&mut b, &create.key);
                    let range_end = bytes_vector(&mut b, &create.range_end);
                    let creation = fb::WatchCreate::create(
                        &mut b,
                        &fb::WatchCreateArgs {
                            key,
                            range_end,
                            start_revision: create.start_revision,
                            progress_notify: create.progress_notify,
                            no_put: create.no_put,
                            no_delete: create.no_delete,
                            prev_kv: create.prev_kv,
                            watch_id: create.watch_id,
                            fragment: create.fragment,
                        },
                    );
                    (fb::WatchAction::Create, Some(creation), 0)
                }
                WatchRequest::Cancel(watch_id) => (fb::WatchAction::Cancel, None, *watch_id),
                WatchRequest::Progress => (fb::WatchAction::Progress, None, 0),
            };
            (
                fb::Request::WatchRequest,
                fb::WatchRequest::create(
                    &mut b,
                    &fb::WatchRequestArgs {
                        action,
                        creation,
                        watch_id,
                    },
                )
                .as_union_value(),
            )
        }
        Request::Write(WriteRequest::Lease(LeaseRequest::Grant { id, ttl })) => (
            fb::Request::LeaseGrantRequest,
            fb::LeaseGrantRequest::create(
                &mut b,
                &fb::LeaseGrantRequestArgs { ttl: *ttl, id: *id },
            )
            .as_union_value(),
        ),
        Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id })) => (
            fb::Request::LeaseRevokeRequest,
            fb::LeaseRevokeRequest::create(&mut b, &fb::LeaseRevokeRequestArgs { id: *id })
                .as_union_value(),
        ),
        Request::Write(WriteRequest::Lease(LeaseRequest::Renew { ids })) => {
            let ids = Some(b.create_vector(ids));
            (
                fb::Request::LeaseRenewRequest,
                fb::LeaseRenewRequest::create(&mut b, &fb::LeaseRenewRequestArgs { ids })
                    .as_union_value(),
            )
        }
        Request::Write(WriteRequest::Lease(LeaseRequest::Expire { leases })) => {
            let id_list: Vec<i64> = leases.iter().map(|&(id, _)| id).collect();
            let generation_list: Vec<u64> = leases.iter().map(|&(_, g)| g).collect();
            let ids = Some(b.create_vector(&id_list));
            let generations = Some(b.create_vector(&generation_list));
            (
                fb::Request::LeaseExpireRequest,
                fb::LeaseExpireRequest::create(
                    &mut b,
                    &fb::LeaseExpireRequestArgs { ids, generations },
                )
                .as_union_value(),
            )
        }
        Request::Lease(LeaseQuery::KeepAlive(id)) => (
            fb::Request::LeaseKeepAliveRequest,
            fb::LeaseKeepAliveRequest::create(&mut b, &fb::LeaseKeepAliveRequestArgs { id: *id })
                .as_union_value(),
        ),
        Request::Lease(LeaseQuery::TimeToLive { id, keys }) => (
            fb::Request::LeaseTimeToLiveRequest,
            fb::LeaseTimeToLiveRequest::create(
                &mut b,
                &fb::LeaseTimeToLiveRequestArgs {
                    id: *id,
                    keys: *keys,
                },
            )
            .as_union_value(),
        ),
        Request::Lease(LeaseQuery::Leases) => (
            fb::Request::LeaseLeasesRequest,
            fb::LeaseLeasesRequest::create(&mut b, &fb::LeaseLeasesRequestArgs {}).as_union_value(),
        ),
        Request::Coordination(CoordinationRequest::Lock { name, lease }) => {
            let name = bytes_vector(&mut b, name);
            (
                fb::Request::LockRequest,
                fb::LockRequest::create(
                    &mut b,
                    &fb::LockRequestArgs {
                        name,
                        lease: *lease,
                    },
                )
                .as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Unlock { key }) => {
            let key = bytes_vector(&mut b, key);
            (
                fb::Request::UnlockRequest,
                fb::UnlockRequest::create(&mut b, &fb::UnlockRequestArgs { key }).as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Campaign { name, lease, value }) => {
            let name = bytes_vector(&mut b, name);
            let value = bytes_vector(&mut b, value);
            (
                fb::Request::CampaignRequest,
                fb::CampaignRequest::create(
                    &mut b,
                    &fb::CampaignRequestArgs {
                        name,
                        lease: *lease,
                        value,
                    },
                )
                .as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Proclaim { leader, value }) => {
            let leader = Some(encode_leader_key(&mut b, leader));
            let value = bytes_vector(&mut b, value);
            (
                fb::Request::ProclaimRequest,
                fb::ProclaimRequest::create(&mut b, &fb::ProclaimRequestArgs { leader, value })
                    .as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Leader { name }) => {
            let name = bytes_vector(&mut b, name);
            (
                fb::Request::LeaderRequest,
                fb::LeaderRequest::create(&mut b, &fb::LeaderRequestArgs { name }).as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Observe { name }) => {
            let name = bytes_vector(&mut b, name);
            (
                fb::Request::ObserveRequest,
                fb::ObserveRequest::create(&mut b, &fb::ObserveRequestArgs { name })
                    .as_union_value(),
            )
        }
        Request::Coordination(CoordinationRequest::Resign { leader }) => {
            let leader = Some(encode_leader_key(&mut b, leader));
            (
                fb::Request::ResignRequest,
                fb::ResignRequest::create(&mut b, &fb::ResignRequestArgs { leader })
                    .as_union_value(),
            )
        }
        Request::Auth(auth) => (
            fb::Request::AuthRequest,
            encode_auth_request(&mut b, auth).as_union_value(),
        ),
        Request::MoveLeader(target_id) => (
            fb::Request::MoveLeaderRequest,
            fb::MoveLeaderRequest::create(
                &mut b,
                &fb::MoveLeaderRequestArgs {
                    target_id: *target_id,
                },
            )
            .as_union_value(),
        ),
    };
    let token = token.map(|token| b.create_string(token));
    let frame = fb::RequestFrame::create(
        &mut b,
        &fb::RequestFrameArgs {
            id,
            request_type,
            request: Some(body),
            token,
        },
    );
    b.finish(frame, None);
    b.finished_data().to_vec()
}

fn encode_auth_permission<'a>(
    b: &mut Builder<'a>,
    permission: &crate::auth::Permission,
) -> WIPOffset<fb::AuthPermission<'a>> {
    let key = bytes_vector(b, &permission.key);
    let range_end = bytes_vector(b, &permission.range_end);
    fb::AuthPermission::create(
        b,
        &fb::AuthPermissionArgs {
            perm_type: permission.perm_type.to_i32(),
            key,
            range_end,
        },
    )
}

fn decode_auth_permission(
    frame: &Bytes,
    permission: fb::AuthPermission<'_>,
) -> Result<crate::auth::Permission, DecodeError> {
    let perm_type = crate::auth::PermType::from_i32(permission.perm_type()).ok_or_else(|| {
        DecodeError::Malformed(format!(
            "unknown permission type {}",
            permission.perm_type()
        ))
    })?;
    Ok(crate::auth::Permission {
        perm_type,
        key: slice(frame, permission.key()),
        range_end: slice(frame, permission.range_end()),
    })
}

fn encode_auth_request<'a>(
    b: &mut Builder<'a>,
    request: &crate::auth::request::AuthRequest,
) -> WIPOffset<fb::AuthRequest<'a>> {
    let name = Some(b.create_string(&request.name));
    let role = Some(b.create_string(&request.role));
    let password = Some(b.create_string(&request.password));
    let password_hash = bytes_vector(b, &request.password_hash);
    let permission = request
        .permission
        .as_ref()
        .map(|p| encode_auth_permission(b, p));
    let key = bytes_vector(b, &request.key);
    let range_end = bytes_vector(b, &request.range_end);
    let token_prefix = Some(b.create_string(&request.token_prefix));
    fb::AuthRequest::create(
        b,
        &fb::AuthRequestArgs {
            kind: fb::AuthKind(request.kind.to_u8()),
            name,
            role,
            password,
            password_hash,
            no_password: request.no_password,
            permission,
            key,
            range_end,
            token_prefix,
        },
    )
}

fn decode_auth_request(
    frame: &Bytes,
    request: fb::AuthRequest<'_>,
) -> Result<crate::auth::request::AuthRequest, DecodeError> {
    let kind = crate::auth::request::AuthKind::from_u8(request.kind().0)
        .ok_or_else(|| DecodeError::Malformed(format!("unknown auth call {}", request.kind().0)))?;
    Ok(crate::auth::request::AuthRequest {
        kind,
        name: request.name().unwrap_or_default().to_string(),
        role: request.role().unwrap_or_default().to_string(),
        password: request.password().unwrap_or_default().to_string(),
        password_hash: slice(frame, request.password_hash()),
        no_password: request.no_password(),
        permission: request
            .permission()
            .map(|p| decode_auth_permission(frame, p))
            .transpose()?,
        key: slice(frame, request.key()),
        range_end: slice(frame, request.range_end()),
        token_prefix: request.token_prefix().unwrap_or_default().to_string(),
        caller_revision: 0,
    })
}

fn string_vector<'a>(
    b: &mut Builder<'a>,
    texts: &[String],
) -> WIPOffset<Vector<'a, ForwardsUOffset<&'a str>>> {
    let offsets: Vec<_> = texts.iter().map(|t| b.create_string(t)).collect();
    b.create_vector(&offsets)
}

fn encode_member<'a>(b: &mut Builder<'a>, member: &Member) -> WIPOffset<fb::Member<'a>> {
    let name = Some(b.create_string(&member.name));
    let peer_urls = Some(string_vector(b, &member.peer_urls));
    let client_urls = Some(string_vector(b, &member.client_urls));
    fb::Member::create(
        b,
        &fb::MemberArgs {
            id: member.id,
            name,
            peer_urls,
            client_urls,
            is_learner: member.is_learner,
        },
    )
}

fn strings(texts: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    texts.into_iter().flatten().map(str::to_string).collect()
}

fn decode_member(member: fb::Member<'_>) -> Member {
    Member {
        id: member.id(),
        name: member.name().unwrap_or_default().to_string(),
        peer_urls: strings(member.peer_urls()),
        client_urls: strings(member.client_urls()),
        is_learner: member.is_learner(),
    }
}

fn encode_range_response<'a>(
    b: &mut Builder<'a>,
    r: &RangeResponse,
) -> WIPOffset<fb::RangeResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let kvs = Some(encode_kvs(b, &r.kvs));
    fb::RangeResponse::create(
        b,
        &fb::RangeResponseArgs {
            header,
            kvs,
            more: r.more,
            count: r.count,
        },
    )
}

fn encode_put_response<'a>(b: &mut Builder<'a>, r: &PutResponse) -> WIPOffset<fb::PutResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let prev_kv = r.prev_kv.as_ref().map(|kv| encode_kv(b, kv));
    fb::PutResponse::create(b, &fb::PutResponseArgs { header, prev_kv })
}

fn encode_delete_response<'a>(
    b: &mut Builder<'a>,
    r: &DeleteRangeResponse,
) -> WIPOffset<fb::DeleteRangeResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let prev_kvs = Some(encode_kvs(b, &r.prev_kvs));
    fb::DeleteRangeResponse::create(
        b,
        &fb::DeleteRangeResponseArgs {
            header,
            deleted: r.deleted,
            prev_kvs,
        },
    )
}

fn encode_txn_response<'a>(b: &mut Builder<'a>, r: &TxnResponse) -> WIPOffset<fb::TxnResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let ops: Vec<_> = r
        .responses
        .iter()
        .map(|op| {
            let (response_type, response) = match op {
                ResponseOp::Range(x) => (
                    fb::Response::RangeResponse,
                    encode_range_response(b, x).as_union_value(),
                ),
                ResponseOp::Put(x) => (
                    fb::Response::PutResponse,
                    encode_put_response(b, x).as_union_value(),
                ),
                ResponseOp::DeleteRange(x) => (
                    fb::Response::DeleteRangeResponse,
                    encode_delete_response(b, x).as_union_value(),
                ),
                ResponseOp::Txn(x) => (
                    fb::Response::TxnResponse,
                    encode_txn_response(b, x).as_union_value(),
                ),
            };
            fb::ResponseOp::create(
                b,
                &fb::ResponseOpArgs {
                    response_type,
                    response: Some(response),
                },
            )
        })
        .collect();
    let responses = Some(b.create_vector(&ops));
    fb::TxnResponse::create(
        b,
        &fb::TxnResponseArgs {
            header,
            succeeded: r.succeeded,
            responses,
        },
    )
}

/// Encodes a response frame.
pub fn encode_response(id: u64, response: &Response) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(256);
    let (response_type, body) = match response {
        Response::Range(r) => (
            fb::Response::RangeResponse,
            encode_range_response(&mut b, r).as_union_value(),
        ),
        Response::Write(WriteResponse::Put(r)) => (
            fb::Response::PutResponse,
            encode_put_response(&mut b, r).as_union_value(),
        ),
        Response::Write(WriteResponse::DeleteRange(r)) => (
            fb::Response::DeleteRangeResponse,
            encode_delete_response(&mut b, r).as_union_value(),
        ),
        Response::Write(WriteResponse::Txn(r)) => (
            fb::Response::TxnResponse,
            encode_txn_response(&mut b, r).as_union_value(),
        ),
        Response::Write(WriteResponse::Compact(r)) => {
            let header = Some(encode_header(&mut b, &r.header));
            (
                fb::Response::CompactionResponse,
                fb::CompactionResponse::create(&mut b, &fb::CompactionResponseArgs { header })
                    .as_union_value(),
            )
        }
        Response::Status(s) => {
            let header = Some(encode_header(&mut b, &s.header));
            let version = Some(b.create_string(&s.version));
            let stages: Vec<_> = s
                .stages
                .iter()
                .map(|stage| {
                    let name = Some(b.create_string(&stage.name));
                    fb::CommitStage::create(
                        &mut b,
                        &fb::CommitStageArgs {
                            name,
                            count: stage.count,
                            p50_ns: stage.p50_ns,
                            p99_ns: stage.p99_ns,
                            p999_ns: stage.p999_ns,
                            max_ns: stage.max_ns,
                        },
                    )
                })
                .collect();
            let stages = Some(b.create_vector(&stages));
            (
                fb::Response::StatusResponse,
                fb::StatusResponse::create(
                    &mut b,
                    &fb::StatusResponseArgs {
                        header,
                        version,
                        db_size: s.db_size,
                        leader: s.leader,
                        raft_index: s.raft_index,
                        raft_term: s.raft_term,
                        raft_applied_index: s.raft_applied_index,
                        stages,
                        is_learner: s.is_learner,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Alarm(a) => {
            let header = Some(encode_header(&mut b, &a.header));
            let members: Vec<_> = a
                .alarms
                .iter()
                .map(|m| {
                    fb::AlarmMember::create(
                        &mut b,
                        &fb::AlarmMemberArgs {
                            member_id: m.member_id,
                            alarm: m.alarm as u32,
                        },
                    )
                })
                .collect();
            let alarms = Some(b.create_vector(&members));
            (
                fb::Response::AlarmResponse,
                fb::AlarmResponse::create(&mut b, &fb::AlarmResponseArgs { header, alarms })
                    .as_union_value(),
            )
        }
        Response::Members {
            header,
            member,
            members,
        } => {
            let header = Some(encode_header(&mut b, header));
            let member = member.as_ref().map(|m| encode_member(&mut b, m));
            let encoded: Vec<_> = members.iter().map(|m| encode_member(&mut b, m)).collect();
            let members = Some(b.create_vector(&encoded));
            (
                fb::Response::MemberResponse,
                fb::MemberResponse::create(
                    &mut b,
                    &fb::MemberResponseArgs {
                        header,
                        member,
                        members,
                    },
                )
                .as_union_value(),
            )
        }
        Response::HashKv {
            header,
            hash,
            compact_revision,
            hash_revision,
        } => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::HashKvResponse,
                fb::HashKvResponse::create(
                    &mut b,
                    &fb::HashKvResponseArgs {
                        header,
                        hash: *hash,
                        compact_revision: *compact_revision,
                        hash_revision: *hash_revision,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Watch { header, response } => {
            let header = Some(encode_header(&mut b, header));
            let events: Vec<_> = response
                .events
                .iter()
                .map(|event| {
                    let kv = Some(encode_kv(&mut b, &event.kv));
                    let prev_kv = event.prev_kv.as_ref().map(|p| encode_kv(&mut b, p));
                    fb::Event::create(
                        &mut b,
                        &fb::EventArgs {
                            type_: match event.kind {
                                crate::watch::EventKind::Put => fb::EventType::Put,
                                crate::watch::EventKind::Delete => fb::EventType::Delete,
                            },
                            kv,
                            prev_kv,
                        },
                    )
                })
                .collect();
            let events = Some(b.create_vector(&events));
            let cancel_reason = Some(b.create_string(&response.cancel_reason));
            (
                fb::Response::WatchResponse,
                fb::WatchResponse::create(
                    &mut b,
                    &fb::WatchResponseArgs {
                        header,
                        watch_id: response.watch_id,
                        created: response.created,
                        canceled: response.canceled,
                        compact_revision: response.compact_revision,
                        cancel_reason,
                        events,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Write(WriteResponse::Lease(r)) => {
            let header = Some(encode_header(&mut b, &r.header));
            match &r.outcome {
                LeaseOutcome::Granted { id, ttl } => (
                    fb::Response::LeaseGrantResponse,
                    fb::LeaseGrantResponse::create(
                        &mut b,
                        &fb::LeaseGrantResponseArgs {
                            header,
                            id: *id,
                            ttl: *ttl,
                        },
                    )
                    .as_union_value(),
                ),
                LeaseOutcome::Revoked => (
                    fb::Response::LeaseRevokeResponse,
                    fb::LeaseRevokeResponse::create(
                        &mut b,
                        &fb::LeaseRevokeResponseArgs { header },
                    )
                    .as_union_value(),
                ),
                LeaseOutcome::Renewed { ttls } => {
                    let ttls = Some(b.create_vector(ttls));
                    (
                        fb::Response::LeaseRenewResponse,
                        fb::LeaseRenewResponse::create(
                            &mut b,
                            &fb::LeaseRenewResponseArgs { header, ttls },
                        )
                        .as_union_value(),
                    )
                }
                LeaseOutcome::Expired { ids } => {
                    let ids = Some(b.create_vector(ids));
                    (
                        fb::Response::LeaseExpireResponse,
                        fb::LeaseExpireResponse::create(
                            &mut b,
                            &fb::LeaseExpireResponseArgs { header, ids },
                        )
                        .as_union_value(),
                    )
                }
            }
        }
        Response::Lease(LeaseAnswer::KeepAlive { header, id, ttl }) => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::LeaseKeepAliveResponse,
                fb::LeaseKeepAliveResponse::create(
                    &mut b,
                    &fb::LeaseKeepAliveResponseArgs {
                        header,
                        id: *id,
                        ttl: *ttl,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Lease(LeaseAnswer::TimeToLive {
            header,
            id,
            ttl,
            granted_ttl,
            keys,
        }) => {
            let header = Some(encode_header(&mut b, header));
            let keys: Vec<_> = keys
                .iter()
                .map(|key| {
                    let key = bytes_vector(&mut b, key);
                    fb::LeaseKey::create(&mut b, &fb::LeaseKeyArgs { key })
                })
                .collect();
            let keys = Some(b.create_vector(&keys));
            (
                fb::Response::LeaseTimeToLiveResponse,
                fb::LeaseTimeToLiveResponse::create(
                    &mut b,
                    &fb::LeaseTimeToLiveResponseArgs {
                        header,
                        id: *id,
                        ttl: *ttl,
                        granted_ttl: *granted_ttl,
                        keys,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Lease(LeaseAnswer::Leases { header, ids }) => {
            let header = Some(encode_header(&mut b, header));
            let ids = Some(b.create_vector(ids));
            (
                fb::Response::LeaseLeasesResponse,
                fb::LeaseLeasesResponse::create(
                    &mut b,
                    &fb::LeaseLeasesResponseArgs { header, ids },
                )
                .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Locked { header, key }) => {
            let header = Some(encode_header(&mut b, header));
            let key = bytes_vector(&mut b, key);
            (
                fb::Response::LockResponse,
                fb::LockResponse::create(&mut b, &fb::LockResponseArgs { header, key })
                    .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Unlocked { header }) => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::UnlockResponse,
                fb::UnlockResponse::create(&mut b, &fb::UnlockResponseArgs { header })
                    .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Campaigned { header, leader }) => {
            let header = Some(encode_header(&mut b, header));
            let leader = Some(encode_leader_key(&mut b, leader));
            (
                fb::Response::CampaignResponse,
                fb::CampaignResponse::create(&mut b, &fb::CampaignResponseArgs { header, leader })
                    .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Proclaimed { header }) => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::ProclaimResponse,
                fb::ProclaimResponse::create(&mut b, &fb::ProclaimResponseArgs { header })
                    .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Leader { header, kv }) => {
            let header = Some(encode_header(&mut b, header));
            let kv = Some(encode_kv(&mut b, kv));
            (
                fb::Response::LeaderResponse,
                fb::LeaderResponse::create(&mut b, &fb::LeaderResponseArgs { header, kv })
                    .as_union_value(),
            )
        }
        Response::Coordination(CoordinationResponse::Resigned { header }) => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::ResignResponse,
                fb::ResignResponse::create(&mut b, &fb::ResignResponseArgs { header })
                    .as_union_value(),
            )
        }
        Response::Auth(auth) => {
            let header = Some(encode_header(&mut b, &auth.header));
            let token = Some(b.create_string(&auth.token));
            let names = Some(string_vector(&mut b, &auth.names));
            let permissions: Vec<_> = auth
                .permissions
                .iter()
                .map(|p| encode_auth_permission(&mut b, p))
                .collect();
            let permissions = Some(b.create_vector(&permissions));
            (
                fb::Response::AuthResponse,
                fb::AuthResponse::create(
                    &mut b,
                    &fb::AuthResponseArgs {
                        header,
                        enabled: auth.enabled,
                        auth_revision: auth.auth_revision,
                        token,
                        names,
                        permissions,
                    },
                )
                .as_union_value(),
            )
        }
        Response::MoveLeader { header } => {
            let header = Some(encode_header(&mut b, header));
            (
                fb::Response::MoveLeaderResponse,
                fb::MoveLeaderResponse::create(&mut b, &fb::MoveLeaderResponseArgs { header })
                    .as_union_value(),
            )
        }
        Response::Snapshot {
            header,
            remaining_bytes,
            data,
        } => {
            let header = Some(encode_header(&mut b, header));
            let data = bytes_vector(&mut b, data);
            (
                fb::Response::SnapshotResponse,
                fb::SnapshotResponse::create(
                    &mut b,
                    &fb::SnapshotResponseArgs {
                        header,
                        data,
                        remaining_bytes: *remaining_bytes,
                    },
                )
                .as_union_value(),
            )
        }
        Response::Error { code, message } => {
            let message = Some(b.create_string(message));
            (
                fb::Response::ErrorResponse,
                fb::ErrorResponse::create(
                    &mut b,
                    &fb::ErrorResponseArgs {
                        code: *code,
                        message,
                    },
                )
                .as_union_value(),
            )
        }
    };
    let frame = fb::ResponseFrame::create(
        &mut b,
        &fb::ResponseFrameArgs {
            id,
            response_type,
            response: Some(body),
        },
    );
    b.finish(frame, None);
    b.finished_data().to_vec()
}

// ----- decoding -----

/// Zero-copy view of a byte vector of the frame.
fn slice(frame: &Bytes, vector: Option<Vector<'_, u8>>) -> Bytes {
    match vector {
        Some(v) if !v.bytes().is_empty() => frame.slice_ref(v.bytes()),
        _ => Bytes::new(),
    }
}

fn decode_kv(frame: &Bytes, kv: fb::KeyValue<'_>) -> KeyValue {
    KeyValue {
        key: slice(frame, kv.key()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        value: slice(frame, kv.value()),
        lease: kv.lease(),
    }
}

fn decode_kvs(
    frame: &Bytes,
    kvs: Option<Vector<'_, ForwardsUOffset<fb::KeyValue<'_>>>>,
) -> Vec<KeyValue> {
    kvs.map(|v| v.iter().map(|kv| decode_kv(frame, kv)).collect())
        .unwrap_or_default()
}

fn decode_header(h: Option<fb::ResponseHeader<'_>>) -> ResponseHeader {
    h.map_or_else(ResponseHeader::default, |h| ResponseHeader {
        cluster_id: h.cluster_id(),
        member_id: h.member_id(),
        revision: h.revision(),
        raft_term: h.raft_term(),
    })
}

fn decode_range(frame: &Bytes, r: fb::RangeRequest<'_>) -> RangeRequest {
    RangeRequest {
        key: slice(frame, r.key()),
        range_end: slice(frame, r.range_end()),
        limit: r.limit(),
        revision: r.revision(),
        sort_order: SortOrder::from_i32(r.sort_order().0),
        sort_target: SortTarget::from_i32(r.sort_target().0),
        serializable: r.serializable(),
        keys_only: r.keys_only(),
        count_only: r.count_only(),
        min_mod_revision: r.min_mod_revision(),
        max_mod_revision: r.max_mod_revision(),
        min_create_revision: r.min_create_revision(),
        max_create_revision: r.max_create_revision(),
    }
}

fn decode_put(frame: &Bytes, p: fb::PutRequest<'_>) -> PutRequest {
    PutRequest {
        key: slice(frame, p.key()),
        value: slice(frame, p.value()),
        lease: p.lease(),
        prev_kv: p.prev_kv(),
        ignore_value: p.ignore_value(),
        ignore_lease: p.ignore_lease(),
    }
}

fn decode_delete(frame: &Bytes, d: fb::DeleteRangeRequest<'_>) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: slice(frame, d.key()),
        range_end: slice(frame, d.range_end()),
        prev_kv: d.prev_kv(),
    }
}

fn decode_compare(frame: &Bytes, c: fb::Compare<'_>) -> Compare {
    let number = c.number();
    let operand = match c.operand() {
        fb::CompareOperand::Version => CompareOperand::Version(number),
        fb::CompareOperand::Create => CompareOperand::Create(number),
        fb::CompareOperand::Mod => CompareOperand::Mod(number),
        fb::CompareOperand::Lease => CompareOperand::Lease(number),
        fb::CompareOperand::Value => CompareOperand::Value(slice(frame, c.value())),
        _ => CompareOperand::None,
    };
    Compare {
        result: CompareResult::from_i32(c.result().0),
        target: CompareTarget::from_i32(c.target().0),
        key: slice(frame, c.key()),
        range_end: slice(frame, c.range_end()),
        operand,
    }
}

fn decode_ops(
    frame: &Bytes,
    ops: Option<Vector<'_, ForwardsUOffset<fb::RequestOp<'_>>>>,
) -> Vec<RequestOp> {
    let Some(ops) = ops else { return Vec::new() };
    ops.iter()
        .map(|op| {
            if let Some(r) = op.request_as_range_request() {
                RequestOp::Range(decode_range(frame, r))
            } else if let Some(p) = op.request_as_put_request() {
                RequestOp::Put(decode_put(frame, p))
            } else if let Some(d) = op.request_as_delete_range_request() {
                RequestOp::DeleteRange(decode_delete(frame, d))
            } else if let Some(t) = op.request_as_txn_request() {
                RequestOp::Txn(decode_txn(frame, t))
            } else {
                // Nothing set, or a request kind a txn cannot hold: etcd's empty op.
                RequestOp::Empty
            }
        })
        .collect()
}

fn decode_txn(frame: &Bytes, t: fb::TxnRequest<'_>) -> TxnRequest {
    TxnRequest {
        compare: t
            .compare()
            .map(|v| v.iter().map(|c| decode_compare(frame, c)).collect())
            .unwrap_or_default(),
        success: decode_ops(frame, t.success()),
        failure: decode_ops(frame, t.failure()),
    }
}

/// Decodes and verifies a request frame's flatbuffer.
pub fn decode_request(frame: &Bytes) -> Result<(u64, Request), DecodeError> {
    decode_request_as(frame).map(|(id, request, _)| (id, request))
}

/// `decode_request`, with the auth token the frame carries, if any.
pub fn decode_request_as(frame: &Bytes) -> Result<(u64, Request, Option<String>), DecodeError> {
    let root = flatbuffers::root::<fb::RequestFrame>(frame)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let id = root.id();
    let token = root.token().map(str::to_string);
    let request = if let Some(r) = root.request_as_range_request() {
        Request::Range(decode_range(frame, r))
    } else if let Some(p) = root.request_as_put_request() {
        Request::Write(WriteRequest::Put(decode_put(frame, p)))
    } else if let Some(d) = root.request_as_delete_range_request() {
        Request::Write(WriteRequest::DeleteRange(decode_delete(frame, d)))
    } else if let Some(t) = root.request_as_txn_request() {
        Request::Write(WriteRequest::Txn(decode_txn(frame, t)))
    } else if let Some(c) = root.request_as_compaction_request() {
        Request::Write(WriteRequest::Compact(CompactionRequest {
            revision: c.revision(),
            physical: c.physical(),
        }))
    } else if root.request_as_status_request().is_some() {
        Request::Status
    } else if root.request_as_snapshot_request().is_some() {
        Request::Snapshot
    } else if let Some(a) = root.request_as_alarm_request() {
        let action = AlarmAction::from_number(a.action()).ok_or_else(|| {
            DecodeError::Malformed(format!("unknown alarm action {}", a.action()))
        })?;
        let alarm = AlarmType::from_number(a.alarm())
            .ok_or_else(|| DecodeError::Malformed(format!("unknown alarm type {}", a.alarm())))?;
        Request::Alarm(AlarmRequest {
            action,
            member_id: a.member_id(),
            alarm,
        })
    } else if let Some(m) = root.request_as_member_add_request() {
        Request::Member(MemberRequest::Add {
            peer_urls: strings(m.peer_urls()),
            is_learner: m.is_learner(),
        })
    } else if let Some(m) = root.request_as_member_remove_request() {
        Request::Member(MemberRequest::Remove(m.id()))
    } else if let Some(m) = root.request_as_member_update_request() {
        Request::Member(MemberRequest::Update {
            id: m.id(),
            peer_urls: strings(m.peer_urls()),
        })
    } else if let Some(m) = root.request_as_member_list_request() {
        Request::Member(MemberRequest::List {
            linearizable: m.linearizable(),
        })
    } else if let Some(m) = root.request_as_member_promote_request() {
        Request::Member(MemberRequest::Promote(m.id()))
    } else if let Some(m) = root.request_as_move_leader_request() {
        Request::MoveLeader(m.target_id())
    } else if let Some(h) = root.request_as_hash_kv_request() {
        Request::HashKv(h.revision())
    } else if let Some(g) = root.request_as_lease_grant_request() {
        Request::Write(WriteRequest::Lease(LeaseRequest::Grant {
            id: g.id(),
            ttl: g.ttl(),
        }))
    } else if let Some(r) = root.request_as_lease_revoke_request() {
        Request::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: r.id() }))
    } else if let Some(r) = root.request_as_lease_renew_request() {
        Request::Write(WriteRequest::Lease(LeaseRequest::Renew {
            ids: r.ids().into_iter().flatten().collect(),
        }))
    } else if let Some(e) = root.request_as_lease_expire_request() {
        let ids: Vec<i64> = e.ids().into_iter().flatten().collect();
        let generations: Vec<u64> = e.generations().into_iter().flatten().collect();
        if ids.len() != generations.len() {
            return Err(DecodeError::Malformed(
                "a lease expiry with unmatched ids and generations".into(),
            ));
        }
        Request::Write(WriteRequest::Lease(LeaseRequest::Expire {
            leases: ids.into_iter().zip(generations).collect(),
        }))
    } else if let Some(k) = root.request_as_lease_keep_alive_request() {
        Request::Lease(LeaseQuery::KeepAlive(k.id()))
    } else if let Some(t) = root.request_as_lease_time_to_live_request() {
        Request::Lease(LeaseQuery::TimeToLive {
            id: t.id(),
            keys: t.keys(),
        })
    } else if root.request_as_lease_leases_request().is_some() {
        Request::Lease(LeaseQuery::Leases)
    } else if let Some(l) = root.request_as_lock_request() {
        Request::Coordination(CoordinationRequest::Lock {
            name: slice(frame, l.name()),
            lease: l.lease(),
        })
    } else if let Some(u) = root.request_as_unlock_request() {
        Request::Coordination(CoordinationRequest::Unlock {
            key: slice(frame, u.key()),
        })
    } else if let Some(c) = root.request_as_campaign_request() {
        Request::Coordination(CoordinationRequest::Campaign {
            name: slice(frame, c.name()),
            lease: c.lease(),
            value: slice(frame, c.value()),
        })
    } else if let Some(p) = root.request_as_proclaim_request() {
        Request::Coordination(CoordinationRequest::Proclaim {
            leader: decode_leader_key(frame, p.leader()),
            value: slice(frame, p.value()),
        })
    } else if let Some(l) = root.request_as_leader_request() {
        Request::Coordination(CoordinationRequest::Leader {
            name: slice(frame, l.name()),
        })
    } else if let Some(o) = root.request_as_observe_request() {
        Request::Coordination(CoordinationRequest::Observe {
            name: slice(frame, o.name()),
        })
    } else if let Some(r) = root.request_as_resign_request() {
        Request::Coordination(CoordinationRequest::Resign {
            leader: decode_leader_key(frame, r.leader()),
        })
    } else if let Some(a) = root.request_as_auth_request() {
        Request::Auth(decode_auth_request(frame, a)?)
    } else if let Some(w) = root.request_as_watch_request() {
        Request::Watch(match w.action() {
            fb::WatchAction::Create => {
                let c = w.creation().ok_or_else(|| {
                    DecodeError::Malformed("a watch creation without its fields".into())
                })?;
                WatchRequest::Create(crate::watch::stream::CreateWatch {
                    key: slice(frame, c.key()),
                    range_end: slice(frame, c.range_end()),
                    start_revision: c.start_revision(),
                    progress_notify: c.progress_notify(),
                    no_put: c.no_put(),
                    no_delete: c.no_delete(),
                    prev_kv: c.prev_kv(),
                    watch_id: c.watch_id(),
                    fragment: c.fragment(),
                })
            }
            fb::WatchAction::Cancel => WatchRequest::Cancel(w.watch_id()),
            fb::WatchAction::Progress => WatchRequest::Progress,
            other => {
                return Err(DecodeError::Malformed(format!(
                    "unknown watch action {}",
                    other.0
                )))
            }
        })
    } else {
        return Err(DecodeError::Empty);
    };
    Ok((id, request, token))
}

/// The request id of a frame, if its flatbuffer verifies (for answering a frame that failed
/// further decoding).
pub fn request_id(frame: &Bytes) -> Option<u64> {
    flatbuffers::root::<fb::RequestFrame>(frame)
        .ok()
        .map(|root| root.id())
}

fn decode_range_response(frame: &Bytes, r: fb::RangeResponse<'_>) -> RangeResponse {
    RangeResponse {
        header: decode_header(r.header()),
        kvs: decode_kvs(frame, r.kvs()),
        more: r.more(),
        count: r.count(),
    }
}

fn decode_put_response(frame: &Bytes, r: fb::PutResponse<'_>) -> PutResponse {
    PutResponse {
        header: decode_header(r.header()),
        prev_kv: r.prev_kv().map(|kv| decode_kv(frame, kv)),
    }
}

fn decode_delete_response(frame: &Bytes, r: fb::DeleteRangeResponse<'_>) -> DeleteRangeResponse {
    DeleteRangeResponse {
        header: decode_header(r.header()),
        deleted: r.deleted(),
        prev_kvs: decode_kvs(frame, r.prev_kvs()),
    }
}

fn decode_txn_response(frame: &Bytes, r: fb::TxnResponse<'_>) -> Result<TxnResponse, DecodeError> {
    let mut responses = Vec::new();
    for op in r.responses().iter().flatten() {
        responses.push(if let Some(x) = op.response_as_range_response() {
            ResponseOp::Range(decode_range_response(frame, x))
        } else if let Some(x) = op.response_as_put_response() {
            ResponseOp::Put(decode_put_response(frame, x))
        } else if let Some(x) = op.response_as_delete_range_response() {
            ResponseOp::DeleteRange(decode_delete_response(frame, x))
        } else if let Some(x) = op.response_as_txn_response() {
            ResponseOp::Txn(decode_txn_response(frame, x)?)
        } else {
            return Err(DecodeError::Malformed(
                "txn response op without a response".into(),
            ));
        });
    }
    Ok(TxnResponse {
        header: decode_header(r.header()),
        succeeded: r.succeeded(),
        responses,
    })
}

fn lease_response(header: Option<fb::ResponseHeader<'_>>, outcome: LeaseOutcome) -> Response {
    Response::Write(WriteResponse::Lease(LeaseResponse {
        header: decode_header(header),
        outcome,
    }))
}

/// Decodes and verifies a response frame's flatbuffer.
pub fn decode_response(frame: &Bytes) -> Result<(u64, Response), DecodeError> {
    let root = flatbuffers::root::<fb::ResponseFrame>(frame)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let id = root.id();
    let response = if let Some(r) = root.response_as_range_response() {
        Response::Range(decode_range_response(frame, r))
    } else if let Some(r) = root.response_as_put_response() {
        Response::Write(WriteResponse::Put(decode_put_response(frame, r)))
    } else if let Some(r) = root.response_as_delete_range_response() {
        Response::Write(WriteResponse::DeleteRange(decode_delete_response(frame, r)))
    } else if let Some(r) = root.response_as_txn_response() {
        Response::Write(WriteResponse::Txn(decode_txn_response(frame, r)?))
    } else if let Some(r) = root.response_as_compaction_response() {
        Response::Write(WriteResponse::Compact(CompactionResponse {
            header: decode_header(r.header()),
        }))
    } else if let Some(s) = root.response_as_status_response() {
        Response::Status(StatusResponse {
            header: decode_header(s.header()),
            version: s.version().unwrap_or_default().to_string(),
            db_size: s.db_size(),
            leader: s.leader(),
            raft_index: s.raft_index(),
            raft_term: s.raft_term(),
            raft_applied_index: s.raft_applied_index(),
            stages: s
                .stages()
                .iter()
                .flatten()
                .map(|stage| StageSummary {
                    name: stage.name().unwrap_or_default().to_string(),
                    count: stage.count(),
                    p50_ns: stage.p50_ns(),
                    p99_ns: stage.p99_ns(),
                    p999_ns: stage.p999_ns(),
                    max_ns: stage.max_ns(),
                })
                .collect(),
            is_learner: s.is_learner(),
        })
    } else if let Some(m) = root.response_as_member_response() {
        Response::Members {
            header: decode_header(m.header()),
            member: m.member().map(decode_member),
            members: m
                .members()
                .into_iter()
                .flatten()
                .map(decode_member)
                .collect(),
        }
    } else if let Some(h) = root.response_as_hash_kv_response() {
        Response::HashKv {
            header: decode_header(h.header()),
            hash: h.hash(),
            compact_revision: h.compact_revision(),
            hash_revision: h.hash_revision(),
        }
    } else if let Some(w) = root.response_as_watch_response() {
        let mut events = Vec::new();
        for e in w.events().into_iter().flatten() {
            let kind = match e.type_() {
                fb::EventType::Put => crate::watch::EventKind::Put,
                fb::EventType::Delete => crate::watch::EventKind::Delete,
                other => {
                    return Err(DecodeError::Malformed(format!(
                        "unknown event type {}",
                        other.0
                    )))
                }
            };
            events.push(crate::watch::Event {
                kind,
                kv: e.kv().map(|kv| decode_kv(frame, kv)).unwrap_or_default(),
                prev_kv: e.prev_kv().map(|kv| decode_kv(frame, kv)),
                sub: 0,
            });
        }
        let header = decode_header(w.header());
        Response::Watch {
            response: crate::watch::stream::WatchResponse {
                revision: header.revision,
                watch_id: w.watch_id(),
                created: w.created(),
                canceled: w.canceled(),
                compact_revision: w.compact_revision(),
                cancel_reason: w.cancel_reason().unwrap_or_default().to_string(),
                events,
                fragment: false,
            },
            header,
        }
    } else if let Some(g) = root.response_as_lease_grant_response() {
        lease_response(
            g.header(),
            LeaseOutcome::Granted {
                id: g.id(),
                ttl: g.ttl(),
            },
        )
    } else if let Some(r) = root.response_as_lease_revoke_response() {
        lease_response(r.header(), LeaseOutcome::Revoked)
    } else if let Some(r) = root.response_as_lease_renew_response() {
        lease_response(
            r.header(),
            LeaseOutcome::Renewed {
                ttls: r.ttls().into_iter().flatten().collect(),
            },
        )
    } else if let Some(e) = root.response_as_lease_expire_response() {
        lease_response(
            e.header(),
            LeaseOutcome::Expired {
                ids: e.ids().into_iter().flatten().collect(),
            },
        )
    } else if let Some(k) = root.response_as_lease_keep_alive_response() {
        Response::Lease(LeaseAnswer::KeepAlive {
            header: decode_header(k.header()),
            id: k.id(),
            ttl: k.ttl(),
        })
    } else if let Some(t) = root.response_as_lease_time_to_live_response() {
        Response::Lease(LeaseAnswer::TimeToLive {
            header: decode_header(t.header()),
            id: t.id(),
            ttl: t.ttl(),
            granted_ttl: t.granted_ttl(),
            keys: t
                .keys()
                .into_iter()
                .flatten()
                .map(|key| slice(frame, key.key()))
                .collect(),
        })
    } else if let Some(l) = root.response_as_lease_leases_response() {
        Response::Lease(LeaseAnswer::Leases {
            header: decode_header(l.header()),
            ids: l.ids().into_iter().flatten().collect(),
        })
    } else if let Some(l) = root.response_as_lock_response() {
        Response::Coordination(CoordinationResponse::Locked {
            header: decode_header(l.header()),
            key: slice(frame, l.key()),
        })
    } else if let Some(u) = root.response_as_unlock_response() {
        Response::Coordination(CoordinationResponse::Unlocked {
            header: decode_header(u.header()),
        })
    } else if let Some(c) = root.response_as_campaign_response() {
        Response::Coordination(CoordinationResponse::Campaigned {
            header: decode_header(c.header()),
            leader: decode_leader_key(frame, c.leader()),
        })
    } else if let Some(p) = root.response_as_proclaim_response() {
        Response::Coordination(CoordinationResponse::Proclaimed {
            header: decode_header(p.header()),
        })
    } else if let Some(l) = root.response_as_leader_response() {
        Response::Coordination(CoordinationResponse::Leader {
            header: decode_header(l.header()),
            kv: l.kv().map(|kv| decode_kv(frame, kv)).unwrap_or_default(),
        })
    } else if let Some(r) = root.response_as_resign_response() {
        Response::Coordination(CoordinationResponse::Resigned {
            header: decode_header(r.header()),
        })
    } else if let Some(a) = root.response_as_auth_response() {
        let mut permissions = Vec::new();
        for p in a.permissions().into_iter().flatten() {
            permissions.push(decode_auth_permission(frame, p)?);
        }
        Response::Auth(crate::auth::request::AuthResponse {
            header: decode_header(a.header()),
            enabled: a.enabled(),
            auth_revision: a.auth_revision(),
            token: a.token().unwrap_or_default().to_string(),
            names: strings(a.names()),
            permissions,
        })
    } else if let Some(m) = root.response_as_move_leader_response() {
        Response::MoveLeader {
            header: decode_header(m.header()),
        }
    } else if let Some(s) = root.response_as_snapshot_response() {
        Response::Snapshot {
            header: decode_header(s.header()),
            remaining_bytes: s.remaining_bytes(),
            data: slice(frame, s.data()),
        }
    } else if let Some(a) = root.response_as_alarm_response() {
        let mut alarms = Vec::new();
        for m in a.alarms().into_iter().flatten() {
            let alarm = AlarmType::from_number(m.alarm()).ok_or_else(|| {
                DecodeError::Malformed(format!("unknown alarm type {}", m.alarm()))
            })?;
            alarms.push(AlarmMember {
                member_id: m.member_id(),
                alarm,
            });
        }
        Response::Alarm(AlarmResponse {
            header: decode_header(a.header()),
            alarms,
        })
    } else if let Some(e) = root.response_as_error_response() {
        Response::Error {
            code: e.code(),
            message: e.message().unwrap_or_default().to_string(),
        }
    } else {
        return Err(DecodeError::Empty);
    };
    Ok((id, response))
}
