//! Alarms and the space quota (etcd's Maintenance.Alarm and `--quota-backend-bytes`). Pure.
//!
//! Invariants:
//! - alarms change only by applying committed `AlarmRequest`s (activate, deactivate), so every
//!   replay of the log and every snapshot yields the same set;
//! - while a NOSPACE alarm is active, writes that add data (puts, txns with puts) are refused
//!   with etcd's "database space exceeded" before they are proposed; reads, deletes and
//!   compactions go on, so space can be won back;
//! - better than etcd: the NOSPACE alarm clears itself once compaction has brought the keyspace
//!   back under `CLEAR_BELOW_PERCENT` of the quota (etcd needs compact, defrag and a manual
//!   `alarm disarm`); `lodectl alarm disarm` works too;
//! - a member whose log disk is full raises NOSPACE for itself as [`AlarmType::LogDiskFull`],
//!   lode's own type, listed to clients as NOSPACE. It does not refuse the cluster's writes
//!   (the keyspace is not too big; one member's disk is full: that member refuses writes
//!   itself), and the member clears it once its log writes again (etcd would need
//!   `alarm disarm`; a disarm of NOSPACE clears it too). The quota's NOSPACE and the disk's are
//!   kept apart, so neither clears the other.

use std::collections::BTreeSet;

use crate::mvcc::request::{RequestOp, ResponseHeader, TxnRequest, WriteRequest};

/// etcd's default quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// A NOSPACE alarm clears itself once the keyspace is under this share of the quota.
pub const CLEAR_BELOW_PERCENT: u64 = 90;

/// etcd's per-put overhead in the quota's cost of a request.
pub const PUT_COST_OVERHEAD: u64 = 256;

/// etcd's `AlarmType` (values are the protocol's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmType {
    /// No alarm (in a request: every type).
    None = 0,
    /// The keyspace reached the quota.
    Nospace = 1,
    /// Data corruption was detected.
    Corrupt = 2,
    /// lode's own: the member's log disk is full. Listed to clients as NOSPACE; found only in
    /// lode's log entries and snapshots, never accepted from etcd's API.
    LogDiskFull = 257,
}

impl AlarmType {
    /// From the protocol's number; `None` for unknown numbers.
    pub fn from_number(number: u32) -> Option<AlarmType> {
        match number {
            0 => Some(AlarmType::None),
            1 => Some(AlarmType::Nospace),
            2 => Some(AlarmType::Corrupt),
            257 => Some(AlarmType::LogDiskFull),
            _ => None,
        }
    }

    /// From etcd's protocol number: etcd's types only.
    pub fn from_etcd_number(number: u32) -> Option<AlarmType> {
        AlarmType::from_number(number).filter(|alarm| *alarm != AlarmType::LogDiskFull)
    }

    /// The type clients are told of: a full log disk is etcd's NOSPACE.
    pub fn listed(self) -> AlarmType {
        match self {
            AlarmType::LogDiskFull => AlarmType::Nospace,
            other => other,
        }
    }

    /// etcd's name, as etcdctl prints it.
    pub fn name(self) -> &'static str {
        match self {
            AlarmType::None => "NONE",
            AlarmType::Nospace | AlarmType::LogDiskFull => "NOSPACE",
            AlarmType::Corrupt => "CORRUPT",
        }
    }
}

/// etcd's `AlarmRequest.AlarmAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    /// List alarms.
    Get = 0,
    /// Raise an alarm.
    Activate = 1,
    /// Clear an alarm.
    Deactivate = 2,
}

impl AlarmAction {
    /// From the protocol's number; `None` for unknown numbers.
    pub fn from_number(number: u32) -> Option<AlarmAction> {
        match number {
            0 => Some(AlarmAction::Get),
            1 => Some(AlarmAction::Activate),
            2 => Some(AlarmAction::Deactivate),
            _ => None,
        }
    }
}

/// etcd's `AlarmRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmRequest {
    /// What to do.
    pub action: AlarmAction,
    /// The member the alarm is about (0 with GET: every member).
    pub member_id: u64,
    /// Which alarm (NONE with GET: every type).
    pub alarm: AlarmType,
}

/// etcd's `AlarmMember`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmMember {
    /// The member.
    pub member_id: u64,
    /// Its alarm.
    pub alarm: AlarmType,
}

/// etcd's `AlarmResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlarmResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The alarms listed, raised or cleared.
    pub alarms: Vec<AlarmMember>,
}

/// The active alarms of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    active: BTreeSet<AlarmMember>,
}

impl Alarms {
    /// Alarms from a snapshot.
    pub fn from_members(members: impl IntoIterator<Item = AlarmMember>) -> Alarms {
        Alarms {
            active: members.into_iter().collect(),
        }
    }

    /// Every active alarm, by member then type, as stored (snapshots keep this).
    pub fn members(&self) -> Vec<AlarmMember> {
        self.active.iter().copied().collect()
    }

    /// Every active alarm as clients are told of it (a full log disk as NOSPACE), filtered by
    /// type unless `alarm` is NONE; `disk_full_here`: this member knows its own log disk is
    /// full, whether or not the alarm could be committed yet (a single member cannot).
    pub fn listed(&self, alarm: AlarmType, disk_full_here: Option<u64>) -> Vec<AlarmMember> {
        let here = disk_full_here.map(|member_id| AlarmMember {
            member_id,
            alarm: AlarmType::LogDiskFull,
        });
        let listed: BTreeSet<AlarmMember> = self
            .active
            .iter()
            .copied()
            .chain(here)
            .map(|m| AlarmMember {
                member_id: m.member_id,
                alarm: m.alarm.listed(),
            })
            .filter(|m| alarm == AlarmType::None || m.alarm == alarm.listed())
            .collect();
        listed.into_iter().collect()
    }

    /// True while any member has a NOSPACE alarm raised by the quota (which refuses every
    /// member's writes; a member's full log disk does not).
    pub fn no_space(&self) -> bool {
        self.active.iter().any(|m| m.alarm == AlarmType::Nospace)
    }

    /// True while `member` has alarm `alarm`.
    pub fn has(&self, member_id: u64, alarm: AlarmType) -> bool {
        self.active.contains(&AlarmMember { member_id, alarm })
    }

    /// Applies a request as etcd does: GET lists (filtered by type unless NONE), ACTIVATE
    /// adds and answers the alarm (NONE is ignored), DEACTIVATE removes and answers the alarm
    /// if it was active.
    pub fn apply(&mut self, request: &AlarmRequest) -> Vec<AlarmMember> {
        let member = AlarmMember {
            member_id: request.member_id,
            alarm: request.alarm,
        };
        let listed = AlarmMember {
            member_id: member.member_id,
            alarm: member.alarm.listed(),
        };
        match request.action {
            AlarmAction::Get => self.listed(request.alarm, None),
            AlarmAction::Activate if request.alarm == AlarmType::None => Vec::new(),
            AlarmAction::Activate => {
                self.active.insert(member);
                vec![listed]
            }
            AlarmAction::Deactivate => {
                let mut removed = self.active.remove(&member);
                if request.alarm == AlarmType::Nospace {
                    // An operator's disarm clears the member's full-disk alarm too (raised
                    // again if its disk is still full).
                    removed |= self.active.remove(&AlarmMember {
                        member_id: member.member_id,
                        alarm: AlarmType::LogDiskFull,
                    });
                }
                if removed {
                    vec![listed]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

/// This member's full-log-disk alarm ([`AlarmType::LogDiskFull`]) as the member changes it:
/// raised through the cluster once per episode of a full disk (not by a member alone, which
/// could not commit it and lists it itself), cleared once its log writes again; one change in
/// flight at a time.
#[derive(Debug, Default)]
pub struct DiskAlarm {
    in_flight: bool,
    /// Proposed in the current episode.
    raised: bool,
}

impl DiskAlarm {
    /// The change for this member (`member_id`) to propose now, if any, marked in flight:
    /// `full`, its log disk is full; `alone`, it is the only voter; `alarms`, as applied here.
    pub fn next(
        &mut self,
        member_id: u64,
        full: bool,
        alone: bool,
        alarms: &Alarms,
    ) -> Option<AlarmRequest> {
        if self.in_flight {
            return None;
        }
        let action = if full {
            if alone || self.raised {
                return None;
            }
            self.raised = true;
            AlarmAction::Activate
        } else {
            self.raised = false;
            if !alarms.has(member_id, AlarmType::LogDiskFull) {
                return None;
            }
            AlarmAction::Deactivate
        };
        self.in_flight = true;
        Some(AlarmRequest {
            action,
            member_id,
            alarm: AlarmType::LogDiskFull,
        })
    }

    /// The change proposed ended; `refused`: it failed for certain (not a timeout, whose
    /// outcome is unknown: a raise that may still commit is not proposed again), so a raise
    /// is proposed again while the disk stays full.
    pub fn ended(&mut self, action: AlarmAction, refused: bool) {
        if refused && action == AlarmAction::Activate {
            self.raised = false;
        }
        self.in_flight = false;
    }
}

/// The quota's cost of a write, as etcd counts it: a put costs its key and value plus
/// `PUT_COST_OVERHEAD`; a txn costs its larger branch (lode also counts puts in nested txns);
/// deletes and compactions cost nothing, so they are always admitted.
pub fn write_cost(request: &WriteRequest) -> u64 {
    match request {
        WriteRequest::Put(put) => PUT_COST_OVERHEAD + put.key.len() as u64 + put.value.len() as u64,
        WriteRequest::Txn(txn) => txn_cost(txn),
        // A grant costs what etcd counts it as (its lease record); revocations, renewals
        // and expiries free space or keep it.
        WriteRequest::Lease(crate::lease::LeaseRequest::Grant { .. }) => LEASE_GRANT_COST,
        WriteRequest::DeleteRange(_) | WriteRequest::Compact(_) | WriteRequest::Lease(_) => 0,
    }
}

/// Quota cost of a lease grant (etcd's `leaseOverhead`).
pub const LEASE_GRANT_COST: u64 = 64;

fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(put) => {
                    PUT_COST_OVERHEAD + put.key.len() as u64 + put.value.len() as u64
                }
                RequestOp::Txn(nested) => txn_cost(nested),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) | RequestOp::Empty => 0,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

/// Whether a write of `cost` is admitted with the keyspace at `size` bytes under `quota`
/// (`None`: no quota) and `alarms` active.
pub fn admitted(cost: u64, size: u64, quota: Option<u64>, alarms: &Alarms) -> bool {
    if cost == 0 {
        return true;
    }
    if alarms.no_space() {
        return false;
    }
    quota.is_none_or(|quota| size.saturating_add(cost) <= quota)
}

/// Whether a NOSPACE alarm may clear itself with the keyspace at `size` bytes.
pub fn space_recovered(size: u64, quota: Option<u64>) -> bool {
    quota.is_none_or(|quota| size < quota / 100 * CLEAR_BELOW_PERCENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::request::{DeleteRangeRequest, PutRequest};
    use bytes::Bytes;

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        }
    }

    #[test]
    fn costs_follow_etcd() {
        assert_eq!(write_cost(&WriteRequest::Put(put("ab", "cde"))), 256 + 5);
        let txn = TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(put("a", "b")), RequestOp::Put(put("c", "d"))],
            failure: vec![RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![RequestOp::Put(put("x", &"y".repeat(600)))],
                failure: vec![],
            })],
        };
        assert_eq!(write_cost(&WriteRequest::Txn(txn)), 256 + 601);
        let delete = WriteRequest::DeleteRange(DeleteRangeRequest::default());
        assert_eq!(write_cost(&delete), 0);
    }

    #[test]
    fn alarms_block_data_writes_until_cleared() {
        let mut alarms = Alarms::default();
        assert!(admitted(300, 700, Some(1000), &alarms));
        assert!(!admitted(301, 700, Some(1000), &alarms));
        assert!(
            admitted(0, 5000, Some(1000), &alarms),
            "deletes always pass"
        );
        assert!(admitted(1 << 40, 1 << 40, None, &alarms));
        let nospace = AlarmRequest {
            action: AlarmAction::Activate,
            member_id: 7,
            alarm: AlarmType::Nospace,
        };
        assert_eq!(
            alarms.apply(&nospace),
            vec![AlarmMember {
                member_id: 7,
                alarm: AlarmType::Nospace
            }]
        );
        assert!(!admitted(1, 0, None, &alarms));
        assert!(admitted(0, 0, None, &alarms));
        let get_all = AlarmRequest {
            action: AlarmAction::Get,
            member_id: 0,
            alarm: AlarmType::None,
        };
        assert_eq!(alarms.apply(&get_all).len(), 1);
        let get_corrupt = AlarmRequest {
            alarm: AlarmType::Corrupt,
            ..get_all
        };
        assert!(alarms.apply(&get_corrupt).is_empty());
        let clear = AlarmRequest {
            action: AlarmAction::Deactivate,
            ..nospace
        };
        assert_eq!(alarms.apply(&clear).len(), 1);
        assert!(alarms.apply(&clear).is_empty(), "already cleared");
        assert!(admitted(1, 0, None, &alarms));
        assert!(space_recovered(899, Some(1000)));
    }

    #[test]
    fn a_full_log_disk_is_listed_as_nospace_and_refuses_no_one() {
        let mut alarms = Alarms::default();
        let disk = AlarmRequest {
            action: AlarmAction::Activate,
            member_id: 7,
            alarm: AlarmType::LogDiskFull,
        };
        let listed = vec![AlarmMember {
            member_id: 7,
            alarm: AlarmType::Nospace,
        }];
        assert_eq!(alarms.apply(&disk), listed);
        assert!(
            !alarms.no_space(),
            "one member's disk does not stop the cluster"
        );
        assert!(admitted(1, 0, None, &alarms));
        assert!(!alarms.has(7, AlarmType::Nospace), "the quota's is apart");
        let get = |alarm| AlarmRequest {
            action: AlarmAction::Get,
            member_id: 0,
            alarm,
        };
        assert_eq!(alarms.apply(&get(AlarmType::None)), listed);
        assert_eq!(alarms.apply(&get(AlarmType::Nospace)), listed);
        assert!(alarms.apply(&get(AlarmType::Corrupt)).is_empty());
        // The quota's NOSPACE on the same member lists once; clearing one keeps the other.
        let quota = AlarmRequest {
            alarm: AlarmType::Nospace,
            ..disk
        };
        alarms.apply(&quota);
        assert_eq!(alarms.apply(&get(AlarmType::None)), listed);
        let clear_disk = AlarmRequest {
            action: AlarmAction::Deactivate,
            ..disk
        };
        assert_eq!(alarms.apply(&clear_disk), listed);
        assert!(alarms.no_space());
        // An operator's disarm of NOSPACE clears both.
        alarms.apply(&disk);
        let disarm = AlarmRequest {
            action: AlarmAction::Deactivate,
            ..quota
        };
        assert_eq!(alarms.apply(&disarm), listed);
        assert!(alarms.members().is_empty());
        // This member's own knowledge of its disk shows before the cluster has it.
        assert_eq!(alarms.listed(AlarmType::None, Some(7)), listed);
        assert_eq!(AlarmType::from_etcd_number(257), None);
        assert_eq!(AlarmType::from_number(257), Some(AlarmType::LogDiskFull));
        assert!(!space_recovered(900, Some(1000)));
    }

    #[test]
    fn a_full_disk_raises_its_alarm_once_an_episode_and_clears_it_after() {
        let mut alarm = DiskAlarm::default();
        let mut alarms = Alarms::default();
        // Alone: no one could commit it.
        assert_eq!(alarm.next(7, true, true, &alarms), None);
        let raise = alarm.next(7, true, false, &alarms).map(|r| r.action);
        assert_eq!(raise, Some(AlarmAction::Activate));
        assert_eq!(alarm.next(7, true, false, &alarms), None, "in flight");
        // Timed out: it may commit yet, so it is not raised again this episode.
        alarm.ended(AlarmAction::Activate, false);
        assert_eq!(alarm.next(7, true, false, &alarms), None);
        // Room again before it applied: nothing to clear yet; then it applies.
        assert_eq!(alarm.next(7, false, false, &alarms), None);
        let request = AlarmRequest {
            action: AlarmAction::Activate,
            member_id: 7,
            alarm: AlarmType::LogDiskFull,
        };
        alarms.apply(&request);
        let clear = alarm.next(7, false, false, &alarms);
        assert_eq!(clear.map(|r| r.action), Some(AlarmAction::Deactivate));
        alarm.ended(AlarmAction::Deactivate, true);
        // A new episode raises it again; a refusal lets it be raised again at once.
        assert!(alarm.next(7, true, false, &alarms).is_some());
        alarm.ended(AlarmAction::Activate, true);
        assert!(alarm.next(7, true, false, &alarms).is_some());
    }
}
