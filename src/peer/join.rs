//! Joining a running cluster (`--initial-cluster-state existing`): before anything else runs, a
//! new member asks the other members listed in `--initial-cluster` for the registry over the
//! peer protocol, and finds itself in it by its peer URLs (added beforehand with `member add`),
//! as etcd's joiners do. Blocking I/O, at start only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::wire::{decode_members, encode_members_query};
use crate::members::Members;

/// Largest registry answer accepted.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// A member to ask: `host:port` to dial, and for an `https` peer URL the host its
/// certificate must name.
#[derive(Clone, Debug)]
pub struct JoinTarget {
    pub address: String,
    pub tls_host: Option<String>,
}

/// Asks the members at `targets` for the registry until one answers or `patience` runs out;
/// returns the cluster ID and the registry. `tls` is this member's peer TLS (needed for
/// `https` targets).
pub fn fetch_members(
    targets: &[JoinTarget],
    tls: Option<Arc<rustls::ClientConfig>>,
    patience: Duration,
) -> Result<(u64, Members), String> {
    let deadline = Instant::now() + patience;
    let mut last_error = String::from("no other member listed");
    loop {
        for target in targets {
            match ask(target, tls.as_ref(), Duration::from_secs(2)) {
                Ok(answer) => return Ok(answer),
                Err(error) => last_error = format!("{}: {error}", target.address),
            }
        }
        if Instant::now() >= deadline {
            let addresses: Vec<&str> = targets.iter().map(|t| t.address.as_str()).collect();
            return Err(format!(
                "could not retrieve the cluster's members from {} ({last_error})",
                addresses.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ask(
    target: &JoinTarget,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<(u64, Members), String> {
    let socket_address = target
        .address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the address resolves to nothing")?;
    let tcp = TcpStream::connect_timeout(&socket_address, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> = match (&target.tls_host, tls) {
        (None, _) => Box::new(tcp),
        (Some(host), Some(config)) => {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: {e}"))?;
            let connection =
                rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
        (Some(_), None) => {
            return Err(
                "the member's peer URL is https and this member has no peer TLS \
                        settings"
                    .into(),
            )
        }
    };
    let mut query = BytesMut::new();
    encode_members_query(&mut query);
    stream.write_all(&query).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
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

/// A blocking connection, plain or TLS.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
