//! The clients of a simulation: each issues one operation at a time (put, linearizable get,
//! or a compare-and-swap txn) on a few shared keys, through a member it picks, and records
//! what it asked and what it was told for the linearizability checker. Each also holds a
//! lease now and then: grants it, keeps it alive, attaches a key of its own to it, revokes or
//! abandons it (lease keys are not in the linearizability history: an expiry deletes them
//! without any client asking; the lease checker watches them instead).

use bytes::Bytes;

use crate::lease::LeaseRequest;
use crate::linearize::{KvOp, Operation, TxnOutcome, TxnStep};
use crate::mvcc::request::{
    Compare, CompareOperand, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp,
    ResponseOp, TxnRequest, WriteRequest, WriteResponse,
};
use crate::replica::random::Random;

/// Keys the clients share (few, so operations contend).
pub const KEYS: u64 = 4;

/// What a client sends a member.
#[derive(Clone, Debug)]
pub enum Call {
    /// A write, through the log.
    Write(WriteRequest),
    /// A linearizable read.
    Read(RangeRequest),
}

/// What a member told a client about its operation.
#[derive(Clone, Copy, Debug)]
pub enum Told<'a> {
    /// A write's response.
    Written(&'a WriteResponse),
    /// A read's response.
    Read(&'a crate::mvcc::request::RangeResponse),
}

/// One operation a client makes.
#[derive(Clone, Debug)]
pub enum ClientOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    /// If `key` holds `expected` (`None`: absent), put `value` there and read `other`;
    /// otherwise read `key`.
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        other: Vec<u8>,
    },
    /// Grant lease `id` for `ttl` seconds.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    /// Renew lease `id` (a keep-alive).
    LeaseKeepAlive {
        id: i64,
    },
    /// Revoke lease `id`.
    LeaseRevoke {
        id: i64,
    },
    /// Put `key` attached to lease `id`.
    LeasePut {
        key: Vec<u8>,
        id: i64,
        value: Vec<u8>,
    },
}

fn key(n: u64) -> Vec<u8> {
    format!("k{n}").into_bytes()
}

impl ClientOp {
    /// A random operation of client `client`, its `count`th; `seen` is the last value it
    /// read of each key, `lease` the lease it holds.
    pub fn random(
        random: &mut Random,
        client: u64,
        count: u64,
        seen: &[Option<Vec<u8>>],
        lease: Option<i64>,
    ) -> ClientOp {
        let k = random.below(0, KEYS);
        let value = format!("c{client}-{count}").into_bytes();
        let roll = random.below(0, 100);
        match lease {
            None if roll < 6 => {
                return ClientOp::LeaseGrant {
                    id: ((client as i64 + 1) << 32) | count as i64,
                    ttl: random.below(2, 5) as i64,
                }
            }
            Some(id) if roll < 12 => return ClientOp::LeaseKeepAlive { id },
            Some(id) if roll < 16 => {
                return ClientOp::LeasePut {
                    key: format!("lease-{client}").into_bytes(),
                    id,
                    value,
                }
            }
            Some(id) if roll < 17 => return ClientOp::LeaseRevoke { id },
            _ => {}
        }
        match random.below(0, 10) {
            0..=3 => ClientOp::Put { key: key(k), value },
            4..=7 => ClientOp::Get { key: key(k) },
            _ => ClientOp::Cas {
                key: key(k),
                expected: seen.get(k as usize).cloned().flatten(),
                value,
                other: key((k + 1) % KEYS),
            },
        }
    }

    /// True for a lease operation (checked by the lease checker, not for linearizability).
    pub fn is_lease(&self) -> bool {
        matches!(
            self,
            ClientOp::LeaseGrant { .. }
                | ClientOp::LeaseKeepAlive { .. }
                | ClientOp::LeaseRevoke { .. }
                | ClientOp::LeasePut { .. }
        )
    }

    /// The request to send.
    pub fn request(&self) -> Call {
        match self {
            ClientOp::LeaseGrant { id, ttl } => {
                Call::Write(WriteRequest::Lease(LeaseRequest::Grant {
                    id: *id,
                    ttl: *ttl,
                }))
            }
            ClientOp::LeaseKeepAlive { id } => {
                Call::Write(WriteRequest::Lease(LeaseRequest::Renew { ids: vec![*id] }))
            }
            ClientOp::LeaseRevoke { id } => {
                Call::Write(WriteRequest::Lease(LeaseRequest::Revoke { id: *id }))
            }
            ClientOp::LeasePut { key, id, value } => Call::Write(WriteRequest::Put(PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
                lease: *id,
                ..Default::default()
            })),
            ClientOp::Put { key, value } => Call::Write(WriteRequest::Put(PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
                ..Default::default()
            })),
            ClientOp::Get { key } => Call::Read(RangeRequest {
                key: Bytes::from(key.clone()),
                ..Default::default()
            }),
            ClientOp::Cas {
                key,
                expected,
                value,
                other,
            } => {
                let compare = match expected {
                    Some(expected) => Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Value,
                        key: Bytes::from(key.clone()),
                        range_end: Bytes::new(),
                        operand: CompareOperand::Value(Bytes::from(expected.clone())),
                    },
                    None => Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Create,
                        key: Bytes::from(key.clone()),
                        range_end: Bytes::new(),
                        operand: CompareOperand::Create(0),
                    },
                };
                let range = |k: &Vec<u8>| {
                    RequestOp::Range(RangeRequest {
                        key: Bytes::from(k.clone()),
                        ..Default::default()
                    })
                };
                Call::Write(WriteRequest::Txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: Bytes::from(key.clone()),
                            value: Bytes::from(value.clone()),
                            ..Default::default()
                        }),
                        range(other),
                    ],
                    failure: vec![range(key)],
                }))
            }
        }
    }

    /// The key whose value a successful answer tells, with that value.
    pub fn learned(&self, op: &KvOp) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        match (self, op) {
            (ClientOp::Get { key }, KvOp::Get { value, .. }) => Some((key.clone(), value.clone())),
            (ClientOp::Put { key, value }, _) => Some((key.clone(), Some(value.clone()))),
            (
                ClientOp::Cas { key, value, .. },
                KvOp::Txn {
                    outcome: Some(o), ..
                },
            ) => {
                if o.succeeded {
                    Some((key.clone(), Some(value.clone())))
                } else {
                    Some((key.clone(), o.reads.first().cloned().flatten()))
                }
            }
            _ => None,
        }
    }

    /// The operation as the checker sees it, given its answer: `Ok(None)` for a write whose
    /// outcome is unknown; `Err` when the answer does not fit the request (a bug).
    pub fn as_checked(&self, answer: Option<Told<'_>>) -> Result<KvOp, String> {
        let value_of = |kvs: &[crate::mvcc::kv::KeyValue]| kvs.first().map(|kv| kv.value.to_vec());
        match (self, answer) {
            (ClientOp::Put { key, value }, _) => Ok(KvOp::Put {
                key: key.clone(),
                value: value.clone(),
            }),
            (ClientOp::Get { key }, Some(Told::Read(range))) => Ok(KvOp::Get {
                key: key.clone(),
                value: value_of(&range.kvs),
            }),
            (
                ClientOp::Cas {
                    key,
                    expected,
                    value,
                    other,
                },
                answer,
            ) => {
                let outcome = match answer {
                    None => None,
                    Some(Told::Written(WriteResponse::Txn(txn))) => {
                        let reads = txn
                            .responses
                            .iter()
                            .filter_map(|r| match r {
                                ResponseOp::Range(range) => Some(value_of(&range.kvs)),
                                _ => None,
                            })
                            .collect();
                        Some(TxnOutcome {
                            succeeded: txn.succeeded,
                            reads,
                        })
                    }
                    Some(other) => return Err(format!("a txn answered {other:?}")),
                };
                Ok(KvOp::Txn {
                    compare: vec![(key.clone(), expected.clone())],
                    then: vec![
                        TxnStep::Put {
                            key: key.clone(),
                            value: value.clone(),
                        },
                        TxnStep::Get { key: other.clone() },
                    ],
                    otherwise: vec![TxnStep::Get { key: key.clone() }],
                    outcome,
                })
            }
            (ClientOp::Get { .. }, other) => Err(format!("a get answered {other:?}")),
            (lease, _) => Err(format!("{lease:?} is not checked for linearizability")),
        }
    }
}

/// A finished operation, for the checker.
pub fn operation(call: u64, ret: Option<u64>, op: KvOp) -> Operation {
    Operation { call, ret, op }
}

/// One operation, readably: when it was called and returned (simulated ms) and what it did.
pub fn describe(operation: &Operation) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let value = |v: &Option<Vec<u8>>| v.as_deref().map_or("(absent)".to_string(), text);
    let ms = |ns: u64| ns as f64 / 1e6;
    let ret = operation
        .ret
        .map_or("never (unknown outcome)".to_string(), |r| {
            format!("{:.3}ms", ms(r))
        });
    let what = match &operation.op {
        KvOp::Put { key, value: v } => format!("put {}={}", text(key), text(v)),
        KvOp::Get { key, value: v } => format!("get {} -> {}", text(key), value(v)),
        KvOp::Txn {
            compare,
            then,
            outcome,
            ..
        } => {
            let (key, expected) = &compare[0];
            let put = then.iter().find_map(|step| match step {
                TxnStep::Put { value, .. } => Some(text(value)),
                _ => None,
            });
            format!(
                "cas {} if {} then {} -> {:?}",
                text(key),
                value(expected),
                put.unwrap_or_default(),
                outcome
                    .as_ref()
                    .map(|o| (o.succeeded, o.reads.iter().map(value).collect::<Vec<_>>()))
            )
        }
    };
    format!("[{:.3}ms .. {ret}] {what}", ms(operation.call))
}
