//! Checks etcd makes on a request before it is proposed (its `checkRangeRequest`,
//! `checkPutRequest`, `checkDeleteRequest`, `checkTxnRequest`, `checkIntervals`). Pure. A request
//! that fails here is answered at the edge and never reaches the log.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use super::error::KvError;
use super::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, SortOrder, SortTarget, TxnRequest,
    WriteRequest,
};

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Checks a range request.
pub fn check_range(request: &RangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if matches!(request.sort_order, SortOrder::Unknown(_))
        || matches!(request.sort_target, SortTarget::Unknown(_))
    {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// Checks a put request.
pub fn check_put(request: &PutRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// Checks a delete request.
pub fn check_delete(request: &DeleteRangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// Checks a txn: op counts against `max_txn_ops` (nested txns get what their parent left),
/// every op, then that no key is written twice.
pub fn check_txn(request: &TxnRequest, max_txn_ops: usize) -> Result<(), KvError> {
    check_txn_ops(request, max_txn_ops as i64)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

/// Checks any request that goes through the log.
pub fn check_write(request: &WriteRequest, max_txn_ops: usize) -> Result<(), KvError> {
    match request {
        WriteRequest::Put(put) => check_put(put),
        WriteRequest::DeleteRange(delete) => check_delete(delete),
        WriteRequest::Txn(txn) => check_txn(txn, max_txn_ops),
        WriteRequest::Compact(_) | WriteRequest::Lease(_) => Ok(()),
    }
}

fn check_txn_ops(request: &TxnRequest, max_txn_ops: i64) -> Result<(), KvError> {
    let ops = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(KvError::TooManyOps);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in request.success.iter().chain(&request.failure) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), KvError> {
    match op {
        RequestOp::Range(range) => check_range(range),
        RequestOp::Put(put) => check_put(put),
        RequestOp::DeleteRange(delete) => check_delete(delete),
        RequestOp::Txn(txn) => check_txn_ops(txn, max_txn_ops),
        RequestOp::Empty => Err(KvError::KeyNotFound),
    }
}

/// A key interval as etcd's `checkIntervals` builds it: `[begin, end)` compared as byte strings,
/// `end: None` unbounded. A delete's `range_end` is taken literally, so `"\0"` gives an interval
/// that holds no key: etcd does not flag a put under a delete-from-key, and neither does lode.
#[derive(Clone, Debug)]
struct Interval {
    begin: Bytes,
    end: Option<Bytes>,
}

impl Interval {
    fn of_delete(delete: &DeleteRangeRequest) -> Interval {
        let end = if delete.range_end.is_empty() {
            let mut point = BytesMut::from(delete.key.as_ref());
            point.extend_from_slice(&[0]);
            point.freeze()
        } else {
            delete.range_end.clone()
        };
        Interval {
            begin: delete.key.clone(),
            end: Some(end),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.begin.as_ref() && self.end.as_ref().is_none_or(|end| key < end.as_ref())
    }
}

fn intersects(deletes: &[Interval], key: &[u8]) -> bool {
    deletes.iter().any(|interval| interval.contains(key))
}

/// Returns the keys put and the intervals deleted by `ops` and their nested txns, failing when
/// a key is put twice (except in the two branches of one txn) or put inside a deleted interval.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Interval>), KvError> {
    let mut deletes: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) => Some(Interval::of_delete(delete)),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(txn) = op else { continue };
        let (puts_then, deletes_then) = check_intervals(&txn.success)?;
        let (puts_else, deletes_else) = check_intervals(&txn.failure)?;
        for key in &puts_then {
            if puts.contains(key) || intersects(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            // The two branches exclude each other: a key in both is fine.
            if (puts.contains(key) && !puts_then.contains(key)) || intersects(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || intersects(&deletes, &put.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::request::Compare;

    fn put(key: &'static str) -> RequestOp {
        RequestOp::Put(PutRequest {
            key: Bytes::from_static(key.as_bytes()),
            ..Default::default()
        })
    }

    fn delete(key: &'static str, end: &'static [u8]) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: Bytes::from_static(key.as_bytes()),
            range_end: Bytes::from_static(end),
            prev_kv: false,
        })
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_keys_are_rejected_as_etcd_does() {
        let max = DEFAULT_MAX_TXN_OPS;
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), max),
            Err(KvError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![delete("a", b"c"), put("b")], vec![]), max),
            Err(KvError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![delete("a", b""), put("a")], vec![]), max),
            Err(KvError::DuplicateKey)
        );
        // Deletes may overlap; then and else may write the same key.
        assert_eq!(
            check_txn(
                &txn(vec![delete("a", b"c"), delete("b", b"d")], vec![]),
                max
            ),
            Ok(())
        );
        let nested = RequestOp::Txn(txn(vec![put("x")], vec![put("x")]));
        assert_eq!(check_txn(&txn(vec![nested.clone()], vec![]), max), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![nested, put("x")], vec![]), max),
            Err(KvError::DuplicateKey)
        );
        let nested_delete = RequestOp::Txn(txn(vec![delete("a", b"z")], vec![]));
        assert_eq!(
            check_txn(&txn(vec![nested_delete, put("m")], vec![]), max),
            Err(KvError::DuplicateKey)
        );
        // etcd's quirk: a delete-from-key ("\0") interval holds no key.
        assert_eq!(
            check_txn(&txn(vec![delete("a", &[0]), put("b")], vec![]), max),
            Ok(())
        );
        // Success and failure are checked separately.
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), max), Ok(()));
    }

    #[test]
    fn op_limits_and_empty_ops() {
        let many: Vec<RequestOp> = (0..3).map(|_| RequestOp::Empty).collect();
        assert_eq!(check_txn(&txn(many, vec![]), 2), Err(KvError::TooManyOps));
        assert_eq!(
            check_txn(&txn(vec![RequestOp::Empty], vec![]), 2),
            Err(KvError::KeyNotFound)
        );
        let compare = TxnRequest {
            compare: vec![Compare::default()],
            ..Default::default()
        };
        assert_eq!(check_txn(&compare, 2), Err(KvError::EmptyKey));
        // A nested txn gets what its parent left: 4 - 2 = 2 < 3.
        let inner = RequestOp::Txn(txn(vec![put("a"), put("b"), put("c")], vec![]));
        assert_eq!(
            check_txn(&txn(vec![inner, put("d")], vec![]), 4),
            Err(KvError::TooManyOps)
        );
    }

    #[test]
    fn put_and_range_checks() {
        let mut request = PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&request), Err(KvError::ValueProvided));
        request.value = Bytes::new();
        request.ignore_lease = true;
        request.lease = 5;
        assert_eq!(check_put(&request), Err(KvError::LeaseProvided));
        let range = RangeRequest {
            key: Bytes::from_static(b"k"),
            sort_order: SortOrder::from_i32(7),
            ..Default::default()
        };
        assert_eq!(check_range(&range), Err(KvError::InvalidSortOption));
        assert_eq!(
            check_range(&RangeRequest::default()),
            Err(KvError::EmptyKey)
        );
    }
}
