//! This member's consensus metrics, under etcd's names where they mean what etcd's do.

use super::driver::Consensus;
use crate::replica::stages::StageSummary;
use crate::wal::io::LogDir;

impl<D: LogDir + 'static> Consensus<D> {
    /// Where this member's commits spent their time, stage by stage.
    pub fn commit_stages(&self) -> Vec<StageSummary> {
        self.replica.borrow().stages_view().summaries()
    }

    /// Adds this member's consensus metrics to a `/metrics` exposition.
    pub fn expose(&self, out: &mut crate::metrics::Exposition) {
        let leader = self.leader();
        let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
        out.gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            &[],
            flag(!leader.is_none()),
        );
        out.gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            &[],
            flag(leader == self.config.member_id),
        );
        out.gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            &[],
            flag(self.is_learner()),
        );
        out.gauge(
            "lode_log_disk_full",
            "1 while this member's log disk has no space for its appends (it serves reads and \
             refuses writes), 0 otherwise.",
            &[],
            flag(self.log_disk_full()),
        );
        out.counter(
            "lode_peer_messages_rejected_total",
            "Raft messages from the peer port dropped before Raft saw them (not from a member, \
             or not what a correct member sends).",
            &[],
            self.replica.borrow().peer_messages_rejected(),
        );
        out.counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            &[],
            self.replica.borrow().leader_changes_seen(),
        );
        out.gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            &[],
            self.replica.borrow().committed().get() as f64,
        );
        out.gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            &[],
            self.applied_index().get() as f64,
        );
        out.gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            &[],
            self.waiters.borrow().writes.len() as f64,
        );
        out.counter(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            &[],
            self.proposals_failed.get(),
        );
        let size = self.keyspace_size() as f64;
        out.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            &[],
            size,
        );
        out.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            &[],
            size,
        );
        if let Some(quota) = self.config.quota_bytes {
            out.gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
                &[],
                quota as f64,
            );
        }
        out.gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            &[],
            self.revision().get() as f64,
        );
        out.gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            &[("server_id", &format!("{:x}", self.config.member_id))],
            1.0,
        );
        self.replica.borrow().stages_view().expose(out);
        self.replica.borrow().peer_health().expose(out);
        if let Some(transport) = &self.transport {
            transport.expose(out);
        }
    }
}
