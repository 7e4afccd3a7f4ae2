//! The native codec of the KV model the requests and responses carry: key-values, and range,
//! put, delete-range and txn requests (with their compares and ops) and responses.

use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector, WIPOffset};
use lode_protocol::fb;

use super::{bytes_vector, decode_header, encode_header, slice, Builder, DecodeError};
use crate::mvcc::kv::KeyValue;
use crate::mvcc::request::*;

pub(super) fn encode_kv<'a>(b: &mut Builder<'a>, kv: &KeyValue) -> WIPOffset<fb::KeyValue<'a>> {
    let key = bytes_vector(b, &kv.key);
    let value = bytes_vector(b, &kv.value);
    fb::KeyValue::create(
        b,
        &fb::KeyValueArgs {
            key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value,
            lease: kv.lease,
        },
    )
}

fn encode_kvs<'a>(
    b: &mut Builder<'a>,
    kvs: &[KeyValue],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::KeyValue<'a>>>> {
    let offsets: Vec<_> = kvs.iter().map(|kv| encode_kv(b, kv)).collect();
    b.create_vector(&offsets)
}

fn sort_order_value(order: SortOrder) -> i32 {
    match order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
        SortOrder::Unknown(v) => v,
    }
}

fn sort_target_value(target: SortTarget) -> i32 {
    match target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
        SortTarget::Unknown(v) => v,
    }
}

pub(super) fn encode_range<'a>(
    b: &mut Builder<'a>,
    r: &RangeRequest,
) -> WIPOffset<fb::RangeRequest<'a>> {
    let key = bytes_vector(b, &r.key);
    let range_end = bytes_vector(b, &r.range_end);
    fb::RangeRequest::create(
        b,
        &fb::RangeRequestArgs {
            key,
            range_end,
            limit: r.limit,
            revision: r.revision,
            sort_order: fb::SortOrder(sort_order_value(r.sort_order)),
            sort_target: fb::SortTarget(sort_target_value(r.sort_target)),
            serializable: r.serializable,
            keys_only: r.keys_only,
            count_only: r.count_only,
            min_mod_revision: r.min_mod_revision,
            max_mod_revision: r.max_mod_revision,
            min_create_revision: r.min_create_revision,
            max_create_revision: r.max_create_revision,
        },
    )
}

pub(super) fn encode_put<'a>(b: &mut Builder<'a>, p: &PutRequest) -> WIPOffset<fb::PutRequest<'a>> {
    let key = bytes_vector(b, &p.key);
    let value = bytes_vector(b, &p.value);
    fb::PutRequest::create(
        b,
        &fb::PutRequestArgs {
            key,
            value,
            lease: p.lease,
            prev_kv: p.prev_kv,
            ignore_value: p.ignore_value,
            ignore_lease: p.ignore_lease,
        },
    )
}

pub(super) fn encode_delete<'a>(
    b: &mut Builder<'a>,
    d: &DeleteRangeRequest,
) -> WIPOffset<fb::DeleteRangeRequest<'a>> {
    let key = bytes_vector(b, &d.key);
    let range_end = bytes_vector(b, &d.range_end);
    fb::DeleteRangeRequest::create(
        b,
        &fb::DeleteRangeRequestArgs {
            key,
            range_end,
            prev_kv: d.prev_kv,
        },
    )
}

fn encode_compare<'a>(b: &mut Builder<'a>, c: &Compare) -> WIPOffset<fb::Compare<'a>> {
    let key = bytes_vector(b, &c.key);
    let range_end = bytes_vector(b, &c.range_end);
    let (operand, number, value) = match &c.operand {
        CompareOperand::None => (fb::CompareOperand::None, 0, None),
        CompareOperand::Version(n) => (fb::CompareOperand::Version, *n, None),
        CompareOperand::Create(n) => (fb::CompareOperand::Create, *n, None),
        CompareOperand::Mod(n) => (fb::CompareOperand::Mod, *n, None),
        CompareOperand::Lease(n) => (fb::CompareOperand::Lease, *n, None),
        CompareOperand::Value(v) => (fb::CompareOperand::Value, 0, bytes_vector(b, v)),
    };
    let result = match c.result {
        CompareResult::Equal => 0,
        CompareResult::Greater => 1,
        CompareResult::Less => 2,
        CompareResult::NotEqual => 3,
        CompareResult::Unknown(v) => v,
    };
    let target = match c.target {
        CompareTarget::Version => 0,
        CompareTarget::Create => 1,
        CompareTarget::Mod => 2,
        CompareTarget::Value => 3,
        CompareTarget::Lease => 4,
        CompareTarget::Unknown(v) => v,
    };
    fb::Compare::create(
        b,
        &fb::CompareArgs {
            result: fb::CompareResult(result),
            target: fb::CompareTarget(target),
            key,
            range_end,
            operand,
            number,
            value,
        },
    )
}

fn encode_ops<'a>(
    b: &mut Builder<'a>,
    ops: &[RequestOp],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::RequestOp<'a>>>> {
    let offsets: Vec<_> = ops
        .iter()
        .map(|op| {
            let (request_type, request) = match op {
                RequestOp::Range(r) => (
                    fb::Request::RangeRequest,
                    Some(encode_range(b, r).as_union_value()),
                ),
                RequestOp::Put(p) => (
                    fb::Request::PutRequest,
                    Some(encode_put(b, p).as_union_value()),
                ),
                RequestOp::DeleteRange(d) => (
                    fb::Request::DeleteRangeRequest,
                    Some(encode_delete(b, d).as_union_value()),
                ),
                RequestOp::Txn(t) => (
                    fb::Request::TxnRequest,
                    Some(encode_txn(b, t).as_union_value()),
                ),
                RequestOp::Empty => (fb::Request::NONE, None),
            };
            fb::RequestOp::create(
                b,
                &fb::RequestOpArgs {
                    request_type,
                    request,
                },
            )
        })
        .collect();
    b.create_vector(&offsets)
}

pub(super) fn encode_txn<'a>(b: &mut Builder<'a>, t: &TxnRequest) -> WIPOffset<fb::TxnRequest<'a>> {
    let compares: Vec<_> = t.compare.iter().map(|c| encode_compare(b, c)).collect();
    let compare = Some(b.create_vector(&compares));
    let success = Some(encode_ops(b, &t.success));
    let failure = Some(encode_ops(b, &t.failure));
    fb::TxnRequest::create(
        b,
        &fb::TxnRequestArgs {
            compare,
            success,
            failure,
        },
    )
}

pub(super) fn encode_range_response<'a>(
    b: &mut Builder<'a>,
    r: &RangeResponse,
) -> WIPOffset<fb::RangeResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let kvs = Some(encode_kvs(b, &r.kvs));
    fb::RangeResponse::create(
        b,
        &fb::RangeResponseArgs {
            header,
            kvs,
            more: r.more,
            count: r.count,
        },
    )
}

pub(super) fn encode_put_response<'a>(
    b: &mut Builder<'a>,
    r: &PutResponse,
) -> WIPOffset<fb::PutResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let prev_kv = r.prev_kv.as_ref().map(|kv| encode_kv(b, kv));
    fb::PutResponse::create(b, &fb::PutResponseArgs { header, prev_kv })
}

pub(super) fn encode_delete_response<'a>(
    b: &mut Builder<'a>,
    r: &DeleteRangeResponse,
) -> WIPOffset<fb::DeleteRangeResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let prev_kvs = Some(encode_kvs(b, &r.prev_kvs));
    fb::DeleteRangeResponse::create(
        b,
        &fb::DeleteRangeResponseArgs {
            header,
            deleted: r.deleted,
            prev_kvs,
        },
    )
}

pub(super) fn encode_txn_response<'a>(
    b: &mut Builder<'a>,
    r: &TxnResponse,
) -> WIPOffset<fb::TxnResponse<'a>> {
    let header = Some(encode_header(b, &r.header));
    let ops: Vec<_> = r
        .responses
        .iter()
        .map(|op| {
            let (response_type, response) = match op {
                ResponseOp::Range(x) => (
                    fb::Response::RangeResponse,
                    encode_range_response(b, x).as_union_value(),
                ),
                ResponseOp::Put(x) => (
                    fb::Response::PutResponse,
                    encode_put_response(b, x).as_union_value(),
                ),
                ResponseOp::DeleteRange(x) => (
                    fb::Response::DeleteRangeResponse,
                    encode_delete_response(b, x).as_union_value(),
                ),
                ResponseOp::Txn(x) => (
                    fb::Response::TxnResponse,
                    encode_txn_response(b, x).as_union_value(),
                ),
            };
            fb::ResponseOp::create(
                b,
                &fb::ResponseOpArgs {
                    response_type,
                    response: Some(response),
                },
            )
        })
        .collect();
    let responses = Some(b.create_vector(&ops));
    fb::TxnResponse::create(
        b,
        &fb::TxnResponseArgs {
            header,
            succeeded: r.succeeded,
            responses,
        },
    )
}

pub(super) fn decode_kv(frame: &Bytes, kv: fb::KeyValue<'_>) -> KeyValue {
    KeyValue {
        key: slice(frame, kv.key()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        value: slice(frame, kv.value()),
        lease: kv.lease(),
    }
}

fn decode_kvs(
    frame: &Bytes,
    kvs: Option<Vector<'_, ForwardsUOffset<fb::KeyValue<'_>>>>,
) -> Vec<KeyValue> {
    kvs.map(|v| v.iter().map(|kv| decode_kv(frame, kv)).collect())
        .unwrap_or_default()
}

pub(super) fn decode_range(frame: &Bytes, r: fb::RangeRequest<'_>) -> RangeRequest {
    RangeRequest {
        key: slice(frame, r.key()),
        range_end: slice(frame, r.range_end()),
        limit: r.limit(),
        revision: r.revision(),
        sort_order: SortOrder::from_i32(r.sort_order().0),
        sort_target: SortTarget::from_i32(r.sort_target().0),
        serializable: r.serializable(),
        keys_only: r.keys_only(),
        count_only: r.count_only(),
        min_mod_revision: r.min_mod_revision(),
        max_mod_revision: r.max_mod_revision(),
        min_create_revision: r.min_create_revision(),
        max_create_revision: r.max_create_revision(),
    }
}

pub(super) fn decode_put(frame: &Bytes, p: fb::PutRequest<'_>) -> PutRequest {
    PutRequest {
        key: slice(frame, p.key()),
        value: slice(frame, p.value()),
        lease: p.lease(),
        prev_kv: p.prev_kv(),
        ignore_value: p.ignore_value(),
        ignore_lease: p.ignore_lease(),
    }
}

pub(super) fn decode_delete(frame: &Bytes, d: fb::DeleteRangeRequest<'_>) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: slice(frame, d.key()),
        range_end: slice(frame, d.range_end()),
        prev_kv: d.prev_kv(),
    }
}

fn decode_compare(frame: &Bytes, c: fb::Compare<'_>) -> Compare {
    let number = c.number();
    let operand = match c.operand() {
        fb::CompareOperand::Version => CompareOperand::Version(number),
        fb::CompareOperand::Create => CompareOperand::Create(number),
        fb::CompareOperand::Mod => CompareOperand::Mod(number),
        fb::CompareOperand::Lease => CompareOperand::Lease(number),
        fb::CompareOperand::Value => CompareOperand::Value(slice(frame, c.value())),
        _ => CompareOperand::None,
    };
    Compare {
        result: CompareResult::from_i32(c.result().0),
        target: CompareTarget::from_i32(c.target().0),
        key: slice(frame, c.key()),
        range_end: slice(frame, c.range_end()),
        operand,
    }
}

fn decode_ops(
    frame: &Bytes,
    ops: Option<Vector<'_, ForwardsUOffset<fb::RequestOp<'_>>>>,
) -> Vec<RequestOp> {
    let Some(ops) = ops else { return Vec::new() };
    ops.iter()
        .map(|op| {
            if let Some(r) = op.request_as_range_request() {
                RequestOp::Range(decode_range(frame, r))
            } else if let Some(p) = op.request_as_put_request() {
                RequestOp::Put(decode_put(frame, p))
            } else if let Some(d) = op.request_as_delete_range_request() {
                RequestOp::DeleteRange(decode_delete(frame, d))
            } else if let Some(t) = op.request_as_txn_request() {
                RequestOp::Txn(decode_txn(frame, t))
            } else {
                // Nothing set, or a request kind a txn cannot hold: etcd's empty op.
                RequestOp::Empty
            }
        })
        .collect()
}

pub(super) fn decode_txn(frame: &Bytes, t: fb::TxnRequest<'_>) -> TxnRequest {
    TxnRequest {
        compare: t
            .compare()
            .map(|v| v.iter().map(|c| decode_compare(frame, c)).collect())
            .unwrap_or_default(),
        success: decode_ops(frame, t.success()),
        failure: decode_ops(frame, t.failure()),
    }
}

pub(super) fn decode_range_response(frame: &Bytes, r: fb::RangeResponse<'_>) -> RangeResponse {
    RangeResponse {
        header: decode_header(r.header()),
        kvs: decode_kvs(frame, r.kvs()),
        more: r.more(),
        count: r.count(),
    }
}

pub(super) fn decode_put_response(frame: &Bytes, r: fb::PutResponse<'_>) -> PutResponse {
    PutResponse {
        header: decode_header(r.header()),
        prev_kv: r.prev_kv().map(|kv| decode_kv(frame, kv)),
    }
}

pub(super) fn decode_delete_response(
    frame: &Bytes,
    r: fb::DeleteRangeResponse<'_>,
) -> DeleteRangeResponse {
    DeleteRangeResponse {
        header: decode_header(r.header()),
        deleted: r.deleted(),
        prev_kvs: decode_kvs(frame, r.prev_kvs()),
    }
}

pub(super) fn decode_txn_response(
    frame: &Bytes,
    r: fb::TxnResponse<'_>,
) -> Result<TxnResponse, DecodeError> {
    let mut responses = Vec::new();
    for op in r.responses().iter().flatten() {
        responses.push(if let Some(x) = op.response_as_range_response() {
            ResponseOp::Range(decode_range_response(frame, x))
        } else if let Some(x) = op.response_as_put_response() {
            ResponseOp::Put(decode_put_response(frame, x))
        } else if let Some(x) = op.response_as_delete_range_response() {
            ResponseOp::DeleteRange(decode_delete_response(frame, x))
        } else if let Some(x) = op.response_as_txn_response() {
            ResponseOp::Txn(decode_txn_response(frame, x)?)
        } else {
            return Err(DecodeError::Malformed(
                "txn response op without a response".into(),
            ));
        });
    }
    Ok(TxnResponse {
        header: decode_header(r.header()),
        succeeded: r.succeeded(),
        responses,
    })
}
