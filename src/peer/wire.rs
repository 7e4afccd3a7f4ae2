//! The peer protocol's frames: a batch of Raft messages from one member of one cluster. Pure.
//!
//! ```text
//! u32  length of the rest of the frame
//! u16  version (PEER_WIRE_VERSION)
//! u16  flags (0)
//! u64  cluster ID of the sender
//! u64  member ID of the sender
//! u32  number of messages
//! then, per message: u32 length | raft-rs `eraftpb::Message` (protobuf)
//! ```
//!
//! Little-endian. A receiver refuses a frame of another cluster or version, a frame longer
//! than its limit, and any message not from the frame's sender or not to itself: it never hands
//! Raft a message it cannot account for. TCP carries its own checksums.

use bytes::{Buf, BufMut, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

/// The peer protocol version this build speaks.
pub const PEER_WIRE_VERSION: u16 = 1;

/// Bytes before the messages (after the length).
const HEADER_BYTES: usize = 2 + 2 + 8 + 8 + 4;

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
    out.put_u16_le(0);
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

/// What a frame carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The sending member.
    pub from: u64,
    /// Its messages, in order.
    pub messages: Vec<Message>,
}

/// Takes one whole frame off the front of `buffer`, checked against this member's cluster and
/// ID; `Ok(None)` until a whole frame is there. An error means the connection must be closed.
pub fn decode_frame(
    buffer: &mut BytesMut,
    cluster_id: u64,
    own_id: u64,
    limit: usize,
) -> Result<Option<Frame>, WireError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if length > limit {
        return Err(WireError::TooLarge { length, limit });
    }
    if length < HEADER_BYTES {
        return Err(WireError::Malformed(format!(
            "frame of {length} bytes is shorter than its header"
        )));
    }
    if buffer.len() < 4 + length {
        return Ok(None);
    }
    buffer.advance(4);
    let mut frame = buffer.split_to(length);
    let version = frame.get_u16_le();
    if version != PEER_WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let _flags = frame.get_u16_le();
    let theirs = frame.get_u64_le();
    let from = frame.get_u64_le();
    if theirs != cluster_id {
        return Err(WireError::OtherCluster {
            from,
            theirs,
            ours: cluster_id,
        });
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
    Ok(Some(Frame { from, messages }))
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
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].from, 1);
        assert_eq!(frames[0].messages, sent);
        assert_eq!(frames[1].messages, sent[1..]);
        assert!(buffer.is_empty());
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
