//! gRPC's standard health service (`grpc.health.v1.Health`), as etcd serves it.

use lode_protocol::etcd::health;
use tonic::Status;

use super::{call_meta, on_core};
use crate::server::admission::{self, Call};
use crate::server::node::Node;

/// gRPC's standard health service: SERVING while this member knows a leader (it can take
/// writes and linearizable reads), NOT_SERVING otherwise; any named service is unknown, as in
/// etcd, which registers only the server-wide "". Its calls pass etcd's interceptors as every
/// other (`admission::admit_call`): a learner refuses them, and `hasleader` without a leader
/// is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthService;

type HealthStream = futures::channel::mpsc::Receiver<Result<health::HealthCheckResponse, Status>>;

/// How often a Watch looks for a change of status.
const HEALTH_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

async fn serving_status(node: &Node) -> health::health_check_response::ServingStatus {
    use health::health_check_response::ServingStatus;
    match node.status().await {
        Ok(status) if status.leader != 0 => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    }
}

fn known_service(request: &health::HealthCheckRequest) -> Result<(), Status> {
    if request.service.is_empty() {
        Ok(())
    } else {
        Err(Status::not_found("unknown service"))
    }
}

#[tonic::async_trait]
impl health::health_server::Health for HealthService {
    async fn check(
        &self,
        request: tonic::Request<health::HealthCheckRequest>,
    ) -> Result<tonic::Response<health::HealthCheckResponse>, Status> {
        let meta = call_meta(&request);
        known_service(request.get_ref())?;
        on_core(move |node, _| async move {
            admission::admit_call(&node, &meta, Call::HealthCheck)?;
            Ok(health::HealthCheckResponse {
                status: serving_status(&node).await as i32,
            })
        })
        .await
        .map(tonic::Response::new)
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        request: tonic::Request<health::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        let meta = call_meta(&request);
        known_service(request.get_ref())?;
        let (mut sender, receiver) = futures::channel::mpsc::channel(1);
        on_core(move |node, _| async move {
            admission::admit_call(&node, &meta, Call::HealthWatch)?;
            glommio::spawn_local(async move {
                use futures::SinkExt;
                let mut last = None;
                loop {
                    let status = serving_status(&node).await;
                    if last != Some(status) {
                        last = Some(status);
                        let response = health::HealthCheckResponse {
                            status: status as i32,
                        };
                        if sender.send(Ok(response)).await.is_err() {
                            break;
                        }
                    } else if sender.is_closed() {
                        break;
                    }
                    glommio::timer::sleep(HEALTH_WATCH_INTERVAL).await;
                }
            })
            .detach();
            Ok(())
        })
        .await?;
        Ok(tonic::Response::new(receiver))
    }
}
