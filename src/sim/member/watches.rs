//! A simulated member's watchers: streams opened and closed by the simulated watch clients,
//! fed the member's events through the real `RevisionMerger` and `WatchStream`.

use super::*;

impl SimMember {
    /// Opens a watch stream for `caller` on every key from revision `start` on (etcd's
    /// `Watch` with `prev_kv`), served from this member's applied state.
    pub fn open_watch(&mut self, caller: Caller, start: i64) {
        let mut stream = WatchStream::new(self.merger.released(), WATCH_BUDGET);
        stream.set_catch_up_revisions(WATCH_CATCH_UP_REVISIONS);
        stream.create(
            CreateWatch {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                start_revision: start,
                prev_kv: true,
                ..CreateWatch::default()
            },
            self.kv.current_revision(),
        );
        self.watch_streams.insert(caller, stream);
    }

    /// The client closed its watch stream.
    pub fn close_watch(&mut self, caller: Caller) {
        self.watch_streams.remove(&caller);
    }

    /// Releases every revision all shards have reported to the watch streams, catches up the
    /// watchers that are behind from history, and hands out their responses.
    pub(super) fn serve_watches(&mut self, effects: &mut Effects) {
        let (mut events, upto) = self.merger.release();
        if self.bug == Some(Bug::WatchLosesEvents) {
            events.retain(|event| event.revision() % 13 != 0);
        }
        for stream in self.watch_streams.values_mut() {
            if upto > stream.released() {
                stream.deliver(&events, upto);
            }
        }
        for (caller, stream) in &mut self.watch_streams {
            loop {
                let reads = stream.catch_ups();
                if reads.is_empty() {
                    break;
                }
                for read in reads {
                    let (history, reached) = self.kv.history_events_within(
                        &read.range,
                        read.after,
                        read.upto,
                        read.max_bytes,
                    );
                    stream.on_history(&read, &history, self.kv.compact_revision(), reached);
                }
            }
            while let Some(response) = stream.pop() {
                effects.watch_responses.push((*caller, response));
            }
        }
    }
}
