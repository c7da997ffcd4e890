#!/usr/bin/env bash
# Runs every test of the workspace against the real peers: installs them into a cache first
# (scripts/install-peers.sh), then `cargo test`. Tests that need a peer fail, not skip, here.
#
#   usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/install-peers.sh | tail -n 1)
export AXI_PEERS_BIN="$bin"
export AXI_REQUIRE_PEERS=1
# Upstream conformance data (Prometheus/Alertmanager test files), read in place, never copied.
# Tests that use it print a notice and skip when it is not found.
if [[ -z ${AXI_CONFORMANCE_DIR:-} ]]; then
  for dir in ../shared/conformance /work/shared/conformance; do
    if [[ -d $dir ]]; then
      export AXI_CONFORMANCE_DIR=$(cd "$dir" && pwd)
      break
    fi
  done
fi
cargo test --workspace "$@"
# Export and shutdown once more pinned to a single CPU: the known exporter deadlocks of
# current-thread runtimes and 1-vCPU machines must not exist here.
if command -v taskset >/dev/null; then
  taskset -c 0 cargo test --workspace --test otlp_export --test closed_port "$@"
fi
