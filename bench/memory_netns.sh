# Sourced by bench/idle_memory.sh and bench/websocket_idle_memory.sh: the
# checks, a network namespace of their own ($NS, loopback up, a wide
# ephemeral port range), a scratch directory ($OUT), and their removal on
# exit (which also kills $CLIENT_PID, $WARM_PID and $SERVER_PID).
BIN=${BIN:-build/release/src/cli/lifeline}  # BIN=... measures another build (before/after)
[[ -x $BIN ]] || { echo "build the release preset first (make build-release)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "needs root (network namespace)" >&2; exit 1; }
NS=llb-$$-mem
OUT=$(mktemp -d)
cleanup() {
  kill -9 "${CLIENT_PID:-}" "${WARM_PID:-}" "${SERVER_PID:-}" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -q -w net.ipv4.ip_local_port_range='1024 65535'

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_lines() {  # file pattern count: up to 120 s for `count` lines matching `pattern`
  for _ in $(seq 1 1200); do
    [[ $(grep -c "$2" "$1" 2>/dev/null || true) -ge $3 ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $3 x $2 in $1" >&2; exit 1
}
