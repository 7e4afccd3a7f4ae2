//! Generates the Rust types and tonic services for etcd's v3 API from `etcd/*.proto`, with
//! protox (a protobuf compiler in Rust), so building lode needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "etcd/kv.proto",
        "etcd/auth.proto",
        "etcd/rpc.proto",
        "etcd/health.proto",
        "etcd/v3lock.proto",
        "etcd/v3election.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["etcd"])?;
    let encoded = prost::Message::encode_to_vec(&descriptors);
    tonic_prost_build::configure()
        // `bytes` fields as `bytes::Bytes`: keys and values pass to the store without copies.
        .bytes(".")
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    // proto3's JSON mapping with etcd's field names, for the JSON gateway: int64 as strings,
    // bytes as base64, enums by name (numbers accepted too), unknown fields refused.
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}
