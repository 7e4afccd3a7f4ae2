//! One core of a running node: its shard, its router, its listener, and (on core 0) the
//! consensus core. `run_core` is what every executor of the `lode` process runs.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use glommio::{Latency, Shares};

use super::{native, shutdown_requested, Limits};
use crate::alarm::{AlarmRequest, AlarmResponse};
use crate::api::native::{
    self as native_codec, LeaseAnswer, LeaseQuery, MemberRequest, Request, Response, StatusResponse,
};
use crate::consensus::{Consensus, ConsensusConfig, ServerError};
use crate::lease::{LeaseOutcome, LeaseRequest};
use crate::members::{MemberChange, MemberError};
use crate::mvcc::request::{
    LeaseResponse, RangeRequest, RangeResponse, ResponseHeader, WriteRequest, WriteResponse,
};
use crate::mvcc::validate;
use crate::mvcc::KvError;
use crate::peer::transport::PeerTransport;
use crate::shard::mesh::CoreEnds;
use crate::shard::route::{unexpected_reply, Router};
use crate::shard::{CoreMessage, Reply, ShardState};
use crate::urls::parse_url;
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
            return consensus.read_index().await;
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
                    new_lease_id(self.config.member_id)
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
            Some(consensus) => consensus.term(),
            None => self.router.local().term(),
        }
    }
}

/// Serves a membership or leadership request on the consensus core. Every change goes to the
/// leader: only it knows a learner's progress and can hand leadership over, and only it holds a
/// membership change back while another is in flight (raft-rs turns a change forwarded to a
/// leader with one pending into an empty entry, and its proposer would wait until it timed
/// out). A follower forwards them to the leader's client URL, as etcd forwards promotions;
/// member lists are answered here.
async fn serve_cluster(
    consensus: &Consensus<DmaDir>,
    request: Request,
    token: Option<String>,
) -> Result<Response, ServerError> {
    if let Request::Auth(auth) = request {
        return serve_auth(consensus, auth).await.map(Response::Auth);
    }
    let leader = consensus.leader();
    let needs_leader = !matches!(request, Request::Member(MemberRequest::List { .. }));
    if needs_leader && leader != 0 && leader != consensus.config().member_id {
        let tls = consensus.config().forward_tls.clone();
        return forward_to_leader(consensus, tls.as_ref(), leader, &request, token).await;
    }
    let members = |member, members| Response::Members {
        header: ResponseHeader::at(consensus.revision()),
        member,
        members,
    };
    match request {
        Request::Member(MemberRequest::Add {
            peer_urls,
            is_learner,
        }) => {
            let (member, all) = consensus.add_member(peer_urls, is_learner).await?;
            Ok(members(Some(member), all))
        }
        Request::Member(MemberRequest::Remove(id)) => consensus
            .change_members(MemberChange::Remove(id))
            .await
            .map(|all| members(None, all)),
        Request::Member(MemberRequest::Update { id, peer_urls }) => {
            let mut parsed = Vec::new();
            for url in &peer_urls {
                parsed.push(
                    parse_url(url)
                        .map_err(|_| MemberError::BadUrls)?
                        .to_string(),
                );
            }
            consensus
                .change_members(MemberChange::Update {
                    id,
                    peer_urls: parsed,
                })
                .await
                .map(|all| members(None, all))
        }
        Request::Member(MemberRequest::Promote(id)) => consensus
            .change_members(MemberChange::Promote(id))
            .await
            .map(|all| members(None, all)),
        Request::Member(MemberRequest::List { linearizable }) => consensus
            .member_list(linearizable)
            .await
            .map(|all| members(None, all)),
        Request::Lease(query) => consensus.lease_query(&query).await.map(Response::Lease),
        Request::MoveLeader(target) => {
            consensus.move_leader(target).await?;
            Ok(Response::MoveLeader {
                header: ResponseHeader::at(consensus.revision()),
            })
        }
        _ => Err(ServerError::Internal(
            "not a membership or leadership request".into(),
        )),
    }
}

/// etcd's Auth calls, on the consensus core, once the serving core found the caller may make
/// them (`Node::auth`). Reads (status, users, roles) are answered from the applied store after
/// a ReadIndex.
/// Changes go through the log, stamped with the auth revision they were authorized at;
/// passwords are hashed first, on a thread of their own (bcrypt is slow by design and never
/// runs on the core that drives Raft). Authenticate checks the password the same way, then
/// puts an Authenticate entry in the log (stamped with the revision the password was checked
/// at, so a password change that raced it refuses it, and it is tried again).
async fn serve_auth(
    consensus: &Consensus<DmaDir>,
    mut request: crate::auth::request::AuthRequest,
) -> Result<crate::auth::request::AuthResponse, ServerError> {
    use crate::auth::request::{AuthKind, AuthResponse};
    let header = |consensus: &Consensus<DmaDir>| ResponseHeader::at(consensus.revision());
    if !request.kind.changes_store() && request.kind != AuthKind::Authenticate {
        // Linearizable, as etcd's (which puts these reads through its log): a follower answers
        // once it has applied everything committed when the read arrived.
        consensus.read_index().await?;
    }
    let mut answer = AuthResponse {
        header: header(consensus),
        ..AuthResponse::default()
    };
    // The applied store as published to the cores (the sequencer publishes each change as it
    // applies it): shared, not copied.
    let store = consensus.config().auth.store();
    match request.kind {
        AuthKind::Status => {
            answer.enabled = store.enabled();
            answer.auth_revision = store.revision();
            Ok(answer)
        }
        AuthKind::UserList => {
            answer.names = store.users().map(|u| u.name.clone()).collect();
            Ok(answer)
        }
        AuthKind::UserGet => {
            answer.names = store.user_get(&request.name)?;
            Ok(answer)
        }
        AuthKind::RoleList => {
            answer.names = store.roles().map(|(name, _)| name.clone()).collect();
            Ok(answer)
        }
        AuthKind::RoleGet => {
            answer.permissions = store.role_get(&request.name)?;
            Ok(answer)
        }
        AuthKind::Authenticate => authenticate(consensus, request).await,
        AuthKind::Enable
        | AuthKind::Disable
        | AuthKind::UserAdd
        | AuthKind::UserDelete
        | AuthKind::UserChangePassword
        | AuthKind::UserGrantRole
        | AuthKind::UserRevokeRole
        | AuthKind::RoleAdd
        | AuthKind::RoleDelete
        | AuthKind::RoleGrantPermission
        | AuthKind::RoleRevokePermission => {
            // etcd's checks that need no log are answered before any hashing.
            if let Some(change) = request.change()? {
                crate::auth::AuthStore::clone(&store).apply(&change)?;
            }
            let hashes = matches!(
                request.kind,
                AuthKind::UserAdd | AuthKind::UserChangePassword
            ) && !request.no_password;
            if hashes {
                let password = std::mem::take(&mut request.password);
                let cost = consensus.config().bcrypt_cost;
                request.password_hash =
                    off_core(move || crate::auth::token::hash_password(&password, cost))
                        .await?
                        .map_err(ServerError::Internal)?;
            }
            request.password.clear();
            let mut answer = consensus
                .auth_change(&request, request.caller_revision)
                .await?;
            answer.header = header(consensus);
            Ok(answer)
        }
    }
}

/// Password checks running at once on one member; more wait their turn. Guessing passwords
/// costs a bcrypt each (etcd's only defence too); this bound keeps a flood of guesses from
/// taking more than two threads' worth of the machine.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// etcd's Authenticate: after a ReadIndex (so the store is current), the password is checked
/// against its hash off the core; the Authenticate entry then assigns the token on every
/// member (simple) or, applied, lets this member sign one (JWT). Tried again, at most three
/// times, when an auth change raced it.
async fn authenticate(
    consensus: &Consensus<DmaDir>,
    request: crate::auth::request::AuthRequest,
) -> Result<crate::auth::request::AuthResponse, ServerError> {
    use crate::auth::request::{AuthKind, AuthRequest};
    use crate::auth::AuthError;
    thread_local! {
        static CHECKS: Rc<glommio::sync::Semaphore> =
            Rc::new(glommio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS as u64));
    }
    let checks = CHECKS.with(Rc::clone);
    let shared = consensus.config().auth.clone();
    let mut attempts = 0;
    loop {
        attempts += 1;
        consensus.read_index().await?;
        let store = shared.store();
        let hash = store.password_hash(&request.name)?;
        let checked_at = store.revision();
        let matches = {
            let _turn = checks
                .acquire_permit(1)
                .await
                .map_err(|_| ServerError::Stopped)?;
            let password = request.password.clone();
            off_core(move || crate::auth::token::password_matches(&password, &hash)).await?
        };
        if !matches {
            return Err(AuthError::AuthFailed.into());
        }
        let entry = AuthRequest {
            name: request.name.clone(),
            token_prefix: if shared.issues_jwt() {
                String::new()
            } else {
                crate::auth::token::SimpleTokens::random_prefix()?
            },
            ..AuthRequest::new(AuthKind::Authenticate)
        };
        match consensus.auth_change(&entry, checked_at).await {
            Ok(mut answer) => {
                if shared.issues_jwt() {
                    answer.token = shared
                        .issue_jwt(&request.name, answer.auth_revision)
                        .map_err(ServerError::Internal)?;
                }
                answer.header = ResponseHeader::at(consensus.revision());
                return Ok(answer);
            }
            Err(ServerError::Auth(AuthError::AuthOldRevision)) if attempts < 3 => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Runs `work` (bcrypt: slow by design) on a thread of its own, awaited without blocking the
/// core.
async fn off_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    let (sender, receiver) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("lode-bcrypt".into())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .map_err(|e| ServerError::Internal(format!("starting a hashing thread: {e}")))?;
    receiver
        .await
        .map_err(|_| ServerError::Internal("the hashing thread ended".into()))
}

/// Sends `request` to the leader's first client URL and answers what it answers.
async fn forward_to_leader(
    consensus: &Consensus<DmaDir>,
    tls: Option<&std::sync::Arc<crate::tls::ClientTls>>,
    leader: u64,
    request: &Request,
    token: Option<String>,
) -> Result<Response, ServerError> {
    let url = consensus
        .member(leader)
        .and_then(|member| member.client_urls.first().cloned())
        .and_then(|url| parse_url(&url).ok())
        .ok_or(MemberError::NotLeader)?;
    let address = url.authority();
    let forwarded = async {
        let tls =
            match (url.tls, tls) {
                (false, _) => None,
                (true, Some(tls)) => Some((&**tls, url.host.as_str())),
                (true, None) => return Err(crate::client::ClientError::Closed(
                    "the leader's client URL is https and this member has no client TLS settings"
                        .into(),
                )),
            };
        let client = crate::client::Client::connect_secured(&address, tls).await?;
        // The leader checks the caller again: the token goes along.
        client.set_token(token);
        client.request(request).await
    };
    let expired = glommio::timer::sleep(consensus.config().request_timeout);
    let outcome =
        match futures::future::select(std::pin::pin!(forwarded), std::pin::pin!(expired)).await {
            futures::future::Either::Left((outcome, _)) => Some(outcome),
            futures::future::Either::Right(_) => None,
        };
    match outcome {
        Some(Ok(response)) => Ok(response),
        Some(Err(crate::client::ClientError::Server { code, message })) => {
            Err(ServerError::Forwarded { code, message })
        }
        Some(Err(error)) => {
            tracing::warn!(%error, leader = %format!("{leader:x}"), %address, "forwarding to the leader failed");
            Err(ServerError::NoLeader)
        }
        None => Err(ServerError::Timeout),
    }
}

fn status_of(consensus: &Consensus<DmaDir>) -> StatusResponse {
    StatusResponse {
        header: ResponseHeader::at(consensus.revision()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        db_size: consensus.keyspace_size() as i64,
        leader: consensus.leader(),
        raft_index: consensus.last_index(),
        raft_term: consensus.term(),
        raft_applied_index: consensus.applied_index(),
        stages: consensus.commit_stages(),
        is_learner: consensus.is_learner(),
    }
}

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
                    let result = consensus.read_index().await;
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

/// Runs one core of the node until shutdown. Core 0 (the first to join the mesh) opens the
/// log and runs the consensus core; every core owns a shard and listens for clients.
pub async fn run_core(
    config: NodeConfig,
    ends: CoreEnds<CoreMessage>,
    cores: usize,
) -> Result<(), String> {
    let local = ShardState::new();
    local.set_size_report_step_for_quota(config.consensus.quota_bytes, cores);
    // Bind before joining the mesh: once core 0 has joined, every core is listening, so the
    // readiness line core 0 prints is true for every core.
    let bind = |addresses: &[super::Listen]| -> Result<Vec<_>, String> {
        addresses
            .iter()
            .map(|listen| {
                super::listen(&listen.address)
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
    let node = Rc::new(Node {
        router: router.clone(),
        consensus: consensus.clone(),
        config: config.consensus.clone(),
        renewals: Renewals::default(),
        gate: crate::auth::AuthGate::new(config.consensus.auth.clone()),
    });
    super::grpc::install(node.clone(), config.limits);
    for (listener, listen) in listeners {
        glommio::spawn_local(native::serve(listener, listen, node.clone(), config.limits)).detach();
    }
    for (listener, listen) in metrics_listeners {
        glommio::spawn_local(super::http::serve_monitoring(
            listener,
            listen,
            node.clone(),
        ))
        .detach();
    }
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

fn urls(listens: &[super::Listen]) -> String {
    listens
        .iter()
        .map(super::Listen::url)
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
    let snapshot = crate::consensus::snapshotter::load_newest(
        &config.consensus.snapshot_dir,
        router,
        wal.first_index(),
    )
    .await
    .map_err(|error| error.to_string())?;
    if let Some(meta) = &snapshot {
        crate::consensus::snapshotter::reconcile_log(&wal, meta)
            .await
            .map_err(|error| error.to_string())?;
    }
    let transport = match &config.listen_peer {
        Some(listen) => {
            let address = &listen.address;
            let listener = super::listen(address).map_err(|error| {
                format!("cannot listen for peers on {address} (core 0): {error}")
            })?;
            let transport = PeerTransport::new(
                config.consensus.cluster_id,
                config.consensus.member_id,
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
