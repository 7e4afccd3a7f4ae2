//! The watch checker's clients: each watches every key on a member it picks, reconnecting now
//! and then and whenever its member goes down, from the revision after the last it was given.
//! Every change applied anywhere is recorded by (revision, sub) as the first member made it
//! (every other member must make the same); each watcher must be given exactly those changes,
//! in order, from its first revision up to the last it was given.

use std::time::Duration;

use super::member::Caller;
use super::{Event, Simulation};

/// A client watching every key, reconnecting now and then (and when its member goes down)
/// from the revision after the last it was given, as etcd's clients do.
pub(super) struct Watcher {
    /// The member and the stream's caller token, while a stream is open.
    pub(super) stream: Option<(u64, Caller)>,
    /// The first revision it still wants.
    pub(super) next: i64,
    /// Every event it was given, in order.
    pub(super) received: Vec<crate::watch::Event>,
}

/// Watching clients per simulation.
pub(super) const WATCHERS: usize = 2;

impl Simulation {
    /// Watcher `w` closes its stream, if open, and opens one on a member it picks from the
    /// revision after the last it was given.
    pub(super) fn watch_open(&mut self, w: usize) {
        if let Some((member, caller)) = self.watchers[w].stream.take() {
            if let Some(running) = self.slots[(member - 1) as usize].member.as_mut() {
                running.close_watch(caller);
            }
        }
        let member = self.pick_member();
        if self.slots[(member - 1) as usize].member.is_none() {
            let retry = Duration::from_millis(self.random.below(50, 300));
            self.schedule(retry, Event::WatchOpen(w));
            return;
        }
        let caller = self.next_caller;
        self.next_caller += 1;
        let next = self.watchers[w].next;
        self.watchers[w].stream = Some((member, caller));
        self.log(|| format!("watcher {w} -> m{member}: watch from revision {next}"));
        if let Some(running) = self.slots[(member - 1) as usize].member.as_mut() {
            running.open_watch(caller, next);
        }
        if !self.settling {
            let reconnect = Duration::from_millis(self.random.below(500, 4_000));
            self.schedule(reconnect, Event::WatchOpen(w));
        }
        self.pump(member);
    }

    /// A watch response reaches its watcher: its events must continue exactly where the
    /// last left off (checked against every change applied at the end).
    pub(super) fn watch_response(
        &mut self,
        caller: Caller,
        response: crate::watch::stream::WatchResponse,
    ) {
        let Some(w) = self
            .watchers
            .iter()
            .position(|w| w.stream.is_some_and(|(_, c)| c == caller))
        else {
            return; // a stream closed since
        };
        if response.canceled {
            let reason = response.cancel_reason.clone();
            self.fail(format!(
                "watcher {w}'s watch was canceled ({reason:?}, compact revision {}) though \
                 nothing was compacted",
                response.compact_revision
            ));
            return;
        }
        let watcher = &mut self.watchers[w];
        let mut failure = None;
        for event in response.events {
            let position = (event.revision(), event.sub);
            let last = watcher.received.last().map(|e| (e.revision(), e.sub));
            if event.revision() < watcher.next || last.is_some_and(|last| position <= last) {
                failure = Some(format!(
                    "watcher {w} was given revision {}.{} after {last:?} (it wanted {} on): \
                     out of order or repeated",
                    position.0, position.1, watcher.next
                ));
                break;
            }
            watcher.received.push(event);
        }
        if let Some(last) = watcher.received.last() {
            watcher.next = watcher.next.max(last.revision() + 1);
        }
        if let Some(failure) = failure {
            self.fail(failure);
        }
    }

    /// Every member applies the same change at the same (revision, sub).
    pub(super) fn record_changes(&mut self, id: u64, events: Vec<crate::watch::Event>) {
        for event in events {
            let position = (event.revision(), event.sub);
            match self.changes.get(&position) {
                None => {
                    self.changes.insert(position, event);
                }
                Some(first) if *first != event => {
                    let what = format!(
                        "m{id} applied {event:?} at revision {}.{}, another member {first:?}",
                        position.0, position.1
                    );
                    self.fail(what);
                    return;
                }
                Some(_) => {}
            }
        }
    }

    /// Each watcher was given exactly every change from its first revision up to the last it
    /// was given: none missing, none extra, each as applied.
    pub(super) fn check_watchers(&mut self) {
        for (w, watcher) in self.watchers.iter().enumerate() {
            let upto = watcher.next - 1;
            let expected: Vec<&crate::watch::Event> = self
                .changes
                .range(..=(upto, i64::MAX))
                .map(|(_, event)| event)
                .collect();
            let given: Vec<&crate::watch::Event> = watcher.received.iter().collect();
            if given != expected {
                let missing = expected
                    .iter()
                    .find(|e| !given.contains(e))
                    .map(|e| (e.revision(), e.sub));
                let what = format!(
                    "watcher {w} was given {} events up to revision {upto}, {} were applied; \
                     first missing or different: {missing:?}",
                    given.len(),
                    expected.len()
                );
                self.fail(what);
                return;
            }
        }
    }
}
