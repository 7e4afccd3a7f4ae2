//! On-disk constants and the meta page of the bbolt file format.
//!
//! All integers in a bbolt file are stored in the byte order of the machine that
//! wrote it; every platform etcd ships on is little-endian, so this crate reads
//! and writes little-endian only.
//!
//! Layout summary (interface facts of go.etcd.io/bbolt, file format version 2):
//!
//! * The file is a sequence of pages of `page_size` bytes. Page `n` starts at
//!   byte `n * page_size`. Pages 0 and 1 are meta pages, the rest are branch,
//!   leaf, freelist or free pages. A branch/leaf/freelist page may span
//!   `1 + overflow` consecutive pages.
//! * Page header (16 bytes): `id: u64`, `flags: u16`, `count: u16`, `overflow: u32`.
//! * Meta (64 bytes, right after the page header): `magic: u32`, `version: u32`,
//!   `page_size: u32`, `flags: u32`, root bucket header (`root: u64`,
//!   `sequence: u64`), `freelist: u64`, `pgid: u64` (high-water mark = number of
//!   pages in use), `txid: u64`, `checksum: u64` (FNV-1a 64 of the preceding 56
//!   bytes).
//! * Branch element (16 bytes): `pos: u32`, `ksize: u32`, `pgid: u64`.
//! * Leaf element (16 bytes): `flags: u32`, `pos: u32`, `ksize: u32`, `vsize: u32`.
//!   `pos` is the distance from the start of the element to its key; the value
//!   follows the key directly. Element flag 0x01 marks a nested bucket.
//! * Bucket value: bucket header (`root: u64`, `sequence: u64`); when `root` is
//!   0 the bucket is inline and a leaf page (header + elements + data) follows.
//! * Freelist page: `count` page ids (`u64` each); if `count` is 0xFFFF, the
//!   first u64 holds the real count and the ids follow it.

/// Magic number stored in every meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// Data file format version.
pub const VERSION: u32 = 2;

/// Size of a page header.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of the meta structure that follows the page header on a meta page.
pub const META_SIZE: usize = 64;
/// Number of leading meta bytes covered by the checksum.
pub const META_CHECKSUM_OFFSET: usize = 56;
/// Size of a branch page element.
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// Size of a leaf page element.
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// Size of the bucket header at the start of a bucket value.
pub const BUCKET_HEADER_SIZE: usize = 16;

/// Page flag: branch page.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag: leaf page.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag: meta page.
pub const META_PAGE: u16 = 0x04;
/// Page flag: freelist page.
pub const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag: the value is a bucket header (nested bucket).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// Freelist page id meaning "freelist not persisted".
pub const PGID_NO_FREELIST: u64 = u64::MAX;

/// Largest key bbolt accepts.
pub const MAX_KEY_SIZE: usize = 32768;
/// Largest value bbolt accepts.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// Smallest page size this crate accepts.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size this crate accepts.
pub const MAX_PAGE_SIZE: u32 = 1 << 16;

/// FNV-1a, 64 bit.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(crate) fn get_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// Decoded page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes a header from the first 16 bytes of `b`.
    pub fn decode(b: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            id: get_u64(b, 0)?,
            flags: get_u16(b, 8)?,
            count: get_u16(b, 10)?,
            overflow: get_u32(b, 12)?,
        })
    }

    /// Encodes the header into the first 16 bytes of `b` (which must be that long).
    pub fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..10].copy_from_slice(&self.flags.to_le_bytes());
        b[10..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// Contents of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// Root page of the root bucket (whose entries are the top-level buckets).
    pub root: u64,
    /// Sequence of the root bucket (unused by bbolt).
    pub sequence: u64,
    /// Page id of the freelist, or [`PGID_NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: number of pages in use.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    /// Decodes the 64-byte meta structure (without the page header).
    pub fn decode(b: &[u8]) -> Option<Meta> {
        Some(Meta {
            magic: get_u32(b, 0)?,
            version: get_u32(b, 4)?,
            page_size: get_u32(b, 8)?,
            flags: get_u32(b, 12)?,
            root: get_u64(b, 16)?,
            sequence: get_u64(b, 24)?,
            freelist: get_u64(b, 32)?,
            pgid: get_u64(b, 40)?,
            txid: get_u64(b, 48)?,
            checksum: get_u64(b, 56)?,
        })
    }

    /// Encodes the meta structure; the stored checksum is `self.checksum`.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        b[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// The checksum bbolt expects for this meta (FNV-1a 64 of the first 56 bytes).
    pub fn compute_checksum(&self) -> u64 {
        fnv1a64(&self.encode()[..META_CHECKSUM_OFFSET])
    }

    /// Returns a copy with the checksum field set to the computed value.
    pub fn with_checksum(mut self) -> Meta {
        self.checksum = self.compute_checksum();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn meta_round_trip() {
        let m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: 4,
            txid: 1,
            checksum: 0,
        }
        .with_checksum();
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        assert_eq!(m.checksum, m.compute_checksum());
    }
}
