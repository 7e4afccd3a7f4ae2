//! lode-bench: lode's benchmarks. Each compares lode with a baseline measured in the same run
//! and reports medians and tails from HDR histograms, as a table and as JSON lines.

mod etcd;
mod fuzz;
mod kv;
mod log;
mod mesh;
mod null_grpc;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lode-bench", about = "lode's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The durable log: raw O_DIRECT write+fdatasync floor vs lode's log with 1, 16, 64 and 256
    /// concurrent appenders.
    Log(log::LogArgs),
    /// A lode server over the native protocol: put, get (serializable and linearizable) and
    /// txn compare-and-swap at 1, 16, 64 and 256 clients, with the disk's fdatasync floor and
    /// the loopback round trip measured in the same run.
    Kv(kv::KvArgs),
    /// lode against a real etcd on this machine, both through etcd's gRPC API, in one run: put,
    /// get and txn compare-and-swap at 1, 16, 64 and 256 clients, with server CPU per operation
    /// and the lode/etcd ratios.
    Etcd(etcd::EtcdArgs),
    /// A message to another core and back: glommio shared channels (lode's mesh) against
    /// polled crossbeam channels, one and many in flight.
    Mesh(mesh::MeshArgs),
    /// Fuzzes one decoder of untrusted bytes (or `all`) for --seconds: inputs taken, panics,
    /// hangs; a failing input is saved for replay.
    Fuzz(fuzz::FuzzArgs),
    /// A gRPC server with etcd's KV service that does nothing: the floor `lode-bench etcd`
    /// compares lode's gRPC path with (it starts one itself).
    NullGrpc(null_grpc::NullGrpcArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Log(args) => log::run(args),
        Command::Kv(args) => kv::run(args),
        Command::Etcd(args) => etcd::run(args),
        Command::Mesh(args) => mesh::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::NullGrpc(args) => null_grpc::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lode-bench: {error}");
            ExitCode::from(1)
        }
    }
}
