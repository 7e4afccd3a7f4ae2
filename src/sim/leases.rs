//! The lease checker: what acknowledged grants and keep-alives promised each lease, and when
//! a member first applied its expiry. A lease may never expire before the latest promise: the
//! call time of an acknowledged grant or keep-alive plus the TTL it answered (the renewal took
//! effect no earlier than the call, on every member's clock).

use std::time::Duration;

use super::member::Answer;
use super::workload::ClientOp;
use super::{InFlight, Simulation};

/// What the clients were promised of one lease, and when it expired.
#[derive(Debug)]
pub(super) struct LeaseRecord {
    /// The latest time an acknowledged grant or keep-alive promised it lives to: the call's
    /// time plus the TTL answered (the renewal took effect no earlier than the call).
    pub(super) promised_until: Duration,
    /// When a member first applied its expiry.
    pub(super) expired_at: Option<Duration>,
    /// The call that made the latest promise, for the report.
    pub(super) promise: String,
}

impl Simulation {
    /// What a lease operation's answer tells the client and promises of the lease.
    pub(super) fn lease_answer(&mut self, client: u64, flight: &InFlight, answer: &Answer) {
        use crate::lease::LeaseOutcome;
        use crate::mvcc::request::{LeaseResponse, WriteResponse};
        let call = Duration::from_nanos(flight.call);
        let promise = |ttl: i64| call + Duration::from_secs(ttl.max(0) as u64);
        let state = &mut self.clients[client as usize];
        match (&flight.op, answer) {
            (
                ClientOp::LeaseGrant { id, .. },
                Answer::Written(Ok(WriteResponse::Lease(LeaseResponse {
                    outcome: LeaseOutcome::Granted { ttl, .. },
                    ..
                }))),
            ) => {
                state.lease = Some(*id);
                self.leases.insert(
                    *id,
                    LeaseRecord {
                        promised_until: promise(*ttl),
                        expired_at: None,
                        promise: format!("granted for {ttl} s at {call:?}"),
                    },
                );
            }
            (
                ClientOp::LeaseKeepAlive { id },
                Answer::Written(Ok(WriteResponse::Lease(LeaseResponse {
                    outcome: LeaseOutcome::Renewed { ttls },
                    ..
                }))),
            ) => match ttls.first() {
                Some(&ttl) if ttl > 0 => {
                    if let Some(record) = self.leases.get_mut(id) {
                        if promise(ttl) > record.promised_until {
                            record.promised_until = promise(ttl);
                            record.promise = format!("kept alive for {ttl} s at {call:?}");
                        }
                    }
                }
                _ => state.lease = None,
            },
            (ClientOp::LeaseRevoke { .. }, Answer::Written(Ok(_))) => state.lease = None,
            (ClientOp::LeasePut { .. } | ClientOp::LeaseRevoke { .. }, Answer::Written(Err(e)))
                if e.to_string().contains("lease not found") =>
            {
                state.lease = None;
            }
            _ => {}
        }
    }

    /// Records leases a member applied the expiry of.
    pub(super) fn leases_expired(&mut self, id: u64, expired: Vec<i64>) {
        for lease in expired {
            self.log(|| format!("m{id} applies the expiry of lease {lease:x}"));
            if let Some(record) = self.leases.get_mut(&lease) {
                record.expired_at.get_or_insert(self.now);
            }
        }
    }

    /// No lease expired before what an acknowledged grant or keep-alive promised.
    pub(super) fn check_leases(&mut self) {
        let early = self.leases.iter().find_map(|(id, record)| {
            let expired_at = record.expired_at?;
            (expired_at < record.promised_until).then(|| {
                format!(
                    "lease {id:x} expired at {expired_at:?}, before {:?}: it was {}",
                    record.promised_until, record.promise
                )
            })
        });
        if let Some(early) = early {
            self.fail(early);
        }
    }
}
