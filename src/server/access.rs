//! What each client request must be allowed to do while auth is on, as etcd 3.5 decides it,
//! checked on the core that serves the request, for all three front ends (gRPC, the JSON
//! gateway through gRPC's handlers, the native protocol), which reach these rules only
//! through `server::admission` (which picks the rule for each kind of request).
//!
//! - Range: read on its keys, checked after a linearizable read's ReadIndex (so the member has
//!   applied every auth change acknowledged before the read began) and again after reading
//!   (refused "revision of auth store is old" if the store changed meanwhile).
//! - Put, DeleteRange, Txn (every compare and every operation of both branches, nested), a put's
//!   lease (write on the keys already attached), Compact (root): checked here, then proposed
//!   stamped with the auth revision they were checked at; every member refuses the entry at
//!   apply if the store moved on (`Sequencer::admits`).
//! - Leases: a grant needs a user; a revocation or keep-alive write on the lease's keys; a
//!   TimeToLive a user, and read on the keys when it lists them; Leases read on every lease's
//!   keys. Root may do all of it.
//! - Watch: read on the range when a watch is created. Locks and elections: their keys.
//! - Maintenance and membership: Status, alarm lists and member lists need a user; the rest
//!   needs root. The Auth service's own rules are in `node::auth::serve_auth`.

use bytes::Bytes;

use super::node::Node;
use crate::api::native::LeaseQuery;
use crate::auth::authorize;
use crate::auth::{AuthError, Caller, Credentials};
use crate::consensus::ServerError;
use crate::lease::LeaseRequest;
use crate::mvcc::request::{RangeRequest, RangeResponse, RequestOp, WriteRequest};

/// Read, write or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

fn permitted(
    caller: &Caller,
    key: &Bytes,
    range_end: &Bytes,
    access: Access,
) -> Result<(), AuthError> {
    caller.permit(|user| {
        let read = access == Access::Write || user.may_read(key, range_end);
        let write = access == Access::Read || user.may_write(key, range_end);
        if read && write {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    })
}

/// The leases a write attaches keys to (a put's, in a txn too).
fn leases_attached(write: &WriteRequest) -> Vec<i64> {
    fn ops(ops: &[RequestOp], out: &mut Vec<i64>) {
        for op in ops {
            match op {
                RequestOp::Put(put) if put.lease != 0 => out.push(put.lease),
                RequestOp::Txn(txn) => {
                    ops_of(txn, out);
                }
                _ => {}
            }
        }
    }
    fn ops_of(txn: &crate::mvcc::request::TxnRequest, out: &mut Vec<i64>) {
        ops(&txn.success, out);
        ops(&txn.failure, out);
    }
    let mut leases = Vec::new();
    match write {
        WriteRequest::Put(put) if put.lease != 0 => leases.push(put.lease),
        WriteRequest::Txn(txn) => ops_of(txn, &mut leases),
        _ => {}
    }
    leases.sort_unstable();
    leases.dedup();
    leases
}

impl Node {
    /// A range made with `credentials`.
    pub async fn range_as(
        &self,
        credentials: &Credentials,
        request: &RangeRequest,
    ) -> Result<RangeResponse, ServerError> {
        if !self.auth_gate().enabled() {
            return self.range(request).await;
        }
        // Checked after the ReadIndex: the member then holds every auth change acknowledged
        // before the read began.
        let current = self.read_revision(request).await?;
        let caller = self.caller(credentials)?;
        caller.permit(|user| authorize::check_range(user, request))?;
        let response = self.router().range(request, current).await?;
        self.auth_gate().still_current(&caller)?;
        Ok(response)
    }

    /// Checks a client's write made with `credentials`; the auth revision to stamp its log entry
    /// with.
    pub async fn permit_write(
        &self,
        credentials: &Credentials,
        write: &WriteRequest,
    ) -> Result<Option<u64>, ServerError> {
        let caller = self.caller(credentials)?;
        if !caller.is_checked() {
            return Ok(Some(0));
        }
        match write {
            WriteRequest::Lease(LeaseRequest::Grant { .. }) => caller.permit(|_| Ok(()))?,
            WriteRequest::Lease(LeaseRequest::Revoke { id }) => {
                self.permit_lease_keys(&caller, *id, Access::Write).await?
            }
            other => caller.permit(|user| authorize::check_write(user, other))?,
        }
        for lease in leases_attached(write) {
            self.permit_lease_keys(&caller, lease, Access::Write)
                .await?;
        }
        Ok(Some(caller.stamp()))
    }

    /// A lease's keys, with `access` to all of them (root: whatever they are).
    async fn permit_lease_keys(
        &self,
        caller: &Caller,
        lease: i64,
        access: Access,
    ) -> Result<(), ServerError> {
        caller.permit(|_| Ok(()))?;
        if caller.permit_admin().is_ok() {
            return Ok(());
        }
        // From this member's applied leases, as etcd checks them at apply on each member.
        let keys = self.lease_keys(lease).await?;
        for key in &keys {
            permitted(caller, key, &Bytes::new(), access)?;
        }
        Ok(())
    }

    /// Checks a lease query made with `credentials` (keep-alive, TimeToLive, Leases).
    pub async fn permit_lease_query(
        &self,
        credentials: &Credentials,
        query: &LeaseQuery,
    ) -> Result<(), ServerError> {
        let caller = self.caller(credentials)?;
        if !caller.is_checked() {
            return Ok(());
        }
        match query {
            LeaseQuery::KeepAlive(id) => self.permit_lease_keys(&caller, *id, Access::Write).await,
            LeaseQuery::TimeToLive { id, keys: true } => {
                self.permit_lease_keys(&caller, *id, Access::Read).await
            }
            LeaseQuery::TimeToLive { keys: false, .. } => Ok(caller.permit(|_| Ok(()))?),
            LeaseQuery::Leases => {
                caller.permit(|_| Ok(()))?;
                if caller.permit_admin().is_ok() {
                    return Ok(());
                }
                let leases = crate::api::native::Request::Lease(LeaseQuery::Leases);
                let ids = match Box::pin(self.cluster_as(leases, credentials.token.clone())).await?
                {
                    crate::api::native::Response::Lease(
                        crate::api::native::LeaseAnswer::Leases { ids, .. },
                    ) => ids,
                    _ => return Err(crate::shard::route::unexpected_reply("Leases")),
                };
                for id in ids {
                    self.permit_lease_keys(&caller, id, Access::Read).await?;
                }
                Ok(())
            }
        }
    }

    /// A lock or campaign that attaches its key to `lease` (0: a session lease of its own):
    /// write on the keys already attached, as a put with that lease (so a caller cannot hang
    /// keys it may not write on someone else's lease).
    pub async fn permit_lease_attach(
        &self,
        credentials: &Credentials,
        lease: i64,
    ) -> Result<(), ServerError> {
        let caller = self.caller(credentials)?;
        if lease == 0 || !caller.is_checked() {
            return Ok(());
        }
        self.permit_lease_keys(&caller, lease, Access::Write).await
    }

    /// etcd's Alarm: a list needs a user, raising or clearing one root.
    pub fn permit_alarm(
        &self,
        credentials: &Credentials,
        action: crate::alarm::AlarmAction,
    ) -> Result<(), ServerError> {
        match action {
            crate::alarm::AlarmAction::Get => self.permit_user(credentials),
            _ => self.permit_admin(credentials),
        }
    }

    /// Membership and leadership (`Request::Member`, `Request::MoveLeader`): a member list
    /// needs a user, every change root.
    pub fn permit_cluster(
        &self,
        credentials: &Credentials,
        request: &crate::api::request::Request,
    ) -> Result<(), ServerError> {
        use crate::api::request::{MemberRequest, Request};
        match request {
            Request::Member(MemberRequest::List { .. }) => self.permit_user(credentials),
            _ => self.permit_admin(credentials),
        }
    }

    /// Requests only root may make.
    pub fn permit_admin(&self, credentials: &Credentials) -> Result<(), ServerError> {
        Ok(self.caller(credentials)?.permit_admin()?)
    }

    /// Requests any authenticated user may make (etcd's `requireAuthInfo`).
    pub fn permit_user(&self, credentials: &Credentials) -> Result<(), ServerError> {
        Ok(self.caller(credentials)?.permit(|_| Ok(()))?)
    }

    /// Requests on a key range (watches, locks, elections).
    pub fn permit_keys(
        &self,
        credentials: &Credentials,
        key: &Bytes,
        range_end: &Bytes,
        access: Access,
    ) -> Result<(), ServerError> {
        let caller = self.caller(credentials)?;
        Ok(permitted(&caller, key, range_end, access)?)
    }

    /// A watch's creation: read on its range. The user it speaks for when auth is on (whose
    /// permissions the stream's watches then follow).
    pub fn permit_watch(
        &self,
        credentials: &Credentials,
        key: &Bytes,
        range_end: &Bytes,
    ) -> Result<Option<String>, ServerError> {
        let caller = self.caller(credentials)?;
        permitted(&caller, key, range_end, Access::Read)?;
        Ok(caller.user().map(str::to_string))
    }

    /// Requests on the keys of a lock's or an election's `name` (its contenders' keys).
    pub fn permit_name(
        &self,
        credentials: &Credentials,
        name: &[u8],
        access: Access,
    ) -> Result<(), ServerError> {
        let key = crate::api::request::prefix(name);
        let range_end = crate::mvcc::kv::prefix_range_end(&key);
        self.permit_keys(credentials, &key, &range_end, access)
    }
}

/// The reason a refused watch creation carries, as etcd's server words it (the gRPC status's
/// text: "rpc error: code = PermissionDenied desc = etcdserver: permission denied").
pub fn watch_refusal(error: &ServerError) -> String {
    let code = match error.grpc_code() {
        3 => "InvalidArgument",
        7 => "PermissionDenied",
        9 => "FailedPrecondition",
        16 => "Unauthenticated",
        _ => "Unknown",
    };
    format!("rpc error: code = {code} desc = {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::request::{PutRequest, TxnRequest};

    #[test]
    fn the_leases_a_write_attaches_keys_to_include_those_in_txns() {
        let put = |lease| {
            RequestOp::Put(PutRequest {
                key: Bytes::from_static(b"k"),
                lease,
                ..PutRequest::default()
            })
        };
        let write = WriteRequest::Txn(TxnRequest {
            compare: vec![],
            success: vec![put(7), put(0)],
            failure: vec![RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![put(3), put(7)],
                failure: vec![],
            })],
        });
        assert_eq!(leases_attached(&write), vec![3, 7]);
        assert_eq!(
            watch_refusal(&ServerError::Auth(AuthError::PermissionDenied)),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
    }
}
