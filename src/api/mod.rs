//! lode's front ends: the native flatbuffers protocol ([`native`]) and etcd's v3 protobuf
//! messages ([`etcd`]). Both decode into the request envelope ([`request`], over the KV model
//! of [`crate::mvcc::request`]) at the edge; [`error`] is what any request can end with.

pub mod error;
pub mod etcd;
pub mod native;
pub mod request;
