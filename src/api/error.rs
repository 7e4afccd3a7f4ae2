//! The error every request of every front end can end with: etcd's message as `Display`, and
//! the gRPC code etcd answers it with. Below the front ends and the consensus core alike, so
//! neither imports the other for it.

use crate::members::MemberError;
use crate::mvcc::KvError;

/// Why a request could not be served. `Display` is etcd's message.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An error of the KV API itself.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A membership request refused, or a request a learner does not serve.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// No leader to take the request.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// Not committed (or confirmed) in time: the outcome of a write is unknown (etcd's
    /// ErrTimeout).
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Not committed in time, and the leader changed meanwhile (etcd's
    /// ErrTimeoutDueToLeaderFail): the outcome is unknown.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutLeaderFailed,
    /// Leadership changed while a linearizable read waited for it to be confirmed (etcd's
    /// ErrLeaderChanged); nothing happened, the read can be retried at once.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// Applying lags committing too far, or too many proposals wait (the consensus core's
    /// admission): new proposals are refused until it catches up (etcd's ErrTooManyRequests).
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// A failure of the server itself (storage); the process stops.
    #[error("etcdserver: {0}")]
    Internal(String),
    /// An error of the lock and election services (etcd's message; etcd's handlers answer
    /// them with gRPC code Unknown).
    #[error("{0}")]
    Coordination(&'static str),
    /// A request no client may send (lode's own message, gRPC InvalidArgument).
    #[error("lode: {0}")]
    InvalidRequest(&'static str),
    /// An auth call or check refused (etcd's code and message).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The leader's answer to a request forwarded to it: its gRPC code and etcd's message.
    #[error("{message}")]
    Forwarded {
        /// gRPC status code.
        code: u32,
        /// etcd's message.
        message: String,
    },
}

impl ServerError {
    /// The gRPC status code etcd answers this with.
    pub fn grpc_code(&self) -> u32 {
        match self {
            ServerError::Kv(error) => super::request::grpc_code(error.code()),
            ServerError::Member(error) => error.grpc_code(),
            ServerError::Auth(error) => error.grpc_code(),
            ServerError::NoLeader
            | ServerError::Stopped
            | ServerError::Timeout
            | ServerError::TimeoutLeaderFailed
            | ServerError::LeaderChanged => super::request::GRPC_UNAVAILABLE,
            ServerError::TooManyRequests => super::request::GRPC_RESOURCE_EXHAUSTED,
            ServerError::Internal(_) => super::request::GRPC_INTERNAL,
            ServerError::Forwarded { code, .. } => *code,
            ServerError::InvalidRequest(_) => 3,
            ServerError::Coordination(_) => 2,
        }
    }
}
