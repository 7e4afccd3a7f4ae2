//! One shard's multi-version key-value state. Pure: a shard applies changes it is given (with
//! their revisions already decided) and answers reads at any revision it still holds.
//!
//! Invariants:
//! - each key's history is ordered by (main, sub) revision, strictly increasing;
//! - a history never ends up empty (the key is removed instead) and never starts with a
//!   tombstone after compaction;
//! - compaction at `rev` removes only versions no read at a revision >= `rev` can see, so reads
//!   at or above the compaction point are unaffected even while compaction is in progress.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::kv::{KeyRange, KeyValue};

/// One version of a key: the pair as of a change, or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Main revision of the change.
    pub main: i64,
    /// Sub revision of the change.
    pub sub: i64,
    /// `None` for a deletion.
    pub pair: Option<KeyValue>,
}

/// The multi-version state of the keys one shard owns.
#[derive(Clone, Debug, Default)]
pub struct MvccShard {
    keys: BTreeMap<Bytes, Vec<Version>>,
}

impl MvccShard {
    /// An empty shard.
    pub fn new() -> MvccShard {
        MvccShard::default()
    }

    /// Records a change to `key` at revision (main, sub): `Some(pair)` for a put, `None` for a
    /// delete. Changes arrive in revision order.
    pub fn apply(&mut self, main: i64, sub: i64, key: Bytes, pair: Option<KeyValue>) {
        let history = self.keys.entry(key).or_default();
        if let Some(last) = history.last() {
            assert!(
                (last.main, last.sub) < (main, sub),
                "changes applied out of revision order"
            );
        }
        history.push(Version { main, sub, pair });
    }

    /// Records an unconditional put at revision (main, sub), computing the pair's create
    /// revision and version from the key's current state (the rules of `exec`'s put).
    pub fn put(&mut self, main: i64, sub: i64, key: Bytes, value: Bytes, lease: i64) {
        let previous = self.get(&key, i64::MAX);
        let pair = KeyValue {
            key: key.clone(),
            create_revision: previous.map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: previous.map_or(0, |p| p.version) + 1,
            value,
            lease,
        };
        self.apply(main, sub, key, Some(pair));
    }

    /// The pair `key` held at `revision`, if it was live.
    pub fn get(&self, key: &[u8], revision: i64) -> Option<&KeyValue> {
        self.keys
            .get(key)
            .and_then(|history| visible(history, revision))
    }

    /// Live pairs in `range` at `revision`, ascending by key: at most `max_items` of them (all
    /// when `None`), with the count of every live pair in the range.
    pub fn range(
        &self,
        range: &KeyRange,
        revision: i64,
        max_items: Option<usize>,
    ) -> (Vec<KeyValue>, usize) {
        let mut pairs = Vec::new();
        let mut count = 0;
        for history in self.histories(range) {
            if let Some(pair) = visible(history, revision) {
                count += 1;
                if max_items.is_none_or(|max| pairs.len() < max) {
                    pairs.push(pair.clone());
                }
            }
        }
        (pairs, count)
    }

    fn histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = &'a Vec<Version>> + 'a> {
        match range {
            KeyRange::Single(key) => Box::new(self.keys.get(key).into_iter()),
            KeyRange::From(start) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start.as_ref()), Bound::Unbounded))
                    .map(|(_, history)| history),
            ),
            KeyRange::Between(start, end) if start < end => Box::new(
                self.keys
                    .range::<[u8], _>((
                        Bound::Included(start.as_ref()),
                        Bound::Excluded(end.as_ref()),
                    ))
                    .map(|(_, history)| history),
            ),
            KeyRange::Between(..) => Box::new(std::iter::empty()),
        }
    }

    /// Compacts up to `max_keys` keys starting at `from` (the first key when `None`), dropping
    /// history no read at `revision` or later can see. Returns the key to resume from, or
    /// `None` when the shard is done: compaction proceeds in bounded steps between other work.
    pub fn compact_step(
        &mut self,
        revision: i64,
        from: Option<&Bytes>,
        max_keys: usize,
    ) -> Option<Bytes> {
        let start = match from {
            Some(key) => Bound::Included(key.clone()),
            None => Bound::Unbounded,
        };
        let mut emptied = Vec::new();
        let mut next = None;
        for (visited, (key, history)) in self.keys.range_mut((start, Bound::Unbounded)).enumerate()
        {
            if visited == max_keys {
                next = Some(key.clone());
                break;
            }
            let Some(newest_at_or_below) = history.iter().rposition(|v| v.main <= revision) else {
                continue;
            };
            let keep_from = if history[newest_at_or_below].pair.is_none() {
                newest_at_or_below + 1
            } else {
                newest_at_or_below
            };
            history.drain(..keep_from);
            if history.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        next
    }

    /// Compacts the whole shard at once.
    pub fn compact(&mut self, revision: i64) {
        let mut from = None;
        while let Some(next) = self.compact_step(revision, from.as_ref(), 1024) {
            from = Some(next);
        }
    }

    /// The history of up to `max_keys` keys after `after` (from the first key when `None`), as
    /// of `revision`: versions above it are left out, so a snapshot taken in steps while
    /// writes go on is a consistent cut at `revision`. Returns the key to continue after, or
    /// `None` at the end.
    pub fn export(
        &self,
        revision: i64,
        after: Option<&Bytes>,
        max_keys: usize,
    ) -> (Vec<crate::snapshot::KeyHistory>, Option<Bytes>) {
        let start = match after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        for (key, history) in self.keys.range((start, Bound::Unbounded)) {
            if out.len() == max_keys {
                return (out, last);
            }
            last = Some(key.clone());
            let versions: Vec<Version> = history
                .iter()
                .take_while(|v| v.main <= revision)
                .cloned()
                .collect();
            if !versions.is_empty() {
                out.push((key.clone(), versions));
            }
        }
        (out, None)
    }

    /// Restores one key's history (from a snapshot); the key must not exist yet.
    pub fn import(&mut self, key: Bytes, versions: Vec<Version>) {
        debug_assert!(versions
            .windows(2)
            .all(|w| (w[0].main, w[0].sub) < (w[1].main, w[1].sub)));
        if !versions.is_empty() {
            self.keys.insert(key, versions);
        }
    }

    /// Number of keys with any history.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Number of stored versions (a measure of history size).
    pub fn version_count(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
}

/// The pair visible at `revision`: the newest version at or below it, unless a tombstone.
fn visible(history: &[Version], revision: i64) -> Option<&KeyValue> {
    let position = history.partition_point(|v| v.main <= revision);
    position
        .checked_sub(1)
        .and_then(|p| history[p].pair.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, create: i64, modified: i64, version: i64, value: &str) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: create,
            mod_revision: modified,
            version,
            value: Bytes::copy_from_slice(value.as_bytes()),
            lease: 0,
        }
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[test]
    fn reads_at_past_revisions_and_compaction() {
        let mut shard = MvccShard::new();
        shard.apply(2, 0, key("a"), Some(pair("a", 2, 2, 1, "x")));
        shard.apply(3, 0, key("a"), Some(pair("a", 2, 3, 2, "y")));
        shard.apply(4, 0, key("a"), None);
        shard.apply(5, 0, key("b"), Some(pair("b", 5, 5, 1, "z")));
        assert_eq!(shard.get(b"a", 1), None);
        assert_eq!(shard.get(b"a", 2).map(|p| p.value.clone()), Some(key("x")));
        assert_eq!(shard.get(b"a", 3).map(|p| p.version), Some(2));
        assert_eq!(shard.get(b"a", 4), None);
        let everything = KeyRange::From(key("a"));
        assert_eq!(shard.range(&everything, 3, None).1, 1);
        assert_eq!(shard.range(&everything, 5, Some(0)), (vec![], 1));

        let before: Vec<_> = (3..=5)
            .map(|rev| shard.range(&everything, rev, None))
            .collect();
        shard.compact(3);
        let after: Vec<_> = (3..=5)
            .map(|rev| shard.range(&everything, rev, None))
            .collect();
        assert_eq!(
            before, after,
            "reads at or above the compaction point are unchanged"
        );
        assert_eq!(shard.version_count(), 3);
        shard.compact(4);
        assert_eq!(
            shard.key_count(),
            1,
            "a key deleted at or below the point is gone"
        );
    }

    #[test]
    fn export_at_a_revision_and_import_restore_every_read_up_to_it() {
        let mut shard = MvccShard::new();
        for rev in 2..40i64 {
            let k = format!("k{}", rev % 7);
            if rev % 5 == 0 {
                shard.apply(rev, 0, key(&k), None);
            } else {
                shard.put(rev, 0, key(&k), key(&rev.to_string()), 0);
            }
        }
        let cut = 30;
        let mut restored = MvccShard::new();
        let mut after = None;
        loop {
            let (keys, next) = shard.export(cut, after.as_ref(), 3);
            for (k, versions) in keys {
                assert!(versions.iter().all(|v| v.main <= cut));
                restored.import(k, versions);
            }
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        let everything = KeyRange::From(key(""));
        for rev in 1..=cut {
            assert_eq!(
                restored.range(&everything, rev, None),
                shard.range(&everything, rev, None),
                "revision {rev}"
            );
        }
        assert_ne!(
            restored.range(&everything, 39, None),
            shard.range(&everything, 39, None)
        );
    }

    #[test]
    fn inverted_range_is_empty() {
        let mut shard = MvccShard::new();
        shard.apply(2, 0, key("m"), Some(pair("m", 2, 2, 1, "v")));
        assert_eq!(
            shard.range(&KeyRange::Between(key("z"), key("a")), 2, None),
            (vec![], 0)
        );
    }

    #[test]
    fn compaction_in_steps_resumes_where_it_stopped() {
        let mut shard = MvccShard::new();
        for (rev, k) in (2..).zip(["a", "b", "c", "d", "e"]) {
            shard.apply(rev, 0, key(k), Some(pair(k, rev, rev, 1, "1")));
            shard.apply(rev + 10, 0, key(k), Some(pair(k, rev, rev + 10, 2, "2")));
        }
        let mut from = None;
        let mut steps = 0;
        while let Some(next) = shard.compact_step(100, from.as_ref(), 2) {
            from = Some(next);
            steps += 1;
        }
        assert_eq!(steps, 2);
        assert_eq!(shard.version_count(), 5);
    }
}
