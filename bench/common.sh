# Helpers shared by bench/compare.sh and bench/scale.sh (sourced, not run).

# Every pid of a process tree: the process and its descendants, not their threads
# (a thread's /proc/TID/stat would count its whole process again).
tree_pids() { pstree -pT "$1" 2>/dev/null | grep -o '([0-9]\+)' | tr -d '()'; }

# CPU time of a process tree, in seconds: the scheduler's nanosecond count
# (/proc/PID/task/TID/schedstat, user + system) of every thread, not the
# 10 ms ticks of /proc/PID/stat, which a 10 s window at 1,000 round trips a
# second cannot resolve.
cpu_tree_s() {
    local p
    for p in $(tree_pids "$1"); do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done |
        awk '{ ns += $1 } END { printf "%.6f", ns / 1e9 }'
}

# The sum of one /proc/PID/FILE field ("Name:  N kB") over a process tree, in
# KiB: tree_field_kib PID FILE NAME. A process that is exiting, or a zombie,
# has no such line: it counts as 0.
tree_field_kib() {
    local total=0 p kib
    for p in $(tree_pids "$1"); do
        kib=$(awk -v k="$3:" '$1 == k { print $2 }' "/proc/$p/$2" 2>/dev/null || true)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# VmRSS of a process tree, in KiB.
rss_tree_kib() { tree_field_kib "$1" status VmRSS; }

# PSS of a process tree, in KiB: shared pages (the binary, its libraries, in
# every worker) split among the processes mapping them, so the sum is the
# memory the tree really holds, each page once.
pss_tree_kib() { tree_field_kib "$1" smaps_rollup Pss; }

# A top-level number or string from a one-line JSON object: json_field FILE NAME.
json_field() { grep -o "\"$2\":[^,}]*" "$1" | head -1 | cut -d: -f2 || true; }

# Every script gets a scratch directory, removed at exit along with the server
# it started (server_pid), whatever way it exits.
tmp=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# Voluntary context switches of a process tree: how often its threads went to
# sleep (an epoll_wait or io_uring_enter that blocked) and were woken.
wakeups_tree() {
    local p
    for p in $(tree_pids "$1"); do cat /proc/"$p"/task/*/status 2>/dev/null || true; done |
        awk '/^voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
