#!/usr/bin/env bash
# What `make bench` runs (after building the release preset): the timing-wheel
# benchmark, with its raw results written to build/bench-results/timing_wheel.json
# and a summary of the wheel's ratios to its baselines printed at the end.
# Extra arguments go to the benchmark binary and override the defaults below,
# e.g. `bash bench/run.sh --benchmark_filter=rearm --benchmark_repetitions=3`.
#
# Benchmarks are not tests: nothing here passes or fails on a figure.
#
# Defaults: 5 repetitions of each benchmark, randomly interleaved with the
# others so that a burst of load on this shared machine hits every
# implementation alike, and the median reported. About 2 minutes on 2 cores (3 under load).
#
# `bash bench/run.sh broadcast [ARGS]` runs bench/broadcast.sh instead (the
# broadcast to 19,000 connections against a plain epoll loop; `make bench-broadcast`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${1:-} == broadcast ]]; then
    shift
    exec bash bench/broadcast.sh "$@"
fi

bin=build/release/bench/timing_wheel_bench
out_dir=build/bench-results
out=$out_dir/timing_wheel.json

if [[ ! -x $bin ]]; then
    echo "bench/run.sh: $bin is missing; build it with" >&2
    echo "  cmake --preset release && cmake --build --preset release --target timing_wheel_bench" >&2
    exit 1
fi
mkdir -p "$out_dir"

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# The console shows the median of each benchmark only (the JSON keeps every
# repetition and all the aggregates); rows come in the interleaved order.
"$bin" \
    --benchmark_min_time=0.2 \
    --benchmark_repetitions=5 \
    --benchmark_enable_random_interleaving=true \
    --benchmark_display_aggregates_only=true \
    --benchmark_out="$out" \
    --benchmark_out_format=json \
    "$@" | grep -v -E '_(mean|stddev|cv) '

echo "load average after the run:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw results: $out"
echo

# The summary: one table per workload, implementations side by side, and the
# wheel's time as a fraction of each baseline's (below 1 means the wheel is faster).
python3 - "$out" <<'PY'
import json
import re
import sys
from collections import defaultdict

with open(sys.argv[1]) as f:
    runs = json.load(f)["benchmarks"]

# (workload, impl, n) -> {counter: value}: the median over the repetitions when
# there are several, else the mean of the plain runs. Counters are in seconds
# per item (ratios excepted); shown here in ns.
cells = defaultdict(dict)
plain = defaultdict(list)
cv = {}
errors = []
name_re = re.compile(r"^(\w+)/([\w:]+)/(\d+)")
counters = ["per_op", "schedule_per_op", "wheel", "heap", "wheel/heap", "fired_share"]
for run in runs:
    m = name_re.match(run.get("run_name", run["name"]))
    if not m:
        continue
    key = (m.group(1), m.group(2), int(m.group(3)))
    if run.get("error_occurred"):
        errors.append(f"{run['name']}: {run.get('error_message', '')}")
        continue
    if run.get("run_type") == "aggregate":
        if run["aggregate_name"] == "median":
            cells[key].update({c: run[c] for c in counters if c in run})
        elif run["aggregate_name"] == "cv" and "per_op" in run:
            cv[key] = run["per_op"] * 100
    else:
        plain[key].append(run)
for key, rs in plain.items():
    if not cells[key]:
        cells[key] = {c: sum(r[c] for r in rs) / len(rs) for c in counters if c in rs[0]}


def ns(key, counter):
    v = cells.get(key, {}).get(counter)
    return None if v is None else v * 1e9


def fmt(x):
    return "-" if x is None else (f"{x:.1f}" if x < 1000 else f"{x:.0f}")


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def table(title, workload, counter, cols):
    sizes = sorted({k[2] for k in cells if k[0] == workload})
    if not sizes:
        return
    print(f"\n{title}")
    print(f"{'N':>9}" + "".join(f"{c:>10}" for c in cols) + f"{'wheel/heap':>12}{'wheel/mmap':>12}")
    for n in sizes:
        v = {c: ns((workload, c, n), counter) for c in cols}
        print(f"{n:>9}" + "".join(f"{fmt(v[c]):>10}" for c in cols)
              + f"{ratio(v['wheel'], v['heap']):>12}{ratio(v['wheel'], v.get('multimap')):>12}")
    if len(sizes) > 1:
        growth = []
        for c in cols:
            a, b = ns((workload, c, sizes[0]), counter), ns((workload, c, sizes[-1]), counter)
            if a and b:
                growth.append(f"{c} {b / a:.2f}x")
        print(f"{'':>9}from N={sizes[0]} to N={sizes[-1]}: " + ", ".join(growth))


print("Median ns per operation over the repetitions (how each is timed: docs/BENCHMARKS.md).")
print("wheel/x is the wheel's time divided by x's: below 1 the wheel is faster.")
impls = ["wheel", "heap", "multimap"]
table("rearm: re-arm (schedule an armed timer) a random timer, N armed, time still", "rearm",
      "per_op", impls + ["floor"])
sizes = sorted({k[2] for k in cells if k[0] == "rearm_ab"})
if sizes:
    print("\nrearm_ab: the same, wheel and heap alternating in 50k-op slices")
    print(f"{'N':>9}{'wheel':>10}{'heap':>10}{'wheel/heap':>12}")
    for n in sizes:
        key = ("rearm_ab", "wheel:heap", n)
        r = cells.get(key, {}).get("wheel/heap")
        print(f"{n:>9}{fmt(ns(key, 'wheel')):>10}{fmt(ns(key, 'heap')):>10}"
              f"{'-' if r is None else f'{r:.2f}':>12}")
table("cancel_schedule: as rearm, but cancel() first, then schedule()", "cancel_schedule",
      "per_op", ["wheel", "heap"])
table("churn: as rearm, time moving one tick per N/100 re-arms; per re-arm or fire",
      "churn", "per_op", ["wheel", "heap"])


def fired_shares(workload):
    shares = [(n, cells[(workload, "wheel", n)].get("fired_share")) for n in
              sorted({k[2] for k in cells if k[0] == workload and k[1] == "wheel"})]
    if shares:
        print(f"{'':>9}fires among the operations: "
              + ", ".join(f"{s * 100:.1f}% at N={n}" for n, s in shares if s is not None))


fired_shares("churn")
table("heartbeat: as churn, re-arm to now + the timer's fixed timeout (always later)",
      "heartbeat", "per_op", ["wheel", "heap"])
fired_shares("heartbeat")
table("schedule: arm N timers into an empty queue (before expire)", "expire",
      "schedule_per_op", impls)
table("cancel: cancel N armed timers in random order", "cancel", "per_op", impls)
table("expire: N timers fire (sleep until next_expiry, advance)", "expire", "per_op", impls)

if cv:
    worst = sorted(cv, key=cv.get, reverse=True)[:3]
    print("\nnoise: largest spreads between repetitions (coefficient of variation): "
          + ", ".join(f"{cv[k]:.0f}% {'/'.join(map(str, k))}" for k in worst))
for e in errors:
    print(f"ERROR {e}")
PY
