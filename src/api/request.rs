//! lode's request envelope: every request a client can make of a member and every answer,
//! whichever front end it came through (the native protocol's frames, etcd's gRPC API and
//! gateway decode into these), and the gRPC status codes etcd answers with. Pure data: the
//! native codec (`api::native`) encodes it, the shard layer carries it between cores, the
//! consensus core serves it.

use bytes::Bytes;

use crate::alarm::{AlarmRequest, AlarmResponse};
use crate::members::Member;
use crate::mvcc::error::ErrorCode;
use crate::mvcc::kv::KeyValue;
use crate::mvcc::request::*;

/// A request of the native protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A read.
    Range(RangeRequest),
    /// A write (or compaction), which goes through the log.
    Write(WriteRequest),
    /// Server status (etcd's Maintenance.Status).
    Status,
    /// A fresh snapshot of the keyspace (etcd's Maintenance.Snapshot).
    Snapshot,
    /// etcd's Maintenance.Alarm (activations and deactivations go through the log).
    Alarm(AlarmRequest),
    /// etcd's Cluster service.
    Member(MemberRequest),
    /// etcd's Maintenance.MoveLeader: hand leadership to this member.
    MoveLeader(u64),
    /// etcd's Maintenance.HashKV at this revision (0: the latest).
    HashKv(i64),
    /// A request on the connection's watch stream named by the request id.
    Watch(WatchRequest),
    /// A lease request that does not go through the log itself.
    Lease(LeaseQuery),
    /// A lock or election request.
    Coordination(CoordinationRequest),
    /// One of etcd's Auth calls.
    Auth(crate::auth::request::AuthRequest),
}

// The keys of locks and elections, shared by their service (`server::concurrency`) and the
// permission checks of their names (`server::access`).

/// The prefix contenders of `name` own keys under.
pub fn prefix(name: &[u8]) -> Bytes {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    Bytes::from(prefix)
}

/// The key a contender with `lease` owns under `prefix` (the lease in lowercase hex, as Go's
/// `%x` prints an int64).
pub fn contender_key(prefix: &[u8], lease: i64) -> Bytes {
    let mut key = prefix.to_vec();
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    key.extend_from_slice(hex.as_bytes());
    Bytes::from(key)
}

/// What identifies a leadership (etcd's `LeaderKey`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderKey {
    /// The election.
    pub name: Bytes,
    /// The leader's key.
    pub key: Bytes,
    /// Its create revision.
    pub rev: i64,
    /// Its lease.
    pub lease: i64,
}

/// etcd's lock and election requests (`v3lockpb`, `v3electionpb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinationRequest {
    /// Lock: answered once the caller holds the lock.
    Lock {
        /// The lock.
        name: Bytes,
        /// The caller's lease (0: the server grants one of 60 s).
        lease: i64,
    },
    /// Unlock: deletes an ownership key.
    Unlock {
        /// The key Lock answered.
        key: Bytes,
    },
    /// Campaign: answered once the caller leads.
    Campaign {
        /// The election.
        name: Bytes,
        /// The caller's lease (0: the server grants one of 60 s).
        lease: i64,
        /// Its proclamation.
        value: Bytes,
    },
    /// Proclaim: the leader's new value.
    Proclaim {
        /// The leadership.
        leader: LeaderKey,
        /// The value.
        value: Bytes,
    },
    /// Leader: the current leader's pair.
    Leader {
        /// The election.
        name: Bytes,
    },
    /// Observe: every leader and proclamation, streamed with the request's id.
    Observe {
        /// The election.
        name: Bytes,
    },
    /// Resign.
    Resign {
        /// The leadership.
        leader: LeaderKey,
    },
}

/// Answers to `CoordinationRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinationResponse {
    /// To Lock: the ownership key.
    Locked {
        /// Header.
        header: ResponseHeader,
        /// The key.
        key: Bytes,
    },
    /// To Unlock.
    Unlocked {
        /// Header.
        header: ResponseHeader,
    },
    /// To Campaign: the leadership.
    Campaigned {
        /// Header.
        header: ResponseHeader,
        /// The leadership.
        leader: LeaderKey,
    },
    /// To Proclaim.
    Proclaimed {
        /// Header.
        header: ResponseHeader,
    },
    /// To Leader, and each of Observe's answers.
    Leader {
        /// Header.
        header: ResponseHeader,
        /// The leader's pair.
        kv: KeyValue,
    },
    /// To Resign.
    Resigned {
        /// Header.
        header: ResponseHeader,
    },
}

impl CoordinationResponse {
    /// The answer's header.
    pub fn header_mut(&mut self) -> &mut ResponseHeader {
        match self {
            CoordinationResponse::Locked { header, .. }
            | CoordinationResponse::Unlocked { header }
            | CoordinationResponse::Campaigned { header, .. }
            | CoordinationResponse::Proclaimed { header }
            | CoordinationResponse::Leader { header, .. }
            | CoordinationResponse::Resigned { header } => header,
        }
    }
}

/// Lease requests answered without an entry of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseQuery {
    /// One keep-alive (etcd's LeaseKeepAliveRequest): answered once a renewal batch holding it
    /// is applied.
    KeepAlive(i64),
    /// etcd's LeaseTimeToLive.
    TimeToLive {
        /// The lease.
        id: i64,
        /// Also list its keys.
        keys: bool,
    },
    /// etcd's LeaseLeases.
    Leases,
}

/// Answers to `LeaseQuery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// To a keep-alive: the lease's TTL, 0 when it does not exist.
    KeepAlive {
        /// Header.
        header: ResponseHeader,
        /// The lease.
        id: i64,
        /// Its TTL in seconds, 0 when it does not exist.
        ttl: i64,
    },
    /// To a TimeToLive: `ttl` -1 when the lease does not exist.
    TimeToLive {
        /// Header.
        header: ResponseHeader,
        /// The lease.
        id: i64,
        /// Seconds left (-1: no such lease).
        ttl: i64,
        /// The granted TTL.
        granted_ttl: i64,
        /// Attached keys (when asked for).
        keys: Vec<Bytes>,
    },
    /// To a Leases: every lease ID, ascending.
    Leases {
        /// Header.
        header: ResponseHeader,
        /// The IDs.
        ids: Vec<i64>,
    },
}

/// A request on a watch stream (etcd's `WatchRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchRequest {
    /// Create a watch.
    Create(crate::watch::stream::CreateWatch),
    /// Cancel the watch with this ID.
    Cancel(i64),
    /// Ask for a progress response.
    Progress,
}

/// A request of etcd's Cluster service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    /// MemberAdd: a new member at these peer URLs (the server picks its ID).
    Add {
        /// Its peer URLs.
        peer_urls: Vec<String>,
        /// True to add a learner.
        is_learner: bool,
    },
    /// MemberRemove.
    Remove(u64),
    /// MemberUpdate: new peer URLs.
    Update {
        /// The member.
        id: u64,
        /// Its peer URLs.
        peer_urls: Vec<String>,
    },
    /// MemberList.
    List {
        /// Confirm with a ReadIndex round first.
        linearizable: bool,
    },
    /// MemberPromote.
    Promote(u64),
}

/// etcd's `StatusResponse` (the fields lode serves).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Server version.
    pub version: String,
    /// Bytes of storage in use.
    pub db_size: i64,
    /// Member ID of the leader.
    pub leader: u64,
    /// Last Raft index.
    pub raft_index: u64,
    /// Current Raft term.
    pub raft_term: u64,
    /// Last applied Raft index.
    pub raft_applied_index: u64,
    /// lode's own: where this member's commits spend their time.
    pub stages: Vec<StageSummary>,
    /// True when the member is a learner.
    pub is_learner: bool,
}

impl LeaseAnswer {
    /// The answer's header.
    pub fn header_mut(&mut self) -> &mut ResponseHeader {
        match self {
            LeaseAnswer::KeepAlive { header, .. }
            | LeaseAnswer::TimeToLive { header, .. }
            | LeaseAnswer::Leases { header, .. } => header,
        }
    }
}

/// A response of the native protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// To an Auth call.
    Auth(crate::auth::request::AuthResponse),
    /// To a range.
    Range(RangeResponse),
    /// To a write.
    Write(WriteResponse),
    /// To a status request.
    Status(StatusResponse),
    /// To an alarm request.
    Alarm(AlarmResponse),
    /// To a member request.
    Members {
        /// Header.
        header: ResponseHeader,
        /// The member added (MemberAdd only).
        member: Option<Member>,
        /// The members after the request.
        members: Vec<Member>,
    },
    /// To a MoveLeader request.
    MoveLeader {
        /// Header.
        header: ResponseHeader,
    },
    /// To a HashKV request.
    HashKv {
        /// Header.
        header: ResponseHeader,
        /// The hash.
        hash: u32,
        /// The compaction point the hash starts after.
        compact_revision: i64,
        /// The revision hashed up to.
        hash_revision: i64,
    },
    /// One piece of a snapshot file (lode's snapshot format); a snapshot request is answered
    /// by several, in order, the last with `remaining_bytes` 0.
    Snapshot {
        /// Header.
        header: ResponseHeader,
        /// Bytes of the snapshot after this piece.
        remaining_bytes: u64,
        /// This piece.
        data: Bytes,
    },
    /// An error: etcd's gRPC code and message.
    Error {
        /// gRPC status code number.
        code: u32,
        /// etcd's message.
        message: String,
    },
    /// One response on a watch stream.
    Watch {
        /// Header (its revision is the response's).
        header: ResponseHeader,
        /// The response.
        response: crate::watch::stream::WatchResponse,
    },
    /// To a lease query.
    Lease(LeaseAnswer),
    /// To a lock or election request.
    Coordination(CoordinationResponse),
}

/// gRPC status code numbers.
pub fn grpc_code(code: ErrorCode) -> u32 {
    match code {
        ErrorCode::InvalidArgument => 3,
        ErrorCode::NotFound => 5,
        ErrorCode::ResourceExhausted => 8,
        ErrorCode::OutOfRange => 11,
        ErrorCode::FailedPrecondition => 9,
    }
}

/// gRPC `Unavailable`.
pub const GRPC_UNAVAILABLE: u32 = 14;
/// gRPC `ResourceExhausted`.
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
/// gRPC `Internal`.
pub const GRPC_INTERNAL: u32 = 13;

/// One commit stage's summary, as `lodectl perf` shows it (measured by `replica::stages`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageSummary {
    /// What was measured ("leader log sync", "replication to 8e9e05c52164694d", ...).
    pub name: String,
    /// Samples recorded.
    pub count: u64,
    /// Median, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: u64,
    /// 99.9th percentile, nanoseconds.
    pub p999_ns: u64,
    /// Largest sample, nanoseconds.
    pub max_ns: u64,
}
