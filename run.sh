#!/usr/bin/env bash
# Builds lode and runs its main job on this machine: today, initialize (or recover) the default
# data directory and measure the durable log against this disk's fdatasync floor.
# The single-node server replaces the benchmark here as soon as it exists.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace
./target/release/lode --data-dir default.lode
./target/release/lode-bench log --dir . "$@"
