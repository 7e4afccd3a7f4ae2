//! The peer protocol's frames: a batch of Raft messages from one member of one cluster, or one
//! chunk of a snapshot file being sent to a member. Pure.
//!
//! ```text
//! u32  length of the rest of the frame
//! u16  version (PEER_WIRE_VERSION)
//! u16  kind: 0 messages, 1 snapshot chunk, 2 members query, 3 members, 4 hello,
//!           5 report query, 6 report
//! u64  cluster ID of the sender
//! u64  member ID of the sender
//! messages:       u32 number of messages
//!                 then, per message: u32 length | raft-rs `eraftpb::Message` (protobuf)
//! snapshot chunk: u64 snapshot index | u64 snapshot term | u64 offset | u64 file size
//!                 | u32 CRC32C of the data | data (the rest of the frame)
//! members query:  nothing (cluster and member ID 0: a member joining does not know them yet)
//! members:        the member registry (`Members::encode`), the answer to a query
//! hello:          u16 number of URLs, then per URL: u16 length | UTF-8 (the sender's peer URLs)
//! report query:   u64 the first dashboard sample wanted
//! report:         the answering member's dashboard report (`dashboard::MemberReport`) as JSON
//! ```
//!
//! Little-endian. A receiver refuses a frame of another cluster or version, a frame longer
//! than its limit, any message not from the frame's sender or not to itself, and a chunk whose
//! checksum does not match: it never hands Raft a message it cannot account for. A snapshot
//! travels on a connection of its own: its chunks in order, then the frame holding Raft's
//! `MsgSnapshot`, answered by one byte (`SNAPSHOT_ACCEPTED` or `SNAPSHOT_REFUSED`). A member
//! joining a running cluster (`--initial-cluster-state existing`) asks a peer for the members
//! and is answered with the registry and the cluster's ID, as etcd's joiners ask its peers. A
//! member removed from the cluster that still sends is answered `REMOVED_NOTICE` and cut off.
//! A sender opens each message connection with a hello naming its peer URLs, as etcd's peers
//! send `X-PeerURLs`: a receiver whose configuration does not list the sender yet (it was away
//! while the sender was added) can still answer it. A member's dashboard asks each other member
//! for its report (status and per-second samples) over the peer port, on a connection of its
//! own: the peer port's authentication (peer TLS) stands for the caller, so the dashboard's view
//! of the cluster does not need a client user when auth is on.

use bytes::{Buf, BufMut, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

/// The peer protocol version this build speaks.
pub const PEER_WIRE_VERSION: u16 = 1;

/// Bytes of the common header (after the length).
const COMMON_BYTES: usize = 2 + 2 + 8 + 8;

/// Bytes before the messages (after the length).
const HEADER_BYTES: usize = COMMON_BYTES + 4;

/// Bytes of a snapshot chunk's header (after the common header).
const CHUNK_HEADER_BYTES: usize = 8 + 8 + 8 + 8 + 4;

const KIND_MESSAGES: u16 = 0;
const KIND_SNAPSHOT_CHUNK: u16 = 1;
const KIND_MEMBERS_QUERY: u16 = 2;
const KIND_MEMBERS: u16 = 3;
const KIND_HELLO: u16 = 4;
const KIND_REPORT_QUERY: u16 = 5;
const KIND_REPORT: u16 = 6;

/// Most peer URLs a hello may name.
pub const MAX_HELLO_URLS: usize = 16;

/// Longest peer URL a hello may name.
pub const MAX_HELLO_URL_BYTES: usize = 1024;

fn put_common(out: &mut BytesMut, length: usize, kind: u16, cluster_id: u64, from: u64) {
    out.put_u32_le((COMMON_BYTES + length) as u32);
    out.put_u16_le(PEER_WIRE_VERSION);
    out.put_u16_le(kind);
    out.put_u64_le(cluster_id);
    out.put_u64_le(from);
}

/// Appends a members query (from a member that does not know its cluster yet) to `out`.
pub fn encode_members_query(out: &mut BytesMut) {
    put_common(out, 0, KIND_MEMBERS_QUERY, 0, 0);
}

/// Appends the answer to a members query: the registry's bytes (`Members::encode`) from
/// member `from` of cluster `cluster_id`.
pub fn encode_members(cluster_id: u64, from: u64, registry: &[u8], out: &mut BytesMut) {
    put_common(out, registry.len(), KIND_MEMBERS, cluster_id, from);
    out.put_slice(registry);
}

/// Appends a hello from member `from` of cluster `cluster_id`, naming its peer URLs: the first
/// `MAX_HELLO_URLS` no longer than `MAX_HELLO_URL_BYTES` (a receiver refuses more).
pub fn encode_hello(cluster_id: u64, from: u64, peer_urls: &[String], out: &mut BytesMut) {
    let urls: Vec<&String> = peer_urls
        .iter()
        .filter(|url| url.len() <= MAX_HELLO_URL_BYTES)
        .take(MAX_HELLO_URLS)
        .collect();
    let length = 2 + urls.iter().map(|url| 2 + url.len()).sum::<usize>();
    put_common(out, length, KIND_HELLO, cluster_id, from);
    out.put_u16_le(urls.len() as u16);
    for url in urls {
        out.put_u16_le(url.len() as u16);
        out.put_slice(url.as_bytes());
    }
}

/// Appends a report query from member `from` of cluster `cluster_id`, wanting the dashboard
/// samples numbered `first_sample` on.
pub fn encode_report_query(cluster_id: u64, from: u64, first_sample: u64, out: &mut BytesMut) {
    put_common(out, 8, KIND_REPORT_QUERY, cluster_id, from);
    out.put_u64_le(first_sample);
}

/// Appends the answer to a report query: the report's bytes from member `from`.
pub fn encode_report(cluster_id: u64, from: u64, report: &[u8], out: &mut BytesMut) {
    put_common(out, report.len(), KIND_REPORT, cluster_id, from);
    out.put_slice(report);
}

/// Reads the answer to a report query from member `expected` of cluster `cluster_id`: the
/// report's bytes, or `None` until it is whole. Any other frame is an error.
pub fn decode_report(
    buffer: &mut BytesMut,
    cluster_id: u64,
    expected: u64,
    limit: usize,
) -> Result<Option<bytes::Bytes>, WireError> {
    let Some(FrameHeader {
        kind,
        cluster_id: theirs,
        from,
        body,
    }) = take_frame(buffer, limit)?
    else {
        return Ok(None);
    };
    if theirs != cluster_id {
        return Err(WireError::OtherCluster {
            from,
            theirs,
            ours: cluster_id,
        });
    }
    if kind != KIND_REPORT || from != expected {
        return Err(WireError::Malformed(format!(
            "expected member {expected:x}'s report, got a frame of kind {kind} from {from:x}"
        )));
    }
    Ok(Some(body.freeze()))
}

/// Reads the answer to a members query: (cluster ID, answering member, registry), or `None`
/// until it is whole. Any other frame is an error.
pub fn decode_members(
    buffer: &mut BytesMut,
    limit: usize,
) -> Result<Option<(u64, u64, crate::members::Members)>, WireError> {
    let Some(FrameHeader {
        kind,
        cluster_id,
        from,
        body: frame,
    }) = take_frame(buffer, limit)?
    else {
        return Ok(None);
    };
    if kind != KIND_MEMBERS {
        return Err(WireError::Malformed(format!(
            "expected the members, got a frame of kind {kind}"
        )));
    }
    let members = crate::members::Members::decode(&frame)
        .ok_or_else(|| WireError::Malformed("malformed member registry".into()))?;
    Ok(Some((cluster_id, from, members)))
}

/// Written back (once, before closing) to a member that was removed from the cluster and
/// still sends: it stops itself when it reads this (etcd answers such a member the same way).
pub const REMOVED_NOTICE: u8 = b'R';

/// The receiver's answer to a whole snapshot: written, checked and handed to Raft.
pub const SNAPSHOT_ACCEPTED: u8 = 1;
/// The receiver's answer to a snapshot it could not take.
pub const SNAPSHOT_REFUSED: u8 = 0;

/// Why a peer frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Longer than the receiver accepts.
    #[error("peer frame of {length} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The announced length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// Another protocol version.
    #[error("peer protocol version {0}, this build speaks {PEER_WIRE_VERSION}")]
    Version(u16),
    /// From a member of another cluster.
    #[error("peer {from:x} belongs to cluster {theirs:x}, not this cluster {ours:x}")]
    OtherCluster {
        /// The sender.
        from: u64,
        /// Its cluster.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// Bytes that do not make a frame.
    #[error("malformed peer frame: {0}")]
    Malformed(String),
}

/// Appends a frame holding `messages` from member `from` of cluster `cluster_id` to `out`.
pub fn encode_frame(cluster_id: u64, from: u64, messages: &[Message], out: &mut BytesMut) {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u16_le(PEER_WIRE_VERSION);
    out.put_u16_le(KIND_MESSAGES);
    out.put_u64_le(cluster_id);
    out.put_u64_le(from);
    out.put_u32_le(messages.len() as u32);
    for message in messages {
        let at = out.len();
        out.put_u32_le(0);
        // Writing a message into memory fails only for missing required fields, which
        // raft-rs's proto3 messages do not have.
        let bytes = message.write_to_bytes().unwrap_or_default();
        out.put_slice(&bytes);
        let written = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&written.to_le_bytes());
    }
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

/// One piece of a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's applied index.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Where `data` goes in the file.
    pub offset: u64,
    /// The whole file's size.
    pub file_size: u64,
    /// The bytes (their checksum verified).
    pub data: bytes::Bytes,
}

/// Appends a frame holding `chunk` from member `from` of cluster `cluster_id` to `out`.
pub fn encode_snapshot_chunk(
    cluster_id: u64,
    from: u64,
    chunk: &SnapshotChunk,
    out: &mut BytesMut,
) {
    out.put_u32_le((COMMON_BYTES + CHUNK_HEADER_BYTES + chunk.data.len()) as u32);
    out.put_u16_le(PEER_WIRE_VERSION);
    out.put_u16_le(KIND_SNAPSHOT_CHUNK);
    out.put_u64_le(cluster_id);
    out.put_u64_le(from);
    out.put_u64_le(chunk.index);
    out.put_u64_le(chunk.term);
    out.put_u64_le(chunk.offset);
    out.put_u64_le(chunk.file_size);
    out.put_u32_le(crc32c::crc32c(&chunk.data));
    out.put_slice(&chunk.data);
}

/// What a frame carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Raft messages, in order.
    Messages {
        /// The sending member.
        from: u64,
        /// Its messages.
        messages: Vec<Message>,
    },
    /// A piece of a snapshot file.
    SnapshotChunk {
        /// The sending member.
        from: u64,
        /// The piece.
        chunk: SnapshotChunk,
    },
    /// A joining member asks who the members are.
    MembersQuery,
    /// The sender names its peer URLs (first on a message connection).
    Hello {
        /// The sending member.
        from: u64,
        /// Its peer URLs, as it advertises them.
        peer_urls: Vec<String>,
    },
    /// Another member's dashboard asks for this member's report.
    ReportQuery {
        /// The asking member.
        from: u64,
        /// The first dashboard sample it wants.
        first_sample: u64,
    },
}

/// A whole frame's common header, and the rest of it.
struct FrameHeader {
    kind: u16,
    cluster_id: u64,
    from: u64,
    body: BytesMut,
}

/// Takes one whole frame of a version this build speaks off the front of `buffer`; `Ok(None)`
/// until a whole frame is there.
fn take_frame(buffer: &mut BytesMut, limit: usize) -> Result<Option<FrameHeader>, WireError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if length > limit {
        return Err(WireError::TooLarge { length, limit });
    }
    if length < COMMON_BYTES {
        return Err(WireError::Malformed(format!(
            "frame of {length} bytes is shorter than its header"
        )));
    }
    if buffer.len() < 4 + length {
        return Ok(None);
    }
    buffer.advance(4);
    let mut body = buffer.split_to(length);
    let version = body.get_u16_le();
    if version != PEER_WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    Ok(Some(FrameHeader {
        kind: body.get_u16_le(),
        cluster_id: body.get_u64_le(),
        from: body.get_u64_le(),
        body,
    }))
}

/// Takes one whole frame off the front of `buffer`, checked against this member's cluster and
/// ID; `Ok(None)` until a whole frame is there. An error means the connection must be closed.
pub fn decode_frame(
    buffer: &mut BytesMut,
    cluster_id: u64,
    own_id: u64,
    limit: usize,
) -> Result<Option<Frame>, WireError> {
    let Some(FrameHeader {
        kind,
        cluster_id: theirs,
        from,
        body: frame,
    }) = take_frame(buffer, limit)?
    else {
        return Ok(None);
    };
    if kind == KIND_MEMBERS_QUERY && theirs == 0 {
        return if frame.is_empty() {
            Ok(Some(Frame::MembersQuery))
        } else {
            Err(WireError::Malformed("a members query with a body".into()))
        };
    }
    if theirs != cluster_id {
        return Err(WireError::OtherCluster {
            from,
            theirs,
            ours: cluster_id,
        });
    }
    match kind {
        KIND_MESSAGES => decode_messages(frame, from, own_id).map(Some),
        KIND_SNAPSHOT_CHUNK => decode_chunk(frame, from).map(Some),
        KIND_HELLO => decode_hello(frame, from).map(Some),
        KIND_REPORT_QUERY => {
            let mut body = frame;
            if body.len() != 8 {
                return Err(WireError::Malformed(format!(
                    "a report query of {} bytes, not 8",
                    body.len()
                )));
            }
            Ok(Some(Frame::ReportQuery {
                from,
                first_sample: body.get_u64_le(),
            }))
        }
        other => Err(WireError::Malformed(format!("unknown frame kind {other}"))),
    }
}

fn decode_hello(mut frame: BytesMut, from: u64) -> Result<Frame, WireError> {
    if frame.remaining() < 2 {
        return Err(WireError::Malformed("hello without its URL count".into()));
    }
    let count = frame.get_u16_le() as usize;
    if count > MAX_HELLO_URLS {
        return Err(WireError::Malformed(format!(
            "hello names {count} peer URLs, at most {MAX_HELLO_URLS} are accepted"
        )));
    }
    let mut peer_urls = Vec::with_capacity(count);
    for n in 0..count {
        if frame.remaining() < 2 {
            return Err(WireError::Malformed(format!("hello URL {n} missing")));
        }
        let length = frame.get_u16_le() as usize;
        if length > MAX_HELLO_URL_BYTES || frame.remaining() < length {
            return Err(WireError::Malformed(format!(
                "hello URL {n} of {length} bytes runs past the frame or the limit"
            )));
        }
        let bytes = frame.split_to(length);
        let url = std::str::from_utf8(&bytes)
            .map_err(|_| WireError::Malformed(format!("hello URL {n} is not UTF-8")))?;
        peer_urls.push(url.to_string());
    }
    if frame.has_remaining() {
        return Err(WireError::Malformed(format!(
            "{} bytes after the hello's URLs",
            frame.remaining()
        )));
    }
    Ok(Frame::Hello { from, peer_urls })
}

fn decode_chunk(mut frame: BytesMut, from: u64) -> Result<Frame, WireError> {
    if frame.len() < CHUNK_HEADER_BYTES {
        return Err(WireError::Malformed(format!(
            "snapshot chunk of {} bytes is shorter than its header",
            frame.len()
        )));
    }
    let index = frame.get_u64_le();
    let term = frame.get_u64_le();
    let offset = frame.get_u64_le();
    let file_size = frame.get_u64_le();
    let checksum = frame.get_u32_le();
    let data = frame.freeze();
    if crc32c::crc32c(&data) != checksum {
        return Err(WireError::Malformed(format!(
            "snapshot {index} chunk at offset {offset}: checksum mismatch"
        )));
    }
    if offset
        .checked_add(data.len() as u64)
        .is_none_or(|end| end > file_size)
    {
        return Err(WireError::Malformed(format!(
            "snapshot {index} chunk at offset {offset} runs past the file's {file_size} bytes"
        )));
    }
    Ok(Frame::SnapshotChunk {
        from,
        chunk: SnapshotChunk {
            index,
            term,
            offset,
            file_size,
            data,
        },
    })
}

fn decode_messages(mut frame: BytesMut, from: u64, own_id: u64) -> Result<Frame, WireError> {
    if frame.len() < HEADER_BYTES - COMMON_BYTES {
        return Err(WireError::Malformed("message count missing".into()));
    }
    let count = frame.get_u32_le() as usize;
    let mut messages = Vec::with_capacity(count.min(4096));
    for n in 0..count {
        if frame.remaining() < 4 {
            return Err(WireError::Malformed(format!(
                "message {n} of {count} missing"
            )));
        }
        let size = frame.get_u32_le() as usize;
        if frame.remaining() < size {
            return Err(WireError::Malformed(format!(
                "message {n} runs past the frame"
            )));
        }
        let bytes = frame.split_to(size);
        let message = Message::parse_from_bytes(&bytes)
            .map_err(|e| WireError::Malformed(format!("message {n}: {e}")))?;
        if message.from != from || message.to != own_id {
            return Err(WireError::Malformed(format!(
                "message {n} is from {:x} to {:x}, in a frame from {from:x} to {own_id:x}",
                message.from, message.to
            )));
        }
        messages.push(message);
    }
    if frame.has_remaining() {
        return Err(WireError::Malformed(format!(
            "{} bytes after the last message",
            frame.remaining()
        )));
    }
    Ok(Frame::Messages { from, messages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn message(from: u64, to: u64, kind: MessageType, entries: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = from;
        m.to = to;
        m.term = 7;
        m.index = 41;
        m.log_term = 6;
        m.commit = 40;
        m.entries = (0..entries)
            .map(|i| Entry {
                index: 42 + i as u64,
                term: 7,
                data: vec![i as u8; 100].into(),
                ..Default::default()
            })
            .collect();
        m
    }

    #[test]
    fn frames_round_trip_and_arrive_whole() {
        let sent = vec![
            message(1, 2, MessageType::MsgAppend, 3),
            message(1, 2, MessageType::MsgHeartbeat, 0),
        ];
        let mut wire = BytesMut::new();
        encode_frame(9, 1, &sent, &mut wire);
        encode_frame(9, 1, &sent[1..], &mut wire);
        let whole = wire.clone();
        // Byte by byte: nothing until a frame is complete.
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for byte in whole.iter() {
            buffer.put_u8(*byte);
            if let Some(frame) = decode_frame(&mut buffer, 9, 2, 1 << 20).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Messages {
                    from: 1,
                    messages: sent.clone()
                },
                Frame::Messages {
                    from: 1,
                    messages: sent[1..].to_vec()
                },
            ]
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn snapshot_chunks_round_trip_and_damage_is_refused() {
        let chunk = SnapshotChunk {
            index: 500,
            term: 3,
            offset: 4096,
            file_size: 8192,
            data: bytes::Bytes::from(vec![7u8; 1000]),
        };
        let mut wire = BytesMut::new();
        encode_snapshot_chunk(9, 1, &chunk, &mut wire);
        let decoded = decode_frame(&mut wire.clone(), 9, 2, 1 << 20).unwrap();
        assert_eq!(
            decoded,
            Some(Frame::SnapshotChunk {
                from: 1,
                chunk: chunk.clone()
            })
        );
        let mut damaged = wire.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(
            decode_frame(&mut BytesMut::from(&damaged[..]), 9, 2, 1 << 20),
            Err(WireError::Malformed(m)) if m.contains("checksum")
        ));
        let past_end = SnapshotChunk {
            offset: 7500,
            ..chunk.clone()
        };
        let mut wire = BytesMut::new();
        encode_snapshot_chunk(9, 1, &past_end, &mut wire);
        assert!(matches!(
            decode_frame(&mut wire, 9, 2, 1 << 20),
            Err(WireError::Malformed(m)) if m.contains("past the file")
        ));
        let mut wire = BytesMut::new();
        encode_snapshot_chunk(9, 1, &chunk, &mut wire);
        assert!(matches!(
            decode_frame(&mut wire, 8, 2, 1 << 20),
            Err(WireError::OtherCluster { .. })
        ));
    }

    #[test]
    fn hellos_round_trip_and_bad_ones_are_refused() {
        let urls = vec!["https://10.0.0.4:2380".to_string(), "http://m4:2380".into()];
        let mut wire = BytesMut::new();
        encode_hello(9, 4, &urls, &mut wire);
        let decoded = decode_frame(&mut wire.clone(), 9, 2, 1 << 20).unwrap();
        assert_eq!(
            decoded,
            Some(Frame::Hello {
                from: 4,
                peer_urls: urls.clone()
            })
        );
        assert!(matches!(
            decode_frame(&mut wire.clone(), 8, 2, 1 << 20),
            Err(WireError::OtherCluster { .. })
        ));
        // A URL longer than its frame, a count beyond the limit, bytes left over, bad UTF-8.
        let count_at = 4 + 2 + 2 + 8 + 8;
        let mut long = wire.to_vec();
        long[count_at + 2] = 0xff;
        let mut many = wire.to_vec();
        many[count_at] = (MAX_HELLO_URLS + 1) as u8;
        let mut over = wire.to_vec();
        over[count_at] = 1;
        let mut utf8 = wire.to_vec();
        utf8[count_at + 4] = 0xff;
        for bad in [long, many, over, utf8] {
            assert!(matches!(
                decode_frame(&mut BytesMut::from(&bad[..]), 9, 2, 1 << 20),
                Err(WireError::Malformed(_))
            ));
        }
        // Too many or too long URLs are left out on the way, never sent for the receiver to refuse.
        let mut wire = BytesMut::new();
        let mut many = vec![urls[0].clone(); 40];
        many.insert(0, "h".repeat(MAX_HELLO_URL_BYTES + 1));
        encode_hello(9, 4, &many, &mut wire);
        assert!(matches!(
            decode_frame(&mut wire, 9, 2, 1 << 20),
            Ok(Some(Frame::Hello { peer_urls, .. })) if peer_urls.len() == MAX_HELLO_URLS
        ));
    }

    #[test]
    fn report_queries_and_reports_round_trip_and_strays_are_refused() {
        let mut wire = BytesMut::new();
        encode_report_query(9, 4, 77, &mut wire);
        assert_eq!(
            decode_frame(&mut wire.clone(), 9, 2, 1 << 20).unwrap(),
            Some(Frame::ReportQuery {
                from: 4,
                first_sample: 77
            })
        );
        assert!(matches!(
            decode_frame(&mut wire.clone(), 8, 2, 1 << 20),
            Err(WireError::OtherCluster { .. })
        ));
        // A query with a short or long body.
        let mut short = wire.to_vec();
        short.truncate(short.len() - 1);
        short[0] -= 1;
        let mut long = wire.to_vec();
        long.push(0);
        long[0] += 1;
        for bad in [short, long] {
            assert!(matches!(
                decode_frame(&mut BytesMut::from(&bad[..]), 9, 2, 1 << 20),
                Err(WireError::Malformed(_))
            ));
        }
        let mut answer = BytesMut::new();
        encode_report(9, 4, b"{\"term\":3}", &mut answer);
        // Whole only once every byte is there.
        let mut partial = BytesMut::from(&answer[..answer.len() - 1]);
        assert_eq!(decode_report(&mut partial, 9, 4, 1 << 20), Ok(None));
        assert_eq!(
            decode_report(&mut answer.clone(), 9, 4, 1 << 20).unwrap(),
            Some(bytes::Bytes::from_static(b"{\"term\":3}"))
        );
        // From another member or cluster, or not a report: refused.
        assert!(decode_report(&mut answer.clone(), 9, 5, 1 << 20).is_err());
        assert!(decode_report(&mut answer.clone(), 8, 4, 1 << 20).is_err());
        assert!(decode_report(&mut wire.clone(), 9, 4, 1 << 20).is_err());
        // A report is never taken as a frame a member acts on.
        assert!(decode_frame(&mut answer.clone(), 9, 2, 1 << 20).is_err());
    }

    #[test]
    fn foreign_oversized_and_damaged_frames_are_refused() {
        let sent = vec![message(1, 2, MessageType::MsgAppend, 2)];
        let mut wire = BytesMut::new();
        encode_frame(9, 1, &sent, &mut wire);
        let decode = |bytes: &[u8], cluster: u64, own: u64, limit: usize| {
            decode_frame(&mut BytesMut::from(bytes), cluster, own, limit)
        };
        assert!(matches!(
            decode(&wire, 8, 2, 1 << 20),
            Err(WireError::OtherCluster { theirs: 9, .. })
        ));
        assert!(matches!(
            decode(&wire, 9, 2, 64),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(&wire, 9, 3, 1 << 20),
            Err(WireError::Malformed(_))
        ));
        let mut version = wire.to_vec();
        version[4] = 2;
        assert_eq!(decode(&version, 9, 2, 1 << 20), Err(WireError::Version(2)));
        // A frame whose messages claim more than it holds, or leave bytes over.
        let mut short = wire.to_vec();
        let count_at = 4 + 2 + 2 + 8 + 8;
        short[count_at] = 2;
        assert!(matches!(
            decode(&short, 9, 2, 1 << 20),
            Err(WireError::Malformed(_))
        ));
        let mut kind = wire.to_vec();
        kind[6] = 9;
        assert!(matches!(
            decode(&kind, 9, 2, 1 << 20),
            Err(WireError::Malformed(m)) if m.contains("kind")
        ));
        let mut zero = wire.to_vec();
        zero[count_at] = 0;
        assert!(matches!(
            decode(&zero, 9, 2, 1 << 20),
            Err(WireError::Malformed(_))
        ));
        // Random bytes never panic.
        let mut state = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            let mut bytes = wire.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            let _ = decode(&bytes, 9, 2, 1 << 20);
        }
    }
}
