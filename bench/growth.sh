#!/usr/bin/env bash
# Growth (issue 18): does the server's cost per connection stay flat from
# 10,000 to 1,000,000 connections? For each N it runs bench/scale.sh (N framed
# connections with client ids from `lifeline bench`, uniform arrivals, to
# `lifeline serve --workers ceil(N / 19,000)`, all on loopback) with the same
# heartbeat at every N, so CPU per heartbeat is comparable, and records:
#   - server CPU per heartbeat round trip (us): the scheduler's nanoseconds of
#     every server process and thread over a steady window of the hold,
#     divided by the round trips the generator measured (scale.sh's figure);
#   - server user-space RSS growth per connection (bytes);
#   - kernel memory per connection pair: Slab growth and MemAvailable's fall;
#   - false deaths (server `dead` events, closes the generator saw, restarts);
#   - the load average before and after the point, and the machine's busy
#     share over the point (/proc/stat), since server and generator share the
#     2 cores unpinned (at 1,000,000 the server alone needs about one core).
# Output: $OUT_DIR (default build/bench-results/growth)/growth.csv, one log
# and the generator's JSON per N; then bench/growth_plot.py draws
# $SVG (default docs/growth.svg) from the CSV.
#
# Usage: bash bench/growth.sh
#        COUNTS="10000 30000" HEARTBEAT=30s HOLD=180s bash bench/growth.sh
# COUNTS (default "10000 30000 100000 300000 1000000"), HEARTBEAT (30s: 1M
# connections are 33,333 round trips a second), HOLD (180s), RAMP (8000
# connections a second), SETTLE_S (at most this long, 240, waiting after a
# point for the kernel to free its sockets), POINT_LIMIT_S (a point that
# runs longer than ramp + heartbeat + hold + this, 300, is stopped);
# PER_WORKER (19000) goes to scale.sh: connections per server worker.
# Needs the release build and ~10 GiB of free memory for the 1M point.
# Benchmarks are not tests: nothing here passes or fails on a figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a counts <<<"${COUNTS:-10000 30000 100000 300000 1000000}"
heartbeat=${HEARTBEAT:-30s}
hold=${HOLD:-180s}
ramp=${RAMP:-8000}
settle_limit_s=${SETTLE_S:-240}
point_limit_s=${POINT_LIMIT_S:-300}
out_dir=${OUT_DIR:-build/bench-results/growth}
svg=${SVG:-docs/growth.svg}
lifeline=build/release/src/cli/lifeline
[[ -x $lifeline ]] || { echo "growth.sh: $lifeline is missing: cmake --preset release && cmake --build --preset release" >&2; exit 1; }
hb_s=${heartbeat%s}
hold_s=${hold%s}
[[ $hb_s =~ ^[0-9]+$ && $hold_s =~ ^[0-9]+$ ]] || { echo "growth.sh: HEARTBEAT and HOLD are whole seconds, like 30s" >&2; exit 2; }
((hold_s > 2 * hb_s + 40)) || { echo "growth.sh: HOLD must exceed 2 x HEARTBEAT + 40 s (scale.sh measures CPU over HOLD - 2 x HEARTBEAT - 30 s)" >&2; exit 2; }

# Each point runs in a session of its own (setsid in a background job execs in
# place, so its pid is the group's id): stopping the group stops scale.sh, the
# server with its workers and the generator with its shards.
point_pgid=""
stop_point() {
    [[ -n $point_pgid ]] || return 0
    kill -TERM -- "-$point_pgid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$point_pgid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$point_pgid" 2>/dev/null || true
    wait "$point_pgid" 2>/dev/null || true
    point_pgid=""
}
trap stop_point EXIT
trap 'exit 130' INT TERM

tcp_inuse() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "inuse") print $(i + 1) }' /proc/net/sockstat; }
tcp_tw() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }
# Jiffies busy and total across all CPUs (/proc/stat's first line; iowait counts as idle).
cpu_jiffies() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# One figure from a scale.sh log: the first number after PATTERN (a sed -E regex).
# Each PATTERN occurs once in its line (sed's leading .* would take the last one).
pick() { sed -nE "s#.*$2 *(-?[0-9.]+).*#\1#p" "$1" | head -1 || true; }

mkdir -p "$out_dir"
csv=$out_dir/growth.csv
echo "n,workers,heartbeat_s,hold_s,established,connected,connect_failures,round_trips_per_s,cpu_s,window_s,cpu_us_per_rt,rss_server_mib,rss_above_idle_b_per_conn,rss_generator_b_per_conn,slab_b_per_pair,memavail_b_per_pair,tcp_buffers_mib,dead,false_closes,restarts,load_before,load_after,machine_busy_pct,started_utc,rc" >"$csv"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "growth: N = ${counts[*]}; heartbeat $heartbeat, hold $hold, ramp $ramp/s; commit $commit$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' (src modified)')"
echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GiB, kernel $(uname -r); load before: $(loadavg)"

inuse_floor=$(tcp_inuse)
tw_floor=$(tcp_tw)
for n in "${counts[@]}"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "growth.sh: N must be a whole number (got $n)" >&2; exit 2; }
    # Let the kernel free the previous point's sockets, so Slab starts near its floor.
    for ((waited = 0; waited < settle_limit_s; waited += 2)); do
        (($(tcp_inuse) < inuse_floor + 2000 && $(tcp_tw) < tw_floor + 20000)) && break
        sleep 2
    done
    log=$out_dir/scale-$n.log
    started=$(date -u +%FT%TZ)
    # Each connection pair takes about 11 KiB of kernel memory and 2 KiB of
    # user space (server and generator): refuse a point this machine cannot
    # hold now rather than push others' work into the OOM killer.
    need_kib=$((n * 13 + 2 * 1024 * 1024))
    if (($(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo) < need_kib)); then
        echo "growth.sh: N=$n skipped: needs about $((need_kib / 1024)) MiB, $(free -m | awk '/^Mem:/ { print $7 }') MiB available" >&2
        echo "$n,,$hb_s,$hold_s,,,,,,,,,,,,,,,,,$(loadavg),$(loadavg),,$started,75" >>"$csv"
        continue
    fi
    load_before=$(loadavg)
    read -r busy0 total0 < <(cpu_jiffies)
    echo "--- N=$n at $started, load $load_before, tcp sockets in use $(tcp_inuse), time-wait $(tcp_tw)"
    limit_s=$(((n + ramp - 1) / ramp + hb_s + hold_s + point_limit_s))
    rm -f "build/bench-results/scale-$n.json"
    setsid bash bench/scale.sh "$n" "$heartbeat" "$hold" "$ramp" >"$log" 2>&1 &
    point_pgid=$!
    start_s=$SECONDS
    while kill -0 "$point_pgid" 2>/dev/null && ((SECONDS - start_s < limit_s)); do sleep 1; done
    rc=0
    if kill -0 "$point_pgid" 2>/dev/null; then
        echo "growth.sh: N=$n ran past ${limit_s}s; stopped" >&2
        rc=124
        stop_point
    else
        wait "$point_pgid" || rc=$?
        # scale.sh stops its server on any exit, but not the generator when it
        # fails midway: stop whatever of the point's session is left.
        stop_point
    fi
    read -r busy1 total1 < <(cpu_jiffies)
    load_after=$(loadavg)
    busy_pct=$(awk -v b0="$busy0" -v b1="$busy1" -v t0="$total0" -v t1="$total1" 'BEGIN { printf "%.0f", (t1 > t0) ? 100 * (b1 - b0) / (t1 - t0) : 0 }')
    sed 's/^/    /' "$log"
    [[ -f build/bench-results/scale-$n.json ]] && cp "build/bench-results/scale-$n.json" "$out_dir/bench-$n.json"
    ((rc == 0)) || echo "growth.sh: N=$n failed (rc $rc); see $log" >&2
    # The figures scale.sh printed (empty where it failed before printing them).
    workers=$(pick "$log" ' ramp [0-9]+/s;')
    established=$(pick "$log" 'sampled after the ramp\):')
    connected=$(pick "$log" '^connected:')
    failures=$(pick "$log" 'connect failures')
    rate=$(pick "$log" 'round trips per second during the hold:')
    cpu_s=$(pick "$log" '^server CPU:')
    window_s=$(pick "$log" '^server CPU: [0-9.]+ s over')
    cpu_us=$(pick "$log" ' s = ')
    rss_mib=$(pick "$log" 'server processes')
    rss_b=$(pick "$log" 'above their idle start \(')
    gen_b=$(pick "$log" 'generator processes [0-9]+ MiB \(')
    slab_b=$(pick "$log" 'Slab \+-?[0-9]+ MiB \(')
    avail_b=$(pick "$log" 'MemAvailable --?[0-9]+ MiB \(')
    tcp_mib=$(pick "$log" 'TCP buffers \+')
    dead=$(pick "$log" 'server dead events')
    closes=$(pick "$log" 'connections closed by the server')
    restarts=$(pick "$log" 'worker restarts')
    echo "$n,$workers,$hb_s,$hold_s,$established,$connected,$failures,$rate,$cpu_s,$window_s,$cpu_us,$rss_mib,$rss_b,$gen_b,$slab_b,$avail_b,$tcp_mib,$dead,$closes,$restarts,$load_before,$load_after,$busy_pct,$started,$rc" >>"$csv"
    echo "    => N=$n: $cpu_us us per round trip, $rss_b B user space per connection, $slab_b B Slab per pair, false deaths $dead/$closes/$restarts; load $load_before -> $load_after, machine busy $busy_pct %"
done

echo "load after: $(loadavg)"
echo "results: $csv"
python3 bench/growth_plot.py "$csv" "$svg"
