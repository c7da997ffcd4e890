#!/usr/bin/env bash
# CPU per scrape and peak RSS of axi-node-collector and of node_exporter, side by side on this
# machine, both on loopback. node_exporter runs twice: with its default collectors, and with
# only the collectors axi-node-collector has (the comparable set the issue's goals refer to).
#
#   usage: examples/node-collector/bench/cost.sh [N]      N scrapes of each (default 200)
#
# Needs a build: target/release/axi-node-collector (cargo build --release -p node-collector),
# or the binary named by AXI_NODE_COLLECTOR (scripts/build-node-collector.sh prints the static
# one the BENCHMARKS.md figures use); and the peers
# (scripts/install-peers.sh). CPU is utime+stime from /proc/PID/stat over the N scrapes after
# 5 warm-up scrapes, divided by N; peak RSS is VmHWM from /proc/PID/status at the end.
# Everything it starts is stopped on exit.
set -euo pipefail
n=${1:-200}
root=$(cd "$(dirname "$0")/../../.." && pwd)
ours=${AXI_NODE_COLLECTOR:-$root/target/release/axi-node-collector}
peers=${AXI_PEERS_BIN:-$("$root/scripts/install-peers.sh" | tail -1)}
ne=$peers/node_exporter
[[ -x $ours ]] || { echo "cost.sh: build first: cargo build --release -p node-collector" >&2; exit 1; }
[[ -x $ne ]] || { echo "cost.sh: node_exporter not found in $peers" >&2; exit 1; }
command -v curl >/dev/null || { echo "cost.sh: curl is needed" >&2; exit 1; }

# Our collectors, by node_exporter's collector names.
comparable=(arp conntrack cpu diskstats entropy filefd filesystem kernel_hung loadavg meminfo
  netclass netdev netstat os pressure schedstat selinux sockstat softnet stat time udp_queues uname
  vmstat)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { # utime + stime of PID, in clock ticks (fields 14 and 15, after the comm in parens)
  local rest; rest=$(<"/proc/$1/stat"); rest=${rest##*) }
  awk '{print $12 + $13}' <<<"$rest"
}
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "cost.sh: $1 did not come up" >&2; exit 1; }
hz=$(getconf CLK_TCK)

measure() { # name, url, pid
  local name=$1 url=$2 pid=$3 before after bytes families start end
  wait_up "$url"
  for _ in 1 2 3 4 5; do curl -sf -o /dev/null "$url"; done
  bytes=$(curl -sf "$url" | wc -c)
  families=$(curl -sf "$url" | grep -c '^# TYPE' || true)
  before=$(ticks "$pid"); start=$(date +%s.%N)
  for _ in $(seq 1 "$n"); do curl -sf -o /dev/null "$url"; done
  end=$(date +%s.%N); after=$(ticks "$pid")
  awk -v name="$name" -v t=$((after - before)) -v hz="$hz" -v n="$n" -v kib="$(hwm_kib "$pid")" \
      -v bytes="$bytes" -v fam="$families" -v wall="$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')" \
    'BEGIN { printf "%-34s %10.3f %10.1f %9d %8d %10.2f\n", name, 1000*t/hz/n, kib/1024, bytes, fam, 1000*wall/n }'
}

echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "$("$ne" --version 2>&1 | head -1); axi-node-collector $("$ours" --version | awk '{print $2}'); N=$n scrapes each"
printf "%-34s %10s %10s %9s %8s %10s\n" "exporter" "CPU ms/scr" "peak MiB" "bytes" "families" "wall ms/scr"

port=$(free_port)
"$ours" --listen "127.0.0.1:$port" >/dev/null 2>&1 & pids+=($!)
measure "axi-node-collector (all)" "http://127.0.0.1:$port/metrics" "${pids[-1]}"

port=$(free_port)
args=(--collector.disable-defaults)
for c in "${comparable[@]}"; do args+=("--collector.$c"); done
"$ne" --web.listen-address="127.0.0.1:$port" "${args[@]}" >/dev/null 2>&1 & pids+=($!)
measure "node_exporter (same collectors)" "http://127.0.0.1:$port/metrics" "${pids[-1]}"

port=$(free_port)
"$ne" --web.listen-address="127.0.0.1:$port" >/dev/null 2>&1 & pids+=($!)
measure "node_exporter (defaults)" "http://127.0.0.1:$port/metrics" "${pids[-1]}"
