#!/usr/bin/env bash
# Builds the axi-node-collector binary to install on servers: static (musl), size-optimised
# (the workspace's `dist` profile: fat LTO, one codegen unit, opt-level "s") and with mimalloc
# as its allocator. One file with no shared libraries, the smallest resident set we measured
# (BENCHMARKS.md, "node-collector vs node_exporter"), and no dependence on the host's glibc:
# musl resolves host names itself from /etc/hosts and /etc/resolv.conf.
#
#   usage: scripts/build-node-collector.sh         prints the binary's path on its last line
#
# Needs the Rust target (`rustup target add x86_64-unknown-linux-musl`, added here when rustup
# is present) and a C compiler for musl (ring and mimalloc have C parts): Debian's musl-tools,
# which provides x86_64-linux-musl-gcc. A plain `cargo build --release -p node-collector`
# builds the same collector against the system's glibc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-musl

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null; then
  echo "build-node-collector.sh: x86_64-linux-musl-gcc not found; install musl-tools" \
    "(apt-get install musl-tools)" >&2
  exit 1
fi

cd "$root"
cargo build --profile dist --target "$target" -p node-collector --features mimalloc >&2
echo "${CARGO_TARGET_DIR:-$root/target}/$target/dist/axi-node-collector"
