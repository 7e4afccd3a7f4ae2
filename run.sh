#!/usr/bin/env bash
# Builds lode and starts a single-node server on the default data dir (./default.lode),
# serving etcd's gRPC API, HTTP and the native protocol on http://localhost:2379 (etcd's client URL). Talk to it with target/release/lodectl
# (e.g. `target/release/lodectl put foo bar`). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace
echo "lode: try 'target/release/lodectl put foo bar' and 'target/release/lodectl get foo' in another shell" >&2
exec ./target/release/lode "$@"
