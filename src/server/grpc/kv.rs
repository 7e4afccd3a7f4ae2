//! etcd's `etcdserverpb.KV` service: range, put, delete, txn and compaction, each proposed or
//! read as the native protocol's.

use std::rc::Rc;

use lode_protocol::etcd::etcdserverpb as pb;
use tonic::Status;

use super::{call_meta, mismatched, on_core};
use crate::api::etcd;
use crate::api::native::Request;
use crate::consensus::ServerError;
use crate::mvcc::request::{WriteRequest, WriteResponse};
use crate::server::admission::{self, CallMeta};
use crate::server::node::Node;
use crate::server::Limits;

/// Proposes `write` as the native protocol would: checked, encoded as a request frame (the
/// log's entry format), refused if larger than `--max-request-bytes`.
async fn write(
    node: Rc<Node>,
    limits: Limits,
    write: WriteRequest,
    meta: CallMeta,
) -> Result<WriteResponse, ServerError> {
    let mut response = admission::write(&node, limits, &meta, write, None).await?;
    let header = match &mut response {
        WriteResponse::Put(r) => &mut r.header,
        WriteResponse::DeleteRange(r) => &mut r.header,
        WriteResponse::Txn(r) => &mut r.header,
        WriteResponse::Compact(r) => &mut r.header,
        WriteResponse::Lease(r) => &mut r.header,
    };
    crate::server::stamp_header(header, &node);
    Ok(response)
}

/// etcd's `etcdserverpb.KV` service.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvService;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: tonic::Request<pb::RangeRequest>,
    ) -> Result<tonic::Response<pb::RangeResponse>, Status> {
        let meta = call_meta(&request);
        let range = etcd::range_request(request.into_inner());
        on_core(move |node, limits| async move {
            let request = Request::Range(range.clone());
            admission::admit(&node, limits, &meta, &request, None).await?;
            let mut response = node.range_as(&meta.credentials, &range).await?;
            crate::server::stamp_header(&mut response.header, &node);
            Ok(etcd::range_response(response))
        })
        .await
        .map(tonic::Response::new)
    }

    async fn put(
        &self,
        request: tonic::Request<pb::PutRequest>,
    ) -> Result<tonic::Response<pb::PutResponse>, Status> {
        let meta = call_meta(&request);
        let put = WriteRequest::Put(etcd::put_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, put, meta).await? {
                WriteResponse::Put(response) => Ok(etcd::put_response(response)),
                _ => Err(mismatched("put")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn delete_range(
        &self,
        request: tonic::Request<pb::DeleteRangeRequest>,
    ) -> Result<tonic::Response<pb::DeleteRangeResponse>, Status> {
        let meta = call_meta(&request);
        let delete = WriteRequest::DeleteRange(etcd::delete_range_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, delete, meta).await? {
                WriteResponse::DeleteRange(response) => Ok(etcd::delete_range_response(response)),
                _ => Err(mismatched("delete")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn txn(
        &self,
        request: tonic::Request<pb::TxnRequest>,
    ) -> Result<tonic::Response<pb::TxnResponse>, Status> {
        let meta = call_meta(&request);
        let txn = WriteRequest::Txn(etcd::txn_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, txn, meta).await? {
                WriteResponse::Txn(response) => Ok(etcd::txn_response(response)),
                _ => Err(mismatched("txn")),
            }
        })
        .await
        .map(tonic::Response::new)
    }

    async fn compact(
        &self,
        request: tonic::Request<pb::CompactionRequest>,
    ) -> Result<tonic::Response<pb::CompactionResponse>, Status> {
        let meta = call_meta(&request);
        let compaction = WriteRequest::Compact(etcd::compaction_request(request.into_inner()));
        on_core(move |node, limits| async move {
            match write(node, limits, compaction, meta).await? {
                WriteResponse::Compact(response) => Ok(etcd::compaction_response(response)),
                _ => Err(mismatched("compaction")),
            }
        })
        .await
        .map(tonic::Response::new)
    }
}
