//! `lode-bench null-grpc`: a gRPC server that serves etcd's KV service and does nothing (every
//! call answered at once with an empty response), on one Tokio thread with tonic's own server.
//! `lode-bench etcd` runs it on the servers' CPUs and drives it like lode and etcd: the distance
//! from its latencies to lode's is what lode's gRPC path and lode itself add to the cost of
//! gRPC, HTTP/2 and the load generator.

use clap::Args;
use lode_protocol::etcd::etcdserverpb as pb;
use pb::kv_server::{Kv, KvServer};
use tonic::{Request, Response, Status};

#[derive(Args)]
pub struct NullGrpcArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: std::net::SocketAddr,
}

struct NullKv;

#[tonic::async_trait]
impl Kv for NullKv {
    async fn range(
        &self,
        _request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(pb::RangeResponse::default()))
    }

    async fn put(
        &self,
        _request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        Ok(Response::new(pb::PutResponse::default()))
    }

    async fn delete_range(
        &self,
        _request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Ok(Response::new(pb::DeleteRangeResponse::default()))
    }

    async fn txn(
        &self,
        _request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        Ok(Response::new(pb::TxnResponse {
            succeeded: true,
            ..Default::default()
        }))
    }

    async fn compact(
        &self,
        _request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Ok(Response::new(pb::CompactionResponse::default()))
    }
}

pub fn run(args: NullGrpcArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(KvServer::new(NullKv))
            .serve(args.listen)
            .await
            .map_err(|e| format!("serving on {}: {e}", args.listen))
    })
}
