//! The native codec of response frames: `encode_response` and `decode_response`.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use lode_protocol::fb;

use super::kv::{
    decode_delete_response, decode_kv, decode_put_response, decode_range_response,
    decode_txn_response, encode_delete_response, encode_kv, encode_put_response,
    encode_range_response, encode_txn_response,
};
use super::{
    bytes_vector, decode_auth_permission, decode_header, decode_leader_key, decode_member,
    encode_auth_permission, encode_header, encode_leader_key, encode_member, slice, string_vector,
    strings, DecodeError,
};
use crate::alarm::{AlarmMember, AlarmResponse, AlarmType};
use crate::api::request::*;
use crate::lease::LeaseOutcome;
use crate::mvcc::request::*;
use crate::replica::stages::StageSummary;

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
                        fragment: response.fragment,
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
                fragment: w.fragment(),
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
