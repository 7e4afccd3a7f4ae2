//! Errors of etcd's KV API, with etcd's exact messages: clients match them byte for byte
//! (clientv3 maps the strings back to typed errors).

/// The gRPC status code an error maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Bad request.
    InvalidArgument,
    /// A revision outside the stored history.
    OutOfRange,
    /// Something named does not exist.
    NotFound,
    /// A quota or rate limit.
    ResourceExhausted,
    /// The state does not allow it (a lease ID in use).
    FailedPrecondition,
}

/// An error answered to a KV request. `Display` is etcd's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// An empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a missing key, or an empty request op.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A value together with `ignore_value`.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A lease together with `ignore_lease`.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More compares or ops than `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The same key written twice in one txn.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// An unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A revision below the compaction point.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A revision above the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A request larger than `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The backend quota is exhausted.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A grant of a lease ID in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant with a TTL above the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
}

impl From<crate::lease::LeaseError> for KvError {
    fn from(error: crate::lease::LeaseError) -> KvError {
        match error {
            crate::lease::LeaseError::NotFound => KvError::LeaseNotFound,
            crate::lease::LeaseError::AlreadyExists => KvError::LeaseExists,
            crate::lease::LeaseError::TtlTooLarge => KvError::LeaseTtlTooLarge,
        }
    }
}

impl KvError {
    /// The gRPC status code etcd answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => {
                ErrorCode::OutOfRange
            }
            KvError::LeaseNotFound => ErrorCode::NotFound,
            KvError::LeaseExists => ErrorCode::FailedPrecondition,
            KvError::NoSpace => ErrorCode::ResourceExhausted,
            _ => ErrorCode::InvalidArgument,
        }
    }
}
