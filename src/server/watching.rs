//! The one watch stream loop, behind every front end that serves watch streams (gRPC's Watch
//! call, the gateway's `/v3/watch` through it, and the native protocol's watch streams).
//!
//! [`serve`] owns a stream's life on its core: applying the client's requests (creations
//! permitted one by one, cancellations, progress requests), sending what the stream's
//! watchers are given (each response checked against permission changes first, split into
//! fragments when its watcher allowed it), catching up watchers that are behind, progress
//! notifications every `--watch-progress-notify-interval`, etcd's `hasleader` (the stream
//! ends with "etcdserver: no leader" after `NO_LEADER_CHECKS` election timeouts without a
//! leader), liveness (a stream outlives the client's half-close, as etcd's, and ends once
//! the client is gone) and the member stopping. A front end supplies only its encoding and
//! its transport, through [`WatchClient`].
//!
//! Invariants: responses go out in the order the stream hands them out, the parts of one
//! response back to back; nothing is sent for a range the stream's user may no longer read
//! (`recheck_watches` runs before every response); the loop never holds a `RefCell` borrow
//! of the stream across an `.await`.

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::FutureExt;

use super::access;
use super::node::Node;
use super::Limits;
use crate::api::native::WatchRequest;
use crate::auth::Credentials;
use crate::consensus::ServerError;
use crate::mvcc::request::ResponseHeader;
use crate::shard::watch::WatchSlot;
use crate::watch::stream::{WatchResponse, WatchStream};
use crate::watch::Event;

/// What a front end's side of a stream brought.
pub enum Inbound<B> {
    /// A request with the credentials it came with.
    Request(WatchRequest, Credentials),
    /// A request with nothing to do (etcd's empty request union).
    Nothing,
    /// The client closed its half: the stream goes on until the client is gone.
    Closed,
    /// The call broke: the stream ends, passing `B` on.
    Broken(B),
}

/// A front end's encoding and transport of one watch stream.
pub trait WatchClient {
    /// Why the client's side broke, as the front end passes it on.
    type Broken;

    /// The next thing from the client.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Inbound<Self::Broken>>;

    /// Sends one response (or part of one: `response.fragment` is set when more parts
    /// follow) under `header`; false once the client is gone. May wait while the client is
    /// slow to read.
    fn send(
        &mut self,
        response: WatchResponse,
        header: ResponseHeader,
    ) -> impl Future<Output = bool>;

    /// The response's size as this front end encodes it (to decide whether it is split).
    fn encoded_len(&self, response: &WatchResponse, header: &ResponseHeader) -> usize;

    /// An event's share of an encoded response.
    fn event_len(&self, event: &Event) -> usize;

    /// True once the client went away (checked every second after it closed its half).
    fn gone(&self) -> bool;

    /// Ends the stream with the member's error.
    fn fail(&mut self, error: ServerError) -> impl Future<Output = ()>;

    /// Ends the stream because the client's side broke.
    fn broke(&mut self, broken: Self::Broken) -> impl Future<Output = ()>;
}

/// Consecutive checks (one per election timeout) without a leader after which a stream that
/// asked for one (`hasleader`) ends with "etcdserver: no leader", as etcd's.
const NO_LEADER_CHECKS: u32 = 3;

/// How often a stream whose client closed its half checks that the client is still there.
const LIVENESS_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What woke a watch stream's task.
enum Wakeup<B> {
    Inbound(Inbound<B>),
    Changed,
    ProgressTick,
    LeaderCheck,
    Liveness,
}

/// True while this member knows a leader (as the consensus core last published it).
fn has_leader(node: &Node) -> bool {
    node.config.role.has_leader()
}

/// Serves the stream in `slot` for `client` until the client is gone, its call breaks, the
/// member stops or (with `require_leader`) the member has had no leader for
/// `NO_LEADER_CHECKS` election timeouts. The caller opened the slot and closes it.
pub async fn serve<C: WatchClient>(
    node: &Rc<Node>,
    slot: &Rc<WatchSlot>,
    client: &mut C,
    limits: Limits,
    require_leader: bool,
) {
    let mut requests_open = true;
    let mut liveness = Box::pin(glommio::timer::sleep(LIVENESS_CHECK));
    let interval = limits.watch_progress_interval;
    let mut tick = Box::pin(glommio::timer::sleep(interval));
    let election_timeout = node.config.election_timeout();
    let mut leader_check = Box::pin(glommio::timer::sleep(election_timeout));
    let mut checks_without_leader = 0;
    let mut owner = WatchOwner::new(node);
    loop {
        // Everything queued goes out first (waiting while the client is slow to read), each
        // response after the watches were checked against any permission change applied
        // meanwhile.
        loop {
            recheck_watches(&mut slot.stream.borrow_mut(), node, &mut owner);
            let next = slot.stream.borrow_mut().pop();
            let Some(response) = next else {
                break;
            };
            let mut header = ResponseHeader::at(response.revision);
            super::stamp_header(&mut header, node);
            for part in fragments(response, &header, limits.max_request_bytes, client) {
                if !client.send(part, header).await {
                    return;
                }
            }
        }
        start_catch_ups(node, slot);
        let wakeup = poll_fn(|cx| {
            if requests_open {
                if let Poll::Ready(inbound) = client.poll_inbound(cx) {
                    return Poll::Ready(Wakeup::Inbound(inbound));
                }
            } else if liveness.poll_unpin(cx).is_ready() {
                return Poll::Ready(Wakeup::Liveness);
            }
            if slot.poll_woken(cx).is_ready() {
                return Poll::Ready(Wakeup::Changed);
            }
            if tick.poll_unpin(cx).is_ready() {
                return Poll::Ready(Wakeup::ProgressTick);
            }
            if require_leader && leader_check.poll_unpin(cx).is_ready() {
                return Poll::Ready(Wakeup::LeaderCheck);
            }
            Poll::Pending
        })
        .await;
        match wakeup {
            Wakeup::LeaderCheck => {
                leader_check = Box::pin(glommio::timer::sleep(election_timeout));
                checks_without_leader = if has_leader(node) {
                    0
                } else {
                    checks_without_leader + 1
                };
                if checks_without_leader >= NO_LEADER_CHECKS {
                    client.fail(ServerError::NoLeader).await;
                    return;
                }
            }
            Wakeup::Inbound(Inbound::Request(request, credentials)) => {
                apply_watch_request(
                    &mut slot.stream.borrow_mut(),
                    request,
                    node,
                    &credentials,
                    &mut owner,
                );
            }
            Wakeup::Inbound(Inbound::Nothing) => {}
            // The client closed its side: the stream goes on until the client is gone (as
            // etcd's: the gateway's requests end with the HTTP body).
            Wakeup::Inbound(Inbound::Closed) => {
                if client.gone() {
                    return;
                }
                requests_open = false;
            }
            Wakeup::Inbound(Inbound::Broken(broken)) => {
                client.broke(broken).await;
                return;
            }
            Wakeup::Liveness => {
                if client.gone() {
                    return;
                }
                liveness = Box::pin(glommio::timer::sleep(LIVENESS_CHECK));
            }
            Wakeup::Changed => {}
            Wakeup::ProgressTick => {
                slot.stream.borrow_mut().progress_tick();
                tick = Box::pin(glommio::timer::sleep(interval));
            }
        }
        if node.router().local().stopping() {
            client.fail(ServerError::Stopped).await;
            return;
        }
    }
}

/// A response as it goes out: whole, or, for a watcher that allows it (`fragment` as the
/// stream hands it out) and a response over `limit` bytes with several events, in parts of
/// about `limit` bytes with every part but the last marked `fragment`, as etcd splits them.
/// Sizes are the front end's own encoding's.
fn fragments<C: WatchClient>(
    mut response: WatchResponse,
    header: &ResponseHeader,
    limit: usize,
    client: &C,
) -> Vec<WatchResponse> {
    let allowed = std::mem::replace(&mut response.fragment, false);
    if !allowed || response.events.len() < 2 || client.encoded_len(&response, header) <= limit {
        return vec![response];
    }
    let events = std::mem::take(&mut response.events);
    let mut parts = Vec::new();
    let mut part = response.clone();
    let mut size = client.encoded_len(&part, header);
    for event in events {
        // The event's length prefix and tag, bounded.
        let event_size = client.event_len(&event) + 8;
        if !part.events.is_empty() && size + event_size > limit {
            let next = WatchResponse {
                events: Vec::new(),
                ..part.clone()
            };
            size = client.encoded_len(&next, header);
            part.fragment = true;
            parts.push(std::mem::replace(&mut part, next));
        }
        size += event_size;
        part.events.push(event);
    }
    part.fragment = false;
    parts.push(part);
    parts
}

/// Whose permissions a watch stream's watches follow (the user of its latest watch created
/// while auth was on), and the auth generation they were last checked at.
pub struct WatchOwner {
    user: Option<String>,
    generation: u64,
}

impl WatchOwner {
    pub fn new(node: &Node) -> WatchOwner {
        WatchOwner {
            user: None,
            generation: node.auth_gate().generation(),
        }
    }
}

/// Applies one request of a watch stream: a creation (refused with etcd's reason when the
/// caller may not read the range), a cancellation or a progress request.
pub fn apply_watch_request(
    stream: &mut WatchStream,
    request: crate::api::native::WatchRequest,
    node: &Node,
    credentials: &crate::auth::Credentials,
    owner: &mut WatchOwner,
) {
    use crate::api::native::WatchRequest;
    match request {
        WatchRequest::Create(create) => {
            match node.permit_watch(credentials, &create.key, &create.range_end) {
                Ok(user) => {
                    if user.is_some() {
                        owner.user = user;
                    }
                    stream.create(create, node.revision());
                }
                Err(error) => stream.refuse(&access::watch_refusal(&error)),
            }
        }
        WatchRequest::Cancel(watch_id) => {
            stream.cancel(watch_id);
        }
        WatchRequest::Progress => {
            stream.request_progress();
        }
    }
}

/// After a change to users, roles or permissions (the gate's generation moved), cancels the
/// stream's watches its user may no longer read, with the reason, so that no event of a
/// revoked range is sent after the revocation is applied here (etcd checks only at creation).
/// The user is followed by name, whatever became of the token it came with: a deleted user's
/// watches all end.
pub fn recheck_watches(stream: &mut WatchStream, node: &Node, owner: &mut WatchOwner) {
    let generation = node.auth_gate().generation();
    if generation == owner.generation {
        return;
    }
    owner.generation = generation;
    let Some(user) = &owner.user else {
        return;
    };
    let gate = node.auth_gate();
    stream.cancel_refused(|range| {
        let (key, range_end) = range.to_request();
        (!gate.user_may_read(user, &key, &range_end))
            .then(|| access::watch_refusal(&crate::auth::AuthError::PermissionDenied.into()))
    });
}

/// Starts the history reads a watch stream's watchers that are behind need; each answer is
/// handed to the stream, which is then woken.
pub fn start_catch_ups(node: &Rc<Node>, slot: &Rc<WatchSlot>) {
    let reads = slot.stream.borrow_mut().catch_ups();
    for read in reads {
        let (node, slot) = (node.clone(), slot.clone());
        glommio::spawn_local(async move {
            let history = node
                .router()
                .watch_history(&read.range, read.after, read.upto, read.max_bytes)
                .await;
            match history {
                Ok((events, compacted, reached)) => {
                    slot.stream
                        .borrow_mut()
                        .on_history(&read, &events, compacted, reached);
                }
                Err(_) => slot.stream.borrow_mut().catch_up_failed(&read),
            }
            slot.wake();
        })
        .detach();
    }
}
