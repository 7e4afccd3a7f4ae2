//! Taking and loading snapshots: the I/O around the pure format of `crate::snapshot`.
//!
//! Taking one (on the consensus core, in a background task): every shard exports its key
//! histories as of one revision R in bounded steps while writes go on; the blocks go to
//! `snap/<applied index>.snap.tmp`, which is synced, renamed and the directory synced. Only then
//! may the log be compacted. If any shard's compaction point moves during the export (a
//! compaction could drop history the cut still needs), the snapshot is abandoned and retried
//! later.
//!
//! Loading one (at start, before Raft runs): the newest `*.snap` is read whole, every checksum
//! verified, and its key histories sent to their shards; a damaged newest snapshot stops the
//! node with the file and offset (the log before it may already be compacted away).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::io::AsyncWriteExt;
use glommio::io::{DmaStreamWriter, DmaStreamWriterBuilder, OpenOptions};

use crate::api::error::ServerError;
use crate::shard::route::{unexpected_reply, Router};
use crate::shard::{CoreMessage, Reply};
use crate::snapshot::{self, SnapshotMeta, SnapshotReader};

/// Bytes a shard encodes per export step: bounds how long one step holds its core (about a
/// hundred microseconds) and is the unit the writes are paced in.
const EXPORT_STEP_BYTES: usize = 256 << 10;

/// Name prefix of the files `snapshot save` streams from (not snapshots to restart from).
pub const EXPORT_PREFIX: &str = "export-";

/// Name prefix of snapshots received from the leader and not yet installed.
pub const RECEIVED_PREFIX: &str = "received-";

/// File name of the snapshot at `applied_index`.
pub fn snapshot_file_name(applied_index: u64) -> String {
    format!("{applied_index:020}.snap")
}

/// File name of a snapshot at `applied_index` received from the leader, before it is
/// installed (then renamed to `snapshot_file_name`).
pub fn received_file_name(applied_index: u64) -> String {
    format!("{RECEIVED_PREFIX}{applied_index:020}.snap")
}

fn io(operation: &str, path: &Path, error: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("{operation} {}: {error}", path.display()))
}

/// Writes a snapshot of every shard at `meta.revision` into `dir`; returns `Ok(false)` when it
/// had to be abandoned because a compaction ran meanwhile.
pub async fn take(
    dir: &Path,
    meta: &SnapshotMeta,
    router: &Rc<Router>,
) -> Result<bool, ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let written = write(
        &dir.join(snapshot_file_name(meta.applied_index)),
        meta,
        router,
    )
    .await?;
    if written {
        sync_dir(dir).await?;
        remove_older_than(dir, meta.applied_index);
    }
    Ok(written)
}

/// A new (or emptied) file at `path` and a direct-I/O stream writing it from the start: how
/// snapshot files, written here or received from the leader, are made.
pub async fn create_stream(path: &Path) -> glommio::Result<DmaStreamWriter, ()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await?;
    Ok(DmaStreamWriterBuilder::new(file).build())
}

/// Writes a snapshot of every shard at `meta.revision` to `final_path` (through a synced
/// temporary file renamed into place; the directory is not synced); `Ok(false)` when it had to
/// be abandoned.
pub async fn write(
    final_path: &Path,
    meta: &SnapshotMeta,
    router: &Rc<Router>,
) -> Result<bool, ServerError> {
    let temporary = final_path.with_extension("snap.tmp");
    let mut writer = create_stream(&temporary)
        .await
        .map_err(|e| io("creating", &temporary, e))?;
    let mut buffer = Vec::new();
    snapshot::encode_header(meta, &mut buffer);
    writer
        .write_all(&buffer)
        .await
        .map_err(|e| io("writing", &temporary, e))?;
    let mut records: u32 = 0;
    let mut abandoned = false;
    'cores: for core in 0..router.cores() {
        let mut from = None;
        loop {
            let answer = router
                .ask(core, |reply| CoreMessage::Export {
                    revision: meta.revision,
                    from: from.take(),
                    max_bytes: EXPORT_STEP_BYTES,
                    reply,
                })
                .await?;
            let Reply::Exported {
                block,
                records: written,
                next,
                compact_revision,
            } = answer
            else {
                return Err(unexpected_reply("Export"));
            };
            if compact_revision != meta.compact_revision {
                abandoned = true;
                break 'cores;
            }
            records += written;
            if !block.is_empty() {
                writer
                    .write_all(&block)
                    .await
                    .map_err(|e| io("writing", &temporary, e))?;
                // Paced like segment preparation, so the commit path's fdatasyncs get the disk.
                glommio::timer::sleep(crate::wal::io::BACKGROUND_WRITE_PAUSE).await;
            }
            match next {
                Some(cursor) => from = Some(cursor),
                None => break,
            }
            // The export shares the core with the commit path: step aside between steps (the
            // paced write above has usually done so already).
            glommio::executor().yield_task_queue_now().await;
        }
    }
    if abandoned {
        let _ = writer.close().await;
        let _ = std::fs::remove_file(&temporary);
        return Ok(false);
    }
    buffer.clear();
    snapshot::encode_end(records, &mut buffer);
    writer
        .write_all(&buffer)
        .await
        .map_err(|e| io("writing", &temporary, e))?;
    writer
        .sync()
        .await
        .map_err(|e| io("syncing", &temporary, e))?;
    writer
        .close()
        .await
        .map_err(|e| io("closing", &temporary, e))?;
    glommio::io::rename(&temporary, final_path)
        .await
        .map_err(|e| io("renaming", &temporary, e))?;
    Ok(true)
}

/// A read-only mapping of the whole file at `path`, read ahead sequentially: a snapshot is
/// loaded through it a block at a time, so loading never holds the file in the heap.
fn map_file(path: &Path) -> Result<Bytes, ServerError> {
    let file = std::fs::File::open(path).map_err(|e| io("opening", path, e))?;
    // SAFETY: snapshot files are complete and synced before they are loaded and never written
    // again (only renamed or removed, which keeps mapped pages valid), so the mapping behaves
    // as immutable memory.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io("mapping", path, e))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map))
}

/// A key history that owns its bytes: records read through a mapping are copied out, so the
/// shards never pin a snapshot file (whose disk space would then outlive its removal).
fn owned((key, versions): snapshot::KeyHistory) -> snapshot::KeyHistory {
    let key = Bytes::copy_from_slice(&key);
    let versions = versions
        .into_iter()
        .map(|mut version| {
            if let Some(pair) = version.pair.as_mut() {
                // Every version shares the one copy of its key.
                pair.key = if pair.key == key {
                    key.clone()
                } else {
                    Bytes::copy_from_slice(&pair.key)
                };
                pair.value = Bytes::copy_from_slice(&pair.value);
            }
            version
        })
        .collect();
    (key, versions)
}

async fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| io("opening", dir, e))?;
    directory.sync().await.map_err(|e| io("syncing", dir, e))?;
    let _ = directory.close().await;
    Ok(())
}

/// Snapshot files in `dir`, oldest first, with their applied index.
fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let index = name.strip_suffix(".snap")?.parse::<u64>().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Removes every snapshot older than the one before `applied_index` (the newest), keeping that
/// previous one: should the newest be found damaged at a start, the member falls back to the
/// previous one and the log after it (the log is compacted no further than the previous
/// snapshot for that reason; etcd keeps several snapshots too, `--max-snapshots`).
fn remove_older_than(dir: &Path, applied_index: u64) {
    let older: Vec<(u64, PathBuf)> = list(dir)
        .into_iter()
        .filter(|(index, _)| *index < applied_index)
        .collect();
    let keep = older.last().map(|(index, _)| *index);
    for (index, path) in older {
        if Some(index) != keep {
            let _ = std::fs::remove_file(path);
        }
    }
    // Leftover temporary files of abandoned attempts (an export may be in progress: its files
    // go at the next start).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".snap.tmp")
                && !name.starts_with(EXPORT_PREFIX)
                && !name.starts_with(RECEIVED_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Removes export files a previous run left (it stopped while a client was saving one), and
/// snapshots received but never installed (Raft asks for a new one if it still needs it).
fn remove_leftovers(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(EXPORT_PREFIX) || name.starts_with(RECEIVED_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Loads the newest usable snapshot in `dir` into the shards; `None` when there is none.
///
/// Every block of a snapshot is checked before any of it is loaded. A damaged one is set
/// aside (renamed `*.snap.corrupt`, kept for whoever investigates) and the one before it is
/// tried, then none at all: the log after the chosen snapshot (from `log_first_index` on)
/// must reach it, or the member refuses to start, naming what it found.
pub async fn load_newest(
    dir: &Path,
    router: &Rc<Router>,
    log_first_index: u64,
) -> Result<Option<SnapshotMeta>, ServerError> {
    remove_leftovers(dir);
    let mut damaged = Vec::new();
    for (index, path) in list(dir).into_iter().rev() {
        // A file that cannot be read at all (descriptors or memory short) is not damage:
        // the start fails and the file stays as it is.
        let bytes = map_file(&path)?;
        match check(bytes) {
            Ok(()) => {
                if !damaged.is_empty() {
                    if log_first_index > index + 1 {
                        return Err(unrecoverable(dir, &damaged, log_first_index));
                    }
                    tracing::warn!(
                        snapshot = %path.display(),
                        "starting from an older snapshot and the log after it"
                    );
                }
                return load(&path, router).await.map(Some);
            }
            Err(error) => {
                let aside = path.with_extension("snap.corrupt");
                tracing::error!(
                    snapshot = %path.display(),
                    %error,
                    set_aside_as = %aside.display(),
                    "a snapshot is damaged: setting it aside and trying the one before it"
                );
                std::fs::rename(&path, &aside).map_err(|e| io("renaming", &path, e))?;
                damaged.push(format!("{} ({error})", path.display()));
            }
        }
    }
    if !damaged.is_empty() && log_first_index > 1 {
        return Err(unrecoverable(dir, &damaged, log_first_index));
    }
    Ok(None)
}

/// Why a member cannot start after its snapshots were found damaged.
fn unrecoverable(dir: &Path, damaged: &[String], log_first_index: u64) -> ServerError {
    ServerError::Internal(format!(
        "snapshot corrupted: {}; no older snapshot in {} that the log (which starts at index \
         {log_first_index}) reaches: this member's data cannot be rebuilt here; remove the \
         member and add it back with an empty data dir, or restore from a backup",
        damaged.join("; "),
        dir.display()
    ))
}

/// Reads every block of a snapshot file's `bytes`, checking each, without loading any.
fn check(bytes: Bytes) -> Result<(), String> {
    let (_, mut reader) = SnapshotReader::open(bytes).map_err(|e| e.to_string())?;
    while reader.next_block().map_err(|e| e.to_string())?.is_some() {}
    Ok(())
}

/// Loads the snapshot at `path` into the shards: each core builds a new shard from the file's
/// key histories and puts it in place of its own once the whole file was read and checked.
pub async fn load(path: &Path, router: &Rc<Router>) -> Result<SnapshotMeta, ServerError> {
    let bytes = map_file(path)?;
    let refuse = |error: snapshot::SnapshotError| {
        ServerError::Internal(format!("snapshot {} is unusable: {error}", path.display()))
    };
    let (meta, mut reader) = SnapshotReader::open(bytes).map_err(refuse)?;
    while let Some(block) = reader.next_block().map_err(refuse)? {
        let mut per_core: Vec<Vec<snapshot::KeyHistory>> = vec![Vec::new(); router.cores()];
        for history in block {
            let core = router.owner(&history.0);
            per_core[core].push(owned(history));
        }
        for (core, keys) in per_core.into_iter().enumerate() {
            if !keys.is_empty() {
                router.deliver(core, CoreMessage::Import { keys }).await?;
            }
        }
    }
    for core in 0..router.cores() {
        router
            .deliver(
                core,
                CoreMessage::Restored {
                    revision: meta.revision,
                    compact_revision: meta.compact_revision,
                },
            )
            .await?;
    }
    Ok(meta)
}

/// Brings the log in line with the newest snapshot at start. A snapshot's entries are always
/// in the log or behind its compaction point, except after a crash while a snapshot from the
/// leader was being installed: the snapshot was kept but the log not yet reset. The log then
/// ends before the snapshot, or holds another term at its index (entries the leader replaced);
/// the snapshot is committed state, so the log is reset to it, as the install would have.
pub async fn reconcile_log<D: crate::wal::io::LogDir>(
    wal: &crate::wal::Wal<D>,
    meta: &SnapshotMeta,
) -> Result<(), ServerError> {
    let (index, term) = (meta.applied_index, meta.applied_term);
    let consistent = match wal.term(index) {
        Ok(logged) => logged == term,
        // Behind the compaction point: the start checks refuse a log that misses entries.
        Err(crate::wal::WalError::Compacted { .. }) => true,
        Err(_) => false,
    };
    if !consistent && wal.last_index() == 0 {
        // A data dir made by `lodectl snapshot restore`: the log begins at the snapshot.
        tracing::info!(
            index,
            term,
            "the log is empty: it starts at the newest snapshot"
        );
        wal.reset_to_snapshot(index, term)
            .await
            .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
    } else if !consistent {
        tracing::warn!(
            index,
            term,
            last_index = wal.last_index(),
            "the log does not reach the newest snapshot (a snapshot install was interrupted): \
             resetting the log to it"
        );
        wal.reset_to_snapshot(index, term)
            .await
            .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
    }
    Ok(())
}

/// Makes the installed snapshot received from the leader at `applied_index` this member's
/// newest snapshot (renamed, directory synced, older ones removed); returns its size.
pub async fn keep_received(dir: &Path, applied_index: u64) -> Result<u64, ServerError> {
    let received = dir.join(received_file_name(applied_index));
    let path = dir.join(snapshot_file_name(applied_index));
    glommio::io::rename(&received, &path)
        .await
        .map_err(|e| io("renaming", &received, e))?;
    sync_dir(dir).await?;
    remove_older_than(dir, applied_index);
    Ok(std::fs::metadata(&path).map_or(0, |m| m.len()))
}
