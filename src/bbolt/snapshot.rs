//! The integrity trailer of etcd snapshot files.
//!
//! etcd's `Maintenance.Snapshot` RPC streams the backend database (bbolt's
//! `Tx.WriteTo`, whose size is a multiple of the page size) and then sends the
//! sha256 of the streamed bytes; `etcdctl snapshot save` stores both, so a
//! saved snapshot is `db || sha256(db)`. `etcdctl snapshot restore` decides a
//! trailer is present when `len % 512 == 32`, strips it, and compares it with
//! the sha256 of the rest (unless `--skip-hash-check`).

use sha2::{Digest, Sha256};

use crate::bbolt::error::{Error, Result};

/// Length of the trailer.
pub const HASH_LEN: usize = 32;

/// The test etcd applies to decide whether a file carries a trailer.
pub fn has_hash_trailer(len: usize) -> bool {
    len % 512 == HASH_LEN
}

/// sha256 of a database image.
pub fn sha256(db: &[u8]) -> [u8; 32] {
    Sha256::digest(db).into()
}

/// Splits a snapshot into the database and its trailer (if the length says
/// there is one), without verifying it.
pub fn split(data: &[u8]) -> (&[u8], Option<[u8; 32]>) {
    if has_hash_trailer(data.len()) {
        let (db, h) = data.split_at(data.len() - HASH_LEN);
        (db, Some(h.try_into().expect("32 bytes")))
    } else {
        (data, None)
    }
}

/// Verifies a snapshot the way `etcdctl snapshot restore` does and returns the
/// database part.
pub fn verify(data: &[u8]) -> Result<&[u8]> {
    match split(data) {
        (db, Some(expected)) => {
            let actual = sha256(db);
            if actual != expected {
                return Err(Error::SnapshotHashMismatch { expected, actual });
            }
            Ok(db)
        }
        (_, None) => Err(Error::MissingSnapshotHash { len: data.len() }),
    }
}

/// Appends the sha256 trailer to a database image, making it a snapshot file.
pub fn append_hash(db: &mut Vec<u8>) {
    let h = sha256(db);
    db.extend_from_slice(&h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip() {
        let mut db = vec![7u8; 4096 * 3];
        assert!(matches!(
            verify(&db),
            Err(Error::MissingSnapshotHash { .. })
        ));
        append_hash(&mut db);
        assert_eq!(verify(&db).unwrap().len(), 4096 * 3);
        let n = db.len();
        db[n - 1] ^= 1;
        assert!(matches!(
            verify(&db),
            Err(Error::SnapshotHashMismatch { .. })
        ));
        // sha256("abc")
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
