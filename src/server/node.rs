//! One core of a running node: its shard, its router, and (on core 0) the
//! consensus core. `run_node` runs a core; `server::run::run_core` runs it with the front
//! ends, which this module does not know.
//!
//! This file holds `Node` (a core's entry point for client requests) and its configuration;
//! what the consensus core serves for the other cores is in `cluster` (membership and
//! leadership) and `auth` (etcd's Auth calls), and starting and running a core (binding its
//! listeners, joining the mesh, handling other cores' messages) in `run`.

mod auth;
mod cluster;
mod run;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;

use super::Limits;
use crate::alarm::{AlarmRequest, AlarmResponse};
use crate::api::native::{
    self as native_codec, LeaseAnswer, LeaseQuery, Request, Response, StatusResponse,
};
use crate::consensus::{Consensus, ConsensusConfig, ServerError};
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::mvcc::request::{
    LeaseResponse, RangeRequest, RangeResponse, ResponseHeader, WriteRequest, WriteResponse,
};
use crate::mvcc::validate;
use crate::mvcc::KvError;
use crate::shard::route::{unexpected_reply, Router};
use crate::shard::{CoreMessage, Reply};
use crate::wal::io::DmaDir;
use crate::wal::WalOptions;

use cluster::serve_cluster;
pub(crate) use cluster::status_of;
pub use run::{run_node, Bound};

/// Everything a core needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    /// Consensus settings.
    pub consensus: ConsensusConfig,
    /// The log directory.
    pub wal_dir: PathBuf,
    /// Log options.
    pub wal_options: WalOptions,
    /// Addresses serving the native protocol, `--listen-native` first, then the client URLs'
    /// (every core listens on each, SO_REUSEPORT).
    pub listen: Vec<super::Listen>,
    /// Addresses serving only /metrics and the health probes, as etcd's
    /// `--listen-metrics-urls` (every core listens on each, SO_REUSEPORT).
    pub listen_metrics: Vec<super::Listen>,
    /// Where core 0 listens for the other members (`None` for a single member).
    pub listen_peer: Option<super::Listen>,
    /// How core 0 dials members whose peer URLs are `https`.
    pub peer_dial_tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
    /// Request limits.
    pub limits: Limits,
    /// What auto-compaction keeps (`None`: off); run by core 0, acted on while it leads.
    pub auto_compaction: Option<crate::compactor::Retention>,
    /// Set by SIGTERM/SIGINT.
    pub shutdown: Arc<AtomicBool>,
}

/// A core's entry point for client requests.
pub struct Node {
    router: Rc<Router>,
    consensus: Option<Rc<Consensus<DmaDir>>>,
    /// Settings (IDs for headers, limits).
    pub config: ConsensusConfig,
    /// Keep-alives received on this core waiting for their renewal batch.
    renewals: Renewals,
    /// Who requests on this core speak for, and what they may do.
    gate: crate::auth::AuthGate,
}

/// Most keep-alives renewed by one log entry.
const MAX_RENEWALS_PER_ENTRY: usize = 8192;

/// A core's keep-alives: gathered while the previous batch is in the log, then proposed
/// together as one `LeaseRequest::Renew` (group commit for keep-alives).
#[derive(Default)]
struct Renewals {
    /// Lease IDs with their waiters, in arrival order.
    waiting: RefCell<Vec<(i64, RenewalWaiter)>>,
    /// True while a batch is being proposed.
    flushing: Cell<bool>,
}

/// Answers one keep-alive: the lease's TTL, or the gRPC code and message of what failed.
type RenewalWaiter = oneshot::Sender<Result<i64, (u32, String)>>;

/// A new lease ID, unique in the cluster without coordination, laid out as etcd's: the low 16
/// bits of the member ID, then 48 bits counting up from the start time in milliseconds (shifted
/// by 8, so IDs of a restarted member start above those it gave out before). Never 0 or
/// negative.
fn new_lease_id(member_id: u64) -> i64 {
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        AtomicU64::new(millis << 8)
    });
    loop {
        let suffix = counter.fetch_add(1, Ordering::Relaxed) & ((1 << 48) - 1);
        let id = (((member_id & 0xffff) << 48) | suffix) & (i64::MAX as u64);
        if id != 0 {
            return id as i64;
        }
    }
}

impl Node {
    /// This core's handle on the shard layer.
    pub fn router(&self) -> &Rc<Router> {
        &self.router
    }

    /// Who `credentials` speak for on this core (etcd's "invalid auth token" for a token that
    /// is not, or no longer, valid).
    pub fn caller(
        &self,
        credentials: &crate::auth::Credentials,
    ) -> Result<crate::auth::Caller, ServerError> {
        Ok(self.gate.caller(credentials)?)
    }

    /// This core's auth gate.
    pub fn auth_gate(&self) -> &crate::auth::AuthGate {
        &self.gate
    }

    /// Proposes a write given as its verified request frame, through the consensus core;
    /// `cost` is its cost against the space quota; `auth_revision` the auth revision a
    /// client's write was authorized at (`None` for the server's own). A physical compaction
    /// is answered once every shard has finished it, as etcd's.
    pub async fn write(
        &self,
        frame: Bytes,
        cost: u64,
        physical_compaction: Option<i64>,
        auth_revision: Option<u64>,
    ) -> Result<WriteResponse, ServerError> {
        let response = if let Some(consensus) = &self.consensus {
            consensus.propose_frame(&frame, cost, auth_revision).await?
        } else {
            match self
                .router
                .ask(0, |reply| CoreMessage::Propose {
                    frame,
                    cost,
                    auth_revision,
                    reply,
                })
                .await?
            {
                Reply::Written(result) => result?,
                _ => return Err(unexpected_reply("Propose")),
            }
        };
        if let Some(revision) = physical_compaction {
            let mut pending = Vec::new();
            for core in 0..self.router.cores() {
                let answer = self
                    .router
                    .send_request(core, |reply| CoreMessage::WaitCompacted { revision, reply })
                    .await?;
                pending.push(answer);
            }
            for answer in pending {
                match answer.await {
                    Ok(Reply::Compacted) => {}
                    Ok(_) => return Err(unexpected_reply("WaitCompacted")),
                    Err(_) => return Err(ServerError::Stopped),
                }
            }
        }
        Ok(response)
    }

    /// Serves a range: serializable at this core's latest revision, linearizable after a
    /// ReadIndex round through the consensus core.
    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse, ServerError> {
        let current = self.read_revision(request).await?;
        self.router.range(request, current).await
    }

    /// The revision a range is read at, once it is found valid: this core's latest for a
    /// serializable read, after a ReadIndex round for a linearizable one.
    pub(super) async fn read_revision(&self, request: &RangeRequest) -> Result<i64, ServerError> {
        validate::check_range(request)?;
        if request.serializable {
            Ok(self.router.local().watermark())
        } else {
            self.read_index().await
        }
    }

    async fn read_index(&self) -> Result<i64, ServerError> {
        if let Some(consensus) = &self.consensus {
            return consensus.read_index().await.map(|revision| revision.get());
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::ReadIndex { reply })
            .await?
        {
            Reply::ReadRevision(result) => result,
            _ => Err(unexpected_reply("ReadIndex")),
        }
    }

    /// etcd's LeaseGrant and LeaseRevoke from a client: a grant gets an ID when it has none
    /// and its TTL raised to the minimum (both decided here so the log holds them); renewals
    /// and expiries are the server's own and refused. `auth_revision`: the auth revision it was
    /// authorized at (`Node::permit_write`), `None` when the server makes it.
    pub async fn lease_write(
        &self,
        request: LeaseRequest,
        auth_revision: Option<u64>,
    ) -> Result<WriteResponse, ServerError> {
        let request = match request {
            LeaseRequest::Grant { id, ttl } => {
                let min_ttl = crate::lease::min_ttl_seconds(self.config.election_timeout());
                let ttl = crate::lease::granted_ttl(ttl, min_ttl).map_err(KvError::from)?;
                let id = if id == 0 {
                    new_lease_id(self.config.member_id.get())
                } else {
                    id
                };
                LeaseRequest::Grant { id, ttl }
            }
            revoke @ LeaseRequest::Revoke { .. } => revoke,
            LeaseRequest::Renew { .. } | LeaseRequest::Expire { .. } => {
                return Err(ServerError::InvalidRequest(
                    "lease renewals and expiries are proposed by the server only",
                ))
            }
        };
        self.propose_stamped(WriteRequest::Lease(request), auth_revision)
            .await
    }

    /// Proposes a write this member makes itself (no client frame to pass on): checked,
    /// counted against the quota, encoded as the log's request frame.
    pub async fn propose(&self, request: WriteRequest) -> Result<WriteResponse, ServerError> {
        self.propose_stamped(request, None).await
    }

    /// `propose`, stamped with the auth revision a client's request was authorized at.
    async fn propose_stamped(
        &self,
        request: WriteRequest,
        auth_revision: Option<u64>,
    ) -> Result<WriteResponse, ServerError> {
        crate::mvcc::validate::check_write(&request, self.config.max_txn_ops)?;
        let cost = crate::alarm::write_cost(&request);
        let frame = Bytes::from(native_codec::encode_request(0, &Request::Write(request)));
        self.write(frame, cost, None, auth_revision).await
    }

    /// The keys attached to lease `id` in this member's applied state (for permission checks;
    /// none if it does not exist).
    pub async fn lease_keys(&self, id: i64) -> Result<Vec<Bytes>, ServerError> {
        if let Some(consensus) = &self.consensus {
            return Ok(consensus.lease_keys(id));
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::LeaseKeys { id, reply })
            .await?
        {
            Reply::LeaseKeys(result) => result,
            _ => Err(unexpected_reply("LeaseKeys")),
        }
    }

    /// etcd's lease requests that are not log entries of their own: a keep-alive (renewed in
    /// this core's next batch), TimeToLive and Leases (answered by the leader, as etcd's; a
    /// follower forwards them with the caller's `token`).
    pub async fn lease_query(
        self: &Rc<Self>,
        query: LeaseQuery,
        token: Option<String>,
    ) -> Result<LeaseAnswer, ServerError> {
        match query {
            LeaseQuery::KeepAlive(id) => {
                let ttl = self.keep_alive(id).await?;
                Ok(LeaseAnswer::KeepAlive {
                    header: ResponseHeader::at(self.revision()),
                    id,
                    ttl,
                })
            }
            query => match self.cluster_as(Request::Lease(query), token).await? {
                Response::Lease(answer) => Ok(answer),
                _ => Err(unexpected_reply("LeaseQuery")),
            },
        }
    }

    /// Renews lease `id` with this core's next batch; its TTL (0: no such lease).
    async fn keep_alive(self: &Rc<Self>, id: i64) -> Result<i64, ServerError> {
        let (sender, receiver) = oneshot::channel();
        self.renewals.waiting.borrow_mut().push((id, sender));
        if !self.renewals.flushing.replace(true) {
            let node = self.clone();
            glommio::spawn_local(async move { node.flush_renewals().await }).detach();
        }
        match receiver.await {
            Ok(Ok(ttl)) => Ok(ttl),
            Ok(Err((code, message))) => Err(ServerError::Forwarded { code, message }),
            Err(_) => Err(ServerError::Stopped),
        }
    }

    /// Proposes the waiting keep-alives, a batch at a time, until none is left.
    async fn flush_renewals(&self) {
        loop {
            let batch: Vec<(i64, RenewalWaiter)> = {
                let mut waiting = self.renewals.waiting.borrow_mut();
                let take = waiting.len().min(MAX_RENEWALS_PER_ENTRY);
                waiting.drain(..take).collect()
            };
            if batch.is_empty() {
                self.renewals.flushing.set(false);
                return;
            }
            let ids = batch.iter().map(|(id, _)| *id).collect();
            let write = WriteRequest::Lease(LeaseRequest::Renew { ids });
            match self.propose(write).await {
                Ok(WriteResponse::Lease(LeaseResponse {
                    outcome: LeaseOutcome::Renewed { ttls },
                    ..
                })) if ttls.len() == batch.len() => {
                    for ((_, waiter), ttl) in batch.into_iter().zip(ttls) {
                        let _ = waiter.send(Ok(ttl));
                    }
                }
                outcome => {
                    let error = match outcome {
                        Err(error) => error,
                        Ok(_) => unexpected_reply("LeaseRenew"),
                    };
                    for (_, waiter) in batch {
                        let _ = waiter.send(Err((error.grpc_code(), error.to_string())));
                    }
                }
            }
        }
    }

    /// etcd's Maintenance.Alarm, through the consensus core.
    pub async fn alarm(&self, request: AlarmRequest) -> Result<AlarmResponse, ServerError> {
        if let Some(consensus) = &self.consensus {
            return consensus.alarm(&request).await;
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::Alarm { request, reply })
            .await?
        {
            Reply::Alarm(result) => result,
            _ => Err(unexpected_reply("Alarm")),
        }
    }

    /// etcd's Maintenance.Status, from the consensus core.
    pub async fn status(&self) -> Result<StatusResponse, ServerError> {
        if let Some(consensus) = &self.consensus {
            return Ok(status_of(consensus));
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::Status { reply })
            .await?
        {
            Reply::Status(result) => result.map(|status| *status),
            _ => Err(unexpected_reply("Status")),
        }
    }

    /// The whole keyspace's figures: every shard's, summed.
    pub async fn keyspace_stats(&self) -> Result<crate::shard::ShardStats, ServerError> {
        let mut total = crate::shard::ShardStats::default();
        for core in 0..self.router.cores() {
            match self
                .router
                .ask(core, |reply| CoreMessage::ShardStats { reply })
                .await?
            {
                Reply::ShardStats(stats) => total = total + stats,
                _ => return Err(unexpected_reply("ShardStats")),
            }
        }
        Ok(total)
    }

    /// The consensus core, on core 0 (`None` elsewhere).
    pub fn consensus(&self) -> Option<&Rc<Consensus<DmaDir>>> {
        self.consensus.as_ref()
    }

    /// The consensus core's part of `/metrics`.
    pub async fn consensus_metrics(&self) -> Result<String, ServerError> {
        if let Some(consensus) = &self.consensus {
            let mut exposition = crate::metrics::Exposition::new();
            consensus.expose(&mut exposition);
            return Ok(exposition.finish());
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::Metrics { reply })
            .await?
        {
            Reply::Metrics(result) => result,
            _ => Err(unexpected_reply("Metrics")),
        }
    }

    /// The newest revision applied on this core.
    pub fn revision(&self) -> i64 {
        self.router.local().watermark()
    }

    /// etcd's Maintenance.HashKV from this member's applied state (`revision` 0: the latest
    /// applied here).
    pub async fn hash_kv(&self, revision: i64) -> Result<Response, ServerError> {
        let current = self.router.local().watermark();
        let compact_revision = self.router.local().compact_revision();
        let upto = if revision == 0 { current } else { revision };
        if upto > current {
            return Err(crate::mvcc::KvError::FutureRevision.into());
        }
        if upto < compact_revision {
            return Err(crate::mvcc::KvError::Compacted.into());
        }
        let hash = self.router.hash_kv(compact_revision, upto).await?;
        Ok(Response::HashKv {
            header: ResponseHeader::at(current),
            hash,
            compact_revision,
            hash_revision: upto,
        })
    }

    /// etcd's Auth service made with `credentials`, answered by the consensus core (which holds
    /// the auth store) once the caller may make it: Authenticate anyone; UserGet the user
    /// itself, RoleGet a holder of the role; everything else root (while auth is on).
    pub async fn auth(
        &self,
        credentials: &crate::auth::Credentials,
        mut request: crate::auth::request::AuthRequest,
    ) -> Result<crate::auth::request::AuthResponse, ServerError> {
        use crate::auth::request::AuthKind;
        // Authenticate speaks for whoever it names: a stale token sent with it (a client that
        // did not drop it) must not stop it.
        let caller = match request.kind {
            AuthKind::Authenticate => crate::auth::Caller::unchecked(),
            _ => self.caller(credentials)?,
        };
        let admin = caller.permit_admin();
        match request.kind {
            AuthKind::Authenticate => {}
            AuthKind::UserGet if admin.is_err() => {
                caller.permit(|_| Ok(()))?;
                if caller.user() != Some(request.name.as_str()) {
                    admin?;
                }
            }
            AuthKind::RoleGet if admin.is_err() => {
                caller.permit(|_| Ok(()))?;
                let store = self.gate.store();
                let holds = caller
                    .user()
                    .and_then(|user| store.user(user))
                    .is_some_and(|user| user.roles.contains(&request.name));
                if !holds {
                    admin?;
                }
            }
            _ => admin?,
        }
        request.caller_revision = caller.stamp();
        match self.cluster_as(Request::Auth(request), None).await? {
            Response::Auth(answer) => Ok(answer),
            _ => Err(unexpected_reply("Auth")),
        }
    }

    /// etcd's Cluster service, MoveLeader and the Auth service, through the consensus core.
    pub async fn cluster(&self, request: Request) -> Result<Response, ServerError> {
        self.cluster_as(request, None).await
    }

    /// `cluster` for a client whose auth `token` goes with the request if it is forwarded to
    /// the leader (which checks it again).
    pub async fn cluster_as(
        &self,
        request: Request,
        token: Option<String>,
    ) -> Result<Response, ServerError> {
        if let Some(consensus) = &self.consensus {
            return serve_cluster(consensus, request, token).await;
        }
        match self
            .router
            .ask(0, |reply| CoreMessage::Cluster {
                request: Box::new(request),
                token,
                reply,
            })
            .await?
        {
            Reply::Cluster(result) => result.map(|response| *response),
            _ => Err(unexpected_reply("Cluster")),
        }
    }

    /// A fresh snapshot of the keyspace as etcd's database (the bbolt file etcd's snapshots
    /// are, so etcd's tools read it): its path (the caller streams and removes it) and
    /// revision. The consensus core exports lode's snapshot; a thread of its own turns it into
    /// etcd's format, off the cores.
    pub async fn snapshot(&self) -> Result<(PathBuf, i64), ServerError> {
        let (path, revision) = if let Some(consensus) = &self.consensus {
            consensus.snapshot_export().await?
        } else {
            match self
                .router
                .ask(0, |reply| CoreMessage::Snapshot { reply })
                .await?
            {
                Reply::Snapshot(result) => result?,
                _ => return Err(unexpected_reply("Snapshot")),
            }
        };
        // A thread of its own, unpinned: glommio's blocking pool shares core 0's CPU and
        // queues the log's renames behind its work. Polled, so no waker crosses threads.
        let slot: Arc<std::sync::Mutex<Option<Result<PathBuf, String>>>> = Arc::default();
        let filled = slot.clone();
        std::thread::Builder::new()
            .name("lode-snapshot-export".into())
            .spawn(move || {
                if let Err(error) = crate::cpus::unpin_current_thread() {
                    tracing::warn!(%error, "the snapshot export thread stays on its core's CPU");
                }
                let outcome = export_as_etcd_database(&path);
                let _ = std::fs::remove_file(&path);
                *filled.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            })
            .map_err(|e| ServerError::Internal(format!("starting the export thread: {e}")))?;
        loop {
            if let Some(outcome) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Ok((outcome.map_err(ServerError::Internal)?, revision));
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The Raft term for response headers.
    pub fn term(&self) -> u64 {
        match &self.consensus {
            Some(consensus) => consensus.term().get(),
            None => self.router.local().term(),
        }
    }
}

/// Rewrites lode's snapshot at `path` as etcd's database in `<path>.db`; its path.
fn export_as_etcd_database(path: &std::path::Path) -> Result<PathBuf, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (meta, mut reader) = crate::snapshot::SnapshotReader::open(Bytes::from(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut records = Vec::new();
    while let Some(block) = reader
        .next_block()
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        records.extend(block);
    }
    let keyspace = crate::etcd_db::from_lode(&meta, records);
    let db =
        crate::etcd_db::write(&keyspace).map_err(|e| format!("writing etcd's database: {e}"))?;
    let mut target = path.as_os_str().to_owned();
    target.push(".db");
    let target = PathBuf::from(target);
    std::fs::write(&target, db).map_err(|e| format!("writing {}: {e}", target.display()))?;
    Ok(target)
}
