//! The one admission path: what a client request must pass before this member serves it,
//! whichever front end decoded it (gRPC, the JSON gateway through gRPC's handlers, the native
//! protocol). Every front end turns its message into the request envelope
//! (`api::request::Request`) and calls [`admit`]; a client write is proposed only through
//! [`write`], which admits it first. etcd's calls that carry no envelope request (Defragment,
//! Downgrade, the health service) and the opening of a stream whose messages are admitted one
//! by one (Watch, LeaseKeepAlive) go through [`admit_call`], which runs the same stages. The
//! refusals are etcd's errors (`ServerError`), so the same request is refused with the same
//! message and gRPC code on every front end.
//!
//! The stages, in etcd's order where lode can follow it:
//!
//! ```text
//!  request ─▶ 0 learner (etcd's interceptors: Status, serializable   "rpc not supported for
//!               Range and the Snapshot stream only)                   learner" (Unavailable)
//!          ─▶ 0 leader (`hasleader=true` and no leader known)        "no leader" (Unavailable)
//!          ─▶ 1 shape (writes: etcd's checkPutRequest & co)      "key is not provided", ...
//!          ─▶ 2 token (the credentials name a valid caller)       "invalid auth token"
//!          ─▶ 3 size (requests that become log entries)           "request is too large"
//!          ─▶ 4 permission (by kind: server::access's rules)      "permission denied", ...
//!          ─▶ Node::write ─▶ consensus core:
//!             5 quota (a write adding data, NOSPACE)              "database space exceeded"
//!             6 learner (a learner proposes nothing)              "rpc not supported for learner"
//!             7 apply gap (committed - applied > 5000)            "too many requests"
//!          ─▶ log ─▶ apply: the auth stamp still current           "revision of auth store is old"
//! ```
//!
//! Stage 0 is etcd's gRPC interceptors (`v3rpc/interceptor.go`), which run before any handler:
//! a learner serves only what `isRPCSupportedForLearner` allows (Status, a serializable Range)
//! and, of the streams, Snapshot; a call whose metadata says `hasleader=true` (the gateway's
//! `Grpc-Metadata-Hasleader: true` header, which grpc-gateway passes on as that metadata; a
//! native frame's `require_leader`) is refused while this member knows no leader. Both read
//! `consensus::SharedRole`, which the consensus core publishes and `Status` reports, with two
//! atomic loads. A stream asking for a leader is also ended once it is lost for a while
//! (`server::watching`).
//!
//! Stages 5-7 run on the consensus core because only it knows the keyspace's counted size,
//! the alarms and the commit and apply indexes; every front end reaches them through the same
//! `Node::write`, so they have one copy too (stage 6 is stage 0's rule again, for what the
//! member proposes itself). etcd checks the quota before a request's shape;
//! lode checks it after the cheap local stages, which only changes the answer for a request
//! that is both malformed (or too large, or not permitted) and over the quota.
//!
//! Invariants: a front end never checks a request's size, permissions or shape itself, and
//! never proposes a client's write except through [`write`]; a write is proposed with the
//! auth revision it was permitted at (stage 4), so a permission change applied before it makes
//! every member refuse it at apply. Ranges are permitted after their ReadIndex
//! (`Node::range_as`), watches at each creation (`server::watching::apply_watch_request`), and the Auth
//! calls by the auth store's own rules on the consensus core (`node::auth`): for them this path
//! checks only what comes before (size, for the Auth calls that are log entries).
//!
//! Request size: etcd refuses "request is too large" for what it would put in its log (the
//! marshalled raft request over `--max-request-bytes`); every other message is bounded only by
//! the receive limit (`Limits::max_frame_bytes`, the request limit plus 512 KiB), which each
//! transport enforces as it reads. lode measures the log entry it would propose: the native
//! request frame (for a native request without a token, the frame as it came).

use bytes::Bytes;

use super::access::Access;
use super::node::Node;
use super::Limits;
use crate::alarm::AlarmAction;
use crate::api::native::{self, CoordinationRequest, Request};
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::members::MemberError;
use crate::mvcc::request::{WriteRequest, WriteResponse};
use crate::mvcc::KvError;

/// What a call carries besides its message, whichever front end it came by: who it speaks
/// for (gRPC metadata `token` or `authorization`, the gateway's `Authorization` header, a
/// native frame's `token`; the client certificate's CN) and whether it must be refused while
/// this member knows no leader (gRPC metadata `hasleader=true`, the gateway's
/// `Grpc-Metadata-Hasleader: true`, a native frame's `require_leader`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// Who the call speaks for.
    pub credentials: Credentials,
    /// etcd's `hasleader` metadata: refuse the call with "no leader" rather than serve it
    /// while this member knows none.
    pub require_leader: bool,
}

impl CallMeta {
    /// A call speaking for `credentials`, not asking for a leader.
    pub fn of(credentials: Credentials) -> CallMeta {
        CallMeta {
            credentials,
            require_leader: false,
        }
    }
}

/// etcd's calls that carry no request of the envelope, admitted by [`admit_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Maintenance.Defragment (nothing to do in lode; root only, as etcd's).
    Defragment,
    /// Maintenance.Downgrade (refused by lode once admitted; root only, as etcd's).
    Downgrade,
    /// grpc.health.v1.Health/Check.
    HealthCheck,
    /// grpc.health.v1.Health/Watch, a stream.
    HealthWatch,
    /// The opening of a Watch stream (each creation is permitted as the stream applies it).
    WatchStream,
    /// The opening of a LeaseKeepAlive stream (each keep-alive is admitted as it comes).
    KeepAliveStream,
}

/// What admission found: what a write is proposed with.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The auth revision the request was permitted at, to stamp its log entry with (`None`:
    /// not a write).
    pub auth_revision: Option<u64>,
    /// For a write, its log entry: the native request frame, without a token.
    pub entry: Option<Bytes>,
}

/// Admits `request`, made as `meta` says, on this member, or refuses it with etcd's error.
/// `frame`: the native request frame it came in, if it did (reused as the log entry when it
/// carries no token and does not ask for a leader, since neither is kept in the log).
pub async fn admit(
    node: &Node,
    limits: Limits,
    meta: &CallMeta,
    request: &Request,
    frame: Option<&Bytes>,
) -> Result<Admitted, ServerError> {
    let credentials = &meta.credentials;
    // 0: etcd's interceptors, before any handler.
    check_member(node, meta, served_by_learner(request))?;
    // 1: the shape etcd's handlers check before anything else.
    if let Request::Write(write) = request {
        crate::mvcc::validate::check_write(write, node.config.max_txn_ops)?;
    }
    // 2: a token that names nobody is refused before the size, as etcd resolves the caller
    // before it marshals the raft request. Not for a range, whose caller is resolved after
    // its ReadIndex (a token made by an Authenticate acknowledged elsewhere just before is
    // known here by then), nor for what is checked where it is served.
    if !matches!(
        request,
        Request::Range(_) | Request::Watch(_) | Request::Auth(_)
    ) {
        node.caller(credentials)?;
    }
    // 3: what would go into the log, measured as it would be written.
    // The log holds requests, not how they were called: a frame asking for a leader (like
    // one carrying a token, `log_entry`) is encoded again without it.
    let frame = frame.filter(|_| !meta.require_leader);
    let entry = match log_entry(request, frame, credentials) {
        Some(entry) if entry.len() > limits.max_request_bytes => {
            return Err(KvError::RequestTooLarge.into())
        }
        entry => entry,
    };
    // 4: the caller's permissions for this kind of request.
    let auth_revision = permit(node, credentials, request).await?;
    Ok(Admitted {
        auth_revision,
        entry: matches!(request, Request::Write(_))
            .then_some(entry)
            .flatten(),
    })
}

/// Admits `call`, one of etcd's calls without an envelope request, made with `meta`: the
/// same stages as [`admit`] where they apply (a learner serves none of these; Defragment and
/// Downgrade are root's, the health service and stream openings anyone's).
pub fn admit_call(node: &Node, meta: &CallMeta, call: Call) -> Result<(), ServerError> {
    check_member(node, meta, false)?;
    match call {
        Call::Defragment | Call::Downgrade => node.permit_admin(&meta.credentials),
        Call::HealthCheck | Call::HealthWatch | Call::WatchStream | Call::KeepAliveStream => Ok(()),
    }
}

/// Stage 0 alone (etcd's interceptors) for `request`, for a front end whose handlers answer
/// every later refusal their own way but must answer these as etcd's interceptors do, before
/// any handler (the gRPC lock and election services, whose handlers answer with code
/// Unknown); [`admit`] runs it again, at the cost of two atomic loads.
pub fn intercept(node: &Node, meta: &CallMeta, request: &Request) -> Result<(), ServerError> {
    check_member(node, meta, served_by_learner(request))
}

/// etcd's `isRPCSupportedForLearner` and its stream rule: a learner serves Status, a
/// serializable range and the Snapshot stream (etcd 3.5 and later), nothing else.
fn served_by_learner(request: &Request) -> bool {
    match request {
        Request::Status | Request::Snapshot => true,
        Request::Range(range) => range.serializable,
        Request::Write(_)
        | Request::Alarm(_)
        | Request::Member(_)
        | Request::MoveLeader(_)
        | Request::HashKv(_)
        | Request::Watch(_)
        | Request::Lease(_)
        | Request::Coordination(_)
        | Request::Auth(_) => false,
    }
}

/// Stage 0, etcd's interceptors: a learner refuses what it does not serve; a call that asks
/// for a leader is refused while this member knows none.
fn check_member(node: &Node, meta: &CallMeta, served_by_learner: bool) -> Result<(), ServerError> {
    let role = &node.config.role;
    if !served_by_learner && role.is_learner() {
        return Err(MemberError::LearnerNotSupported.into());
    }
    if meta.require_leader && !role.has_leader() {
        return Err(ServerError::NoLeader);
    }
    Ok(())
}

/// The log entry `request` would become (`None`: it becomes none, or none of a size the
/// client decides).
fn log_entry(request: &Request, frame: Option<&Bytes>, credentials: &Credentials) -> Option<Bytes> {
    let logged = match request {
        Request::Write(_) | Request::Auth(_) => true,
        Request::Alarm(alarm) => alarm.action != AlarmAction::Get,
        // The keys and values a lock or an election writes.
        Request::Coordination(coordination) => matches!(
            coordination,
            CoordinationRequest::Lock { .. }
                | CoordinationRequest::Campaign { .. }
                | CoordinationRequest::Proclaim { .. }
        ),
        Request::Range(_)
        | Request::Status
        | Request::Snapshot
        | Request::Member(_)
        | Request::MoveLeader(_)
        | Request::HashKv(_)
        | Request::Watch(_)
        | Request::Lease(_) => false,
    };
    if !logged {
        return None;
    }
    Some(match frame {
        Some(frame) if credentials.token.is_none() => frame.clone(),
        _ => Bytes::from(native::encode_request(0, request)),
    })
}

/// Stage 4: `server::access`'s rule for each kind of request; the auth revision a write was
/// permitted at.
async fn permit(
    node: &Node,
    credentials: &Credentials,
    request: &Request,
) -> Result<Option<u64>, ServerError> {
    match request {
        Request::Write(write) => node.permit_write(credentials, write).await,
        Request::Lease(query) => {
            node.permit_lease_query(credentials, query).await?;
            Ok(None)
        }
        Request::Coordination(coordination) => {
            permit_coordination(node, credentials, coordination).await?;
            Ok(None)
        }
        Request::Status => {
            node.permit_user(credentials)?;
            Ok(None)
        }
        Request::Alarm(alarm) => {
            node.permit_alarm(credentials, alarm.action)?;
            Ok(None)
        }
        Request::Member(_) | Request::MoveLeader(_) => {
            node.permit_cluster(credentials, request)?;
            Ok(None)
        }
        Request::HashKv(_) | Request::Snapshot => {
            node.permit_admin(credentials)?;
            Ok(None)
        }
        // Checked where they are served (see the module's invariants).
        Request::Range(_) | Request::Watch(_) | Request::Auth(_) => Ok(None),
    }
}

/// A lock or election request: its name's keys, and the lease its key would hang on.
async fn permit_coordination(
    node: &Node,
    credentials: &Credentials,
    request: &CoordinationRequest,
) -> Result<(), ServerError> {
    use CoordinationRequest as C;
    match request {
        C::Lock { name, lease } | C::Campaign { name, lease, .. } => {
            node.permit_name(credentials, name, Access::ReadWrite)?;
            node.permit_lease_attach(credentials, *lease).await
        }
        C::Leader { name } | C::Observe { name } => {
            node.permit_name(credentials, name, Access::Read)
        }
        C::Unlock { key } => node.permit_keys(credentials, key, &Bytes::new(), Access::Write),
        C::Proclaim { leader, .. } => {
            node.permit_keys(credentials, &leader.key, &Bytes::new(), Access::ReadWrite)
        }
        C::Resign { leader } => {
            node.permit_keys(credentials, &leader.key, &Bytes::new(), Access::Write)
        }
    }
}

/// A client's write, as every front end proposes it: admitted, then through the log stamped
/// with the auth revision it was permitted at. A lease grant or revocation goes through
/// `Node::lease_write` (which picks a grant's ID and minimum TTL); a physical compaction is
/// answered once every shard finished it.
pub async fn write(
    node: &Node,
    limits: Limits,
    meta: &CallMeta,
    write: WriteRequest,
    frame: Option<&Bytes>,
) -> Result<WriteResponse, ServerError> {
    let request = Request::Write(write);
    let admitted = admit(node, limits, meta, &request, frame).await?;
    let Request::Write(write) = request else {
        return Err(ServerError::Internal(
            "a write became another request".into(),
        ));
    };
    if let WriteRequest::Lease(lease) = write {
        return node.lease_write(lease, admitted.auth_revision).await;
    }
    let physical = match &write {
        WriteRequest::Compact(compaction) if compaction.physical => Some(compaction.revision),
        _ => None,
    };
    let cost = crate::alarm::write_cost(&write);
    let entry = match admitted.entry {
        Some(entry) => entry,
        None => Bytes::from(native::encode_request(0, &Request::Write(write))),
    };
    node.write(entry, cost, physical, admitted.auth_revision)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::request::PutRequest;

    fn put(value: usize) -> Request {
        Request::Write(WriteRequest::Put(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![b'x'; value]),
            ..PutRequest::default()
        }))
    }

    #[test]
    fn writes_are_measured_as_their_log_entry_and_reads_not_at_all() {
        let anonymous = Credentials::default();
        let entry = log_entry(&put(5000), None, &anonymous).expect("a write is logged");
        assert!(entry.len() > 5000 && entry.len() < 5200, "{}", entry.len());
        let range = Request::Range(Default::default());
        assert!(log_entry(&range, None, &anonymous).is_none());
        assert!(log_entry(&Request::Status, None, &anonymous).is_none());
    }

    #[test]
    fn a_learner_serves_status_serializable_ranges_and_snapshots_only() {
        let range = |serializable| {
            Request::Range(crate::mvcc::request::RangeRequest {
                key: Bytes::from_static(b"k"),
                serializable,
                ..Default::default()
            })
        };
        for served in [Request::Status, Request::Snapshot, range(true)] {
            assert!(served_by_learner(&served), "{served:?}");
        }
        for refused in [
            range(false),
            put(1),
            Request::HashKv(0),
            Request::MoveLeader(1),
            Request::Member(native::MemberRequest::List {
                linearizable: false,
            }),
            Request::Lease(native::LeaseQuery::Leases),
            Request::Coordination(CoordinationRequest::Leader {
                name: Bytes::from_static(b"e"),
            }),
        ] {
            assert!(!served_by_learner(&refused), "{refused:?}");
        }
    }

    #[test]
    fn a_frame_is_the_entry_unless_it_carries_a_token() {
        let frame = Bytes::from_static(b"as it came");
        let anonymous = Credentials::default();
        assert_eq!(
            log_entry(&put(1), Some(&frame), &anonymous),
            Some(frame.clone())
        );
        let with_token = Credentials {
            token: Some("t".into()),
            common_name: None,
        };
        let entry = log_entry(&put(1), Some(&frame), &with_token).expect("logged");
        assert_ne!(entry, frame);
    }
}
