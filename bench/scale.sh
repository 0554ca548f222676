#!/usr/bin/env bash
# Scale: N framed connections at one heartbeat every H, held for HOLD, from
# `lifeline bench` (as many processes as the descriptor limit needs) to
# `lifeline serve --workers W` (likewise), all on loopback. Reports false
# deaths (server `dead` events, client-side closes), connect failures, and
# memory: the kernel's (Slab, TCP buffers) and user space's (RSS of every
# server and generator process; the servers' PSS too), per connection.
#
# Usage: [IO=uring] bash bench/scale.sh N HEARTBEAT HOLD [RAMP]
#   bash bench/scale.sh 100000 5s 120s
#   IO=uring bash bench/scale.sh 1000000 30s 300s 8000
# IO picks the server's connection I/O (serve --io; default epoll);
# PER_WORKER (default 19000, under the 20,000 descriptors a process) the
# connections per server worker, so workers = ceil(N / PER_WORKER).
# Timeout = 3 x heartbeat. Needs the release build. Benchmarks are not tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

n=${1:?connections}
heartbeat=${2:?heartbeat, e.g. 5s}
hold=${3:?hold, e.g. 120s}
ramp=${4:-8000}
lifeline=build/release/src/cli/lifeline
[[ -x $lifeline ]] || { echo "scale.sh: $lifeline is missing: make build-release" >&2; exit 1; }

hb_s=${heartbeat%s}
[[ $hb_s =~ ^[0-9]+$ ]] || { echo "scale.sh: HEARTBEAT must be whole seconds, like 5s (got $heartbeat)" >&2; exit 2; }
timeout="$((hb_s * 3))s"
per_worker=${PER_WORKER:-19000}
[[ $per_worker =~ ^[1-9][0-9]*$ && $per_worker -le 19000 ]] || { echo "scale.sh: PER_WORKER must be 1..19000 (got $per_worker)" >&2; exit 2; }
workers=$(((n + per_worker - 1) / per_worker))
source bench/common.sh  # $tmp, $server_pid and their cleanup; CPU/RSS helpers
port=$((20000 + RANDOM % 20000))

meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }         # KiB
tcp_mem_pages() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
echo "scale: $n connections, heartbeat $heartbeat (timeout $timeout), hold $hold, ramp $ramp/s; $workers server workers, --io ${IO:-epoll}"
echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GiB, kernel $(uname -r), fd limit $(ulimit -Hn)"
slab0=$(meminfo Slab)
avail0=$(meminfo MemAvailable)
tcp0=$(tcp_mem_pages)

"$lifeline" serve --io "${IO:-epoll}" --workers "$workers" --listen "127.0.0.1:$port" --heartbeat "$heartbeat" --timeout "$timeout" \
    --max-timeout "$timeout" --keepalive off >"$tmp/server.jsonl" 2>"$tmp/server.err" &
server_pid=$!
for _ in $(seq 100); do grep -q '"listening"' "$tmp/server.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -q '"listening"' "$tmp/server.jsonl" || { echo "scale.sh: the server did not start" >&2; cat "$tmp/server.err" >&2; exit 1; }
server_rss0=$(rss_tree_kib "$server_pid")
server_pss0=$(pss_tree_kib "$server_pid")

"$lifeline" bench "127.0.0.1:$port" -n "$n" --ramp "$ramp" --heartbeat "$heartbeat" --timeout "$timeout" \
    --hold "$hold" --json >"$tmp/bench.json" 2>"$tmp/bench.err" &
bench_pid=$!
# Sample memory once the ramp is done and the heartbeats have settled.
ramp_s=$(awk -v n="$n" -v r="$ramp" 'BEGIN { printf "%d", n / r + 1 }')
sleep $((ramp_s + hb_s * 2))
# Server CPU over a steady stretch of the hold (first, before the slow
# memory sampling), ending well before the generator stops.
hold_s=${hold%s}
measure_s=$((hold_s - 2 * hb_s - 30))
cpu_a=$(cpu_tree_s "$server_pid")
t_a=$(date +%s.%N)
sleep "$measure_s"
cpu_b=$(cpu_tree_s "$server_pid")
t_b=$(date +%s.%N)
slab1=$(meminfo Slab)
avail1=$(meminfo MemAvailable)
tcp1=$(tcp_mem_pages)
server_rss=$(rss_tree_kib "$server_pid")
server_pss=$(pss_tree_kib "$server_pid")
bench_rss=$(rss_tree_kib "$bench_pid")
open_now=$(ss -Htn state established "( sport = :$port )" | wc -l)
wait "$bench_pid" || { echo "scale.sh: bench failed" >&2; tail -5 "$tmp/bench.err" >&2; exit 1; }
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

mkdir -p build/bench-results
cp "$tmp/bench.json" "build/bench-results/scale-$n.json"
field() { json_field "$tmp/bench.json" "$1"; }
dead=$(grep -c '"event":"dead"' "$tmp/server.jsonl" || true)
restarts=$(grep -c 'restarting' "$tmp/server.jsonl" || true)
awk -v n="$n" -v open="$open_now" -v s0="$slab0" -v s1="$slab1" -v a0="$avail0" -v a1="$avail1" \
    -v t0="$tcp0" -v t1="$tcp1" -v sr="$server_rss" -v sr0="$server_rss0" -v sp="$server_pss" -v sp0="$server_pss0" -v br="$bench_rss" \
    -v ca="$cpu_a" -v cb="$cpu_b" -v ta="$t_a" -v tb="$t_b" -v rate="$(json_field "$tmp/bench.json" round_trips_per_second)" 'BEGIN {
    printf "established (server side, sampled after the ramp): %d\n", open
    printf "kernel: Slab +%.0f MiB (%.0f B per connection pair), TCP buffers +%.0f MiB, MemAvailable -%.0f MiB (%.0f B per pair)\n",
        (s1 - s0) / 1024, (s1 - s0) * 1024 / n, (t1 - t0) * 4 / 1024, (a0 - a1) / 1024, (a0 - a1) * 1024 / n
    printf "user space: server processes %.0f MiB, %.0f MiB above their idle start (%.0f B per connection); generator processes %.0f MiB (%.0f B per connection)\n",
        sr / 1024, (sr - sr0) / 1024, (sr - sr0) * 1024 / n, br / 1024, br * 1024 / n
    printf "user space, shared pages counted once (PSS): server processes %.0f MiB (%.0f B per connection, fixed memory included), %.0f MiB above their idle start (%.0f B per connection)\n",
        sp / 1024, sp * 1024 / n, (sp - sp0) / 1024, (sp - sp0) * 1024 / n
    printf "server CPU: %.2f s over %.1f s = %.2f us per heartbeat round trip (at the %.0f round trips/s the generator measured)\n",
        cb - ca, tb - ta, (cb - ca) * 1e6 / (rate * (tb - ta)), rate
}'
echo "connected: $(field connected) (connect failures $(field connect_failures))"
echo "round trips per second during the hold: $(field round_trips_per_second)"
echo "false positives: server dead events $dead, connections closed by the server $(field false_closes), worker restarts $restarts"
