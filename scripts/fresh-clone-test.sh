#!/usr/bin/env bash
# Is main's `make test` deterministic? Clones the repository into a scratch
# directory, runs `CI=true make test` there RUNS times in a row (default 3),
# then once more with both cores busy (two `yes >/dev/null` that this script
# starts and always stops), and prints one line per run. Exit 0 only if every
# run passed. The first run builds from scratch (a fresh clone has no build/);
# the later ones reuse that build and run every test again. FRESH_EACH=1
# clones anew for every run (each then builds from scratch: slower).
#
#   bash scripts/fresh-clone-test.sh            # this repository's committed HEAD
#   RUNS=5 bash scripts/fresh-clone-test.sh /path/to/repo
set -euo pipefail

repo=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
runs=${RUNS:-3}
fresh_each=${FRESH_EACH:-0}
work=$(mktemp -d /tmp/lifeline-fresh.XXXXXX)
hogs=()

cleanup() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

clone() {
  rm -rf "$work/lifeline"
  git clone -q "$repo" "$work/lifeline"
}

# run_once NAME: one `make test` in the clone; prints its verdict line.
failures=0
run_once() {
  local name=$1 log="$work/${1// /-}.log" start end rc summary
  start=$(date +%s)
  set +e
  (cd "$work/lifeline" && CI=true make test) >"$log" 2>&1
  rc=$?
  set -e
  end=$(date +%s)
  summary=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1 || true)
  printf '%-16s exit %d in %4d s: %s\n' "$name" "$rc" $((end - start)) "${summary:-no ctest summary}"
  if ((rc != 0)); then
    failures=$((failures + 1))
    grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Not Run)\)' "$log" | sed 's/^/    /' || true
    cp "$log" "/tmp/lifeline-fresh-${name// /-}.log"
    echo "    full log: /tmp/lifeline-fresh-${name// /-}.log"
  fi
}

commit=$(git -C "$repo" rev-parse --short HEAD)
echo "fresh-clone test of $repo at $commit: $runs runs, then one with both cores busy"
clone
for i in $(seq 1 "$runs"); do
  if ((fresh_each == 1 && i > 1)); then clone; fi
  run_once "run $i"
done

if ((fresh_each == 1)); then clone; fi
for _ in 1 2; do
  yes >/dev/null &
  hogs+=($!)
done
run_once "busy (2x yes)"
for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
hogs=()

if ((failures > 0)); then
  echo "FAILED: $failures of $((runs + 1)) runs"
  exit 1
fi
echo "PASSED: all $((runs + 1)) runs"
