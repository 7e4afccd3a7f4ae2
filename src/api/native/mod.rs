//! The native protocol's codec: lode's request envelope (`api::request`, re-exported here) to
//! and from the flatbuffers frames of `lode-protocol`. Pure.
//!
//! Decoding verifies the flatbuffer before reading it (bounds, alignment, depth) and never
//! panics on any input; byte fields are zero-copy slices of the frame. The same `RequestFrame`
//! encoding is what a write is stored as in the Raft log.
//!
//! The codec is split by what it carries: `requests` encodes and decodes request frames (the
//! envelope, with auth requests), `responses` response frames, and `kv` the KV model both
//! carry (key-values, range, put, delete and txn with their responses). This module holds
//! what they share: the decode error, the builder and byte helpers, response headers, leader
//! keys, auth permissions and members.

mod kv;
mod requests;
mod responses;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};
use lode_protocol::fb;

use crate::members::Member;
use crate::mvcc::request::ResponseHeader;

pub use super::request::*;
pub use requests::{
    decode_request, decode_request_as, encode_request, encode_request_as, request_id, RequestMeta,
};
pub use responses::{decode_response, encode_response};

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

type Builder<'a> = FlatBufferBuilder<'a>;

fn bytes_vector<'a>(b: &mut Builder<'a>, bytes: &[u8]) -> Option<WIPOffset<Vector<'a, u8>>> {
    Some(b.create_vector(bytes))
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
            id: member.id.get(),
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
        id: crate::ids::MemberId::new(member.id()),
        name: member.name().unwrap_or_default().to_string(),
        peer_urls: strings(member.peer_urls()),
        client_urls: strings(member.client_urls()),
        is_learner: member.is_learner(),
    }
}

/// Zero-copy view of a byte vector of the frame.
fn slice(frame: &Bytes, vector: Option<Vector<'_, u8>>) -> Bytes {
    match vector {
        Some(v) if !v.bytes().is_empty() => frame.slice_ref(v.bytes()),
        _ => Bytes::new(),
    }
}

fn decode_header(h: Option<fb::ResponseHeader<'_>>) -> ResponseHeader {
    h.map_or_else(ResponseHeader::default, |h| ResponseHeader {
        cluster_id: h.cluster_id(),
        member_id: h.member_id(),
        revision: h.revision(),
        raft_term: h.raft_term(),
    })
}
