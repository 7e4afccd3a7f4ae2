//! The `lode` server: a node's consensus core and its client-facing listeners.
//!
//! A node runs one glommio executor per core (`run::run_core`): every core owns a shard and
//! accepts clients; core 0 also runs the consensus core (see ARCHITECTURE.md).

pub mod access;
pub mod admission;
pub mod authority;
pub mod claim;
pub mod concurrency;
pub mod dashboard;
pub mod grpc;
pub mod h2;
pub mod http;
pub mod listener;
pub mod native;
pub mod node;
pub mod run;
pub mod watching;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::api::native::Response;
use node::Node;

/// One address a core listens on, and the TLS its connections are served with (`https`).
#[derive(Clone, Debug)]
pub struct Listen {
    /// `host:port`.
    pub address: String,
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl Listen {
    /// The address as logged: `https://host:port` or `http://host:port`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }
}

/// The CN of a connection's verified client certificate: while auth is on, the user a request
/// without a token speaks for (as etcd's `--client-cert-auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateName(pub Arc<str>);

impl CertificateName {
    /// The name a TLS handshake's identity gives, if any.
    pub fn of(identity: Option<crate::tls::Identity>) -> Option<CertificateName> {
        identity
            .filter(|identity| !identity.common_name.is_empty())
            .map(|identity| CertificateName(Arc::from(identity.common_name.as_str())))
    }
}

/// A connection just accepted, made ready to read: with TLS, once the handshake completed
/// (within `tls::HANDSHAKE_TIMEOUT`) and the client's certificate passed; `None` when it did
/// not (logged at debug: a port scanner or a client with the wrong certificate is routine).
pub async fn secure(
    stream: glommio::net::TcpStream,
    tls: Option<&Arc<crate::tls::ServerTls>>,
) -> Option<(crate::tls::Stream, Option<crate::tls::Identity>)> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Some((crate::tls::Stream::Plain(stream), None));
    };
    let remote = stream.peer_addr().ok();
    match tls.accept(stream, remote.map(|a| a.ip())).await {
        Ok((stream, identity)) => Some((crate::tls::Stream::Server(Box::new(stream)), identity)),
        Err(error) => {
            tracing::debug!(remote = ?remote, %error, "refused a TLS connection");
            None
        }
    }
}

/// Limits applied to client requests at the edge.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// etcd's `--max-request-bytes`: a larger request is refused "request is too large".
    pub max_request_bytes: usize,
    /// Largest frame accepted before the connection is closed (the request limit plus slack,
    /// as etcd's gRPC receive limit).
    pub max_frame_bytes: usize,
    /// How often idle watchers that asked for progress notifications get one (etcd's
    /// `--watch-progress-notify-interval`, 10 minutes by default).
    pub watch_progress_interval: std::time::Duration,
    /// Streams one HTTP/2 connection may have open at once (etcd's `--max-concurrent-streams`,
    /// unlimited by default: one API server multiplexes every watch over one connection).
    pub max_concurrent_streams: u32,
    /// How often an HTTP/2 connection with no traffic is pinged (etcd's
    /// `--grpc-keepalive-interval`, 2 h); `None` never.
    pub keepalive_interval: Option<std::time::Duration>,
    /// How long a ping may go unanswered before the connection is closed (etcd's
    /// `--grpc-keepalive-timeout`, 20 s).
    pub keepalive_timeout: std::time::Duration,
}

/// etcd's default watch progress notification interval.
pub const DEFAULT_WATCH_PROGRESS_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(600);

/// Bytes of undelivered events a watch stream may hold before its watchers fall back to
/// catching up from history.
pub const WATCH_STREAM_BUDGET_BYTES: usize = 1 << 20;

impl Limits {
    /// Limits for a `--max-request-bytes` value.
    pub fn for_max_request_bytes(max_request_bytes: usize) -> Limits {
        Limits {
            max_request_bytes,
            max_frame_bytes: max_request_bytes + 512 * 1024,
            watch_progress_interval: DEFAULT_WATCH_PROGRESS_INTERVAL,
            max_concurrent_streams: u32::MAX,
            keepalive_interval: Some(std::time::Duration::from_secs(2 * 3600)),
            keepalive_timeout: std::time::Duration::from_secs(20),
        }
    }
}

/// Fills the parts of the top-level response header the store does not decide.
pub fn fill_header(response: &mut Response, node: &Node) {
    use crate::mvcc::request::WriteResponse;
    let header = match response {
        Response::Auth(a) => &mut a.header,
        Response::Range(r) => &mut r.header,
        Response::Write(WriteResponse::Put(r)) => &mut r.header,
        Response::Write(WriteResponse::DeleteRange(r)) => &mut r.header,
        Response::Write(WriteResponse::Txn(r)) => &mut r.header,
        Response::Write(WriteResponse::Compact(r)) => &mut r.header,
        Response::Write(WriteResponse::Lease(r)) => &mut r.header,
        Response::Lease(answer) => answer.header_mut(),
        Response::Coordination(answer) => answer.header_mut(),
        Response::Status(s) => &mut s.header,
        Response::Watch { header, .. } => header,
        Response::Alarm(a) => &mut a.header,
        Response::Snapshot { header, .. } => header,
        Response::Members { header, .. } => header,
        Response::MoveLeader { header } => header,
        Response::HashKv { header, .. } => header,
        Response::Error { .. } => return,
    };
    stamp_header(header, node);
}

/// Fills in who answered: the cluster, this member and its Raft term.
pub fn stamp_header(header: &mut crate::mvcc::request::ResponseHeader, node: &Node) {
    header.cluster_id = node.config.cluster_id;
    header.member_id = node.config.member_id.get();
    header.raft_term = node.term();
}

/// Set by SIGTERM or SIGINT: the node stops taking requests, fails queued ones clearly and exits.
pub fn install_shutdown_signals() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, flag.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone())?;
    Ok(flag)
}

/// True once a shutdown signal arrived.
pub fn shutdown_requested(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// A listener on `address` for this executor, bound with SO_REUSEPORT (every core binds the
/// same address and the kernel spreads connections) and SO_REUSEADDR (a restarted member can
/// bind at once even while connections of its previous run linger in TIME_WAIT; glommio's own
/// `bind` sets only the first).
pub fn listen(address: &str) -> std::io::Result<glommio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    use std::os::fd::{FromRawFd, IntoRawFd};
    let address = address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolves to nothing",
        )
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    // SAFETY: the descriptor was just created here, is bound and listening, and its ownership
    // passes to the glommio listener (nothing else closes it).
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// An exported snapshot file read as the pieces of an etcd-shaped stream: the file in pieces
/// of at most `piece_bytes`, then one piece with the zero padding and SHA-256 etcdctl expects
/// (`snapshot::EtcdStreamHasher`). Shared by the native protocol and the gRPC Snapshot call.
pub struct SnapshotPieces {
    file: glommio::io::BufferedFile,
    path: std::path::PathBuf,
    size: u64,
    position: u64,
    total: u64,
    hasher: Option<crate::snapshot::EtcdStreamHasher>,
    piece_bytes: usize,
}

impl SnapshotPieces {
    /// Opens the export file at `path`.
    pub async fn open(
        path: &std::path::Path,
        piece_bytes: usize,
    ) -> Result<SnapshotPieces, crate::consensus::ServerError> {
        let failed = |e: glommio::GlommioError<()>| {
            crate::consensus::ServerError::Internal(format!("reading {}: {e}", path.display()))
        };
        let file = glommio::io::BufferedFile::open(path)
            .await
            .map_err(failed)?;
        let size = file.file_size().await.map_err(failed)?;
        Ok(SnapshotPieces {
            file,
            path: path.to_path_buf(),
            size,
            position: 0,
            total: crate::snapshot::etcd_stream_len(size),
            hasher: Some(crate::snapshot::EtcdStreamHasher::default()),
            piece_bytes,
        })
    }

    /// The next piece and how many bytes of the stream follow it; `None` after the last.
    pub async fn next(
        &mut self,
    ) -> Result<Option<(bytes::Bytes, u64)>, crate::consensus::ServerError> {
        if self.position == self.size {
            let Some(hasher) = self.hasher.take() else {
                return Ok(None);
            };
            return Ok(Some((bytes::Bytes::from(hasher.trailer()), 0)));
        }
        let length = (self.size - self.position).min(self.piece_bytes as u64) as usize;
        let piece = self
            .file
            .read_at(self.position, length)
            .await
            .map_err(|e| {
                crate::consensus::ServerError::Internal(format!(
                    "reading {}: {e}",
                    self.path.display()
                ))
            })?;
        if piece.len() != length {
            return Err(crate::consensus::ServerError::Internal(format!(
                "reading {}: short read at {}",
                self.path.display(),
                self.position
            )));
        }
        let piece = bytes::Bytes::copy_from_slice(&piece);
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&piece);
        }
        self.position += length as u64;
        let streamed = self.position;
        Ok(Some((piece, self.total - streamed)))
    }

    /// Closes the file.
    pub async fn close(self) {
        let _ = self.file.close().await;
    }
}
