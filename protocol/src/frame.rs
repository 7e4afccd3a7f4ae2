//! Framing of the native protocol. Pure.
//!
//! ```text
//! 0  u32 LE  length of everything after this field (4 + flatbuffer size)
//! 4  u16 LE  protocol version (PROTOCOL_VERSION)
//! 6  u16 LE  flags, zero
//! 8  ...     flatbuffer: RequestFrame (client to server) or ResponseFrame (server to client)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes before the flatbuffer.
pub const FRAME_HEADER_SIZE: usize = 8;
/// etcd's default request limit (1.5 MiB) plus the 512 KiB of slack its gRPC layer allows.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1_572_864 + 512 * 1024;

/// A frame that cannot be accepted. The connection cannot be resynchronised after one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field exceeds the limit.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The length cannot even hold the version and flags.
    #[error("frame length {0} is too short")]
    TooShort(usize),
    /// Another protocol version.
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    /// Flags this build does not know.
    #[error("unknown frame flags {0:#x}")]
    UnknownFlags(u16),
}

/// Takes one complete frame's flatbuffer off the front of `buffer`, if a whole frame is there.
/// `max_frame_bytes` bounds the flatbuffer size.
pub fn decode_frame(
    buffer: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_le_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if length < 4 {
        return Err(FrameError::TooShort(length));
    }
    if length - 4 > max_frame_bytes {
        return Err(FrameError::TooLarge {
            length: length - 4,
            limit: max_frame_bytes,
        });
    }
    if buffer.len() < 8 {
        return Ok(None);
    }
    let version = u16::from_le_bytes([buffer[4], buffer[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let flags = u16::from_le_bytes([buffer[6], buffer[7]]);
    if flags != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    if buffer.len() < 4 + length {
        buffer.reserve(4 + length - buffer.len());
        return Ok(None);
    }
    buffer.advance(FRAME_HEADER_SIZE);
    Ok(Some(buffer.split_to(length - 4).freeze()))
}

/// Appends a frame holding `flatbuffer` to `out`.
pub fn encode_frame(out: &mut BytesMut, flatbuffer: &[u8]) {
    out.reserve(FRAME_HEADER_SIZE + flatbuffer.len());
    out.put_u32_le((flatbuffer.len() + 4) as u32);
    out.put_u16_le(PROTOCOL_VERSION);
    out.put_u16_le(0);
    out.put_slice(flatbuffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, b"first");
        encode_frame(&mut wire, b"");
        encode_frame(&mut wire, b"third frame");
        let all = wire.freeze();
        for cut in 0..all.len() {
            let mut buffer = BytesMut::from(&all[..cut]);
            let mut frames = Vec::new();
            while let Some(frame) = decode_frame(&mut buffer, 1024).unwrap() {
                frames.push(frame);
            }
            buffer.extend_from_slice(&all[cut..]);
            while let Some(frame) = decode_frame(&mut buffer, 1024).unwrap() {
                frames.push(frame);
            }
            assert_eq!(frames, vec![&b"first"[..], b"", b"third frame"]);
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn bad_frames_are_refused_before_their_body_arrives() {
        let mut huge = BytesMut::new();
        huge.put_u32_le(10_000_000);
        assert!(matches!(
            decode_frame(&mut huge, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut short = BytesMut::from(&[2u8, 0, 0, 0][..]);
        assert_eq!(decode_frame(&mut short, 1024), Err(FrameError::TooShort(2)));
        let mut version = BytesMut::new();
        version.put_u32_le(4);
        version.put_u16_le(9);
        version.put_u16_le(0);
        assert_eq!(
            decode_frame(&mut version, 1024),
            Err(FrameError::UnsupportedVersion(9))
        );
        let mut flags = BytesMut::new();
        flags.put_u32_le(4);
        flags.put_u16_le(PROTOCOL_VERSION);
        flags.put_u16_le(1);
        assert_eq!(
            decode_frame(&mut flags, 1024),
            Err(FrameError::UnknownFlags(1))
        );
    }
}
