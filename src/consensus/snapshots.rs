//! Snapshots, as the shell writes and installs them: this member's own (when the replica's
//! schedule says one is due), exports for `lodectl snapshot save`, and installing one the
//! leader sent.

use std::rc::Rc;
use std::time::{Duration, Instant};

use raft::eraftpb::Snapshot;

use super::driver::Consensus;
use crate::alarm::Alarms;
use crate::api::error::ServerError;
use crate::ids::{LogIndex, MemberId, Revision};
use crate::replica::state::snapshot_metadata;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// Writes a fresh snapshot of the whole keyspace at the current applied index to an export
    /// file in the snapshot directory and returns its path and revision (etcd's
    /// Maintenance.Snapshot, behind `lodectl snapshot save`). The caller streams the file and
    /// removes it; export files left by a crash are removed at the next start.
    pub async fn snapshot_export(&self) -> Result<(std::path::PathBuf, i64), ServerError> {
        let export_number = self.next_number();
        let dir = &self.config.snapshot_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!(
            "{}{}-{export_number}.snap",
            crate::snapshotter::EXPORT_PREFIX,
            self.nonce
        ));
        loop {
            let applied = self.applied_index().get();
            let meta = self.snapshot_meta(applied, self.wal.term(applied).unwrap_or(0));
            if crate::snapshotter::write(&path, &meta, self.sequencer.router()).await? {
                return Ok((path, meta.revision));
            }
            // A compaction moved meanwhile: cut again.
        }
    }

    /// What a snapshot taken now at `applied` (of `applied_term`) describes.
    fn snapshot_meta(&self, applied: u64, applied_term: u64) -> crate::snapshot::SnapshotMeta {
        let replica = self.replica.borrow();
        crate::snapshot::SnapshotMeta {
            applied_index: applied,
            applied_term,
            revision: self.sequencer.current_revision().get(),
            compact_revision: self.sequencer.compact_revision().get(),
            voters: replica.voters().into_iter().map(MemberId::get).collect(),
            alarms: self.alarms(),
            members: Some(replica.members().clone()),
            leases: self.sequencer.export_leases(),
            auth: self.sequencer.export_auth(),
        }
    }

    /// Starts a snapshot in the background when the replica's schedule says one is due; when
    /// it is durable, the log is compacted up to `snapshot_catchup_entries` behind it, and no
    /// further than the previous snapshot.
    pub(super) fn maybe_snapshot(self: &Rc<Self>) {
        let applied = self.applied_index().get();
        if !self
            .replica
            .borrow_mut()
            .snapshot_due(self.config.snapshot_count)
        {
            return;
        }
        let Ok(applied_term) = self.wal.term(applied) else {
            return;
        };
        let meta = self.snapshot_meta(applied, applied_term);
        let previous = {
            let mut replica = self.replica.borrow_mut();
            replica.snapshots().started();
            replica.snapshots().newest()
        };
        let this = self.clone();
        let background = *self.snapshot_queue.get_or_init(|| {
            // One queue for every snapshot of this node's life (queues are never reclaimed).
            glommio::executor().create_task_queue(
                glommio::Shares::Static(100),
                glommio::Latency::NotImportant,
                "snapshot",
            )
        });
        let task = async move {
            let started = Instant::now();
            let taken =
                crate::snapshotter::take(&this.config.snapshot_dir, &meta, this.sequencer.router())
                    .await;
            match taken {
                Ok(true) => {
                    let path = this
                        .config
                        .snapshot_dir
                        .join(crate::snapshotter::snapshot_file_name(meta.applied_index));
                    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
                    tracing::info!(
                        index = meta.applied_index,
                        revision = meta.revision,
                        elapsed = ?started.elapsed(),
                        "snapshot written"
                    );
                    // A member that falls behind the compacted log is sent this snapshot.
                    this.replica
                        .borrow_mut()
                        .snapshot_taken(snapshot_metadata(&meta), bytes);
                    // The log keeps what follows the previous snapshot too: a start that finds
                    // this one damaged falls back to that one and the log after it.
                    let compact_to = meta
                        .applied_index
                        .saturating_sub(this.config.snapshot_catchup_entries)
                        .min(previous);
                    if compact_to > this.wal.compacted().0 {
                        if let Err(error) = this.wal.compact(compact_to).await {
                            tracing::error!(%error, "compacting the log after a snapshot failed");
                        }
                    }
                }
                Ok(false) => {
                    tracing::info!("snapshot abandoned: a compaction ran meanwhile");
                    this.replica.borrow_mut().snapshots().abandoned();
                }
                Err(error) => {
                    // Tried again only after as many entries as between snapshots.
                    this.replica
                        .borrow_mut()
                        .snapshots()
                        .failed(meta.applied_index, this.config.snapshot_count);
                    tracing::error!(%error, "writing a snapshot failed")
                }
            }
        };
        if glommio::spawn_local_into(task, background)
            .map(|t| t.detach())
            .is_err()
        {
            self.replica.borrow_mut().snapshots().abandoned();
        }
    }

    /// Installs a snapshot the leader sent (this member was behind its log): the transport
    /// already made the file durable as `received-<index>.snap`. The shards are replaced from
    /// it, then it becomes this member's newest snapshot, and only then does the log forget
    /// what it covers (a crash in between restarts from the snapshot: see
    /// `snapshotter::reconcile_log`).
    pub(super) async fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let metadata = snapshot.get_metadata();
        let (index, term) = (metadata.index, metadata.term);
        // A snapshot of this member's own being written would describe the old state.
        while self.replica.borrow_mut().snapshots().in_progress() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let dir = &self.config.snapshot_dir;
        let path = dir.join(crate::snapshotter::received_file_name(index));
        let meta = crate::snapshotter::load(&path, self.sequencer.router()).await?;
        if (meta.applied_index, meta.applied_term) != (index, term) {
            return Err(ServerError::Internal(format!(
                "{} holds index {} term {}, Raft installs index {index} term {term}",
                path.display(),
                meta.applied_index,
                meta.applied_term
            )));
        }
        let size = crate::snapshotter::keep_received(dir, index).await?;
        self.wal
            .reset_to_snapshot(index, term)
            .await
            .map_err(|e| ServerError::Internal(format!("log: {e}")))?;
        self.sequencer.restore(
            Revision::new(meta.revision),
            Revision::new(meta.compact_revision),
        );
        self.sequencer.restore_leases(&meta.leases);
        self.sequencer.restore_auth(&meta.auth);
        *self.alarms.borrow_mut() = Alarms::from_members(meta.alarms.iter().cloned());
        let members_changed = meta.members.is_some();
        self.replica
            .borrow_mut()
            .snapshot_installed(metadata, size, meta.members.clone());
        if members_changed {
            self.connect_peers();
        }
        crate::shard::release_waiters(&self.applied_waiters, LogIndex::new(index));
        tracing::info!(
            index,
            term,
            revision = meta.revision,
            bytes = size,
            elapsed = ?started.elapsed(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }
}
