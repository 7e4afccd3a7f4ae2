//! `lodectl snapshot restore`: a new data dir from a snapshot, as etcdctl's restore makes one.
//!
//! A snapshot is etcd's database (a bbolt file, as `etcdctl snapshot save` stores it from etcd
//! or from lode, whose Snapshot call writes etcd's format: `etcd_db`), or a file in lode's own
//! snapshot format (as lode before it wrote them); both are restored the same way once read.
//!
//! The snapshot (lode's format, as `lodectl snapshot save` or `etcdctl snapshot save` stored
//! it: the file, zero padding and a SHA-256) is checked whole (the hash, then every block's
//! checksum) before anything is written. The new data dir belongs to a new cluster, named by
//! the bootstrap flags exactly as `lode` derives a new member's identity: the keyspace and its
//! revisions come from the snapshot, the membership from the flags (the snapshot's registry,
//! alarms and Raft voters are replaced). lode then starts from the snapshot alone: its log is
//! created empty and reset to the snapshot's index at the first start.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::members::{Member, Members};
use crate::membership::{self, write_durably, Identity, InitialCluster};
use crate::snapshot::{self, SnapshotReader};
use crate::snapshotter::snapshot_file_name;

/// What a restore made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The new member's identity.
    pub identity: Identity,
    /// The keyspace revision restored.
    pub revision: i64,
    /// Keys restored.
    pub keys: u64,
    /// The snapshot file written in the data dir.
    pub snapshot_path: PathBuf,
}

/// Makes `data_dir` (which must not exist) the data dir of member `name` of the new cluster
/// `cluster`, holding the keyspace of the snapshot in `file`. `check_hash` false skips the
/// SHA-256 of an etcd-shaped download (etcdctl's `--skip-hash-check`); block checksums are
/// always checked.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    cluster: &InitialCluster,
    name: &str,
    check_hash: bool,
) -> Result<Restored, String> {
    if data_dir.exists() {
        return Err(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        ));
    }
    let identity = membership::new_cluster_identity(cluster, name)?;
    let (meta, body, blocks_start, end, keys) = verified(file, check_hash)?;
    let mut meta = meta;
    meta.voters = identity.members.iter().map(|(id, _, _)| id.get()).collect();
    meta.alarms.clear();
    meta.members = Some(Members::new(
        identity
            .members
            .iter()
            .map(|(id, member_name, urls)| Member {
                id: *id,
                name: if *id == identity.member_id {
                    member_name.clone()
                } else {
                    String::new()
                },
                peer_urls: urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            }),
        Default::default(),
    ));
    let mut out = Vec::with_capacity(end);
    snapshot::encode_header(&meta, &mut out);
    out.extend_from_slice(&body[blocks_start..end]);

    let snap_dir = data_dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .map_err(|e| format!("creating {}: {e}", snap_dir.display()))?;
    let snapshot_path = snap_dir.join(snapshot_file_name(meta.applied_index));
    write_durably(&snapshot_path, &out)
        .map_err(|e| format!("writing {}: {e}", snapshot_path.display()))?;
    // The identity last: a data dir without one is not taken for a member's.
    let identity_path = data_dir.join(membership::IDENTITY_FILE);
    write_durably(&identity_path, identity.encode().as_bytes())
        .map_err(|e| format!("writing {}: {e}", identity_path.display()))?;
    Ok(Restored {
        identity,
        revision: meta.revision,
        keys,
        snapshot_path,
    })
}

/// What `lodectl snapshot status` reports of a snapshot file (etcdctl's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC32C of the snapshot's bytes (without an etcd-shaped download's padding and hash).
    pub hash: u32,
    /// The keyspace revision it holds.
    pub revision: i64,
    /// Keys it holds.
    pub total_keys: u64,
    /// Its size in bytes (without padding and hash).
    pub total_size: u64,
}

/// Checks the snapshot in `file` whole, as a restore would, and describes it: an etcd
/// database (what `etcdctl snapshot save` and lode's Snapshot call write) as etcdctl does, a
/// file in lode's own format by its CRC32C.
pub fn status(file: &Path) -> Result<SnapshotStatus, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    if crate::etcd_db::is_bbolt(&bytes) {
        // Checked whole: the SHA-256 too when the file has one (etcdctl's status skips it).
        let db = match crate::bbolt::snapshot::split(&bytes) {
            (_, Some(_)) => etcd_database(&bytes, true, file)?,
            (db, None) => db,
        };
        let (hash, revision, total_keys, total_size) = crate::etcd_db::status(db)
            .map_err(|e| format!("{} is not a usable etcd snapshot: {e}", file.display()))?;
        // The keyspace must read too, as a restore would read it.
        crate::etcd_db::read(db)
            .map_err(|e| format!("{} is not a usable etcd snapshot: {e}", file.display()))?;
        return Ok(SnapshotStatus {
            hash,
            revision,
            total_keys,
            total_size,
        });
    }
    let (meta, body, _, end, keys) = verified(file, true)?;
    Ok(SnapshotStatus {
        hash: crc32c::crc32c(&body[..end]),
        revision: meta.revision,
        total_keys: keys,
        total_size: end as u64,
    })
}

/// Reads the snapshot in `file` (lode's file, or an etcd-shaped download whose SHA-256 is
/// checked unless `check_hash` is false) and checks every block: its meta, the bytes, where
/// its blocks start and its end marker ends, and how many keys it holds.
fn verified(
    file: &Path,
    check_hash: bool,
) -> Result<(snapshot::SnapshotMeta, Bytes, usize, usize, u64), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    if crate::etcd_db::is_bbolt(&bytes) {
        let db = etcd_database(&bytes, check_hash, file)?;
        let keyspace = crate::etcd_db::read(db)
            .map_err(|e| format!("{} is not a usable etcd snapshot: {e}", file.display()))?;
        let converted = Bytes::from(crate::etcd_db::to_lode(&keyspace));
        return read_whole(converted, false)
            .map_err(|e| format!("{}: converting etcd's database: {e}", file.display()));
    }
    let bytes = Bytes::from(bytes);
    let unusable = |error: snapshot::SnapshotError| {
        format!("{} is not a usable lode snapshot: {error}", file.display())
    };
    let read = match snapshot::etcd_shaped_body(&bytes) {
        Some(body) => read_whole(body, true).map_err(unusable)?,
        None => match read_whole(bytes.clone(), false) {
            Ok(read) => read,
            Err(error) if looks_etcd_shaped(&bytes) => {
                if check_hash {
                    return Err(format!(
                        "{}: snapshot file integrity check failed: its SHA-256 does not match \
                         its content (--skip-hash-check restores it anyway if its blocks are \
                         intact)",
                        file.display()
                    ));
                }
                let body = bytes.slice(..bytes.len() - snapshot::ETCD_HASH_LEN);
                read_whole(body, true).map_err(|_| unusable(error))?
            }
            Err(error) => return Err(unusable(error)),
        },
    };
    Ok(read)
}

/// The database of an etcd snapshot (a bbolt file, with the SHA-256 `etcdctl snapshot save`
/// appends), checked as `etcdctl snapshot restore` checks it: the hash must be there and match
/// unless `check_hash` is false.
fn etcd_database<'a>(bytes: &'a [u8], check_hash: bool, file: &Path) -> Result<&'a [u8], String> {
    let (db, hash) = crate::bbolt::snapshot::split(bytes);
    match (hash, check_hash) {
        (_, false) => Ok(db),
        (Some(_), true) => crate::bbolt::snapshot::verify(bytes).map_err(|_| {
            format!(
                "{}: snapshot file integrity check failed: its SHA-256 does not match its \
                 content (--skip-hash-check restores it anyway)",
                file.display()
            )
        }),
        (None, true) => Err(format!(
            "{}: snapshot missing hash but --skip-hash-check=false (a database copied from a \
             member's data dir has none)",
            file.display()
        )),
    }
}

/// True when `bytes` has the length of an etcd-shaped download.
fn looks_etcd_shaped(bytes: &Bytes) -> bool {
    bytes.len() >= snapshot::ETCD_HASH_LEN && (bytes.len() - snapshot::ETCD_HASH_LEN) % 512 == 0
}

/// Reads a whole snapshot, every block checked: its meta, the bytes, where its blocks start and
/// its end marker ends, and how many keys it holds.
fn read_whole(
    body: Bytes,
    padded: bool,
) -> Result<(snapshot::SnapshotMeta, Bytes, usize, usize, u64), snapshot::SnapshotError> {
    let (meta, reader) = SnapshotReader::open(body.clone())?;
    let mut reader = if padded {
        reader.allow_zero_padding()
    } else {
        reader
    };
    let mut keys = 0u64;
    while let Some(block) = reader.next_block()? {
        keys += block.len() as u64;
    }
    let blocks_start = reader.blocks_start();
    let end = reader.end().unwrap_or(body.len());
    Ok((meta, body, blocks_start, end, keys))
}
