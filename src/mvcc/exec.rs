//! Executes etcd KV requests against a read view of the store, as etcd's apply does. Pure.
//!
//! A write request is executed against the state just before it (revision `current`): it
//! returns its response and the list of changes it makes, all at main revision `current + 1`
//! with sub revisions in execution order. The caller bumps the revision only when there is at
//! least one change (a delete that matched nothing or a read-only txn leaves it), then hands
//! the changes to the owning shards. Nothing here depends on how keys are spread over shards.
//!
//! etcd's order of evaluation is kept: a txn's compares, including those of nested txns on the
//! chosen path, see the state before the txn; its ops run in order and later reads see earlier
//! writes of the same txn.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bytes::Bytes;

use super::error::KvError;
use super::kv::{KeyRange, KeyValue};
use super::request::{
    Compare, CompareOperand, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};

/// What execution needs to read from the store.
pub trait ReadView {
    /// The store's current revision.
    fn current_revision(&self) -> i64;
    /// The compaction point (-1 before the first compaction).
    fn compact_revision(&self) -> i64;
    /// Live pairs in `range` at `revision` (<= current), ascending by key.
    fn range_at(&self, range: &KeyRange, revision: i64) -> Vec<KeyValue>;
    /// Whether a lease exists.
    fn lease_exists(&self, lease: i64) -> bool;
}

/// One change a write makes: the pair after a put, or `None` for a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: Bytes,
    /// The new pair (its `mod_revision` is the write's revision), or `None` if deleted.
    pub pair: Option<KeyValue>,
}

/// Builds a range response from the pairs in the range (ascending by key) as etcd's
/// `executeRange` does: filters, then sort, then limit; `count` ignores both.
pub fn assemble_range(
    request: &RangeRequest,
    mut pairs: Vec<KeyValue>,
    count: usize,
    header_revision: i64,
) -> RangeResponse {
    if request.count_only {
        return RangeResponse {
            header: ResponseHeader::at(header_revision),
            kvs: Vec::new(),
            more: false,
            count: count as i64,
        };
    }
    let (min_mod, max_mod) = (request.min_mod_revision, request.max_mod_revision);
    let (min_create, max_create) = (request.min_create_revision, request.max_create_revision);
    pairs.retain(|pair| {
        !(max_mod != 0 && pair.mod_revision > max_mod
            || min_mod != 0 && pair.mod_revision < min_mod
            || max_create != 0 && pair.create_revision > max_create
            || min_create != 0 && pair.create_revision < min_create)
    });
    let order = match (request.sort_target, request.sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    if order != SortOrder::None {
        let target = request.sort_target;
        // Stable, so pairs equal on the target stay in key order.
        pairs.sort_by(|a, b| {
            let ordering = compare_on(target, a, b);
            if order == SortOrder::Descend {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let mut more = false;
    if request.limit > 0 && pairs.len() as i64 > request.limit {
        pairs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        for pair in &mut pairs {
            pair.value = Bytes::new();
        }
    }
    RangeResponse {
        header: ResponseHeader::at(header_revision),
        kvs: pairs,
        more,
        count: count as i64,
    }
}

fn compare_on(target: SortTarget, a: &KeyValue, b: &KeyValue) -> Ordering {
    match target {
        SortTarget::Key | SortTarget::Unknown(_) => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}

/// How many pairs each shard must send for a range: without sorting or filters only the first
/// `limit + 1` keys can be answered (one more tells `more`), with count-only none; otherwise all.
/// Each shard still reports its full count.
pub fn shard_read_limit(request: &RangeRequest) -> Option<usize> {
    let plain = matches!(
        (request.sort_order, request.sort_target),
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key)
    ) && request.min_mod_revision == 0
        && request.max_mod_revision == 0
        && request.min_create_revision == 0
        && request.max_create_revision == 0;
    if request.count_only {
        Some(0)
    } else if plain && request.limit > 0 {
        Some(request.limit as usize + 1)
    } else {
        None
    }
}

/// The revision a top-level range reads at, or etcd's error (`rangeKeys`).
pub fn resolve_read_revision(requested: i64, current: i64, compacted: i64) -> Result<i64, KvError> {
    if requested > current {
        return Err(KvError::FutureRevision);
    }
    let revision = if requested <= 0 { current } else { requested };
    if revision < compacted {
        return Err(KvError::Compacted);
    }
    Ok(revision)
}

/// Executes a range outside any txn.
pub fn execute_range<V: ReadView>(
    view: &V,
    request: &RangeRequest,
) -> Result<RangeResponse, KvError> {
    let current = view.current_revision();
    let revision = resolve_read_revision(request.revision, current, view.compact_revision())?;
    let range = KeyRange::from_request(&request.key, &request.range_end);
    let pairs = view.range_at(&range, revision);
    let count = pairs.len();
    Ok(assemble_range(request, pairs, count, current))
}

/// Executes a put; returns its response and changes.
pub fn execute_put<V: ReadView>(
    view: &V,
    request: &PutRequest,
) -> Result<(PutResponse, Vec<Change>), KvError> {
    let mut write = Write::new(view);
    check_put_preconditions(view, request)?;
    let response = write.put(request)?;
    Ok((response, write.changes))
}

/// Executes a delete; returns its response and changes.
pub fn execute_delete<V: ReadView>(
    view: &V,
    request: &DeleteRangeRequest,
) -> Result<(DeleteRangeResponse, Vec<Change>), KvError> {
    let mut write = Write::new(view);
    let response = write.delete(request);
    Ok((response, write.changes))
}

/// Executes a txn; returns its response and changes (none for a read-only outcome).
pub fn execute_txn<V: ReadView>(
    view: &V,
    request: &TxnRequest,
) -> Result<(TxnResponse, Vec<Change>), KvError> {
    let mut path = Vec::new();
    compare_path(view, request, &mut path);
    let mut check_path = path.iter().copied();
    check_txn_preconditions(view, request, &mut check_path)?;
    let mut write = Write::new(view);
    let mut run_path = path.iter().copied();
    let mut response = write.txn(request, &mut run_path)?;
    response.header.revision = write.header_revision();
    Ok((response, write.changes))
}

/// Evaluates the compares of `txn` and of the nested txns on the chosen path, in pre-order,
/// against the state before the txn.
fn compare_path<V: ReadView>(view: &V, txn: &TxnRequest, path: &mut Vec<bool>) {
    let succeeded = txn.compare.iter().all(|compare| holds(view, compare));
    path.push(succeeded);
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    for op in ops {
        if let RequestOp::Txn(nested) = op {
            compare_path(view, nested, path);
        }
    }
}

/// etcd's `applyCompare`: every key in the range must satisfy the compare; an absent key
/// compares as all zeros, except that a value compare on it always fails.
fn holds<V: ReadView>(view: &V, compare: &Compare) -> bool {
    let range = KeyRange::from_request(&compare.key, &compare.range_end);
    let pairs = view.range_at(&range, view.current_revision());
    if pairs.is_empty() {
        if compare.target == CompareTarget::Value {
            return false;
        }
        return compare_pair(compare, &KeyValue::default());
    }
    pairs.iter().all(|pair| compare_pair(compare, pair))
}

fn compare_pair(compare: &Compare, pair: &KeyValue) -> bool {
    let number = |wanted: Option<i64>, have: i64| have.cmp(&wanted.unwrap_or(0));
    let ordering = match (compare.target, &compare.operand) {
        (CompareTarget::Value, CompareOperand::Value(value)) => {
            pair.value.as_ref().cmp(value.as_ref())
        }
        (CompareTarget::Value, _) => pair.value.as_ref().cmp(&[][..]),
        (CompareTarget::Version, operand) => number(
            matches!(operand, CompareOperand::Version(_)).then(|| operand_number(operand)),
            pair.version,
        ),
        (CompareTarget::Create, operand) => number(
            matches!(operand, CompareOperand::Create(_)).then(|| operand_number(operand)),
            pair.create_revision,
        ),
        (CompareTarget::Mod, operand) => number(
            matches!(operand, CompareOperand::Mod(_)).then(|| operand_number(operand)),
            pair.mod_revision,
        ),
        (CompareTarget::Lease, operand) => number(
            matches!(operand, CompareOperand::Lease(_)).then(|| operand_number(operand)),
            pair.lease,
        ),
        (CompareTarget::Unknown(_), _) => Ordering::Equal,
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
        CompareResult::Unknown(_) => true,
    }
}

fn operand_number(operand: &CompareOperand) -> i64 {
    match operand {
        CompareOperand::Version(n)
        | CompareOperand::Create(n)
        | CompareOperand::Mod(n)
        | CompareOperand::Lease(n) => *n,
        CompareOperand::Value(_) | CompareOperand::None => 0,
    }
}

/// etcd's `checkRequestPut` against the state before the request.
fn check_put_preconditions<V: ReadView>(view: &V, put: &PutRequest) -> Result<(), KvError> {
    if (put.ignore_value || put.ignore_lease)
        && view
            .range_at(&KeyRange::Single(put.key.clone()), view.current_revision())
            .is_empty()
    {
        return Err(KvError::KeyNotFound);
    }
    if put.lease != 0 && !view.lease_exists(put.lease) {
        return Err(KvError::LeaseNotFound);
    }
    Ok(())
}

/// etcd's `checkTxn`: the ops on the chosen path are checked before anything runs.
fn check_txn_preconditions<V: ReadView>(
    view: &V,
    txn: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<(), KvError> {
    let succeeded = path.next().unwrap_or(false);
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    for op in ops {
        match op {
            RequestOp::Txn(nested) => check_txn_preconditions(view, nested, path)?,
            RequestOp::Put(put) => check_put_preconditions(view, put)?,
            RequestOp::Range(range) => {
                if range.revision != 0 {
                    if range.revision > view.current_revision() {
                        return Err(KvError::FutureRevision);
                    }
                    if range.revision < view.compact_revision() {
                        return Err(KvError::Compacted);
                    }
                }
            }
            RequestOp::DeleteRange(_) => {}
            RequestOp::Empty => return Err(KvError::KeyNotFound),
        }
    }
    Ok(())
}

/// The state of one write request while it executes: the changes so far, and the keys they
/// touched, so that later reads in the same request see them.
struct Write<'a, V> {
    view: &'a V,
    begin: i64,
    changes: Vec<Change>,
    touched: BTreeMap<Bytes, Option<KeyValue>>,
}

impl<'a, V: ReadView> Write<'a, V> {
    fn new(view: &'a V) -> Write<'a, V> {
        Write {
            view,
            begin: view.current_revision(),
            changes: Vec::new(),
            touched: BTreeMap::new(),
        }
    }

    /// The revision a read inside the request sees as current: the write's own once it changed
    /// something.
    fn header_revision(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    /// Live pairs in `range` including this request's changes.
    fn latest(&self, range: &KeyRange) -> Vec<KeyValue> {
        let base = self.view.range_at(range, self.begin);
        if self.touched.is_empty() {
            return base;
        }
        let mut merged: BTreeMap<Bytes, KeyValue> = base
            .into_iter()
            .map(|pair| (pair.key.clone(), pair))
            .collect();
        for (key, pair) in &self.touched {
            if !range.contains(key) {
                continue;
            }
            match pair {
                Some(pair) => merged.insert(key.clone(), pair.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_values().collect()
    }

    fn record(&mut self, key: Bytes, pair: Option<KeyValue>) {
        self.touched.insert(key.clone(), pair.clone());
        self.changes.push(Change { key, pair });
    }

    fn put(&mut self, request: &PutRequest) -> Result<PutResponse, KvError> {
        let previous = self
            .latest(&KeyRange::Single(request.key.clone()))
            .into_iter()
            .next();
        if (request.ignore_value || request.ignore_lease) && previous.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let revision = self.begin + 1;
        let value = match (&previous, request.ignore_value) {
            (Some(previous), true) => previous.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (&previous, request.ignore_lease) {
            (Some(previous), true) => previous.lease,
            _ => request.lease,
        };
        let pair = KeyValue {
            key: request.key.clone(),
            create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.as_ref().map_or(0, |p| p.version) + 1,
            value,
            lease,
        };
        self.record(request.key.clone(), Some(pair));
        Ok(PutResponse {
            header: ResponseHeader::at(revision),
            prev_kv: if request.prev_kv { previous } else { None },
        })
    }

    fn delete(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let range = KeyRange::from_request(&request.key, &request.range_end);
        let doomed = self.latest(&range);
        for pair in &doomed {
            self.record(pair.key.clone(), None);
        }
        DeleteRangeResponse {
            header: ResponseHeader::at(self.header_revision()),
            deleted: doomed.len() as i64,
            prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        let current = self.header_revision();
        let revision =
            resolve_read_revision(request.revision, current, self.view.compact_revision())?;
        let range = KeyRange::from_request(&request.key, &request.range_end);
        let pairs = if revision > self.begin {
            self.latest(&range)
        } else {
            self.view.range_at(&range, revision)
        };
        let count = pairs.len();
        Ok(assemble_range(request, pairs, count, current))
    }

    fn txn(
        &mut self,
        txn: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse, KvError> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(range) => ResponseOp::Range(self.range(range)?),
                RequestOp::Put(put) => ResponseOp::Put(self.put(put)?),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete(delete)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.txn(nested, path)?),
                RequestOp::Empty => return Err(KvError::KeyNotFound),
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader::default(),
            succeeded,
            responses,
        })
    }
}
