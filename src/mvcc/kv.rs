//! Keys, key ranges and key-value records, with etcd's conventions.

use bytes::Bytes;

/// A key's state at one revision, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Main revision of the key's latest creation.
    pub create_revision: i64,
    /// Main revision of the key's last change.
    pub mod_revision: i64,
    /// 1 at creation, +1 on each put; a delete ends the key.
    pub version: i64,
    /// The value.
    pub value: Bytes,
    /// Attached lease ID, 0 for none.
    pub lease: i64,
}

/// Keys `[start, end)`, or one key, or every key from `start` on: etcd's `range_end` forms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Bytes),
    /// Every key >= start (`range_end` is `"\0"`).
    From(Bytes),
    /// `[start, end)`; empty when `end <= start`.
    Between(Bytes, Bytes),
}

impl KeyRange {
    /// Interprets a request's `key` and `range_end` as etcd does.
    pub fn from_request(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == [0] {
            KeyRange::From(key.clone())
        } else {
            KeyRange::Between(key.clone(), range_end.clone())
        }
    }

    /// True when `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_ref() == key,
            KeyRange::From(start) => key >= start.as_ref(),
            KeyRange::Between(start, end) => key >= start.as_ref() && key < end.as_ref(),
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &Bytes {
        match self {
            KeyRange::Single(k) | KeyRange::From(k) | KeyRange::Between(k, _) => k,
        }
    }

    /// The range as a request's `key` and `range_end` (the inverse of `from_request`).
    pub fn to_request(&self) -> (Bytes, Bytes) {
        match self {
            KeyRange::Single(key) => (key.clone(), Bytes::new()),
            KeyRange::From(start) => (start.clone(), Bytes::from_static(&[0])),
            KeyRange::Between(start, end) => (start.clone(), end.clone()),
        }
    }
}

/// The end of the range holding every key with `prefix` (etcd's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and the rest dropped; `"\0"` (every key)
/// when the prefix is all 0xff bytes or empty.
pub fn prefix_range_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(byte) = end.last_mut() {
                *byte += 1;
            }
            return Bytes::from(end);
        }
        end.pop();
    }
    Bytes::from_static(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_forms() {
        let key = Bytes::from_static(b"b");
        assert_eq!(
            KeyRange::from_request(&key, &Bytes::new()),
            KeyRange::Single(key.clone())
        );
        let from = KeyRange::from_request(&key, &Bytes::from_static(&[0]));
        assert!(from.contains(b"b") && from.contains(b"zz") && !from.contains(b"a"));
        let between = KeyRange::from_request(&key, &Bytes::from_static(b"d"));
        assert!(between.contains(b"c") && !between.contains(b"d"));
        let empty = KeyRange::from_request(&key, &Bytes::from_static(b"a"));
        assert!(!empty.contains(b"b") && !empty.contains(b"a"));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"abc"), Bytes::from_static(b"abd"));
        assert_eq!(prefix_range_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_range_end(b"\xff\xff"), Bytes::from_static(&[0]));
        assert_eq!(prefix_range_end(b""), Bytes::from_static(&[0]));
    }
}
