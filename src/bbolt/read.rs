//! Reading a bbolt database image.

use std::collections::HashSet;

use crate::bbolt::error::{Error, MetaError, PageLoc, Result};
use crate::bbolt::format::*;
use crate::bbolt::BucketData;

/// Maximum bucket nesting accepted (etcd uses one level below the root).
pub const MAX_NESTING: u32 = 256;

/// An opened, read-only view of a database image.
#[derive(Clone, Copy, Debug)]
pub struct Db<'a> {
    data: &'a [u8],
    page_size: usize,
    meta: Meta,
    meta_page: u8,
}

fn read_meta(data: &[u8], offset: usize) -> Result<Meta, MetaError> {
    let start = offset
        .checked_add(PAGE_HEADER_SIZE)
        .ok_or(MetaError::Truncated)?;
    let bytes = start
        .checked_add(META_SIZE)
        .and_then(|end| data.get(start..end))
        .ok_or(MetaError::Truncated)?;
    let m = Meta::decode(bytes).ok_or(MetaError::Truncated)?;
    if m.magic != MAGIC {
        return Err(MetaError::BadMagic(m.magic));
    }
    if m.version != VERSION {
        return Err(MetaError::BadVersion(m.version));
    }
    // Like bbolt, a zero checksum (files written before checksums existed) is accepted.
    let computed = m.compute_checksum();
    if m.checksum != 0 && m.checksum != computed {
        return Err(MetaError::BadChecksum {
            stored: m.checksum,
            computed,
        });
    }
    if !m.page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&m.page_size) {
        return Err(MetaError::BadPageSize(m.page_size));
    }
    // Meta page 1 lives at offset page_size: its page size must agree with where we found it.
    if offset != 0 && offset != m.page_size as usize {
        return Err(MetaError::BadPageSize(m.page_size));
    }
    if m.pgid < 3 {
        return Err(MetaError::BadField("high-water mark below 3"));
    }
    if m.root < 2 || m.root >= m.pgid {
        return Err(MetaError::BadField("root page out of range"));
    }
    if m.freelist != PGID_NO_FREELIST && (m.freelist < 2 || m.freelist >= m.pgid) {
        return Err(MetaError::BadField("freelist page out of range"));
    }
    Ok(m)
}

/// A page located and bounds-checked, with its element array validated.
#[derive(Clone, Copy, Debug)]
struct PageView<'a> {
    loc: PageLoc,
    flags: u16,
    count: u16,
    overflow: u32,
    /// The whole page, header included (all overflow pages for a real page;
    /// the rest of the bucket value for an inline page).
    bytes: &'a [u8],
}

impl<'a> PageView<'a> {
    fn new(loc: PageLoc, bytes: &'a [u8]) -> Result<PageView<'a>> {
        let h = PageHeader::decode(bytes).ok_or(Error::CorruptPage {
            page: loc,
            what: "page shorter than its header",
        })?;
        let v = PageView {
            loc,
            flags: h.flags,
            count: h.count,
            overflow: h.overflow,
            bytes,
        };
        Ok(v)
    }

    fn is_leaf(&self) -> bool {
        self.flags == LEAF_PAGE
    }

    /// Checks that this is a branch or leaf page and that its elements fit.
    fn check_tree_page(&self) -> Result<()> {
        if self.flags != LEAF_PAGE && self.flags != BRANCH_PAGE {
            return Err(Error::UnexpectedPageType {
                page: self.loc,
                flags: self.flags,
                expected: "branch or leaf",
            });
        }
        if self.flags == BRANCH_PAGE && self.count == 0 {
            return Err(Error::CorruptPage {
                page: self.loc,
                what: "branch page without elements",
            });
        }
        let need = PAGE_HEADER_SIZE + usize::from(self.count) * LEAF_ELEMENT_SIZE;
        if need > self.bytes.len() {
            return Err(Error::CorruptPage {
                page: self.loc,
                what: "element array exceeds page",
            });
        }
        Ok(())
    }

    fn corrupt(&self, what: &'static str) -> Error {
        Error::CorruptPage {
            page: self.loc,
            what,
        }
    }

    /// Leaf element `i`: (flags, key, value).
    fn leaf(&self, i: u16) -> Result<(u32, &'a [u8], &'a [u8])> {
        let off = PAGE_HEADER_SIZE + usize::from(i) * LEAF_ELEMENT_SIZE;
        let b = self.bytes;
        let (Some(flags), Some(pos), Some(ksize), Some(vsize)) = (
            get_u32(b, off),
            get_u32(b, off + 4),
            get_u32(b, off + 8),
            get_u32(b, off + 12),
        ) else {
            return Err(self.corrupt("leaf element out of range"));
        };
        let kstart = off
            .checked_add(pos as usize)
            .ok_or(self.corrupt("key offset overflow"))?;
        let kend = kstart
            .checked_add(ksize as usize)
            .ok_or(self.corrupt("key size overflow"))?;
        let vend = kend
            .checked_add(vsize as usize)
            .ok_or(self.corrupt("value size overflow"))?;
        if vend > b.len() {
            return Err(self.corrupt("leaf key/value beyond end of page"));
        }
        Ok((flags, &b[kstart..kend], &b[kend..vend]))
    }

    /// Branch element `i`: (key, child page id).
    fn branch(&self, i: u16) -> Result<(&'a [u8], u64)> {
        let off = PAGE_HEADER_SIZE + usize::from(i) * BRANCH_ELEMENT_SIZE;
        let b = self.bytes;
        let (Some(pos), Some(ksize), Some(pgid)) =
            (get_u32(b, off), get_u32(b, off + 4), get_u64(b, off + 8))
        else {
            return Err(self.corrupt("branch element out of range"));
        };
        let kstart = off
            .checked_add(pos as usize)
            .ok_or(self.corrupt("key offset overflow"))?;
        let kend = kstart
            .checked_add(ksize as usize)
            .ok_or(self.corrupt("key size overflow"))?;
        if kend > b.len() {
            return Err(self.corrupt("branch key beyond end of page"));
        }
        Ok((&b[kstart..kend], pgid))
    }
}

/// Result of [`Db::check`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// High-water mark (pages in use, including meta and freelist pages).
    pub pages: u64,
    /// Pages listed in the freelist.
    pub free_pages: u64,
    /// Number of buckets, the root bucket excluded.
    pub buckets: u64,
    /// Number of key/value pairs (bucket entries excluded).
    pub keys: u64,
}

impl<'a> Db<'a> {
    /// Validates the meta pages of `data` (a complete database file) and picks
    /// the valid one with the highest transaction id.
    ///
    /// Only the meta pages are examined here; pages are checked as they are
    /// visited. Use [`Db::check`] to validate the whole file.
    pub fn open(data: &'a [u8]) -> Result<Db<'a>> {
        if data.len() < PAGE_HEADER_SIZE + META_SIZE {
            return Err(Error::FileTooSmall { len: data.len() });
        }
        let meta0 = read_meta(data, 0);
        let meta1 = match &meta0 {
            Ok(m) => read_meta(data, m.page_size as usize),
            Err(_) => {
                // Meta 0 is unusable, so the page size is unknown: probe the usual ones.
                let mut found = Err(MetaError::Truncated);
                let mut ps = MIN_PAGE_SIZE;
                while ps <= MAX_PAGE_SIZE {
                    match read_meta(data, ps as usize) {
                        Ok(m) => {
                            found = Ok(m);
                            break;
                        }
                        Err(MetaError::Truncated) => {}
                        Err(e) => {
                            if found == Err(MetaError::Truncated) {
                                found = Err(e);
                            }
                        }
                    }
                    ps *= 2;
                }
                found
            }
        };
        let (meta, meta_page) = match (&meta0, &meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    (*b, 1)
                } else {
                    (*a, 0)
                }
            }
            (Ok(a), Err(_)) => (*a, 0),
            (Err(_), Ok(b)) => (*b, 1),
            (Err(a), Err(b)) => {
                return Err(Error::NoValidMeta {
                    meta0: a.clone(),
                    meta1: b.clone(),
                });
            }
        };
        let page_size = meta.page_size as usize;
        let need = (meta.pgid as u128) * (page_size as u128);
        if need > data.len() as u128 {
            return Err(Error::Truncated {
                pages: meta.pgid,
                page_size: meta.page_size,
                len: data.len(),
            });
        }
        Ok(Db {
            data,
            page_size,
            meta,
            meta_page,
        })
    }

    /// The meta in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Which meta page (0 or 1) is in use.
    pub fn meta_page(&self) -> u8 {
        self.meta_page
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Size of the database proper: high-water mark times page size (what
    /// bbolt's `Tx.Size` reports). The file may be longer.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'a> {
        Bucket {
            db: *self,
            root: Root::Page(self.meta.root),
            sequence: self.meta.sequence,
            depth: 0,
        }
    }

    /// The top-level bucket called `name`.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>> {
        self.root().bucket(name)
    }

    /// Locates page `id` (with its overflow pages).
    fn page(&self, id: u64) -> Result<PageView<'a>> {
        let max = self.meta.pgid;
        if id >= max {
            return Err(Error::PageOutOfBounds { id, max });
        }
        // id < pgid and pgid * page_size <= len, so this cannot overflow or go out of range.
        let off = id as usize * self.page_size;
        let h = PageHeader::decode(&self.data[off..]).ok_or(Error::PageOutOfBounds { id, max })?;
        if h.id != id {
            return Err(Error::PageIdMismatch { id, found: h.id });
        }
        let end_id = id + u64::from(h.overflow) + 1;
        if end_id > max {
            return Err(Error::PageOutOfBounds {
                id: end_id - 1,
                max,
            });
        }
        let end = end_id as usize * self.page_size;
        PageView::new(PageLoc::Id(id), &self.data[off..end])
    }

    /// The page ids listed in the freelist, or `None` when the freelist is not
    /// persisted (`freelist == PGID_NO_FREELIST`).
    pub fn freelist(&self) -> Result<Option<Vec<u64>>> {
        if self.meta.freelist == PGID_NO_FREELIST {
            return Ok(None);
        }
        let id = self.meta.freelist;
        let p = self.page(id)?;
        if p.flags != FREELIST_PAGE {
            return Err(Error::UnexpectedPageType {
                page: p.loc,
                flags: p.flags,
                expected: "freelist",
            });
        }
        let (count, first) = if p.count == 0xFFFF {
            let n = get_u64(p.bytes, PAGE_HEADER_SIZE).ok_or(Error::BadFreelist {
                what: "missing count",
                id,
            })?;
            (n, 1u64)
        } else {
            (u64::from(p.count), 0)
        };
        let avail = ((p.bytes.len() - PAGE_HEADER_SIZE) / 8) as u64;
        if count > avail.saturating_sub(first) {
            return Err(Error::BadFreelist {
                what: "count exceeds page",
                id,
            });
        }
        let mut ids = Vec::with_capacity(count as usize);
        for i in 0..count {
            let off = PAGE_HEADER_SIZE + ((first + i) as usize) * 8;
            let v = get_u64(p.bytes, off).ok_or(Error::BadFreelist {
                what: "count exceeds page",
                id,
            })?;
            if v < 2 || v >= self.meta.pgid {
                return Err(Error::BadFreelist {
                    what: "free page id out of range",
                    id: v,
                });
            }
            ids.push(v);
        }
        Ok(Some(ids))
    }

    /// Copies the whole database into owned data, validating every page on the
    /// way (no page may be referenced twice; keys must be ordered).
    pub fn load(&self) -> Result<BucketData> {
        let mut st = Walk::new(self);
        st.load(self.root(), true)
    }

    /// Whole-file consistency check equivalent to bbolt's `Tx.Check`: every
    /// page below the high-water mark must be reachable exactly once (meta
    /// pages, freelist, bucket pages) or be free, and never both; every
    /// branch/leaf page must be well formed with ordered keys.
    pub fn check(&self) -> Result<CheckStats> {
        let mut st = Walk::new(self);
        st.mark(0, 0)?;
        st.mark(1, 0)?;
        let free = self.freelist()?;
        if self.meta.freelist != PGID_NO_FREELIST {
            let p = self.page(self.meta.freelist)?;
            st.mark(self.meta.freelist, p.overflow)?;
        }
        st.load(self.root(), false)?;
        let mut stats = CheckStats {
            pages: self.meta.pgid,
            free_pages: 0,
            buckets: st.buckets,
            keys: st.keys,
        };
        if let Some(free) = free {
            let mut freed = HashSet::with_capacity(free.len());
            for &id in &free {
                if !freed.insert(id) {
                    return Err(Error::BadFreelist {
                        what: "page freed twice",
                        id,
                    });
                }
                if st.seen.contains(&id) {
                    return Err(Error::ReachableFreed { id });
                }
            }
            for id in 0..self.meta.pgid {
                if !st.seen.contains(&id) && !freed.contains(&id) {
                    return Err(Error::UnreachablePage { id });
                }
            }
            stats.free_pages = free.len() as u64;
        } else {
            stats.free_pages = self.meta.pgid - st.seen.len() as u64;
        }
        Ok(stats)
    }
}

/// State shared by a whole-tree walk: pages seen so far and an entry budget.
struct Walk {
    seen: HashSet<u64>,
    entries: u64,
    budget: u64,
    buckets: u64,
    keys: u64,
}

impl Walk {
    fn new(db: &Db<'_>) -> Self {
        // Each genuine entry owns a distinct 16-byte element header in the file,
        // so more entries than this means elements point into shared data.
        let budget = (db.data.len() / LEAF_ELEMENT_SIZE) as u64 + 1;
        Walk {
            seen: HashSet::new(),
            entries: 0,
            budget,
            buckets: 0,
            keys: 0,
        }
    }

    fn mark(&mut self, id: u64, overflow: u32) -> Result<()> {
        for i in 0..=u64::from(overflow) {
            if !self.seen.insert(id + i) {
                return Err(Error::PageReferencedTwice { id: id + i });
            }
        }
        Ok(())
    }

    fn load(&mut self, bucket: Bucket<'_>, keep: bool) -> Result<BucketData> {
        let mut out = BucketData {
            sequence: bucket.sequence,
            ..Default::default()
        };
        let mut children = Vec::new();
        let mut it = bucket.iter();
        for e in &mut it {
            let e = e?;
            self.entries += 1;
            if self.entries > self.budget {
                return Err(Error::TooManyEntries);
            }
            if e.is_bucket() {
                children.push((e.key, bucket.child(&e)?));
            } else {
                self.keys += 1;
                if keep {
                    out.pairs.push((e.key.to_vec(), e.value.to_vec()));
                }
            }
        }
        for &(id, overflow) in &it.spans {
            self.mark(id, overflow)?;
        }
        drop(it);
        for (name, child) in children {
            self.buckets += 1;
            let data = self.load(child, keep)?;
            if keep {
                out.buckets.push((name.to_vec(), data));
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug)]
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

/// A bucket of an opened database.
#[derive(Clone, Copy, Debug)]
pub struct Bucket<'a> {
    db: Db<'a>,
    root: Root<'a>,
    sequence: u64,
    depth: u32,
}

/// One entry of a bucket: a key/value pair, or a nested bucket (then `value`
/// is the raw bucket value and [`Bucket::child`] opens it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
}

impl Entry<'_> {
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

impl<'a> Bucket<'a> {
    /// The bucket's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Root page id, or `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        match self.root {
            Root::Page(id) => Some(id),
            Root::Inline(_) => None,
        }
    }

    fn root_view(&self) -> Result<PageView<'a>> {
        let p = match self.root {
            Root::Page(id) => self.db.page(id)?,
            Root::Inline(bytes) => {
                let p = PageView::new(PageLoc::Inline, bytes)?;
                if p.flags != LEAF_PAGE {
                    return Err(Error::UnexpectedPageType {
                        page: p.loc,
                        flags: p.flags,
                        expected: "leaf",
                    });
                }
                p
            }
        };
        p.check_tree_page()?;
        Ok(p)
    }

    /// Ordered iteration over the bucket's entries (pairs and nested buckets).
    /// The iterator stops after the first error it yields.
    pub fn iter(&self) -> Iter<'a> {
        let mut it = Iter {
            db: self.db,
            stack: Vec::new(),
            visited: HashSet::new(),
            spans: Vec::new(),
            last: None,
            done: false,
            pending: None,
        };
        match self.root_view() {
            Ok(p) => {
                if let PageLoc::Id(id) = p.loc {
                    it.visited.insert(id);
                    it.spans.push((id, p.overflow));
                }
                it.stack.push((p, 0));
            }
            Err(e) => {
                it.stack.clear();
                it.done = true;
                it.pending = Some(e);
            }
        }
        it
    }

    /// Opens the nested bucket described by `entry` (an entry of this bucket).
    pub fn child(&self, entry: &Entry<'a>) -> Result<Bucket<'a>> {
        if !entry.is_bucket() {
            return Err(Error::NotABucket);
        }
        if self.depth >= MAX_NESTING {
            return Err(Error::TooDeep(MAX_NESTING));
        }
        let v = entry.value;
        let (Some(root), Some(sequence)) = (get_u64(v, 0), get_u64(v, 8)) else {
            return Err(Error::BadBucketValue("shorter than a bucket header"));
        };
        let root = if root == 0 {
            if v.len() < BUCKET_HEADER_SIZE + PAGE_HEADER_SIZE {
                return Err(Error::BadBucketValue("inline bucket without a page"));
            }
            Root::Inline(&v[BUCKET_HEADER_SIZE..])
        } else {
            Root::Page(root)
        };
        Ok(Bucket {
            db: self.db,
            root,
            sequence,
            depth: self.depth + 1,
        })
    }

    /// Finds the entry with exactly this key (pair or nested bucket).
    pub fn get_entry(&self, key: &[u8]) -> Result<Option<Entry<'a>>> {
        let mut p = self.root_view()?;
        let mut steps = 0u64;
        while !p.is_leaf() {
            steps += 1;
            if steps > self.db.meta.pgid {
                return Err(Error::PageReferencedTwice {
                    id: match p.loc {
                        PageLoc::Id(i) => i,
                        PageLoc::Inline => 0,
                    },
                });
            }
            // Last child whose first key is <= key (or the first child).
            let (mut lo, mut hi) = (0u16, p.count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if p.branch(mid)?.0 <= key {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let idx = lo.saturating_sub(1);
            let child = p.branch(idx)?.1;
            p = self.db.page(child)?;
            p.check_tree_page()?;
        }
        let (mut lo, mut hi) = (0u16, p.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (flags, k, v) = p.leaf(mid)?;
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Ok(Some(Entry {
                        key: k,
                        value: v,
                        flags,
                    }))
                }
            }
        }
        Ok(None)
    }

    /// The value stored under `key`; `None` if absent or if `key` names a bucket.
    pub fn get(&self, key: &[u8]) -> Result<Option<&'a [u8]>> {
        Ok(self
            .get_entry(key)?
            .filter(|e| !e.is_bucket())
            .map(|e| e.value))
    }

    /// The nested bucket called `name`; `None` if absent or if it is a plain key.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>> {
        match self.get_entry(name)? {
            Some(e) if e.is_bucket() => Ok(Some(self.child(&e)?)),
            _ => Ok(None),
        }
    }

    /// Copies this bucket (and its nested buckets) into owned data.
    pub fn load(&self) -> Result<BucketData> {
        let mut st = Walk::new(&self.db);
        st.load(*self, true)
    }
}

/// Ordered iterator over a bucket's entries; see [`Bucket::iter`].
pub struct Iter<'a> {
    db: Db<'a>,
    stack: Vec<(PageView<'a>, u16)>,
    visited: HashSet<u64>,
    /// (first page id, overflow) of every page visited.
    spans: Vec<(u64, u32)>,
    last: Option<&'a [u8]>,
    done: bool,
    pending: Option<Error>,
}

impl<'a> Iter<'a> {
    fn step(&mut self) -> Result<Option<Entry<'a>>> {
        loop {
            let Some((page, idx)) = self.stack.last_mut() else {
                return Ok(None);
            };
            if *idx >= page.count {
                self.stack.pop();
                continue;
            }
            let i = *idx;
            *idx += 1;
            let page = *page;
            if page.is_leaf() {
                let (flags, key, value) = page.leaf(i)?;
                if let Some(last) = self.last {
                    if key <= last {
                        return Err(Error::KeyOrder { page: page.loc });
                    }
                }
                self.last = Some(key);
                return Ok(Some(Entry { key, value, flags }));
            }
            let (_, child) = page.branch(i)?;
            if !self.visited.insert(child) {
                return Err(Error::PageReferencedTwice { id: child });
            }
            let p = self.db.page(child)?;
            p.check_tree_page()?;
            self.spans.push((child, p.overflow));
            self.stack.push((p, 0));
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
