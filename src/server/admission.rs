//! The one admission path: what a client request must pass before this member serves it,
//! whichever front end decoded it (gRPC, the JSON gateway through gRPC's handlers, the native
//! protocol). Every front end turns its message into the request envelope
//! (`api::request::Request`) and calls [`admit`]; a client write is proposed only through
//! [`write`], which admits it first. The refusals are etcd's errors (`ServerError`), so the
//! same request is refused with the same message and gRPC code on every front end.
//!
//! The stages, in etcd's order where lode can follow it:
//!
//! ```text
//!  request ─▶ 1 shape (writes: etcd's checkPutRequest & co)      "key is not provided", ...
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
//! Stages 5-7 run on the consensus core because only it knows the keyspace's counted size,
//! the alarms and the commit and apply indexes; every front end reaches them through the same
//! `Node::write`, so they have one copy too. etcd checks the quota before a request's shape;
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
use crate::mvcc::request::{WriteRequest, WriteResponse};
use crate::mvcc::KvError;

/// What admission found: what a write is proposed with.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The auth revision the request was permitted at, to stamp its log entry with (`None`:
    /// not a write).
    pub auth_revision: Option<u64>,
    /// For a write, its log entry: the native request frame, without a token.
    pub entry: Option<Bytes>,
}

/// Admits `request` made with `credentials` on this member, or refuses it with etcd's error.
/// `frame`: the native request frame it came in, if it did (reused as the log entry when it
/// carries no token, since tokens are never kept in the log).
pub async fn admit(
    node: &Node,
    limits: Limits,
    credentials: &Credentials,
    request: &Request,
    frame: Option<&Bytes>,
) -> Result<Admitted, ServerError> {
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
    credentials: &Credentials,
    write: WriteRequest,
    frame: Option<&Bytes>,
) -> Result<WriteResponse, ServerError> {
    let request = Request::Write(write);
    let admitted = admit(node, limits, credentials, &request, frame).await?;
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
