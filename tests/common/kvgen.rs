//! Random etcd KV requests for tests: a small key alphabet so requests collide, and a share of
//! invalid input (empty keys, bad sort options, empty ops, conflicting flags).

use bytes::Bytes;
use lode::mvcc::kv::prefix_range_end;
use lode::mvcc::request::*;

use super::Rng;

/// Random requests drawn from `Rng`.
pub struct Gen(pub Rng);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(Rng(seed | 1))
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn key(&mut self) -> Bytes {
        const KEYS: [&[u8]; 9] = [
            b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\x00", b"\xff", b"zz",
        ];
        Bytes::from_static(KEYS[self.below(KEYS.len() as u64) as usize])
    }
    pub fn value(&mut self) -> Bytes {
        const VALUES: [&[u8]; 5] = [b"", b"v", b"w", b"vv", b"\x00x"];
        Bytes::from_static(VALUES[self.below(VALUES.len() as u64) as usize])
    }
    pub fn range_end(&mut self, key: &Bytes) -> Bytes {
        match self.below(5) {
            0 | 1 => Bytes::new(),
            2 => Bytes::from_static(&[0]),
            3 => prefix_range_end(key),
            _ => self.key(),
        }
    }
    pub fn revision(&mut self, current: i64) -> i64 {
        match self.below(4) {
            0 => 0,
            1 => current - self.below(4) as i64 + 1,
            2 => -(self.below(2) as i64),
            _ => 1 + self.below(current as u64 + 1) as i64,
        }
    }
    pub fn range(&mut self, current: i64) -> RangeRequest {
        let key = if self.chance(2) {
            Bytes::new()
        } else {
            self.key()
        };
        let range_end = self.range_end(&key);
        RangeRequest {
            key,
            range_end,
            limit: if self.chance(30) {
                self.below(4) as i64
            } else {
                0
            },
            revision: if self.chance(40) {
                self.revision(current)
            } else {
                0
            },
            sort_order: SortOrder::from_i32(if self.chance(2) {
                9
            } else {
                self.below(3) as i32
            }),
            sort_target: SortTarget::from_i32(self.below(5) as i32),
            serializable: self.chance(50),
            keys_only: self.chance(15),
            count_only: self.chance(10),
            min_mod_revision: if self.chance(10) {
                self.revision(current).max(0)
            } else {
                0
            },
            max_mod_revision: if self.chance(10) {
                self.revision(current).max(0)
            } else {
                0
            },
            min_create_revision: if self.chance(10) {
                self.revision(current).max(0)
            } else {
                0
            },
            max_create_revision: if self.chance(10) {
                self.revision(current).max(0)
            } else {
                0
            },
        }
    }
    pub fn put(&mut self) -> PutRequest {
        let ignore_value = self.chance(8);
        PutRequest {
            key: if self.chance(2) {
                Bytes::new()
            } else {
                self.key()
            },
            value: if ignore_value && !self.chance(20) {
                Bytes::new()
            } else {
                self.value()
            },
            lease: if self.chance(6) { self.lease_id() } else { 0 },
            prev_kv: self.chance(40),
            ignore_value,
            ignore_lease: self.chance(5),
        }
    }
    /// One of the two lease IDs requests name (`lease_change` grants and revokes them).
    pub fn lease_id(&mut self) -> i64 {
        7 + self.below(2) as i64
    }
    /// A grant (long TTL: nothing expires during a test) or revocation of one of the two
    /// leases, for stores that have leases.
    pub fn lease_change(&mut self) -> WriteRequest {
        let id = self.lease_id();
        WriteRequest::Lease(if self.chance(50) {
            lode::lease::LeaseRequest::Grant { id, ttl: 3600 }
        } else {
            lode::lease::LeaseRequest::Revoke { id }
        })
    }
    pub fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        DeleteRangeRequest {
            range_end: self.range_end(&key),
            key,
            prev_kv: self.chance(50),
        }
    }
    pub fn compare(&mut self, current: i64) -> Compare {
        let key = self.key();
        let target = CompareTarget::from_i32(if self.chance(2) {
            8
        } else {
            self.below(5) as i32
        });
        let number = self.revision(current).max(0);
        let operand = match (self.chance(90), target) {
            (true, CompareTarget::Version) => CompareOperand::Version(self.below(4) as i64),
            (true, CompareTarget::Create) => CompareOperand::Create(number),
            (true, CompareTarget::Mod) => CompareOperand::Mod(number),
            (true, CompareTarget::Value) => CompareOperand::Value(self.value()),
            (true, CompareTarget::Lease) => CompareOperand::Lease(0),
            _ => CompareOperand::None,
        };
        Compare {
            result: CompareResult::from_i32(if self.chance(2) {
                6
            } else {
                self.below(4) as i32
            }),
            target,
            range_end: if self.chance(20) {
                self.range_end(&key)
            } else {
                Bytes::new()
            },
            key,
            operand,
        }
    }
    pub fn ops(&mut self, current: i64, depth: u32) -> Vec<RequestOp> {
        (0..self.below(4))
            .map(|_| match self.below(if depth < 2 { 10 } else { 9 }) {
                0..=2 => RequestOp::Range(self.range(current)),
                3..=5 => RequestOp::Put(self.put()),
                6..=7 => RequestOp::DeleteRange(self.delete()),
                8 if self.chance(5) => RequestOp::Empty,
                8 => RequestOp::Put(self.put()),
                _ => RequestOp::Txn(self.txn(current, depth + 1)),
            })
            .collect()
    }
    pub fn txn(&mut self, current: i64, depth: u32) -> TxnRequest {
        TxnRequest {
            compare: (0..self.below(3)).map(|_| self.compare(current)).collect(),
            success: self.ops(current, depth),
            failure: self.ops(current, depth),
        }
    }
    pub fn write(&mut self, current: i64, compacted: i64) -> WriteRequest {
        match self.below(20) {
            0..=6 => WriteRequest::Put(self.put()),
            7..=9 => WriteRequest::DeleteRange(self.delete()),
            10..=17 => WriteRequest::Txn(self.txn(current, 0)),
            _ => WriteRequest::Compact(CompactionRequest {
                revision: compacted.max(0)
                    + self.below((current - compacted.max(0) + 2) as u64) as i64,
                physical: self.chance(50),
            }),
        }
    }
}
