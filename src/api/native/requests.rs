//! The native codec of request frames: `encode_request` and `decode_request` (each with an
//! `_as` twin carrying the auth token), `request_id`, and the auth requests they carry.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};
use lode_protocol::fb;

use super::kv::{
    decode_delete, decode_put, decode_range, decode_txn, encode_delete, encode_put, encode_range,
    encode_txn,
};
use super::{
    bytes_vector, decode_auth_permission, decode_leader_key, encode_auth_permission,
    encode_leader_key, slice, string_vector, strings, Builder, DecodeError,
};
use crate::alarm::{AlarmAction, AlarmRequest, AlarmType};
use crate::api::request::*;
use crate::lease::LeaseRequest;
use crate::mvcc::request::*;

/// What a request frame carries besides its request: the native protocol's counterpart of
/// gRPC's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// An auth token (who the request speaks for while auth is on).
    pub token: Option<String>,
    /// etcd's `hasleader`: refuse the request with "etcdserver: no leader" while the member
    /// knows none.
    pub require_leader: bool,
}

/// Encodes a request frame.
pub fn encode_request(id: u64, request: &Request) -> Vec<u8> {
    encode_request_as(id, request, &RequestMeta::default())
}

/// `encode_request`, carrying `meta` (a token, `require_leader`).
pub fn encode_request_as(id: u64, request: &Request, meta: &RequestMeta) -> Vec<u8> {
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
                            require_leader: create.require_leader,
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
    let token = meta.token.as_deref().map(|token| b.create_string(token));
    let frame = fb::RequestFrame::create(
        &mut b,
        &fb::RequestFrameArgs {
            id,
            request_type,
            request: Some(body),
            token,
            require_leader: meta.require_leader,
        },
    );
    b.finish(frame, None);
    b.finished_data().to_vec()
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

/// Decodes and verifies a request frame's flatbuffer.
pub fn decode_request(frame: &Bytes) -> Result<(u64, Request), DecodeError> {
    decode_request_as(frame).map(|(id, request, _)| (id, request))
}

/// `decode_request`, with what the frame carries besides (its token, `require_leader`).
pub fn decode_request_as(frame: &Bytes) -> Result<(u64, Request, RequestMeta), DecodeError> {
    let root = flatbuffers::root::<fb::RequestFrame>(frame)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let id = root.id();
    let meta = RequestMeta {
        token: root.token().map(str::to_string),
        require_leader: root.require_leader(),
    };
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
                    require_leader: c.require_leader(),
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
    Ok((id, request, meta))
}

/// The request id of a frame, if its flatbuffer verifies (for answering a frame that failed
/// further decoding).
pub fn request_id(frame: &Bytes) -> Option<u64> {
    flatbuffers::root::<fb::RequestFrame>(frame)
        .ok()
        .map(|root| root.id())
}
