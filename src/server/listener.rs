//! The client listener: accepts connections on a client address (over TLS when it says so)
//! and tells the protocols apart by a connection's first bytes, handing each connection to its
//! server: HTTP/2 to gRPC (`grpc`), HTTP/1 to the HTTP endpoints (`http`), anything else to
//! the native protocol (`native`).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::io::AsyncReadExt;
use glommio::net::TcpListener;

use super::native::native_connection;
use super::node::Node;
use super::{Limits, Listen};
use crate::tls::Stream;

/// Accepts connections until the listener fails (over TLS when `listen` says so).
pub async fn serve(listener: TcpListener, listen: Listen, node: Rc<Node>, limits: Limits) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (node, tls) = (node.clone(), listen.tls.clone());
                glommio::spawn_local(async move {
                    if let Some((stream, identity)) = super::secure(stream, tls.as_ref()).await {
                        let name = super::CertificateName::of(identity);
                        connection(stream, node, limits, name).await;
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// The first bytes of an HTTP/2 connection (its preface starts `PRI * HTTP/2.0`). No native
/// frame starts so: read as a length, they would be over half a gigabyte.
const HTTP2_PREFACE_START: &[u8; 4] = b"PRI ";

/// The first four bytes of an HTTP/1 request of each method lode answers or refuses properly.
/// As a native frame's length they would all be far over any limit.
const HTTP1_METHOD_STARTS: [&[u8; 4]; 7] = [
    b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC",
];

/// Tells the protocols apart by a connection's first bytes: HTTP/2 goes to the gRPC server,
/// HTTP/1 to the HTTP endpoints and JSON gateway, everything else is read as native frames.
async fn connection(
    mut stream: Stream,
    node: Rc<Node>,
    limits: Limits,
    name: Option<super::CertificateName>,
) {
    // Only the four bytes that pick the protocol are read here, into a buffer on the task:
    // an idle connection costs its task and socket, not read buffers.
    let mut first = [0u8; HTTP2_PREFACE_START.len()];
    let mut have = 0;
    while have < first.len() {
        match stream.read(&mut first[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(read) => have += read,
        }
    }
    if first.starts_with(HTTP2_PREFACE_START) {
        let read_ahead = Bytes::copy_from_slice(&first);
        super::h2::serve_connection(stream, read_ahead, node, limits, name).await;
    } else if HTTP1_METHOD_STARTS
        .iter()
        .any(|method| first.starts_with(*method))
    {
        let read_ahead = Bytes::copy_from_slice(&first);
        super::http::serve_connection(stream, read_ahead, node, limits).await;
    } else {
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        buffer.extend_from_slice(&first);
        let chunk = vec![0u8; 64 * 1024];
        native_connection(stream, buffer, chunk, node, limits, name).await;
    }
}
