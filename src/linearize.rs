//! Whether a history of operations on a key-value store is linearizable: some order of the
//! operations, each placed between its call and its return, in which every answer is the one
//! a single copy of the store would give (Wing and Gong's search, with Lowe's cache of
//! (operations placed, state) pairs already tried, as Porcupine does).
//!
//! ```text
//!   history ──► apart by the keys they touch (operations sharing no key, directly or through
//!          │    others, never constrain each other: union-find over keys)
//!          └──► each part, depth-first: place next any operation no unplaced one returned
//!               before it was called; keep it if a single store would have answered so;
//!               backtrack otherwise; a (placed set, state) seen before is not searched again
//! ```
//!
//! An operation whose outcome is unknown (a write or txn that timed out) has no return: it may
//! take effect at any point after its call, or never. Pure: time comes in the history.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A store's contents: key to value (absent keys have none).
pub type Store = BTreeMap<Vec<u8>, Vec<u8>>;

/// What an operation asked and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// A put of `value` at `key`; its answer is that it was done (or unknown).
    Put { key: Vec<u8>, value: Vec<u8> },
    /// A read of `key` that returned `value` (`None`: the key did not exist).
    Get {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// etcd's txn reduced to values: if every compare (key, expected value, `None` for absent)
    /// held, `then` ran, otherwise `otherwise`; `outcome` is what it answered (`None`: unknown,
    /// it timed out).
    Txn {
        compare: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        then: Vec<TxnStep>,
        otherwise: Vec<TxnStep>,
        outcome: Option<TxnOutcome>,
    },
}

/// One operation of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnStep {
    Put { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
}

/// A txn's answer: which branch ran, and what its reads returned, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    pub succeeded: bool,
    pub reads: Vec<Option<Vec<u8>>>,
}

impl KvOp {
    /// The (key, value) pairs it writes, in any branch.
    fn written(&self) -> Vec<(&[u8], &[u8])> {
        match self {
            KvOp::Put { key, value } => vec![(key, value)],
            KvOp::Get { .. } => Vec::new(),
            KvOp::Txn {
                then, otherwise, ..
            } => then
                .iter()
                .chain(otherwise)
                .filter_map(|step| match step {
                    TxnStep::Put { key, value } => Some((key.as_slice(), value.as_slice())),
                    TxnStep::Get { .. } => None,
                })
                .collect(),
        }
    }

    /// The (key, value) pairs it saw: a get's answer, a txn's compares and the reads of the
    /// branch it took (absent values are no pair).
    fn observed(&self) -> Vec<(&[u8], &[u8])> {
        let mut seen: Vec<(&[u8], &Option<Vec<u8>>)> = Vec::new();
        match self {
            KvOp::Put { .. } => {}
            KvOp::Get { key, value } => seen.push((key, value)),
            KvOp::Txn {
                compare,
                then,
                otherwise,
                outcome,
            } => {
                seen.extend(compare.iter().map(|(key, value)| (key.as_slice(), value)));
                if let Some(outcome) = outcome {
                    // Each get of the branch taken with the read it was answered.
                    let mut told = outcome.reads.iter();
                    seen.extend(walk_branch(
                        then,
                        otherwise,
                        outcome.succeeded,
                        |step| match step {
                            TxnStep::Get { .. } => told.next(),
                            TxnStep::Put { .. } => None,
                        },
                    ));
                }
            }
        }
        seen.into_iter()
            .filter_map(|(key, value)| value.as_deref().map(|value| (key, value)))
            .collect()
    }

    /// Every key it touches.
    fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::Put { key, .. } | KvOp::Get { key, .. } => vec![key],
            KvOp::Txn {
                compare,
                then,
                otherwise,
                ..
            } => compare
                .iter()
                .map(|(key, _)| key.as_slice())
                .chain(then.iter().chain(otherwise).map(|step| match step {
                    TxnStep::Put { key, .. } | TxnStep::Get { key } => key.as_slice(),
                }))
                .collect(),
        }
    }

    /// The store after it, or `None` if its answer cannot follow `store`.
    fn apply(&self, store: &Store) -> Option<Store> {
        match self {
            KvOp::Put { key, value } => {
                let mut after = store.clone();
                after.insert(key.clone(), value.clone());
                Some(after)
            }
            KvOp::Get { key, value } => (store.get(key) == value.as_ref()).then(|| store.clone()),
            KvOp::Txn {
                compare,
                then,
                otherwise,
                outcome,
            } => {
                let holds = compare
                    .iter()
                    .all(|(key, expected)| store.get(key) == expected.as_ref());
                // Each put applied in order, each get reading what the steps before it left.
                let mut after = store.clone();
                let reads: Vec<Option<Vec<u8>>> =
                    walk_branch(then, otherwise, holds, |step| match step {
                        TxnStep::Put { key, value } => {
                            after.insert(key.clone(), value.clone());
                            None
                        }
                        TxnStep::Get { key } => Some(after.get(key).cloned()),
                    })
                    .into_iter()
                    .map(|(_, read)| read)
                    .collect();
                match outcome {
                    None => Some(after),
                    Some(told) if told.succeeded == holds && told.reads == reads => Some(after),
                    Some(_) => None,
                }
            }
        }
    }
}

/// Walks the branch a txn takes (`then` when its compares held, else `otherwise`) in order,
/// handing each step to `visit`, which answers a get with the value to pair it with (`None`
/// for a put); returns the gets' keys with those values, in the order a txn's reads are
/// answered. The one walk of a branch: the checker's step (`KvOp::apply`: the store as the
/// steps before left it) and what a txn saw (`KvOp::observed`: what it was told) pair the
/// same gets the same way.
fn walk_branch<'a, V>(
    then: &'a [TxnStep],
    otherwise: &'a [TxnStep],
    held: bool,
    mut visit: impl FnMut(&'a TxnStep) -> Option<V>,
) -> Vec<(&'a [u8], V)> {
    let branch = if held { then } else { otherwise };
    branch
        .iter()
        .filter_map(|step| {
            let value = visit(step)?;
            match step {
                TxnStep::Get { key } => Some((key.as_slice(), value)),
                TxnStep::Put { .. } => None,
            }
        })
        .collect()
}

/// One operation of a client, with when it was called and when its answer came (`None`:
/// never, its outcome unknown). Times are any monotonic clock's, in the same unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub call: u64,
    pub ret: Option<u64>,
    pub op: KvOp,
}

/// Why a history is not linearizable: operations (in call order) that admit no order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotLinearizable {
    pub operations: Vec<Operation>,
}

/// Most (placed set, state) pairs searched per part before giving up as undecided.
pub const SEARCH_LIMIT: usize = 5_000_000;

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(NotLinearizable),
    /// The search went past `SEARCH_LIMIT` on one part without deciding.
    Undecided,
}

/// Checks `history` (operations in any order).
pub fn check(history: &[Operation]) -> Verdict {
    let history = without_unseen_unknowns(history);
    for mut part in parts(&history) {
        part.sort_by_key(|o| o.call);
        match check_part(&part) {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable(NotLinearizable {
                    operations: part.into_iter().cloned().collect(),
                })
            }
            None => return Verdict::Undecided,
        }
    }
    Verdict::Linearizable
}

/// A smaller set of operations of a non-linearizable `history` that is still not linearizable:
/// what a person reads to see the bug. Operations are dropped greedily, in chunks then one by
/// one, and a drop is kept only if the rest still fails *and* every value the rest reads was
/// written within it (dropping a write would otherwise manufacture a violation of its own: a
/// read of a value nobody wrote). Assumes every write writes a distinct value, as tests make
/// them. Answers the history itself if it is linearizable or undecided.
pub fn minimize(history: &[Operation]) -> Vec<Operation> {
    let failing = |ops: &[Operation]| {
        reads_have_writers(ops) && matches!(check(ops), Verdict::NotLinearizable(_))
    };
    let mut current: Vec<Operation> = match check(history) {
        Verdict::NotLinearizable(found) => found.operations,
        _ => return history.to_vec(),
    };
    let mut chunk = current.len() / 2;
    while chunk >= 1 {
        let mut start = 0;
        while start < current.len() {
            let end = (start + chunk).min(current.len());
            let mut candidate = current[..start].to_vec();
            candidate.extend_from_slice(&current[end..]);
            if !candidate.is_empty() && failing(&candidate) {
                current = candidate;
            } else {
                start = end;
            }
        }
        chunk /= 2;
    }
    current
}

/// True when every value `ops` read is written by one of them.
fn reads_have_writers(ops: &[Operation]) -> bool {
    let written: HashSet<(&[u8], &[u8])> = ops.iter().flat_map(|o| o.op.written()).collect();
    ops.iter()
        .flat_map(|o| o.op.observed())
        .all(|pair| written.contains(&pair))
}

/// The history split into parts sharing no key (union-find over the keys each touches).
fn parts(history: &[Operation]) -> Vec<Vec<&Operation>> {
    let mut ids: HashMap<&[u8], usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_key = Vec::with_capacity(history.len());
    for operation in history {
        let mut first = None;
        for key in operation.op.keys() {
            let id = *ids.entry(key).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(first) => {
                    let (a, b) = (root(&mut parent, first), root(&mut parent, id));
                    parent[a] = b;
                }
            }
        }
        first_key.push(first);
    }
    let mut parts: BTreeMap<usize, Vec<&Operation>> = BTreeMap::new();
    for (operation, first) in history.iter().zip(first_key) {
        // An operation touching no key constrains nothing.
        if let Some(first) = first {
            let part = root(&mut parent, first);
            parts.entry(part).or_default().push(operation);
        }
    }
    parts.into_values().collect()
}

/// The history without the operations of unknown outcome whose writes nobody read. Such an
/// operation may as well never have taken effect: had it, its value could only have been
/// overwritten unseen, and in between it could only have made a compare fail, which the
/// failed txn's own read would have seen. Each one left in doubles the orders to search.
fn without_unseen_unknowns(history: &[Operation]) -> Vec<Operation> {
    let observed: HashSet<(&[u8], &[u8])> = history.iter().flat_map(|o| o.op.observed()).collect();
    history
        .iter()
        .filter(|operation| {
            operation.ret.is_some()
                || operation
                    .op
                    .written()
                    .iter()
                    .any(|pair| observed.contains(pair))
        })
        .cloned()
        .collect()
}

/// A set of operation positions.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(len: usize) -> Placed {
        Placed(vec![0; len.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// One part's operations (sorted by call): `Some(verdict)`, `None` if undecided.
fn check_part(operations: &[&Operation]) -> Option<bool> {
    let n = operations.len();
    let mut placed = Placed::new(n);
    let mut seen: HashSet<(Placed, Store)> = HashSet::new();
    // The search path: which operation was placed at each depth, and the store before it.
    let mut path: Vec<(usize, Store)> = Vec::with_capacity(n);
    let mut store = Store::new();
    // The first candidate to try at the current depth.
    let mut next = 0;
    loop {
        if path.len() == n {
            return Some(true);
        }
        // Operations may be placed next only if called before every unplaced one returned.
        let deadline = (0..n)
            .filter(|&i| !placed.has(i))
            .filter_map(|i| operations[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        let mut advanced = false;
        let mut candidate = next;
        while candidate < n && operations[candidate].call <= deadline {
            if !placed.has(candidate) {
                if let Some(after) = operations[candidate].op.apply(&store) {
                    placed.set(candidate);
                    if seen.insert((placed.clone(), after.clone())) {
                        if seen.len() > SEARCH_LIMIT {
                            return None;
                        }
                        path.push((candidate, std::mem::replace(&mut store, after)));
                        next = 0;
                        advanced = true;
                        break;
                    }
                    placed.clear(candidate);
                }
            }
            candidate += 1;
        }
        if advanced {
            continue;
        }
        // Nothing fits here: undo the last placement and try the one after it; nothing to
        // undo means no order works.
        let Some((last, before)) = path.pop() else {
            return Some(false);
        };
        placed.clear(last);
        store = before;
        next = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(call: u64, ret: Option<u64>, value: &str) -> Operation {
        put_at("h", call, ret, value)
    }

    fn put_at(key: &str, call: u64, ret: Option<u64>, value: &str) -> Operation {
        Operation {
            call,
            ret,
            op: KvOp::Put {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            },
        }
    }

    fn get(call: u64, ret: u64, value: Option<&str>) -> Operation {
        get_at("h", call, ret, value)
    }

    fn get_at(key: &str, call: u64, ret: u64, value: Option<&str>) -> Operation {
        Operation {
            call,
            ret: Some(ret),
            op: KvOp::Get {
                key: key.as_bytes().to_vec(),
                value: value.map(|v| v.as_bytes().to_vec()),
            },
        }
    }

    fn bytes(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn many_unseen_writes_of_unknown_outcome_cost_nothing_and_seen_ones_still_count() {
        // Forty timed-out writes nobody read: without dropping them the search would try
        // their subsets; it answers at once.
        let mut history: Vec<Operation> = (0..40)
            .map(|n| put(n, None, &format!("lost-{n}")))
            .collect();
        history.push(put(100, Some(101), "a"));
        history.push(get(102, 103, Some("a")));
        assert_eq!(check(&history), Verdict::Linearizable);
        // A timed-out write that was read is kept: its value after "a" is fine...
        history.push(get(104, 105, Some("lost-7")));
        assert_eq!(check(&history), Verdict::Linearizable);
        // ...but not before its call.
        let early = vec![put(10, None, "late"), get(1, 2, Some("late"))];
        assert!(matches!(check(&early), Verdict::NotLinearizable(_)));
    }

    /// A compare-and-swap txn: if `key` holds `expected`, put `value`; otherwise read `key`.
    fn cas(
        call: u64,
        ret: Option<u64>,
        key: &str,
        expected: Option<&str>,
        value: &str,
        outcome: Option<(bool, Option<&str>)>,
    ) -> Operation {
        Operation {
            call,
            ret,
            op: KvOp::Txn {
                compare: vec![(bytes(key), expected.map(bytes))],
                then: vec![TxnStep::Put {
                    key: bytes(key),
                    value: bytes(value),
                }],
                otherwise: vec![TxnStep::Get { key: bytes(key) }],
                outcome: outcome.map(|(succeeded, read)| TxnOutcome {
                    succeeded,
                    reads: if succeeded {
                        vec![]
                    } else {
                        vec![read.map(bytes)]
                    },
                }),
            },
        }
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // A read overlapping a put may see the value before or after it.
        let history = [
            put(0, Some(10), "1"),
            put(20, Some(40), "2"),
            get(25, 30, Some("1")),
            get(26, 50, Some("2")),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        assert_eq!(check(&[get(0, 1, None)]), Verdict::Linearizable);
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        // The read starts after "2" was acknowledged and still sees "1".
        let history = [
            put(0, Some(10), "1"),
            put(20, Some(30), "2"),
            get(35, 40, Some("1")),
        ];
        assert!(matches!(check(&history), Verdict::NotLinearizable(_)));
        // Two readers disagreeing on order: one sees 2 then another, later, sees 1.
        let history = [
            put(0, Some(10), "1"),
            put(20, Some(100), "2"),
            get(30, 40, Some("2")),
            get(50, 60, Some("1")),
        ];
        assert!(matches!(check(&history), Verdict::NotLinearizable(_)));
        // A value never written.
        assert!(matches!(
            check(&[put(0, Some(1), "1"), get(2, 3, Some("9"))]),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn a_write_whose_outcome_is_unknown_may_take_effect_late_or_never() {
        // It timed out, yet a much later read sees it: allowed.
        let late = [
            put(0, Some(10), "1"),
            put(20, None, "2"),
            get(1000, 1001, Some("2")),
        ];
        assert_eq!(check(&late), Verdict::Linearizable);
        // Or it never happened.
        let never = [
            put(0, Some(10), "1"),
            put(20, None, "2"),
            get(1000, 1001, Some("1")),
        ];
        assert_eq!(check(&never), Verdict::Linearizable);
        // But it cannot take effect before it was called.
        let early = [
            put(0, Some(10), "1"),
            get(11, 12, Some("2")),
            put(20, None, "2"),
        ];
        assert!(matches!(check(&early), Verdict::NotLinearizable(_)));
        // Once seen, it cannot be unseen.
        let flicker = [
            put(0, Some(10), "1"),
            put(20, None, "2"),
            get(30, 31, Some("2")),
            get(40, 41, Some("1")),
        ];
        assert!(matches!(check(&flicker), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn keys_are_checked_apart_and_the_failing_part_is_named() {
        let history = [
            put_at("k", 0, Some(1), "x"),
            put(0, Some(1), "1"),
            get(5, 6, None),
        ];
        match check(&history) {
            Verdict::NotLinearizable(found) => {
                assert_eq!(found.operations.len(), 2);
                assert!(found
                    .operations
                    .iter()
                    .all(|o| o.op.keys() == vec![b"h".as_slice()]));
            }
            verdict => panic!("{verdict:?}"),
        }
    }

    #[test]
    fn txns_tie_their_keys_together_and_answer_by_their_compares() {
        // Two clients compare-and-swap from absent: exactly one may win.
        let one_winner = [
            cas(0, Some(10), "lock", None, "a", Some((true, None))),
            cas(1, Some(11), "lock", None, "b", Some((false, Some("a")))),
        ];
        assert_eq!(check(&one_winner), Verdict::Linearizable);
        let two_winners = [
            cas(0, Some(10), "lock", None, "a", Some((true, None))),
            cas(1, Some(11), "lock", None, "b", Some((true, None))),
        ];
        assert!(matches!(check(&two_winners), Verdict::NotLinearizable(_)));
        // A txn moving a value between two keys is seen whole or not at all.
        let transfer = Operation {
            call: 10,
            ret: Some(20),
            op: KvOp::Txn {
                compare: vec![],
                then: vec![
                    TxnStep::Put {
                        key: bytes("a"),
                        value: bytes("0"),
                    },
                    TxnStep::Put {
                        key: bytes("b"),
                        value: bytes("1"),
                    },
                ],
                otherwise: vec![],
                outcome: Some(TxnOutcome {
                    succeeded: true,
                    reads: vec![],
                }),
            },
        };
        let whole = [
            put_at("a", 0, Some(1), "1"),
            transfer.clone(),
            get_at("a", 12, 18, Some("0")),
            get_at("b", 13, 19, Some("1")),
        ];
        assert_eq!(check(&whole), Verdict::Linearizable);
        // Seeing b's new value, then a's old one later: half a txn.
        let half = [
            put_at("a", 0, Some(1), "1"),
            transfer.clone(),
            get_at("b", 12, 13, Some("1")),
            get_at("a", 14, 15, Some("1")),
        ];
        assert!(matches!(check(&half), Verdict::NotLinearizable(_)));
        // A txn of unknown outcome takes whichever branch the store at its point gives.
        let unknown = [
            put_at("lock", 0, Some(1), "x"),
            cas(2, None, "lock", Some("x"), "y", None),
            get_at("lock", 100, 101, Some("y")),
        ];
        assert_eq!(check(&unknown), Verdict::Linearizable);
    }

    proptest::proptest! {
        /// Histories made by a real register (each operation takes effect at a point inside
        /// its call..return window, windows of random width overlapping up to five others,
        /// some writes never answered) are
        /// all accepted.
        #[test]
        fn histories_of_a_real_register_are_linearizable(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..4, 0u64..250, 0u64..250, 0u8..10), 1..60)
        ) {
            let mut register: Option<Vec<u8>> = None;
            let mut history = Vec::new();
            for (n, (write, value, before, after, unknown)) in ops.into_iter().enumerate() {
                let point = 1000 + 100 * n as u64;
                let key = b"h".to_vec();
                let op = if write {
                    let value = value.to_string().into_bytes();
                    register = Some(value.clone());
                    KvOp::Put { key, value }
                } else {
                    KvOp::Get { key, value: register.clone() }
                };
                let ret = if write && unknown == 0 { None } else { Some(point + after) };
                history.push(Operation { call: point - before, ret, op });
            }
            proptest::prop_assert_eq!(check(&history), Verdict::Linearizable);
        }
    }

    #[test]
    fn a_long_sequential_history_with_concurrent_readers_is_decided_quickly() {
        // 2,000 writes, each read back by two overlapping readers: the cache keeps it linear.
        let mut history = Vec::new();
        for n in 0..2000u64 {
            let at = n * 10;
            history.push(put(at, Some(at + 5), &n.to_string()));
            history.push(get(at + 6, at + 9, Some(&n.to_string())));
            history.push(get(at + 2, at + 12, Some(&n.to_string())));
        }
        assert_eq!(check(&history), Verdict::Linearizable);
    }
}
