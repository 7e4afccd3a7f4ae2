//! Writer/reader round trips on random data, crafted corruptions, and a
//! fuzz-style test that random corruption never panics or hangs the reader.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::etcd::Rng;
use lode::bbolt::format::{Meta, PageHeader, BRANCH_PAGE, LEAF_PAGE, PAGE_HEADER_SIZE};
use lode::bbolt::{write_db_to_vec, BucketData, Db, Error, WriteOptions};

fn random_bucket(rng: &mut Rng, keys: usize, big_budget: &mut usize, depth: u32) -> BucketData {
    let mut map = BTreeMap::new();
    for _ in 0..keys {
        let kmax = if rng.below(20) == 0 { 600 } else { 40 };
        let klen = 1 + rng.below(kmax) as usize;
        let key = rng.bytes(klen);
        let vlen = match rng.below(100) {
            0 if *big_budget > 0 => {
                let n = (1 + rng.below(3 << 20) as usize).min(*big_budget);
                *big_budget -= n;
                n
            }
            1..=5 => rng.below(6000) as usize,
            6..=10 => 0,
            _ => rng.below(120) as usize,
        };
        map.insert(key, rng.bytes(vlen));
    }
    let mut b = BucketData {
        sequence: rng.below(3),
        pairs: map.into_iter().collect(),
        buckets: vec![],
    };
    if depth < 2 && rng.below(3) == 0 {
        let mut names = BTreeMap::new();
        for _ in 0..1 + rng.below(3) {
            let n = 1 + rng.below(10) as usize;
            let name = rng.bytes(n);
            if b.get(&name).is_none() {
                let n = rng.below(200) as usize;
                names.insert(name, random_bucket(rng, n, big_budget, depth + 1));
            }
        }
        b.buckets = names.into_iter().collect();
    }
    b
}

fn random_db(rng: &mut Rng, max_keys: u64) -> BucketData {
    let mut root = BucketData::default();
    let mut big_budget = 6 << 20;
    let mut names = BTreeMap::new();
    for i in 0..1 + rng.below(5) {
        let n = if i == 0 {
            rng.below(max_keys) as usize
        } else {
            rng.below(max_keys / 4 + 1) as usize
        };
        names.insert(
            format!("bucket-{}", rng.below(1000)).into_bytes(),
            random_bucket(rng, n, &mut big_budget, 1),
        );
    }
    names.insert(b"zz-empty".to_vec(), BucketData::default());
    root.buckets = names.into_iter().collect();
    root
}

fn verify_same(db: &Db<'_>, root: &BucketData, rng: &mut Rng) {
    let stats = db.check().expect("check");
    assert_eq!(stats.free_pages, 0);
    assert_eq!(db.load().unwrap(), *root);
    for (name, b) in &root.buckets {
        let bk = db.bucket(name).unwrap().expect("bucket present");
        let mut it = bk.iter();
        for (k, v) in &b.pairs {
            // Iteration yields pairs and bucket entries merged in key order.
            let e = loop {
                let e = it.next().unwrap().unwrap();
                if !e.is_bucket() {
                    break e;
                }
            };
            assert_eq!((e.key, e.value), (k.as_slice(), v.as_slice()));
        }
        for _ in 0..20 {
            if b.pairs.is_empty() {
                break;
            }
            let (k, v) = &b.pairs[rng.below(b.pairs.len() as u64) as usize];
            assert_eq!(bk.get(k).unwrap(), Some(v.as_slice()));
            let mut missing = k.clone();
            missing.push(0xFF);
            if b.get(&missing).is_none() && b.bucket(&missing).is_none() {
                assert_eq!(bk.get(&missing).unwrap(), None);
            }
        }
    }
}

#[test]
fn random_round_trips() {
    let mut rng = Rng::new(42);
    let configs = [
        (4096, 1.0),
        (4096, 0.5),
        (512, 1.0),
        (16384, 0.9),
        (1024, 0.1),
    ];
    for (round, &(page_size, fill)) in configs.iter().enumerate() {
        let root = random_db(&mut rng, if round == 0 { 6000 } else { 2500 });
        let opts = WriteOptions {
            page_size,
            fill_percent: fill,
            txid: 10 + round as u64,
        };
        let buf = write_db_to_vec(&root, &opts).unwrap();
        assert_eq!(buf.len() % page_size as usize, 0);
        let db = Db::open(&buf).unwrap();
        assert_eq!(db.page_size(), page_size as usize);
        assert_eq!(db.meta().txid, opts.txid);
        let total: usize = root.buckets.iter().map(|b| b.1.pairs.len()).sum();
        println!(
            "round {round}: page size {page_size}, fill {fill}: {total} top-level pairs, {} bytes",
            buf.len()
        );
        verify_same(&db, &root, &mut rng);
    }
}

#[test]
fn many_small_keys_make_deep_trees() {
    // 60k keys with 512-byte pages: several branch levels.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0u32..60_000)
        .map(|i| (i.to_be_bytes().to_vec(), (i * 7).to_le_bytes().to_vec()))
        .collect();
    let mut root = BucketData::default();
    root.buckets
        .push((b"k".to_vec(), BucketData::from_pairs(pairs)));
    let buf = write_db_to_vec(
        &root,
        &WriteOptions {
            page_size: 512,
            ..Default::default()
        },
    )
    .unwrap();
    let db = Db::open(&buf).unwrap();
    let mut rng = Rng::new(7);
    verify_same(&db, &root, &mut rng);
}

fn small_db(page_size: u32) -> (BucketData, Vec<u8>) {
    let mut rng = Rng::new(99);
    let mut root = BucketData::default();
    let mut nested = BucketData::from_pairs(vec![(b"n1".to_vec(), b"v".to_vec())]);
    nested.buckets.push((
        b"deeper".to_vec(),
        BucketData::from_pairs(vec![(b"x".to_vec(), vec![1; 700])]),
    ));
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..300u32)
        .map(|i| {
            (format!("key-{i:05}").into_bytes(), {
                let n = rng.below(40) as usize;
                rng.bytes(n)
            })
        })
        .collect();
    pairs.push((b"zbig".to_vec(), vec![0xAB; 5000]));
    let mut b1 = BucketData::from_pairs(pairs);
    b1.buckets.push((b"key-00100x".to_vec(), nested));
    root.buckets.push((b"b1".to_vec(), b1));
    root.buckets.push((b"b2".to_vec(), BucketData::default()));
    // b3 holds an inline bucket: the writer never makes one, so write its
    // value by hand as a plain pair and then flip the element's bucket flag.
    let inner = vec![(b"i1".to_vec(), b"v1".to_vec()), (b"i2".to_vec(), vec![])];
    root.buckets.push((
        b"b3".to_vec(),
        BucketData::from_pairs(vec![(b"inl".to_vec(), inline_bucket(5, &inner))]),
    ));
    let mut buf = write_db_to_vec(
        &root,
        &WriteOptions {
            page_size,
            ..Default::default()
        },
    )
    .unwrap();
    let b3 = Db::open(&buf)
        .unwrap()
        .bucket(b"b3")
        .unwrap()
        .unwrap()
        .root_page()
        .unwrap() as usize;
    let elem = b3 * page_size as usize + PAGE_HEADER_SIZE;
    buf[elem..elem + 4].copy_from_slice(&1u32.to_le_bytes());
    root.buckets[2].1 = BucketData {
        sequence: 0,
        pairs: vec![],
        buckets: vec![(
            b"inl".to_vec(),
            BucketData {
                sequence: 5,
                pairs: inner,
                buckets: vec![],
            },
        )],
    };
    (root, buf)
}

/// Bucket value of an inline bucket: header (root 0, sequence) + leaf page.
fn inline_bucket(sequence: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[8..16].copy_from_slice(&sequence.to_le_bytes());
    let mut page = vec![0u8; PAGE_HEADER_SIZE + 16 * pairs.len()];
    PageHeader {
        id: 0,
        flags: LEAF_PAGE,
        count: pairs.len() as u16,
        overflow: 0,
    }
    .encode(&mut page);
    for (i, (k, val)) in pairs.iter().enumerate() {
        let e = PAGE_HEADER_SIZE + 16 * i;
        let pos = (page.len() - e) as u32;
        page[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
        page[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[e + 12..e + 16].copy_from_slice(&(val.len() as u32).to_le_bytes());
        page.extend_from_slice(k);
        page.extend_from_slice(val);
    }
    v.extend_from_slice(&page);
    v
}

fn set_meta(buf: &mut [u8], page: usize, page_size: usize, f: impl Fn(&mut Meta)) {
    let off = page * page_size + PAGE_HEADER_SIZE;
    let mut m = Meta::decode(&buf[off..off + 64]).unwrap();
    f(&mut m);
    let m = m.with_checksum();
    buf[off..off + 64].copy_from_slice(&m.encode());
}

/// First page with the given flags.
fn find_page(buf: &[u8], ps: usize, flags: u16) -> usize {
    (2..buf.len() / ps)
        .find(|&i| {
            PageHeader::decode(&buf[i * ps..]).map(|h| h.flags == flags && h.id == i as u64)
                == Some(true)
        })
        .expect("page with flags")
}

#[test]
fn crafted_corruptions_are_typed_errors() {
    let ps = 512;
    let (root, good) = small_db(ps as u32);
    let db = Db::open(&good).unwrap();
    db.check().unwrap();
    assert_eq!(db.load().unwrap(), root);
    let inl = db
        .bucket(b"b3")
        .unwrap()
        .unwrap()
        .bucket(b"inl")
        .unwrap()
        .unwrap();
    assert_eq!(inl.root_page(), None);
    assert_eq!(inl.sequence(), 5);
    assert_eq!(inl.get(b"i1").unwrap(), Some(&b"v1"[..]));

    // Too small / truncated.
    assert!(matches!(
        Db::open(&good[..40]),
        Err(Error::FileTooSmall { .. })
    ));
    assert!(matches!(
        Db::open(&good[..good.len() - ps]),
        Err(Error::Truncated { .. })
    ));

    // Bad checksum on meta 0 (higher txid): falls back to meta 1.
    let mut b = good.clone();
    b[PAGE_HEADER_SIZE + 20] ^= 0xFF;
    let db = Db::open(&b).unwrap();
    assert_eq!(db.meta_page(), 1);
    assert_eq!(db.load().unwrap(), root);
    // Both bad: typed error.
    b[ps + PAGE_HEADER_SIZE + 20] ^= 0xFF;
    assert!(matches!(Db::open(&b), Err(Error::NoValidMeta { .. })));
    // Bad magic / version with valid checksum.
    let mut b = good.clone();
    set_meta(&mut b, 0, ps, |m| m.magic = 1);
    set_meta(&mut b, 1, ps, |m| m.version = 3);
    assert!(matches!(Db::open(&b), Err(Error::NoValidMeta { .. })));

    // Root page out of bounds (checksummed) in both metas.
    let mut b = good.clone();
    set_meta(&mut b, 0, ps, |m| m.root = m.pgid + 10);
    set_meta(&mut b, 1, ps, |m| m.root = m.pgid + 10);
    assert!(matches!(Db::open(&b), Err(Error::NoValidMeta { .. })));

    // Branch element pointing to itself: a cycle.
    let mut b = good.clone();
    let br = find_page(&b, ps, BRANCH_PAGE);
    let elem = br * ps + PAGE_HEADER_SIZE;
    b[elem + 8..elem + 16].copy_from_slice(&(br as u64).to_le_bytes());
    let db = Db::open(&b).unwrap();
    assert!(
        matches!(db.check(), Err(Error::PageReferencedTwice { .. })),
        "{:?}",
        db.check()
    );
    assert!(db.load().is_err());
    // Branch element pointing past the end.
    b[elem + 8..elem + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    let db = Db::open(&b).unwrap();
    assert!(matches!(db.check(), Err(Error::PageOutOfBounds { .. })));

    // Leaf element whose value runs off the page.
    let mut b = good.clone();
    let lf = find_page(&b, ps, LEAF_PAGE);
    let elem = lf * ps + PAGE_HEADER_SIZE;
    b[elem + 12..elem + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Db::open(&b).unwrap().check(),
        Err(Error::CorruptPage { .. })
    ));

    // Page header id mismatch.
    let mut b = good.clone();
    b[lf * ps] ^= 0x40;
    assert!(matches!(
        Db::open(&b).unwrap().check(),
        Err(Error::PageIdMismatch { .. })
    ));

    // A page neither reachable nor free: raise the high-water mark by one.
    let mut b = good.clone();
    b.extend_from_slice(&vec![0u8; ps]);
    set_meta(&mut b, 0, ps, |m| m.pgid += 1);
    set_meta(&mut b, 1, ps, |m| m.pgid += 1);
    assert!(matches!(
        Db::open(&b).unwrap().check(),
        Err(Error::UnreachablePage { .. })
    ));
}

fn corrupt(rng: &mut Rng, good: &[u8], ps: usize) -> Vec<u8> {
    let mut b = good.to_vec();
    let fix_meta = rng.below(2) == 0;
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 => {
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(n);
            }
            2 | 3 => {
                // Page header or element field of a random page.
                let page = rng.below((b.len() / ps).max(1) as u64) as usize;
                let off = page * ps + (rng.below(12) as usize) * 4;
                let val: u64 = match rng.below(5) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.below(64),
                    3 => (b.len() / ps) as u64 + rng.below(4),
                    _ => rng.next_u64(),
                };
                let width = [2usize, 4, 8][rng.below(3) as usize];
                if off + width <= b.len() {
                    b[off..off + width].copy_from_slice(&val.to_le_bytes()[..width]);
                }
            }
            4 => {
                // Meta field with a (possibly) valid checksum.
                let page = rng.below(2) as usize;
                let off = page * ps + PAGE_HEADER_SIZE + 8 * rng.below(7) as usize;
                if off + 8 <= b.len() {
                    let v = rng.below(b.len() as u64 / ps as u64 + 3);
                    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            5 => {
                // Copy one page over another.
                let n = (b.len() / ps) as u64;
                if n > 3 {
                    let (x, y) = (rng.below(n) as usize, rng.below(n) as usize);
                    let src = b[x * ps..(x + 1) * ps].to_vec();
                    b[y * ps..(y + 1) * ps].copy_from_slice(&src);
                }
            }
            _ => {
                let i = rng.below(b.len() as u64) as usize;
                let n = (rng.below(64) as usize).min(b.len() - i);
                for x in &mut b[i..i + n] {
                    *x = rng.next_u64() as u8;
                }
            }
        }
    }
    if fix_meta {
        for page in 0..2 {
            let off = page * ps + PAGE_HEADER_SIZE;
            if off + 64 <= b.len() {
                let m = Meta::decode(&b[off..off + 64]).unwrap().with_checksum();
                b[off..off + 64].copy_from_slice(&m.encode());
            }
        }
    }
    b
}

/// Exercise every read path; return whether everything succeeded.
fn exercise(b: &[u8]) -> bool {
    let Ok(db) = Db::open(b) else { return false };
    let c = db.check().is_ok();
    let l = db.load().is_ok();
    let _ = db.freelist();
    let mut ok = c && l;
    let root = db.root();
    for e in root.iter().take(50) {
        let Ok(e) = e else {
            ok = false;
            break;
        };
        if let Ok(bk) = root.child(&e) {
            let _ = bk.iter().take(2000).count();
            let _ = bk.get(b"key-00150");
            let _ = bk.bucket(b"key-00100x").map(|x| x.map(|x| x.load()));
        }
    }
    let _ = db.bucket(b"b1").map(|b| b.map(|b| b.get(b"zbig")));
    let _ = db
        .bucket(b"b3")
        .map(|b| b.map(|b| b.bucket(b"inl").map(|i| i.map(|i| i.load()))));
    ok
}

#[test]
fn random_corruption_never_panics() {
    let start = Instant::now();
    let mut rng = Rng::new(0xF00D);
    let mut failures = 0;
    let mut total = 0;
    for &ps in &[512usize, 4096] {
        let (_, good) = small_db(ps as u32);
        assert!(exercise(&good));
        for _ in 0..2500 {
            let b = corrupt(&mut rng, &good, ps);
            let t = Instant::now();
            if !exercise(&b) {
                failures += 1;
            }
            total += 1;
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "reader took too long on a corrupted file"
            );
        }
    }
    println!(
        "{total} corrupted files, {failures} rejected, {:?}",
        start.elapsed()
    );
    assert!(failures > total / 4);
}
