//! etcd's v3 protobuf messages to and from lode's request model ([`crate::mvcc::request`]).
//!
//! Pure translation at the edge, field for field: enums keep unknown wire values (validation
//! answers them as etcd does), `bytes` fields stay `Bytes` (no copies), and a header's member
//! and cluster IDs are whatever the server filled in.

use lode_protocol::etcd::etcdserverpb as pb;
use lode_protocol::etcd::mvccpb;

use crate::mvcc::kv::KeyValue;
use crate::mvcc::request::*;

/// A stored version as etcd's `mvccpb.KeyValue`.
pub fn key_value(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A response header as etcd's.
pub fn header(header: ResponseHeader) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: header.cluster_id,
        member_id: header.member_id,
        revision: header.revision,
        raft_term: header.raft_term,
    }
}

/// etcd's `RangeRequest`.
pub fn range_request(request: pb::RangeRequest) -> RangeRequest {
    RangeRequest {
        key: request.key,
        range_end: request.range_end,
        limit: request.limit,
        revision: request.revision,
        sort_order: SortOrder::from_i32(request.sort_order),
        sort_target: SortTarget::from_i32(request.sort_target),
        serializable: request.serializable,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

/// etcd's `PutRequest`.
pub fn put_request(request: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

/// etcd's `DeleteRangeRequest`.
pub fn delete_range_request(request: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

/// etcd's `Compare`.
pub fn compare(compare: pb::Compare) -> Compare {
    use pb::compare::TargetUnion;
    Compare {
        result: CompareResult::from_i32(compare.result),
        target: CompareTarget::from_i32(compare.target),
        key: compare.key,
        range_end: compare.range_end,
        operand: match compare.target_union {
            None => CompareOperand::None,
            Some(TargetUnion::Version(v)) => CompareOperand::Version(v),
            Some(TargetUnion::CreateRevision(v)) => CompareOperand::Create(v),
            Some(TargetUnion::ModRevision(v)) => CompareOperand::Mod(v),
            Some(TargetUnion::Value(v)) => CompareOperand::Value(v),
            Some(TargetUnion::Lease(v)) => CompareOperand::Lease(v),
        },
    }
}

/// etcd's `RequestOp`.
pub fn request_op(op: pb::RequestOp) -> RequestOp {
    use pb::request_op::Request;
    match op.request {
        None => RequestOp::Empty,
        Some(Request::RequestRange(r)) => RequestOp::Range(range_request(r)),
        Some(Request::RequestPut(r)) => RequestOp::Put(put_request(r)),
        Some(Request::RequestDeleteRange(r)) => RequestOp::DeleteRange(delete_range_request(r)),
        Some(Request::RequestTxn(r)) => RequestOp::Txn(txn_request(r)),
    }
}

/// etcd's `TxnRequest`.
pub fn txn_request(request: pb::TxnRequest) -> TxnRequest {
    TxnRequest {
        compare: request.compare.into_iter().map(compare).collect(),
        success: request.success.into_iter().map(request_op).collect(),
        failure: request.failure.into_iter().map(request_op).collect(),
    }
}

/// etcd's `CompactionRequest`.
pub fn compaction_request(request: pb::CompactionRequest) -> CompactionRequest {
    CompactionRequest {
        revision: request.revision,
        physical: request.physical,
    }
}

/// A range's answer as etcd's.
pub fn range_response(response: RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header(response.header)),
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

/// A put's answer as etcd's.
pub fn put_response(response: PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(header(response.header)),
        prev_kv: response.prev_kv.map(key_value),
    }
}

/// A delete's answer as etcd's.
pub fn delete_range_response(response: DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header(response.header)),
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// A txn's answer as etcd's.
pub fn txn_response(response: TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response;
    pb::TxnResponse {
        header: Some(header(response.header)),
        succeeded: response.succeeded,
        responses: response
            .responses
            .into_iter()
            .map(|op| pb::ResponseOp {
                response: Some(match op {
                    ResponseOp::Range(r) => Response::ResponseRange(range_response(r)),
                    ResponseOp::Put(r) => Response::ResponsePut(put_response(r)),
                    ResponseOp::DeleteRange(r) => {
                        Response::ResponseDeleteRange(delete_range_response(r))
                    }
                    ResponseOp::Txn(r) => Response::ResponseTxn(txn_response(r)),
                }),
            })
            .collect(),
    }
}

/// A compaction's answer as etcd's.
pub fn compaction_response(response: CompactionResponse) -> pb::CompactionResponse {
    pb::CompactionResponse {
        header: Some(header(response.header)),
    }
}

/// etcd's `WatchCreateRequest` (filter values other than NOPUT and NODELETE are ignored).
pub fn watch_create(request: pb::WatchCreateRequest) -> crate::watch::stream::CreateWatch {
    use pb::watch_create_request::FilterType;
    let has = |filter: FilterType| request.filters.contains(&(filter as i32));
    crate::watch::stream::CreateWatch {
        no_put: has(FilterType::Noput),
        no_delete: has(FilterType::Nodelete),
        key: request.key,
        range_end: request.range_end,
        start_revision: request.start_revision,
        progress_notify: request.progress_notify,
        prev_kv: request.prev_kv,
        watch_id: request.watch_id,
        fragment: request.fragment,
        // gRPC asks for this with the call's `hasleader` metadata instead.
        require_leader: false,
    }
}

/// A watch event as etcd's `mvccpb.Event`.
pub fn event(event: crate::watch::Event) -> mvccpb::Event {
    use crate::watch::EventKind;
    mvccpb::Event {
        r#type: match event.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(key_value(event.kv)),
        prev_kv: event.prev_kv.map(key_value),
    }
}

/// A watch stream's response as etcd's `WatchResponse`, under `header` (its revision is the
/// response's).
pub fn watch_response(
    response: crate::watch::stream::WatchResponse,
    mut header: ResponseHeader,
) -> pb::WatchResponse {
    header.revision = response.revision;
    pb::WatchResponse {
        header: Some(self::header(header)),
        watch_id: response.watch_id,
        created: response.created,
        canceled: response.canceled,
        compact_revision: response.compact_revision,
        cancel_reason: response.cancel_reason,
        fragment: false,
        events: response.events.into_iter().map(event).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn range_requests_keep_every_field_and_unknown_enums() {
        let wire = pb::RangeRequest {
            key: b("a"),
            range_end: b("z"),
            limit: 5,
            revision: 7,
            sort_order: 2,
            sort_target: 9,
            serializable: true,
            keys_only: true,
            count_only: false,
            min_mod_revision: 1,
            max_mod_revision: 2,
            min_create_revision: 3,
            max_create_revision: 4,
        };
        // Through the wire bytes, as a server receives it.
        let decoded = pb::RangeRequest::decode(wire.encode_to_vec().as_slice()).unwrap();
        let request = range_request(decoded);
        assert_eq!(
            request,
            RangeRequest {
                key: b("a"),
                range_end: b("z"),
                limit: 5,
                revision: 7,
                sort_order: SortOrder::Descend,
                sort_target: SortTarget::Unknown(9),
                serializable: true,
                keys_only: true,
                count_only: false,
                min_mod_revision: 1,
                max_mod_revision: 2,
                min_create_revision: 3,
                max_create_revision: 4,
            }
        );
    }

    #[test]
    fn txns_translate_compares_and_nested_ops() {
        let wire = pb::TxnRequest {
            compare: vec![
                pb::Compare {
                    result: 3,
                    target: 3,
                    key: b("k"),
                    range_end: Bytes::new(),
                    target_union: Some(pb::compare::TargetUnion::Value(b("v"))),
                },
                pb::Compare {
                    result: 7,
                    target: 2,
                    key: b("m"),
                    range_end: b("n"),
                    target_union: None,
                },
            ],
            success: vec![
                pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: b("k"),
                        value: b("w"),
                        prev_kv: true,
                        ..Default::default()
                    })),
                },
                pb::RequestOp { request: None },
            ],
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                    compare: vec![],
                    success: vec![pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestDeleteRange(
                            pb::DeleteRangeRequest {
                                key: b("d"),
                                range_end: b("\0"),
                                prev_kv: false,
                            },
                        )),
                    }],
                    failure: vec![],
                })),
            }],
        };
        let decoded = pb::TxnRequest::decode(wire.encode_to_vec().as_slice()).unwrap();
        let txn = txn_request(decoded);
        assert_eq!(txn.compare[0].result, CompareResult::NotEqual);
        assert_eq!(txn.compare[0].target, CompareTarget::Value);
        assert_eq!(txn.compare[0].operand, CompareOperand::Value(b("v")));
        assert_eq!(txn.compare[1].result, CompareResult::Unknown(7));
        assert_eq!(txn.compare[1].operand, CompareOperand::None);
        assert_eq!(txn.compare[1].range_end, b("n"));
        assert!(matches!(&txn.success[0], RequestOp::Put(p) if p.prev_kv && p.value == b("w")));
        assert_eq!(txn.success[1], RequestOp::Empty);
        let RequestOp::Txn(nested) = &txn.failure[0] else {
            panic!("nested txn expected: {:?}", txn.failure[0]);
        };
        assert!(matches!(&nested.success[0], RequestOp::DeleteRange(d) if d.range_end == b("\0")));
    }

    #[test]
    fn responses_carry_headers_pairs_and_nested_answers() {
        let kv = KeyValue {
            key: b("k"),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b("v"),
            lease: 9,
        };
        let at = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        };
        let response = txn_response(TxnResponse {
            header: at,
            succeeded: true,
            responses: vec![
                ResponseOp::Range(RangeResponse {
                    header: ResponseHeader::at(3),
                    kvs: vec![kv.clone()],
                    more: true,
                    count: 2,
                }),
                ResponseOp::Put(PutResponse {
                    header: ResponseHeader::at(3),
                    prev_kv: Some(kv.clone()),
                }),
                ResponseOp::DeleteRange(DeleteRangeResponse {
                    header: ResponseHeader::at(3),
                    deleted: 1,
                    prev_kvs: vec![kv],
                }),
            ],
        });
        let decoded = pb::TxnResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            decoded.header,
            Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4
            })
        );
        assert!(decoded.succeeded);
        use pb::response_op::Response;
        let Some(Response::ResponseRange(range)) = &decoded.responses[0].response else {
            panic!("{decoded:?}");
        };
        assert_eq!(range.kvs[0].lease, 9);
        assert_eq!(range.kvs[0].mod_revision, 3);
        assert!(range.more);
        assert_eq!(range.count, 2);
        let Some(Response::ResponsePut(put)) = &decoded.responses[1].response else {
            panic!("{decoded:?}");
        };
        assert_eq!(
            put.prev_kv.as_ref().map(|kv| kv.value.clone()),
            Some(b("v"))
        );
        let Some(Response::ResponseDeleteRange(deleted)) = &decoded.responses[2].response else {
            panic!("{decoded:?}");
        };
        assert_eq!(deleted.deleted, 1);
        assert_eq!(deleted.prev_kvs.len(), 1);
    }
}
