//! The watchers of one client stream: creating and canceling them as etcd does, handing each
//! the events it is owed a whole revision at a time, catching up from history the ones that are
//! behind, progress responses, and a byte budget on what waits to be sent.
//!
//! Invariants:
//! - a watcher's `next` only grows; it has been given every matching event below `next`
//!   (or was created after them) and nothing at or above it;
//! - a synced watcher has `next > released` (equal to `released + 1` unless it starts in the
//!   future): it is given live revisions as they are released; an unsynced one ignores live
//!   revisions and is caught up from history (the server reads the shards at a revision the
//!   stream has released and calls `on_history`);
//! - undelivered events counted in `queued` stay within the budget, except that one response
//!   is always allowed into an empty queue (so a response larger than the budget still flows).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{Event, EventKind};
use crate::mvcc::KeyRange;

/// The watch ID of responses that speak for the whole stream (progress) or for a watch that
/// was never created (etcd's `InvalidWatchID`).
pub const NO_WATCH_ID: i64 = -1;

/// etcd's cancel reason for a negative start revision (and its compaction error).
pub const COMPACTED_REASON: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's cancel reason for a range that holds no key.
pub const EMPTY_RANGE_REASON: &str = "mvcc: watcher range is empty";
/// etcd's cancel reason for a watch ID already used on the stream.
pub const DUPLICATE_ID_REASON: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// A watch's creation, as etcd's `WatchCreateRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateWatch {
    /// First key (empty means `"\0"`, the smallest key).
    pub key: Bytes,
    /// etcd's `range_end` forms: empty for one key, `"\0"` for every key from `key` on.
    pub range_end: Bytes,
    /// First revision wanted; 0 means the next one.
    pub start_revision: i64,
    /// Send an empty response when idle at each progress tick.
    pub progress_notify: bool,
    /// Leave out puts.
    pub no_put: bool,
    /// Leave out deletes.
    pub no_delete: bool,
    /// Include the pair before each change.
    pub prev_kv: bool,
    /// The client's ID for the watch; 0 lets the stream pick.
    pub watch_id: i64,
    /// Responses may be split (the transport does the splitting).
    pub fragment: bool,
    /// On the request that opens a native stream: the stream ends with "etcdserver: no
    /// leader" once the member lost its leader (gRPC's `hasleader` metadata).
    pub require_leader: bool,
}

/// A response to send on the stream, as etcd's `WatchResponse` (the header's revision only;
/// the server adds the rest of the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The header's revision.
    pub revision: i64,
    /// Which watch it is for (`NO_WATCH_ID` for progress or a refused creation).
    pub watch_id: i64,
    /// Answers a creation.
    pub created: bool,
    /// The watch ended.
    pub canceled: bool,
    /// Set when the watch ended because it needs revisions compacted away.
    pub compact_revision: i64,
    /// Why a creation was refused.
    pub cancel_reason: String,
    /// Events, whole revisions, in order.
    pub events: Vec<Event>,
    /// As `pop` hands it out: the watcher allows splitting this response. As a front end
    /// sends it (after `server::watching` split it): more parts of the response follow.
    pub fragment: bool,
}

/// Revisions one catch-up reads at most: a watcher far behind is caught up in steps, each
/// only once the stream has room under its budget, so memory stays bounded however old the
/// revision it asked for.
pub const CATCH_UP_REVISIONS: i64 = 10_000;

/// History reads a stream has in flight at most: a stream of many watchers far behind holds
/// at most this many reads' events at once.
pub const CATCH_UPS_IN_FLIGHT: usize = 4;

/// A history read the server should make for a watcher that is behind: every event of
/// `range` in `(after, upto]`, read from the shards at `upto`, handed to `on_history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The watcher.
    pub watch_id: i64,
    /// Which watcher of that ID (IDs can be reused once canceled; a stale answer is ignored).
    pub serial: u64,
    /// Its keys.
    pub range: KeyRange,
    /// Revisions above this one.
    pub after: i64,
    /// Up to this one (already released on this stream).
    pub upto: i64,
    /// Bytes of events the read may hold (the stream's budget): a read that would hold more
    /// stops at a whole revision and says where.
    pub max_bytes: usize,
}

#[derive(Clone, Debug)]
struct Watcher {
    /// Unique on the stream, unlike IDs.
    serial: u64,
    range: KeyRange,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision not yet given.
    next: i64,
    synced: bool,
    /// A history read was handed out and not answered yet.
    catching_up: bool,
    /// Something was sent since the last progress tick.
    sent_since_tick: bool,
}

impl Watcher {
    fn wants(&self, event: &Event) -> bool {
        event.revision() >= self.next
            && self.range.contains(&event.kv.key)
            && !(self.no_put && event.kind == EventKind::Put)
            && !(self.no_delete && event.kind == EventKind::Delete)
    }

    fn shaped(&self, event: &Event) -> Event {
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        event
    }
}

/// The watchers of one stream.
#[derive(Debug)]
pub struct WatchStream {
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    next_serial: u64,
    released: i64,
    /// History reads handed out and not answered.
    catch_ups_in_flight: usize,
    /// A progress request waits for every watcher to be synced.
    progress_pending: bool,
    budget: usize,
    queued: usize,
    out: VecDeque<(WatchResponse, usize)>,
    catch_up_revisions: i64,
}

impl WatchStream {
    /// A stream on a core that has released every revision up to `released`, holding at most
    /// `budget` bytes of undelivered events.
    pub fn new(released: i64, budget: usize) -> WatchStream {
        WatchStream {
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            next_serial: 0,
            released,
            catch_ups_in_flight: 0,
            progress_pending: false,
            budget,
            queued: 0,
            out: VecDeque::new(),
            catch_up_revisions: CATCH_UP_REVISIONS,
        }
    }

    /// Sets how many revisions one catch-up reads at most (tests use small steps).
    pub fn set_catch_up_revisions(&mut self, revisions: i64) {
        self.catch_up_revisions = revisions.max(1);
    }

    /// The revision up to which live events were offered to this stream.
    pub fn released(&self) -> i64 {
        self.released
    }

    /// Number of watchers.
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Watchers that are behind (waiting to be caught up from history).
    pub fn catch_ups_pending(&self) -> usize {
        self.watchers.values().filter(|w| !w.synced).count()
    }

    /// Bytes of events waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    fn push(&mut self, response: WatchResponse) {
        let bytes: usize = response.events.iter().map(Event::counted_bytes).sum();
        self.queued += bytes;
        self.out.push_back((response, bytes));
    }

    /// Answers a creation that is refused (no watch made), with `reason`.
    pub fn refuse(&mut self, reason: &str) {
        let revision = self.released;
        self.push(WatchResponse {
            revision,
            watch_id: NO_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        });
    }

    /// Creates a watch as etcd's watch stream does, queueing its answer; returns its ID, or
    /// `None` when it was refused (negative start revision, empty range, duplicate ID). A
    /// watch starting at or below the released revision is caught up from history (see
    /// `catch_ups`); one starting below the compaction point is then canceled. A watch from
    /// "now" (start revision 0) starts after `current`, the store's revision as the server
    /// knows it (which may be ahead of what this stream has been offered).
    pub fn create(&mut self, request: CreateWatch, current: i64) -> Option<i64> {
        if request.start_revision < 0 {
            self.refuse(COMPACTED_REASON);
            return None;
        }
        let key = if request.key.is_empty() {
            Bytes::from_static(&[0])
        } else {
            request.key
        };
        let range = KeyRange::from_request(&key, &request.range_end);
        if let KeyRange::Between(start, end) = &range {
            if end <= start {
                self.refuse(EMPTY_RANGE_REASON);
                return None;
            }
        }
        let id = if request.watch_id != 0 {
            if self.watchers.contains_key(&request.watch_id) {
                self.refuse(DUPLICATE_ID_REASON);
                return None;
            }
            request.watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            // As etcd: an automatic ID is never handed out twice on a stream.
            let id = self.next_auto_id;
            self.next_auto_id += 1;
            id
        };
        // The store's revision as the server knows it: what the created answer reports, and
        // where a watch from "now" starts after.
        let now = self.released.max(current);
        let next = if request.start_revision > 0 {
            request.start_revision
        } else {
            now + 1
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        self.watchers.insert(
            id,
            Watcher {
                serial,
                range,
                no_put: request.no_put,
                no_delete: request.no_delete,
                prev_kv: request.prev_kv,
                progress_notify: request.progress_notify,
                fragment: request.fragment,
                next,
                synced: next > self.released,
                catching_up: false,
                sent_since_tick: false,
            },
        );
        self.push(WatchResponse {
            revision: now,
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        });
        Some(id)
    }

    /// Cancels a watch, queueing etcd's answer; an unknown ID is ignored, as etcd ignores it.
    pub fn cancel(&mut self, watch_id: i64) -> bool {
        if self.watchers.remove(&watch_id).is_none() {
            return false;
        }
        let revision = self.released;
        self.push(WatchResponse {
            revision,
            watch_id,
            canceled: true,
            ..WatchResponse::default()
        });
        self.answer_pending_progress();
        true
    }

    /// Cancels every watch `refused` gives a reason for (its range, now), queueing a canceled
    /// answer with the reason: how a stream's watches end when their user loses the
    /// permission to read what they watch. Returns how many were canceled.
    pub fn cancel_refused(
        &mut self,
        mut refused: impl FnMut(&KeyRange) -> Option<String>,
    ) -> usize {
        let mut gone: Vec<(i64, String)> = self
            .watchers
            .iter()
            .filter_map(|(id, watcher)| refused(&watcher.range).map(|why| (*id, why)))
            .collect();
        gone.sort_unstable_by_key(|(id, _)| *id);
        if gone.is_empty() {
            return 0;
        }
        // Whatever they were given and is not sent yet goes too: it may be of revisions after
        // the refusal.
        let mut dropped = 0;
        self.out.retain(|(response, bytes)| {
            let keep = !gone.iter().any(|(id, _)| *id == response.watch_id);
            if !keep {
                dropped += *bytes;
            }
            keep
        });
        self.queued -= dropped;
        let revision = self.released;
        for (watch_id, reason) in &gone {
            self.watchers.remove(watch_id);
            self.push(WatchResponse {
                revision,
                watch_id: *watch_id,
                canceled: true,
                cancel_reason: reason.clone(),
                ..WatchResponse::default()
            });
        }
        self.answer_pending_progress();
        gone.len()
    }

    /// etcd's progress request: one response for the whole stream at the released revision,
    /// sent once every watcher has been given everything up to it: at once when they all are,
    /// otherwise as soon as they are (etcd 3.5.8 and later defer it the same way). Returns
    /// whether it was answered at once.
    pub fn request_progress(&mut self) -> bool {
        self.progress_pending = true;
        self.answer_pending_progress()
    }

    fn answer_pending_progress(&mut self) -> bool {
        if !self.progress_pending || self.watchers.values().any(|w| !w.synced) {
            return false;
        }
        self.progress_pending = false;
        let revision = self.released;
        self.push(WatchResponse {
            revision,
            watch_id: NO_WATCH_ID,
            ..WatchResponse::default()
        });
        true
    }

    /// Offers the revisions released up to `upto` (`events` in order, all above the previously
    /// released revision): each synced watcher gets its matching events in one response. A
    /// watcher whose events do not fit the budget falls back to catching up from history.
    pub fn deliver(&mut self, events: &[Event], upto: i64) {
        if upto <= self.released {
            return;
        }
        let mut responses = Vec::new();
        let mut queued = self.queued;
        for (&id, watcher) in self.watchers.iter_mut().filter(|(_, w)| w.synced) {
            let mine: Vec<Event> = events
                .iter()
                .filter(|event| event.revision() <= upto && watcher.wants(event))
                .map(|event| watcher.shaped(event))
                .collect();
            if !mine.is_empty() {
                let bytes: usize = mine.iter().map(Event::counted_bytes).sum();
                if queued > 0 && queued + bytes > self.budget {
                    // Its reader is behind: catch it up from history once there is room.
                    watcher.synced = false;
                    continue;
                }
                queued += bytes;
                watcher.sent_since_tick = true;
                responses.push(WatchResponse {
                    revision: upto,
                    watch_id: id,
                    events: mine,
                    fragment: watcher.fragment,
                    ..WatchResponse::default()
                });
            }
            // A watch starting in the future keeps its start.
            watcher.next = watcher.next.max(upto + 1);
        }
        self.released = upto;
        for response in responses {
            self.push(response);
        }
        self.answer_pending_progress();
    }

    /// History reads to make now: one per watcher that is behind and not already being caught
    /// up, while the stream has room under its budget, each of at most `CATCH_UP_REVISIONS`
    /// revisions.
    pub fn catch_ups(&mut self) -> Vec<CatchUp> {
        let released = self.released;
        let mut reads = Vec::new();
        for (&id, watcher) in self.watchers.iter_mut() {
            if watcher.synced || watcher.catching_up {
                continue;
            }
            // Nothing released since it fell behind (a snapshot's gap is released by the same
            // report that set it back): nothing to read.
            if watcher.next > released {
                watcher.synced = true;
                continue;
            }
            if self.queued >= self.budget || self.catch_ups_in_flight >= CATCH_UPS_IN_FLIGHT {
                continue;
            }
            watcher.catching_up = true;
            self.catch_ups_in_flight += 1;
            let after = watcher.next - 1;
            reads.push(CatchUp {
                watch_id: id,
                serial: watcher.serial,
                range: watcher.range.clone(),
                after,
                upto: released.min(after.saturating_add(self.catch_up_revisions)),
                max_bytes: self.budget,
            });
        }
        self.answer_pending_progress();
        reads
    }

    /// A `CatchUp` could not be read (the node is stopping, or a shard failed to answer): the
    /// watcher will be caught up by a later read.
    pub fn catch_up_failed(&mut self, read: &CatchUp) {
        if let Some(watcher) = self.watchers.get_mut(&read.watch_id) {
            if watcher.serial == read.serial && watcher.catching_up {
                watcher.catching_up = false;
                self.catch_ups_in_flight -= 1;
            }
        }
    }

    /// Sets every watcher back to catch up from history (the state jumped without events,
    /// as when a snapshot was installed).
    pub fn resync_all(&mut self) {
        for watcher in self.watchers.values_mut() {
            watcher.synced = false;
        }
    }

    /// The answer to a `CatchUp`: the history `events` of the watcher's range in
    /// `(after, reached]` (`reached` is `upto` unless the read stopped at its byte bound), read
    /// when the compaction point was `compacted`. A watcher that needs
    /// revisions below the compaction point is canceled with `compact_revision` set, as etcd
    /// does; otherwise it is given its events (whole revisions, in responses of at most the
    /// budget each unless one revision alone is larger) and is synced again if nothing was
    /// released meanwhile.
    pub fn on_history(&mut self, read: &CatchUp, events: &[Event], compacted: i64, reached: i64) {
        let (watch_id, upto) = (read.watch_id, reached.clamp(read.after, read.upto));
        let released = self.released;
        let budget = self.budget;
        let Some(watcher) = self.watchers.get_mut(&watch_id) else {
            // Canceled meanwhile: the read no longer counts against the stream.
            self.catch_ups_in_flight = self.catch_ups_in_flight.saturating_sub(1);
            return;
        };
        if watcher.serial != read.serial || !watcher.catching_up {
            // An answer for a watcher since canceled whose ID was reused.
            self.catch_ups_in_flight = self.catch_ups_in_flight.saturating_sub(1);
            return;
        }
        watcher.catching_up = false;
        self.catch_ups_in_flight -= 1;
        if upto < watcher.next {
            return;
        }
        if watcher.next < compacted {
            self.watchers.remove(&watch_id);
            self.push(WatchResponse {
                revision: released,
                watch_id,
                canceled: true,
                compact_revision: compacted,
                ..WatchResponse::default()
            });
            self.answer_pending_progress();
            return;
        }
        let mut responses: Vec<WatchResponse> = Vec::new();
        let mut current: Vec<Event> = Vec::new();
        let mut current_bytes = 0;
        let mut index = 0;
        let mine: Vec<&Event> = events
            .iter()
            .filter(|event| event.revision() <= upto && watcher.wants(event))
            .collect();
        while index < mine.len() {
            // One revision at a time, never split.
            let revision = mine[index].revision();
            let end = index
                + mine[index..]
                    .iter()
                    .take_while(|e| e.revision() == revision)
                    .count();
            let part: Vec<Event> = mine[index..end]
                .iter()
                .map(|event| watcher.shaped(event))
                .collect();
            let bytes: usize = part.iter().map(Event::counted_bytes).sum();
            if !current.is_empty() && current_bytes + bytes > budget {
                responses.push(WatchResponse {
                    revision: upto,
                    watch_id,
                    events: std::mem::take(&mut current),
                    fragment: watcher.fragment,
                    ..WatchResponse::default()
                });
                current_bytes = 0;
            }
            current.extend(part);
            current_bytes += bytes;
            index = end;
        }
        if !current.is_empty() {
            responses.push(WatchResponse {
                revision: upto,
                watch_id,
                events: current,
                fragment: watcher.fragment,
                ..WatchResponse::default()
            });
        }
        if !responses.is_empty() {
            watcher.sent_since_tick = true;
        }
        watcher.next = watcher.next.max(upto + 1);
        watcher.synced = watcher.next > released;
        for response in responses {
            self.push(response);
        }
        self.answer_pending_progress();
    }

    /// etcd's progress notification, at each interval: an empty response at the released
    /// revision for every synced watcher that asked for them and was sent nothing since the
    /// last tick.
    pub fn progress_tick(&mut self) {
        let revision = self.released;
        let mut idle = Vec::new();
        for (&id, watcher) in self.watchers.iter_mut() {
            if watcher.progress_notify && watcher.synced && !watcher.sent_since_tick {
                idle.push(id);
            }
            watcher.sent_since_tick = false;
        }
        for watch_id in idle {
            self.push(WatchResponse {
                revision,
                watch_id,
                ..WatchResponse::default()
            });
        }
    }

    /// The next response to send, if any.
    pub fn pop(&mut self) -> Option<WatchResponse> {
        let (response, bytes) = self.out.pop_front()?;
        self.queued -= bytes;
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::KeyValue;

    fn put(revision: i64, key: &str) -> Event {
        let key = Bytes::copy_from_slice(key.as_bytes());
        Event::new(
            revision,
            0,
            key.clone(),
            Some(KeyValue {
                key,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: Bytes::from_static(b"v"),
                lease: 0,
            }),
            None,
        )
    }

    fn watch(key: &str, start_revision: i64, watch_id: i64) -> CreateWatch {
        CreateWatch {
            key: Bytes::copy_from_slice(key.as_bytes()),
            start_revision,
            watch_id,
            ..CreateWatch::default()
        }
    }

    fn drain(stream: &mut WatchStream) -> Vec<WatchResponse> {
        std::iter::from_fn(|| stream.pop()).collect()
    }

    #[test]
    fn creations_are_answered_and_refused_as_etcd_does() {
        let mut stream = WatchStream::new(5, 1 << 20);
        // Automatic IDs start at 0 and skip IDs the client chose.
        assert_eq!(stream.create(watch("a", 0, 1), 0), Some(1));
        assert_eq!(stream.create(watch("a", 0, 0), 0), Some(0));
        assert_eq!(stream.create(watch("a", 0, 0), 0), Some(2));
        assert_eq!(stream.create(watch("a", 0, 1), 0), None);
        assert_eq!(stream.create(watch("a", -1, 0), 0), None);
        let empty = CreateWatch {
            range_end: Bytes::from_static(b"a"),
            ..watch("b", 0, 0)
        };
        assert_eq!(stream.create(empty, 0), None);
        let answers = drain(&mut stream);
        let created: Vec<(i64, bool, &str)> = answers
            .iter()
            .map(|r| (r.watch_id, r.canceled, r.cancel_reason.as_str()))
            .collect();
        assert_eq!(
            created,
            vec![
                (1, false, ""),
                (0, false, ""),
                (2, false, ""),
                (NO_WATCH_ID, true, DUPLICATE_ID_REASON),
                (NO_WATCH_ID, true, COMPACTED_REASON),
                (NO_WATCH_ID, true, EMPTY_RANGE_REASON),
            ]
        );
        assert!(answers.iter().all(|r| r.created && r.revision == 5));
        // Canceling: answered once; an unknown ID is ignored.
        assert!(stream.cancel(1));
        assert!(!stream.cancel(1));
        assert!(!stream.cancel(42));
        let canceled = drain(&mut stream);
        assert_eq!(canceled.len(), 1);
        assert!(canceled[0].canceled && canceled[0].watch_id == 1);
    }

    #[test]
    fn watches_whose_range_is_refused_are_canceled_with_the_reason() {
        let mut stream = WatchStream::new(5, 1 << 20);
        stream.create(watch("a", 0, 1), 0).expect("a");
        stream.create(watch("b", 0, 2), 0).expect("b");
        drain(&mut stream);
        // Given but not yet sent: dropped with the watch.
        stream.deliver(&[put(6, "b")], 6);
        let canceled = stream.cancel_refused(|range| {
            (range.start().as_ref() == b"b").then(|| "permission denied".to_string())
        });
        assert_eq!(canceled, 1);
        let answers = drain(&mut stream);
        assert_eq!(answers.len(), 1);
        assert_eq!(
            (
                answers[0].watch_id,
                answers[0].canceled,
                answers[0].cancel_reason.as_str()
            ),
            (2, true, "permission denied")
        );
        assert_eq!(stream.watcher_count(), 1);
        assert_eq!(stream.cancel_refused(|_| None), 0);
        assert!(drain(&mut stream).is_empty());
    }

    #[test]
    fn a_watch_behind_the_compaction_point_is_canceled_with_it() {
        let mut stream = WatchStream::new(10, 1 << 20);
        let id = stream.create(watch("a", 3, 0), 0).expect("created");
        let reads = stream.catch_ups();
        assert_eq!(reads.len(), 1);
        assert_eq!(
            (reads[0].watch_id, reads[0].after, reads[0].upto),
            (id, 2, 10)
        );
        assert!(
            !stream.request_progress(),
            "no progress while a watcher is behind"
        );
        stream.on_history(&reads[0], &[], 6, reads[0].upto);
        let answers = drain(&mut stream);
        let canceled = &answers[answers.len() - 2];
        assert!(canceled.canceled);
        assert_eq!(canceled.compact_revision, 6);
        assert_eq!(stream.watcher_count(), 0);
        // The progress request waited until no watcher was behind.
        let progress = answers.last().expect("answers");
        assert_eq!((progress.watch_id, progress.revision), (NO_WATCH_ID, 10));
        // Starting exactly at the compaction point is fine.
        stream.create(watch("a", 6, 0), 0).expect("created");
        let reads = stream.catch_ups();
        stream.on_history(&reads[0], &[put(6, "a"), put(8, "b")], 6, reads[0].upto);
        let answers = drain(&mut stream);
        assert_eq!(answers.last().map(|r| r.events.len()), Some(1));
        assert!(stream.request_progress());
    }

    #[test]
    fn a_stale_history_answer_never_reaches_a_watcher_that_reused_the_id() {
        let mut stream = WatchStream::new(10, 1 << 20);
        let old = stream.create(watch("a", 2, 5), 10).expect("created");
        let stale = stream.catch_ups();
        assert!(stream.cancel(old));
        // A new watch with the same (client-chosen) ID, on another key.
        stream.create(watch("b", 4, 5), 10).expect("created");
        stream.on_history(&stale[0], &[put(3, "a"), put(5, "b")], 0, stale[0].upto);
        let fresh = stream.catch_ups();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].after, 3, "still behind, from its own start");
        stream.on_history(&fresh[0], &[put(5, "b"), put(9, "b")], 0, fresh[0].upto);
        let events: Vec<i64> = drain(&mut stream)
            .into_iter()
            .flat_map(|r| r.events)
            .map(|e| e.revision())
            .collect();
        assert_eq!(events, vec![5, 9]);
        // Automatic IDs are not handed out again after a cancel.
        let first = stream.create(watch("c", 0, 0), 10).expect("created");
        stream.cancel(first);
        assert_ne!(stream.create(watch("c", 0, 0), 10), Some(first));
    }

    #[test]
    fn progress_notifications_go_to_idle_watchers_that_asked() {
        let mut stream = WatchStream::new(1, 1 << 20);
        let notify = CreateWatch {
            progress_notify: true,
            ..watch("a", 0, 0)
        };
        stream.create(notify, 0);
        stream.create(watch("b", 0, 0), 0);
        drain(&mut stream);
        stream.progress_tick();
        let ticks = drain(&mut stream);
        assert_eq!(ticks.len(), 1);
        assert_eq!((ticks[0].watch_id, ticks[0].events.len()), (0, 0));
        // A watcher given events since the last tick gets no notification.
        stream.progress_tick();
        stream.deliver(&[put(2, "a")], 2);
        drain(&mut stream);
        stream.progress_tick();
        assert!(drain(&mut stream).is_empty());
    }

    #[test]
    fn a_slow_reader_is_caught_up_from_history_within_the_budget() {
        let budget = 2 * put(2, "a").counted_bytes();
        let mut stream = WatchStream::new(1, budget);
        stream.create(watch("a", 0, 0), 0).expect("created");
        drain(&mut stream);
        for revision in 2..=10 {
            stream.deliver(&[put(revision, "a")], revision);
        }
        assert!(stream.queued_bytes() <= budget);
        assert_eq!(stream.catch_ups_pending(), 1);
        let mut got = Vec::new();
        for _ in 0..20 {
            got.extend(drain(&mut stream).into_iter().flat_map(|r| r.events));
            for read in stream.catch_ups() {
                let history: Vec<Event> = (read.after + 1..=read.upto)
                    .map(|revision| put(revision, "a"))
                    .collect();
                stream.on_history(&read, &history, 0, read.upto);
            }
        }
        let revisions: Vec<i64> = got.iter().map(Event::revision).collect();
        assert_eq!(revisions, (2..=10).collect::<Vec<_>>());
        assert_eq!(stream.catch_ups_pending(), 0);
    }
}
