//! Fuzz targets for what is read from files: log segments, lode snapshots and etcd snapshot
//! databases, each with its corpus.

use bytes::Bytes;

// ----- log segments -----

pub(super) fn segment_corpus() -> Vec<Vec<u8>> {
    use crate::wal::format::{encode_record, record_size, RecordHeader, RecordKind, SegmentHeader};
    let mut corpus = Vec::new();
    for count in [1u64, 5] {
        // A preallocated segment of the smallest size: records, then zeroes.
        let mut bytes = vec![0u8; crate::wal::format::SEGMENT_SIZE_MIN as usize];
        SegmentHeader {
            sequence: 3,
            segment_size: crate::wal::format::SEGMENT_SIZE_MIN,
        }
        .encode(&mut bytes);
        let mut offset = crate::wal::format::RECORDS_START as usize;
        let batch_start = offset as u32;
        for index in 1..=count {
            let payload = vec![index as u8; 40 + index as usize * 10];
            let header = RecordHeader {
                kind: RecordKind::EntryNormal,
                term: 2,
                index,
                payload_len: payload.len() as u32,
                batch_start,
            };
            if offset + record_size(payload.len()) > bytes.len() {
                break;
            }
            offset += encode_record(&mut bytes[offset..], 3, &header, &payload);
        }
        corpus.push(bytes);
    }
    corpus
}

pub(super) fn segment_run(data: &[u8]) {
    let _ = crate::wal::recovery::scan_segment(data, 3, true);
    let _ = crate::wal::recovery::scan_segment(data, 3, false);
}

// ----- lode snapshots -----

fn sample_shard() -> crate::mvcc::shard::MvccShard {
    let mut shard = crate::mvcc::shard::MvccShard::new();
    for revision in 2..20i64 {
        let key = Bytes::from(format!("k{}", revision % 5));
        if revision % 7 == 0 {
            shard.apply(revision, 0, key, None);
        } else {
            shard.put(revision, 0, key, Bytes::from(revision.to_string()), 0);
        }
    }
    shard
}

pub(super) fn snapshot_corpus() -> Vec<Vec<u8>> {
    let shard = sample_shard();
    let meta = crate::snapshot::SnapshotMeta {
        applied_index: 30,
        applied_term: 2,
        revision: 19,
        compact_revision: 3,
        voters: vec![1, 2, 3],
        alarms: Vec::new(),
        members: None,
        leases: Vec::new(),
        auth: crate::auth::AuthStore::new(),
    };
    [80, 100_000]
        .into_iter()
        .map(|block_bytes| crate::snapshot::encode_shard(&meta, &shard, block_bytes))
        .collect()
}

pub(super) fn snapshot_run(data: &[u8]) {
    let Ok((_, mut reader)) = crate::snapshot::SnapshotReader::open(Bytes::copy_from_slice(data))
    else {
        return;
    };
    let mut restored = crate::mvcc::shard::MvccShard::new();
    while let Ok(Some(block)) = reader.next_block() {
        for (key, versions) in block {
            restored.import(key, versions);
        }
    }
}

// ----- etcd snapshot databases -----

pub(super) fn etcd_db_corpus() -> Vec<Vec<u8>> {
    let corpus: Vec<Vec<u8>> = snapshot_corpus()
        .into_iter()
        .filter_map(|file| {
            let (meta, mut reader) =
                crate::snapshot::SnapshotReader::open(Bytes::from(file)).ok()?;
            let mut records = Vec::new();
            while let Ok(Some(block)) = reader.next_block() {
                records.extend(block);
            }
            let keyspace = crate::etcd_db::from_lode(&meta, records);
            crate::etcd_db::write(&keyspace).ok()
        })
        .collect();
    corpus
}

pub(super) fn etcd_db_run(data: &[u8]) {
    let _ = crate::etcd_db::status(data);
    if let Ok(keyspace) = crate::etcd_db::read(data) {
        let _ = crate::etcd_db::to_lode(&keyspace);
    }
}
