#!/usr/bin/env bash
# Broadcast, side by side in one run: lifeline::Server::broadcast of one 64-byte
# message to 19,000 framed, heartbeating connections (epoll, and io_uring),
# against a plain epoll loop writing the same DATA frame with one send() per
# socket. Per round: broadcast call -> last connection has it; per delivered
# message: server CPU time and system calls (perf stat), net of an idle window.
# How it works and the figures: docs/BENCHMARKS.md, "Broadcast".
#
#   bash bench/broadcast.sh              # 3 repetitions, about 8 minutes
#   REPEAT=1 SERVERS=lifeline,plain bash bench/broadcast.sh --rounds 10
#   bash bench/run.sh broadcast          # the same as the first
#
# Needs root (or kernel.perf_event_paranoid <= -1) for perf's system-call
# tracepoints; pass --no-perf to go without the system-call counts.
# Extra arguments go to build/release/bench/broadcast_bench (--help lists them).
# Benchmarks are not tests: nothing here passes or fails on a figure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=build/release/bench/broadcast_bench
out_dir=build/bench-results
out=$out_dir/broadcast.json
REPEAT=${REPEAT:-3}
SERVERS=${SERVERS:-lifeline,lifeline-uring,plain}

if [[ ! -x $bin ]]; then
    echo "bench/broadcast.sh: $bin is missing; build it with" >&2
    echo "  cmake --preset release && cmake --build --preset release --target broadcast_bench" >&2
    exit 1
fi
mkdir -p "$out_dir"

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "descriptors per process: soft $(ulimit -Sn), hard $(ulimit -Hn); ephemeral ports $(tr '\t' '-' < /proc/sys/net/ipv4/ip_local_port_range)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
# The driver starts the server, client and perf processes itself and kills
# them on every way out; its own bound is --max-seconds (1200 by default).
"$bin" --repeat "$REPEAT" --servers "$SERVERS" --json "$out" "$@"
echo "load average after the run:  $(cut -d' ' -f1-3 /proc/loadavg)"
