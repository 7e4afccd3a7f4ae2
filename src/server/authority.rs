//! Mends the HTTP/2 `:authority` of etcd 3.4's clients before hyper reads it. Pure: bytes in,
//! bytes out.
//!
//! etcdctl 3.4 dials each endpoint for its maintenance calls (endpoint status, defrag,
//! snapshot, ...) with the endpoint as given, so a request's `:authority` is the whole URL
//! (`http://127.0.0.1:2379`). etcd's Go server ignores it; h2 refuses a stream whose authority
//! is not a valid `host:port` with a PROTOCOL_ERROR. This filter sits between the socket and
//! hyper and reads the connection's first header block: a valid (or absent) authority turns
//! the filter into a plain pass-through for the rest of the connection, which is what every
//! other client gets. An invalid one switches the connection to rewriting: from then on each
//! header block is decoded with the client's HPACK state and re-encoded for hyper as literals
//! without indexing (so hyper's HPACK table is never touched again), with the authority cut to
//! its `host:port` (or dropped when even that is not valid).
//!
//! Invariants: bytes leave in the order they came; every frame but HEADERS/CONTINUATION passes
//! unchanged; a header block is never split across the pass-through switch.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The client connection preface every HTTP/2 connection opens with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest header block collected (h2 refuses larger ones anyway).
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Largest header list a block may decode to (HPACK's size: name + value + 32 per field), the
/// same bound hyper applies after this filter (`grpc::MAX_HEADER_LIST_BYTES`). Checked while
/// decoding: a small block of references to one large table entry (an "HPACK bomb") expands
/// to gigabytes otherwise.
pub const MAX_HEADER_LIST_BYTES: usize = 64 << 10;

/// Input the filter cannot make sense of: the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthorityFilterError {
    #[error("the connection does not open with the HTTP/2 preface")]
    BadPreface,
    #[error("malformed HTTP/2 HEADERS frame")]
    MalformedHeaders,
    #[error("header block larger than {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge,
    #[error("CONTINUATION frame without a header block in progress, or another frame inside one")]
    UnexpectedFrame,
    #[error("header block cannot be decoded: {0}")]
    Hpack(String),
    #[error("header list larger than {MAX_HEADER_LIST_BYTES} bytes once decoded")]
    HeaderListTooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Waiting for the preface.
    Preface,
    /// Reading frames until the first header block is seen.
    Inspecting,
    /// Rewriting every header block.
    Rewriting,
    /// Passing everything through unread.
    PassThrough,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    fragment: BytesMut,
    /// The frames exactly as received, for passing them on unchanged.
    original: BytesMut,
}

/// The filter for one connection (see the module documentation).
pub struct AuthorityFilter {
    mode: Mode,
    decoder: loona_hpack::Decoder<'static>,
    /// Bytes received but not yet a whole frame.
    partial: BytesMut,
    block: Option<PendingBlock>,
}

impl Default for AuthorityFilter {
    fn default() -> Self {
        AuthorityFilter::new()
    }
}

impl AuthorityFilter {
    /// A filter for a connection not yet read from.
    pub fn new() -> AuthorityFilter {
        AuthorityFilter {
            mode: Mode::Preface,
            decoder: loona_hpack::Decoder::new(),
            partial: BytesMut::new(),
            block: None,
        }
    }

    /// True once the filter passes everything through unread.
    pub fn passes_through(&self) -> bool {
        self.mode == Mode::PassThrough && self.partial.is_empty()
    }

    /// Takes bytes read from the client and appends what hyper should read to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), AuthorityFilterError> {
        if self.mode == Mode::PassThrough {
            out.extend_from_slice(&self.partial.split());
            out.extend_from_slice(input);
            return Ok(());
        }
        self.partial.extend_from_slice(input);
        if self.mode == Mode::Preface {
            if self.partial.len() < PREFACE.len() {
                if !PREFACE.starts_with(&self.partial) {
                    return Err(AuthorityFilterError::BadPreface);
                }
                return Ok(());
            }
            if &self.partial[..PREFACE.len()] != PREFACE {
                return Err(AuthorityFilterError::BadPreface);
            }
            out.extend_from_slice(&self.partial.split_to(PREFACE.len()));
            self.mode = Mode::Inspecting;
        }
        while self.mode != Mode::PassThrough {
            if self.partial.len() < FRAME_HEADER {
                return Ok(());
            }
            let length = (usize::from(self.partial[0]) << 16)
                | (usize::from(self.partial[1]) << 8)
                | usize::from(self.partial[2]);
            if self.partial.len() < FRAME_HEADER + length {
                if length > MAX_HEADER_BLOCK + FRAME_HEADER {
                    // Not ours to judge unless it is a header frame.
                    let kind = self.partial[3];
                    if kind == HEADERS || kind == CONTINUATION {
                        return Err(AuthorityFilterError::HeaderBlockTooLarge);
                    }
                }
                return Ok(());
            }
            let frame = self.partial.split_to(FRAME_HEADER + length).freeze();
            self.frame(frame, out)?;
        }
        // Switched to passing through: whatever is left goes out as it is.
        out.extend_from_slice(&self.partial.split());
        Ok(())
    }

    fn frame(&mut self, frame: Bytes, out: &mut BytesMut) -> Result<(), AuthorityFilterError> {
        let kind = frame[3];
        let flags = frame[4];
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = frame.slice(FRAME_HEADER..);
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let fragment = headers_fragment(flags, payload)?;
                let mut block = PendingBlock {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    fragment: BytesMut::from(&fragment[..]),
                    original: BytesMut::from(&frame[..]),
                };
                if flags & END_HEADERS != 0 {
                    return self.block_done(&mut block, out);
                }
                self.block = Some(block);
                Ok(())
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                if block.fragment.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(AuthorityFilterError::HeaderBlockTooLarge);
                }
                block.fragment.extend_from_slice(&payload);
                block.original.extend_from_slice(&frame);
                if flags & END_HEADERS != 0 {
                    let mut block = self
                        .block
                        .take()
                        .ok_or(AuthorityFilterError::UnexpectedFrame)?;
                    return self.block_done(&mut block, out);
                }
                Ok(())
            }
            (CONTINUATION, _) | (_, Some(_)) => Err(AuthorityFilterError::UnexpectedFrame),
            (_, None) => {
                out.extend_from_slice(&frame);
                Ok(())
            }
        }
    }

    /// A whole header block: decoded, then passed on unchanged or rewritten.
    fn block_done(
        &mut self,
        block: &mut PendingBlock,
        out: &mut BytesMut,
    ) -> Result<(), AuthorityFilterError> {
        let mut headers = Vec::new();
        let mut list_bytes = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                // Past the bound nothing more is kept: the block is refused below.
                if list_bytes <= MAX_HEADER_LIST_BYTES {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| AuthorityFilterError::Hpack(format!("{e:?}")))?;
        if list_bytes > MAX_HEADER_LIST_BYTES {
            return Err(AuthorityFilterError::HeaderListTooLarge);
        }
        let authority_ok = headers
            .iter()
            .find(|(name, _)| name == b":authority")
            .is_none_or(|(_, value)| valid_authority(value));
        if self.mode == Mode::Inspecting {
            if authority_ok {
                out.extend_from_slice(&block.original);
                self.mode = Mode::PassThrough;
                return Ok(());
            }
            self.mode = Mode::Rewriting;
        }
        let mut encoded = BytesMut::new();
        for (name, value) in &headers {
            if name == b":authority" {
                match mended_authority(value) {
                    Some(authority) => encode_literal(name, authority, &mut encoded),
                    None => continue,
                }
            } else {
                encode_literal(name, value, &mut encoded);
            }
        }
        let mut flags = END_HEADERS;
        if block.end_stream {
            flags |= END_STREAM;
        }
        let length = encoded.len();
        out.put_u8((length >> 16) as u8);
        out.put_u8((length >> 8) as u8);
        out.put_u8(length as u8);
        out.put_u8(HEADERS);
        out.put_u8(flags);
        out.put_u32(block.stream);
        out.extend_from_slice(&encoded);
        Ok(())
    }
}

/// The header block fragment of a HEADERS frame's payload (padding and priority removed).
fn headers_fragment(flags: u8, mut payload: Bytes) -> Result<Bytes, AuthorityFilterError> {
    let mut padding = 0;
    if flags & PADDED != 0 {
        if payload.is_empty() {
            return Err(AuthorityFilterError::MalformedHeaders);
        }
        padding = usize::from(payload.get_u8());
    }
    if flags & PRIORITY != 0 {
        if payload.len() < 5 {
            return Err(AuthorityFilterError::MalformedHeaders);
        }
        payload.advance(5);
    }
    if padding > payload.len() {
        return Err(AuthorityFilterError::MalformedHeaders);
    }
    Ok(payload.slice(..payload.len() - padding))
}

/// True for an authority h2 accepts.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The `host:port` inside a URL-shaped authority, if that is valid.
fn mended_authority(value: &[u8]) -> Option<&[u8]> {
    if valid_authority(value) {
        return Some(value);
    }
    let after_scheme = match value.windows(3).position(|w| w == b"://") {
        Some(at) => &value[at + 3..],
        None => value,
    };
    let end = after_scheme
        .iter()
        .position(|&b| b == b'/')
        .unwrap_or(after_scheme.len());
    let host = &after_scheme[..end];
    valid_authority(host).then_some(host)
}

/// HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2), no Huffman.
fn encode_literal(name: &[u8], value: &[u8], out: &mut BytesMut) {
    out.put_u8(0);
    encode_string(name, out);
    encode_string(value, out);
}

fn encode_string(bytes: &[u8], out: &mut BytesMut) {
    encode_integer(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 5.1); `high` holds the bits
/// above the prefix in the first byte.
fn encode_integer(mut value: usize, prefix_bits: u8, high: u8, out: &mut BytesMut) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.put_u8(high | value as u8);
        return;
    }
    out.put_u8(high | max_prefix as u8);
    value -= max_prefix;
    while value >= 128 {
        out.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's HEADERS frame for `headers`, encoded with its (indexing) HPACK encoder, split
    /// into a HEADERS and a CONTINUATION frame when `split` is set.
    fn request_frames(
        encoder: &mut loona_hpack::Encoder<'static>,
        stream: u32,
        headers: &[(&[u8], &[u8])],
        split: bool,
    ) -> Vec<u8> {
        let block = encoder.encode(headers.iter().map(|(n, v)| (*n, *v)));
        let mut out = Vec::new();
        let mut frame = |kind: u8, flags: u8, payload: &[u8]| {
            let length = payload.len();
            out.extend_from_slice(&[(length >> 16) as u8, (length >> 8) as u8, length as u8]);
            out.push(kind);
            out.push(flags);
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(payload);
        };
        if split {
            let half = block.len() / 2;
            frame(HEADERS, 0, &block[..half]);
            frame(CONTINUATION, END_HEADERS, &block[half..]);
        } else {
            frame(HEADERS, END_HEADERS, &block);
        }
        out
    }

    fn data_frame(stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, payload.len() as u8, 0, END_STREAM];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decoded headers: (name, value) pairs in order.
    type Headers = Vec<(Vec<u8>, Vec<u8>)>;

    /// What hyper would decode from the filter's output: (stream, headers) per header block
    /// and the DATA payloads, in order.
    fn read_back(mut bytes: &[u8]) -> (Vec<(u32, Headers)>, Vec<Vec<u8>>) {
        assert!(bytes.starts_with(PREFACE));
        bytes = &bytes[PREFACE.len()..];
        let mut decoder = loona_hpack::Decoder::new();
        let (mut blocks, mut data) = (Vec::new(), Vec::new());
        let mut fragment = Vec::new();
        while !bytes.is_empty() {
            let length = (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]);
            let (kind, flags) = (bytes[3], bytes[4]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            let payload = &bytes[FRAME_HEADER..FRAME_HEADER + length];
            match kind {
                HEADERS | CONTINUATION => {
                    fragment.extend_from_slice(payload);
                    if flags & END_HEADERS != 0 {
                        blocks.push((stream, decoder.decode(&fragment).unwrap()));
                        fragment.clear();
                    }
                }
                _ => data.push(payload.to_vec()),
            }
            bytes = &bytes[FRAME_HEADER + length..];
        }
        (blocks, data)
    }

    fn authority(headers: &Headers) -> Option<&[u8]> {
        headers
            .iter()
            .find(|(n, _)| n == b":authority")
            .map(|(_, v)| v.as_slice())
    }

    fn grpc_headers<'a>(authority: &'a [u8], path: &'a [u8]) -> Vec<(&'a [u8], &'a [u8])> {
        vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
    }

    #[test]
    fn a_url_shaped_authority_is_cut_to_host_and_port_on_every_request() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(request_frames(
            &mut encoder,
            1,
            &grpc_headers(
                b"http://127.0.0.1:2379",
                b"/etcdserverpb.Maintenance/Status",
            ),
            false,
        ));
        input.extend(data_frame(1, b"\0\0\0\0\0"));
        // The second request refers to the first's entries in the client's HPACK table.
        input.extend(request_frames(
            &mut encoder,
            3,
            &grpc_headers(b"http://127.0.0.1:2379", b"/etcdserverpb.KV/Range"),
            true,
        ));
        // Fed one byte at a time: frames arrive in pieces.
        let mut filter = AuthorityFilter::new();
        let mut out = BytesMut::new();
        for byte in &input {
            filter.feed(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert!(!filter.passes_through());
        let (blocks, data) = read_back(&out);
        assert_eq!(blocks.len(), 2);
        for (stream, headers) in &blocks {
            assert_eq!(
                authority(headers),
                Some(&b"127.0.0.1:2379"[..]),
                "stream {stream}"
            );
            assert_eq!(headers[0], (b":method".to_vec(), b"POST".to_vec()));
        }
        assert_eq!(blocks[1].1[2].1, b"/etcdserverpb.KV/Range");
        assert_eq!(data, vec![b"\0\0\0\0\0".to_vec()]);
    }

    #[test]
    fn a_valid_authority_switches_to_pass_through_unchanged() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(request_frames(
            &mut encoder,
            1,
            &grpc_headers(b"127.0.0.1:2379", b"/etcdserverpb.KV/Put"),
            true,
        ));
        input.extend(data_frame(1, b"abc"));
        let mut filter = AuthorityFilter::new();
        let mut out = BytesMut::new();
        let (first, rest) = input.split_at(30);
        filter.feed(first, &mut out).unwrap();
        filter.feed(rest, &mut out).unwrap();
        assert!(filter.passes_through());
        assert_eq!(&out[..], &input[..]);
        // Later bytes are not read at all.
        filter.feed(b"anything", &mut out).unwrap();
        assert!(out.ends_with(b"anything"));
    }

    #[test]
    fn an_unmendable_authority_is_dropped_and_bad_input_refused() {
        assert_eq!(mended_authority(b"http://host:1/x"), Some(&b"host:1"[..]));
        assert_eq!(mended_authority(b"unix:///tmp/sock"), None);
        let mut filter = AuthorityFilter::new();
        let mut out = BytesMut::new();
        assert_eq!(
            filter.feed(b"GET / HTTP/1.1\r\n", &mut out),
            Err(AuthorityFilterError::BadPreface)
        );
        let mut filter = AuthorityFilter::new();
        let mut input = PREFACE.to_vec();
        // A CONTINUATION with no HEADERS before it.
        input.extend_from_slice(&[0, 0, 1, CONTINUATION, END_HEADERS, 0, 0, 0, 1, 0x82]);
        assert_eq!(
            filter.feed(&input, &mut BytesMut::new()),
            Err(AuthorityFilterError::UnexpectedFrame)
        );
    }

    #[test]
    fn an_hpack_bomb_is_refused_without_expanding_it() {
        // One 3.9 KB literal entered into the dynamic table, then 16,000 one-byte references
        // to it: 20 KB on the wire, 63 MB of header list once decoded.
        let mut block = BytesMut::new();
        block.put_u8(0x40); // literal with incremental indexing, new name
        encode_string(b"x-bomb", &mut block);
        encode_string(&vec![b'b'; 3900], &mut block);
        for _ in 0..16_000 {
            block.put_u8(0x80 | 62); // indexed: the first dynamic table entry
        }
        let mut frames = PREFACE.to_vec();
        let mut rest: &[u8] = &block;
        let mut first = true;
        while !rest.is_empty() {
            let take = rest.len().min(16_384);
            let (payload, after) = rest.split_at(take);
            let kind = if first { HEADERS } else { CONTINUATION };
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            frames.extend_from_slice(&[
                (take >> 16) as u8,
                (take >> 8) as u8,
                take as u8,
                kind,
                flags,
            ]);
            frames.extend_from_slice(&1u32.to_be_bytes());
            frames.extend_from_slice(payload);
            rest = after;
            first = false;
        }
        let mut filter = AuthorityFilter::new();
        let mut out = BytesMut::new();
        assert_eq!(
            filter.feed(&frames, &mut out),
            Err(AuthorityFilterError::HeaderListTooLarge)
        );
    }

    #[test]
    fn long_strings_use_multi_byte_lengths() {
        let mut out = BytesMut::new();
        encode_literal(b"x-long", &[b'v'; 300], &mut out);
        let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
        assert_eq!(decoded, vec![(b"x-long".to_vec(), vec![b'v'; 300])]);
    }
}
