//! etcd's backend database, the bbolt file an etcd snapshot is, to and from lode's keyspace:
//! how users move between etcd and lode. Pure (bytes in, bytes out; `bbolt` does the file
//! format).
//!
//! What etcd keeps in it (etcd 3.4/3.5, `server/mvcc`, `server/lease`, `server/etcdserver/cindex`):
//! - bucket `key`: every version of every key above the compaction point, keyed by its
//!   revision (8-byte big-endian main, `_`, 8-byte big-endian sub; a deletion adds `t`), the
//!   value an `mvccpb.KeyValue` (a deletion's holds only the key);
//! - bucket `lease`: 8-byte big-endian lease ID to `leasepb.Lease` {ID, TTL, RemainingTTL};
//!   a key belongs to the lease named by its newest live version;
//! - bucket `meta`: `consistent_index` and `term` (8-byte big-endian), `finishedCompactRev`
//!   and `scheduledCompactRev` (revision keys);
//! - membership, auth, alarms and the cluster version, which a restore replaces or etcd
//!   recreates: lode neither reads nor writes them.
//!
//! Invariants kept both ways: every version keeps its revision, create and mod revisions,
//! version, value and lease; the current revision is the newest version's or the compaction
//! point, whichever is higher; leases keep their TTL and what they had left.

use bytes::Bytes;
use prost::Message;

use crate::bbolt::{self, BucketData, Db};
use crate::lease::SavedLease;
use crate::mvcc::kv::KeyValue;
use crate::mvcc::shard::Version;
use crate::snapshot::{self, KeyHistory, SnapshotMeta};
use lode_protocol::etcd::mvccpb;

const KEY_BUCKET: &[u8] = b"key";
const LEASE_BUCKET: &[u8] = b"lease";
const META_BUCKET: &[u8] = b"meta";
const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const TERM: &[u8] = b"term";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, Message)]
struct LeaseRecord {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// Why an etcd database cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EtcdDbError {
    #[error("not a usable bbolt database: {0}")]
    Bbolt(#[from] bbolt::Error),
    #[error("etcd's database has no `key` bucket")]
    NoKeyBucket,
    #[error("bucket `{bucket}`, entry {index}: {reason}")]
    Entry {
        bucket: &'static str,
        index: usize,
        reason: String,
    },
}

/// A keyspace as both stores see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyspace {
    /// The current revision.
    pub revision: i64,
    /// The compaction point (0: never compacted).
    pub compact_revision: i64,
    /// etcd's consistent index (the Raft index applied): lode's applied index.
    pub applied_index: u64,
    /// The Raft term of that index (0 when unknown: etcd 3.4 does not keep it).
    pub term: u64,
    /// Every key's history, keys in byte order, versions in revision order.
    pub histories: Vec<KeyHistory>,
    /// The leases, by ID, with their keys.
    pub leases: Vec<SavedLease>,
    /// Users, roles, permissions, whether auth is on, and the auth revision.
    pub auth: crate::auth::AuthStore,
}

/// True when `bytes` start like a bbolt database (an etcd snapshot) rather than lode's format.
pub fn is_bbolt(bytes: &[u8]) -> bool {
    !bytes.starts_with(&snapshot::SNAPSHOT_MAGIC)
        && bytes.len() >= 20
        && bytes[16..20] == bbolt::format::MAGIC.to_le_bytes()
}

/// etcd's 17-byte revision key (18 with the deletion mark).
fn revision_key(main: i64, sub: i64, deletion: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if deletion {
        key.push(b't');
    }
    key
}

/// (main, sub, deletion) of a revision key.
fn parse_revision_key(key: &[u8]) -> Option<(i64, i64, bool)> {
    let deletion = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((main, sub, deletion))
}

fn be_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// Reads etcd's database (without a snapshot's SHA-256 trailer) into a keyspace; every entry
/// of the buckets lode uses is checked.
pub fn read(db: &[u8]) -> Result<Keyspace, EtcdDbError> {
    let db = Db::open(db)?;
    db.check()?;
    let keys = db.bucket(KEY_BUCKET)?.ok_or(EtcdDbError::NoKeyBucket)?;
    let entry_error = |bucket, index, reason: String| EtcdDbError::Entry {
        bucket,
        index,
        reason,
    };
    let mut histories: std::collections::BTreeMap<Bytes, Vec<Version>> = Default::default();
    let mut newest = (0i64, 0i64);
    for (index, entry) in keys.iter().enumerate() {
        let entry = entry?;
        let (main, sub, deletion) = parse_revision_key(entry.key).ok_or_else(|| {
            entry_error("key", index, format!("{:?} is not a revision", entry.key))
        })?;
        if main < 1 || sub < 0 || (main, sub) <= newest {
            return Err(entry_error(
                "key",
                index,
                format!("revision {main}_{sub} out of order"),
            ));
        }
        newest = (main, sub);
        let kv = mvccpb::KeyValue::decode(entry.value).map_err(|error| {
            entry_error("key", index, format!("value is not a KeyValue: {error}"))
        })?;
        if kv.key.is_empty() {
            return Err(entry_error("key", index, "empty key".to_string()));
        }
        let key = kv.key;
        let pair = (!deletion).then(|| KeyValue {
            key: key.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: kv.value,
            lease: kv.lease,
        });
        if let Some(pair) = &pair {
            if pair.mod_revision != main || pair.version < 1 || pair.create_revision > main {
                return Err(entry_error(
                    "key",
                    index,
                    format!("revisions of {:?} do not match its key", pair.key),
                ));
            }
        }
        histories
            .entry(key)
            .or_default()
            .push(Version { main, sub, pair });
    }
    let mut compact_revision = 0;
    let mut applied_index = 0;
    let mut term = 0;
    if let Some(meta) = db.bucket(META_BUCKET)? {
        // A compaction etcd scheduled may not have finished when the snapshot was taken
        // (some old versions gone, others not): etcd finishes it when it loads the database,
        // and so does this import, below.
        for name in [FINISHED_COMPACT, SCHEDULED_COMPACT] {
            if let Some(value) = meta.get(name)? {
                let point = parse_revision_key(value).ok_or_else(|| {
                    entry_error("meta", 0, String::from_utf8_lossy(name).into_owned())
                })?;
                compact_revision = compact_revision.max(point.0);
            }
        }
        if let Some(value) = meta.get(CONSISTENT_INDEX)? {
            applied_index = be_u64(value)
                .ok_or_else(|| entry_error("meta", 0, "consistent_index".to_string()))?;
        }
        if let Some(value) = meta.get(TERM)? {
            term = be_u64(value).ok_or_else(|| entry_error("meta", 0, "term".to_string()))?;
        }
    }
    let mut leases = Vec::new();
    if let Some(bucket) = db.bucket(LEASE_BUCKET)? {
        for (index, entry) in bucket.iter().enumerate() {
            let entry = entry?;
            let record = LeaseRecord::decode(entry.value).map_err(|error| {
                entry_error("lease", index, format!("value is not a Lease: {error}"))
            })?;
            if be_u64(entry.key) != Some(record.id as u64) || record.id == 0 {
                return Err(entry_error("lease", index, "malformed lease".to_string()));
            }
            if !(1..=crate::lease::MAX_TTL_SECONDS).contains(&record.ttl) {
                return Err(entry_error(
                    "lease",
                    index,
                    format!("lease {:x} has a TTL of {} s", record.id, record.ttl),
                ));
            }
            let remaining = if record.remaining_ttl > 0 {
                record.remaining_ttl.min(record.ttl)
            } else {
                record.ttl
            };
            leases.push(SavedLease {
                id: record.id,
                ttl: record.ttl,
                remaining_ms: remaining.saturating_mul(1000),
                generation: 0,
                keys: Vec::new(),
            });
        }
    }
    leases.sort_by_key(|lease| lease.id);
    let auth = read_auth(&db)?;
    if compact_revision > 0 {
        for versions in histories.values_mut() {
            let start = crate::mvcc::shard::compacted_start(versions, compact_revision);
            versions.drain(..start);
        }
        histories.retain(|_, versions| !versions.is_empty());
    }
    for (key, versions) in &histories {
        let live_lease = versions
            .last()
            .and_then(|version| version.pair.as_ref())
            .map_or(0, |pair| pair.lease);
        if live_lease != 0 {
            if let Ok(at) = leases.binary_search_by_key(&live_lease, |lease| lease.id) {
                leases[at].keys.push(key.clone());
            }
        }
    }
    let revision = newest.0.max(compact_revision).max(1);
    Ok(Keyspace {
        revision,
        compact_revision,
        applied_index,
        term,
        histories: histories.into_iter().collect(),
        leases,
        auth,
    })
}

/// etcd's auth buckets, when present, as lode's auth store (users, roles, permissions, the
/// enabled flag and the auth revision); absent ones read as an empty store with auth off.
fn read_auth(db: &Db) -> Result<crate::auth::AuthStore, EtcdDbError> {
    use crate::auth::store::{ETCD_AUTH_BUCKET, ETCD_ROLES_BUCKET, ETCD_USERS_BUCKET};
    let mut contents: [Vec<(Vec<u8>, Vec<u8>)>; 3] = Default::default();
    for (slot, name) in [ETCD_AUTH_BUCKET, ETCD_USERS_BUCKET, ETCD_ROLES_BUCKET]
        .into_iter()
        .enumerate()
    {
        if let Some(bucket) = db.bucket(name)? {
            for entry in bucket.iter() {
                let entry = entry?;
                contents[slot].push((entry.key.to_vec(), entry.value.to_vec()));
            }
        }
    }
    fn borrowed(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        pairs
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect()
    }
    crate::auth::AuthStore::from_etcd_buckets(
        &borrowed(&contents[0]),
        &borrowed(&contents[1]),
        &borrowed(&contents[2]),
    )
    .map_err(|error| EtcdDbError::Entry {
        bucket: "auth",
        index: 0,
        reason: error.to_string(),
    })
}

/// Writes the keyspace as etcd's database (without the SHA-256 a snapshot download appends).
pub fn write(keyspace: &Keyspace) -> Result<Vec<u8>, bbolt::Error> {
    let mut versions: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (key, history) in &keyspace.histories {
        for version in history {
            let (revision, value) = match &version.pair {
                Some(pair) => (
                    revision_key(version.main, version.sub, false),
                    mvccpb::KeyValue {
                        key: key.clone(),
                        create_revision: pair.create_revision,
                        mod_revision: pair.mod_revision,
                        version: pair.version,
                        value: pair.value.clone(),
                        lease: pair.lease,
                    },
                ),
                None => (
                    revision_key(version.main, version.sub, true),
                    mvccpb::KeyValue {
                        key: key.clone(),
                        ..Default::default()
                    },
                ),
            };
            versions.push((revision, value.encode_to_vec()));
        }
    }
    versions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut leases: Vec<(Vec<u8>, Vec<u8>)> = keyspace
        .leases
        .iter()
        .map(|lease| {
            let record = LeaseRecord {
                id: lease.id,
                ttl: lease.ttl,
                // Whole seconds left, never rounded down to nothing.
                remaining_ttl: lease.remaining_ms.max(0).saturating_add(999) / 1000,
            };
            (
                (lease.id as u64).to_be_bytes().to_vec(),
                record.encode_to_vec(),
            )
        })
        .collect();
    leases.sort();
    let mut meta = vec![
        (
            CONSISTENT_INDEX.to_vec(),
            keyspace.applied_index.to_be_bytes().to_vec(),
        ),
        (TERM.to_vec(), keyspace.term.to_be_bytes().to_vec()),
    ];
    if keyspace.compact_revision > 0 {
        let point = revision_key(keyspace.compact_revision, 0, false);
        meta.push((FINISHED_COMPACT.to_vec(), point.clone()));
        meta.push((SCHEDULED_COMPACT.to_vec(), point));
    }
    meta.sort();
    let mut buckets = vec![
        (KEY_BUCKET.to_vec(), BucketData::from_pairs(versions)),
        (LEASE_BUCKET.to_vec(), BucketData::from_pairs(leases)),
        (META_BUCKET.to_vec(), BucketData::from_pairs(meta)),
    ];
    for (name, pairs) in keyspace.auth.etcd_buckets() {
        buckets.push((name, BucketData::from_pairs(pairs)));
    }
    buckets.sort_by(|a, b| a.0.cmp(&b.0));
    let root = BucketData {
        sequence: 0,
        pairs: Vec::new(),
        buckets,
    };
    bbolt::write_db_to_vec(&root, &bbolt::WriteOptions::default())
}

/// The keyspace a lode snapshot holds (`meta` and its key histories, records of one key
/// merged).
pub fn from_lode(meta: &SnapshotMeta, records: Vec<KeyHistory>) -> Keyspace {
    let mut histories: std::collections::BTreeMap<Bytes, Vec<Version>> = Default::default();
    for (key, versions) in records {
        histories.entry(key).or_default().extend(versions);
    }
    Keyspace {
        revision: meta.revision,
        compact_revision: meta.compact_revision,
        applied_index: meta.applied_index,
        term: meta.applied_term,
        histories: histories.into_iter().collect(),
        leases: meta.leases.clone(),
        auth: meta.auth.clone(),
    }
}

/// The keyspace as a lode snapshot file (no membership: a restore names it).
pub fn to_lode(keyspace: &Keyspace) -> Vec<u8> {
    let meta = SnapshotMeta {
        applied_index: keyspace.applied_index.max(1),
        applied_term: keyspace.term.max(1),
        revision: keyspace.revision,
        compact_revision: keyspace.compact_revision,
        voters: Vec::new(),
        alarms: Vec::new(),
        members: None,
        leases: keyspace.leases.clone(),
        auth: keyspace.auth.clone(),
    };
    let mut out = Vec::new();
    snapshot::encode_header(&meta, &mut out);
    let mut records = 0u32;
    let mut block = snapshot::BlockWriter::begin(&mut out);
    for (key, versions) in &keyspace.histories {
        block.push_key(key, versions);
        if block.payload_len() >= 256 << 10 {
            records += block.finish();
            block = snapshot::BlockWriter::begin(&mut out);
        }
    }
    records += block.finish();
    snapshot::encode_end(records, &mut out);
    out
}

/// What `etcdctl snapshot status` reports of an etcd database: (hash, revision, total keys,
/// total size). The hash is etcd's: CRC-32C over every top-level bucket's name and its keys and
/// values, in order.
pub fn status(db: &[u8]) -> Result<(u32, i64, u64, u64), EtcdDbError> {
    let db = Db::open(db)?;
    db.check()?;
    let mut hash = 0u32;
    let mut revision = 0i64;
    let mut total_keys = 0u64;
    for entry in db.root().iter() {
        let entry = entry?;
        hash = crc32c::crc32c_append(hash, entry.key);
        let is_key_bucket = entry.key == KEY_BUCKET;
        let bucket = db.root().child(&entry)?;
        for pair in bucket.iter() {
            let pair = pair?;
            hash = crc32c::crc32c_append(hash, pair.key);
            if !pair.is_bucket() {
                hash = crc32c::crc32c_append(hash, pair.value);
            }
            if is_key_bucket {
                if let Some((main, _, _)) = parse_revision_key(pair.key) {
                    revision = main;
                }
            }
            total_keys += 1;
        }
    }
    Ok((hash, revision, total_keys, db.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(main: i64, sub: i64, key: &str, value: Option<(&str, i64, i64, i64)>) -> Version {
        Version {
            main,
            sub,
            pair: value.map(|(value, create, version, lease)| KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                create_revision: create,
                mod_revision: main,
                version,
                value: Bytes::copy_from_slice(value.as_bytes()),
                lease,
            }),
        }
    }

    fn sample() -> Keyspace {
        Keyspace {
            revision: 9,
            compact_revision: 3,
            applied_index: 42,
            term: 7,
            histories: vec![
                (
                    Bytes::from_static(b"a"),
                    vec![
                        version(3, 0, "a", Some(("1", 2, 2, 0))),
                        version(5, 1, "a", Some(("2", 2, 3, 0))),
                        version(6, 0, "a", None),
                    ],
                ),
                (
                    Bytes::from_static(b"b"),
                    vec![version(5, 0, "b", Some(("x", 5, 1, 0x77)))],
                ),
                (
                    Bytes::from_static(b"c"),
                    vec![version(9, 0, "c", Some(("y", 9, 1, 0)))],
                ),
            ],
            leases: vec![SavedLease {
                id: 0x77,
                ttl: 60,
                remaining_ms: 30_000,
                generation: 0,
                keys: vec![Bytes::from_static(b"b")],
            }],
            auth: crate::auth::store::sample_store(),
        }
    }

    #[test]
    fn a_keyspace_survives_the_round_trip_through_etcds_database() {
        let keyspace = sample();
        let db = write(&keyspace).expect("written");
        assert!(is_bbolt(&db));
        assert_eq!(read(&db).expect("read"), keyspace);
        let (_, revision, keys, size) = status(&db).expect("status");
        assert_eq!(revision, 9);
        // 5 versions, 1 lease, 4 meta entries; auth: 2 settings, 1 role, 2 users.
        assert_eq!(keys, 15);
        assert_eq!(size as usize, db.len());
    }

    #[test]
    fn a_keyspace_survives_the_round_trip_through_lodes_snapshot() {
        let keyspace = sample();
        let file = to_lode(&keyspace);
        assert!(!is_bbolt(&file));
        let (meta, mut reader) = snapshot::SnapshotReader::open(Bytes::from(file)).expect("lode");
        let mut records = Vec::new();
        while let Some(block) = reader.next_block().expect("block") {
            records.extend(block);
        }
        assert_eq!(from_lode(&meta, records), keyspace);
    }

    #[test]
    fn a_compaction_etcd_had_not_finished_is_finished_by_the_import() {
        let mut keyspace = sample();
        // Written with the compaction point at 3, then the point moved to 5 as if etcd had
        // scheduled a compaction at 5 and not yet removed `a`'s version at 3.
        let mut db = write(&keyspace).expect("written");
        let root = Db::open(&db).expect("open").load().expect("load");
        let mut root = root;
        for (name, bucket) in root.buckets.iter_mut() {
            if name.as_slice() == META_BUCKET {
                for (key, value) in bucket.pairs.iter_mut() {
                    if key.as_slice() == SCHEDULED_COMPACT {
                        *value = revision_key(5, 0, false);
                    }
                }
            }
        }
        db = bbolt::write_db_to_vec(&root, &bbolt::WriteOptions::default()).expect("db");
        let read = read(&db).expect("read");
        assert_eq!(read.compact_revision, 5);
        keyspace.compact_revision = 5;
        keyspace.histories[0].1.remove(0);
        assert_eq!(read, keyspace);
    }

    #[test]
    fn damaged_databases_are_refused_with_the_entry_named() {
        let mut keyspace = sample();
        // A version whose mod revision is not its key's revision.
        keyspace.histories[1].1[0]
            .pair
            .as_mut()
            .expect("pair")
            .mod_revision = 4;
        let db = write(&keyspace).expect("written");
        let error = read(&db).expect_err("refused").to_string();
        assert!(error.contains("bucket `key`"), "{error}");
        assert!(read(&[0u8; 100]).is_err());
        let no_keys =
            bbolt::write_db_to_vec(&BucketData::default(), &bbolt::WriteOptions::default())
                .expect("empty db");
        assert!(matches!(read(&no_keys), Err(EtcdDbError::NoKeyBucket)));
        let mut zero_ttl = sample();
        zero_ttl.leases[0].ttl = 0;
        let error = read(&write(&zero_ttl).expect("written")).expect_err("refused");
        assert!(error.to_string().contains("TTL of 0"), "{error}");
    }
}
