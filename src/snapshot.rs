//! The snapshot file format: a consistent cut of the whole keyspace at one applied Raft index.
//! Pure: encoding into and decoding from byte buffers; the caller does the I/O.
//!
//! ```text
//! header (64 bytes)
//!   0  [u8; 8]  magic b"LODESNAP"
//!   8  u32      format version (SNAPSHOT_VERSION)
//!  12  u32      number of voters that follow the header
//!  16  u64      applied Raft index the cut was taken at
//!  24  u64      term of that index
//!  32  i64      keyspace revision at that index
//!  40  i64      compaction point (-1 before any)
//!  48  u64      reserved, zero
//!  56  u32      number of active alarms (format 2; zero in format 1)
//!  60  u32      CRC32C of bytes 0..60
//! voters: u64 member IDs, then their CRC32C (u32)
//! alarms (format 2): u64 member ID | u32 alarm type, each; then their CRC32C (u32)
//! members (format 3): u32 length | the member registry (`Members::encode`) | its CRC32C (u32)
//! leases (format 4): u32 length | leases | their CRC32C (u32); each lease:
//!   i64 id | i64 ttl (s) | i64 remaining (ms) | u64 generation | u32 key count |
//!   keys (u32 length | key, each)
//! auth (format 5): u32 length | the auth store (`AuthStore::encode`) | its CRC32C (u32)
//! blocks, each:  u32 payload length | u32 CRC32C of the payload | payload
//!   payload: key records back to back:
//!     u32 key length | key | u32 version count | versions:
//!       i64 main | i64 sub | u8 kind (0 deletion, 1 pair)
//!       [pair: i64 create | i64 mod | i64 version | i64 lease | u32 value length | value]
//! end: a block of length 0 whose CRC field holds the number of key records in the file (u32)
//!
//! A long history may be split into several records of the same key (in consecutive blocks):
//! a reader appends them in order.
//! ```
//!
//! Little-endian throughout. Every byte is covered by a checksum; a reader stops at the first
//! mismatch with the offset, so a damaged snapshot is refused, never half-loaded.

use std::ops::Bound;

use bytes::{BufMut, Bytes};

use crate::alarm::{AlarmMember, AlarmType};
use crate::mvcc::kv::KeyValue;
use crate::mvcc::shard::{MvccShard, Version};

/// Magic bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LODESNAP";
/// The snapshot format this build writes (it also reads format 4, which has no auth store,
/// format 3, which has no leases either, format 2, which has no member registry, and format 1,
/// which has no alarms).
pub const SNAPSHOT_VERSION: u32 = 5;
/// Bytes of the fixed header.
pub const SNAPSHOT_HEADER_SIZE: usize = 64;

/// One key's history as a snapshot holds it.
pub type KeyHistory = (Bytes, Vec<Version>);

/// What a snapshot is a cut of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The applied Raft index.
    pub applied_index: u64,
    /// Its term.
    pub applied_term: u64,
    /// The keyspace revision.
    pub revision: i64,
    /// The compaction point.
    pub compact_revision: i64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Alarms active at the cut.
    pub alarms: Vec<AlarmMember>,
    /// The member registry at the cut (`None` in files of format 1 and 2: the bootstrap
    /// members are the registry then).
    pub members: Option<crate::members::Members>,
    /// The leases at the cut (none in files before format 4).
    pub leases: Vec<crate::lease::SavedLease>,
    /// The auth store at the cut (an empty one, auth off, in files before format 5).
    pub auth: crate::auth::AuthStore,
}

/// Why a snapshot cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a lode snapshot.
    #[error("not a lode snapshot (bad magic)")]
    BadMagic,
    /// Another format version.
    #[error("snapshot format version {0}, this build reads version {SNAPSHOT_VERSION}")]
    UnsupportedVersion(u32),
    /// Damage at an offset.
    #[error("snapshot corrupted at offset {offset}: {reason}")]
    Corruption {
        /// Where.
        offset: usize,
        /// What.
        reason: &'static str,
    },
}

/// Encodes the header and voters.
pub fn encode_header(meta: &SnapshotMeta, out: &mut Vec<u8>) {
    let start = out.len();
    out.put_slice(&SNAPSHOT_MAGIC);
    out.put_u32_le(SNAPSHOT_VERSION);
    out.put_u32_le(meta.voters.len() as u32);
    out.put_u64_le(meta.applied_index);
    out.put_u64_le(meta.applied_term);
    out.put_i64_le(meta.revision);
    out.put_i64_le(meta.compact_revision);
    out.put_u64_le(0);
    out.put_u32_le(meta.alarms.len() as u32);
    let crc = crc32c::crc32c(&out[start..start + 60]);
    out.put_u32_le(crc);
    let voters_start = out.len();
    for voter in &meta.voters {
        out.put_u64_le(*voter);
    }
    let crc = crc32c::crc32c(&out[voters_start..]);
    out.put_u32_le(crc);
    let alarms_start = out.len();
    for alarm in &meta.alarms {
        out.put_u64_le(alarm.member_id);
        out.put_u32_le(alarm.alarm as u32);
    }
    let crc = crc32c::crc32c(&out[alarms_start..]);
    out.put_u32_le(crc);
    let mut registry = Vec::new();
    if let Some(members) = &meta.members {
        members.encode(&mut registry);
    }
    out.put_u32_le(registry.len() as u32);
    out.put_slice(&registry);
    out.put_u32_le(crc32c::crc32c(&registry));
    let mut leases = Vec::new();
    for lease in &meta.leases {
        leases.put_i64_le(lease.id);
        leases.put_i64_le(lease.ttl);
        leases.put_i64_le(lease.remaining_ms);
        leases.put_u64_le(lease.generation);
        leases.put_u32_le(lease.keys.len() as u32);
        for key in &lease.keys {
            leases.put_u32_le(key.len() as u32);
            leases.put_slice(key);
        }
    }
    out.put_u32_le(leases.len() as u32);
    out.put_slice(&leases);
    out.put_u32_le(crc32c::crc32c(&leases));
    let mut auth = Vec::new();
    meta.auth.encode(&mut auth);
    out.put_u32_le(auth.len() as u32);
    out.put_slice(&auth);
    out.put_u32_le(crc32c::crc32c(&auth));
}

/// Decodes the lease section's payload; `None` when it is malformed.
fn decode_leases(mut bytes: &[u8]) -> Option<Vec<crate::lease::SavedLease>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head)
    }
    fn word(bytes: &mut &[u8]) -> Option<u64> {
        take(bytes, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn short(bytes: &mut &[u8]) -> Option<usize> {
        take(bytes, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
    }
    let mut leases = Vec::new();
    while !bytes.is_empty() {
        let id = word(&mut bytes)? as i64;
        let ttl = word(&mut bytes)? as i64;
        let remaining_ms = word(&mut bytes)? as i64;
        let generation = word(&mut bytes)?;
        if ttl < 1 || remaining_ms < 0 {
            return None;
        }
        let count = short(&mut bytes)?;
        let mut keys = Vec::with_capacity(count.min(bytes.len() / 4));
        for _ in 0..count {
            let length = short(&mut bytes)?;
            keys.push(Bytes::copy_from_slice(take(&mut bytes, length)?));
        }
        leases.push(crate::lease::SavedLease {
            id,
            ttl,
            remaining_ms,
            generation,
            keys,
        });
    }
    Some(leases)
}

/// Builds one block in place at the end of a buffer: records are written straight into it and
/// the length and checksum are filled in by `finish` (no intermediate copy).
pub struct BlockWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    records: u32,
}

impl<'a> BlockWriter<'a> {
    /// Starts a block at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> BlockWriter<'a> {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u32_le(0);
        BlockWriter {
            out,
            start,
            records: 0,
        }
    }

    /// Bytes of key records so far.
    pub fn payload_len(&self) -> usize {
        self.out.len() - self.start - 8
    }

    /// Adds a record of `key` with `versions` (part of its history; a key's later versions may
    /// follow in another record, which a reader appends).
    pub fn push_key(&mut self, key: &[u8], versions: &[Version]) {
        self.out.put_u32_le(key.len() as u32);
        self.out.put_slice(key);
        self.out.put_u32_le(versions.len() as u32);
        for version in versions {
            encode_version(version, self.out);
        }
        self.records += 1;
    }

    /// Fills in the block's length and checksum; a block without records is removed (an empty
    /// block would read as the end marker). Returns the number of records.
    pub fn finish(self) -> u32 {
        if self.records == 0 {
            self.out.truncate(self.start);
            return 0;
        }
        let payload = &self.out[self.start + 8..];
        let length = payload.len() as u32;
        let crc = crc32c::crc32c(payload);
        self.out[self.start..self.start + 4].copy_from_slice(&length.to_le_bytes());
        self.out[self.start + 4..self.start + 8].copy_from_slice(&crc.to_le_bytes());
        self.records
    }
}

/// Where a snapshot export continues: at `key`, after its first `skip` versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportCursor {
    /// The key to continue at.
    pub key: Bytes,
    /// Versions of that key already exported.
    pub skip: usize,
}

/// Encodes `shard`'s key histories as of `revision` into one snapshot block at the end of `out`,
/// starting at `from` (the first key when `None`) and stopping once the block holds about
/// `max_bytes`: versions above `revision` are left out, so a snapshot taken in steps while
/// writes go on is a consistent cut at `revision`, and a long history is split across
/// steps, so no step takes longer than `max_bytes` of encoding. Returns the records
/// written and where to continue (`None` when the shard is done).
pub fn export_into(
    shard: &MvccShard,
    revision: i64,
    from: Option<&ExportCursor>,
    max_bytes: usize,
    out: &mut Vec<u8>,
) -> (u32, Option<ExportCursor>) {
    let (start, mut skip) = match from {
        Some(cursor) => (Bound::Included(cursor.key.clone()), cursor.skip),
        None => (Bound::Unbounded, 0),
    };
    let mut block = BlockWriter::begin(out);
    let mut next = None;
    for (key, history) in shard.key_histories_from(start) {
        if block.payload_len() >= max_bytes {
            next = Some(ExportCursor {
                key: key.clone(),
                skip: 0,
            });
            break;
        }
        let visible = &history[..history.partition_point(|v| v.main <= revision)];
        let remaining = visible.get(skip..).unwrap_or_default();
        skip = 0;
        if remaining.is_empty() {
            continue;
        }
        // As many versions as the budget allows (at least one, so every step advances).
        let budget = max_bytes.saturating_sub(block.payload_len() + key.len() + 8);
        let mut taken = 0;
        let mut bytes = 0;
        for version in remaining {
            let size = encoded_version_len(version);
            if taken > 0 && bytes + size > budget {
                break;
            }
            taken += 1;
            bytes += size;
        }
        block.push_key(key, &remaining[..taken]);
        if taken < remaining.len() {
            next = Some(ExportCursor {
                key: key.clone(),
                skip: visible.len() - remaining.len() + taken,
            });
            break;
        }
    }
    (block.finish(), next)
}

/// Bytes a version takes in a record.
pub fn encoded_version_len(version: &Version) -> usize {
    match &version.pair {
        None => 17,
        Some(pair) => 17 + 36 + pair.value.len(),
    }
}

fn encode_version(version: &Version, out: &mut Vec<u8>) {
    out.put_i64_le(version.main);
    out.put_i64_le(version.sub);
    match &version.pair {
        None => out.put_u8(0),
        Some(pair) => {
            out.put_u8(1);
            out.put_i64_le(pair.create_revision);
            out.put_i64_le(pair.mod_revision);
            out.put_i64_le(pair.version);
            out.put_i64_le(pair.lease);
            out.put_u32_le(pair.value.len() as u32);
            out.put_slice(&pair.value);
        }
    }
}

/// Encodes the end marker.
pub fn encode_end(key_count: u32, out: &mut Vec<u8>) {
    out.put_u32_le(0);
    out.put_u32_le(key_count);
}

/// A whole snapshot file of one shard: `meta`'s header, the shard's key histories as of
/// `meta.revision` in blocks of about `block_bytes` (exported in steps, as a snapshot taken
/// while writes go on is), then the end. The snapshotter writes every core's blocks as they
/// come instead; this serves tests and the fuzzer's corpus.
pub fn encode_shard(meta: &SnapshotMeta, shard: &MvccShard, block_bytes: usize) -> Vec<u8> {
    let mut file = Vec::new();
    encode_header(meta, &mut file);
    let mut records = 0;
    let mut from = None;
    loop {
        let (written, next) =
            export_into(shard, meta.revision, from.as_ref(), block_bytes, &mut file);
        records += written;
        match next {
            Some(cursor) => from = Some(cursor),
            None => break,
        }
    }
    encode_end(records, &mut file);
    file
}

/// A reader over a whole snapshot file.
pub struct SnapshotReader {
    bytes: Bytes,
    position: usize,
    keys_read: u32,
    finished: bool,
    /// Zero bytes may follow the end marker (an etcd-shaped stream's padding).
    zero_padding_allowed: bool,
    /// Where the first block starts.
    blocks_start: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(SnapshotError::Corruption {
                offset: self.base + self.at,
                reason: "record runs past its block",
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(word))
    }
}

fn word_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn word_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Checks that the section `range` and the CRC32C after it lie within `bytes` and agree;
/// a failure names `offset` and the reason for each case (`reasons`: past the end, mismatch).
fn checked_section(
    bytes: &[u8],
    range: std::ops::Range<usize>,
    offset: usize,
    reasons: (&'static str, &'static str),
) -> Result<(), SnapshotError> {
    if range.end + 4 > bytes.len() {
        return Err(SnapshotError::Corruption {
            offset,
            reason: reasons.0,
        });
    }
    if crc32c::crc32c(&bytes[range.clone()]) != word_u32(bytes, range.end) {
        return Err(SnapshotError::Corruption {
            offset,
            reason: reasons.1,
        });
    }
    Ok(())
}

/// A section stored as `u32 length | payload | CRC32C of the payload` at `position`: the
/// payload's range and where the next section starts, once its checksum holds.
fn sized_section(
    bytes: &[u8],
    position: usize,
    reasons: (&'static str, &'static str),
) -> Result<(std::ops::Range<usize>, usize), SnapshotError> {
    if position + 4 > bytes.len() {
        return Err(SnapshotError::Corruption {
            offset: position,
            reason: reasons.0,
        });
    }
    let start = position + 4;
    let end = start + word_u32(bytes, position) as usize;
    checked_section(bytes, start..end, position, reasons)?;
    Ok((start..end, end + 4))
}

impl SnapshotReader {
    /// Checks the header and voters; blocks are read with [`SnapshotReader::next_block`].
    pub fn open(bytes: Bytes) -> Result<(SnapshotMeta, SnapshotReader), SnapshotError> {
        if bytes.len() < SNAPSHOT_HEADER_SIZE {
            return Err(SnapshotError::Corruption {
                offset: 0,
                reason: "file shorter than a header",
            });
        }
        if bytes[0..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if crc32c::crc32c(&bytes[0..60]) != word_u32(&bytes, 60) {
            return Err(SnapshotError::Corruption {
                offset: 0,
                reason: "header checksum mismatch",
            });
        }
        let version = word_u32(&bytes, 8);
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let voter_count = word_u32(&bytes, 12) as usize;
        let voters_end = SNAPSHOT_HEADER_SIZE + voter_count * 8;
        checked_section(
            &bytes,
            SNAPSHOT_HEADER_SIZE..voters_end,
            SNAPSHOT_HEADER_SIZE,
            ("voters run past the file", "voters checksum mismatch"),
        )?;
        let mut alarms = Vec::new();
        let mut position = voters_end + 4;
        if version >= 2 {
            let alarm_count = word_u32(&bytes, 56) as usize;
            let alarms_end = position + alarm_count * 12;
            checked_section(
                &bytes,
                position..alarms_end,
                position,
                ("alarms run past the file", "alarms checksum mismatch"),
            )?;
            for at in (position..alarms_end).step_by(12) {
                let alarm = AlarmType::from_number(word_u32(&bytes, at + 8)).ok_or(
                    SnapshotError::Corruption {
                        offset: at,
                        reason: "unknown alarm type",
                    },
                )?;
                alarms.push(AlarmMember {
                    member_id: word_u64(&bytes, at),
                    alarm,
                });
            }
            position = alarms_end + 4;
        }
        let mut members = None;
        if version >= 3 {
            let (payload, next) = sized_section(
                &bytes,
                position,
                ("members run past the file", "members checksum mismatch"),
            )?;
            if !payload.is_empty() {
                members = Some(crate::members::Members::decode(&bytes[payload]).ok_or(
                    SnapshotError::Corruption {
                        offset: position,
                        reason: "malformed member registry",
                    },
                )?);
            }
            position = next;
        }
        let mut leases = Vec::new();
        if version >= 4 {
            let (payload, next) = sized_section(
                &bytes,
                position,
                ("leases run past the file", "leases checksum mismatch"),
            )?;
            leases = decode_leases(&bytes[payload]).ok_or(SnapshotError::Corruption {
                offset: position,
                reason: "malformed leases",
            })?;
            position = next;
        }
        let mut auth = crate::auth::AuthStore::new();
        if version >= 5 {
            let (payload, next) = sized_section(
                &bytes,
                position,
                ("auth runs past the file", "auth checksum mismatch"),
            )?;
            auth = crate::auth::AuthStore::decode(&bytes[payload]).map_err(|_| {
                SnapshotError::Corruption {
                    offset: position,
                    reason: "malformed auth store",
                }
            })?;
            position = next;
        }
        let meta = SnapshotMeta {
            applied_index: word_u64(&bytes, 16),
            applied_term: word_u64(&bytes, 24),
            revision: word_u64(&bytes, 32) as i64,
            compact_revision: word_u64(&bytes, 40) as i64,
            voters: (0..voter_count)
                .map(|i| word_u64(&bytes, SNAPSHOT_HEADER_SIZE + i * 8))
                .collect(),
            alarms,
            members,
            leases,
            auth,
        };
        Ok((
            meta,
            SnapshotReader {
                bytes,
                position,
                keys_read: 0,
                finished: false,
                zero_padding_allowed: false,
                blocks_start: position,
            },
        ))
    }

    /// Accepts zero bytes after the end marker (the padding of an etcd-shaped stream).
    pub fn allow_zero_padding(mut self) -> SnapshotReader {
        self.zero_padding_allowed = true;
        self
    }

    /// Where the blocks start (the header and its sections end).
    pub fn blocks_start(&self) -> usize {
        self.blocks_start
    }

    /// Where the end marker ends, once [`SnapshotReader::next_block`] has returned `None`.
    pub fn end(&self) -> Option<usize> {
        self.finished.then_some(self.position)
    }

    /// The next block's key records; `None` after the end marker (whose key count must match).
    pub fn next_block(&mut self) -> Result<Option<Vec<KeyHistory>>, SnapshotError> {
        if self.finished {
            return Ok(None);
        }
        let at = self.position;
        if at + 8 > self.bytes.len() {
            return Err(SnapshotError::Corruption {
                offset: at,
                reason: "file ends before the end marker",
            });
        }
        let length = word_u32(&self.bytes, at) as usize;
        let crc = word_u32(&self.bytes, at + 4);
        if length == 0 {
            if crc != self.keys_read {
                return Err(SnapshotError::Corruption {
                    offset: at,
                    reason: "key count at the end does not match",
                });
            }
            let padding = &self.bytes[at + 8..];
            let padding_ok = padding.is_empty()
                || (self.zero_padding_allowed && padding.iter().all(|&b| b == 0));
            if !padding_ok {
                return Err(SnapshotError::Corruption {
                    offset: at + 8,
                    reason: "bytes after the end marker",
                });
            }
            self.finished = true;
            self.position = at + 8;
            return Ok(None);
        }
        let start = at + 8;
        let end = start
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(SnapshotError::Corruption {
                offset: at,
                reason: "block runs past the file",
            })?;
        if crc32c::crc32c(&self.bytes[start..end]) != crc {
            return Err(SnapshotError::Corruption {
                offset: at,
                reason: "block checksum mismatch",
            });
        }
        let block = self.bytes.slice(start..end);
        let mut cursor = Cursor {
            bytes: &block,
            at: 0,
            base: start,
        };
        let mut keys = Vec::new();
        while cursor.at < block.len() {
            let key_length = cursor.u32()? as usize;
            let key = block.slice_ref(cursor.take(key_length)?);
            let count = cursor.u32()? as usize;
            let mut versions = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let main = cursor.i64()?;
                let sub = cursor.i64()?;
                let kind = cursor.take(1)?[0];
                let pair = match kind {
                    0 => None,
                    1 => {
                        let create_revision = cursor.i64()?;
                        let mod_revision = cursor.i64()?;
                        let version = cursor.i64()?;
                        let lease = cursor.i64()?;
                        let value_length = cursor.u32()? as usize;
                        let value = block.slice_ref(cursor.take(value_length)?);
                        Some(KeyValue {
                            key: key.clone(),
                            create_revision,
                            mod_revision,
                            version,
                            value,
                            lease,
                        })
                    }
                    _ => {
                        return Err(SnapshotError::Corruption {
                            offset: start + cursor.at,
                            reason: "unknown version kind",
                        })
                    }
                };
                versions.push(Version { main, sub, pair });
            }
            if !versions
                .windows(2)
                .all(|w| (w[0].main, w[0].sub) < (w[1].main, w[1].sub))
            {
                return Err(SnapshotError::Corruption {
                    offset: start,
                    reason: "versions out of order",
                });
            }
            keys.push((key, versions));
            self.keys_read += 1;
        }
        self.position = end;
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests;

/// etcd's snapshot stream ends with a SHA-256 of everything before it, placed so the stream's
/// length is 32 more than a multiple of 512 (etcdctl refuses a download of any other length
/// with "sha256 checksum not found"). lode sends its snapshot file, zero padding, and that
/// hash, so etcdctl keeps the file and `lodectl snapshot restore` can check it.
pub const ETCD_HASH_LEN: usize = 32;
const ETCD_ALIGN: u64 = 512;

/// Bytes of the etcd-shaped stream for a snapshot file of `file_size` bytes.
pub fn etcd_stream_len(file_size: u64) -> u64 {
    file_size.div_ceil(ETCD_ALIGN) * ETCD_ALIGN + ETCD_HASH_LEN as u64
}

/// Hashes a snapshot file as it streams and makes the stream's trailer.
#[derive(Default)]
pub struct EtcdStreamHasher {
    hasher: sha2::Sha256,
    hashed: u64,
}

impl EtcdStreamHasher {
    /// Adds streamed file bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.hasher.update(bytes);
        self.hashed += bytes.len() as u64;
    }

    /// The zero padding and the hash that end the stream (after all of the file was added).
    pub fn trailer(mut self) -> Vec<u8> {
        use sha2::Digest;
        let padding = (etcd_stream_len(self.hashed) - self.hashed) as usize - ETCD_HASH_LEN;
        let mut trailer = vec![0u8; padding];
        self.hasher.update(&trailer);
        trailer.extend_from_slice(&self.hasher.finalize());
        trailer
    }
}

/// The file and zero padding of an etcd-shaped download whose trailing SHA-256 matches what
/// precedes it; `None` when `bytes` is not one (a plain lode snapshot file, or a damaged
/// download).
pub fn etcd_shaped_body(bytes: &Bytes) -> Option<Bytes> {
    use sha2::Digest;
    let len = bytes.len();
    if len < ETCD_HASH_LEN || (len - ETCD_HASH_LEN) as u64 % ETCD_ALIGN != 0 {
        return None;
    }
    let body = bytes.slice(..len - ETCD_HASH_LEN);
    (sha2::Sha256::digest(&body)[..] == bytes[len - ETCD_HASH_LEN..]).then_some(body)
}
