#!/usr/bin/env bash
# Fleet presence on Redis (docs/BENCHMARKS.md, "Fleet presence on Redis"):
#
# 1. Cost: bench/presence_bench drives the real PresencePublisher and RedisLink
#    with SESSIONS simulated sessions (no sockets) against a real redis-server
#    pinned to CPU 1 (the driver on CPU 0), then measures WINDOW seconds of
#    steady state: batched refresh, then the naive baseline (one PEXPIRE per
#    session per ttl/3) in the same run. Redis CPU from /proc, commands from
#    INFO stats; figures also per 100,000 sessions.
# 2. Staleness: two release `lifeline serve --presence` gateways and CLIENTS
#    `lifeline connect` processes split between them, all SIGSTOPped at one
#    instant; staleness is each offline's stream entry time (Redis' clock at
#    XADD) minus that instant. Detection budget: --timeout 3s, TTL 3s.
#
#   bash bench/presence.sh                       # 1,000,000 sessions, 30 s TTL, 20 s windows, 100 clients
#   SESSIONS=100000 WINDOW=10 CLIENTS=40 bash bench/presence.sh   # about a minute
#
# Needs the release build (make build-release) and redis-server (scripts/install-deps.sh).
# Loopback only; everything it starts is stopped on exit. About 3 minutes at the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SESSIONS=${SESSIONS:-1000000}
TTL=${TTL:-30}
WINDOW=${WINDOW:-20}
CLIENTS=${CLIENTS:-100}
bin=build/release
py=/usr/bin/python3
for f in "$bin/bench/presence_bench" "$bin/src/cli/lifeline"; do
  [[ -x $f ]] || {
    echo "bench/presence.sh: $f is missing: make build-release" >&2
    exit 1
  }
done

dir=$(mktemp -d /tmp/lifeline-presence-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" --daemonize no &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" ping >/dev/null

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f1-3)"
echo "== cost: $SESSIONS simulated sessions, TTL ${TTL}s, ${WINDOW}s windows"
timeout $((WINDOW * 2 + 600)) taskset -c 0 "$bin/bench/presence_bench" --redis "redis://127.0.0.1:$port" \
  --redis-pid "$redis_pid" --sessions "$SESSIONS" --ttl "$TTL" --window "$WINDOW" | tee "$dir/cost.jsonl"
echo "redis memory with $SESSIONS sessions: $(redis-cli -p "$port" info memory | grep '^used_memory_human' | cut -d: -f2)"
redis-cli -p "$port" flushall >/dev/null

echo "== staleness: 2 gateways, $CLIENTS clients stopped at once (timeout 3s, TTL 3s)"
declare -A gw_port
for gw in gw-a gw-b; do
  "$bin/src/cli/lifeline" serve --listen 127.0.0.1:0 --heartbeat 1s --timeout 3s --presence "redis://127.0.0.1:$port" \
    --gateway "$gw" --presence-ttl 3s >"$dir/$gw.log" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do grep -q '"listening"' "$dir/$gw.log" && break; sleep 0.1; done
  gw_port[$gw]=$(grep -m1 '"listening"' "$dir/$gw.log" | sed 's/.*:\([0-9]*\)".*/\1/')
done
clients=()
for i in $(seq "$CLIENTS"); do
  gw=gw-a
  ((i % 2 == 0)) && gw=gw-b
  "$bin/src/cli/lifeline" connect "127.0.0.1:${gw_port[$gw]}" --id "$(printf 'device-%08x-%04x' "$RANDOM$i" "$i")" \
    --heartbeat 1s --timeout 3s >/dev/null 2>&1 &
  pids+=($!)
  clients+=($!)
done
for _ in $(seq 300); do
  [[ $(redis-cli -p "$port" xlen lifeline:offline) -ge $CLIENTS ]] && break
  sleep 0.1
done
t0=$($py -c 'import time; print(int(time.time() * 1000))')
kill -STOP "${clients[@]}"
for _ in $(seq 300); do
  [[ $(redis-cli -p "$port" xlen lifeline:offline) -ge $((CLIENTS * 2)) ]] && break
  sleep 0.1
done
redis-cli -p "$port" --no-raw xrange lifeline:offline - + >"$dir/stream.txt"
$py - "$dir/stream.txt" "$t0" "$CLIENTS" <<'EOF'
import re, statistics, sys
text, t0, clients = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
# --no-raw output: '1) 1) "1700000000000-0"' then the fields, one quoted string per line.
entries, cur = [], None
for line in text.splitlines():
    m = re.search(r'"(\d+)-(\d+)"$', line)
    if m and re.match(r'^\s*\d+\) 1\) ', line):
        cur = {"ms": int(m.group(1)), "fields": []}
        entries.append(cur)
        continue
    m = re.search(r'\d+\) "(.*)"$', line)
    if m and cur is not None:
        cur["fields"].append(m.group(1))
offline = []
for e in entries:
    f = dict(zip(e["fields"][0::2], e["fields"][1::2]))
    if f.get("event") == "offline":
        offline.append((e["ms"] - t0, int(f.get("detected_after_ms", 0)), f.get("reason")))
stale = sorted(s for s, _, _ in offline)
def pct(p):
    return stale[min(len(stale) - 1, int(p / 100 * len(stale)))] if stale else float("nan")
reasons = sorted(set(r for _, _, r in offline))
print(f"offline events: {len(offline)} of {clients} (reasons: {', '.join(reasons)})")
if stale:
    print(f"staleness from the stop to the stream (ms): p50 {pct(50)}  p99 {pct(99)}  max {stale[-1]}"
          f"  (budget: timeout 3000 + heartbeat 1000 at most before the last byte)")
    det = sorted(d for _, d, _ in offline)
    print(f"detected_after_ms: p50 {det[len(det) // 2]}  max {det[-1]}")
EOF
