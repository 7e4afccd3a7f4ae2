#!/usr/bin/env bash
# Sets up and runs every check lode has: formatting, clippy with warnings as errors, and all
# tests (unit, property, crash-simulation, real-disk and real-process tests).
# Needs only a Rust toolchain with rustfmt and clippy; it installs anything else it needs
# (Debian packages with apt-get, as root).
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests need, installed when missing: etcd's own etcdctl (etcd-client), which
# the tests drive lode with; openssl, which makes the TLS tests' certificates; protoc and its well-known types, for the build of the Rust
# etcd-client crate the gRPC tests use (lode itself compiles its protos in Rust and needs
# neither); prometheus for promtool, which checks the shipped alert rules and dashboard queries;
# chromium and its driver, which open the built-in dashboard in a real browser.
packages=(etcd-client etcd-server protobuf-compiler libprotobuf-dev openssl prometheus chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
