//! A client of the native protocol, for `lodectl`, `lode-bench` and tests. Runs on a glommio
//! executor; many requests may be in flight on one connection (pipelining), matched to their
//! answers by request id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use futures::lock::Mutex;
use futures::StreamExt;
use glommio::net::TcpStream;

use crate::tls::{ClientTls, Stream};
use lode_protocol::frame::{decode_frame, encode_frame};

use crate::api::native::{self, Request, Response};

/// Largest response frame the client accepts.
pub const MAX_RESPONSE_FRAME_BYTES: usize = 1 << 30;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The connection ended before the answer came.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The caller could not take a streamed piece (for example, writing it to a file failed).
    #[error("{0}")]
    Piece(String),
    /// The server answered with an error (etcd's message).
    #[error("{message}")]
    Server {
        /// gRPC status code.
        code: u32,
        /// etcd's message.
        message: String,
    },
}

/// Where the answers to one request go.
enum Waiter {
    /// One answer.
    One(oneshot::Sender<Result<Response, ClientError>>),
    /// A stream of answers (snapshot pieces), the last one ending it.
    Stream(mpsc::UnboundedSender<Result<Response, ClientError>>),
}

impl Waiter {
    fn send(self, answer: Result<Response, ClientError>) {
        match self {
            Waiter::One(sender) => {
                let _ = sender.send(answer);
            }
            Waiter::Stream(sender) => {
                let _ = sender.unbounded_send(answer);
            }
        }
    }
}

type Pending = Rc<RefCell<HashMap<u64, Waiter>>>;

/// One connection to a lode server.
pub struct Client {
    writer: Mutex<WriteHalf<Stream>>,
    pending: Pending,
    closed: Rc<RefCell<Option<String>>>,
    next_id: Cell<u64>,
    reader: glommio::task::JoinHandle<()>,
    /// The auth token every request carries (`Client::authenticate`).
    token: RefCell<Option<String>>,
    /// True when every request asks to be refused while the member knows no leader
    /// (`Client::set_require_leader`).
    require_leader: Cell<bool>,
}

impl Client {
    /// Connects to `address` (`host:port`) in the clear.
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        Client::connect_secured(address, None).await
    }

    /// Connects to `address` (`host:port`), over TLS with `tls` when given: the server's
    /// certificate must name `host`.
    pub async fn connect_secured(
        address: &str,
        tls: Option<(&ClientTls, &str)>,
    ) -> Result<Client, ClientError> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(std::io::Error::from)?;
        tcp.set_nodelay(true).map_err(std::io::Error::from)?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some((tls, host)) => {
                Stream::Client(Box::new(tls.connect(host, tcp).await.map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e)
                })?))
            }
        };
        let (mut reader, writer) = stream.split();
        let pending: Pending = Rc::default();
        let closed: Rc<RefCell<Option<String>>> = Rc::default();
        let (reader_pending, reader_closed) = (pending.clone(), closed.clone());
        let reader = glommio::spawn_local(async move {
            let why = read_responses(&mut reader, &reader_pending).await;
            *reader_closed.borrow_mut() = Some(why.clone());
            for (_, waiter) in reader_pending.borrow_mut().drain() {
                waiter.send(Err(ClientError::Closed(why.clone())));
            }
        })
        .detach();
        Ok(Client {
            writer: Mutex::new(writer),
            pending,
            closed,
            next_id: Cell::new(1),
            reader,
            token: RefCell::new(None),
            require_leader: Cell::new(false),
        })
    }

    /// Authenticates as `user` (etcd's Authenticate) and makes every later request carry the
    /// token. Returns false, changing nothing, when the server's auth is off (etcd's clients
    /// then go on without a token).
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<bool, ClientError> {
        let request = crate::auth::request::AuthRequest {
            name: user.to_string(),
            password: password.to_string(),
            ..crate::auth::request::AuthRequest::new(crate::auth::request::AuthKind::Authenticate)
        };
        match self.request(&Request::Auth(request)).await {
            Ok(Response::Auth(answer)) => {
                *self.token.borrow_mut() = Some(answer.token);
                Ok(true)
            }
            Ok(other) => Err(ClientError::Closed(format!(
                "unexpected answer to Authenticate: {other:?}"
            ))),
            Err(ClientError::Server { message, .. })
                if message == crate::auth::AuthError::AuthNotEnabled.to_string() =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Makes every later request carry `token` (or none).
    pub fn set_token(&self, token: Option<String>) {
        *self.token.borrow_mut() = token;
    }

    /// Makes every later request ask to be refused with "etcdserver: no leader" while the
    /// member knows no leader, and a watch stream opened so end once it loses it (etcd's
    /// `hasleader` metadata, clientv3's `WithRequireLeader`).
    pub fn set_require_leader(&self, require_leader: bool) {
        self.require_leader.set(require_leader);
    }

    /// Sends a request and waits for its answer; an error answer is `ClientError::Server`.
    /// A snapshot request is answered by a stream: use `snapshot`.
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        let (sender, receiver) = oneshot::channel();
        self.send(request, Waiter::One(sender)).await?;
        match receiver.await {
            Ok(result) => server_error(result),
            Err(_) => Err(ClientError::Closed("the connection ended".into())),
        }
    }

    /// Asks for a snapshot and hands each piece to `piece` in order, with the bytes still to
    /// come after it; returns once the last piece is handed over.
    pub async fn snapshot(
        &self,
        mut piece: impl FnMut(&[u8], u64) -> Result<(), String>,
    ) -> Result<(), ClientError> {
        let (sender, mut receiver) = mpsc::unbounded();
        self.send(&Request::Snapshot, Waiter::Stream(sender))
            .await?;
        loop {
            match receiver.next().await.map(server_error) {
                Some(Ok(Response::Snapshot {
                    remaining_bytes,
                    data,
                    ..
                })) => {
                    piece(&data, remaining_bytes).map_err(ClientError::Piece)?;
                    if remaining_bytes == 0 {
                        return Ok(());
                    }
                }
                Some(Ok(other)) => {
                    return Err(ClientError::Closed(format!(
                        "unexpected answer to a snapshot request: {other:?}"
                    )))
                }
                Some(Err(error)) => return Err(error),
                None => return Err(ClientError::Closed("the connection ended".into())),
            }
        }
    }

    /// Opens a watch stream on this connection (etcd's Watch call): send its requests with
    /// `WatchStream::send`, receive what its watchers are given with `WatchStream::next`.
    pub fn watch(&self) -> WatchStream<'_> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (sender, receiver) = mpsc::unbounded();
        self.pending.borrow_mut().insert(id, Waiter::Stream(sender));
        WatchStream {
            client: self,
            id,
            receiver,
        }
    }

    /// Observes election `name` (etcd's Observe): `ObserveStream::next` gives every leader and
    /// proclamation as it happens.
    pub async fn observe(&self, name: bytes::Bytes) -> Result<ObserveStream<'_>, ClientError> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (sender, receiver) = mpsc::unbounded();
        self.pending.borrow_mut().insert(id, Waiter::Stream(sender));
        let stream = ObserveStream {
            client: self,
            id,
            receiver,
        };
        let observe = native::CoordinationRequest::Observe { name };
        self.send_with_id(id, &Request::Coordination(observe))
            .await?;
        Ok(stream)
    }

    async fn send(&self, request: &Request, waiter: Waiter) -> Result<(), ClientError> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.pending.borrow_mut().insert(id, waiter);
        let sent = self.send_with_id(id, request).await;
        if sent.is_err() {
            self.pending.borrow_mut().remove(&id);
        }
        sent
    }

    async fn send_with_id(&self, id: u64, request: &Request) -> Result<(), ClientError> {
        if let Some(why) = self.closed.borrow().clone() {
            return Err(ClientError::Closed(why));
        }
        let mut wire = BytesMut::new();
        let meta = native::RequestMeta {
            token: self.token.borrow().clone(),
            require_leader: self.require_leader.get(),
        };
        encode_frame(&mut wire, &native::encode_request_as(id, request, &meta));
        let mut writer = self.writer.lock().await;
        writer.write_all(&wire).await?;
        writer.flush().await?;
        Ok(())
    }
}

/// A watch stream on a native connection.
pub struct WatchStream<'c> {
    client: &'c Client,
    id: u64,
    receiver: mpsc::UnboundedReceiver<Result<Response, ClientError>>,
}

impl WatchStream<'_> {
    /// Sends a request on the stream (create, cancel, progress).
    pub async fn send(&self, request: native::WatchRequest) -> Result<(), ClientError> {
        self.client
            .send_with_id(self.id, &Request::Watch(request))
            .await
    }

    /// The next response on the stream: its header and the watch response.
    pub async fn next(
        &mut self,
    ) -> Result<
        (
            crate::mvcc::request::ResponseHeader,
            crate::watch::stream::WatchResponse,
        ),
        ClientError,
    > {
        match self.receiver.next().await.map(server_error) {
            Some(Ok(Response::Watch { header, response })) => Ok((header, response)),
            Some(Ok(other)) => Err(ClientError::Closed(format!(
                "unexpected answer on a watch stream: {other:?}"
            ))),
            Some(Err(error)) => Err(error),
            None => Err(ClientError::Closed("the connection ended".into())),
        }
    }
}

impl Drop for WatchStream<'_> {
    fn drop(&mut self) {
        self.client.pending.borrow_mut().remove(&self.id);
    }
}

/// An Observe stream on a native connection.
pub struct ObserveStream<'c> {
    client: &'c Client,
    id: u64,
    receiver: mpsc::UnboundedReceiver<Result<Response, ClientError>>,
}

impl ObserveStream<'_> {
    /// The next leader or proclamation: its header and the leader's pair.
    pub async fn next(
        &mut self,
    ) -> Result<
        (
            crate::mvcc::request::ResponseHeader,
            crate::mvcc::kv::KeyValue,
        ),
        ClientError,
    > {
        match self.receiver.next().await.map(server_error) {
            Some(Ok(Response::Coordination(native::CoordinationResponse::Leader {
                header,
                kv,
            }))) => Ok((header, kv)),
            Some(Ok(other)) => Err(ClientError::Closed(format!(
                "unexpected answer on an observe stream: {other:?}"
            ))),
            Some(Err(error)) => Err(error),
            None => Err(ClientError::Closed("the connection ended".into())),
        }
    }
}

impl Drop for ObserveStream<'_> {
    fn drop(&mut self) {
        self.client.pending.borrow_mut().remove(&self.id);
    }
}

/// An error answer as `ClientError::Server`.
fn server_error(result: Result<Response, ClientError>) -> Result<Response, ClientError> {
    match result {
        Ok(Response::Error { code, message }) => Err(ClientError::Server { code, message }),
        other => other,
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.cancel();
    }
}

async fn read_responses(reader: &mut futures::io::ReadHalf<Stream>, pending: &Pending) -> String {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) => return "the server closed the connection".into(),
            Ok(read) => read,
            Err(error) => return error.to_string(),
        };
        buffer.extend_from_slice(&chunk[..read]);
        loop {
            let frame = match decode_frame(&mut buffer, MAX_RESPONSE_FRAME_BYTES) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return format!("bad frame from the server: {error}"),
            };
            match native::decode_response(&frame) {
                Ok((0, Response::Error { message, .. })) => return message,
                Ok((id, response)) => {
                    // A stream's pieces keep its entry until the last one.
                    let more_to_come = matches!(
                        response,
                        Response::Snapshot { remaining_bytes, .. } if remaining_bytes > 0
                    ) || matches!(
                        response,
                        Response::Watch { .. }
                            | Response::Coordination(native::CoordinationResponse::Leader { .. })
                    );
                    let mut pending = pending.borrow_mut();
                    if more_to_come {
                        if let Some(Waiter::Stream(sender)) = pending.get(&id) {
                            let _ = sender.unbounded_send(Ok(response));
                            continue;
                        }
                    }
                    if let Some(waiter) = pending.remove(&id) {
                        waiter.send(Ok(response));
                    }
                }
                Err(error) => return format!("bad response from the server: {error}"),
            }
        }
    }
}
