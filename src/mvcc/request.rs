//! lode's internal model of etcd's KV requests and responses (`etcdserverpb` Range, Put,
//! DeleteRange, Txn, Compaction). Both front ends (etcd gRPC, native flatbuffers) decode into
//! these types at the edge; everything inside works on them. Field meanings and defaults are
//! etcd's; enums keep unknown wire values so validation can answer as etcd does.

use bytes::Bytes;

use super::kv::KeyValue;

/// etcd's `ResponseHeader`. The store decides `revision`; the server fills the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// ID of the cluster.
    pub cluster_id: u64,
    /// ID of the member that answered.
    pub member_id: u64,
    /// For writes, the revision the write produced (or the current one if it changed
    /// nothing); for reads, the current revision.
    pub revision: i64,
    /// Raft term when the request was answered.
    pub raft_term: u64,
}

impl ResponseHeader {
    /// A header with only the revision set.
    pub fn at(revision: i64) -> ResponseHeader {
        ResponseHeader {
            revision,
            ..ResponseHeader::default()
        }
    }
}

/// `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Wire value 0.
    #[default]
    None,
    /// Wire value 1.
    Ascend,
    /// Wire value 2.
    Descend,
    /// Any other wire value (rejected with "invalid sort option").
    Unknown(i32),
}

impl SortOrder {
    /// From the wire value.
    pub fn from_i32(value: i32) -> SortOrder {
        match value {
            0 => SortOrder::None,
            1 => SortOrder::Ascend,
            2 => SortOrder::Descend,
            other => SortOrder::Unknown(other),
        }
    }
}

/// `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// Wire value 0.
    #[default]
    Key,
    /// Wire value 1.
    Version,
    /// Wire value 2.
    Create,
    /// Wire value 3.
    Mod,
    /// Wire value 4.
    Value,
    /// Any other wire value (rejected with "invalid sort option").
    Unknown(i32),
}

impl SortTarget {
    /// From the wire value.
    pub fn from_i32(value: i32) -> SortTarget {
        match value {
            0 => SortTarget::Key,
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            other => SortTarget::Unknown(other),
        }
    }
}

/// etcd's `RangeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key (required).
    pub key: Bytes,
    /// Empty: only `key`; `"\0"`: every key >= `key`; otherwise `[key, range_end)`.
    pub range_end: Bytes,
    /// At most this many keys; 0 means no limit.
    pub limit: i64,
    /// Read at this revision; <= 0 means the current one.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Serve from local state without a quorum round.
    pub serializable: bool,
    /// Omit values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filters (0 = off), applied after the read.
    pub min_mod_revision: i64,
    /// See `min_mod_revision`.
    pub max_mod_revision: i64,
    /// See `min_mod_revision`.
    pub min_create_revision: i64,
    /// See `min_mod_revision`.
    pub max_create_revision: i64,
}

/// etcd's `RangeResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The keys returned.
    pub kvs: Vec<KeyValue>,
    /// True when keys were left out because of `limit`.
    pub more: bool,
    /// Keys in the range at that revision, ignoring limit and filters.
    pub count: i64,
}

/// etcd's `PutRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous pair.
    pub prev_kv: bool,
    /// Keep the current value.
    pub ignore_value: bool,
    /// Keep the current lease.
    pub ignore_lease: bool,
}

/// etcd's `PutResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The pair before the put, when asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `DeleteRangeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key (required).
    pub key: Bytes,
    /// As in [`RangeRequest::range_end`].
    pub range_end: Bytes,
    /// Return the deleted pairs.
    pub prev_kv: bool,
}

/// etcd's `DeleteRangeResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Header.
    pub header: ResponseHeader,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted pairs, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// `Compare.CompareResult`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareResult {
    /// Wire value 0.
    #[default]
    Equal,
    /// Wire value 1.
    Greater,
    /// Wire value 2.
    Less,
    /// Wire value 3.
    NotEqual,
    /// Any other wire value: etcd treats the compare as true.
    Unknown(i32),
}

impl CompareResult {
    /// From the wire value.
    pub fn from_i32(value: i32) -> CompareResult {
        match value {
            0 => CompareResult::Equal,
            1 => CompareResult::Greater,
            2 => CompareResult::Less,
            3 => CompareResult::NotEqual,
            other => CompareResult::Unknown(other),
        }
    }
}

/// `Compare.CompareTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompareTarget {
    /// Wire value 0.
    #[default]
    Version,
    /// Wire value 1.
    Create,
    /// Wire value 2.
    Mod,
    /// Wire value 3.
    Value,
    /// Wire value 4.
    Lease,
    /// Any other wire value: etcd compares as equal.
    Unknown(i32),
}

impl CompareTarget {
    /// From the wire value.
    pub fn from_i32(value: i32) -> CompareTarget {
        match value {
            0 => CompareTarget::Version,
            1 => CompareTarget::Create,
            2 => CompareTarget::Mod,
            3 => CompareTarget::Value,
            4 => CompareTarget::Lease,
            other => CompareTarget::Unknown(other),
        }
    }
}

/// `Compare.target_union`: which operand was sent. A target whose operand is missing compares
/// against zero (or the empty value), as in etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CompareOperand {
    /// Nothing set.
    #[default]
    None,
    /// `version`.
    Version(i64),
    /// `create_revision`.
    Create(i64),
    /// `mod_revision`.
    Mod(i64),
    /// `value`.
    Value(Bytes),
    /// `lease`.
    Lease(i64),
}

/// etcd's `Compare`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compare {
    /// The relation.
    pub result: CompareResult,
    /// What is compared.
    pub target: CompareTarget,
    /// The key (required).
    pub key: Bytes,
    /// Compare every key in the range (as in [`RangeRequest::range_end`]).
    pub range_end: Bytes,
    /// The operand.
    pub operand: CompareOperand,
}

/// etcd's `RequestOp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
    /// An op with nothing set (rejected with "key not found").
    Empty,
}

/// etcd's `ResponseOp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// For a range.
    Range(RangeResponse),
    /// For a put.
    Put(PutResponse),
    /// For a delete.
    DeleteRange(DeleteRangeResponse),
    /// For a nested txn.
    Txn(TxnResponse),
}

/// etcd's `TxnRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// All must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    pub failure: Vec<RequestOp>,
}

/// etcd's `TxnResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Header (revision 0 on nested txns, as in etcd).
    pub header: ResponseHeader,
    /// Whether the compares held.
    pub succeeded: bool,
    /// One per op of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// etcd's `CompactionRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    /// Drop history below this revision.
    pub revision: i64,
    /// Answer only once the compaction is physically done.
    pub physical: bool,
}

/// etcd's `CompactionResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    /// Header: the current revision.
    pub header: ResponseHeader,
}

/// A request that goes through the log (everything but reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRequest {
    /// Put.
    Put(PutRequest),
    /// DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// Txn (may turn out read-only).
    Txn(TxnRequest),
    /// Compaction.
    Compact(CompactionRequest),
    /// A lease change (etcd's LeaseGrant and LeaseRevoke, and lode's renewal batches and
    /// expiries).
    Lease(crate::lease::LeaseRequest),
}

/// The response to a [`WriteRequest::Lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseResponse {
    /// Header: the revision after the change (a revocation that deleted keys makes one).
    pub header: ResponseHeader,
    /// What it did.
    pub outcome: crate::lease::LeaseOutcome,
}

/// The response to a [`WriteRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResponse {
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Txn.
    Txn(TxnResponse),
    /// Compaction.
    Compact(CompactionResponse),
    /// A lease change.
    Lease(LeaseResponse),
}
