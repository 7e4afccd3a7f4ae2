//! A simulated member applying what it committed: checks that what it vouches for is durable,
//! reads served at their index, entries applied to the keyspace (writes, alarms, membership
//! changes), watch events reported, callers answered.

use super::*;

impl SimMember {
    /// A vote or an acknowledgement of appended entries goes out only once the log holds what
    /// it vouches for durably (the log reads only durable state), or held it durably before a
    /// later plan cut it.
    pub(super) fn check_vouched(&mut self, send: &[Message]) {
        use raft::eraftpb::MessageType;
        let cut = self.cut_since_check.take();
        for message in send {
            match message.get_msg_type() {
                MessageType::MsgAppendResponse
                    if !message.reject
                        && message.index > self.wal.last_index()
                        && cut.is_none_or(|cut| cut > message.index) =>
                {
                    self.unpersisted.push(format!(
                        "m{} acknowledged entries up to {} to m{} with its log durable only up \
                         to {}",
                        self.id,
                        message.index,
                        message.to,
                        self.wal.last_index()
                    ));
                }
                MessageType::MsgRequestVoteResponse if !message.reject => {
                    let durable = self.wal.hard_state();
                    if durable.term < message.term
                        || (durable.term == message.term && durable.vote != message.to)
                    {
                        self.unpersisted.push(format!(
                            "m{} granted its vote in term {} to m{} with its durable hard \
                             state at term {} vote {}",
                            self.id, message.term, message.to, durable.term, durable.vote
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    /// True when the log holds entry `index` of `term` durably (or compacted it, which it does
    /// only behind a durable snapshot).
    pub(super) fn holds_durably(&self, index: u64, term: u64) -> bool {
        match self.wal.term(index) {
            Ok(durable) => durable == term,
            Err(crate::wal::WalError::Compacted { .. }) => true,
            Err(_) => false,
        }
    }

    pub(super) fn serve_reads(&mut self, effects: &mut Effects) {
        let applied = self.replica.applied().get();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_waits)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.read_waits = waiting;
        for (_, caller, request) in ready {
            let answer = self.kv.range(&request).map_err(Into::into);
            effects.answers.push((caller, Answer::Read(answer)));
        }
    }

    pub(super) fn apply(
        &mut self,
        now: Instant,
        entries: Vec<Entry>,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let lease_now = self.lease_now(now);
        self.kv.set_lease_clock(lease_now);
        for entry in entries {
            if entry.index > self.applied_early {
                if !self.holds_durably(entry.index, entry.term) {
                    self.unpersisted.push(format!(
                        "m{} applied index {} (term {}) which its log does not hold durably",
                        self.id, entry.index, entry.term
                    ));
                }
                match entry.entry_type {
                    EntryType::EntryNormal => self.apply_data(&entry.data, effects),
                    EntryType::EntryConfChange => {
                        let change: ConfChange =
                            protobuf::Message::parse_from_bytes(&entry.data)
                                .map_err(|e| format!("conf change {}: {e}", entry.index))?;
                        let applied = self
                            .replica
                            .apply_member_change(change)
                            .map_err(|e| e.to_string())?;
                        if applied.effect == MemberEffect::RemovedSelf {
                            effects.removed = true;
                        }
                    }
                    EntryType::EntryConfChangeV2 => {
                        let change: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                            .map_err(|e| format!("conf change {}: {e}", entry.index))?;
                        self.replica
                            .apply_conf_change(Ok(change))
                            .map_err(|e| e.to_string())?;
                    }
                }
                effects.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    digest: digest(&entry.data),
                    revision: self.kv.current_revision(),
                    alarms: self.alarms_digest(),
                });
            }
            self.replica.applied_entry(
                crate::ids::LogIndex::new(entry.index),
                entry.data.len() as u64,
            );
        }
        Ok(())
    }

    /// `ApplyBeforeCommit`: the injected bug applies entries as soon as they are staged.
    pub(super) fn apply_early(
        &mut self,
        now: Instant,
        entries: &[crate::wal::LogEntry],
        effects: &mut Effects,
    ) {
        let lease_now = self.lease_now(now);
        self.kv.set_lease_clock(lease_now);
        for entry in entries {
            if entry.index <= self.applied_early || entry.payload.is_empty() {
                continue;
            }
            if entry.kind == crate::wal::EntryKind::Normal {
                self.apply_data(&entry.payload, effects);
                self.applied_early = entry.index;
                effects.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    digest: digest(&entry.payload),
                    revision: self.kv.current_revision(),
                    alarms: self.alarms_digest(),
                });
            }
        }
    }

    /// Every shard reports the events it made with its watermark, as shards do after each
    /// applied batch.
    pub(super) fn report_watch_events(
        &mut self,
        events: Vec<(usize, crate::watch::Event)>,
        effects: &mut Effects,
    ) {
        let watermark = self.kv.current_revision();
        let mut per_shard = vec![Vec::new(); SHARDS];
        for (shard, event) in events {
            effects.events.push(event.clone());
            per_shard[shard].push(event);
        }
        for (shard, events) in per_shard.into_iter().enumerate() {
            self.merger.push(shard, events, watermark);
        }
    }

    /// A digest of the active alarms, for the checkers.
    pub(super) fn alarms_digest(&self) -> u64 {
        let bytes: Vec<u8> = self
            .alarms
            .members()
            .iter()
            .flat_map(|alarm| {
                let mut bytes = alarm.member_id.to_le_bytes().to_vec();
                bytes.extend_from_slice(&(alarm.alarm as u32).to_le_bytes());
                bytes
            })
            .collect();
        digest(&bytes)
    }

    pub(super) fn apply_data(&mut self, data: &Bytes, effects: &mut Effects) {
        if data.is_empty() {
            return; // a new leader's empty entry
        }
        let Some(proposal) = decode_proposal(data) else {
            return;
        };
        let id = proposal.id;
        let here = id.proposer == self.id && id.nonce == self.nonce;
        let result = match native::decode_request(&proposal.frame) {
            Ok((_, Request::Write(request))) => {
                match self.kv.write_with_events(&request, MAX_TXN_OPS) {
                    Ok((response, events)) => {
                        self.report_watch_events(events, effects);
                        Ok(response)
                    }
                    Err(error) => Err(ServerError::from(error)),
                }
            }
            Ok((_, Request::Alarm(request))) => {
                self.alarms.apply(&request);
                if let Some((_, action, _)) = self
                    .disk_alarm_change
                    .filter(|(change, _, _)| here && *change == id.sequence)
                {
                    self.disk_alarm_change = None;
                    self.disk_alarm.ended(action, false);
                }
                return;
            }
            _ => Err(ServerError::Internal("malformed log entry".into())),
        };
        if let Ok(WriteResponse::Lease(crate::mvcc::request::LeaseResponse {
            outcome: crate::lease::LeaseOutcome::Expired { ids },
            ..
        })) = &result
        {
            effects.expired.extend(ids);
        }
        if here {
            if self.expiry.is_some_and(|(expiry, _)| expiry == id.sequence) {
                self.expiry = None;
            }
            if let Some(caller) = self.writes.remove(&id.sequence) {
                effects.answers.push((caller, Answer::Written(result)));
            }
        }
    }
}
