//! Hostile clients against a real lode: what one connection can make the server hold is
//! bounded, and other clients are still served.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::server::{ok, DataDir, Lode};
use lode::fuzz::{http2_frame as frame, http2_opening};

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
    let bytes = http2_opening(&block);
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

/// Reads HTTP/2 frames from `connection` until `want` returns true for one (its type, flags
/// and payload) or the connection ends; returns whether one did.
fn read_frames_until(
    connection: &mut std::net::TcpStream,
    mut want: impl FnMut(u8, u8, &[u8]) -> bool,
) -> bool {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        while buffer.len() >= 9 {
            let length = (usize::from(buffer[0]) << 16)
                | (usize::from(buffer[1]) << 8)
                | usize::from(buffer[2]);
            if buffer.len() < 9 + length {
                break;
            }
            let (kind, flags) = (buffer[3], buffer[4]);
            if want(kind, flags, &buffer[9..9 + length]) {
                return true;
            }
            buffer.drain(..9 + length);
        }
        match connection.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

#[test]
fn http2_streams_are_capped_and_silent_clients_are_pinged_then_dropped() {
    let dir = DataDir::new("hostile-keepalive");
    let lode = Lode::start(
        &dir.0,
        &[
            "--max-concurrent-streams=7",
            "--grpc-keepalive-interval=1s",
            "--grpc-keepalive-timeout=1s",
        ],
    );
    let mut connection = std::net::TcpStream::connect(&lode.address).expect("connect");
    connection
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(0x4, 0, 0, &[], &mut hello);
    connection.write_all(&hello).expect("preface");
    // The server's SETTINGS carry the stream cap (SETTINGS_MAX_CONCURRENT_STREAMS, id 3).
    let mut cap = None;
    assert!(read_frames_until(
        &mut connection,
        |kind, flags, payload| {
            if kind == 0x4 && flags & 0x1 == 0 {
                cap = payload
                    .chunks(6)
                    .find(|setting| setting[..2] == [0, 3])
                    .map(|setting| {
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]])
                    });
                return true;
            }
            false
        }
    ));
    assert_eq!(cap, Some(7));
    // A client that never answers is pinged, then the connection is closed (it would hang
    // here for the read timeout if the server never gave up on it).
    let mut pinged = false;
    let ended_on_its_own = !read_frames_until(&mut connection, |kind, flags, _| {
        if kind == 0x6 && flags & 0x1 == 0 {
            pinged = true;
        }
        false
    });
    assert!(pinged, "the server never pinged the silent client");
    assert!(ended_on_its_own);
    // The member still serves.
    assert_eq!(ok(lode.ctl(&["put", "k", "v"])), "OK\n");
}

#[test]
fn ten_thousand_idle_connections_hold_bounded_memory_and_others_are_served() {
    let dir = DataDir::new("hostile-idle");
    let lode = Lode::start(&dir.0, &[]);
    let pid = lode.child.as_ref().expect("child").id();
    // This process needs a descriptor per connection.
    let limit = libc::rlimit {
        rlim_cur: 16_384,
        rlim_max: 16_384,
    };
    // SAFETY: raising this process's own descriptor limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let before = resident_bytes(pid);
    let mut idle = Vec::new();
    for n in 0..10_000 {
        match std::net::TcpStream::connect(&lode.address) {
            Ok(connection) => idle.push(connection),
            Err(error) => panic!("connection {n} refused: {error}"),
        }
    }
    // Every other client is still served while they sit there.
    assert_eq!(ok(lode.ctl(&["put", "busy", "yes"])), "OK\n");
    let after = resident_bytes(pid);
    let per_connection = after.saturating_sub(before) / 10_000;
    eprintln!("{per_connection} bytes resident per idle connection");
    assert!(
        per_connection < 8 << 10,
        "{per_connection} bytes per idle connection ({before} -> {after})"
    );
    drop(idle);
    assert_eq!(
        ok(lode.ctl(&["get", "busy", "--print-value-only"])),
        "yes\n"
    );
}

#[test]
fn slow_watch_readers_far_behind_hold_bounded_memory_and_others_are_served() {
    use std::process::Stdio;
    let dir = DataDir::new("hostile-slow-watch");
    let lode = Lode::start(&dir.0, &[]);
    let pid = lode.child.as_ref().expect("child").id();
    // 320 revisions of 96 KiB values (an argument holds at most 128 KiB): 30 MiB of history
    // for watchers from revision 1.
    let value = "w".repeat(96 << 10);
    let put = lode.ctl_command();
    for n in 0..320 {
        assert!(put(&["put", &format!("k{}", n % 4), &value])
            .status
            .success());
    }
    let before = resident_bytes(pid);
    // Readers that never read: a lodectl (native) and an etcdctl (gRPC) watch whose output
    // pipes nobody drains, so each stops reading its socket once its pipe is full.
    let mut native = lode.ctl_process(&["watch", "k", "--prefix", "--rev=1"]);
    let mut native = native
        .stdout(Stdio::piped())
        .spawn()
        .expect("lodectl watch");
    let mut grpc = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", lode.client_url))
        .args(["watch", "k", "--prefix", "--rev=1"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_secs(3));
    let after = resident_bytes(pid);
    eprintln!("two stalled watchers from revision 1: resident {before} -> {after} bytes");
    // Writes and reads go on meanwhile.
    assert!(put(&["put", "other", "client"]).status.success());
    assert_eq!(
        ok(lode.ctl(&["get", "other", "--print-value-only"])),
        "client\n"
    );
    let _ = native.kill();
    let _ = grpc.kill();
    let _ = native.wait();
    let _ = grpc.wait();
    assert!(
        after < before + (48 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
}

#[test]
fn a_huge_header_list_is_refused_and_others_are_served() {
    let dir = DataDir::new("hostile-header-list");
    let lode = Lode::start(&dir.0, &[]);
    let pid = lode.child.as_ref().expect("child").id();
    let before = resident_bytes(pid);
    // 4,000 distinct literal headers of ~120 bytes each (480 KB, past the 64 KiB bound), no
    // indexing, in HEADERS + CONTINUATION frames, on 20 connections at once.
    let mut block = vec![0x83, 0x86];
    for n in 0..4_000 {
        block.push(0x00);
        hpack_string(format!("x-header-{n:05}").as_bytes(), &mut block);
        hpack_string(&[b'h'; 100], &mut block);
    }
    let bytes = http2_opening(&block);
    let mut connections = Vec::new();
    for _ in 0..20 {
        let mut connection = std::net::TcpStream::connect(&lode.address).expect("connect");
        connection
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = connection.write_all(&bytes);
        connections.push(connection);
    }
    for connection in &mut connections {
        connection
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut answer = Vec::new();
        // The server ends each connection (or sends GOAWAY first); it never answers the
        // request.
        let _ = connection.read_to_end(&mut answer);
        assert!(
            !String::from_utf8_lossy(&answer).contains("grpc-status: 0"),
            "a request with a 480 KB header list was served"
        );
    }
    let after = resident_bytes(pid);
    assert!(
        after < before + (64 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    assert_eq!(ok(lode.ctl(&["put", "still", "served"])), "OK\n");
}
