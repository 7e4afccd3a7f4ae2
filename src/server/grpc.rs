//! etcd's v3 gRPC API, served on the cores that own the connections.
//!
//! hyper's HTTP/2 server runs each connection on the core that accepted it (glommio
//! `spawn_local`, no Tokio runtime), and tonic's generated services decode requests into
//! lode's model ([`crate::api::etcd`]), which then travels the same path as the native
//! protocol's: reads to the shards, writes encoded as a native request frame (the log's entry
//! format) and proposed.
//!
//! tonic wants `Send` handler futures while lode's per-core state is `Rc`: a handler hands
//! its work to a task spawned on the same core ([`on_core`]) and awaits only a `Send` oneshot,
//! so nothing core-local is held across an `.await` in the handler itself.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use lode_protocol::etcd::etcdserverpb as pb;
use tonic::{Code, Status};

use super::node::Node;
use super::Limits;
use crate::api::etcd;
use crate::api::native::{self, Request};
use crate::consensus::ServerError;
use crate::mvcc::request::{WriteRequest, WriteResponse};
use crate::mvcc::KvError;

thread_local! {
    /// This core's node, for the handlers running on it.
    static CORE_NODE: RefCell<Option<(Rc<Node>, Limits)>> = const { RefCell::new(None) };
}

/// Makes `node` the one this core's gRPC handlers serve from.
pub fn install(node: Rc<Node>, limits: Limits) {
    CORE_NODE.with(|slot| *slot.borrow_mut() = Some((node, limits)));
}

/// An error as the gRPC status etcd answers with (code and message).
fn status(error: ServerError) -> Status {
    Status::new(Code::from_i32(error.grpc_code() as i32), error.to_string())
}

/// Runs `work` on this core with its node, from a handler whose future must be `Send`.
async fn on_core<T, W, F>(work: W) -> Result<T, Status>
where
    T: Send + 'static,
    W: FnOnce(Rc<Node>, Limits) -> F + Send + 'static,
    F: Future<Output = Result<T, ServerError>> + 'static,
{
    let (sender, receiver) = futures::channel::oneshot::channel();
    {
        let Some((node, limits)) = CORE_NODE.with(|slot| slot.borrow().clone()) else {
            return Err(status(ServerError::Stopped));
        };
        glommio::spawn_local(async move {
            let _ = sender.send(work(node, limits).await);
        })
        .detach();
    }
    match receiver.await {
        Ok(result) => result.map_err(status),
        Err(_) => Err(status(ServerError::Stopped)),
    }
}

/// Proposes `write` as the native protocol would: checked, encoded as a request frame (the
/// log's entry format), refused if larger than `--max-request-bytes`.
async fn write(
    node: Rc<Node>,
    limits: Limits,
    write: WriteRequest,
) -> Result<WriteResponse, ServerError> {
    crate::mvcc::validate::check_write(&write, node.config.max_txn_ops)?;
    let physical = match &write {
        WriteRequest::Compact(compaction) if compaction.physical => Some(compaction.revision),
        _ => None,
    };
    let cost = crate::alarm::write_cost(&write);
    let frame = Bytes::from(native::encode_request(0, &Request::Write(write)));
    if frame.len() > limits.max_request_bytes {
        return Err(ServerError::Kv(KvError::RequestTooLarge));
    }
    let mut response = node.write(frame, cost, physical).await?;
    let header = match &mut response {
        WriteResponse::Put(r) => &mut r.header,
        WriteResponse::DeleteRange(r) => &mut r.header,
        WriteResponse::Txn(r) => &mut r.header,
        WriteResponse::Compact(r) => &mut r.header,
    };
    super::stamp_header(header, &node);
    Ok(response)
}

/// Why a write's answer was not the kind its request asked for.
fn mismatched(what: &str) -> ServerError {
    ServerError::Internal(format!(
        "a {what} was answered with another kind of response"
    ))
}

/// etcd's `etcdserverpb.KV` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvService;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: tonic::Request<pb::RangeRequest>,
    ) -> Result<tonic::Response<pb::RangeResponse>, Status> {
        let range = etcd::range_request(request.into_inner());
        on_core(move |node, _| async move {
            let mut response = node.range(&range).await?;
            super::stamp_header(&mut response.header, &node);
            Ok(etcd::range_response(response))
        })
        .await
        .map(tonic::Response::new)
    }

    async fn put(
        &self,
        request: tonic::Request<pb::PutRequest>,
    ) -> Result<tonic::Response<pb::PutResponse>, Status> {
        let put = WriteRequest::Put(etcd::put_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, put).await? {
                WriteResponse::Put(response) => Ok(etcd::put_response(response)),
                _ => Err(mismatched("put")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn delete_range(
        &self,
        request: tonic::Request<pb::DeleteRangeRequest>,
    ) -> Result<tonic::Response<pb::DeleteRangeResponse>, Status> {
        let delete = WriteRequest::DeleteRange(etcd::delete_range_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, delete).await? {
                WriteResponse::DeleteRange(response) => Ok(etcd::delete_range_response(response)),
                _ => Err(mismatched("delete")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn txn(
        &self,
        request: tonic::Request<pb::TxnRequest>,
    ) -> Result<tonic::Response<pb::TxnResponse>, Status> {
        let txn = WriteRequest::Txn(etcd::txn_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, txn).await? {
                WriteResponse::Txn(response) => Ok(etcd::txn_response(response)),
                _ => Err(mismatched("txn")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn compact(
        &self,
        request: tonic::Request<pb::CompactionRequest>,
    ) -> Result<tonic::Response<pb::CompactionResponse>, Status> {
        let compaction = WriteRequest::Compact(etcd::compaction_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, compaction).await? {
                WriteResponse::Compact(response) => Ok(etcd::compaction_response(response)),
                _ => Err(mismatched("compaction")),
            }
        })
        .await
        .map(tonic::Response::new)
    }
}

/// Serves one HTTP/2 connection whose first bytes (`read_ahead`, read while telling the
/// protocols apart) were already taken from `stream`.
pub async fn serve_connection(stream: TcpStream, read_ahead: Bytes, limits: Limits) {
    let max_message = limits.max_frame_bytes;
    let kv = pb::kv_server::KvServer::new(KvService)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let mut kv = kv.clone();
            async move {
                let path = request.uri().path();
                if path.starts_with("/etcdserverpb.KV/") {
                    tower_service::Service::call(&mut kv, request).await
                } else {
                    Ok(unimplemented_response(path))
                }
            }
        });
    let io = GlommioIo { stream, read_ahead };
    let connection = hyper::server::conn::http2::Builder::new(LocalExecutor)
        .max_frame_size(1 << 20)
        .serve_connection(io, service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "gRPC connection ended");
    }
}

/// gRPC's answer to a method lode does not serve: status UNIMPLEMENTED, in trailers-only form.
fn unimplemented_response(path: &str) -> http::Response<tonic::body::Body> {
    Status::unimplemented(format!("lode does not serve {path}")).into_http()
}

/// Spawns hyper's per-stream tasks on the current core.
#[derive(Clone, Copy, Debug)]
struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// A glommio TCP stream as hyper's I/O, replaying the bytes read ahead first.
struct GlommioIo {
    stream: TcpStream,
    read_ahead: Bytes,
}

/// Most bytes asked of the socket per read: hyper offers large buffers, and the part handed
/// to the socket is zeroed first.
const READ_CHUNK: usize = 64 << 10;

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        // SAFETY: the first `len` bytes of the cursor's unfilled part are zeroed before they
        // are viewed as initialized, and `advance` is told only how many the read filled.
        unsafe {
            let unfilled = buf.as_mut();
            let len = unfilled.len().min(READ_CHUNK);
            let start = unfilled.as_mut_ptr().cast::<u8>();
            std::ptr::write_bytes(start, 0, len);
            let slice = std::slice::from_raw_parts_mut(start, len);
            match Pin::new(&mut self.stream).poll_read(cx, slice) {
                Poll::Ready(Ok(n)) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}
