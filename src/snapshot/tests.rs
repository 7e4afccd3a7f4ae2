use super::*;
use crate::mvcc::kv::KeyRange;
use crate::mvcc::shard::MvccShard;

fn sample() -> (SnapshotMeta, MvccShard, Vec<u8>) {
    let mut shard = MvccShard::new();
    for rev in 2..60i64 {
        let key = Bytes::from(format!("key{}", rev % 9));
        if rev % 7 == 0 {
            shard.apply(rev, 0, key, None);
        } else {
            shard.put(
                rev,
                0,
                key,
                Bytes::from(vec![rev as u8; (rev % 5) as usize]),
                0,
            );
        }
    }
    let meta = SnapshotMeta {
        applied_index: 77,
        applied_term: 3,
        revision: 59,
        compact_revision: -1,
        voters: vec![1, 2, 3],
        alarms: vec![AlarmMember {
            member_id: 2,
            alarm: AlarmType::Nospace,
        }],
        members: Some(crate::members::Members::new(
            [crate::members::Member {
                id: crate::ids::MemberId::new(1),
                name: "one".into(),
                peer_urls: vec!["http://127.0.0.1:2380".into()],
                client_urls: vec!["http://127.0.0.1:2379".into()],
                is_learner: false,
            }],
            [crate::ids::MemberId::new(7)].into(),
        )),
        leases: vec![
            crate::lease::SavedLease {
                id: 0x694d_7a1b,
                ttl: 60,
                remaining_ms: 41_500,
                generation: 3,
                keys: vec![Bytes::from("key1"), Bytes::from("key2")],
            },
            crate::lease::SavedLease {
                id: -5,
                ttl: 2,
                remaining_ms: 0,
                generation: 0,
                keys: vec![],
            },
        ],
        auth: crate::auth::store::sample_store(),
    };
    let out = encode_shard(&meta, &shard, 300);
    (meta, shard, out)
}

fn load(bytes: Vec<u8>) -> Result<(SnapshotMeta, MvccShard), SnapshotError> {
    let (meta, mut reader) = SnapshotReader::open(Bytes::from(bytes))?;
    let mut shard = MvccShard::new();
    while let Some(block) = reader.next_block()? {
        for (key, versions) in block {
            shard.import(key, versions);
        }
    }
    Ok((meta, shard))
}

#[test]
fn an_etcd_shaped_stream_carries_the_file_padding_and_its_hash() {
    let (meta, _, bytes) = sample();
    let mut hasher = EtcdStreamHasher::default();
    // Streamed in uneven pieces.
    for piece in bytes.chunks(100) {
        hasher.update(piece);
    }
    let mut stream = bytes.clone();
    stream.extend(hasher.trailer());
    assert_eq!(stream.len() as u64, etcd_stream_len(bytes.len() as u64));
    assert_eq!((stream.len() - ETCD_HASH_LEN) % 512, 0);
    let stream = Bytes::from(stream);
    let body = etcd_shaped_body(&stream).expect("the hash matches");
    assert_eq!(&body[..bytes.len()], &bytes[..]);
    // The padding is accepted only when asked for.
    let (_, mut strict) = SnapshotReader::open(body.clone()).unwrap();
    let strict_result = loop {
        match strict.next_block() {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(
        strict_result,
        Err(SnapshotError::Corruption {
            reason: "bytes after the end marker",
            ..
        })
    ));
    let (read_meta, reader) = SnapshotReader::open(body).unwrap();
    assert_eq!(read_meta, meta);
    let mut reader = reader.allow_zero_padding();
    while reader.next_block().unwrap().is_some() {}
    assert_eq!(reader.end(), Some(bytes.len()));
    // Any damaged byte breaks the hash.
    let mut damaged = stream.to_vec();
    damaged[10] ^= 1;
    assert_eq!(etcd_shaped_body(&Bytes::from(damaged)), None);
    // A plain file is not etcd-shaped.
    assert_eq!(etcd_shaped_body(&Bytes::from(bytes)), None);
}

#[test]
fn a_snapshot_restores_every_revision_it_holds() {
    let (meta, original, bytes) = sample();
    let (loaded_meta, restored) = load(bytes).unwrap();
    assert_eq!(loaded_meta, meta);
    let everything = KeyRange::From(Bytes::new());
    for revision in 1..=meta.revision {
        assert_eq!(
            restored.range(&everything, revision, None),
            original.range(&everything, revision, None)
        );
    }
}

#[test]
fn every_damage_is_refused() {
    let (_, _, bytes) = sample();
    // Every single-byte change anywhere is caught.
    for at in (0..bytes.len()).step_by(7) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        assert!(load(damaged).is_err(), "damage at {at} accepted");
    }
    // So is every truncation.
    for cut in (0..bytes.len()).step_by(13) {
        assert!(
            load(bytes[..cut].to_vec()).is_err(),
            "truncation at {cut} accepted"
        );
    }
    let mut other_version = bytes.clone();
    other_version[8] = 9;
    let crc = crc32c::crc32c(&other_version[0..60]);
    other_version[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        load(other_version).err(),
        Some(SnapshotError::UnsupportedVersion(9))
    );
    assert_eq!(load(vec![b'x'; 100]).err(), Some(SnapshotError::BadMagic));
}
