//! Whether a history of operations on a key-value store is linearizable: some order of the
//! operations, each placed between its call and its return, in which every answer is the one
//! a single copy of the store would give (Wing and Gong's search, with Lowe's cache of
//! (operations placed, state) pairs already tried, as Porcupine does).
//!
//! ```text
//!   history ──► per key (operations on different keys never constrain each other)
//!          └──► depth-first: place next any operation no unplaced one returned before it was
//!               called; keep it if the model accepts its answer; backtrack otherwise; a
//!               (placed set, state) seen before is not searched again
//! ```
//!
//! An operation whose outcome is unknown (a write that timed out) has no return: it may take
//! effect at any point after its call, or never. Pure: time comes in the history.

use std::collections::{BTreeMap, HashSet};

/// What an operation asked and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// A put of `value`; its answer is that it was done (or unknown).
    Put { value: Vec<u8> },
    /// A read that returned `value` (`None`: the key did not exist).
    Get { value: Option<Vec<u8>> },
}

/// One operation of a client on one key, with when it was called and when its answer came
/// (`None`: never, its outcome unknown). Times are any monotonic clock's, in the same unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub key: Vec<u8>,
    pub call: u64,
    pub ret: Option<u64>,
    pub op: KvOp,
}

/// Why a history is not linearizable: the key whose operations admit no order, and those
/// operations (in call order) for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotLinearizable {
    pub key: Vec<u8>,
    pub operations: Vec<Operation>,
}

/// Most (placed set, state) pairs searched per key before giving up as undecided.
pub const SEARCH_LIMIT: usize = 5_000_000;

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(NotLinearizable),
    /// The search went past `SEARCH_LIMIT` on this key without deciding.
    Undecided {
        key: Vec<u8>,
    },
}

/// Checks `history` (operations in any order).
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        by_key.entry(&operation.key).or_default().push(operation);
    }
    for (key, mut operations) in by_key {
        operations.sort_by_key(|o| o.call);
        match check_register(&operations) {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable(NotLinearizable {
                    key: key.to_vec(),
                    operations: operations.into_iter().cloned().collect(),
                })
            }
            None => return Verdict::Undecided { key: key.to_vec() },
        }
    }
    Verdict::Linearizable
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

/// One key's operations (sorted by call) as a register: `Some(verdict)`, `None` if undecided.
fn check_register(operations: &[&Operation]) -> Option<bool> {
    let n = operations.len();
    let mut placed = Placed::new(n);
    let mut seen: HashSet<(Placed, Option<Vec<u8>>)> = HashSet::new();
    // The search path: which operation was placed at each depth, and the state before it.
    let mut path: Vec<(usize, Option<Vec<u8>>)> = Vec::with_capacity(n);
    let mut state: Option<Vec<u8>> = None;
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
                if let Some(after) = apply(&state, &operations[candidate].op) {
                    placed.set(candidate);
                    if seen.insert((placed.clone(), after.clone())) {
                        if seen.len() > SEARCH_LIMIT {
                            return None;
                        }
                        path.push((candidate, std::mem::replace(&mut state, after)));
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
        state = before;
        next = last + 1;
    }
}

/// The register's state after `op`, or `None` if `op`'s answer cannot follow `state`.
fn apply(state: &Option<Vec<u8>>, op: &KvOp) -> Option<Option<Vec<u8>>> {
    match op {
        KvOp::Put { value } => Some(Some(value.clone())),
        KvOp::Get { value } if value == state => Some(state.clone()),
        KvOp::Get { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(call: u64, ret: Option<u64>, value: &str) -> Operation {
        Operation {
            key: b"h".to_vec(),
            call,
            ret,
            op: KvOp::Put {
                value: value.as_bytes().to_vec(),
            },
        }
    }

    fn get(call: u64, ret: u64, value: Option<&str>) -> Operation {
        Operation {
            key: b"h".to_vec(),
            call,
            ret: Some(ret),
            op: KvOp::Get {
                value: value.map(|v| v.as_bytes().to_vec()),
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
    fn keys_are_checked_apart_and_the_failing_one_is_named() {
        let mut other = put(0, Some(1), "x");
        other.key = b"k".to_vec();
        let history = [other, put(0, Some(1), "1"), get(5, 6, None)];
        match check(&history) {
            Verdict::NotLinearizable(found) => {
                assert_eq!(found.key, b"h");
                assert_eq!(found.operations.len(), 2);
            }
            verdict => panic!("{verdict:?}"),
        }
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
                let op = if write {
                    let value = value.to_string().into_bytes();
                    register = Some(value.clone());
                    KvOp::Put { value }
                } else {
                    KvOp::Get { value: register.clone() }
                };
                let ret = if write && unknown == 0 { None } else { Some(point + after) };
                history.push(Operation { key: b"h".to_vec(), call: point - before, ret, op });
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
