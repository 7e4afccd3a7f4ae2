//! Requests into the replica: writes, alarms, auth changes, linearizable reads, leader
//! transfers and lease queries, each waiting for its answer (or the request timeout), and the
//! proposals the member makes of its own (NOSPACE, lease expiry). While this member's log disk
//! is full (`nospace`), every proposal through it is refused with etcd's NOSPACE error.

use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::driver::{Applied, Consensus};
use crate::alarm::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType};
use crate::api::error::ServerError;
use crate::api::native::{self, LeaseAnswer, LeaseQuery, Request};
use crate::ids::{LogIndex, MemberId, Revision};
use crate::lease::LeaseRequest;
use crate::mvcc::request::{ResponseHeader, WriteRequest, WriteResponse};
use crate::mvcc::{validate, KvError};
use crate::replica::entry::{encode_proposal, ProposalId};
use crate::replica::proposals::{Proposal, Waiting};
use crate::replica::Input;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// Proposes a write, answering once it is committed and applied.
    pub async fn write(
        self: &Rc<Self>,
        request: &WriteRequest,
    ) -> Result<WriteResponse, ServerError> {
        validate::check_write(request, self.config.max_txn_ops)?;
        let frame = native::encode_request(0, &Request::Write(request.clone()));
        self.propose_frame(&frame, crate::alarm::write_cost(request), None)
            .await
    }

    /// Proposes a write given as a verified native `RequestFrame` holding it; `cost` is its
    /// cost against the space quota (`alarm::write_cost`). A write that adds data is refused
    /// with etcd's "database space exceeded" while a NOSPACE alarm is active, or when it
    /// would take the keyspace over the quota (which raises the alarm). `auth_revision`: the
    /// auth revision a client's write was authorized at (`None` for the server's own).
    pub async fn propose_frame(
        self: &Rc<Self>,
        frame: &[u8],
        cost: u64,
        auth_revision: Option<u64>,
    ) -> Result<WriteResponse, ServerError> {
        let size = self.keyspace_size();
        if !crate::alarm::admitted(cost, size, self.config.quota_bytes, &self.alarms.borrow()) {
            if !self.alarms.borrow().no_space() {
                tracing::warn!(
                    size,
                    quota = self.config.quota_bytes,
                    "the keyspace reached the space quota: raising NOSPACE"
                );
                self.over_quota_seen.set(true);
                self.change_own_alarm(AlarmAction::Activate);
            }
            return Err(KvError::NoSpace.into());
        }
        match self.propose_entry(frame, auth_revision).await? {
            Applied::Write(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "a write was applied as something else".into(),
            )),
        }
    }

    /// etcd's Maintenance.Alarm: GET answers from the applied alarms; ACTIVATE and
    /// DEACTIVATE go through the log.
    pub async fn alarm(&self, request: &AlarmRequest) -> Result<AlarmResponse, ServerError> {
        if request.action == AlarmAction::Get {
            // This member's full log disk is listed even before (or without) the cluster
            // committing its alarm: a single member cannot commit it at all.
            let here = self.log_disk_full().then_some(self.config.member_id.get());
            let alarms = self.alarms.borrow().listed(request.alarm, here);
            return Ok(AlarmResponse {
                header: ResponseHeader::at(self.revision().get()),
                alarms,
            });
        }
        let frame = native::encode_request(0, &Request::Alarm(*request));
        match self.propose_entry(&frame, None).await? {
            Applied::Alarm(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "an alarm was applied as something else".into(),
            )),
        }
    }

    /// An auth change (its password already hashed, never in plain text) or an Authenticate
    /// through the log, stamped with the auth revision it was authorized (or its password
    /// checked) at; answered once applied, with etcd's error if the store refused it.
    pub async fn auth_change(
        &self,
        request: &crate::auth::request::AuthRequest,
        auth_revision: u64,
    ) -> Result<crate::auth::request::AuthResponse, ServerError> {
        let frame = native::encode_request(0, &Request::Auth(request.clone()));
        match self.propose_entry(&frame, Some(auth_revision)).await? {
            Applied::Auth(response) => Ok(response),
            _ => Err(ServerError::Internal(
                "an auth change was applied as something else".into(),
            )),
        }
    }

    /// The counted size of the keyspace (what the quota limits; etcd's db size).
    pub fn keyspace_size(&self) -> u64 {
        // Leases count as etcd counts them, so grants alone cannot grow state past the quota.
        self.sequencer.router().local().keyspace_size()
            + self.sequencer.lease_count() as u64 * crate::alarm::LEASE_GRANT_COST
    }

    /// The active alarms.
    pub fn alarms(&self) -> Vec<crate::alarm::AlarmMember> {
        self.alarms.borrow().members()
    }

    /// Proposes raising or clearing this member's NOSPACE alarm in the background (one change
    /// in flight at a time).
    fn change_own_alarm(self: &Rc<Self>, action: AlarmAction) {
        if self.alarm_change_in_flight.replace(true) {
            return;
        }
        let this = self.clone();
        glommio::spawn_local(async move {
            let request = AlarmRequest {
                action,
                member_id: this.config.member_id.get(),
                alarm: AlarmType::Nospace,
            };
            if let Err(error) = this.alarm(&request).await {
                tracing::warn!(%error, ?action, "changing the NOSPACE alarm failed");
            }
            this.alarm_change_in_flight.set(false);
        })
        .detach();
    }

    /// Clears this member's NOSPACE alarm once compaction has won the space back (only one the
    /// keyspace's size called for: see `over_quota_seen`).
    pub(super) fn maybe_clear_no_space(self: &Rc<Self>) {
        let raised = self
            .alarms
            .borrow()
            .has(self.config.member_id.get(), AlarmType::Nospace);
        let recovered =
            crate::alarm::space_recovered(self.keyspace_size(), self.config.quota_bytes);
        if !raised {
            self.over_quota_seen.set(false);
            return;
        }
        if !recovered {
            self.over_quota_seen.set(true);
            return;
        }
        if self.over_quota_seen.get() {
            tracing::info!(
                size = self.keyspace_size(),
                "the keyspace is back under the space quota: clearing NOSPACE"
            );
            self.change_own_alarm(AlarmAction::Deactivate);
        }
    }

    /// Proposes a verified request frame, stamped with the auth revision a client's request was
    /// authorized at, and waits until it is applied. Refused with etcd's "database space
    /// exceeded" while this member's log disk is full: it could not apply it.
    async fn propose_entry(
        &self,
        frame: &[u8],
        auth_revision: Option<u64>,
    ) -> Result<Applied, ServerError> {
        if self.log_disk_full() {
            self.proposals_failed.set(self.proposals_failed.get() + 1);
            return Err(KvError::NoSpace.into());
        }
        if let Err(error) = self.replica.borrow().admit() {
            self.proposals_failed.set(self.proposals_failed.get() + 1);
            return Err(error);
        }
        let outcome = self
            .propose_within(self.config.request_timeout, |id| {
                Proposal::Entry(encode_proposal(id, auth_revision, frame))
            })
            .await;
        if outcome.is_err() {
            self.proposals_failed.set(self.proposals_failed.get() + 1);
        }
        outcome
    }

    /// Queues what `make` builds under a fresh proposal ID and waits until it is applied, or
    /// gives up after `timeout`.
    pub(super) async fn propose_within(
        &self,
        timeout: Duration,
        make: impl FnOnce(ProposalId) -> Proposal,
    ) -> Result<Applied, ServerError> {
        if self.is_stopped() {
            return Err(ServerError::Stopped);
        }
        let sequence = self.next_number();
        let id = ProposalId {
            proposer: self.config.member_id.get(),
            nonce: self.nonce,
            sequence,
        };
        let (sender, receiver) = oneshot::channel();
        let queued_at = Instant::now();
        let term_at_queue = self.term();
        self.waiters.borrow_mut().writes.insert(sequence, sender);
        self.step(Input::Propose(Waiting {
            sequence,
            proposal: make(id),
            queued_at,
        }));
        let expired = glommio::timer::sleep(timeout);
        match futures::future::select(receiver, pin!(expired)).await {
            futures::future::Either::Left((Ok((answer, decided)), _)) => {
                let now = Instant::now();
                let mut replica = self.replica.borrow_mut();
                let stages = replica.stages();
                stages.answered(
                    now.saturating_duration_since(decided.applied_at),
                    now.saturating_duration_since(queued_at),
                );
                let total_us = now.saturating_duration_since(queued_at).as_secs_f64() * 1e6;
                if total_us > stages.slowest().threshold_us() {
                    let micros = |from: Instant, to: Instant| {
                        to.saturating_duration_since(from).as_secs_f64() * 1e6
                    };
                    stages.offer_slow(crate::dashboard::SlowRequest {
                        at_ms: super::unix_millis(),
                        total_us,
                        stages: vec![
                            (
                                "queueing, log sync and replication".into(),
                                micros(queued_at, decided.committed_at),
                            ),
                            (
                                "commit to apply".into(),
                                micros(decided.committed_at, decided.applied_at),
                            ),
                            ("apply to response".into(), micros(decided.applied_at, now)),
                        ],
                    });
                }
                answer
            }
            futures::future::Either::Left((Err(_), _)) => Err(ServerError::Stopped),
            futures::future::Either::Right(_) => {
                // A proposal still waiting for a leader is withdrawn (it will never apply); one
                // Raft already has may still commit: the outcome is unknown, as etcd's timeout.
                self.waiters.borrow_mut().writes.remove(&sequence);
                self.step(Input::Withdraw(sequence));
                if self.term() != term_at_queue {
                    Err(ServerError::TimeoutLeaderFailed)
                } else {
                    Err(ServerError::Timeout)
                }
            }
        }
    }

    /// etcd's MoveLeader: hands leadership to voter `target` and waits until it has it. Only
    /// the leader serves this.
    pub async fn move_leader(&self, target: MemberId) -> Result<(), ServerError> {
        if self.replica.borrow().check_transfer(target)? {
            return Ok(());
        }
        self.step(Input::TransferLeader(target));
        let deadline = Instant::now() + self.config.request_timeout;
        while Instant::now() < deadline {
            if self.leader() == target {
                return Ok(());
            }
            glommio::timer::sleep(self.config.heartbeat / 2).await;
        }
        Err(ServerError::Timeout)
    }

    /// Confirms leadership with a ReadIndex round (batched with every read waiting) and waits
    /// until everything up to the read index is applied; returns the revision a linearizable
    /// read must read at.
    pub async fn read_index(&self) -> Result<Revision, ServerError> {
        self.replica.borrow().refuse_if_learner()?;
        let read = async {
            let reader = self.next_number();
            let (sender, receiver) = oneshot::channel();
            self.waiters.borrow_mut().reads.insert(reader, sender);
            self.step(Input::Read(reader));
            let index = receiver.await.unwrap_or(Err(ServerError::Stopped))?;
            self.wait_applied(index).await?;
            Ok(self.sequencer.current_revision())
        };
        let expired = glommio::timer::sleep(self.config.request_timeout);
        match futures::future::select(pin!(read), pin!(expired)).await {
            futures::future::Either::Left((answer, _)) => answer,
            // The abandoned reader is withdrawn at the next tick.
            futures::future::Either::Right(_) => Err(ServerError::Timeout),
        }
    }

    pub(super) async fn wait_applied(&self, index: LogIndex) -> Result<(), ServerError> {
        if self.applied_index() >= index {
            return Ok(());
        }
        let (sender, receiver) = oneshot::channel();
        self.applied_waiters.borrow_mut().push((index, sender));
        receiver.await.map_err(|_| ServerError::Stopped)
    }

    /// As leader, proposes the revocation of leases whose deadline passed (one proposal in
    /// flight at a time, at most `lease::EXPIRIES_PER_SECOND` a second).
    pub(super) fn maybe_expire_leases(self: &Rc<Self>) {
        if self.lease_expiry_in_flight.get()
            || self.is_stopped()
            || !self.replica.borrow().is_leader()
        {
            return;
        }
        let due = self.sequencer.leases_due(self.config.heartbeat);
        if due.is_empty() {
            return;
        }
        self.lease_expiry_in_flight.set(true);
        let this = self.clone();
        glommio::spawn_local(async move {
            let count = due.len();
            let expiry = WriteRequest::Lease(LeaseRequest::Expire { leases: due });
            if let Err(error) = this.write(&expiry).await {
                tracing::warn!(%error, count, "expiring leases failed; retried next tick");
            }
            this.lease_expiry_in_flight.set(false);
        })
        .detach();
    }

    /// etcd's LeaseTimeToLive and LeaseLeases, answered after a ReadIndex round so that every
    /// change committed before the request is reflected.
    pub async fn lease_query(&self, query: &LeaseQuery) -> Result<LeaseAnswer, ServerError> {
        let revision = self.read_index().await?;
        let header = ResponseHeader::at(revision.get());
        match *query {
            LeaseQuery::TimeToLive { id, keys } => {
                Ok(match self.sequencer.lease_time_to_live(id, keys) {
                    Some(lease) => LeaseAnswer::TimeToLive {
                        header,
                        id,
                        ttl: lease.ttl,
                        granted_ttl: lease.granted_ttl,
                        keys: lease.keys,
                    },
                    None => LeaseAnswer::TimeToLive {
                        header,
                        id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    },
                })
            }
            LeaseQuery::Leases => Ok(LeaseAnswer::Leases {
                header,
                ids: self.sequencer.lease_ids(),
            }),
            LeaseQuery::KeepAlive(_) => Err(ServerError::Internal(
                "keep-alives are renewed in batches, not queried".into(),
            )),
        }
    }
}
