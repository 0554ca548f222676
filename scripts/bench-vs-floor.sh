#!/usr/bin/env bash
# One command for docs/BENCHMARKS.md's "against the floor, uniform arrivals"
# table: the raw epoll floor (bench/floor_echo_server), `lifeline serve`
# (epoll) and `lifeline serve --io uring`, side by side in the same run, at
# 19,000 connections, 1 s heartbeat, 10 % of the connections silenced after
# the CPU window, under both arrival patterns of `lifeline bench` (uniform:
# each connection on its own random phase; burst: pings due in a 10 ms tick
# leave together), REPEAT rounds each with the servers interleaved. Server on
# CPU 0, generator on CPU 1 (bench/compare.sh does the running and measuring).
#
# Prints a markdown table of medians and spreads (min-max over the rounds):
# server CPU per heartbeat round trip, its ratio to the floor of the same
# round and pattern, RSS per connection, the generator's round trip
# p50/p99/p99.9, detection p99 after the last byte, false deaths, round
# trips per server wake-up and the generator's sends and replies per wake-up
# (voluntary context switches: how bunched the heartbeats really were); and
# the machine's load before and after. Files: build/bench-results/vs-floor/.
#
# Takes about 3 servers x 2 patterns x REPEAT runs of (N / RAMP + 1 + 20) s
# plus a few seconds each: about 9 minutes at the defaults. Quick look:
#   REPEAT=1 N=5000 bash scripts/bench-vs-floor.sh        (about 2 minutes)
# Full:
#   bash scripts/bench-vs-floor.sh
# Needs the release build (cmake --preset release && cmake --build --preset release).
# Benchmarks are not tests: nothing here passes or fails on a figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

n=${N:-19000}
export SERVERS=${SERVERS:-"floor lifeline lifeline-uring"}
export ARRIVALS=${ARRIVALS:-"uniform burst"}
export REPEAT=${REPEAT:-3}
export RAMP=${RAMP:-4000}
export OUT_DIR=${OUT_DIR:-build/bench-results/vs-floor}
mkdir -p "$OUT_DIR"

read -r -a servers <<<"$SERVERS"
read -r -a patterns <<<"$ARRIVALS"
runs=$((${#servers[@]} * ${#patterns[@]} * REPEAT))
per_run=$(awk -v n="$n" -v r="$RAMP" 'BEGIN { printf "%.0f", n / r + 1 + 20 + 3 }')
echo "bench-vs-floor: $runs runs of about ${per_run} s: about $((runs * per_run / 60 + 1)) minutes" >&2

load_before=$(uptime)
bash bench/compare.sh "$n" | tee "$OUT_DIR/compare.log" >&2
load_after=$(uptime)

# compare.csv columns: 1 server, 2 N, 3 run, 4 cpu_us_per_rt, 5 rss_bytes_per_conn,
# 6 detect_p50, 7 detect_p99, 8 detect_max, 9 budget, 10 detected, 11 silenced,
# 12 false_positives, 13 connect_failures, 14 arrivals, 15 rt_p50, 16 rt_p99, 17 rt_p999,
# 18 round trips per server wake-up, 19 generator events (sends + replies) per generator wake-up.
echo
echo "$n connections, heartbeat 1 s, 10 % silenced after the CPU window, server on CPU 0, generator on CPU 1;"
echo "$REPEAT rounds per pattern, servers interleaved; median (min-max). Machine: $(nproc) CPUs, kernel $(uname -r)."
echo "Load before: ${load_before#*load average: }; after: ${load_after#*load average: } (1/5/15-minute averages)."
echo
awk -F, '
function sort(a, k,    i, j, v) { for (i = 2; i <= k; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > v + 0; j--) a[j + 1] = a[j]; a[j + 1] = v } }
function median(list,    a, k) { k = split(list, a, " "); sort(a, k); return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
function lo(list,    a, k) { k = split(list, a, " "); sort(a, k); return a[1] }
function hi(list,    a, k) { k = split(list, a, " "); sort(a, k); return a[k] }
function spread(list, fmt) { return sprintf(fmt " (" fmt "-" fmt ")", median(list), lo(list), hi(list)) }
NR == 1 { next }
{
    key = $14 SUBSEP $1
    if (!(key in cpu)) order[++count] = key
    cpu[key] = cpu[key] " " $4; rss[key] = rss[key] " " $5
    rt50[key] = rt50[key] " " $15; rt99[key] = rt99[key] " " $16; rt999[key] = rt999[key] " " $17
    if ($10 > 0) det[key] = det[key] " " $7
    per_wake[key] = per_wake[key] " " $18; gen_wake[key] = gen_wake[key] " " $19
    fp[key] += $12; failures[key] += $13; runs[key]++
    round_cpu[$14 SUBSEP $1 SUBSEP $3] = $4
}
END {
    print "| arrivals | server | CPU µs / round trip | × floor | RSS B / conn | RT p50 ms | RT p99 ms | RT p99.9 ms | detect p99 ms | false deaths | RT per server wake-up | generator events per wake-up | runs |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= count; i++) {
        key = order[i]; split(key, k, SUBSEP)
        # The ratio of each round to the floor of the same round and pattern.
        ratios = ""
        for (r in round_cpu) {
            split(r, rk, SUBSEP)
            if (rk[1] != k[1] || rk[2] != k[2]) continue
            f = round_cpu[k[1] SUBSEP "floor" SUBSEP rk[3]]
            if (f > 0) ratios = ratios " " round_cpu[r] / f
        }
        ratio = ratios == "" ? "-" : spread(ratios, "%.2f")
        detect = det[key] == "" ? "none (no timers)" : spread(det[key], "%.0f")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %d%s |\n", k[1], k[2], spread(cpu[key], "%.2f"), ratio,
            spread(rss[key], "%.0f"), spread(rt50[key], "%.3f"), spread(rt99[key], "%.3f"), spread(rt999[key], "%.3f"),
            detect, fp[key], spread(per_wake[key], "%.2f"), spread(gen_wake[key], "%.2f"), runs[key], (failures[key] > 0 ? sprintf(" (%d connect failures)", failures[key]) : "")
    }
}' "$OUT_DIR/compare.csv" | tee "$OUT_DIR/table.md"
echo
echo "every run: $OUT_DIR/compare.csv; this table: $OUT_DIR/table.md"
