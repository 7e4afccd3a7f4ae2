//! One core of a running node: its shard, its router, its listener, and (on core 0) the
//! consensus core. `run_core` is what every executor of the `lode` process runs.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{Latency, Shares};

use super::{native, shutdown_requested, Limits};
use crate::api::native::StatusResponse;
use crate::consensus::{Consensus, ConsensusConfig, ServerError};
use crate::mvcc::request::{RangeRequest, RangeResponse, ResponseHeader, WriteResponse};
use crate::mvcc::validate;
use crate::shard::route::Router;
use crate::shard::{CoreMessage, ShardState};
use crate::wal::io::DmaDir;
use crate::wal::{Wal, WalOptions};

/// Everything a core needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    /// Consensus settings.
    pub consensus: ConsensusConfig,
    /// The log directory.
    pub wal_dir: PathBuf,
    /// Log options.
    pub wal_options: WalOptions,
    /// The native protocol's address (every core listens on it, SO_REUSEPORT).
    pub listen_native: String,
    /// Request limits.
    pub limits: Limits,
    /// Set by SIGTERM/SIGINT.
    pub shutdown: Arc<AtomicBool>,
}

/// A core's entry point for client requests.
pub struct Node {
    router: Rc<Router>,
    consensus: Option<Rc<Consensus<DmaDir>>>,
    /// Settings (IDs for headers, limits).
    pub config: ConsensusConfig,
}

impl Node {
    /// Proposes a write given as its verified request frame, through the consensus core. A
    /// physical compaction is answered once every shard has finished it, as etcd's.
    pub async fn write(
        &self,
        frame: Bytes,
        physical_compaction: Option<i64>,
    ) -> Result<WriteResponse, ServerError> {
        let response = if let Some(consensus) = &self.consensus {
            consensus.propose_frame(&frame).await?
        } else {
            let (reply, answer) = oneshot::channel();
            self.router
                .deliver(0, CoreMessage::Propose { frame, reply })
                .await?;
            answer.await.unwrap_or(Err(ServerError::Stopped))?
        };
        if let Some(revision) = physical_compaction {
            let mut pending = Vec::new();
            for core in 0..self.router.cores() {
                let (reply, answer) = oneshot::channel();
                self.router
                    .deliver(core, CoreMessage::WaitCompacted { revision, reply })
                    .await?;
                pending.push(answer);
            }
            for answer in pending {
                answer.await.map_err(|_| ServerError::Stopped)?;
            }
        }
        Ok(response)
    }

    /// Serves a range: serializable at this core's latest revision, linearizable after a
    /// ReadIndex round through the consensus core.
    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse, ServerError> {
        validate::check_range(request)?;
        let current = if request.serializable {
            self.router.local().watermark()
        } else {
            self.read_index().await?
        };
        self.router.range(request, current).await
    }

    async fn read_index(&self) -> Result<i64, ServerError> {
        if let Some(consensus) = &self.consensus {
            return consensus.read_index().await;
        }
        let (reply, answer) = oneshot::channel();
        self.router
            .deliver(0, CoreMessage::ReadIndex { reply })
            .await?;
        answer.await.unwrap_or(Err(ServerError::Stopped))
    }

    /// etcd's Maintenance.Status, from the consensus core.
    pub async fn status(&self) -> Result<StatusResponse, ServerError> {
        if let Some(consensus) = &self.consensus {
            return Ok(status_of(consensus));
        }
        let (reply, answer) = oneshot::channel();
        self.router
            .deliver(0, CoreMessage::Status { reply })
            .await?;
        answer.await.map_err(|_| ServerError::Stopped)
    }

    /// A fresh snapshot's bytes and revision, from the consensus core.
    pub async fn snapshot(&self) -> Result<(Bytes, i64), ServerError> {
        if let Some(consensus) = &self.consensus {
            let data = consensus.snapshot_now().await?;
            return Ok((data, consensus.revision()));
        }
        let (reply, answer) = oneshot::channel();
        self.router
            .deliver(0, CoreMessage::Snapshot { reply })
            .await?;
        answer.await.unwrap_or(Err(ServerError::Stopped))
    }

    /// The Raft term for response headers.
    pub fn term(&self) -> u64 {
        match &self.consensus {
            Some(consensus) => consensus.term(),
            None => self.router.local().term(),
        }
    }
}

fn status_of(consensus: &Consensus<DmaDir>) -> StatusResponse {
    StatusResponse {
        header: ResponseHeader::at(consensus.revision()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        db_size: 0,
        leader: consensus.leader(),
        raft_index: consensus.last_index(),
        raft_term: consensus.term(),
        raft_applied_index: consensus.applied_index(),
    }
}

/// Handles messages from another core until the channel closes.
async fn receive(
    stream: glommio::channels::shared_channel::ConnectedReceiver<CoreMessage>,
    local: Rc<ShardState>,
    consensus: Option<Rc<Consensus<DmaDir>>>,
) {
    while let Some(message) = stream.recv().await {
        match (message, &consensus) {
            (CoreMessage::Propose { frame, reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(consensus.propose_frame(&frame).await);
                })
                .detach();
            }
            (CoreMessage::ReadIndex { reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                glommio::spawn_local(async move {
                    let _ = reply.send(consensus.read_index().await);
                })
                .detach();
            }
            (CoreMessage::Status { reply }, Some(consensus)) => {
                let _ = reply.send(status_of(consensus));
            }
            (CoreMessage::Snapshot { reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                glommio::spawn_local(async move {
                    let result = consensus.snapshot_now().await;
                    let _ = reply.send(result.map(|data| (data, consensus.revision())));
                })
                .detach();
            }
            (message, _) => local.handle(message),
        }
    }
}

async fn tell_everyone_to_stop(router: &Router) {
    for core in 0..router.cores() {
        let _ = router.deliver(core, CoreMessage::Shutdown).await;
    }
}

/// Runs one core of the node until shutdown. Core 0 (the first to join the mesh) opens the
/// log and runs the consensus core; every core owns a shard and listens for clients.
pub async fn run_core(
    config: NodeConfig,
    mesh: Option<MeshBuilder<CoreMessage, Full>>,
) -> Result<(), String> {
    let local = ShardState::new();
    let (router, mut streams) = match mesh {
        Some(mesh) => {
            let (senders, mut receivers) = mesh
                .join()
                .await
                .map_err(|_| "joining the core mesh failed".to_string())?;
            let core = senders.peer_id();
            let cores = senders.nr_consumers();
            let streams = receivers.streams();
            (
                Rc::new(Router::new(core, cores, Some(senders), local.clone())),
                streams,
            )
        }
        None => (Rc::new(Router::new(0, 1, None, local.clone())), Vec::new()),
    };
    let started = start_core(&config, &router).await;
    let consensus = match started {
        Ok(consensus) => consensus,
        Err(error) => {
            tell_everyone_to_stop(&router).await;
            return Err(error);
        }
    };
    for (_, stream) in streams.drain(..) {
        glommio::spawn_local(receive(stream, local.clone(), consensus.clone())).detach();
    }
    let node = Rc::new(Node {
        router: router.clone(),
        consensus: consensus.clone(),
        config: config.consensus.clone(),
    });
    let listener = match glommio::net::TcpListener::bind(&config.listen_native) {
        Ok(listener) => listener,
        Err(error) => {
            tell_everyone_to_stop(&router).await;
            return Err(format!(
                "cannot listen on {}: {error}",
                config.listen_native
            ));
        }
    };
    glommio::spawn_local(native::serve(listener, node, config.limits)).detach();
    match consensus {
        Some(consensus) => {
            let watcher = consensus.clone();
            let shutdown = config.shutdown.clone();
            glommio::spawn_local(async move {
                while !shutdown_requested(&shutdown) {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
                tracing::info!("shutdown requested");
                watcher.stop();
            })
            .detach();
            eprintln!(
                "lode: member {:x} serving the native protocol on {} with {} core(s)",
                config.consensus.member_id,
                config.listen_native,
                router.cores()
            );
            let outcome = consensus.run().await;
            tell_everyone_to_stop(&router).await;
            // Let connections write the answers of requests that just failed.
            glommio::timer::sleep(Duration::from_millis(100)).await;
            outcome.map_err(|error| error.to_string())
        }
        None => {
            while !local.stopping() {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    }
}

/// Opens the log and the consensus core on core 0; nothing to open elsewhere.
async fn start_core(
    config: &NodeConfig,
    router: &Rc<Router>,
) -> Result<Option<Rc<Consensus<DmaDir>>>, String> {
    if router.core() != 0 {
        return Ok(None);
    }
    let dir = DmaDir::open(&config.wal_dir)
        .await
        .map_err(|error| format!("cannot open {}: {error}", config.wal_dir.display()))?;
    let wal = Rc::new(
        Wal::open(dir, config.wal_options.clone())
            .await
            .map_err(|error| error.to_string())?,
    );
    let background = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "background",
    );
    glommio::spawn_local_into(Wal::run_preparer(Rc::downgrade(&wal)), background)
        .map_err(|error| error.to_string())?
        .detach();
    let snapshot =
        crate::consensus::snapshotter::load_newest(&config.consensus.snapshot_dir, router)
            .await
            .map_err(|error| error.to_string())?;
    let consensus = Consensus::new(config.consensus.clone(), wal, router.clone(), snapshot)
        .map_err(|error| error.to_string())?;
    Ok(Some(consensus))
}
