#!/usr/bin/env bash
# User-space memory per idle WebSocket connection of `lifeline serve --mode
# websocket`, plain (ws://) and with TLS (wss://), measured like
# bench/idle_memory.sh: the server's RSS before and after N idle connections
# (python3-websockets clients with ids, in another process) were admitted,
# divided by N. Runs in a network namespace of its own (root); everything it
# creates is removed on exit.
#
#   bash bench/websocket_idle_memory.sh [N=19000] [--tls]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-19000}
TLS=${2:-}
# shellcheck source=bench/memory_netns.sh
source bench/memory_netns.sh

FLAGS=()
SCHEME=ws
CA=()
if [[ $TLS == --tls ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2> /dev/null
  FLAGS=(--tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem")
  SCHEME=wss
  CA=("$OUT/cert.pem")
fi
ulimit -n 20000
ip netns exec "$NS" "$BIN" serve --mode websocket --listen 127.0.0.1:18889 --heartbeat 30s --timeout 90s \
  "${FLAGS[@]}" > "$OUT/server.jsonl" 2> "$OUT/server.err" &
SERVER_PID=$!
wait_lines "$OUT/server.jsonl" '"listening"' 1
# Warm up the allocator and the loop with one connection, then measure from there.
ip netns exec "$NS" /usr/bin/python3 bench/ws_idle_clients.py "$SCHEME://127.0.0.1:18889/warm" 1 "${CA[@]}" \
  > /dev/null &
WARM_PID=$!
wait_lines "$OUT/server.jsonl" '"hello"' 1
BEFORE=$(rss_kib "$SERVER_PID")
ip netns exec "$NS" /usr/bin/python3 bench/ws_idle_clients.py "$SCHEME://127.0.0.1:18889/live" "$N" "${CA[@]}" \
  > "$OUT/clients.out" &
CLIENT_PID=$!
wait_lines "$OUT/server.jsonl" '"hello"' $((N + 1))
AFTER=$(rss_kib "$SERVER_PID")
PER=$(( (AFTER - BEFORE) * 1024 / N ))
echo "lifeline serve, websocket${TLS:+ over TLS}, $N idle connections with ids (heartbeat 30s):"
echo "  server RSS before: ${BEFORE} KiB   after: ${AFTER} KiB"
echo "  user-space memory per idle connection: ${PER} bytes"
