//! lode's native wire protocol: the flatbuffers schema (`schema/lode.fbs`), the code flatc
//! generated from it (`src/generated/`, regenerate with `generate.sh`) and the framing.
//!
//! Everything read from a peer is untrusted: frames are bounded in size and checked for the
//! protocol version before their flatbuffer is verified (`flatbuffers::root`), and nothing is
//! read from a buffer that failed verification.

#[allow(
    clippy::all,
    clippy::pedantic,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes,
    non_camel_case_types,
    non_snake_case,
    missing_docs
)]
#[rustfmt::skip]
mod generated {
    include!("generated/lode_generated.rs");
}

pub mod frame;

/// The generated flatbuffers types (`lode.protocol` namespace).
pub use generated::lode::protocol as fb;

/// etcd's v3 API as protobuf types and tonic services (`etcd/*.proto`, generated at build
/// time): the wire format etcdctl and etcd's client libraries speak.
pub mod etcd {
    /// `mvccpb`: stored key-value versions and watch events.
    pub mod mvccpb {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("mvccpb");
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    /// `authpb`: users' permissions.
    pub mod authpb {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("authpb");
        include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
    }
    /// `etcdserverpb`: requests, responses and services.
    pub mod etcdserverpb {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("etcdserverpb");
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
    /// `v3lockpb`: the server-side lock service.
    pub mod v3lockpb {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("v3lockpb");
        include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
    }
    /// `v3electionpb`: the server-side election service.
    pub mod v3electionpb {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("v3electionpb");
        include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
    }
    /// `grpc.health.v1`: gRPC's standard health service.
    pub mod health {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("grpc.health.v1");
    }
}
