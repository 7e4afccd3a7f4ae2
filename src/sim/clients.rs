//! The simulated clients: each issues its next random operation, is answered (the answer
//! recorded in the history the checkers read), reads again after a failure, and gives up after
//! its request timeout as a real client does.

use super::*;

impl Simulation {
    pub(super) fn client_next(&mut self, client: u64) {
        let state = &mut self.clients[client as usize];
        if state.in_flight.is_some() {
            return;
        }
        let op = if self.settling {
            match state.final_reads.pop_front() {
                Some(k) => ClientOp::Get {
                    key: format!("k{k}").into_bytes(),
                },
                None => return,
            }
        } else {
            state.count += 1;
            if state.lease.is_some() && self.random.chance(1, 100) {
                // Abandoned: nobody keeps it alive any more, so it expires.
                state.lease = None;
            }
            let (count, seen, lease) = (state.count, state.seen.clone(), state.lease);
            ClientOp::random(&mut self.random, client, count, &seen, lease)
        };
        let member = self.pick_member();
        let caller = self.next_caller;
        self.next_caller += 1;
        let call = self.now.as_nanos() as u64;
        let now = self.instant();
        self.log(|| format!("client {client} -> m{member}: {op:?}"));
        let answer = match self.slots[(member - 1) as usize].member.as_mut() {
            // Connection refused: the operation never happened; try another member soon.
            None => {
                if self.settling {
                    self.read_again(client, &op);
                }
                let retry = Duration::from_millis(self.random.below(10, 100));
                self.schedule(retry, Event::Client(client));
                return;
            }
            Some(running) => match op.request() {
                Call::Write(write) => running.write(now, caller, &write),
                Call::Read(read) => running.read(now, caller, read),
            },
        };
        self.clients[client as usize].in_flight = Some(InFlight {
            caller,
            op,
            call,
            member,
        });
        self.schedule(CLIENT_TIMEOUT, Event::ClientTimeout(client, caller));
        match answer {
            Some(answer) => self.answer(caller, answer),
            None => self.pump(member),
        }
    }

    /// A final read that got no answer is asked again.
    pub(super) fn read_again(&mut self, client: u64, op: &ClientOp) {
        if let ClientOp::Get { key } = op {
            let k = key[1] - b'0';
            self.clients[client as usize]
                .final_reads
                .push_front(u64::from(k));
        }
    }

    pub(super) fn client_of(&self, caller: Caller) -> Option<u64> {
        self.clients
            .iter()
            .position(|c| c.in_flight.as_ref().is_some_and(|f| f.caller == caller))
            .map(|i| i as u64)
    }

    pub(super) fn answer(&mut self, caller: Caller, answer: Answer) {
        let Some(client) = self.client_of(caller) else {
            return; // it gave up already
        };
        let Some(flight) = self.clients[client as usize].in_flight.take() else {
            return;
        };
        self.operations += 1;
        let ret = self.now.as_nanos() as u64;
        self.log(|| format!("client {client} <- m{}: {answer:?}", flight.member));
        if flight.op.is_lease() {
            self.lease_answer(client, &flight, &answer);
            let think = Duration::from_millis(self.random.below(0, 20));
            self.schedule(think, Event::Client(client));
            return;
        }
        let checked = match &answer {
            Answer::Written(Ok(response)) => {
                Some(flight.op.as_checked(Some(Told::Written(response))))
            }
            Answer::Read(Ok(range)) => Some(flight.op.as_checked(Some(Told::Read(range)))),
            // Refused, lost with a leader, or failed: it did not happen (a proposal raft-rs
            // dropped never enters the log; a read constrains nothing).
            Answer::Written(Err(_)) | Answer::Read(Err(_)) => None,
        };
        let mut retry_read = self.settling;
        match checked {
            Some(Ok(op)) => {
                if let Some((key, value)) = flight.op.learned(&op) {
                    let k = (key[1] - b'0') as usize;
                    if k < KEYS as usize {
                        self.clients[client as usize].seen[k] = value;
                    }
                }
                self.history.push(operation(flight.call, Some(ret), op));
                retry_read = false;
            }
            Some(Err(error)) => self.fail(error),
            None => {}
        }
        if retry_read {
            self.read_again(client, &flight.op);
        }
        let think = Duration::from_millis(self.random.below(0, 20));
        self.schedule(think, Event::Client(client));
    }

    pub(super) fn client_timeout(&mut self, client: u64, caller: Caller) {
        let state = &mut self.clients[client as usize];
        if state.in_flight.as_ref().is_none_or(|f| f.caller != caller) {
            return;
        }
        let Some(flight) = state.in_flight.take() else {
            return;
        };
        self.operations += 1;
        self.log(|| format!("client {client}: m{} timed out", flight.member));
        let now = self.instant();
        if let Some(member) = self.slots[(flight.member - 1) as usize].member.as_mut() {
            member.withdraw(now, caller);
        }
        match &flight.op {
            // A write whose outcome is unknown: it may take effect any time after its call.
            ClientOp::Put { .. } | ClientOp::Cas { .. } => match flight.op.as_checked(None) {
                Ok(op) => self.history.push(operation(flight.call, None, op)),
                Err(error) => self.fail(error),
            },
            ClientOp::Get { .. } => {
                if self.settling {
                    self.read_again(client, &flight.op);
                }
            }
            // Unknown: it may have renewed or revoked, which promises nothing.
            ClientOp::LeaseGrant { .. }
            | ClientOp::LeaseKeepAlive { .. }
            | ClientOp::LeaseRevoke { .. }
            | ClientOp::LeasePut { .. } => {}
        }
        self.schedule(Duration::ZERO, Event::Client(client));
    }
}
