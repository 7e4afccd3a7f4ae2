//! Model test of the watch engine: random writes (puts, deletes, multi-key txns), compactions,
//! watch creations with random start revisions, ranges and filters, shards reporting in random
//! order, a reader that falls behind a small budget, history catch-ups and progress requests.
//! Every watcher's stream must equal the model's history for it: ordered, no gaps, no
//! duplicates, each revision whole in one response, prev_kv and filters right; a watcher
//! canceled for compaction got a prefix of it; a progress response at R comes after every
//! event at or below R.

use std::collections::BTreeMap;

use bytes::Bytes;
use lode::mvcc::request::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WriteRequest,
};
use lode::mvcc::{KeyRange, ShardedKv};
use lode::watch::merge::RevisionMerger;
use lode::watch::stream::{CreateWatch, WatchResponse, WatchStream, NO_WATCH_ID};
use lode::watch::{Event, EventKind};
use proptest::prelude::*;

const KEYS: usize = 6;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i}"))
}

#[derive(Clone, Debug)]
enum RangeChoice {
    Single(usize),
    All,
    Between(usize, usize),
    From(usize),
}

impl RangeChoice {
    fn request(&self) -> (Bytes, Bytes) {
        match self {
            RangeChoice::Single(i) => (key(*i), Bytes::new()),
            RangeChoice::All => (Bytes::new(), Bytes::from_static(&[0])),
            RangeChoice::Between(a, b) => (key(*a), key(*b)),
            RangeChoice::From(i) => (key(*i), Bytes::from_static(&[0])),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    DeleteFrom(usize),
    /// A txn putting two keys: one revision, often on two shards.
    PutTwo(usize, usize, u8),
    /// Compact at `current - back` (when that is a valid compaction).
    Compact(i64),
    Create {
        range: RangeChoice,
        /// None: from now; Some(back): `current + 1 - back`, which may be compacted or future.
        back: Option<i64>,
        prev_kv: bool,
        no_put: bool,
        no_delete: bool,
        client_id: Option<i64>,
    },
    Cancel(i64),
    Report(usize),
    Pop(usize),
    CatchUp,
    Progress,
}

fn op() -> impl Strategy<Value = Op> {
    let range = prop_oneof![
        (0..KEYS).prop_map(RangeChoice::Single),
        Just(RangeChoice::All),
        (0..KEYS, 0..KEYS).prop_map(|(a, b)| RangeChoice::Between(a, b)),
        (0..KEYS).prop_map(RangeChoice::From),
    ];
    prop_oneof![
        6 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..KEYS).prop_map(Op::Delete),
        1 => (0..KEYS).prop_map(Op::DeleteFrom),
        3 => (0..KEYS, 0..KEYS, any::<u8>()).prop_map(|(a, b, v)| Op::PutTwo(a, b, v)),
        1 => (0i64..6).prop_map(Op::Compact),
        3 => (
            range,
            proptest::option::of(-2i64..12),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(1i64..4)
        )
            .prop_map(|(range, back, prev_kv, no_put, no_delete, client_id)| Op::Create {
                range,
                back,
                prev_kv,
                no_put,
                no_delete,
                client_id,
            }),
        1 => (0i64..6).prop_map(Op::Cancel),
        5 => (0usize..3).prop_map(Op::Report),
        4 => (1usize..4).prop_map(Op::Pop),
        2 => Just(Op::CatchUp),
        1 => Just(Op::Progress),
    ]
}

/// What the test knows of one created watch.
#[derive(Debug)]
struct Expected {
    range: KeyRange,
    start: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    received: Vec<Event>,
    compacted_at: Option<i64>,
    canceled: bool,
}

impl Expected {
    fn wants(&self, event: &Event) -> bool {
        event.revision() >= self.start
            && self.range.contains(&event.kv.key)
            && !(self.no_put && event.kind == EventKind::Put)
            && !(self.no_delete && event.kind == EventKind::Delete)
    }
}

struct Sim {
    kv: ShardedKv,
    history: Vec<Event>,
    pending: Vec<Vec<Event>>,
    merger: RevisionMerger,
    stream: WatchStream,
    watches: BTreeMap<i64, Expected>,
    /// Creations in flight: the expectation waits for the created response's ID.
    creating: std::collections::VecDeque<Option<Expected>>,
    max_compaction: i64,
}

impl Sim {
    fn write(&mut self, request: WriteRequest) {
        if let Ok((_, events)) = self.kv.write_with_events(&request, 128) {
            for (shard, event) in events {
                self.history.push(event.clone());
                self.pending[shard].push(event);
            }
        }
    }

    fn report(&mut self, shard: usize) {
        let shard = shard % self.pending.len();
        let events = std::mem::take(&mut self.pending[shard]);
        self.merger.push(shard, events, self.kv.current_revision());
        let (events, upto) = self.merger.release();
        self.stream.deliver(&events, upto);
    }

    fn catch_up(&mut self) {
        for read in self.stream.catch_ups() {
            let (events, reached) =
                self.kv
                    .history_events_within(&read.range, read.after, read.upto, read.max_bytes);
            self.stream
                .on_history(&read, &events, self.kv.compact_revision(), reached);
        }
    }

    fn pop(&mut self) -> Option<WatchResponse> {
        let response = self.stream.pop()?;
        self.check(&response);
        Some(response)
    }

    fn check(&mut self, response: &WatchResponse) {
        if response.created {
            let expected = self.creating.pop_front().expect("a creation was asked");
            match expected {
                Some(expected) if !response.canceled => {
                    assert!(
                        !self.watches.contains_key(&response.watch_id)
                            || self.watches[&response.watch_id].canceled,
                        "IDs are unique among live watches"
                    );
                    self.watches.insert(response.watch_id, expected);
                }
                _ => {
                    assert!(response.canceled);
                    assert_eq!(response.watch_id, NO_WATCH_ID);
                    assert!(!response.cancel_reason.is_empty());
                }
            }
            return;
        }
        if response.watch_id == NO_WATCH_ID {
            // Progress at R: every live watcher has been given everything up to R.
            for watch in self.watches.values().filter(|w| !w.canceled) {
                let owed = self
                    .history
                    .iter()
                    .filter(|e| e.revision() <= response.revision && watch.wants(e))
                    .count();
                assert_eq!(
                    watch.received.len(),
                    owed,
                    "progress before events it vouches for"
                );
            }
            return;
        }
        let watch = self
            .watches
            .get_mut(&response.watch_id)
            .expect("responses only for created watches");
        assert!(!watch.canceled, "nothing after a cancel");
        if response.canceled {
            watch.canceled = true;
            if response.compact_revision != 0 {
                watch.compacted_at = Some(response.compact_revision);
            }
            return;
        }
        // Atomic: each revision in the response holds every event of it the watch wants.
        for event in &response.events {
            let whole = self
                .history
                .iter()
                .filter(|e| e.revision() == event.revision() && watch.wants(e))
                .count();
            let here = response
                .events
                .iter()
                .filter(|e| e.revision() == event.revision())
                .count();
            assert_eq!(here, whole, "revision {} split", event.revision());
        }
        watch.received.extend(response.events.iter().cloned());
    }

    fn finish(&mut self) {
        for shard in 0..self.pending.len() {
            self.report(shard);
        }
        for _ in 0..10_000 {
            self.catch_up();
            let mut popped = false;
            while self.pop().is_some() {
                popped = true;
            }
            if !popped && self.stream.catch_ups_pending() == 0 {
                break;
            }
        }
        assert_eq!(
            self.stream.catch_ups_pending(),
            0,
            "every watcher caught up"
        );
        for (id, watch) in &self.watches {
            let expected: Vec<&Event> = self.history.iter().filter(|e| watch.wants(e)).collect();
            if watch.compacted_at.is_some() {
                assert!(
                    watch.received.len() <= expected.len(),
                    "watch {id}: more than the history"
                );
            } else if !watch.canceled {
                assert_eq!(
                    watch.received.len(),
                    expected.len(),
                    "watch {id} from {}: {:?} vs {:?}",
                    watch.start,
                    watch
                        .received
                        .iter()
                        .map(|e| e.revision())
                        .collect::<Vec<_>>(),
                    expected.iter().map(|e| e.revision()).collect::<Vec<_>>()
                );
            }
            for (got, want) in watch.received.iter().zip(&expected) {
                assert_eq!(
                    (got.kind, &got.kv, got.sub),
                    (want.kind, &want.kv, want.sub)
                );
                if watch.prev_kv {
                    // History below the compaction point may no longer hold the previous pair.
                    assert!(
                        got.prev_kv == want.prev_kv
                            || (got.prev_kv.is_none() && got.revision() <= self.max_compaction),
                        "prev_kv of {got:?}"
                    );
                } else {
                    assert_eq!(got.prev_kv, None);
                }
            }
        }
    }
}

fn run(shards: usize, budget: usize, window: i64, ops: Vec<Op>) {
    let mut sim = Sim {
        kv: ShardedKv::new(shards),
        history: Vec::new(),
        pending: vec![Vec::new(); shards],
        merger: RevisionMerger::new(shards, 1),
        stream: {
            let mut stream = WatchStream::new(1, budget);
            stream.set_catch_up_revisions(window);
            stream
        },
        watches: BTreeMap::new(),
        creating: std::collections::VecDeque::new(),
        max_compaction: 0,
    };
    for op in ops {
        match op {
            Op::Put(k, v) => sim.write(WriteRequest::Put(PutRequest {
                key: key(k),
                value: Bytes::from(vec![b'a' + v % 26; 1 + v as usize % 40]),
                prev_kv: false,
                lease: 0,
                ignore_value: false,
                ignore_lease: false,
            })),
            Op::Delete(k) => sim.write(WriteRequest::DeleteRange(DeleteRangeRequest {
                key: key(k),
                range_end: Bytes::new(),
                prev_kv: false,
            })),
            Op::DeleteFrom(k) => sim.write(WriteRequest::DeleteRange(DeleteRangeRequest {
                key: key(k),
                range_end: key(k + 2),
                prev_kv: false,
            })),
            Op::PutTwo(a, b, v) if a != b => sim.write(WriteRequest::Txn(TxnRequest {
                compare: Vec::new(),
                success: [a, b]
                    .into_iter()
                    .map(|k| {
                        RequestOp::Put(PutRequest {
                            key: key(k),
                            value: Bytes::from(vec![v; 3]),
                            prev_kv: false,
                            lease: 0,
                            ignore_value: false,
                            ignore_lease: false,
                        })
                    })
                    .collect(),
                failure: Vec::new(),
            })),
            Op::PutTwo(..) => {}
            Op::Compact(back) => {
                let revision = sim.kv.current_revision() - back;
                if sim
                    .kv
                    .compact(&CompactionRequest {
                        revision,
                        physical: false,
                    })
                    .is_ok()
                {
                    sim.max_compaction = revision;
                }
            }
            Op::Create {
                range,
                back,
                prev_kv,
                no_put,
                no_delete,
                client_id,
            } => {
                let (k, end) = range.request();
                let start_revision = back.map_or(0, |b| sim.kv.current_revision() + 1 - b);
                let request = CreateWatch {
                    key: k.clone(),
                    range_end: end.clone(),
                    start_revision,
                    prev_kv,
                    no_put,
                    no_delete,
                    watch_id: client_id.unwrap_or(0),
                    ..CreateWatch::default()
                };
                let current = sim.kv.current_revision();
                let created = sim.stream.create(request, current);
                let key = if k.is_empty() {
                    Bytes::from_static(&[0])
                } else {
                    k
                };
                sim.creating.push_back(created.map(|_| Expected {
                    range: KeyRange::from_request(&key, &end),
                    start: if start_revision > 0 {
                        start_revision
                    } else {
                        current + 1
                    },
                    prev_kv,
                    no_put,
                    no_delete,
                    received: Vec::new(),
                    compacted_at: None,
                    canceled: false,
                }));
            }
            Op::Cancel(id) => {
                sim.stream.cancel(id);
            }
            Op::Report(shard) => sim.report(shard),
            Op::Pop(n) => {
                for _ in 0..n {
                    sim.pop();
                }
            }
            Op::CatchUp => sim.catch_up(),
            Op::Progress => {
                sim.stream.request_progress();
            }
        }
    }
    sim.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_watch_sees_exactly_its_history(
        shards in 1usize..4,
        budget in 100usize..3000,
        window in 1i64..20,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(shards, budget, window, ops);
    }
}
