//! etcd's leases, pure: the replicated set of leases with the keys attached to each, and when
//! each may expire. No clocks: callers pass `now`, a monotonic time on this member.
//!
//! What is replicated (applied in log order on every member): grants, revokes, the keys puts
//! attach to a lease and deletes or later puts detach, and renewals. Renewals travel as
//! batches: the leader gathers the keep-alives it receives and proposes their lease IDs in one
//! entry every so often, and answers a keep-alive only once its batch is applied. So every
//! member knows, for every lease, the local time it last applied a renewal of it
//! (`renewed_at`), and a lease's deadline is `renewed_at + ttl`. Only the leader expires
//! leases (it proposes their revocation once their deadline passed).
//!
//! Why this shape (etcd's users lose lease time on every leader change, etcd issue #9888):
//! a new leader starts from deadlines it applied itself, each no earlier than the renewal's
//! commit, so remaining TTLs survive a leader change instead of resetting to the full TTL;
//! `promote` then adds a margin (an election timeout, as etcd extends leases by), so that a
//! keep-alive answered by the old leader just before it failed is honoured in full.
//!
//! Invariants: every key attached to a lease is in that lease's key set and in no other; a
//! revoked lease is gone with its key set (its keys are deleted in the same revision by the
//! caller); `renewed_at` never moves past `now` at the time it is set; `by_deadline` holds
//! exactly one entry per lease, its current deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

/// The largest TTL etcd accepts, in seconds.
pub const MAX_TTL_SECONDS: i64 = 9_000_000_000;

/// Leases the leader expires per second at most (etcd's revoke rate): an expiry deletes every
/// attached key in one revision, so a mass expiry is spread instead of stalling the log.
pub const EXPIRIES_PER_SECOND: u64 = 1000;

/// etcd's lease errors and their exact messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No lease with that ID.
    #[error("etcdserver: requested lease not found")]
    NotFound,
    /// A grant asked for an ID in use.
    #[error("etcdserver: lease already exists")]
    AlreadyExists,
    /// A grant asked for more than `MAX_TTL_SECONDS`.
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
}

/// The smallest TTL a lease gets, in seconds: one and a half election timeouts rounded up, as
/// etcd derives it (2 s with etcd's default 1 s election timeout). A grant asking for less is
/// silently raised to it, so a lease cannot expire during a leader election.
pub fn min_ttl_seconds(election_timeout: Duration) -> i64 {
    let millis = election_timeout.as_millis() as i64 * 3 / 2;
    ((millis + 999) / 1000).max(1)
}

/// Checks a grant's TTL before it is proposed; the TTL the lease will have.
pub fn granted_ttl(requested: i64, min_ttl: i64) -> Result<i64, LeaseError> {
    if requested > MAX_TTL_SECONDS {
        return Err(LeaseError::TtlTooLarge);
    }
    Ok(requested.max(min_ttl))
}

/// A lease change that goes through the log. Grants and revocations come from clients;
/// renewals are the keep-alives a member gathered; expiries come from the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Grant lease `id` (non-zero, chosen before proposing) with `ttl` seconds (already
    /// checked and raised by `granted_ttl`).
    Grant {
        /// The lease ID.
        id: i64,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// Revoke a lease, deleting its keys in one revision.
    Revoke {
        /// The lease ID.
        id: i64,
    },
    /// A batch of keep-alives: each lease still present restarts its TTL.
    Renew {
        /// Lease IDs, in the order their keep-alives are answered.
        ids: Vec<i64>,
    },
    /// The leader found these leases expired: each is revoked unless it was renewed since
    /// (its generation moved), so a keep-alive that won the race keeps its lease.
    Expire {
        /// (lease ID, the generation the leader saw expire).
        leases: Vec<(i64, u64)>,
    },
}

/// What applying a `LeaseRequest` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// A grant: the lease and its TTL.
    Granted {
        /// The lease ID.
        id: i64,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// A revocation.
    Revoked,
    /// Renewals: per ID in the request's order, its TTL (0 for a lease that does not exist).
    Renewed {
        /// TTLs in seconds.
        ttls: Vec<i64>,
    },
    /// Expiries: the leases actually revoked.
    Expired {
        /// Their IDs.
        ids: Vec<i64>,
    },
}

/// A lease as a snapshot keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedLease {
    /// The lease ID.
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
    /// Milliseconds it had left when the snapshot was taken (never more than `ttl`).
    pub remaining_ms: i64,
    /// Its renewal generation.
    pub generation: u64,
    /// Attached keys, in order.
    pub keys: Vec<Bytes>,
}

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    /// Granted TTL in seconds.
    ttl: i64,
    /// Renewals applied since the grant: the same on every member at the same log position.
    generation: u64,
    /// Attached keys.
    keys: BTreeSet<Bytes>,
    /// When this member last applied its grant or a renewal (or, after `promote`, that plus
    /// the margin, capped at the promotion time).
    renewed_at: Duration,
}

impl Lease {
    fn deadline(&self) -> Duration {
        // TTLs are positive (raised to the minimum before proposing): `max` only keeps a
        // damaged log from panicking here.
        self.renewed_at + Duration::from_secs(self.ttl.max(0) as u64)
    }
}

/// What `time_to_live` reports of a lease (etcd's LeaseTimeToLive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// The granted TTL in seconds.
    pub granted_ttl: i64,
    /// Seconds left, rounded down; 0 once the deadline passed (until it is revoked).
    pub ttl: i64,
    /// Attached keys, in order.
    pub keys: Vec<Bytes>,
}

/// The leases of the keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
    /// Which lease each attached key belongs to.
    attached: BTreeMap<Bytes, i64>,
    /// Every lease by its deadline: the leader finds what to expire without a scan.
    by_deadline: BTreeSet<(Duration, i64)>,
}

impl Lessor {
    /// No leases.
    pub fn new() -> Lessor {
        Lessor::default()
    }

    /// True when the lease exists.
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease ID, ascending (etcd's LeaseLeases).
    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Applies a grant of lease `id` (non-zero, chosen before proposing) with `ttl` seconds
    /// (already checked by `granted_ttl`).
    pub fn grant(&mut self, id: i64, ttl: i64, now: Duration) -> Result<(), LeaseError> {
        if id == 0 || self.leases.contains_key(&id) {
            return Err(LeaseError::AlreadyExists);
        }
        let lease = Lease {
            ttl,
            generation: 0,
            keys: BTreeSet::new(),
            renewed_at: now,
        };
        self.by_deadline.insert((lease.deadline(), id));
        self.leases.insert(id, lease);
        Ok(())
    }

    /// Rebuilds the deadline index (after every lease's time moved).
    fn index_deadlines(&mut self) {
        self.by_deadline = self
            .leases
            .iter()
            .map(|(&id, lease)| (lease.deadline(), id))
            .collect();
    }

    /// The keys applying `request` deletes, without applying it (the errors `apply` would
    /// answer for a revocation of a lease that does not exist).
    pub fn keys_to_delete(&self, request: &LeaseRequest) -> Result<Vec<Bytes>, LeaseError> {
        match request {
            LeaseRequest::Revoke { id } => Ok(self
                .leases
                .get(id)
                .ok_or(LeaseError::NotFound)?
                .keys
                .iter()
                .cloned()
                .collect()),
            LeaseRequest::Expire { leases } => {
                let mut keys: Vec<Bytes> = leases
                    .iter()
                    .filter_map(|(id, generation)| {
                        self.leases
                            .get(id)
                            .filter(|lease| lease.generation == *generation)
                    })
                    .flat_map(|lease| lease.keys.iter().cloned())
                    .collect();
                keys.sort_unstable();
                Ok(keys)
            }
            LeaseRequest::Grant { .. } | LeaseRequest::Renew { .. } => Ok(Vec::new()),
        }
    }

    /// Applies one committed lease change at `now`; also returns the keys to delete in one
    /// revision (those of a revoked or expired lease), in order. A refused change changes
    /// nothing.
    pub fn apply(
        &mut self,
        request: &LeaseRequest,
        now: Duration,
    ) -> Result<(LeaseOutcome, Vec<Bytes>), LeaseError> {
        match request {
            LeaseRequest::Grant { id, ttl } => {
                if *ttl > MAX_TTL_SECONDS {
                    return Err(LeaseError::TtlTooLarge);
                }
                self.grant(*id, *ttl, now)?;
                Ok((LeaseOutcome::Granted { id: *id, ttl: *ttl }, Vec::new()))
            }
            LeaseRequest::Revoke { id } => Ok((LeaseOutcome::Revoked, self.revoke(*id)?)),
            LeaseRequest::Renew { ids } => Ok((
                LeaseOutcome::Renewed {
                    ttls: self.renew(ids, now),
                },
                Vec::new(),
            )),
            LeaseRequest::Expire { leases } => {
                let mut ids = Vec::new();
                let mut keys = Vec::new();
                for &(id, generation) in leases {
                    let due = self
                        .leases
                        .get(&id)
                        .is_some_and(|lease| lease.generation == generation);
                    if due {
                        keys.append(&mut self.revoke(id)?);
                        ids.push(id);
                    }
                }
                keys.sort_unstable();
                Ok((LeaseOutcome::Expired { ids }, keys))
            }
        }
    }

    /// Applies a revocation: the lease is gone; returns its keys, which the caller deletes in
    /// the same revision.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Bytes>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        self.by_deadline.remove(&(lease.deadline(), id));
        for key in &lease.keys {
            self.attached.remove(key);
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// Records that `key` now belongs to `lease` (0: to none), as a put applied with that
    /// lease makes it; the key leaves any lease it belonged to.
    pub fn attach(&mut self, key: &Bytes, lease: i64) {
        self.detach(key);
        if let Some(owner) = self.leases.get_mut(&lease) {
            owner.keys.insert(key.clone());
            self.attached.insert(key.clone(), lease);
        }
    }

    /// Records that `key` was deleted: it leaves its lease.
    pub fn detach(&mut self, key: &Bytes) {
        if let Some(lease) = self.attached.remove(key) {
            if let Some(owner) = self.leases.get_mut(&lease) {
                owner.keys.remove(key);
            }
        }
    }

    /// The lease `key` belongs to, if any.
    pub fn lease_of(&self, key: &[u8]) -> Option<i64> {
        self.attached.get(key).copied()
    }

    /// Applies a batch of renewals: each lease still present restarts its TTL from `now`.
    /// Returns, per ID in order, its TTL (0 for a lease that no longer exists, as etcd's
    /// keep-alive answers).
    pub fn renew(&mut self, ids: &[i64], now: Duration) -> Vec<i64> {
        ids.iter()
            .map(|id| match self.leases.get_mut(id) {
                Some(lease) => {
                    self.by_deadline.remove(&(lease.deadline(), *id));
                    lease.renewed_at = now;
                    lease.generation += 1;
                    self.by_deadline.insert((lease.deadline(), *id));
                    lease.ttl
                }
                None => 0,
            })
            .collect()
    }

    /// This member became leader at `now`: every lease gets `margin` more, though never more
    /// than its full TTL from now.
    pub fn promote(&mut self, now: Duration, margin: Duration) {
        for lease in self.leases.values_mut() {
            lease.renewed_at = (lease.renewed_at + margin).min(now);
        }
        self.index_deadlines();
    }

    /// etcd's LeaseTimeToLive at `now`; `None` for a lease that does not exist.
    pub fn time_to_live(&self, id: i64, now: Duration, with_keys: bool) -> Option<TimeToLive> {
        let lease = self.leases.get(&id)?;
        Some(TimeToLive {
            granted_ttl: lease.ttl,
            ttl: lease.deadline().saturating_sub(now).as_secs() as i64,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Leases whose deadline passed by `now`, earliest first, at most `limit` of them (the
    /// leader revokes at a bounded rate, as etcd does), each with its generation (for
    /// `LeaseRequest::Expire`).
    pub fn expired(&self, now: Duration, limit: usize) -> Vec<(i64, u64)> {
        self.by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .take(limit)
            .filter_map(|(_, id)| Some((*id, self.leases.get(id)?.generation)))
            .collect()
    }

    /// The expiries a leader proposes at a tick of `heartbeat` at `now` (its lease time): the
    /// leases whose deadline passed a heartbeat ago or longer (a keep-alive answered by a
    /// follower reached its client a network hop after the leader applied it), earliest first,
    /// at most `EXPIRIES_PER_SECOND` a second, with their generations.
    pub fn due(&self, now: Duration, heartbeat: Duration) -> Vec<(i64, u64)> {
        let per_tick = (EXPIRIES_PER_SECOND as u128 * heartbeat.as_millis() / 1000).max(1);
        self.expired(now.saturating_sub(heartbeat), per_tick as usize)
    }

    /// The earliest deadline of any lease (when the leader next has something to expire).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// The leases as a snapshot keeps them at `now`: a member loading one treats each as
    /// renewed so that it keeps what it had left (never more than its TTL).
    pub fn export(&self, now: Duration) -> Vec<SavedLease> {
        self.leases
            .iter()
            .map(|(&id, lease)| SavedLease {
                id,
                ttl: lease.ttl,
                remaining_ms: (lease.deadline().saturating_sub(now).as_millis() as i64)
                    .min(lease.ttl.saturating_mul(1000)),
                generation: lease.generation,
                keys: lease.keys.iter().cloned().collect(),
            })
            .collect()
    }

    /// Replaces every lease with a snapshot's (`export`'s output) at `now`.
    pub fn import(&mut self, saved: &[SavedLease], now: Duration) {
        self.leases.clear();
        self.attached.clear();
        for lease in saved {
            let full_ms = lease.ttl.max(0).saturating_mul(1000);
            let used =
                Duration::from_millis((full_ms - lease.remaining_ms.clamp(0, full_ms)) as u64);
            for key in &lease.keys {
                self.attached.insert(key.clone(), lease.id);
            }
            self.leases.insert(
                lease.id,
                Lease {
                    ttl: lease.ttl,
                    generation: lease.generation,
                    keys: lease.keys.iter().cloned().collect(),
                    renewed_at: now.saturating_sub(used),
                },
            );
        }
        self.index_deadlines();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn ttls_are_raised_to_the_minimum_and_capped_as_etcds() {
        assert_eq!(min_ttl_seconds(Duration::from_millis(1000)), 2);
        assert_eq!(min_ttl_seconds(Duration::from_millis(100)), 1);
        assert_eq!(min_ttl_seconds(Duration::from_millis(5000)), 8);
        assert_eq!(granted_ttl(1, 2), Ok(2));
        assert_eq!(granted_ttl(-5, 2), Ok(2));
        assert_eq!(granted_ttl(60, 2), Ok(60));
        assert_eq!(
            granted_ttl(MAX_TTL_SECONDS + 1, 2),
            Err(LeaseError::TtlTooLarge)
        );
        assert_eq!(
            LeaseError::TtlTooLarge.to_string(),
            "etcdserver: too large lease TTL"
        );
    }

    #[test]
    fn grants_revokes_and_attached_keys() {
        let mut lessor = Lessor::new();
        let now = 10 * SECOND;
        assert_eq!(lessor.grant(7, 30, now), Ok(()));
        assert_eq!(lessor.grant(7, 30, now), Err(LeaseError::AlreadyExists));
        lessor.grant(8, 30, now).unwrap();
        lessor.attach(&key("a"), 7);
        lessor.attach(&key("b"), 7);
        lessor.attach(&key("c"), 8);
        // A put with another lease moves the key; one without a lease detaches it; a delete
        // detaches it; a lease that does not exist attaches nothing.
        lessor.attach(&key("c"), 7);
        lessor.attach(&key("b"), 0);
        lessor.detach(&key("a"));
        lessor.attach(&key("d"), 99);
        assert_eq!(lessor.lease_of(b"c"), Some(7));
        assert_eq!(lessor.lease_of(b"b"), None);
        assert_eq!(lessor.lease_of(b"d"), None);
        let ttl = lessor.time_to_live(7, now, true).unwrap();
        assert_eq!(
            (ttl.granted_ttl, ttl.ttl, ttl.keys),
            (30, 30, vec![key("c")])
        );
        assert_eq!(lessor.revoke(7), Ok(vec![key("c")]));
        assert_eq!(lessor.lease_of(b"c"), None);
        assert_eq!(lessor.revoke(7), Err(LeaseError::NotFound));
        assert_eq!(lessor.time_to_live(7, now, true), None);
        assert_eq!(lessor.ids(), vec![8]);
    }

    #[test]
    fn deadlines_follow_renewals_and_survive_promotion() {
        let mut lessor = Lessor::new();
        lessor.grant(1, 10, Duration::ZERO).unwrap();
        lessor.grant(2, 10, Duration::ZERO).unwrap();
        assert_eq!(lessor.expired(9 * SECOND, 10), Vec::<(i64, u64)>::new());
        assert_eq!(lessor.renew(&[1, 3], 8 * SECOND), vec![10, 0]);
        assert_eq!(lessor.expired(10 * SECOND, 10), vec![(2, 0)]);
        assert_eq!(lessor.next_deadline(), Some(10 * SECOND));
        assert_eq!(lessor.time_to_live(1, 10 * SECOND, false).unwrap().ttl, 8);
        // A new leader at 12 s keeps lease 1's remaining time plus the margin, never more
        // than the full TTL: neither reset to the full TTL nor shortened.
        lessor.promote(12 * SECOND, SECOND);
        assert_eq!(lessor.time_to_live(1, 12 * SECOND, false).unwrap().ttl, 7);
        assert_eq!(lessor.expired(18 * SECOND, 10), vec![(2, 0)]);
        assert_eq!(lessor.expired(19 * SECOND, 10), vec![(2, 0), (1, 1)]);
        assert_eq!(
            lessor.expired(19 * SECOND, 1),
            vec![(2, 0)],
            "oldest first, bounded"
        );
    }

    #[test]
    fn snapshots_keep_what_each_lease_had_left() {
        let mut lessor = Lessor::new();
        lessor.grant(1, 60, Duration::ZERO).unwrap();
        lessor.grant(2, 5, Duration::ZERO).unwrap();
        lessor.attach(&key("k"), 1);
        lessor.renew(&[1], Duration::ZERO);
        let saved = lessor.export(20 * SECOND);
        assert_eq!(
            saved,
            vec![
                SavedLease {
                    id: 1,
                    ttl: 60,
                    remaining_ms: 40_000,
                    generation: 1,
                    keys: vec![key("k")]
                },
                SavedLease {
                    id: 2,
                    ttl: 5,
                    remaining_ms: 0,
                    generation: 0,
                    keys: vec![]
                }
            ]
        );
        let mut loaded = Lessor::new();
        loaded.import(&saved, 100 * SECOND);
        assert_eq!(loaded.time_to_live(1, 100 * SECOND, false).unwrap().ttl, 40);
        assert_eq!(loaded.lease_of(b"k"), Some(1));
        assert_eq!(loaded.expired(100 * SECOND, 10), vec![(2, 0)]);
        assert_eq!(loaded.export(100 * SECOND), saved);
    }

    #[test]
    fn applied_changes_revoke_keys_and_expiry_loses_to_a_later_renewal() {
        let mut lessor = Lessor::new();
        let grant = |id| LeaseRequest::Grant { id, ttl: 5 };
        assert_eq!(
            lessor.apply(&grant(1), Duration::ZERO),
            Ok((LeaseOutcome::Granted { id: 1, ttl: 5 }, vec![]))
        );
        lessor.apply(&grant(2), Duration::ZERO).unwrap();
        assert_eq!(
            lessor.apply(&grant(2), Duration::ZERO),
            Err(LeaseError::AlreadyExists)
        );
        assert_eq!(
            lessor.apply(
                &LeaseRequest::Grant {
                    id: 3,
                    ttl: MAX_TTL_SECONDS + 1
                },
                Duration::ZERO
            ),
            Err(LeaseError::TtlTooLarge)
        );
        lessor.attach(&key("b"), 1);
        lessor.attach(&key("a"), 2);
        lessor.attach(&key("c"), 2);
        // The leader saw both expire at generation 0; lease 1 was renewed before its expiry
        // was applied, so only lease 2 goes, with its keys.
        let due = lessor.expired(6 * SECOND, 10);
        assert_eq!(due, vec![(1, 0), (2, 0)]);
        lessor
            .apply(&LeaseRequest::Renew { ids: vec![1] }, 6 * SECOND)
            .unwrap();
        assert_eq!(
            lessor.apply(&LeaseRequest::Expire { leases: due }, 6 * SECOND),
            Ok((
                LeaseOutcome::Expired { ids: vec![2] },
                vec![key("a"), key("c")]
            ))
        );
        assert_eq!(
            lessor.apply(&LeaseRequest::Revoke { id: 1 }, 6 * SECOND),
            Ok((LeaseOutcome::Revoked, vec![key("b")]))
        );
        assert_eq!(
            lessor.apply(&LeaseRequest::Revoke { id: 1 }, 6 * SECOND),
            Err(LeaseError::NotFound)
        );
        assert!(lessor.is_empty());
    }

    /// The invariants, checked against a scan of every lease.
    fn check(lessor: &Lessor, now: Duration) {
        let mut scanned: Vec<(Duration, i64)> = lessor
            .leases
            .iter()
            .map(|(&id, lease)| (lease.deadline(), id))
            .collect();
        scanned.sort_unstable();
        let indexed: Vec<(Duration, i64)> = lessor.by_deadline.iter().copied().collect();
        assert_eq!(
            indexed, scanned,
            "one index entry per lease, at its deadline"
        );
        let due: Vec<i64> = scanned
            .iter()
            .filter(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
            .collect();
        let expired: Vec<i64> = lessor
            .expired(now, usize::MAX)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(expired, due);
        for (key, id) in &lessor.attached {
            assert!(lessor.leases[id].keys.contains(key), "{key:?} in {id}");
        }
        let keys: usize = lessor.leases.values().map(|lease| lease.keys.len()).sum();
        assert_eq!(
            keys,
            lessor.attached.len(),
            "every lease key is attached once"
        );
    }

    #[test]
    fn random_changes_keep_the_key_sets_and_the_deadline_index_exact() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut lessor = Lessor::new();
        let mut now = Duration::from_secs(100);
        for _ in 0..5_000 {
            now += Duration::from_millis(next(700));
            let id = next(8) as i64 + 1;
            match next(7) {
                0 => {
                    let _ = lessor.grant(id, next(10) as i64 + 1, now);
                }
                1 => {
                    let _ = lessor.revoke(id);
                }
                2 => lessor.attach(&key(&format!("k{}", next(12))), next(9) as i64),
                3 => lessor.detach(&key(&format!("k{}", next(12)))),
                4 => {
                    lessor.renew(&[id, next(8) as i64 + 1], now);
                }
                5 => lessor.promote(now, Duration::from_millis(next(2000))),
                _ => {
                    let due = lessor.expired(now, next(3) as usize + 1);
                    let _ = lessor.apply(&LeaseRequest::Expire { leases: due }, now);
                }
            }
            check(&lessor, now);
            let saved = lessor.export(now);
            let mut loaded = Lessor::new();
            loaded.import(&saved, now);
            check(&loaded, now);
            assert_eq!(loaded.attached, lessor.attached);
        }
    }
}
