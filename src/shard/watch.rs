//! A core's watch hub: its watch streams and the merge of every shard's events for them.
//!
//! A core starts receiving events when its first stream opens: it subscribes with every shard
//! (`WatchSubscribe`), and each shard answers with an empty report carrying its watermark,
//! then reports its events with its watermark after every applied batch, in order. A shard's
//! reports start at its own watermark, so revisions up to the highest of those first
//! watermarks may be incomplete here: the hub is ready once every shard answered, and releases
//! only revisions above that point. Streams opened later start at the released revision and
//! catch up from history for anything older they ask for.
//!
//! When its last stream closes the core unsubscribes; a later stream subscribes anew. Each
//! subscription has an epoch that shards echo in their reports, so a report of an ended
//! subscription still in flight is never merged into a newer one. Known cost: a shard queues
//! its reports for a core whose channel is full without a bound (`Router::post_in_order`).
//!
//! A snapshot installed on a shard reaches the hub as a gap report: every stream's watchers
//! are set back to catch up from history before the revisions the snapshot jumped over are
//! released (the same report releases them, so no watcher is offered them live).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use futures::channel::oneshot;

use super::route::Router;
use super::CoreMessage;
use crate::consensus::ServerError;
use crate::watch::merge::RevisionMerger;
use crate::watch::stream::WatchStream;
use crate::watch::Event;

/// One open stream: its watchers and a wake-up for the task serving it.
#[derive(Debug)]
pub struct WatchSlot {
    /// The stream's watchers and queued responses.
    pub stream: RefCell<WatchStream>,
    waker: RefCell<Option<Waker>>,
    woken: Cell<bool>,
}

impl WatchSlot {
    /// Wakes the task serving the stream.
    pub fn wake(&self) {
        self.woken.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Ready once `wake` was called since the last time it was ready.
    pub fn poll_woken(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.woken.replace(false) {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[derive(Debug, Default)]
enum Phase {
    /// No stream ever opened: shards send nothing here.
    #[default]
    Idle,
    /// Subscribed; waiting for every shard's first report (its watermark, by shard).
    Subscribing(Vec<Option<i64>>),
    /// Every shard reports here.
    Ready,
}

/// A core's watch streams and the merge of every shard's events.
#[derive(Debug, Default)]
pub struct WatchHub {
    phase: RefCell<Phase>,
    /// The current subscription (reports of older ones are ignored).
    epoch: Cell<u64>,
    merger: RefCell<Option<RevisionMerger>>,
    streams: RefCell<BTreeMap<u64, Rc<WatchSlot>>>,
    next_stream: Cell<u64>,
    ready_waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

impl WatchHub {
    /// Opens a stream holding at most `budget` bytes of undelivered events, once this core
    /// receives every shard's events (subscribing first if no stream ever opened here).
    pub async fn open(
        self: &Rc<Self>,
        router: &Rc<Router>,
        budget: usize,
    ) -> Result<(u64, Rc<WatchSlot>), ServerError> {
        let subscribe = matches!(*self.phase.borrow(), Phase::Idle);
        if subscribe {
            let epoch = self.epoch.get() + 1;
            self.epoch.set(epoch);
            *self.phase.borrow_mut() = Phase::Subscribing(vec![None; router.cores()]);
            *self.merger.borrow_mut() = Some(RevisionMerger::new(router.cores(), 0));
            for core in 0..router.cores() {
                let subscribed = router
                    .deliver(
                        core,
                        CoreMessage::WatchSubscribe {
                            core: router.core(),
                            epoch,
                        },
                    )
                    .await;
                if let Err(error) = subscribed {
                    // Start over at the next stream; streams waiting now fail with this one.
                    *self.phase.borrow_mut() = Phase::Idle;
                    *self.merger.borrow_mut() = None;
                    self.ready_waiters.borrow_mut().clear();
                    return Err(error);
                }
            }
        }
        if !matches!(*self.phase.borrow(), Phase::Ready) {
            let (sender, receiver) = oneshot::channel();
            self.ready_waiters.borrow_mut().push(sender);
            receiver.await.map_err(|_| ServerError::Stopped)?;
        }
        let released = self
            .merger
            .borrow()
            .as_ref()
            .map_or(0, RevisionMerger::released);
        let id = self.next_stream.get();
        self.next_stream.set(id + 1);
        let slot = Rc::new(WatchSlot {
            stream: RefCell::new(WatchStream::new(released, budget)),
            waker: RefCell::new(None),
            woken: Cell::new(false),
        });
        self.streams.borrow_mut().insert(id, slot.clone());
        Ok((id, slot))
    }

    /// Forgets a stream. When it was the last (and no other is opening), the core
    /// unsubscribes: shards stop making and sending events for it.
    pub fn close(&self, id: u64, router: &Rc<Router>) {
        let last = {
            let mut streams = self.streams.borrow_mut();
            streams.remove(&id);
            streams.is_empty()
                && matches!(*self.phase.borrow(), Phase::Ready)
                && self.ready_waiters.borrow().is_empty()
        };
        if !last {
            return;
        }
        *self.phase.borrow_mut() = Phase::Idle;
        *self.merger.borrow_mut() = None;
        let (me, epoch) = (router.core(), self.epoch.get());
        for core in 0..router.cores() {
            let message = CoreMessage::WatchUnsubscribe { core: me, epoch };
            if core == me {
                router.local().handle(message, router);
            } else {
                router.post_in_order(core, message);
            }
        }
    }

    /// A shard's report (`CoreMessage::WatchEvents`) to subscription `epoch`.
    pub fn on_events(
        &self,
        shard: usize,
        epoch: u64,
        events: Vec<Event>,
        watermark: i64,
        gap: bool,
    ) {
        if epoch != self.epoch.get() {
            // For a subscription that ended: what it reports is not ours to merge.
            return;
        }
        let mut merger_slot = self.merger.borrow_mut();
        let Some(merger) = merger_slot.as_mut() else {
            return;
        };
        let mut phase = self.phase.borrow_mut();
        if let Phase::Subscribing(firsts) = &mut *phase {
            if let Some(first) = firsts.get_mut(shard) {
                first.get_or_insert(watermark);
            }
            if firsts.iter().all(Option::is_some) {
                let from = firsts.iter().flatten().copied().max().unwrap_or(0);
                merger.skip_to(from);
                *phase = Phase::Ready;
                for waiter in self.ready_waiters.borrow_mut().drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
        let ready = matches!(*phase, Phase::Ready);
        drop(phase);
        if gap && ready {
            for slot in self.streams.borrow().values() {
                slot.stream.borrow_mut().resync_all();
                slot.wake();
            }
        }
        let before = merger.released();
        merger.push(shard, events, watermark);
        if !ready {
            return;
        }
        let (events, upto) = merger.release();
        drop(merger_slot);
        if upto > before {
            for slot in self.streams.borrow().values() {
                slot.stream.borrow_mut().deliver(&events, upto);
                slot.wake();
            }
        }
    }

    /// Watch streams open on this core (every front end's).
    pub fn stream_count(&self) -> usize {
        self.streams.borrow().len()
    }

    /// Watchers on this core's streams. A stream being changed right now (it never is across a
    /// wait, so only by the caller itself) is left out rather than borrowed twice.
    pub fn watcher_count(&self) -> usize {
        self.streams
            .borrow()
            .values()
            .filter_map(|slot| slot.stream.try_borrow().ok().map(|s| s.watcher_count()))
            .sum()
    }

    /// Wakes every stream (the node is stopping).
    pub fn wake_all(&self) {
        for slot in self.streams.borrow().values() {
            slot.wake();
        }
        self.ready_waiters.borrow_mut().clear();
    }
}

/// Waits until `slot` is woken.
pub async fn woken(slot: &WatchSlot) {
    poll_fn(|cx| slot.poll_woken(cx)).await
}
