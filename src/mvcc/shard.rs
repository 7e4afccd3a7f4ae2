//! One shard's multi-version key-value state. Pure: a shard applies changes it is given (with
//! their revisions already decided) and answers reads at any revision it still holds.
//!
//! Invariants:
//! - each key's history is ordered by (main, sub) revision, strictly increasing;
//! - a history never ends up empty (the key is removed instead) and, after compaction at
//!   `rev`, starts with a tombstone only if that tombstone is at exactly `rev` (kept so that a
//!   watch from the compaction point sees the deletion made there);
//! - compaction at `rev` removes only versions no read at a revision >= `rev` can see, so reads
//!   at or above the compaction point are unaffected even while compaction is in progress.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::event::Event;
use super::kv::{KeyRange, KeyValue};
use super::sequence::ShardWrite;

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

/// Where a key's history (ordered by revision) starts once compacted at `revision`: its newest
/// version at or below `revision` stays (a deletion only when made at exactly `revision`, so a
/// watch from the compaction point still sees it), everything older goes.
pub fn compacted_start(history: &[Version], revision: i64) -> usize {
    let Some(newest_at_or_below) = history.iter().rposition(|v| v.main <= revision) else {
        return 0;
    };
    let newest = &history[newest_at_or_below];
    if newest.pair.is_none() && newest.main < revision {
        newest_at_or_below + 1
    } else {
        newest_at_or_below
    }
}

/// Bytes a version is counted as besides its key and value (revisions, counters, the entry
/// in the history): the unit of `MvccShard::size_bytes`, which the space quota is checked
/// against.
pub const VERSION_OVERHEAD_BYTES: u64 = 64;

/// Counted size of one version of `key`.
pub fn version_bytes(key: &[u8], pair: Option<&KeyValue>) -> u64 {
    key.len() as u64 + pair.map_or(0, |p| p.value.len() as u64) + VERSION_OVERHEAD_BYTES
}

/// The multi-version state of the keys one shard owns.
#[derive(Clone, Debug, Default)]
pub struct MvccShard {
    keys: BTreeMap<Bytes, Vec<Version>>,
    /// Sum of `version_bytes` over every version held.
    size_bytes: u64,
    /// Keys whose newest version is a put (compaction never changes it: it keeps what is
    /// visible at its revision).
    live_keys: u64,
}

fn is_live(history: &[Version]) -> bool {
    history.last().is_some_and(|version| version.pair.is_some())
}

impl MvccShard {
    /// An empty shard.
    pub fn new() -> MvccShard {
        MvccShard::default()
    }

    /// Records a change to `key` at revision (main, sub): `Some(pair)` for a put, `None` for a
    /// delete. Changes arrive in revision order.
    pub fn apply(&mut self, main: i64, sub: i64, key: Bytes, pair: Option<KeyValue>) {
        self.size_bytes += version_bytes(&key, pair.as_ref());
        let history = self.keys.entry(key).or_default();
        if let Some(last) = history.last() {
            assert!(
                (last.main, last.sub) < (main, sub),
                "changes applied out of revision order"
            );
        }
        let was_live = is_live(history);
        let live = pair.is_some();
        history.push(Version { main, sub, pair });
        self.key_became(was_live, live);
    }

    /// Counts a key that was live (or not) and now is (or not).
    fn key_became(&mut self, was_live: bool, live: bool) {
        match (was_live, live) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys -= 1,
            _ => {}
        }
    }

    /// Applies one write the sequencer handed this shard (`mvcc::sequence`), appending its
    /// watch events to `events` when asked (each with the key's pair before it).
    pub fn apply_write(&mut self, write: ShardWrite, events: Option<&mut Vec<Event>>) {
        match write {
            ShardWrite::Put {
                revision,
                key,
                value,
                lease,
            } => match (revision.get(), events) {
                (revision, None) => self.put(revision, 0, key, value, lease),
                (revision, Some(events)) => {
                    let previous = self.get(&key, i64::MAX).cloned();
                    self.put(revision, 0, key.clone(), value, lease);
                    let pair = self.get(&key, i64::MAX).cloned();
                    events.push(Event::new(revision, 0, key, pair, previous));
                }
            },
            ShardWrite::Changes { revision, changes } => {
                let revision = revision.get();
                let mut events = events;
                for (sub, key, pair) in changes {
                    if let Some(events) = events.as_deref_mut() {
                        events.push(self.change_event(revision, sub, &key, pair.as_ref()));
                    }
                    self.apply(revision, sub, key, pair);
                }
            }
            ShardWrite::Compact(revision) => self.compact(revision.get()),
        }
    }

    /// Sum of the counted size of every version held (what compaction frees and the space
    /// quota limits).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
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

    /// A hash of the history after revision `after` up to `upto` (etcd's HashKV over the
    /// revisions above the compaction point): each key with versions in that window
    /// contributes the CRC32C of its key and those versions, and contributions are added
    /// (wrapping), so the hash of a keyspace does not depend on how keys are spread over
    /// shards. Physical compaction progress does not change it (only versions above the
    /// compaction point count).
    pub fn hash_kv(&self, after: i64, upto: i64) -> u32 {
        let mut total: u32 = 0;
        let mut buffer = Vec::new();
        for (key, history) in &self.keys {
            let mut versions = history
                .iter()
                .filter(|v| v.main > after && v.main <= upto)
                .peekable();
            if versions.peek().is_none() {
                continue;
            }
            buffer.clear();
            buffer.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buffer.extend_from_slice(key);
            for version in versions {
                buffer.extend_from_slice(&version.main.to_le_bytes());
                buffer.extend_from_slice(&version.sub.to_le_bytes());
                match &version.pair {
                    None => buffer.push(0),
                    Some(pair) => {
                        buffer.push(1);
                        for number in [
                            pair.create_revision,
                            pair.mod_revision,
                            pair.version,
                            pair.lease,
                        ] {
                            buffer.extend_from_slice(&number.to_le_bytes());
                        }
                        buffer.extend_from_slice(&(pair.value.len() as u32).to_le_bytes());
                        buffer.extend_from_slice(&pair.value);
                    }
                }
            }
            total = total.wrapping_add(crc32c::crc32c(&buffer));
        }
        total
    }

    fn histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = &'a Vec<Version>> + 'a> {
        Box::new(self.keyed_histories(range).map(|(_, history)| history))
    }

    fn keyed_histories<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a Bytes, &'a Vec<Version>)> + 'a> {
        match range {
            KeyRange::Single(key) => Box::new(self.keys.get_key_value(key).into_iter()),
            KeyRange::From(start) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(start.as_ref()), Bound::Unbounded)),
            ),
            KeyRange::Between(start, end) if start < end => Box::new(self.keys.range::<[u8], _>((
                Bound::Included(start.as_ref()),
                Bound::Excluded(end.as_ref()),
            ))),
            KeyRange::Between(..) => Box::new(std::iter::empty()),
        }
    }

    /// Compacts up to `max_keys` keys starting at `from` (the first key when `None`), dropping
    /// history no read at `revision` or later can see, and at most `max_versions` versions (a
    /// key overwritten thousands of times is compacted over several steps). Returns the key to
    /// resume from, or `None` when the shard is done: compaction proceeds in bounded steps
    /// between other work.
    pub fn compact_step(
        &mut self,
        revision: i64,
        from: Option<&Bytes>,
        max_keys: usize,
        max_versions: usize,
    ) -> Option<Bytes> {
        let start = match from {
            Some(key) => Bound::Included(key.clone()),
            None => Bound::Unbounded,
        };
        let max_versions = max_versions.max(1);
        let mut emptied = Vec::new();
        let mut next = None;
        let mut freed = 0;
        let mut dropped = 0;
        for (visited, (key, history)) in self.keys.range_mut((start, Bound::Unbounded)).enumerate()
        {
            if visited == max_keys {
                next = Some(key.clone());
                break;
            }
            let keep_from = compacted_start(history, revision);
            let dropping = keep_from.min(max_versions - dropped);
            for version in history.drain(..dropping) {
                freed += version_bytes(key, version.pair.as_ref());
            }
            dropped += dropping;
            if history.is_empty() {
                emptied.push(key.clone());
            }
            if dropped == max_versions {
                // Resume at this key (inclusive): it may have more to drop; if not, looking at
                // it again costs one check.
                next = Some(key.clone());
                break;
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        self.size_bytes = self.size_bytes.saturating_sub(freed);
        next
    }

    /// Compacts the whole shard at once.
    pub fn compact(&mut self, revision: i64) {
        let mut from = None;
        while let Some(next) = self.compact_step(revision, from.as_ref(), 1024, usize::MAX) {
            from = Some(next);
        }
    }

    /// Every key's history from `start` on, in key order (what a snapshot exports:
    /// `snapshot::export_into`).
    pub fn key_histories_from(
        &self,
        start: Bound<Bytes>,
    ) -> impl Iterator<Item = (&Bytes, &[Version])> + '_ {
        self.keys
            .range((start, Bound::Unbounded))
            .map(|(key, history)| (key, history.as_slice()))
    }

    /// Restores versions of one key (from a snapshot), after any it already has from an
    /// earlier record of the same key.
    pub fn import(&mut self, key: Bytes, versions: Vec<Version>) {
        if versions.is_empty() {
            return;
        }
        for version in &versions {
            self.size_bytes += version_bytes(&key, version.pair.as_ref());
        }
        let history = self.keys.entry(key).or_default();
        debug_assert!(history
            .iter()
            .chain(versions.iter())
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| (w[0].main, w[0].sub) < (w[1].main, w[1].sub)));
        let was_live = is_live(history);
        history.extend(versions);
        let live = is_live(history);
        self.key_became(was_live, live);
    }

    /// Number of keys whose newest version is a put (etcd's `etcd_debugging_mvcc_keys_total`).
    pub fn live_key_count(&self) -> u64 {
        self.live_keys
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

impl MvccShard {
    /// The watch event of a change about to be applied at (main, sub): `pair` for a put,
    /// `None` for a delete, with the key's pair before it. Call before `apply`.
    pub fn change_event(&self, main: i64, sub: i64, key: &Bytes, pair: Option<&KeyValue>) -> Event {
        Event::new(
            main,
            sub,
            key.clone(),
            pair.cloned(),
            self.get(key, i64::MAX).cloned(),
        )
    }

    /// Every change to keys in `range` with a main revision in `(after, upto]`, as watch
    /// events in revision order, each with the key's pair before it when the history still
    /// holds it. Complete for revisions at or above the compaction point.
    pub fn history_events(&self, range: &KeyRange, after: i64, upto: i64) -> Vec<Event> {
        self.history_events_within(range, after, upto, usize::MAX).0
    }

    /// `history_events` holding at most `max_bytes` of events (counted as a watch stream
    /// counts them, whole revisions, and always the first revision however large): the events
    /// and the revision they are complete up to (`upto` when everything fit). Two passes over
    /// the range, so that what is held never exceeds the bound: sizes per revision first,
    /// then the events up to the last revision that fits.
    pub fn history_events_within(
        &self,
        range: &KeyRange,
        after: i64,
        upto: i64,
        max_bytes: usize,
    ) -> (Vec<Event>, i64) {
        let mut reached = upto;
        if max_bytes != usize::MAX {
            let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
            for event in self.events_between(range, after, upto) {
                *sizes.entry(event.revision()).or_default() += event.counted_bytes();
            }
            let mut total = 0usize;
            let mut held: Option<i64> = None;
            let mut all_fit = true;
            for (revision, bytes) in sizes {
                if held.is_some() && total.saturating_add(bytes) > max_bytes {
                    all_fit = false;
                    break;
                }
                total = total.saturating_add(bytes);
                held = Some(revision);
            }
            if let (false, Some(last)) = (all_fit, held) {
                reached = last;
            }
        }
        let mut events: Vec<Event> = self.events_between(range, after, reached).collect();
        events.sort_by_key(|event| (event.revision(), event.sub));
        (events, reached)
    }

    /// Every change to keys in `range` with a main revision in `(after, upto]`, as watch events
    /// with the key's pair before each when the history still holds it; key by key, not in
    /// revision order.
    fn events_between<'a>(
        &'a self,
        range: &'a KeyRange,
        after: i64,
        upto: i64,
    ) -> impl Iterator<Item = Event> + 'a {
        self.keyed_histories(range).flat_map(move |(key, history)| {
            let first = history.partition_point(|v| v.main <= after);
            history[first..]
                .iter()
                .take_while(move |version| version.main <= upto)
                .enumerate()
                .map(move |(offset, version)| {
                    let previous = (first + offset)
                        .checked_sub(1)
                        .and_then(|p| history[p].pair.clone());
                    Event::new(
                        version.main,
                        version.sub,
                        key.clone(),
                        version.pair.clone(),
                        previous,
                    )
                })
        })
    }
}

/// The pair visible at `revision`: the newest version at or below it, unless a tombstone.
fn visible(history: &[Version], revision: i64) -> Option<&KeyValue> {
    // The newest version is what writes and current reads want: no search through the
    // history (long when nothing compacts).
    if let Some(last) = history.last() {
        if last.main <= revision {
            return last.pair.as_ref();
        }
    }
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
    fn hash_kv_ignores_sharding_and_compaction_and_sees_every_change() {
        let history = |shards: usize| {
            let mut parts = vec![MvccShard::new(); shards];
            for rev in 1..=40i64 {
                let k = format!("k{}", rev % 7);
                let part = &mut parts[(rev % 7) as usize % shards];
                if rev % 5 == 0 {
                    part.apply(rev, 0, key(&k), None);
                } else {
                    part.put(rev, 0, key(&k), key(&rev.to_string()), 0);
                }
            }
            parts
        };
        let hash = |parts: &[MvccShard], after, upto| {
            parts
                .iter()
                .fold(0u32, |sum, p| sum.wrapping_add(p.hash_kv(after, upto)))
        };
        let one = history(1);
        let three = history(3);
        assert_eq!(hash(&one, 0, 40), hash(&three, 0, 40));
        assert_eq!(hash(&one, 10, 30), hash(&three, 10, 30));
        // Compacting up to the window's start changes nothing.
        let mut compacted = history(3);
        for part in &mut compacted {
            part.compact(10);
        }
        assert_eq!(hash(&compacted, 10, 40), hash(&three, 10, 40));
        // Any change inside the window does.
        assert_ne!(hash(&one, 10, 30), hash(&one, 10, 31));
        let mut changed = history(1);
        changed[0].put(41, 0, key("k1"), key("x"), 0);
        assert_ne!(hash(&changed, 0, 41), hash(&one, 0, 41));
    }

    #[test]
    fn history_reads_stop_at_their_byte_bound_on_a_whole_revision() {
        let mut shard = MvccShard::new();
        let big = "v".repeat(1000);
        for revision in 2..=11 {
            let name = if revision % 2 == 0 { "a" } else { "b" };
            let version = (revision - 2) / 2 + 1;
            let created = if name == "a" { 2 } else { 3 };
            let kv = pair(name, created, revision, version, &big);
            shard.apply(revision, 0, key(name), Some(kv));
        }
        let everything = KeyRange::From(key("a"));
        let all = shard.history_events(&everything, 1, 11);
        assert_eq!(all.len(), 10);
        // Each event holds its value and, from the third on, the previous one: the first two
        // revisions (about 2 KB) fit 2,500 bytes, the third would not.
        let (held, reached) = shard.history_events_within(&everything, 1, 11, 2500);
        assert_eq!(reached, 3);
        assert_eq!(held, all[..2].to_vec());
        // The rest follows from where the first read stopped, each read within the bound.
        let mut next = reached;
        let mut rest = Vec::new();
        while next < 11 {
            let (held, reached) = shard.history_events_within(&everything, next, 11, 2500);
            let bytes: usize = held.iter().map(Event::counted_bytes).sum();
            assert!(held.len() == 1 || bytes <= 2500, "{bytes} bytes held");
            assert!(reached > next);
            rest.extend(held);
            next = reached;
        }
        assert_eq!(rest, all[2..].to_vec());
        // A revision larger than the bound is still read, alone.
        let (held, reached) = shard.history_events_within(&everything, 5, 11, 10);
        assert_eq!((held.len(), reached), (1, 6));
        assert_eq!(
            shard
                .history_events_within(&everything, 1, 11, usize::MAX)
                .1,
            11
        );
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
            shard.history_events(&everything, 3, 5).len(),
            2,
            "a deletion at exactly the point stays, for watches from it"
        );
        assert_eq!(shard.get(b"a", 4), None);
        shard.compact(5);
        assert_eq!(
            shard.key_count(),
            1,
            "a key deleted below the point is gone"
        );
    }

    #[test]
    fn events_of_changes_and_of_history_agree() {
        let mut shard = MvccShard::new();
        let mut live = Vec::new();
        let mut change = |shard: &mut MvccShard, main, k: &str, value: Option<&str>| {
            let previous = shard.get(k.as_bytes(), i64::MAX).cloned();
            let pair = value.map(|v| KeyValue {
                key: key(k),
                create_revision: previous.as_ref().map_or(main, |p| p.create_revision),
                mod_revision: main,
                version: previous.as_ref().map_or(0, |p| p.version) + 1,
                value: key(v),
                lease: 0,
            });
            live.push(shard.change_event(main, 0, &key(k), pair.as_ref()));
            shard.apply(main, 0, key(k), pair);
        };
        change(&mut shard, 2, "a", Some("x"));
        change(&mut shard, 3, "b", Some("y"));
        change(&mut shard, 4, "a", Some("z"));
        change(&mut shard, 5, "a", None);
        change(&mut shard, 6, "a", Some("w"));
        let everything = KeyRange::From(key(""));
        assert_eq!(shard.history_events(&everything, 1, 6), live);
        assert_eq!(shard.history_events(&everything, 3, 5), live[2..4].to_vec());
        let deletion = &live[3];
        assert_eq!(deletion.kind, crate::watch::EventKind::Delete);
        assert_eq!((deletion.kv.mod_revision, deletion.kv.version), (5, 0));
        assert_eq!(
            deletion.prev_kv.as_ref().map(|p| p.value.clone()),
            Some(key("z"))
        );
        assert!(live[4].is_create() && live[4].prev_kv.is_none());
        assert_eq!(live[2].prev_kv.as_ref().map(|p| p.version), Some(1));
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
        // Budgets from "one version per step" (histories split across blocks) to "everything
        // in one block".
        for max_bytes in [1, 60, 200, 100_000] {
            let meta = crate::snapshot::SnapshotMeta {
                applied_index: 9,
                applied_term: 1,
                revision: cut,
                compact_revision: -1,
                voters: vec![1],
                alarms: Vec::new(),
                members: None,
                leases: Vec::new(),
                auth: crate::auth::AuthStore::new(),
            };
            let file = crate::snapshot::encode_shard(&meta, &shard, max_bytes);
            let (read_meta, mut reader) =
                crate::snapshot::SnapshotReader::open(Bytes::from(file)).expect("snapshot");
            assert_eq!(read_meta, meta);
            let mut restored = MvccShard::new();
            while let Some(block) = reader.next_block().expect("block") {
                for (k, versions) in block {
                    assert!(versions.iter().all(|v| v.main <= cut));
                    restored.import(k, versions);
                }
            }
            let everything = KeyRange::From(key(""));
            for rev in 1..=cut {
                assert_eq!(
                    restored.range(&everything, rev, None),
                    shard.range(&everything, rev, None),
                    "revision {rev}, blocks of {max_bytes} bytes"
                );
            }
            assert_ne!(
                restored.range(&everything, 39, None),
                shard.range(&everything, 39, None)
            );
        }
    }

    #[test]
    fn size_and_live_keys_are_counted_through_puts_deletes_compaction_and_import() {
        let live = |shard: &MvccShard| shard.keys.values().filter(|h| is_live(h)).count() as u64;
        let recount = |shard: &MvccShard| -> u64 {
            shard
                .keys
                .iter()
                .flat_map(|(k, h)| h.iter().map(move |v| version_bytes(k, v.pair.as_ref())))
                .sum()
        };
        let mut shard = MvccShard::new();
        for rev in 2..200i64 {
            let k = format!("key{}", rev % 13);
            if rev % 7 == 0 {
                shard.apply(rev, 0, key(&k), None);
            } else {
                shard.put(rev, 0, key(&k), key(&"v".repeat(rev as usize)), 0);
            }
            if rev % 50 == 0 {
                shard.compact(rev - 10);
            }
            assert_eq!(shard.size_bytes(), recount(&shard), "revision {rev}");
            assert_eq!(shard.live_key_count(), live(&shard), "revision {rev}");
        }
        assert!(shard.live_key_count() > 0 && shard.live_key_count() < 13);
        let before = shard.size_bytes();
        shard.compact(199);
        assert!(shard.size_bytes() < before);
        assert_eq!(shard.size_bytes(), recount(&shard));
        let mut restored = MvccShard::new();
        for (k, history) in &shard.keys {
            restored.import(k.clone(), history.clone());
        }
        assert_eq!(restored.size_bytes(), shard.size_bytes());
        assert_eq!(restored.live_key_count(), shard.live_key_count());
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
        while let Some(next) = shard.compact_step(100, from.as_ref(), 2, 3) {
            from = Some(next);
            steps += 1;
        }
        assert_eq!(steps, 2);
        assert_eq!(shard.version_count(), 5);
    }

    #[test]
    fn a_long_history_is_compacted_over_several_steps() {
        let mut shard = MvccShard::new();
        for rev in 2..=12 {
            shard.apply(rev, 0, key("k"), Some(pair("k", 2, rev, rev - 1, "v")));
        }
        let size_before = shard.size_bytes();
        let mut from = None;
        let mut steps = 0;
        while let Some(next) = shard.compact_step(12, from.as_ref(), 64, 3) {
            from = Some(next);
            steps += 1;
            assert!(steps < 10, "never finished");
        }
        // Ten versions to drop, three a step.
        assert_eq!(steps, 3);
        assert_eq!(shard.version_count(), 1);
        assert!(shard.size_bytes() < size_before);
        let (kvs, _) = shard.range(&KeyRange::Single(key("k")), 12, None);
        assert_eq!(kvs.len(), 1);
    }
}
