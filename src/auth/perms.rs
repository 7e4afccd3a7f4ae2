//! Key-range permissions as etcd reads them, and one user's permissions merged into the set of
//! key intervals it may read and the set it may write.
//!
//! etcd's conventions: a permission's `range_end` empty means the one key `key`; `"\0"` means
//! every key from `key` on (open-ended); otherwise `[key, range_end)`. A single key `k` is the
//! interval `[k, k + "\0")` (the keys from `k` up to, not including, the next key after it), so
//! a point permission covers exactly the requests a single-key request can make. A request for
//! a range is allowed only if the union of the user's intervals covers all of it.

use bytes::Bytes;

/// etcd's `authpb.Permission_Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    /// From etcd's protobuf number (READ = 0, WRITE = 1, READWRITE = 2).
    pub fn from_i32(value: i32) -> Option<PermType> {
        match value {
            0 => Some(PermType::Read),
            1 => Some(PermType::Write),
            2 => Some(PermType::ReadWrite),
            _ => None,
        }
    }

    pub fn to_i32(self) -> i32 {
        match self {
            PermType::Read => 0,
            PermType::Write => 1,
            PermType::ReadWrite => 2,
        }
    }

    fn reads(self) -> bool {
        matches!(self, PermType::Read | PermType::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, PermType::Write | PermType::ReadWrite)
    }
}

/// One permission of a role (etcd's `authpb.Permission`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    pub perm_type: PermType,
    pub key: Bytes,
    pub range_end: Bytes,
}

impl Permission {
    /// etcd's rule for a grantable range: a non-empty key, and a range end that is empty
    /// (one key), `"\0"` (open-ended) or above the key.
    pub fn is_valid_range(&self) -> bool {
        !self.key.is_empty()
            && (self.range_end.is_empty()
                || self.range_end.as_ref() == b"\0"
                || self.key < self.range_end)
    }

    /// The keys it names.
    pub fn interval(&self) -> KeyInterval {
        KeyInterval::of(&self.key, &self.range_end)
    }
}

/// The upper bound of an interval of keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// Up to, not including, this key.
    Before(Bytes),
    /// Every key above the start.
    Unbounded,
}

/// `[start, end)` over byte-string keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyInterval {
    pub start: Bytes,
    pub end: End,
}

impl KeyInterval {
    /// The keys a request's (or permission's) `key` and `range_end` name, as etcd reads them.
    pub fn of(key: &Bytes, range_end: &Bytes) -> KeyInterval {
        let end = if range_end.is_empty() {
            let mut next = key.to_vec();
            next.push(0);
            End::Before(Bytes::from(next))
        } else if range_end.as_ref() == b"\0" {
            End::Unbounded
        } else {
            End::Before(range_end.clone())
        };
        KeyInterval {
            start: key.clone(),
            end,
        }
    }

    fn is_empty(&self) -> bool {
        match &self.end {
            End::Before(end) => end <= &self.start,
            End::Unbounded => false,
        }
    }
}

/// Whether the union of `intervals` (sorted by start) covers all of `want`.
fn covers(intervals: &[KeyInterval], want: &KeyInterval) -> bool {
    if want.is_empty() {
        return true;
    }
    // Sweep from the wanted start: every interval starting at or before the point reached so
    // far extends it; a gap before the wanted end means the union does not cover it.
    let mut reached = End::Before(want.start.clone());
    for interval in intervals {
        let reached_key = match &reached {
            End::Unbounded => return true,
            End::Before(key) => key,
        };
        if interval.start > *reached_key {
            break;
        }
        if interval.end > reached {
            reached = interval.end.clone();
        }
        if reached >= want.end {
            return true;
        }
    }
    reached >= want.end
}

/// One user's permissions, merged over its roles (etcd's `unifiedRangePermissions`); a user
/// with the root role may do anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPermissions {
    pub root: bool,
    /// Intervals it may read, sorted by start.
    read: Vec<KeyInterval>,
    /// Intervals it may write, sorted by start.
    write: Vec<KeyInterval>,
}

impl UserPermissions {
    /// The merge of `permissions` (of every role the user holds); `root` for the root role.
    pub fn merge<'a>(root: bool, permissions: impl IntoIterator<Item = &'a Permission>) -> Self {
        let mut merged = UserPermissions {
            root,
            ..UserPermissions::default()
        };
        for permission in permissions {
            let interval = permission.interval();
            if permission.perm_type.reads() {
                merged.read.push(interval.clone());
            }
            if permission.perm_type.writes() {
                merged.write.push(interval);
            }
        }
        merged.read.sort_by(|a, b| a.start.cmp(&b.start));
        merged.write.sort_by(|a, b| a.start.cmp(&b.start));
        merged
    }

    /// May it read every key of `key`/`range_end` (etcd's request conventions)?
    pub fn may_read(&self, key: &Bytes, range_end: &Bytes) -> bool {
        self.root || covers(&self.read, &KeyInterval::of(key, range_end))
    }

    /// May it write every key of `key`/`range_end`?
    pub fn may_write(&self, key: &Bytes, range_end: &Bytes) -> bool {
        self.root || covers(&self.write, &KeyInterval::of(key, range_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(text: &[u8]) -> Bytes {
        Bytes::copy_from_slice(text)
    }

    fn perm(perm_type: PermType, key: &[u8], range_end: &[u8]) -> Permission {
        Permission {
            perm_type,
            key: b(key),
            range_end: b(range_end),
        }
    }

    #[test]
    fn single_keys_prefixes_and_open_ended_ranges_as_etcd() {
        let perms = [
            perm(PermType::Read, b"foo", b""),
            perm(PermType::ReadWrite, b"dir/", b"dir0"),
            perm(PermType::Write, b"z", b"\0"),
        ];
        let user = UserPermissions::merge(false, &perms);
        assert!(user.may_read(&b(b"foo"), &b(b"")));
        assert!(!user.may_write(&b(b"foo"), &b(b"")));
        assert!(!user.may_read(&b(b"foo1"), &b(b"")));
        // A single-key permission covers the range naming just that key.
        assert!(user.may_read(&b(b"foo"), &b(b"foo\0")));
        assert!(!user.may_read(&b(b"foo"), &b(b"fop")));
        // The prefix.
        assert!(user.may_read(&b(b"dir/a"), &b(b"")));
        assert!(user.may_write(&b(b"dir/"), &b(b"dir0")));
        assert!(user.may_read(&b(b"dir/a"), &b(b"dir/b")));
        assert!(!user.may_read(&b(b"dir/"), &b(b"dir1")));
        assert!(!user.may_read(&b(b"dir/"), &b(b"\0")));
        // Open-ended.
        assert!(user.may_write(&b(b"zz"), &b(b"\0")));
        assert!(user.may_write(&b(b"z"), &b(b"")));
        assert!(!user.may_read(&b(b"z"), &b(b"")));
        assert!(!user.may_write(&b(b"y"), &b(b"\0")));
        // An empty range asks for nothing.
        assert!(user.may_read(&b(b"b"), &b(b"a")));
        // Root may do anything.
        let root = UserPermissions::merge(true, &[]);
        assert!(root.may_write(&b(b"\0"), &b(b"\0")));
    }

    #[test]
    fn adjacent_permissions_cover_a_range_together_and_a_gap_breaks_it() {
        let perms = [
            perm(PermType::Read, b"a", b"c"),
            perm(PermType::ReadWrite, b"c", b"e"),
            perm(PermType::Read, b"f", b""),
        ];
        let user = UserPermissions::merge(false, &perms);
        assert!(user.may_read(&b(b"a"), &b(b"e")));
        assert!(user.may_read(&b(b"b"), &b(b"d")));
        assert!(!user.may_read(&b(b"a"), &b(b"f")));
        assert!(!user.may_read(&b(b"a"), &b(b"f\0")));
        assert!(!user.may_write(&b(b"b"), &b(b"d")));
    }

    #[test]
    fn grantable_ranges_follow_etcds_rule() {
        assert!(perm(PermType::Read, b"a", b"").is_valid_range());
        assert!(perm(PermType::Read, b"a", b"b").is_valid_range());
        assert!(perm(PermType::Read, b"a", b"\0").is_valid_range());
        assert!(!perm(PermType::Read, b"", b"").is_valid_range());
        assert!(!perm(PermType::Read, b"b", b"a").is_valid_range());
        assert!(!perm(PermType::Read, b"a", b"a").is_valid_range());
    }

    /// Keys over a tiny alphabet, short enough that every gap between interval ends of at
    /// most two bytes holds one of them: deciding coverage by enumerating them is exact.
    fn universe() -> Vec<Vec<u8>> {
        let alphabet = [0u8, b'a', b'b'];
        let mut keys = vec![Vec::new()];
        let mut frontier = vec![Vec::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for key in &frontier {
                for &byte in &alphabet {
                    let mut longer: Vec<u8> = key.clone();
                    longer.push(byte);
                    next.push(longer);
                }
            }
            keys.extend(next.iter().cloned());
            frontier = next;
        }
        keys.retain(|key| !key.is_empty());
        keys
    }

    fn contains(interval: &KeyInterval, key: &[u8]) -> bool {
        key >= interval.start.as_ref()
            && match &interval.end {
                End::Before(end) => key < end.as_ref(),
                End::Unbounded => true,
            }
    }

    fn short_key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b']), 1..=2)
    }

    fn range_end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![Just(Vec::new()), Just(vec![0u8]), short_key(),]
    }

    proptest! {
        #[test]
        fn coverage_agrees_with_checking_every_key(
            grants in prop::collection::vec((0..3i32, short_key(), range_end()), 0..5),
            want in (short_key(), range_end()),
        ) {
            let perms: Vec<Permission> = grants
                .iter()
                .map(|(t, k, e)| Permission {
                    perm_type: PermType::from_i32(*t).expect("type"),
                    key: Bytes::from(k.clone()),
                    range_end: Bytes::from(e.clone()),
                })
                .filter(Permission::is_valid_range)
                .collect();
            let user = UserPermissions::merge(false, &perms);
            let (key, end) = (Bytes::from(want.0.clone()), Bytes::from(want.1.clone()));
            let wanted = KeyInterval::of(&key, &end);
            let readable: Vec<KeyInterval> = perms
                .iter()
                .filter(|p| p.perm_type.reads())
                .map(Permission::interval)
                .collect();
            let model = universe()
                .iter()
                .filter(|k| contains(&wanted, k))
                .all(|k| readable.iter().any(|i| contains(i, k)));
            prop_assert_eq!(user.may_read(&key, &end), model);
        }
    }
}
