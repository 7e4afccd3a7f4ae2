//! Starting and running one core (`run_node`): binding its client and metrics listeners,
//! joining the mesh, opening the log and the consensus core on core 0, handing other cores'
//! messages to the consensus core (`receive`), and auto-compaction.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};

use super::cluster::{serve_cluster, status_of};
use super::{Node, NodeConfig, Renewals};
use crate::consensus::{Consensus, ServerError};
use crate::mvcc::request::WriteRequest;
use crate::mvcc::KvError;
use crate::peer::transport::PeerTransport;
use crate::server::shutdown_requested;
use crate::shard::mesh::CoreEnds;
use crate::shard::route::Router;
use crate::shard::{CoreMessage, Reply, ShardState};
use crate::wal::io::DmaDir;
use crate::wal::Wal;

/// Handles messages from another core until the channel closes. Never waits inside the
/// loop: work that waits runs in tasks of its own.
async fn receive(
    stream: glommio::channels::shared_channel::ConnectedReceiver<CoreMessage>,
    router: Rc<Router>,
    consensus: Option<Rc<Consensus<DmaDir>>>,
) {
    while let Some(message) = stream.recv().await {
        match (message, &consensus) {
            (
                CoreMessage::Propose {
                    frame,
                    cost,
                    auth_revision,
                    reply,
                },
                Some(consensus),
            ) => {
                let consensus = consensus.clone();
                let router = router.clone();
                glommio::spawn_local(async move {
                    let result = consensus.propose_frame(&frame, cost, auth_revision).await;
                    router.reply(reply, Reply::Written(result));
                })
                .detach();
            }
            (CoreMessage::Alarm { request, reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                let router = router.clone();
                glommio::spawn_local(async move {
                    let result = consensus.alarm(&request).await;
                    router.reply(reply, Reply::Alarm(result));
                })
                .detach();
            }
            (CoreMessage::ReadIndex { reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                let router = router.clone();
                glommio::spawn_local(async move {
                    let result = consensus.read_index().await.map(|revision| revision.get());
                    router.reply(reply, Reply::ReadRevision(result));
                })
                .detach();
            }
            (
                CoreMessage::Cluster {
                    request,
                    token,
                    reply,
                },
                Some(consensus),
            ) => {
                let consensus = consensus.clone();
                let router = router.clone();
                glommio::spawn_local(async move {
                    let result = serve_cluster(&consensus, *request, token)
                        .await
                        .map(Box::new);
                    router.reply(reply, Reply::Cluster(result));
                })
                .detach();
            }
            (CoreMessage::LeaseKeys { id, reply }, Some(consensus)) => {
                router.reply(reply, Reply::LeaseKeys(Ok(consensus.lease_keys(id))));
            }
            (CoreMessage::Status { reply }, Some(consensus)) => {
                router.reply(reply, Reply::Status(Ok(Box::new(status_of(consensus)))));
            }
            (CoreMessage::Metrics { reply }, Some(consensus)) => {
                let mut exposition = crate::metrics::Exposition::new();
                consensus.expose(&mut exposition);
                router.reply(reply, Reply::Metrics(Ok(exposition.finish())));
            }
            (CoreMessage::Snapshot { reply }, Some(consensus)) => {
                let consensus = consensus.clone();
                let router = router.clone();
                glommio::spawn_local(async move {
                    let result = consensus.snapshot_export().await;
                    router.reply(reply, Reply::Snapshot(result));
                })
                .detach();
            }
            (message, _) => router.local().handle(message, &router),
        }
    }
}

async fn tell_everyone_to_stop(router: &Rc<Router>) {
    for core in 0..router.cores() {
        let _ = router.deliver(core, CoreMessage::Shutdown).await;
    }
}

/// A core's bound listeners: each with the address it was asked to listen on.
pub type Bound = Vec<(glommio::net::TcpListener, crate::server::Listen)>;

/// Runs one core of the node until shutdown. Core 0 (the first to join the mesh) opens the
/// log and runs the consensus core; every core owns a shard and listens for clients: once its
/// node exists, `serve` starts the front ends on the client and metrics listeners bound for it
/// (`server::run` gives etcd's; the node knows no front end).
pub async fn run_node(
    config: NodeConfig,
    ends: CoreEnds<CoreMessage>,
    cores: usize,
    serve: impl FnOnce(&Rc<Node>, Bound, Bound),
) -> Result<(), String> {
    let local = ShardState::new();
    local.set_size_report_step_for_quota(config.consensus.quota_bytes, cores);
    // Bind before joining the mesh: once core 0 has joined, every core is listening, so the
    // readiness line core 0 prints is true for every core.
    let bind = |addresses: &[crate::server::Listen]| -> Result<Vec<_>, String> {
        addresses
            .iter()
            .map(|listen| {
                crate::server::listen(&listen.address)
                    .map(|listener| (listener, listen.clone()))
                    .map_err(|error| format!("cannot listen on {}: {error}", listen.address))
            })
            .collect()
    };
    let bound =
        bind(&config.listen).and_then(|clients| Ok((clients, bind(&config.listen_metrics)?)));
    let channels = ends.connect().await;
    let mut streams = channels.receivers;
    let router = Rc::new(Router::new(
        channels.core,
        cores,
        channels.senders,
        local.clone(),
    ));
    let (listeners, metrics_listeners) = match bound {
        Ok(listeners) => listeners,
        Err(error) => {
            tell_everyone_to_stop(&router).await;
            return Err(error);
        }
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
        glommio::spawn_local(receive(stream, router.clone(), consensus.clone())).detach();
    }
    if router.core() != 0 {
        let router = router.clone();
        glommio::spawn_local(async move {
            while !router.local().stopping() {
                glommio::timer::sleep(Duration::from_secs(1)).await;
                router.local().report_size_if_moved(&router);
            }
        })
        .detach();
    }
    let node = Rc::new(Node {
        router: router.clone(),
        consensus: consensus.clone(),
        config: config.consensus.clone(),
        renewals: Renewals::default(),
        gate: crate::auth::AuthGate::new(config.consensus.auth.clone()),
    });
    serve(&node, listeners, metrics_listeners);
    // Test-only fault: a panic on the core named by LODE_FAULT_PANIC_CORE, once it serves.
    if std::env::var("LODE_FAULT_PANIC_CORE").ok() == Some(router.core().to_string()) {
        let core = router.core();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(200)).await;
            panic!("LODE_FAULT_PANIC_CORE: core {core} panics, as asked");
        })
        .detach();
    }
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
            if let Some(retention) = config.auto_compaction {
                let compactor = crate::compactor::AutoCompactor::new(
                    retention,
                    Instant::now(),
                    node.revision(),
                );
                glommio::spawn_local(auto_compaction(node.clone(), consensus.clone(), compactor))
                    .detach();
            }
            tracing::info!(
                member_id = %format!("{:x}", config.consensus.member_id),
                addresses = %urls(&config.listen),
                metrics_addresses = %urls(&config.listen_metrics),
                cores = router.cores(),
                "serving the native protocol, etcd's gRPC API and HTTP"
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

fn urls(listens: &[crate::server::Listen]) -> String {
    listens
        .iter()
        .map(crate::server::Listen::url)
        .collect::<Vec<_>>()
        .join(",")
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
        crate::snapshotter::load_newest(&config.consensus.snapshot_dir, router, wal.first_index())
            .await
            .map_err(|error| error.to_string())?;
    if let Some(meta) = &snapshot {
        crate::snapshotter::reconcile_log(&wal, meta)
            .await
            .map_err(|error| error.to_string())?;
    }
    let transport = match &config.listen_peer {
        Some(listen) => {
            let address = &listen.address;
            let listener = crate::server::listen(address).map_err(|error| {
                format!("cannot listen for peers on {address} (core 0): {error}")
            })?;
            let transport = PeerTransport::new(
                config.consensus.cluster_id,
                config.consensus.member_id.get(),
                &config.consensus.snapshot_dir,
                config.peer_dial_tls.clone(),
            );
            glommio::spawn_local(transport.clone().serve(listener, listen.tls.clone())).detach();
            Some(transport)
        }
        None => None,
    };
    let consensus = Consensus::new(
        config.consensus.clone(),
        wal,
        router.clone(),
        snapshot,
        transport,
    )
    .map_err(|error| error.to_string())?;
    Ok(Some(consensus))
}

/// Runs auto-compaction on the consensus core: ticks the compactor on its schedule and, while
/// this member leads, proposes the compactions it asks for (a log entry every member applies).
async fn auto_compaction(
    node: Rc<Node>,
    consensus: Rc<Consensus<DmaDir>>,
    mut compactor: crate::compactor::AutoCompactor,
) {
    use crate::compactor::{Outcome, Retention};
    let (kind, retention) = match compactor.retention() {
        Retention::Period(period) => ("periodic", format!("{period:?}")),
        Retention::Revisions(revisions) => ("revision", revisions.to_string()),
    };
    loop {
        glommio::timer::sleep(compactor.interval()).await;
        if node.router.local().stopping() {
            return;
        }
        let leader = consensus.leader() == node.config.member_id;
        let Some(revision) = compactor.tick(Instant::now(), node.revision(), leader) else {
            continue;
        };
        tracing::info!(revision, retention = %retention, "starting auto {kind} compaction");
        let started = Instant::now();
        let request = WriteRequest::Compact(crate::mvcc::request::CompactionRequest {
            revision,
            physical: false,
        });
        let outcome = match node.propose(request).await {
            Ok(_) => {
                tracing::info!(
                    revision,
                    retention = %retention,
                    took = %format!("{:?}", started.elapsed()),
                    "completed auto {kind} compaction"
                );
                Outcome::Done
            }
            Err(ServerError::Kv(KvError::Compacted)) => Outcome::AlreadyCompacted,
            Err(error) => {
                tracing::warn!(
                    revision,
                    retention = %retention,
                    retry_interval = %format!("{:?}", compactor.interval()),
                    %error,
                    "failed auto {kind} compaction"
                );
                Outcome::Failed
            }
        };
        compactor.finished(Instant::now(), revision, outcome);
    }
}
