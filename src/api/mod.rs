//! lode's front ends: the native flatbuffers protocol ([`native`]) and etcd's v3 protobuf
//! messages ([`etcd`]). Both decode into the internal model of [`crate::mvcc::request`] at the
//! edge.

pub mod etcd;
pub mod native;
