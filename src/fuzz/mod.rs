//! Fuzzing every decoder of untrusted bytes, on stable Rust: structured mutation of a corpus of
//! valid inputs (each target's own encoders make them), run under `catch_unwind` with a
//! watchdog for hangs. `tests/fuzz.rs` runs every target briefly in CI; `lode-bench fuzz
//! TARGET --seconds N` runs one for as long as asked.
//!
//! A target is a pure function of its input: decoders, the checks after them (request
//! validation, the peer message guard) and nothing that does I/O. A target passes an input
//! when it returns, whatever it returns: rejecting garbage is the point; panicking or not
//! returning is a failure. (The running member's side, where a rejected input must also change
//! nothing, is exercised against a real process by `tests/fuzz.rs`.)
//!
//! This file holds the engine (the targets' list, the mutator, the runner); the targets that
//! decode what arrives over the network (native frames, peer frames, gRPC messages, gateway
//! JSON, HTTP/2's first header block) are in `wire`, those that decode files (log segments,
//! lode snapshots, etcd snapshot databases) in `files`.

mod files;
mod wire;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use files::*;
pub use wire::*;

/// One decoder under test.
pub struct Target {
    pub name: &'static str,
    /// What it decodes, for `--help`.
    pub what: &'static str,
    /// Valid inputs to mutate.
    pub corpus: fn() -> Vec<Vec<u8>>,
    /// Decodes (and checks) one input.
    pub run: fn(&[u8]),
}

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "native-frames",
            what: "native protocol frames as a connection reads them, then request checks",
            corpus: native_corpus,
            run: native_run,
        },
        Target {
            name: "peer-frames",
            what: "peer transport frames (Raft messages, snapshot chunks, members queries and \
                   answers), then the peer message guard",
            corpus: peer_corpus,
            run: peer_run,
        },
        Target {
            name: "grpc-messages",
            what: "etcd's gRPC request messages (protobuf), converted and checked",
            corpus: grpc_corpus,
            run: grpc_run,
        },
        Target {
            name: "gateway-json",
            what: "etcd's JSON gateway bodies, converted and checked",
            corpus: json_corpus,
            run: json_run,
        },
        Target {
            name: "http2-headers",
            what: "the first HTTP/2 bytes through the :authority mending filter",
            corpus: http2_corpus,
            run: http2_run,
        },
        Target {
            name: "log-segments",
            what: "log segment files as recovery scans them",
            corpus: segment_corpus,
            run: segment_run,
        },
        Target {
            name: "snapshot-files",
            what: "lode snapshot files as a member loads them",
            corpus: snapshot_corpus,
            run: snapshot_run,
        },
        Target {
            name: "etcd-snapshots",
            what: "etcd snapshot databases (bbolt) as restore and status read them",
            corpus: etcd_db_corpus,
            run: etcd_db_run,
        },
    ]
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// xorshift64*: deterministic, so a failing run is repeated by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }
}

/// Values that break length and index arithmetic.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    4096,
];

/// One mutated input from `corpus` into `out`: a few stacked mutations of one entry (bit
/// flips, interesting integers at any width and byte order, inserted, removed, repeated and
/// spliced ranges, truncation).
pub fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    if corpus.is_empty() {
        return;
    }
    out.extend_from_slice(&corpus[rng.below(corpus.len())]);
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let at = rng.below(len);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let end = (at + width).min(len);
                let start = if rng.below(2) == 0 { 0 } else { 8 - width };
                out[at..end].copy_from_slice(&bytes[start..start + (end - at)]);
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(16);
                let filler: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, filler);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(64));
                out.drain(at..at + count);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(64));
                let copy: Vec<u8> = out[at..at + count].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            6 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = rng.below(out.len() + 1);
                    out.truncate(to);
                    out.extend_from_slice(&other[from..]);
                }
            }
            7 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                if len > 0 {
                    let at = rng.below(len);
                    out[at] = out[at].wrapping_add(1 + rng.below(3) as u8);
                }
            }
        }
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run (mutated ones and the corpus itself).
    pub inputs: u64,
    /// Inputs that panicked, with the first one's bytes and message.
    pub panics: u64,
    pub first_panic: Option<(Vec<u8>, String)>,
    /// An input that did not return within the hang limit (the run stops there).
    pub hang: Option<Vec<u8>>,
    /// The slowest input's time.
    pub slowest: Duration,
}

/// How long one input may take before it counts as a hang.
pub const HANG_LIMIT: Duration = Duration::from_secs(10);

/// Runs `target` from `seed` on its corpus, then on mutated inputs until `inputs` were run
/// or `time` passed, whichever comes first. Panics are caught (and the process's panic hook
/// silenced meanwhile); a hang is reported once the watchdog sees no progress for
/// `HANG_LIMIT`, and the stuck worker is left behind.
pub fn run(target: &Target, seed: u64, inputs: u64, time: Duration) -> Report {
    let corpus = (target.corpus)();
    let run = target.run;
    let done = Arc::new(AtomicU64::new(0));
    let current: Arc<Mutex<Vec<u8>>> = Arc::default();
    let report: Arc<Mutex<Report>> = Arc::default();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let worker = {
        let (done, current, report) = (done.clone(), current.clone(), report.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + time;
            let mut rng = Rng::new(seed);
            let mut input = Vec::new();
            let mut count = 0u64;
            while count < inputs && Instant::now() < deadline {
                if (count as usize) < corpus.len() {
                    input.clone_from(&corpus[count as usize]);
                } else {
                    mutate(&mut rng, &corpus, &mut input);
                }
                if let Ok(mut slot) = current.lock() {
                    slot.clone_from(&input);
                }
                let started = Instant::now();
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&input)));
                let took = started.elapsed();
                if let Ok(mut report) = report.lock() {
                    report.slowest = report.slowest.max(took);
                    if let Err(panic) = outcome {
                        report.panics += 1;
                        if report.first_panic.is_none() {
                            let message = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            report.first_panic = Some((input.clone(), message));
                        }
                    }
                }
                count += 1;
                done.store(count, Ordering::Release);
            }
        })
    };
    let mut last = (0, Instant::now());
    let hung = loop {
        if worker.is_finished() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = done.load(Ordering::Acquire);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > HANG_LIMIT {
            break true;
        }
    };
    std::panic::set_hook(previous_hook);
    let mut final_report = match report.lock() {
        Ok(mut report) => std::mem::take(&mut *report),
        Err(_) => Report::default(),
    };
    final_report.inputs = done.load(Ordering::Acquire);
    if hung {
        final_report.hang = current.lock().ok().map(|input| input.clone());
    } else {
        let _ = worker.join();
    }
    final_report
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    #[test]
    fn every_corpus_is_valid_input_its_target_accepts() {
        for target in targets() {
            let corpus = (target.corpus)();
            assert!(!corpus.is_empty(), "{}", target.name);
            for input in &corpus {
                (target.run)(input);
            }
        }
        // Spot checks that the corpora decode (a corpus of garbage would fuzz nothing).
        let native = native_corpus();
        let mut buffer = BytesMut::from(&native[0][..]);
        let frame = lode_protocol::frame::decode_frame(&mut buffer, MAX_FRAME)
            .expect("frame")
            .expect("whole");
        assert!(crate::api::native::decode_request(&frame).is_ok());
        let segment = segment_corpus();
        let scan = crate::wal::recovery::scan_segment(&segment[1], 3, true).expect("scan");
        assert_eq!(scan.records.len(), 5);
        let snapshot = snapshot_corpus();
        assert!(crate::snapshot::SnapshotReader::open(Bytes::from(snapshot[0].clone())).is_ok());
        assert!(crate::etcd_db::read(&etcd_db_corpus()[0]).is_ok());
        let peer = peer_corpus();
        let mut buffer = BytesMut::from(&peer[0][..]);
        assert!(matches!(
            crate::peer::wire::decode_frame(&mut buffer, FUZZ_CLUSTER, FUZZ_MEMBER, 1 << 20),
            Ok(Some(_))
        ));
    }

    #[test]
    fn mutation_is_deterministic_by_seed_and_varied() {
        let corpus = vec![b"hello, world".to_vec(), b"0123456789".to_vec()];
        let outputs = |seed| {
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            (0..50)
                .map(|_| {
                    mutate(&mut rng, &corpus, &mut out);
                    out.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(outputs(7), outputs(7));
        let distinct: std::collections::HashSet<Vec<u8>> = outputs(7).into_iter().collect();
        assert!(distinct.len() > 30);
    }

    #[test]
    fn a_panicking_target_is_caught_and_reported_with_its_input() {
        let target = Target {
            name: "panics",
            what: "a target that panics on inputs starting with 0xff",
            corpus: || vec![vec![1, 2, 3]],
            run: |data| {
                if data.first() == Some(&0xff) {
                    panic!("found it");
                }
            },
        };
        let report = run(&target, 3, 20_000, Duration::from_secs(30));
        assert_eq!(report.inputs, 20_000);
        assert!(report.panics > 0);
        let (input, message) = report.first_panic.expect("first panic");
        assert_eq!(input[0], 0xff);
        assert_eq!(message, "found it");
    }
}
