//! etcd's `etcdserverpb.Maintenance` service: alarms, status, defragment (nothing to do),
//! hashes, the Snapshot stream, leadership transfer and downgrade (refused).

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, mismatched, on_core, status, ETCD_API_VERSION};
use crate::alarm::{AlarmAction, AlarmMember, AlarmRequest, AlarmType};
use crate::api::etcd;
use crate::api::native::{self, Request};
use crate::mvcc::request::ResponseHeader;
use crate::server::admission::{admit, admit_call, Call};
use crate::server::node::Node;

/// An alarm as etcd's enum value.
fn alarm_number(alarm: AlarmType) -> i32 {
    alarm.listed() as i32
}

/// etcd's text for an active alarm in `StatusResponse.errors`.
fn alarm_text(alarm: &AlarmMember) -> String {
    let name = match alarm.alarm {
        AlarmType::None => "NONE",
        AlarmType::Nospace | AlarmType::LogDiskFull => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    };
    format!("memberID:{} alarm:{name} ", alarm.member_id)
}

/// A header for answers that carry only who answered and the current revision.
fn plain_header(node: &Node) -> pb::ResponseHeader {
    let mut header = ResponseHeader::at(node.revision());
    crate::server::stamp_header(&mut header, node);
    etcd::header(header)
}

/// etcd's `etcdserverpb.Maintenance` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaintenanceService;

/// The stream answering a Snapshot call: pieces read on the core, sent through a channel.
type SnapshotStream = futures::channel::mpsc::Receiver<Result<pb::SnapshotResponse, Status>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: tonic::Request<pb::AlarmRequest>,
    ) -> Result<tonic::Response<pb::AlarmResponse>, Status> {
        let meta = call_meta(&request);
        let request = request.into_inner();
        let action = AlarmAction::from_number(request.action as u32).ok_or_else(|| {
            Status::invalid_argument(format!("lode: unknown alarm action {}", request.action))
        })?;
        let alarm = AlarmType::from_etcd_number(request.alarm as u32).ok_or_else(|| {
            Status::invalid_argument(format!("lode: unknown alarm type {}", request.alarm))
        })?;
        let request = AlarmRequest {
            action,
            member_id: request.member_id,
            alarm,
        };
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &Request::Alarm(request), None).await?;
            let mut response = node.alarm(request).await?;
            crate::server::stamp_header(&mut response.header, &node);
            Ok(pb::AlarmResponse {
                header: Some(etcd::header(response.header)),
                alarms: response
                    .alarms
                    .iter()
                    .map(|alarm| pb::AlarmMember {
                        member_id: alarm.member_id,
                        alarm: alarm_number(alarm.alarm),
                    })
                    .collect(),
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn status(
        &self,
        request: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, Status> {
        let meta = call_meta(&request);
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &Request::Status, None).await?;
            let mut status = node.status().await?;
            crate::server::stamp_header(&mut status.header, &node);
            let alarms = node
                .alarm(AlarmRequest {
                    action: AlarmAction::Get,
                    member_id: 0,
                    alarm: AlarmType::None,
                })
                .await?;
            Ok(pb::StatusResponse {
                header: Some(etcd::header(status.header)),
                version: ETCD_API_VERSION.to_string(),
                db_size: status.db_size,
                leader: status.leader,
                raft_index: status.raft_index,
                raft_term: status.raft_term,
                raft_applied_index: status.raft_applied_index,
                errors: alarms.alarms.iter().map(alarm_text).collect(),
                db_size_in_use: status.db_size,
                is_learner: status.is_learner,
                // etcd reports its quota; with the quota switched off (negative
                // --quota-backend-bytes) lode has none, reported as 0.
                db_size_quota: node.config.quota_bytes.map_or(0, |quota| quota as i64),
                ..Default::default()
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn defragment(
        &self,
        request: tonic::Request<pb::DefragmentRequest>,
    ) -> Result<tonic::Response<pb::DefragmentResponse>, Status> {
        let meta = call_meta(&request);
        // lode's storage has nothing to defragment: the log's segments are removed whole once
        // compacted and the keyspace lives in memory, so the request succeeds at once.
        on_core(move |node, _| async move {
            admit_call(&node, &meta, Call::Defragment)?;
            Ok(pb::DefragmentResponse {
                header: Some(plain_header(&node)),
            })
        })
        .await
        .map(tonic::Response::new)
    }

    async fn hash(
        &self,
        request: tonic::Request<pb::HashRequest>,
    ) -> Result<tonic::Response<pb::HashResponse>, Status> {
        let meta = call_meta(&request);
        // etcd hashes its whole database file; lode's nearest is the keyspace's HashKV.
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &Request::HashKv(0), None).await?;
            match node.hash_kv(0).await? {
                native::Response::HashKv { hash, .. } => Ok(pb::HashResponse {
                    header: Some(plain_header(&node)),
                    hash,
                }),
                _ => Err(mismatched("hash")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn hash_kv(
        &self,
        request: tonic::Request<pb::HashKvRequest>,
    ) -> Result<tonic::Response<pb::HashKvResponse>, Status> {
        let meta = call_meta(&request);
        let revision = request.into_inner().revision;
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &Request::HashKv(revision), None).await?;
            match node.hash_kv(revision).await? {
                native::Response::HashKv {
                    mut header,
                    hash,
                    compact_revision,
                    hash_revision,
                } => {
                    crate::server::stamp_header(&mut header, &node);
                    Ok(pb::HashKvResponse {
                        header: Some(etcd::header(header)),
                        hash,
                        compact_revision,
                        hash_revision,
                    })
                }
                _ => Err(mismatched("HashKV")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: tonic::Request<pb::SnapshotRequest>,
    ) -> Result<tonic::Response<Self::SnapshotStream>, Status> {
        let meta = call_meta(&request);
        // Room for a few pieces: the reader stays just ahead of the client.
        let (sender, receiver) = futures::channel::mpsc::channel(2);
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &Request::Snapshot, None).await?;
            let (path, revision) = node.snapshot().await?;
            glommio::spawn_local(async move {
                stream_snapshot_file(&node, &path, revision, sender).await;
                let _ = std::fs::remove_file(&path);
            })
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }

    async fn move_leader(
        &self,
        request: tonic::Request<pb::MoveLeaderRequest>,
    ) -> Result<tonic::Response<pb::MoveLeaderResponse>, Status> {
        let meta = call_meta(&request);
        let request = Request::MoveLeader(request.into_inner().target_id);
        on_core(move |node, limits| async move {
            admit(&node, limits, &meta, &request, None).await?;
            match node.cluster_as(request, meta.credentials.token).await? {
                native::Response::MoveLeader { mut header } => {
                    crate::server::stamp_header(&mut header, &node);
                    Ok(pb::MoveLeaderResponse {
                        header: Some(etcd::header(header)),
                    })
                }
                _ => Err(mismatched("MoveLeader")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn downgrade(
        &self,
        request: tonic::Request<pb::DowngradeRequest>,
    ) -> Result<tonic::Response<pb::DowngradeResponse>, Status> {
        let meta = call_meta(&request);
        on_core(move |node, _| async move { admit_call(&node, &meta, Call::Downgrade) }).await?;
        // lode has no older storage versions to go back to.
        Err(Status::invalid_argument(
            "etcdserver: invalid downgrade target version",
        ))
    }
}

/// Sends the export file at `path` as Snapshot pieces, each once the client has taken the one
/// before (the channel holds two), and stops early if the client goes away.
async fn stream_snapshot_file(
    node: &Node,
    path: &std::path::Path,
    revision: i64,
    mut sender: futures::channel::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    use futures::SinkExt;
    let read = async {
        let mut pieces = crate::server::SnapshotPieces::open(path, SNAPSHOT_PIECE_BYTES).await?;
        let mut header = ResponseHeader::at(revision);
        crate::server::stamp_header(&mut header, node);
        while let Some((blob, remaining_bytes)) = pieces.next().await? {
            let response = pb::SnapshotResponse {
                header: Some(etcd::header(header)),
                remaining_bytes,
                blob,
                version: ETCD_API_VERSION.to_string(),
            };
            if sender.send(Ok(response)).await.is_err() {
                // The client went away.
                break;
            }
        }
        pieces.close().await;
        Ok(())
    };
    if let Err(error) = read.await {
        let _ = sender.send(Err(status(error))).await;
    }
}

/// Bytes per Snapshot piece (etcd sends 32 KiB pieces; larger ones cost fewer frames).
const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;
