//! lode's front ends: the native flatbuffers protocol ([`native`]); the etcd v3 gRPC API comes
//! later. Both decode into the internal model of [`crate::mvcc::request`] at the edge.

pub mod native;
