//! Writing a complete bbolt database from owned data.
//!
//! Layout produced: page 0 and 1 are meta pages, page 2 is an empty freelist,
//! then each bucket's pages in depth-first order (a bucket's nested buckets
//! before its own leaves, leaves before the branch levels above them), and the
//! root bucket's pages last. Every bucket gets its own root page (no inline
//! buckets). Pages are filled up to `page_size * fill_percent` bytes; an element
//! that does not fit a page alone gets a page with overflow pages.

use std::io::{Cursor, Seek, SeekFrom, Write};

use crate::bbolt::error::{Error, Result};
use crate::bbolt::format::*;
use crate::bbolt::BucketData;

/// Options for [`write_db`].
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Page size; a power of two between 512 and 65536. etcd on x86-64 uses 4096.
    pub page_size: u32,
    /// Fraction of a page to fill before starting a new one, clamped to
    /// 0.1..=1.0 like bbolt's `Bucket.FillPercent`. bbolt's default is 0.5; a
    /// bulk load packs pages fully.
    pub fill_percent: f64,
    /// Transaction id recorded in meta page 0; meta page 1 gets `txid - 1`
    /// (as bbolt's `Tx.WriteTo` does). Must be at least 1.
    pub txid: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            page_size: 4096,
            fill_percent: 1.0,
            txid: 2,
        }
    }
}

/// Summary of a written database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// High-water mark: number of pages written.
    pub pages: u64,
    /// Bytes written (`pages * page_size`).
    pub bytes: u64,
    /// Page id of the root bucket's root page.
    pub root: u64,
}

/// Writes a complete database whose root bucket is `root` (which must hold
/// only nested buckets, as in every bbolt file) to `out`, starting at its
/// current position. On success `out` is positioned at the end of the database.
pub fn write_db<W: Write + Seek>(
    out: &mut W,
    root: &BucketData,
    opts: &WriteOptions,
) -> Result<WriteStats> {
    let ps = opts.page_size;
    if !ps.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
        return Err(Error::InvalidInput(format!("unsupported page size {ps}")));
    }
    if opts.txid < 1 {
        return Err(Error::InvalidInput("txid must be at least 1".into()));
    }
    if !root.pairs.is_empty() {
        return Err(Error::InvalidInput(
            "the root bucket can only hold buckets".into(),
        ));
    }
    let fill = if opts.fill_percent.is_nan() {
        1.0
    } else {
        opts.fill_percent.clamp(0.1, 1.0)
    };
    let ps_usize = ps as usize;
    let start = out.stream_position()?;
    // Reserve meta 0, meta 1 and the freelist page; they are written last.
    out.write_all(&vec![0u8; 3 * ps_usize])?;
    let mut w = PageWriter {
        out,
        page_size: ps_usize,
        threshold: ((ps_usize as f64) * fill) as usize,
        next: 3,
    };
    let root_pgid = w.write_bucket(root, 0)?;
    let pages = w.next;
    let out = w.out;

    let mut page = vec![0u8; ps_usize];
    let meta = Meta {
        magic: MAGIC,
        version: VERSION,
        page_size: ps,
        flags: 0,
        root: root_pgid,
        sequence: root.sequence,
        freelist: 2,
        pgid: pages,
        txid: opts.txid,
        checksum: 0,
    };
    out.seek(SeekFrom::Start(start))?;
    for (id, txid) in [(0u64, opts.txid), (1, opts.txid - 1)] {
        page.fill(0);
        PageHeader {
            id,
            flags: META_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        let m = Meta { txid, ..meta }.with_checksum();
        page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE].copy_from_slice(&m.encode());
        out.write_all(&page)?;
    }
    page.fill(0);
    PageHeader {
        id: 2,
        flags: FREELIST_PAGE,
        count: 0,
        overflow: 0,
    }
    .encode(&mut page);
    out.write_all(&page)?;
    let bytes = pages * u64::from(ps);
    out.seek(SeekFrom::Start(start + bytes))?;
    Ok(WriteStats {
        pages,
        bytes,
        root: root_pgid,
    })
}

/// [`write_db`] into a new vector.
pub fn write_db_to_vec(root: &BucketData, opts: &WriteOptions) -> Result<Vec<u8>> {
    let mut c = Cursor::new(Vec::new());
    write_db(&mut c, root, opts)?;
    Ok(c.into_inner())
}

struct PageWriter<'w, W> {
    out: &'w mut W,
    page_size: usize,
    threshold: usize,
    next: u64,
}

struct Item<'d> {
    key: &'d [u8],
    value: &'d [u8],
    flags: u32,
}

fn check_sorted<T>(list: &[(Vec<u8>, T)], what: &str) -> Result<()> {
    for (k, _) in list {
        if k.is_empty() {
            return Err(Error::InvalidInput(format!("empty {what}")));
        }
        if k.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidInput(format!(
                "{what} longer than {MAX_KEY_SIZE} bytes"
            )));
        }
    }
    for pair in list.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(Error::InvalidInput(format!(
                "{what}s not strictly ascending at {:?}",
                pair[1].0
            )));
        }
    }
    Ok(())
}

/// Splits elements into pages: a page takes elements while its size stays
/// within the threshold, but always at least `min` of them (branch pages need
/// two, or a level of oversized keys would never shrink).
fn group(sizes: &[usize], threshold: usize, min: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = PAGE_HEADER_SIZE;
    for (i, &s) in sizes.iter().enumerate() {
        let n = i - start;
        if n >= min && (size + s > threshold || n >= usize::from(u16::MAX)) {
            out.push(start..i);
            start = i;
            size = PAGE_HEADER_SIZE;
        }
        size += s;
    }
    out.push(start..sizes.len());
    out
}

impl<W: Write + Seek> PageWriter<'_, W> {
    /// Writes one page run and returns its id.
    fn emit(&mut self, mut buf: Vec<u8>, flags: u16, count: usize) -> Result<u64> {
        let npages = buf.len().div_ceil(self.page_size).max(1);
        buf.resize(npages * self.page_size, 0);
        let overflow = u32::try_from(npages - 1)
            .map_err(|_| Error::InvalidInput("element too large".into()))?;
        let id = self.next;
        PageHeader {
            id,
            flags,
            count: count as u16,
            overflow,
        }
        .encode(&mut buf);
        self.out.write_all(&buf)?;
        self.next += npages as u64;
        Ok(id)
    }

    fn write_leaf(&mut self, items: &[Item<'_>]) -> Result<u64> {
        let data: usize = items.iter().map(|it| it.key.len() + it.value.len()).sum();
        let hdr_end = PAGE_HEADER_SIZE + items.len() * LEAF_ELEMENT_SIZE;
        let mut buf = vec![0u8; hdr_end + data];
        let mut pos = hdr_end;
        for (i, it) in items.iter().enumerate() {
            let e = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
            buf[e..e + 4].copy_from_slice(&it.flags.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&((pos - e) as u32).to_le_bytes());
            buf[e + 8..e + 12].copy_from_slice(&(it.key.len() as u32).to_le_bytes());
            buf[e + 12..e + 16].copy_from_slice(&(it.value.len() as u32).to_le_bytes());
            buf[pos..pos + it.key.len()].copy_from_slice(it.key);
            pos += it.key.len();
            buf[pos..pos + it.value.len()].copy_from_slice(it.value);
            pos += it.value.len();
        }
        self.emit(buf, LEAF_PAGE, items.len())
    }

    fn write_branch(&mut self, children: &[(&[u8], u64)]) -> Result<u64> {
        let data: usize = children.iter().map(|c| c.0.len()).sum();
        let hdr_end = PAGE_HEADER_SIZE + children.len() * BRANCH_ELEMENT_SIZE;
        let mut buf = vec![0u8; hdr_end + data];
        let mut pos = hdr_end;
        for (i, (key, pgid)) in children.iter().enumerate() {
            let e = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
            buf[e..e + 4].copy_from_slice(&((pos - e) as u32).to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            buf[e + 8..e + 16].copy_from_slice(&pgid.to_le_bytes());
            buf[pos..pos + key.len()].copy_from_slice(key);
            pos += key.len();
        }
        self.emit(buf, BRANCH_PAGE, children.len())
    }

    /// Writes a bucket (nested buckets first) and returns its root page id.
    fn write_bucket(&mut self, b: &BucketData, depth: u32) -> Result<u64> {
        if depth > crate::bbolt::read::MAX_NESTING {
            return Err(Error::InvalidInput("buckets nested too deeply".into()));
        }
        check_sorted(&b.pairs, "key")?;
        check_sorted(&b.buckets, "bucket name")?;
        if let Some((_, v)) = b.pairs.iter().find(|(_, v)| v.len() > MAX_VALUE_SIZE) {
            return Err(Error::InvalidInput(format!(
                "value of {} bytes is too large",
                v.len()
            )));
        }
        let mut headers = Vec::with_capacity(b.buckets.len());
        for (_, child) in &b.buckets {
            let root = self.write_bucket(child, depth + 1)?;
            let mut h = [0u8; BUCKET_HEADER_SIZE];
            h[0..8].copy_from_slice(&root.to_le_bytes());
            h[8..16].copy_from_slice(&child.sequence.to_le_bytes());
            headers.push(h);
        }
        // Merge pairs and bucket entries into one ordered list.
        let mut items = Vec::with_capacity(b.pairs.len() + b.buckets.len());
        let (mut i, mut j) = (0, 0);
        while i < b.pairs.len() || j < b.buckets.len() {
            let take_pair = match (b.pairs.get(i), b.buckets.get(j)) {
                (Some(p), Some(q)) => {
                    if p.0 == q.0 {
                        return Err(Error::InvalidInput(format!(
                            "{:?} is both a key and a bucket",
                            p.0
                        )));
                    }
                    p.0 < q.0
                }
                (Some(_), None) => true,
                _ => false,
            };
            if take_pair {
                items.push(Item {
                    key: &b.pairs[i].0,
                    value: &b.pairs[i].1,
                    flags: 0,
                });
                i += 1;
            } else {
                items.push(Item {
                    key: &b.buckets[j].0,
                    value: &headers[j],
                    flags: BUCKET_LEAF_FLAG,
                });
                j += 1;
            }
        }
        let sizes: Vec<usize> = items
            .iter()
            .map(|it| LEAF_ELEMENT_SIZE + it.key.len() + it.value.len())
            .collect();
        let mut level: Vec<(&[u8], u64)> = Vec::new();
        for r in group(&sizes, self.threshold, 1) {
            let first: &[u8] = items.get(r.start).map(|it| it.key).unwrap_or(&[]);
            let id = self.write_leaf(&items[r])?;
            level.push((first, id));
        }
        while level.len() > 1 {
            let sizes: Vec<usize> = level
                .iter()
                .map(|c| BRANCH_ELEMENT_SIZE + c.0.len())
                .collect();
            let mut next = Vec::new();
            for r in group(&sizes, self.threshold, 2) {
                let first = level[r.start].0;
                let id = self.write_branch(&level[r])?;
                next.push((first, id));
            }
            level = next;
        }
        Ok(level[0].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bbolt::Db;

    #[test]
    fn empty_database() {
        let buf = write_db_to_vec(&BucketData::default(), &WriteOptions::default()).unwrap();
        assert_eq!(buf.len(), 4 * 4096);
        let db = Db::open(&buf).unwrap();
        assert_eq!(db.meta().txid, 2);
        let st = db.check().unwrap();
        assert_eq!(st.pages, 4);
        assert_eq!(db.load().unwrap(), BucketData::default());
    }

    #[test]
    fn empty_and_nested_buckets() {
        let mut root = BucketData::default();
        let mut nested = BucketData::from_pairs(vec![(b"a".to_vec(), b"1".to_vec())]);
        nested
            .buckets
            .push((b"inner".to_vec(), BucketData::default()));
        nested.sequence = 7;
        root.buckets
            .push((b"empty".to_vec(), BucketData::default()));
        root.buckets.push((b"nested".to_vec(), nested));
        let buf = write_db_to_vec(&root, &WriteOptions::default()).unwrap();
        let db = Db::open(&buf).unwrap();
        db.check().unwrap();
        assert_eq!(db.load().unwrap(), root);
        let b = db.bucket(b"nested").unwrap().unwrap();
        assert_eq!(b.sequence(), 7);
        assert_eq!(b.get(b"a").unwrap(), Some(&b"1"[..]));
        assert!(b.bucket(b"inner").unwrap().is_some());
        assert!(db.bucket(b"missing").unwrap().is_none());
    }

    #[test]
    fn rejects_bad_input() {
        let mut root = BucketData::default();
        root.buckets.push((
            b"b".to_vec(),
            BucketData::from_pairs(vec![(b"z".to_vec(), vec![]), (b"a".to_vec(), vec![])]),
        ));
        assert!(matches!(
            write_db_to_vec(&root, &WriteOptions::default()),
            Err(Error::InvalidInput(_))
        ));
        let root = BucketData::from_pairs(vec![(b"k".to_vec(), vec![])]);
        assert!(matches!(
            write_db_to_vec(&root, &WriteOptions::default()),
            Err(Error::InvalidInput(_))
        ));
    }
}
