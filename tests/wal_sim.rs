//! Deterministic tests of the log on the simulated disk: model checking, crashes at every I/O
//! point, failed syncs, a full disk, bad input and damaged files.

mod common;

use common::{entry, observe, random_op, run_op, Model, Op, Rng};
use futures::executor::block_on;
use lode::wal::format::{HardState, SegmentHeader, PAGE_SIZE, RECORDS_START};
use lode::wal::sim::{CrashModel, SimDisk};
use lode::wal::{segment_file_name, Wal, WalError, WalOptions};
use proptest::prelude::*;

const SEGMENT: u64 = 64 * 1024;

fn options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT,
        max_entry_bytes: 16 * 1024,
        create_if_missing: true,
        abort_on_sync_failure: false,
        // Small, so reads use both the in-memory window and the stable reads.
        recent_window_bytes: 2048,
    }
}

fn open(disk: &SimDisk) -> Result<Wal<lode::wal::sim::SimDir>, WalError> {
    block_on(Wal::open(disk.dir(), options()))
}

proptest! {
    // PROPTEST_CASES=N overrides the default of 64 cases, for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        .. ProptestConfig::default()
    })]

    /// Random appends, overwrites, truncations, compactions, snapshot resets, hard states and
    /// reopenings agree with the model at every step.
    #[test]
    fn log_agrees_with_model(seed in 1u64.., steps in 1usize..120, reopen_every in 3usize..40) {
        let disk = SimDisk::new();
        let mut wal = open(&disk).unwrap();
        let mut model = Model::default();
        let mut rng = Rng(seed | 1);
        for step in 0..steps {
            let op = random_op(&mut rng, &model);
            block_on(run_op(&wal, &op)).unwrap();
            model = model.after(&op);
            prop_assert_eq!(&observe(&wal), &model, "after {:?}", op);
            if step % reopen_every == 0 {
                drop(wal);
                wal = open(&disk).unwrap();
                prop_assert_eq!(&observe(&wal), &model, "after reopen");
            }
            if matches!(op, Op::Compact(i) if i == model.last()) || matches!(op, Op::Reset(..)) {
                // Nothing live outside the active segment: every older one is gone.
                prop_assert_eq!(wal.segments().len(), 1);
            }
        }
    }
}

/// Runs a workload, op by op, until one fails. Returns the state after the last acknowledged
/// op, and the op that failed (if one did).
fn run_until_failure(
    wal: &Wal<lode::wal::sim::SimDir>,
    seed: u64,
    ops: usize,
) -> (Model, Option<Op>) {
    let mut model = Model::default();
    let mut rng = Rng(seed);
    for _ in 0..ops {
        let op = random_op(&mut rng, &model);
        match block_on(run_op(wal, &op)) {
            Ok(()) => model = model.after(&op),
            Err(_) => return (model, Some(op)),
        }
    }
    (model, None)
}

/// The disk dies before every single I/O operation of a workload in turn; after each crash,
/// under every crash model, the reopened log holds every acknowledged write and nothing that
/// was never written: exactly a state the log passed through.
#[test]
fn crash_at_every_io_point_keeps_exactly_a_synced_prefix() {
    // LODE_CRASH_SEEDS=N runs N workloads instead of three, for a longer soak.
    let seeds: u64 = std::env::var("LODE_CRASH_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    for seed in (0..seeds).map(|k| 3 + k * 7919) {
        let ops = 100;
        let dry = SimDisk::new();
        let wal = open(&dry).unwrap();
        let (_, failed) = run_until_failure(&wal, seed, ops);
        assert!(failed.is_none());
        let total = dry.operations();
        drop(wal);
        for crash_point in 0..total {
            let disk = SimDisk::new();
            disk.die_before(crash_point);
            let Ok(wal) = open(&disk) else {
                // The crash hit while the log was being created: nothing was acknowledged.
                continue;
            };
            let (acked, failed) = run_until_failure(&wal, seed, ops);
            drop(wal);
            let allowed = match &failed {
                Some(op) => acked.states_through(op),
                None => vec![acked.clone()],
            };
            for model in [
                CrashModel::SyncedOnly,
                CrashModel::AllWritten,
                CrashModel::Torn(crash_point * 31 + seed),
            ] {
                let image = disk.crash_image(model);
                let reopened = match open(&image) {
                    Ok(wal) => wal,
                    Err(WalError::NoLog { .. }) if acked == Model::default() => continue,
                    Err(error) => panic!(
                        "seed {seed} crash point {crash_point} {model:?}: reopen failed: {error}"
                    ),
                };
                let recovered = observe(&reopened);
                assert!(
                    allowed.contains(&recovered),
                    "seed {seed} crash point {crash_point} {model:?}: recovered {recovered:?}\n\
                     acknowledged {acked:?}\nfailed op {failed:?}"
                );
                if model == CrashModel::SyncedOnly {
                    // Reopening twice changes nothing (torn tail cleared once).
                    drop(reopened);
                    let again = open(&image).unwrap();
                    assert_eq!(observe(&again), recovered);
                }
            }
        }
    }
}

#[test]
fn failed_fdatasync_poisons_the_log_and_loses_nothing_acknowledged() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    block_on(wal.append(&[entry(1, 1, 10), entry(2, 1, 10)], None)).unwrap();
    let acked = observe(&wal);
    // The next operation is a write, then its sync.
    disk.fail_sync_at(disk.operations() + 1);
    let failed = block_on(wal.append(&[entry(3, 1, 10)], None));
    assert!(
        matches!(failed, Err(WalError::SyncFailed { .. })),
        "{failed:?}"
    );
    let after = block_on(wal.append(&[entry(3, 1, 10)], None));
    assert!(matches!(after, Err(WalError::Poisoned(_))), "{after:?}");
    assert!(matches!(
        block_on(wal.compact(1)),
        Err(WalError::Poisoned(_))
    ));
    assert_eq!(observe(&wal), acked, "the failed append is not visible");
    drop(wal);
    let allowed = acked.states_through(&Op::Append(vec![entry(3, 1, 10)], None));
    for model in [CrashModel::SyncedOnly, CrashModel::AllWritten] {
        let reopened = open(&disk.crash_image(model)).unwrap();
        assert!(allowed.contains(&observe(&reopened)));
    }
}

#[test]
fn full_disk_fails_the_append_cleanly_and_the_log_stays_usable() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    let mut index = 1;
    // Fill the first segment almost to the end.
    while wal.segments().len() == 1 && (SEGMENT - 8192) > (index * 1100) {
        block_on(wal.append(&[entry(index, 1, 1000)], None)).unwrap();
        index += 1;
    }
    let before = observe(&wal);
    disk.set_full(true);
    let mut failure = None;
    for _ in 0..10 {
        match block_on(wal.append(&[entry(index, 1, 1000)], None)) {
            Ok(()) => index += 1,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("a roll needed a new segment");
    assert!(failure.is_no_space(), "{failure}");
    assert!(failure.to_string().contains("no space left"), "{failure}");
    let intact = observe(&wal);
    assert!(intact.entries.len() >= before.entries.len());
    assert_eq!(intact.last(), index - 1);
    // Reopenable as is.
    drop(wal);
    let wal = open(&disk.crash_image(CrashModel::SyncedOnly)).unwrap();
    assert_eq!(observe(&wal), intact);
    // Space comes back: appends go on.
    disk.set_full(false);
    let wal_disk = disk.crash_image(CrashModel::SyncedOnly);
    let wal = open(&wal_disk).unwrap();
    block_on(wal.append(&[entry(index, 1, 1000), entry(index + 1, 1, 1000)], None)).unwrap();
    assert_eq!(wal.last_index(), index + 1);
    assert_eq!(wal.segments().len(), 2);
}

#[test]
fn a_disk_with_no_room_fails_every_write_and_keeps_failing_after_a_crash() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    block_on(wal.append(&[entry(1, 1, 100)], None)).unwrap();
    let before = observe(&wal);
    disk.set_no_space(true);
    assert!(!disk.has_room());
    let failure = block_on(wal.append(&[entry(2, 1, 100)], None)).unwrap_err();
    assert!(failure.is_no_space(), "{failure}");
    assert_eq!(wal.failed_batches(), 1);
    assert_eq!(observe(&wal), before, "nothing of it was written");
    // A crash keeps the disk full; the log reopens as it was.
    drop(wal);
    let image = disk.crash_image(CrashModel::AllWritten);
    assert!(!image.has_room());
    let wal = open(&image).unwrap();
    assert_eq!(observe(&wal), before);
    assert!(block_on(wal.append(&[entry(2, 1, 100)], None))
        .unwrap_err()
        .is_no_space());
    // Room again: the same append succeeds.
    image.set_no_space(false);
    block_on(wal.append(&[entry(2, 1, 100)], None)).unwrap();
    assert_eq!(wal.last_index(), 2);
}

#[test]
fn invalid_input_is_rejected_and_changes_nothing() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    block_on(wal.append(&[entry(1, 2, 5), entry(2, 2, 5), entry(3, 3, 5)], None)).unwrap();
    let before = observe(&wal);
    let operations = disk.operations();
    let cases: Vec<(Op, &str)> = vec![
        (Op::Append(vec![entry(5, 3, 1)], None), "gap"),
        (Op::Append(vec![entry(4, 2, 1)], None), "term regression"),
        (
            Op::Append(vec![entry(4, 3, 1), entry(6, 3, 1)], None),
            "gap inside the batch",
        ),
        (
            Op::Append(vec![entry(4, 4, 1), entry(5, 3, 1)], None),
            "regression inside",
        ),
        (Op::Append(vec![entry(4, 3, 17 * 1024)], None), "too large"),
        (
            Op::Append(vec![entry(3, 1, 1)], None),
            "overwrite with lower term",
        ),
        (Op::Compact(9), "compact past the end"),
    ];
    for (op, why) in cases {
        let result = block_on(run_op(&wal, &op));
        assert!(result.is_err(), "{why}: accepted");
        assert_eq!(observe(&wal), before, "{why}: changed the log");
    }
    block_on(wal.compact(2)).unwrap();
    let compacted = observe(&wal);
    assert!(matches!(
        block_on(wal.append(&[entry(2, 3, 1)], None)),
        Err(WalError::Compacted { .. })
    ));
    assert!(matches!(
        block_on(wal.truncate_suffix(1)),
        Err(WalError::Compacted { .. })
    ));
    assert!(matches!(
        block_on(wal.reset_to_snapshot(1, 3)),
        Err(WalError::SnapshotOutOfDate { .. })
    ));
    assert!(matches!(
        wal.entries(1, 3, None),
        Err(WalError::Compacted { .. })
    ));
    assert!(matches!(
        wal.entries(3, 9, None),
        Err(WalError::Unavailable { .. })
    ));
    assert!(matches!(wal.term(9), Err(WalError::Unavailable { .. })));
    assert_eq!(observe(&wal), compacted);
    assert!(disk.operations() > operations);
}

#[test]
fn concurrent_appends_share_syncs() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    let before = disk.operations();
    let appenders = 64u64;
    let futures = (0..appenders).map(|k| {
        let wal = &wal;
        async move { wal.append(&[entry(k + 1, 1, 100)], None).await }
    });
    let results = block_on(futures::future::join_all(futures));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(wal.last_index(), appenders);
    let io = disk.operations() - before;
    // One write and one sync per batch: far fewer than one pair per append.
    assert!(
        io < appenders,
        "{io} I/O operations for {appenders} appends"
    );
    assert_eq!(observe(&wal).entries.len(), appenders as usize);
}

#[test]
fn reads_span_the_stable_pages_and_the_in_memory_tail() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    let mut model = Model::default();
    for index in 1..=40u64 {
        let op = Op::Append(vec![entry(index, 1, (index * 97 % 3000) as usize)], None);
        block_on(run_op(&wal, &op)).unwrap();
        model = model.after(&op);
        assert_eq!(observe(&wal), model);
    }
    let limited = wal.entries(1, 41, Some(1)).unwrap();
    assert_eq!(limited.len(), 1, "a size limit still returns one entry");
}

// ----- damaged and foreign files -----

fn log_with_three_segments() -> (SimDisk, Model) {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    let mut model = Model::default();
    let mut index = 1;
    while wal.segments().len() < 3 {
        let op = Op::Append(vec![entry(index, 1, 700)], None);
        block_on(run_op(&wal, &op)).unwrap();
        model = model.after(&op);
        index += 1;
    }
    (disk, model)
}

#[test]
fn foreign_file_in_the_log_directory_is_refused_and_nothing_changes() {
    let (disk, _) = log_with_three_segments();
    disk.put_file("notes.txt", b"hello");
    let names = disk.file_names();
    let operations = disk.operations();
    let error = open(&disk).err().expect("refused");
    assert!(matches!(error, WalError::UnexpectedFile { .. }), "{error}");
    assert!(error.to_string().contains("notes.txt"));
    assert_eq!(disk.file_names(), names);
    assert_eq!(disk.operations(), operations);
}

#[test]
fn segment_named_file_with_foreign_content_is_refused() {
    let disk = SimDisk::new();
    disk.put_file(&segment_file_name(1), &vec![7u8; SEGMENT as usize]);
    let error = open(&disk).err().expect("refused");
    assert!(matches!(error, WalError::UnexpectedFile { .. }), "{error}");
}

#[test]
fn segment_of_another_format_version_is_refused() {
    let (disk, _) = log_with_three_segments();
    disk.edit_file(&segment_file_name(1), |bytes| {
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    });
    let error = open(&disk).err().expect("refused");
    assert!(
        matches!(error, WalError::UnsupportedVersion { found: 9, .. }),
        "{error}"
    );
}

#[test]
fn bit_flip_in_a_middle_segment_is_corruption_naming_file_and_offset() {
    let (disk, _) = log_with_three_segments();
    let name = segment_file_name(2);
    let offset = RECORDS_START as usize + 300;
    disk.edit_file(&name, |bytes| bytes[offset] ^= 0x04);
    let names = disk.file_names();
    match open(&disk).err().expect("refused") {
        WalError::Corruption {
            path, offset: at, ..
        } => {
            assert!(path.ends_with(&name));
            assert!(at as usize <= offset && at >= RECORDS_START);
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert_eq!(disk.file_names(), names);
}

#[test]
fn torn_last_record_is_dropped_and_the_rest_kept() {
    let (disk, model) = log_with_three_segments();
    let name = segment_file_name(3);
    // Damage the last record of the newest segment as a torn write would: its second half
    // never reached the disk.
    let content = disk.file(&name).unwrap();
    let scan = lode::wal::recovery::scan_segment(&content, 3, true).unwrap();
    let last = scan.records.last().unwrap();
    let tear_from = (last.offset as usize + 64).next_multiple_of(512);
    disk.edit_file(&name, |bytes| bytes[tear_from..scan.end as usize].fill(0));
    let wal = open(&disk).unwrap();
    let recovered = observe(&wal);
    let mut expected = model.clone();
    expected.entries.pop();
    assert_eq!(recovered, expected);
    // The torn bytes were cleared: appending and reopening works.
    let next = recovered.last() + 1;
    block_on(wal.append(&[entry(next, 1, 10)], None)).unwrap();
    drop(wal);
    assert_eq!(open(&disk).unwrap().last_index(), next);
}

#[test]
fn truncated_segment_header_is_corruption() {
    let (disk, _) = log_with_three_segments();
    disk.edit_file(&segment_file_name(3), |bytes| bytes.truncate(20));
    let error = open(&disk).err().expect("refused");
    assert!(matches!(error, WalError::Corruption { .. }), "{error}");
}

#[test]
fn missing_middle_segment_is_corruption() {
    let (disk, _) = log_with_three_segments();
    let content = disk.file(&segment_file_name(2)).unwrap();
    let fresh = SimDisk::new();
    for name in disk.file_names() {
        if name != segment_file_name(2) {
            fresh.put_file(&name, &disk.file(&name).unwrap());
        }
    }
    assert!(!content.is_empty());
    let error = open(&fresh).err().expect("refused");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn missing_oldest_segment_without_compaction_is_corruption() {
    let (disk, _) = log_with_three_segments();
    let fresh = SimDisk::new();
    for name in disk.file_names() {
        if name != segment_file_name(1) {
            fresh.put_file(&name, &disk.file(&name).unwrap());
        }
    }
    let error = open(&fresh).err().expect("refused");
    assert!(matches!(error, WalError::Corruption { .. }), "{error}");
}

#[test]
fn empty_directory_without_create_is_no_log() {
    let disk = SimDisk::new();
    let error = block_on(Wal::open(
        disk.dir(),
        WalOptions {
            create_if_missing: false,
            ..options()
        },
    ))
    .err()
    .expect("refused");
    assert!(matches!(error, WalError::NoLog { .. }));
    assert!(disk.file_names().is_empty());
}

#[test]
fn bad_options_are_rejected() {
    let disk = SimDisk::new();
    for segment_size in [1000, PAGE_SIZE * 3, 1 << 40] {
        let result = block_on(Wal::open(
            disk.dir(),
            WalOptions {
                segment_size,
                ..options()
            },
        ));
        assert!(matches!(result, Err(WalError::InvalidOptions(_))));
    }
    let result = block_on(Wal::open(
        disk.dir(),
        WalOptions {
            max_entry_bytes: SEGMENT as usize,
            ..options()
        },
    ));
    assert!(matches!(result, Err(WalError::InvalidOptions(_))));
    assert!(disk.file_names().is_empty());
}

#[test]
fn hard_state_survives_removal_of_the_segment_that_recorded_it() {
    let disk = SimDisk::new();
    let wal = open(&disk).unwrap();
    let hs = HardState {
        term: 5,
        vote: 2,
        commit: 1,
    };
    block_on(wal.append(&[entry(1, 5, 10)], Some(hs))).unwrap();
    let mut index = 2;
    while wal.segments().len() < 3 {
        block_on(wal.append(&[entry(index, 5, 900)], None)).unwrap();
        index += 1;
    }
    block_on(wal.compact(index - 1)).unwrap();
    assert_eq!(wal.segments(), vec![3]);
    drop(wal);
    let wal = open(&disk).unwrap();
    assert_eq!(wal.hard_state(), hs);
    assert_eq!(wal.compacted(), (index - 1, 5));
    assert_eq!(wal.first_index(), index);
    let header = SegmentHeader::decode(&disk.file(&segment_file_name(3)).unwrap()).unwrap();
    assert_eq!(header.sequence, 3);
}

#[test]
fn leftover_prepared_segment_is_removed_on_open() {
    let (disk, model) = log_with_three_segments();
    let prepared = format!("{}.prep", segment_file_name(4));
    disk.put_file(&prepared, &vec![0u8; SEGMENT as usize]);
    let wal = open(&disk).unwrap();
    assert_eq!(observe(&wal), model);
    assert!(!disk.file_names().contains(&prepared));
}

/// Child side of `failed_fdatasync_aborts_the_process_by_default`.
#[test]
#[ignore = "child process of failed_fdatasync_aborts_the_process_by_default"]
fn child_with_failing_fdatasync() {
    let disk = SimDisk::new();
    let wal = block_on(Wal::open(
        disk.dir(),
        WalOptions {
            abort_on_sync_failure: true,
            ..options()
        },
    ))
    .unwrap();
    disk.fail_sync_at(disk.operations() + 1);
    let result = block_on(wal.append(&[entry(1, 1, 10)], None));
    // Reaching this line means the process did not abort.
    println!("append returned {result:?}");
}

#[test]
fn failed_fdatasync_aborts_the_process_by_default() {
    use std::os::unix::process::ExitStatusExt;
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_with_failing_fdatasync",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("fdatasync") && stderr.contains("aborting"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("append returned"));
}

/// At start, a log that does not reach the newest snapshot (a crash while a snapshot from the
/// leader was installed: kept, but the log not yet reset) or holds another term at its index
/// is reset to it; a log consistent with it is left alone.
#[test]
fn an_interrupted_snapshot_install_is_finished_at_start() {
    use lode::snapshot::SnapshotMeta;
    use lode::snapshotter::reconcile_log;
    let meta = |applied_index, applied_term| SnapshotMeta {
        applied_index,
        applied_term,
        revision: 1,
        compact_revision: -1,
        voters: vec![1],
        alarms: Vec::new(),
        members: None,
        leases: Vec::new(),
        auth: lode::auth::AuthStore::new(),
    };
    let filled = || {
        let disk = SimDisk::new();
        let wal = open(&disk).unwrap();
        let entries: Vec<_> = (1..=10).map(|i| entry(i, 1, 32)).collect();
        block_on(wal.append(&entries, None)).unwrap();
        (disk, wal)
    };
    // Consistent: untouched.
    let (_disk, wal) = filled();
    block_on(reconcile_log(&wal, &meta(6, 1))).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 10));
    // Beyond the log's end: reset, durably.
    let (disk, wal) = filled();
    block_on(reconcile_log(&wal, &meta(20, 2))).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (21, 20));
    assert_eq!(wal.term(20).unwrap(), 2);
    drop(wal);
    let wal = open(&disk).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.term(20).unwrap()),
        (21, 20, 2)
    );
    // Another term at the snapshot's index: reset.
    let (_disk, wal) = filled();
    block_on(reconcile_log(&wal, &meta(8, 2))).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (9, 8));
    assert_eq!(wal.term(8).unwrap(), 2);
}

/// raft-rs reads entries back as soon as a Ready is handed back, before they are durable: the
/// storage serves staged entries ahead of the log (including a suffix that replaces durable
/// entries), and forgets them once the log holds them.
#[test]
fn storage_serves_staged_entries_until_they_are_durable() {
    use lode::replica::entry::{to_log_entry, to_raft_entry};
    use lode::replica::storage::LogStorage;
    use raft::{GetEntriesContext, Storage};
    use std::rc::Rc;
    let disk = SimDisk::new();
    let wal = Rc::new(open(&disk).unwrap());
    let durable: Vec<_> = (1..=5).map(|i| entry(i, 1, 16)).collect();
    block_on(wal.append(&durable, None)).unwrap();
    let storage = LogStorage::new(wal.clone(), Default::default(), 0);
    let raft_entries = |from: u64, to: u64, term: u64| -> Vec<raft::eraftpb::Entry> {
        (from..=to)
            .map(|i| to_raft_entry(entry(i, term, 16)))
            .collect()
    };
    let read = |low: u64, high: u64| -> Vec<(u64, u64)> {
        storage
            .entries(low, high, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    };
    // Staged 6..=8 (term 1): readable before durable.
    let staged = raft_entries(6, 8, 1);
    let logged: Vec<_> = staged.iter().map(|e| to_log_entry(e).unwrap()).collect();
    let first_write = wal.stage_append(&logged, None).unwrap().unwrap();
    storage.stage(&staged);
    assert_eq!(storage.last_index().unwrap(), 8);
    assert_eq!(wal.last_index(), 5);
    assert_eq!(storage.term(7).unwrap(), 1);
    assert_eq!(read(4, 9), vec![(4, 1), (5, 1), (6, 1), (7, 1), (8, 1)]);
    // A new leader's entries replace 7.. before anything is durable: 7..=7 at term 2.
    let replacing = raft_entries(7, 7, 2);
    let logged: Vec<_> = replacing.iter().map(|e| to_log_entry(e).unwrap()).collect();
    let second_write = wal.stage_append(&logged, None).unwrap().unwrap();
    storage.stage(&replacing);
    assert_eq!(storage.last_index().unwrap(), 7);
    assert_eq!(read(5, 8), vec![(5, 1), (6, 1), (7, 2)]);
    assert!(storage.term(8).is_err());
    // The first write lands: 6 is durable as staged and forgotten here; 7 is not (the log
    // still has term 1 there until the second write lands).
    block_on(wal.wait_staged(first_write)).unwrap();
    storage.persisted();
    assert_eq!(read(5, 8), vec![(5, 1), (6, 1), (7, 2)]);
    block_on(wal.wait_staged(second_write)).unwrap();
    storage.persisted();
    assert_eq!(wal.last_index(), 7);
    assert_eq!(storage.last_index().unwrap(), 7);
    assert_eq!(storage.term(7).unwrap(), 2);
    assert_eq!(read(1, 8).len(), 7);
}
