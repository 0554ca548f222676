#!/usr/bin/env bash
# Installs the Debian packages lifeline needs to build, test and run.
# Idempotent: installs only what is missing, and runs `apt-get update` at most once.
set -euo pipefail

packages=(
  build-essential cmake make pkg-config git
  clang-format                          # the tests check that every source is formatted
  clang-14 libclang-rt-14-dev          # libFuzzer for the decoder fuzz target
  libgtest-dev libgmock-dev googletest  # unit, simulation and integration tests
  libbenchmark-dev                      # bench/
  libcli11-dev libfmt-dev nlohmann-json3-dev
  libmnl-dev                            # netlink sock_diag
  liburing-dev                          # serve --io uring (one io_uring_enter per loop turn)
  libcpp-httplib-dev                    # the server's /metrics and /connections endpoint
  libhiredis-dev                        # serve --presence redis://: fleet presence (async API)
  redis-server redis-tools              # tests and benchmarks: a real Redis (>= 7: functions)
  iproute2 nftables procps              # network namespaces for the lab and netns tests
  util-linux                            # setpriv: the protect test drops to an unprivileged user
  help2man                              # lifeline.1, the man page, from `lifeline --help`
  psmisc                                # pstree: bench/ scripts add up a server's worker processes
  libpcap-dev                           # the lab captures keepalive probes on its switch
  clang libbpf-dev bpftool              # protect --cgroup: the BPF sock_ops program and its skeleton
  libasio-dev                           # bench baseline: bench/asio_echo_server (standalone Asio, no Boost)
  libssl-dev                            # the WebSocket handshake's SHA-1; push_gateway's HMAC-SHA256
  python3 python3-websockets            # tests: a WebSocket client nobody here wrote
  chromium                              # tests: a browser's own WebSocket (headless)
  openssl                               # tests: certificates for the TLS tests
  pybind11-dev python3-dev              # python/: the lifeline package's extension
  python3-pytest python3-pytest-asyncio # python/tests
  python3-venv python3-setuptools-whl python3-wheel-whl # tests: `pip install ./python` into a venv, offline
  mosquitto                             # bench baseline: MQTT keep-alive broker for `lifeline bench --protocol mqtt`
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or install them with apt-get) and try again" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian starts a system-wide broker on port 1883 when mosquitto is installed.
# We want the binary only (bench/compare.sh starts its own, on a free port).
if [[ " ${missing[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null &&
  systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
  echo "install-deps: stopped and disabled the system mosquitto broker (installed as a benchmark baseline only)" >&2
fi
