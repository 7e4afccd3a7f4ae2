//! Whether a user may make a request: etcd's per-request checks against the user's merged
//! permissions. Pure: the caller supplies the permissions (cached per token and auth revision)
//! and, for a lease revocation, the keys attached to the lease.

use bytes::Bytes;

use super::error::AuthError;
use super::perms::UserPermissions;
use crate::mvcc::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WriteRequest,
};

/// A request made at auth revision `made_at` against a store now at `current`: etcd refuses it
/// if the store moved on, so that a revoked permission takes effect at once.
pub fn check_revision(made_at: u64, current: u64) -> Result<(), AuthError> {
    if made_at < current {
        return Err(AuthError::AuthOldRevision);
    }
    Ok(())
}

/// The check of a log entry at apply (etcd's `isOpPermitted` on the request header): the
/// server's own entries (`None`) pass; a client's passes while auth is off; with auth on, one
/// without a user (revision 0) is "user name is empty" and one authorized at an older revision
/// than `current` is "revision of auth store is old".
pub fn check_stamp(stamp: Option<u64>, enabled: bool, current: u64) -> Result<(), AuthError> {
    match stamp {
        Some(revision) if enabled => {
            if revision == 0 {
                return Err(AuthError::UserEmpty);
            }
            check_revision(revision, current)
        }
        _ => Ok(()),
    }
}

fn allowed(yes: bool) -> Result<(), AuthError> {
    if yes {
        Ok(())
    } else {
        Err(AuthError::PermissionDenied)
    }
}

/// Range: read permission on its keys.
pub fn check_range(user: &UserPermissions, request: &RangeRequest) -> Result<(), AuthError> {
    allowed(user.may_read(&request.key, &request.range_end))
}

/// Put: write permission on the key, and read permission too when it asks for the previous
/// pair.
pub fn check_put(user: &UserPermissions, request: &PutRequest) -> Result<(), AuthError> {
    allowed(user.may_write(&request.key, &Bytes::new()))?;
    if request.prev_kv {
        allowed(user.may_read(&request.key, &Bytes::new()))?;
    }
    Ok(())
}

/// DeleteRange: write permission on its keys, and read permission when it asks for the
/// previous pairs.
pub fn check_delete(user: &UserPermissions, request: &DeleteRangeRequest) -> Result<(), AuthError> {
    allowed(user.may_write(&request.key, &request.range_end))?;
    if request.prev_kv {
        allowed(user.may_read(&request.key, &request.range_end))?;
    }
    Ok(())
}

/// Txn: read permission on every compare's keys, and every operation of both branches
/// (nested txns included) checked as if made alone, whichever branch would run.
pub fn check_txn(user: &UserPermissions, request: &TxnRequest) -> Result<(), AuthError> {
    for compare in &request.compare {
        allowed(user.may_read(&compare.key, &compare.range_end))?;
    }
    for op in request.success.iter().chain(&request.failure) {
        match op {
            RequestOp::Range(range) => check_range(user, range)?,
            RequestOp::Put(put) => check_put(user, put)?,
            RequestOp::DeleteRange(delete) => check_delete(user, delete)?,
            RequestOp::Txn(txn) => check_txn(user, txn)?,
            RequestOp::Empty => {}
        }
    }
    Ok(())
}

/// Operations only a root user may make (compaction, defragmentation, snapshots, alarms,
/// leadership and membership changes, auth changes).
pub fn check_admin(user: &UserPermissions) -> Result<(), AuthError> {
    allowed(user.root)
}

/// A write through the log: puts, deletions and txns by their keys; compaction needs root;
/// lease grants and renewals need nothing (etcd checks a revocation separately, against the
/// lease's keys: [`check_lease_revoke`]).
pub fn check_write(user: &UserPermissions, request: &WriteRequest) -> Result<(), AuthError> {
    match request {
        WriteRequest::Put(put) => check_put(user, put),
        WriteRequest::DeleteRange(delete) => check_delete(user, delete),
        WriteRequest::Txn(txn) => check_txn(user, txn),
        WriteRequest::Compact(_) => check_admin(user),
        WriteRequest::Lease(_) => Ok(()),
    }
}

/// LeaseRevoke: write permission on every key attached to the lease (etcd 3.5).
pub fn check_lease_revoke<'a>(
    user: &UserPermissions,
    keys: impl IntoIterator<Item = &'a Bytes>,
) -> Result<(), AuthError> {
    for key in keys {
        allowed(user.may_write(key, &Bytes::new()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::perms::{PermType, Permission};
    use crate::mvcc::request::{Compare, CompareOperand, CompareResult, CompareTarget};

    fn b(text: &'static [u8]) -> Bytes {
        Bytes::from_static(text)
    }

    fn reader_of_a_writer_of_w() -> UserPermissions {
        UserPermissions::merge(
            false,
            &[
                Permission {
                    perm_type: PermType::Read,
                    key: b(b"a"),
                    range_end: b(b"b"),
                },
                Permission {
                    perm_type: PermType::Write,
                    key: b(b"w"),
                    range_end: b(b"x"),
                },
            ],
        )
    }

    fn put(key: &'static [u8], prev_kv: bool) -> PutRequest {
        PutRequest {
            key: b(key),
            value: b(b"v"),
            prev_kv,
            ..PutRequest::default()
        }
    }

    #[test]
    fn puts_deletes_and_reads_by_their_keys() {
        let user = reader_of_a_writer_of_w();
        let range = |key: &'static [u8], end: &'static [u8]| RangeRequest {
            key: b(key),
            range_end: b(end),
            ..RangeRequest::default()
        };
        assert_eq!(check_range(&user, &range(b"a1", b"")), Ok(()));
        assert_eq!(
            check_range(&user, &range(b"a", b"c")),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(check_put(&user, &put(b"w1", false)), Ok(()));
        assert_eq!(
            check_put(&user, &put(b"w1", true)),
            Err(AuthError::PermissionDenied),
            "prev_kv reads"
        );
        assert_eq!(
            check_put(&user, &put(b"a1", false)),
            Err(AuthError::PermissionDenied)
        );
        let delete = DeleteRangeRequest {
            key: b(b"w"),
            range_end: b(b"x"),
            prev_kv: false,
        };
        assert_eq!(check_delete(&user, &delete), Ok(()));
        assert_eq!(
            check_write(&user, &WriteRequest::Compact(Default::default())),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            check_lease_revoke(&user, &[b(b"w1"), b(b"a1")]),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(check_lease_revoke(&user, &[b(b"w1")]), Ok(()));
        assert_eq!(check_revision(4, 5), Err(AuthError::AuthOldRevision));
        assert_eq!(check_revision(5, 5), Ok(()));
        assert_eq!(check_stamp(None, true, 9), Ok(()), "the server's own");
        assert_eq!(check_stamp(Some(0), false, 9), Ok(()), "auth off");
        assert_eq!(check_stamp(Some(0), true, 9), Err(AuthError::UserEmpty));
        assert_eq!(
            check_stamp(Some(8), true, 9),
            Err(AuthError::AuthOldRevision)
        );
        assert_eq!(check_stamp(Some(9), true, 9), Ok(()));
    }

    #[test]
    fn a_txn_is_checked_by_every_compare_and_every_operation_of_both_branches() {
        let user = reader_of_a_writer_of_w();
        let compare = |key: &'static [u8]| Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version,
            key: b(key),
            range_end: Bytes::new(),
            operand: CompareOperand::Version(0),
        };
        let allowed = TxnRequest {
            compare: vec![compare(b"a1")],
            success: vec![RequestOp::Put(put(b"w1", false))],
            failure: vec![RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![RequestOp::Put(put(b"w2", false))],
                failure: vec![],
            })],
        };
        assert_eq!(check_txn(&user, &allowed), Ok(()));
        let mut compares_unreadable = allowed.clone();
        compares_unreadable.compare.push(compare(b"w1"));
        assert_eq!(
            check_txn(&user, &compares_unreadable),
            Err(AuthError::PermissionDenied)
        );
        let mut nested_denied = allowed.clone();
        nested_denied.failure = vec![RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Put(put(b"a1", false))],
        })];
        assert_eq!(
            check_txn(&user, &nested_denied),
            Err(AuthError::PermissionDenied)
        );
    }
}
