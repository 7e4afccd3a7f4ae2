//! Hostile clients against a real lode: what one connection can make the server hold is
//! bounded, and other clients are still served.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::server::{ok, DataDir, Lode};

/// Resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

/// An HTTP/2 HPACK string literal (no Huffman coding) of `bytes`.
fn hpack_string(bytes: &[u8], out: &mut Vec<u8>) {
    hpack_integer(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

fn hpack_integer(mut value: usize, prefix_bits: u8, high: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    let length = payload.len();
    out.extend_from_slice(&[
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
        kind,
        flags,
    ]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[test]
fn an_hpack_bomb_is_refused_without_exhausting_memory() {
    let dir = DataDir::new("hostile-hpack-bomb");
    let lode = Lode::start(&dir.0, &[]);
    let pid = lode.child.as_ref().expect("child").id();
    let before = resident_bytes(pid);
    // The block from the report: a 3.9 KB literal entered into the dynamic table, then 250,000
    // one-byte references to it (975 MB once decoded), in HEADERS + CONTINUATION frames.
    let mut block = vec![0x40];
    hpack_string(b"x-bomb", &mut block);
    hpack_string(&vec![b'b'; 3900], &mut block);
    block.extend(std::iter::repeat_n(0x80 | 62, 250_000));
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(0x4, 0, 0, &[], &mut bytes); // SETTINGS
    let pieces: Vec<&[u8]> = block.chunks(16_384).collect();
    for (n, piece) in pieces.iter().enumerate() {
        let kind = if n == 0 { 0x1 } else { 0x9 };
        let flags = if n + 1 == pieces.len() { 0x4 } else { 0 };
        frame(kind, flags, 1, piece, &mut bytes);
    }
    let mut connection = std::net::TcpStream::connect(&lode.address).expect("connect");
    connection
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // The server may close the connection before it has read everything.
    let _ = connection.write_all(&bytes);
    let mut answer = Vec::new();
    let _ = connection.read_to_end(&mut answer);
    let after = resident_bytes(pid);
    assert!(
        after < before + (64 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    // Everyone else is still served.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lode.ctl(&["put", "still", "served"]).status.success() {
        assert!(Instant::now() < deadline, "lode stopped serving");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ok(lode.ctl(&["get", "still", "--print-value-only"])),
        "served\n"
    );
}

#[test]
fn a_client_that_pipelines_and_never_reads_holds_bounded_memory() {
    use bytes::{Bytes, BytesMut};
    use lode::api::native::{encode_request, Request};
    use lode::mvcc::request::RangeRequest;

    let dir = DataDir::new("hostile-pipelining");
    let lode = Lode::start(&dir.0, &[]);
    let pid = lode.child.as_ref().expect("child").id();
    // One 64 KiB value, then 20,000 gets of it (1.3 GB of answers) sent without reading one.
    let value = "v".repeat(64 << 10);
    ok(lode.ctl(&["put", "big", &value]));
    let before = resident_bytes(pid);
    let mut wire = BytesMut::new();
    for id in 1..=20_000u64 {
        let get = Request::Range(RangeRequest {
            key: Bytes::from_static(b"big"),
            serializable: true,
            ..Default::default()
        });
        lode_protocol::frame::encode_frame(&mut wire, &encode_request(id, &get));
    }
    let mut connection = std::net::TcpStream::connect(&lode.address).expect("connect");
    connection
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // The server stops reading once its bounds are reached: the write then stalls (and times
    // out) with requests still unsent, or goes through if the kernel's buffers take them all.
    let _ = connection.write_all(&wire);
    // Let the server work through whatever it admitted.
    std::thread::sleep(Duration::from_secs(2));
    let after = resident_bytes(pid);
    assert!(
        after < before + (96 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    // Other clients are served meanwhile.
    assert_eq!(ok(lode.ctl(&["put", "other", "client"])), "OK\n");
    drop(connection);
}
