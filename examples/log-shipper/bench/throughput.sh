#!/usr/bin/env bash
# End-to-end throughput and memory of axi-log-shipper: an nginx `combined` access log of N
# generated lines (default 2,000,000: varied clients, methods, paths and queries, statuses,
# sizes, referers and user agents) read from its first byte, parsed (access metrics on, as by
# default), batched and shipped as OTLP/HTTP protobuf into a local receiver
# (examples/otlp_sink.rs) that decodes every request and counts the log records.
#
#   usage: examples/log-shipper/bench/throughput.sh [N]
#
# The shipper runs pinned to CPU 0 (taskset -c 0), the receiver to CPU 1. Where permitted
# (root), each runs in its own session whose autogroup gets nice -20 (with autogroup
# scheduling, a process's own nice only counts within its session), so that other work on
# the machine (compilers) disturbs the measurement less (AXI_BENCH_BOOST=0: no boost); the
# load average is printed. Wall time runs from
# the shipper's start until the receiver has decoded N records; lines/s = N / that time. Peak
# RSS is the shipper's VmHWM from /proc/PID/status, read after the last record arrived; CPU is
# its utime+stime. `wc -l` over the same file in the same run is the physical bound (the file
# is in the page cache for both). Extra shipper settings: AXI_BENCH_BATCH (batch.max_events,
# default the shipper's default 2048), AXI_BENCH_QUEUE (batch.queue_events, default 4096).
# AXI_BENCH_DECODE=full makes the receiver decode into prost structs instead of walking the
# wire format (see examples/otlp_sink.rs); its CPU time is printed too.
# Builds release first; everything it starts is stopped on exit; the files live in a
# temporary folder removed on exit (AXI_BENCH_KEEP=1 keeps it).
set -euo pipefail
n=${1:-2000000}
batch=${AXI_BENCH_BATCH:-2048}
queue=${AXI_BENCH_QUEUE:-4096}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --release -p log-shipper --bin axi-log-shipper --example otlp_sink >&2
ours=$root/target/release/axi-log-shipper
sink=$root/target/release/examples/otlp_sink
command -v taskset >/dev/null || { echo "throughput.sh: taskset (util-linux) is needed" >&2; exit 1; }
prio=()
if [[ ${AXI_BENCH_BOOST:-1} == 1 ]] && nice -n -20 true 2>/dev/null; then prio=(setsid nice -n -20); fi
boost() { # once PID leads its own session (setsid ran), give that session's autogroup nice -20
  [[ ${#prio[@]} -gt 0 ]] || return 0
  for _ in $(seq 1 100); do
    # Only then: before setsid, the autogroup would be the caller's own.
    if [[ $(ps -o sid= -p "$1" | tr -d ' ') == "$1" ]]; then
      echo -20 > "/proc/$1/autogroup" 2>/dev/null || true
      return 0
    fi
    sleep 0.01
  done
}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ ${AXI_BENCH_KEEP:-0} == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
ticks() { local rest; rest=$(<"/proc/$1/stat"); rest=${rest##*) }; awk '{print $12 + $13}' <<<"$rest"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log=$work/access.log
t0=$(now)
awk -v n="$n" 'BEGIN {
  srand(20261126)
  split("GET GET GET GET GET POST POST HEAD PUT DELETE", methods, " ")
  split("/ /docs/ /docs/getting-started/install.html /docs/reference/configuration/outputs.html /api/users/4711 /api/users/42/orders /api/orders /static/js/app.3f9a1c.js /static/css/site.css /favicon.ico /healthz /search /robots.txt /wp-login.php", paths, " ")
  split("200 200 200 200 200 200 200 200 304 301 302 404 404 403 401 429 500 502 503 504", statuses, " ")
  split("-|https://docs.example.com/|https://www.google.com/|https://docs.example.com/docs/getting-started/install.html|https://github.com/axi-obs/axi-obs", referers, "|")
  agents[1] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
  agents[2] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
  agents[3] = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
  agents[4] = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
  agents[5] = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
  agents[6] = "curl/8.11.0"
  agents[7] = "Prometheus/3.0.1"
  agents[8] = "python-requests/2.32.3"
  nm = 10; np = 14; ns = 20; nr = 5; na = 8
  for (i = 0; i < n; i++) {
    s = int(i / 20)  # about 20 requests per second of log time
    q = (rand() < 0.25) ? sprintf("?q=otlp+logs&page=%d", int(rand() * 9)) : ""
    printf "%d.%d.%d.%d - %s [26/Nov/2026:%02d:%02d:%02d +0000] \"%s %s%s HTTP/1.1\" %s %d \"%s\" \"%s\"\n",
      10 + int(rand() * 200), int(rand() * 256), int(rand() * 256), 1 + int(rand() * 254),
      (rand() < 0.05) ? "alice" : "-", int(s / 3600) % 24, int(s / 60) % 60, s % 60,
      methods[1 + int(rand() * nm)], paths[1 + int(rand() * np)], q,
      statuses[1 + int(rand() * ns)], int(rand() * 250000),
      referers[1 + int(rand() * nr)], agents[1 + int(rand() * na)]
  }
}' > "$log"
t1=$(now)
size=$(stat -c %s "$log")
echo "generated $n lines, $size bytes ($(awk -v s="$size" -v n="$n" 'BEGIN{printf "%.0f", s/n}') bytes per line) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s" >&2

# The physical bound, in this run: counting the lines of the same (cached) file.
cat "$log" > /dev/null
t0=$(now); lines=$(taskset -c 0 wc -l < "$log"); t1=$(now)
wc_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
[[ $lines == "$n" ]] || { echo "throughput.sh: wc -l counted $lines lines, expected $n" >&2; exit 1; }

port=$(free_port)
"${prio[@]}" taskset -c 1 "$sink" --listen "127.0.0.1:$port" --expect "$n" --decode "${AXI_BENCH_DECODE:-walk}" > "$work/sink.out" & pids+=($!)
sink_pid=$!
boost "$sink_pid"
for _ in $(seq 1 100); do grep -q '^listening' "$work/sink.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^listening' "$work/sink.out" || { echo "throughput.sh: the receiver did not start" >&2; exit 1; }

cat > "$work/shipper.yml" <<YAML
registry: $work/registry.json
poll_interval: 100ms
inputs:
  - name: nginx
    paths: ['$log']
    format: nginx
    log_format: combined
output:
  otlp: { endpoint: 'http://127.0.0.1:$port', protocol: http/protobuf }
batch: { max_events: $batch, queue_events: $queue }
YAML

start=$(now)
RUST_LOG=warn "${prio[@]}" taskset -c 0 "$ours" --config "$work/shipper.yml" --listen "127.0.0.1:$(free_port)" \
  > /dev/null 2> "$work/shipper.err" & shipper=$!; pids+=("$shipper")
boost "$shipper"
deadline=$(( $(date +%s) + 600 ))
until grep -q '^done' "$work/sink.out"; do
  kill -0 "$shipper" 2>/dev/null || { echo "throughput.sh: the shipper exited:" >&2; cat "$work/shipper.err" >&2; exit 1; }
  (( $(date +%s) < deadline )) || { echo "throughput.sh: timed out; the receiver has $(cat "$work/sink.out")" >&2; exit 1; }
  sleep 0.02
done
hwm=$(hwm_kib "$shipper"); cpu=$(ticks "$shipper"); sink_cpu=$(ticks "$sink_pid")
# Context switches and run-queue waits (ready, but another process had the CPU) of all its threads.
switches=$(cat /proc/"$shipper"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}')
rq_wait=$(cat /proc/"$shipper"/task/*/schedstat | awk '{s += $2} END {printf "%.2f", s / 1e9}')
load=$(cut -d' ' -f1-3 /proc/loadavg); group=$(cat "/proc/$shipper/autogroup")
read -r _ records requests done_at < <(grep '^done' "$work/sink.out")
hz=$(getconf CLK_TCK)

echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "file: $n nginx combined lines, $size bytes; shipper: batch.max_events=$batch, queue_events=$queue, access metrics on; ${prio[*]:-default priority}"
awk -v n="$n" -v wc="$wc_s" -v start="$start" -v done_at="$done_at" -v records="$records" \
    -v requests="$requests" -v hwm="$hwm" -v cpu="$cpu" -v hz="$hz" -v size="$size" 'BEGIN {
  wall = done_at - start
  printf "%-44s %12s %10s %10s %10s\n", "", "lines/s", "MB/s", "seconds", "peak MiB"
  printf "%-44s %12.0f %10.1f %10.3f %10s\n", "wc -l (same file, CPU 0)", n / wc, size / wc / 1e6, wc, "-"
  printf "%-44s %12.0f %10.1f %10.3f %10.1f\n", "axi-log-shipper -> OTLP/HTTP sink (CPU 0)", n / wall, size / wall / 1e6, wall, hwm / 1024
  printf "records received %d in %d requests (%s); shipper CPU %.2f s (%.0f lines per CPU second)\n",
    records, requests, (records == n) ? "all, no duplicates" : "MISMATCH", cpu / hz, n / (cpu / hz)
}'
echo "receiver (--decode ${AXI_BENCH_DECODE:-walk}, CPU 1): CPU $(awk -v t="$sink_cpu" -v hz="$hz" 'BEGIN{printf "%.2f", t/hz}') s"
echo "shipper threads: $switches context switches, $rq_wait s waiting for a CPU (run queue); load average at the end: $load; shipper $group"
