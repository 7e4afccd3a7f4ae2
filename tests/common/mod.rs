//! A reference model of the log and helpers shared by the log tests.
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod etcd;
pub mod kvgen;
pub mod pki;
pub mod proxy;
pub mod server;

use bytes::Bytes;

/// `text` parsed as JSON (panicking with the text when it is not).
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A single-threaded Tokio runtime for tests that drive lode with Tokio-based clients
/// (etcd-client, tonic).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A plain gRPC channel to a lode client URL, for calls etcd-client does not make.
pub async fn grpc_channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// The gRPC status code and message of a failed etcd-client call.
pub fn grpc_error(error: etcd_client::Error) -> (tonic::Code, String) {
    match error {
        etcd_client::Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// `text` in standard base64, as etcd's JSON carries bytes.
pub fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
use lode::wal::format::HardState;
use lode::wal::io::LogDir;
use lode::wal::{EntryKind, LogEntry, Wal};

/// What the log should hold: the plainest possible representation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub first: u64,
    pub compacted: (u64, u64),
    pub entries: Vec<(u64, EntryKind, Bytes)>,
    pub hard_state: HardState,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            first: 1,
            compacted: (0, 0),
            entries: Vec::new(),
            hard_state: HardState::default(),
        }
    }
}

/// One operation on the log.
#[derive(Clone, Debug)]
pub enum Op {
    Append(Vec<LogEntry>, Option<HardState>),
    Truncate(u64),
    Compact(u64),
    SetHardState(HardState),
    Reset(u64, u64),
}

impl Model {
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.compacted.1, |e| e.0)
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.compacted.0 {
            return Some(self.compacted.1);
        }
        if index < self.first || index > self.last() {
            return None;
        }
        Some(self.entries[(index - self.first) as usize].0)
    }

    fn truncate(&mut self, index: u64) {
        self.entries.truncate((index - self.first) as usize);
    }

    fn compact(&mut self, index: u64, term: u64) {
        if index >= self.first {
            let drop = ((index - self.first + 1) as usize).min(self.entries.len());
            self.entries.drain(..drop);
            self.first = index + 1;
        }
        self.compacted = (index, term);
    }

    /// The states the log passes through while `op`'s records are applied one by one, starting
    /// with the current state; the last one is the state after `op`. A crash during `op` must
    /// recover to one of them.
    pub fn states_through(&self, op: &Op) -> Vec<Model> {
        let mut states = vec![self.clone()];
        let mut model = self.clone();
        match op {
            Op::Append(entries, hard_state) => {
                if let Some(first) = entries.first() {
                    if first.index <= model.last() {
                        model.truncate(first.index);
                        states.push(model.clone());
                    }
                }
                for entry in entries {
                    model
                        .entries
                        .push((entry.term, entry.kind, entry.payload.clone()));
                    states.push(model.clone());
                }
                if let Some(hs) = hard_state {
                    model.hard_state = *hs;
                    states.push(model.clone());
                }
            }
            Op::Truncate(index) => {
                if *index >= model.first && *index <= model.last() {
                    model.truncate(*index);
                    states.push(model.clone());
                }
            }
            Op::Compact(index) => {
                if *index > model.compacted.0 && *index <= model.last() {
                    let term = model.term(*index).expect("live index");
                    model.compact(*index, term);
                    states.push(model.clone());
                }
            }
            Op::SetHardState(hs) => {
                model.hard_state = *hs;
                states.push(model.clone());
            }
            Op::Reset(index, term) => {
                if !model.entries.is_empty() {
                    model.entries.clear();
                    states.push(model.clone());
                }
                model.compact(*index, *term);
                model.first = index + 1;
                states.push(model.clone());
            }
        }
        states
    }

    /// The state after `op`.
    pub fn after(&self, op: &Op) -> Model {
        self.states_through(op)
            .pop()
            .expect("at least the current state")
    }
}

/// Deterministic payload for an entry, so content can be checked after any crash.
pub fn payload(index: u64, term: u64, len: usize) -> Bytes {
    let mut seed =
        index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.push(seed as u8);
    }
    Bytes::from(out)
}

pub fn entry(index: u64, term: u64, len: usize) -> LogEntry {
    LogEntry {
        index,
        term,
        kind: if index % 17 == 0 {
            EntryKind::ConfChange
        } else {
            EntryKind::Normal
        },
        payload: payload(index, term, len),
    }
}

/// Reads everything the log holds into a model.
pub fn observe<D: LogDir>(wal: &Wal<D>) -> Model {
    let first = wal.first_index();
    let last = wal.last_index();
    let entries = if last >= first {
        wal.entries(first, last + 1, None)
            .expect("reading every live entry")
            .into_iter()
            .map(|e| (e.term, e.kind, e.payload))
            .collect()
    } else {
        Vec::new()
    };
    let model = Model {
        first,
        compacted: wal.compacted(),
        entries,
        hard_state: wal.hard_state(),
    };
    for index in first..=last {
        assert_eq!(wal.term(index).ok(), model.term(index), "term of {index}");
    }
    model
}

/// Runs one operation against the log.
pub async fn run_op<D: LogDir>(wal: &Wal<D>, op: &Op) -> lode::wal::Result<()> {
    match op {
        Op::Append(entries, hs) => wal.append(entries, *hs).await,
        Op::Truncate(index) => wal.truncate_suffix(*index).await,
        Op::Compact(index) => wal.compact(*index).await,
        Op::SetHardState(hs) => wal.set_hard_state(*hs).await,
        Op::Reset(index, term) => wal.reset_to_snapshot(*index, *term).await,
    }
}

/// Runs `make()`'s future on a fresh glommio executor thread and returns its output.
pub fn on_executor<T, F, Fut>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    lode::executor::builder(glommio::Placement::Unbound)
        .spawn(make)
        .expect("executor")
        .join()
        .expect("executor thread")
}

/// A small deterministic random source for workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// A valid random operation for a log in state `model`.
pub fn random_op(rng: &mut Rng, model: &Model) -> Op {
    let roll = rng.below(100);
    let len = |rng: &mut Rng| -> usize {
        match rng.below(10) {
            0 => rng.below(6000) as usize,
            1 => 0,
            _ => rng.below(400) as usize,
        }
    };
    if roll < 60 || model.entries.is_empty() && roll < 80 {
        let count = 1 + rng.below(6);
        let term = model.last_term().max(model.hard_state.term) + u64::from(rng.below(10) == 0);
        let start = model.last() + 1;
        let entries = (0..count)
            .map(|k| entry(start + k, term, len(rng)))
            .collect();
        let hs = (rng.below(3) == 0).then(|| HardState {
            term,
            vote: rng.below(4),
            commit: model.last(),
        });
        Op::Append(entries, hs)
    } else if roll < 70 && !model.entries.is_empty() {
        // A new leader overwrites a suffix, with a term above everything in the log.
        let back = rng.below(model.entries.len() as u64);
        let start = model.last() - back;
        let term = model.last_term() + 1;
        let count = 1 + rng.below(4);
        Op::Append(
            (0..count)
                .map(|k| entry(start + k, term, len(rng)))
                .collect(),
            None,
        )
    } else if roll < 76 && !model.entries.is_empty() {
        let back = rng.below(model.entries.len() as u64);
        Op::Truncate(model.last() - back)
    } else if roll < 88 && !model.entries.is_empty() {
        let ahead = rng.below(model.entries.len() as u64);
        Op::Compact(model.first + ahead)
    } else if roll < 92 {
        let index = model.last().max(model.compacted.0) + 1 + rng.below(20);
        Op::Reset(index, model.last_term() + 1)
    } else {
        Op::SetHardState(HardState {
            term: model.hard_state.term + rng.below(2),
            vote: rng.below(5),
            commit: model.last(),
        })
    }
}
