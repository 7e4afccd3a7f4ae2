//! Model-based test of etcd's KV semantics: random puts, ranges, deletes, txns and compactions
//! run against a reference model written straight from etcd's rules (one full map per
//! revision) and against lode's sharded store with one shard and with several. Every response
//! field and every error must match.

use std::collections::BTreeMap;

use bytes::Bytes;
use lode::mvcc::error::KvError;
use lode::mvcc::kv::KeyValue;
use lode::mvcc::request::*;
use lode::mvcc::validate::{self, DEFAULT_MAX_TXN_OPS};
use lode::mvcc::ShardedKv;
use proptest::prelude::*;

mod common;
use common::kvgen::Gen;

type State = BTreeMap<Bytes, KeyValue>;

/// The reference: the whole keyspace after every revision.
struct Model {
    /// `states[r - 1]` is the keyspace at revision r.
    states: Vec<State>,
    compacted: i64,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![State::new()],
            compacted: -1,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64
    }

    fn at(&self, revision: i64) -> &State {
        &self.states[revision as usize - 1]
    }

    fn select(state: &State, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        state
            .values()
            .filter(|kv| in_range(&kv.key, start, end))
            .cloned()
            .collect()
    }

    fn answer_range(request: &RangeRequest, state: &State, header: i64) -> RangeResponse {
        let all = Model::select(state, &request.key, &request.range_end);
        let count = all.len() as i64;
        if request.count_only {
            return RangeResponse {
                header: ResponseHeader::at(header),
                kvs: vec![],
                more: false,
                count,
            };
        }
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| {
                request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision
            })
            .filter(|kv| {
                request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision
            })
            .filter(|kv| {
                request.min_create_revision == 0
                    || kv.create_revision >= request.min_create_revision
            })
            .filter(|kv| {
                request.max_create_revision == 0
                    || kv.create_revision <= request.max_create_revision
            })
            .collect();
        let descending = request.sort_order == SortOrder::Descend;
        let sorting =
            request.sort_order != SortOrder::None || request.sort_target != SortTarget::Key;
        if sorting {
            kvs.sort_by(|a, b| {
                let o = match request.sort_target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                    SortTarget::Unknown(_) => unreachable!(),
                };
                if descending {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let more = request.limit > 0 && kvs.len() as i64 > request.limit;
        if more {
            kvs.truncate(request.limit as usize);
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
        }
        RangeResponse {
            header: ResponseHeader::at(header),
            kvs,
            more,
            count,
        }
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate::check_range(request)?;
        if request.revision > self.current() {
            return Err(KvError::FutureRevision);
        }
        let revision = if request.revision <= 0 {
            self.current()
        } else {
            request.revision
        };
        if revision < self.compacted {
            return Err(KvError::Compacted);
        }
        Ok(Model::answer_range(
            request,
            self.at(revision),
            self.current(),
        ))
    }

    fn write(&mut self, request: &WriteRequest) -> Result<WriteResponse, KvError> {
        validate::check_write(request, DEFAULT_MAX_TXN_OPS)?;
        if let WriteRequest::Compact(c) = request {
            if c.revision <= self.compacted {
                return Err(KvError::Compacted);
            }
            if c.revision > self.current() {
                return Err(KvError::FutureRevision);
            }
            self.compacted = c.revision;
            return Ok(WriteResponse::Compact(CompactionResponse {
                header: ResponseHeader::at(self.current()),
            }));
        }
        let before = self.at(self.current()).clone();
        let mut run = Run {
            model: self,
            before: before.clone(),
            working: before,
            changed: false,
        };
        let response = match request {
            WriteRequest::Put(put) => {
                run.check_put(put)?;
                WriteResponse::Put(run.put(put)?)
            }
            WriteRequest::DeleteRange(delete) => WriteResponse::DeleteRange(run.delete(delete)),
            WriteRequest::Txn(txn) => {
                let mut path = vec![];
                run.decide(txn, &mut path);
                run.check_path(txn, &mut path.clone().into_iter())?;
                let mut response = run.txn(txn, &mut path.into_iter())?;
                response.header.revision = run.header();
                WriteResponse::Txn(response)
            }
            WriteRequest::Compact(_) => unreachable!(),
            WriteRequest::Lease(_) => unreachable!("the generator makes no lease changes"),
        };
        let (changed, working) = (run.changed, run.working);
        if changed {
            self.states.push(working);
        }
        Ok(response)
    }
}

/// One write request in progress against the model.
struct Run<'a> {
    model: &'a Model,
    before: State,
    working: State,
    changed: bool,
}

impl Run<'_> {
    fn begin(&self) -> i64 {
        self.model.current()
    }

    fn header(&self) -> i64 {
        self.begin() + i64::from(self.changed)
    }

    fn check_put(&self, put: &PutRequest) -> Result<(), KvError> {
        if (put.ignore_value || put.ignore_lease) && !self.before.contains_key(&put.key) {
            return Err(KvError::KeyNotFound);
        }
        if put.lease != 0 {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    fn holds(&self, compare: &Compare) -> bool {
        let kvs = Model::select(&self.before, &compare.key, &compare.range_end);
        let check = |kv: &KeyValue| {
            let o = match compare.target {
                CompareTarget::Value => {
                    let v = match &compare.operand {
                        CompareOperand::Value(v) => v.clone(),
                        _ => Bytes::new(),
                    };
                    kv.value.cmp(&v)
                }
                CompareTarget::Version => kv.version.cmp(&match compare.operand {
                    CompareOperand::Version(n) => n,
                    _ => 0,
                }),
                CompareTarget::Create => kv.create_revision.cmp(&match compare.operand {
                    CompareOperand::Create(n) => n,
                    _ => 0,
                }),
                CompareTarget::Mod => kv.mod_revision.cmp(&match compare.operand {
                    CompareOperand::Mod(n) => n,
                    _ => 0,
                }),
                CompareTarget::Lease => kv.lease.cmp(&match compare.operand {
                    CompareOperand::Lease(n) => n,
                    _ => 0,
                }),
                CompareTarget::Unknown(_) => std::cmp::Ordering::Equal,
            };
            match compare.result {
                CompareResult::Equal => o.is_eq(),
                CompareResult::NotEqual => o.is_ne(),
                CompareResult::Greater => o.is_gt(),
                CompareResult::Less => o.is_lt(),
                CompareResult::Unknown(_) => true,
            }
        };
        if kvs.is_empty() {
            compare.target != CompareTarget::Value && check(&KeyValue::default())
        } else {
            kvs.iter().all(check)
        }
    }

    fn decide(&self, txn: &TxnRequest, path: &mut Vec<bool>) {
        let ok = txn.compare.iter().all(|c| self.holds(c));
        path.push(ok);
        for op in if ok { &txn.success } else { &txn.failure } {
            if let RequestOp::Txn(nested) = op {
                self.decide(nested, path);
            }
        }
    }

    fn check_path(
        &self,
        txn: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<(), KvError> {
        let ok = path.next().unwrap();
        for op in if ok { &txn.success } else { &txn.failure } {
            match op {
                RequestOp::Txn(nested) => self.check_path(nested, path)?,
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::Range(r) if r.revision != 0 => {
                    if r.revision > self.begin() {
                        return Err(KvError::FutureRevision);
                    }
                    if r.revision < self.model.compacted {
                        return Err(KvError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn put(&mut self, put: &PutRequest) -> Result<PutResponse, KvError> {
        let previous = self.working.get(&put.key).cloned();
        if (put.ignore_value || put.ignore_lease) && previous.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let revision = self.begin() + 1;
        let kv = KeyValue {
            key: put.key.clone(),
            create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value: if put.ignore_value {
                previous.as_ref().unwrap().value.clone()
            } else {
                put.value.clone()
            },
            lease: if put.ignore_lease {
                previous.as_ref().unwrap().lease
            } else {
                put.lease
            },
        };
        self.working.insert(put.key.clone(), kv);
        self.changed = true;
        Ok(PutResponse {
            header: ResponseHeader::at(revision),
            prev_kv: previous.filter(|_| put.prev_kv),
        })
    }

    fn delete(&mut self, delete: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed = Model::select(&self.working, &delete.key, &delete.range_end);
        for kv in &doomed {
            self.working.remove(&kv.key);
        }
        self.changed |= !doomed.is_empty();
        DeleteRangeResponse {
            header: ResponseHeader::at(self.header()),
            deleted: doomed.len() as i64,
            prev_kvs: if delete.prev_kv { doomed } else { vec![] },
        }
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        let current = self.header();
        let revision = if request.revision <= 0 {
            current
        } else {
            request.revision
        };
        if revision < self.model.compacted {
            return Err(KvError::Compacted);
        }
        let state = if revision > self.begin() {
            &self.working
        } else {
            self.model.at(revision)
        };
        Ok(Model::answer_range(request, state, current))
    }

    fn txn(
        &mut self,
        txn: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse, KvError> {
        let ok = path.next().unwrap();
        let mut responses = vec![];
        for op in if ok { &txn.success } else { &txn.failure } {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(d)),
                RequestOp::Txn(t) => ResponseOp::Txn(self.txn(t, path)?),
                RequestOp::Empty => unreachable!("validation rejects empty ops"),
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader::at(0),
            succeeded: ok,
            responses,
        })
    }
}

fn run_against_model(seed: u64, steps: usize) {
    let mut gen = Gen::new(seed | 1);
    let mut model = Model::new();
    let mut stores = [ShardedKv::new(1), ShardedKv::new(3)];
    for step in 0..steps {
        if gen.chance(40) {
            let request = gen.range(model.current());
            let expected = model.range(&request);
            for store in &stores {
                assert_eq!(
                    store.range(&request),
                    expected,
                    "seed {seed} step {step} shards {}: {request:?}",
                    store.shard_count()
                );
            }
        } else {
            let request = gen.write(model.current(), model.compacted);
            let expected = model.write(&request);
            for store in &mut stores {
                assert_eq!(
                    store.write(&request, DEFAULT_MAX_TXN_OPS),
                    expected,
                    "seed {seed} step {step} shards {}: {request:?}",
                    store.shard_count()
                );
                assert_eq!(store.current_revision(), model.current());
            }
        }
    }
    // Every revision still held reads the same in the model and the stores.
    for revision in model.compacted.max(1)..=model.current() {
        let everything = RangeRequest {
            key: Bytes::from_static(&[0]),
            range_end: Bytes::from_static(&[0]),
            revision,
            ..Default::default()
        };
        let expected = model.range(&everything);
        for store in &stores {
            assert_eq!(
                store.range(&everything),
                expected,
                "seed {seed} revision {revision}"
            );
        }
    }
}

proptest! {
    // PROPTEST_CASES=N overrides the default of 256 cases, for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        .. ProptestConfig::default()
    })]

    #[test]
    fn sharded_store_matches_the_reference_model(seed in any::<u64>(), steps in 1usize..300) {
        run_against_model(seed, steps);
    }
}

#[test]
fn revisions_versions_and_errors_follow_etcd() {
    let mut kv = ShardedKv::new(2);
    let key = Bytes::from_static(b"k");
    assert_eq!(kv.current_revision(), 1, "an empty store is at revision 1");
    let put = |value: &'static str| {
        WriteRequest::Put(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(value.as_bytes()),
            prev_kv: true,
            ..Default::default()
        })
    };
    kv.write(&put("1"), 128).unwrap();
    kv.write(&put("2"), 128).unwrap();
    let pair = kv.get(&key).unwrap().clone();
    assert_eq!(
        (pair.create_revision, pair.mod_revision, pair.version),
        (2, 3, 2)
    );
    let delete = WriteRequest::DeleteRange(DeleteRangeRequest {
        key: key.clone(),
        ..Default::default()
    });
    kv.write(&delete, 128).unwrap();
    assert_eq!(kv.current_revision(), 4);
    // Deleting nothing does not bump the revision.
    let WriteResponse::DeleteRange(nothing) = kv.write(&delete, 128).unwrap() else {
        panic!()
    };
    assert_eq!(
        (
            nothing.deleted,
            nothing.header.revision,
            kv.current_revision()
        ),
        (0, 4, 4)
    );
    kv.write(&put("3"), 128).unwrap();
    let pair = kv.get(&key).unwrap().clone();
    assert_eq!(
        (pair.create_revision, pair.version),
        (5, 1),
        "re-created after a delete"
    );
    let compact = |revision| {
        WriteRequest::Compact(CompactionRequest {
            revision,
            physical: false,
        })
    };
    assert_eq!(kv.write(&compact(9), 128), Err(KvError::FutureRevision));
    kv.write(&compact(3), 128).unwrap();
    assert_eq!(kv.write(&compact(3), 128), Err(KvError::Compacted));
    let old = RangeRequest {
        key: key.clone(),
        revision: 2,
        ..Default::default()
    };
    assert_eq!(
        kv.range(&old).unwrap_err().to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let at_compaction = RangeRequest {
        revision: 3,
        ..old.clone()
    };
    let response = kv.range(&at_compaction).unwrap();
    assert_eq!(response.kvs[0].value, Bytes::from_static(b"2"));
    assert_eq!(
        response.header.revision, 5,
        "a range's header holds the current revision"
    );
    let future = RangeRequest { revision: 6, ..old };
    assert_eq!(
        kv.range(&future).unwrap_err().to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}
