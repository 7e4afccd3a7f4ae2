//! The receiving side of the peer transport: accepting connections, checking every frame
//! (cluster, version, size, the sender's certificate), handing Raft messages to the inbox,
//! answering members queries and the dashboard's report queries, remembering where unlisted
//! senders said they are, and writing incoming snapshot files chunk by chunk until they are
//! whole and synced.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::io::DmaStreamWriter;
use glommio::net::TcpListener;
use raft::eraftpb::{Message, MessageType};

use super::{write_flushed, PeerAddress, PeerTransport, MAX_FRAME_BYTES, RECONNECT_PAUSE};
use crate::peer::wire::{
    decode_frame, encode_members, Frame, SnapshotChunk, REMOVED_NOTICE, SNAPSHOT_ACCEPTED,
    SNAPSHOT_REFUSED,
};
use crate::snapshotter::received_file_name;
use crate::tls::{ServerTls, Stream};

impl PeerTransport {
    /// Accepts peers' connections on `listener` until it fails; with `tls`, only connections
    /// whose handshake and certificate pass.
    pub async fn serve(self: Rc<Self>, listener: TcpListener, tls: Option<Arc<ServerTls>>) {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (transport, tls) = (self.clone(), tls.clone());
                    glommio::spawn_local(async move {
                        let Some(tls) = tls else {
                            return transport.receive(Stream::Plain(stream)).await;
                        };
                        let remote = stream.peer_addr().ok();
                        match tls.accept(stream, remote.map(|a| a.ip())).await {
                            Ok((stream, _)) => {
                                transport.receive(Stream::Server(Box::new(stream))).await
                            }
                            Err(error) => {
                                let remote = remote.map_or("unknown".into(), |a| a.to_string());
                                transport.log_refusal(&remote, &error);
                            }
                        }
                    })
                    .detach();
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    glommio::timer::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }

    async fn receive(&self, mut stream: Stream) {
        let peer_address = stream
            .tcp()
            .peer_addr()
            .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
        // With verified peer certificates, the member a connection speaks for must be one its
        // certificate names: the host of that member's peer URL (as every member checks when
        // it dials that member). A certificate naming no host at all binds to no member.
        let certificate: Option<Vec<u8>> = match &stream {
            Stream::Server(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| der.to_vec()),
            _ => None,
        };
        let mut bound_to: Option<u64> = None;
        let mut buffer = BytesMut::with_capacity(64 << 10);
        let mut chunk = vec![0u8; 64 << 10];
        let mut incoming: Option<IncomingSnapshot> = None;
        let outcome: Result<(), String> = 'connection: loop {
            let read = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break Ok(()),
                Ok(read) => read,
            };
            buffer.extend_from_slice(&chunk[..read]);
            loop {
                let buffered = buffer.len();
                let frame = match decode_frame(
                    &mut buffer,
                    self.cluster_id,
                    self.own_id,
                    MAX_FRAME_BYTES,
                ) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => break 'connection Err(error.to_string()),
                };
                let sender = match &frame {
                    Frame::Messages { from, .. }
                    | Frame::SnapshotChunk { from, .. }
                    | Frame::Hello { from, .. }
                    | Frame::ReportQuery { from, .. } => *from,
                    Frame::MembersQuery => 0,
                };
                if let (Some(certificate), true) = (&certificate, sender != 0) {
                    if bound_to != Some(sender) {
                        let host = self.claimed_host(sender, &frame);
                        if let Some(host) = host {
                            if crate::tls::names_host(certificate, &host) == Some(false) {
                                break 'connection Err(format!(
                                    "its certificate does not name {host}, member {sender:x}'s \
                                     peer URL host: it cannot speak for that member"
                                ));
                            }
                        }
                        bound_to = Some(sender);
                    }
                }
                if self.removed.borrow().contains(&sender) {
                    let _ = write_flushed(&mut stream, &[REMOVED_NOTICE]).await;
                    break 'connection Err(format!(
                        "member {sender:x} was removed from the cluster"
                    ));
                }
                // Counted for members this one dials only: a stranger's made-up IDs must not
                // grow the metrics.
                if self.peers.borrow().contains_key(&sender) {
                    self.received(sender, buffered - buffer.len());
                }
                match frame {
                    Frame::MembersQuery => {
                        let registry = self.registry.borrow().as_ref().map(|source| source());
                        let Some(registry) = registry else {
                            break 'connection Err("members asked for before they are known".into());
                        };
                        let mut wire = BytesMut::new();
                        encode_members(self.cluster_id, self.own_id, &registry, &mut wire);
                        if let Err(error) = write_flushed(&mut stream, &wire).await {
                            break 'connection Err(format!("answering a members query: {error}"));
                        }
                    }
                    Frame::ReportQuery { from, first_sample } => {
                        let answer = match self.answer_report(from, first_sample) {
                            Ok(answer) => answer,
                            Err(error) => break 'connection Err(error),
                        };
                        if let Err(error) = write_flushed(&mut stream, &answer).await {
                            break 'connection Err(format!("answering a report query: {error}"));
                        }
                    }
                    Frame::Hello { from, peer_urls } => {
                        if from == self.own_id || self.peers.borrow().contains_key(&from) {
                            continue;
                        }
                        // A sender naming no usable URL is still heard; it just cannot be
                        // answered until the configuration lists it.
                        match peer_urls.first().map(|url| PeerAddress::from_url(url)) {
                            Some(Ok(address)) => self.heard_from(from, address),
                            Some(Err(error)) => tracing::debug!(
                                peer = %format!("{from:x}"),
                                %error,
                                "a hello naming an unusable peer URL"
                            ),
                            None => {}
                        }
                    }
                    Frame::SnapshotChunk { chunk, .. } => {
                        if let Err(error) = self.take_chunk(&mut incoming, chunk).await {
                            break 'connection Err(error);
                        }
                    }
                    Frame::Messages { messages, .. } => {
                        let mut deliver = Vec::with_capacity(messages.len());
                        for message in messages {
                            if message.get_msg_type() != MessageType::MsgSnapshot {
                                deliver.push(message);
                                continue;
                            }
                            let answer = match self.finish_snapshot(incoming.take(), &message).await
                            {
                                Ok(()) => {
                                    deliver.push(message);
                                    SNAPSHOT_ACCEPTED
                                }
                                Err(error) => {
                                    tracing::warn!(peer = %peer_address, %error, "refusing a snapshot");
                                    SNAPSHOT_REFUSED
                                }
                            };
                            self.inbox.deliver(std::mem::take(&mut deliver));
                            let _ = write_flushed(&mut stream, &[answer]).await;
                        }
                        self.inbox.deliver(deliver);
                    }
                }
            }
        };
        if let Some(incoming) = incoming {
            incoming.abandon().await;
        }
        if let Err(error) = outcome {
            self.log_refusal(&peer_address, &error);
            let _ = stream.close().await;
        }
    }

    /// The host `sender`'s certificate must name: its configured peer URL's, or for a sender
    /// missing from the configuration, the one its hello names (or named before).
    fn claimed_host(&self, sender: u64, frame: &Frame) -> Option<String> {
        if let Some(peer) = self.peers.borrow().get(&sender) {
            return Some(peer.address.borrow().host.clone());
        }
        if let Frame::Hello { peer_urls, .. } = frame {
            return peer_urls
                .first()
                .and_then(|url| crate::urls::parse_url(url).ok())
                .map(|url| url.host);
        }
        self.heard
            .borrow()
            .iter()
            .find(|(id, _)| *id == sender)
            .map(|(_, address)| address.host.clone())
    }

    /// Writes one chunk of a snapshot being received; chunks must come in order.
    async fn take_chunk(
        &self,
        incoming: &mut Option<IncomingSnapshot>,
        chunk: SnapshotChunk,
    ) -> Result<(), String> {
        if chunk.offset == 0 {
            if let Some(previous) = incoming.take() {
                previous.abandon().await;
            }
            *incoming = Some(IncomingSnapshot::create(&self.snapshot_dir, &chunk).await?);
        }
        let Some(receiving) = incoming.as_mut() else {
            return Err(format!(
                "snapshot {} chunk at offset {} without its beginning",
                chunk.index, chunk.offset
            ));
        };
        if (chunk.index, chunk.term, chunk.file_size, chunk.offset)
            != (
                receiving.index,
                receiving.term,
                receiving.file_size,
                receiving.received,
            )
        {
            return Err(format!(
                "snapshot {} chunk at offset {} does not follow snapshot {} at offset {}",
                chunk.index, chunk.offset, receiving.index, receiving.received
            ));
        }
        receiving
            .writer
            .write_all(&chunk.data)
            .await
            .map_err(|e| format!("writing {}: {e}", receiving.temporary.display()))?;
        receiving.received += chunk.data.len() as u64;
        Ok(())
    }

    /// Makes a whole received snapshot durable under its final name, checking it is the one
    /// `message` installs.
    async fn finish_snapshot(
        &self,
        incoming: Option<IncomingSnapshot>,
        message: &Message,
    ) -> Result<(), String> {
        let metadata = message.get_snapshot().get_metadata();
        let Some(incoming) = incoming else {
            return Err(format!(
                "snapshot {} arrived without its file",
                metadata.index
            ));
        };
        if incoming.index != metadata.index
            || incoming.term != metadata.term
            || incoming.received != incoming.file_size
        {
            let error = format!(
                "snapshot {} (term {}) arrived after {} of {} bytes of snapshot {} (term {})",
                metadata.index,
                metadata.term,
                incoming.received,
                incoming.file_size,
                incoming.index,
                incoming.term
            );
            incoming.abandon().await;
            return Err(error);
        }
        incoming.complete(&self.snapshot_dir).await
    }
}

/// A snapshot file being received.
struct IncomingSnapshot {
    index: u64,
    term: u64,
    file_size: u64,
    received: u64,
    temporary: PathBuf,
    writer: DmaStreamWriter,
}

impl IncomingSnapshot {
    async fn create(dir: &Path, first: &SnapshotChunk) -> Result<IncomingSnapshot, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // A name of its own per stream: two connections sending the same snapshot (a peer
        // retrying, or a hostile one) must never write, or remove, each other's file.
        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let stream = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temporary = dir.join(format!("{}.{stream}.tmp", received_file_name(first.index)));
        let writer = crate::snapshotter::create_stream(&temporary)
            .await
            .map_err(|e| format!("creating {}: {e}", temporary.display()))?;
        Ok(IncomingSnapshot {
            index: first.index,
            term: first.term,
            file_size: first.file_size,
            received: 0,
            temporary,
            writer,
        })
    }

    /// Syncs the file and renames it to its final name.
    async fn complete(mut self, dir: &Path) -> Result<(), String> {
        let path = dir.join(received_file_name(self.index));
        let temporary = self.temporary.clone();
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            let _ = std::fs::remove_file(&temporary);
            format!("{what} {}: {e}", temporary.display())
        };
        if let Err(e) = self.writer.sync().await {
            return Err(failed("syncing", &e));
        }
        if let Err(e) = self.writer.close().await {
            return Err(failed("closing", &e));
        }
        glommio::io::rename(&self.temporary, &path)
            .await
            .map_err(|e| failed("renaming", &e))
    }

    /// Drops a partial file.
    async fn abandon(mut self) {
        let _ = self.writer.close().await;
        let _ = std::fs::remove_file(&self.temporary);
    }
}
