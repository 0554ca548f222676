#!/usr/bin/env bash
# User-space memory per idle connection of `lifeline serve`, measured: the
# server's RSS before and after N idle framed connections said hello, divided
# by N. Runs inside a network namespace of its own (root) with a wide
# ephemeral port range; everything it creates is removed on exit.
#
#   bash bench/idle_memory.sh [N=19000] [--ids|--long-ids]
#     --ids: clients send short ids (dev-0 ... dev-18999, within std::string's 15-byte inline buffer);
#     --long-ids: ids like `lifeline bench` sends, device-<16 hex>-<n> (25-29 bytes, as devices do)
#   SERVE_FLAGS=--no-presence bash bench/idle_memory.sh 19000 --ids   (extra `serve` flags)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-19000}
IDS=()
[[ ${2:-} == --ids ]] && IDS=(--id "dev")
[[ ${2:-} == --long-ids ]] && IDS=(--id "device-50456d1e94dd80a2")
# shellcheck source=bench/memory_netns.sh
source bench/memory_netns.sh

# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags.
ip netns exec "$NS" "$BIN" serve --listen 127.0.0.1:18888 --heartbeat 30s --timeout 90s ${SERVE_FLAGS:-} \
  > "$OUT/server.jsonl" 2> "$OUT/server.err" &
SERVER_PID=$!
wait_lines "$OUT/server.jsonl" '"listening"' 1
# Warm up the allocator and the loop with one connection, then measure from
# there. With ids, it has one too: the code that only ids run (the resume
# token's HMAC pages in 320 KiB of libcrypto) is paid once, not per connection.
WARM_ID=()
[[ ${#IDS[@]} -gt 0 ]] && WARM_ID=(--id "${IDS[1]}-warm")
ip netns exec "$NS" "$BIN" connect 127.0.0.1:18888 "${WARM_ID[@]}" --heartbeat 30s --timeout 90s --no-stdin > /dev/null &
WARM_PID=$!
wait_lines "$OUT/server.jsonl" '"hello"' 1
BEFORE=$(rss_kib "$SERVER_PID")
ip netns exec "$NS" "$BIN" connect 127.0.0.1:18888 --count "$N" "${IDS[@]}" --heartbeat 30s --timeout 90s \
  --connect-timeout 60s --no-stdin > /dev/null &
CLIENT_PID=$!
wait_lines "$OUT/server.jsonl" '"hello"' $((N + 1))
AFTER=$(rss_kib "$SERVER_PID")
kill -9 "$WARM_PID" 2>/dev/null || true
PER=$(( (AFTER - BEFORE) * 1024 / N ))
echo "lifeline serve, framed, $N idle connections (heartbeat 30s)${IDS:+, client ids like ${IDS[1]}-123}:"
echo "  server RSS before: ${BEFORE} KiB   after: ${AFTER} KiB"
echo "  user-space memory per idle connection: ${PER} bytes (target: < 256)"
