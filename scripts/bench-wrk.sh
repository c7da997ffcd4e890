#!/usr/bin/env bash
# Throughput of the demo's simplest route with and without axi-obs's layer, same run, with wrk
# on loopback. The server is pinned to CPU 0 and wrk to CPU 1 (2-core machines); each variant
# runs ROUNDS times, alternating, and the best and median requests/s are printed.
#
#   usage: scripts/bench-wrk.sh [SECONDS] [ROUNDS]    needs wrk (apt-get install -y wrk)
#
# The same route behind each peer's layer, side by side: the http_load bench
# (cargo bench -p axi-obs-benches --bench http_load).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
command -v wrk >/dev/null || { echo "bench-wrk: wrk is needed (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release -p demo-service >&2
bin=${CARGO_TARGET_DIR:-target}/release/demo-service
port=18181
run() { # $1 = label, $2.. = extra demo args
  local label=$1; shift
  AXI_LOG_FORMAT=json taskset -c 0 "$bin" --listen 127.0.0.1:$port "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c32 -d2s "http://127.0.0.1:$port/api/products" >/dev/null  # warm-up
  local rps
  rps=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$port/api/products" | awk '/Requests\/sec/ {print $2}')
  kill -TERM $pid; wait $pid || true
  echo "$label $rps"
}
results=$(for i in $(seq "$rounds"); do run without --no-obs; run with; run with-no-access-log --no-access-log; done)
echo "$results" >&2
for label in without with with-no-access-log; do
  echo "$results" | awk -v l=$label '$1==l {print $2}' | sort -n | awk -v l=$label '{a[NR]=$1} END {printf "%s layer: best %.0f req/s, median %.0f req/s over %d runs\n", l, a[NR], a[int((NR+1)/2)], NR}'
done
