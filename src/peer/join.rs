//! Joining a running cluster (`--initial-cluster-state existing`): before anything else runs, a
//! new member asks the other members listed in `--initial-cluster` for the registry over the
//! peer protocol, and finds itself in it by its peer URLs (added beforehand with `member add`),
//! as etcd's joiners do. Blocking I/O, at start only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::wire::{decode_members, encode_members_query};
use crate::members::Members;

/// Largest registry answer accepted.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Asks the members at `addresses` (host:port) for the registry until one answers or
/// `patience` runs out; returns the cluster ID and the registry.
pub fn fetch_members(addresses: &[String], patience: Duration) -> Result<(u64, Members), String> {
    let deadline = Instant::now() + patience;
    let mut last_error = String::from("no other member listed");
    loop {
        for address in addresses {
            match ask(address, Duration::from_secs(2)) {
                Ok(answer) => return Ok(answer),
                Err(error) => last_error = format!("{address}: {error}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "could not retrieve the cluster's members from {} ({last_error})",
                addresses.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ask(address: &str, timeout: Duration) -> Result<(u64, Members), String> {
    let socket_address = address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the address resolves to nothing")?;
    let mut stream =
        TcpStream::connect_timeout(&socket_address, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut query = BytesMut::new();
    encode_members_query(&mut query);
    stream.write_all(&query).map_err(|e| e.to_string())?;
    let mut buffer = BytesMut::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some((cluster_id, _, members)) =
            decode_members(&mut buffer, MAX_ANSWER_BYTES).map_err(|e| e.to_string())?
        {
            return Ok((cluster_id, members));
        }
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the member closed the connection without answering".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}
