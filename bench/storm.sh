#!/usr/bin/env bash
# Reconnect storm: N framed connections with the client's full-jitter backoff
# (100 ms doubling to 5 s) to `lifeline serve --workers W`; then the whole
# server crashes (every process SIGKILLed: the kernel resets or closes each
# connection) and starts again after DOWN seconds, and every client comes back. Reports how long until the last one was back, and any
# connection lost again after it came back (a false death).
#
# Usage: bash bench/storm.sh [N] [DOWN]      (default 100000 2)
# Needs the release build. Benchmarks are not tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/common.sh

n=${1:-100000}
down=${2:-2}
lifeline=build/release/src/cli/lifeline
[[ -x $lifeline ]] || { echo "storm.sh: $lifeline is missing: make build-release" >&2; exit 1; }
workers=$(((n + 18999) / 19000))
port=$((20000 + RANDOM % 20000))
ramp=8000

start_server() {
    "$lifeline" serve --workers "$workers" --listen "127.0.0.1:$port" --heartbeat 5s --timeout 15s --max-timeout 15s \
        --keepalive off >>"$tmp/server.jsonl" 2>>"$tmp/server.err" &
    server_pid=$!
    for _ in $(seq 100); do
        [[ $(grep -c '"listening"' "$tmp/server.jsonl" 2>/dev/null || true) -ge $1 ]] && return 0
        sleep 0.1
    done
    echo "storm.sh: the server did not start" >&2
    exit 1
}

echo "storm: $n connections, $workers server workers, server down for ${down}s"
start_server 1
ramp_s=$((n / ramp + 1))
hold=$((ramp_s + 60))
"$lifeline" bench "127.0.0.1:$port" -n "$n" --ramp "$ramp" --heartbeat 5s --timeout 15s --hold "${hold}s" \
    --reconnect --json >"$tmp/bench.json" 2>"$tmp/bench.err" &
bench_pid=$!
sleep $((ramp_s + 10))
echo "crashing the server: SIGKILL to the supervisor and every worker at once"
kill -9 $(tree_pids "$server_pid") 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
sleep "$down"
start_server 2
wait "$bench_pid" || { echo "storm.sh: bench failed" >&2; tail -5 "$tmp/bench.err" >&2; exit 1; }
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
j=$tmp/bench.json
echo "connected: $(json_field "$j" connected), dropped by the kill: $(json_field "$j" drops), back: $(json_field "$j" reconnected)"
echo "storm: the last connection was back $(json_field "$j" storm_seconds) s after the first drop (the server was down ${down} s)"
echo "false deaths after coming back: $(json_field "$j" false_closes)"
