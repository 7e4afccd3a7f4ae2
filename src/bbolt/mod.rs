//! A small, dependency-light reader and writer for the subset of the bbolt
//! (`go.etcd.io/bbolt`) file format that is needed to exchange data with etcd
//! through snapshot files.
//!
//! * [`Db::open`] validates a whole database image held in memory (the caller
//!   reads or mmaps the file) and gives ordered access to buckets, nested
//!   buckets (page-backed and inline) and their key/value pairs.
//!   [`Db::check`] performs the same whole-file consistency check as bbolt's
//!   `Tx.Check` (which `etcdctl snapshot status` runs), and [`Db::load`] copies
//!   the whole tree into owned [`BucketData`].
//! * [`write_db`] produces a complete database from a tree of [`BucketData`]:
//!   meta pages 0 and 1, an (empty) freelist, leaf and branch pages built
//!   bottom-up, overflow pages for large elements. Buckets are never inlined.
//! * [`snapshot`] handles the sha256 trailer that `etcdctl snapshot save`
//!   appends and `etcdctl snapshot restore` verifies.
//!
//! Malformed input never panics: every problem is reported as an [`Error`].

#![forbid(unsafe_code)]

mod error;
pub mod format;
pub mod read;
pub mod snapshot;
pub mod write;

pub use error::{Error, MetaError, PageLoc, Result};
pub use format::Meta;
pub use read::{Bucket, CheckStats, Db, Entry, Iter};
pub use write::{write_db, write_db_to_vec, WriteOptions, WriteStats};

/// An owned bucket: its key/value pairs and its nested buckets.
///
/// Keys of `pairs` and names of `buckets` share one key space; each list must
/// be sorted by key (bytewise, like Go's `bytes.Compare`) without duplicates,
/// and no name may appear in both lists. The root of a database (what
/// [`Db::load`] returns and [`write_db`] takes) holds only `buckets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketData {
    /// The bucket's sequence number (`NextSequence` in bbolt; etcd never uses it).
    pub sequence: u64,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    pub buckets: Vec<(Vec<u8>, BucketData)>,
}

impl BucketData {
    /// A bucket with the given pairs and no sub-buckets.
    pub fn from_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> BucketData {
        BucketData {
            sequence: 0,
            pairs,
            buckets: Vec::new(),
        }
    }

    /// The nested bucket called `name`, if any.
    pub fn bucket(&self, name: &[u8]) -> Option<&BucketData> {
        self.buckets
            .binary_search_by(|(k, _)| k.as_slice().cmp(name))
            .ok()
            .map(|i| &self.buckets[i].1)
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|i| self.pairs[i].1.as_slice())
    }
}
