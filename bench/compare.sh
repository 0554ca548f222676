#!/usr/bin/env bash
# Side by side, on this machine and the same load from `lifeline bench`:
#   lifeline        `lifeline serve` (framed protocol, heartbeat timeout 3 s), epoll
#   lifeline-uring  the same with --io uring
#   lifeline-ws     `lifeline serve --mode websocket` (RFC 6455; the client pings, masked), epoll
#   lifeline-tls    the framed protocol over TLS (--tls-cert/--tls-key; ECDSA P-256, TLS 1.3)
#   lifeline-wss    WebSocket over TLS
#   floor           bench/floor_echo_server: raw epoll echo, no timers (echo protocol)
#   uring-floor     bench/uring_echo_server: the same echo over io_uring (echo protocol)
#   asio            bench/asio_echo_server: one steady_timer per connection, 3 s (echo protocol)
#   mosquitto       the Debian MQTT broker, keep-alive 1 s (broker gives up after 1.5 s)
# The server runs pinned to CPU 0, the generator to CPU 1. Every connection
# sends one heartbeat a second. For each server and N it measures:
#   - server CPU time per heartbeat round trip, over a steady window after the ramp;
#   - server RSS growth per connection;
#   - after 10 % of the connections go silent at once: how long after each one's
#     last byte the server closed it (p50 / p99 / max), and false positives.
# Each (N, server) pair runs REPEAT times, the servers interleaved within each
# round (so a slow minute of this shared machine hits all of them alike); the
# summary takes the median of the rounds. Output: one line per run on stdout,
# then the summary with each server's ratio to the epoll floor;
# $OUT_DIR (default build/bench-results)/compare.csv (every run), compare-summary.csv (medians)
# and compare.svg (median CPU per round trip against N).
#
# ARRIVALS lists the generator's arrival patterns to run (`lifeline bench
# --arrivals`; default: uniform, each connection on its own random phase);
# every server runs under each, and ratios are to the floor under the same one.
# Each run also records the heartbeat round trip the generator saw (p50 / p99
# / p99.9 over the hold).
#
# A lifeline server's name may carry extra `lifeline serve` flags after an
# "@", joined by "+": "lifeline@--coalesce=0" is lifeline with wake-up
# coalescing off, "lifeline-uring@--coalesce=250us+--tick=10ms" two flags.
# The name, flags included, is the server's row in every table.
#
# Usage: bash bench/compare.sh [N ...]        (default: 1000 5000 10000 18000)
#        SERVERS="lifeline floor" REPEAT=5 ARRIVALS="uniform burst" bash bench/compare.sh 10000
# Needs the release build (make build-release) and mosquitto (scripts/install-deps.sh).
# Benchmarks are not tests: nothing here passes or fails on a figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lifeline=build/release/src/cli/lifeline
floor=build/release/bench/floor_echo_server
uring_floor=build/release/bench/uring_echo_server
asio=build/release/bench/asio_echo_server
out_dir=${OUT_DIR:-build/bench-results}
counts=("$@")
((${#counts[@]})) || counts=(1000 5000 10000 18000)
read -r -a servers <<<"${SERVERS:-floor lifeline lifeline-uring uring-floor asio mosquitto lifeline-ws lifeline-tls lifeline-wss}"
repeat=${REPEAT:-3}
read -r -a arrivals_list <<<"${ARRIVALS:-uniform}"
ramp=${RAMP:-4000}          # connections per second
settle=${SETTLE:-3}         # seconds after the ramp before CPU is measured
window=${WINDOW:-10}        # seconds of steady heartbeats measured
silence_after=$((settle + window + 1))
hold=$((silence_after + 6)) # room for the silent ones to be closed (budget 3 s)

for f in "$lifeline" "$floor" "$uring_floor" "$asio"; do
    [[ -x $f ]] || { echo "compare.sh: $f is missing: run make build-release" >&2; exit 1; }
done
if [[ " ${servers[*]} " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
    echo "compare.sh: mosquitto is not installed (bash scripts/install-deps.sh)" >&2
    exit 1
fi
mkdir -p "$out_dir"
source bench/common.sh  # $tmp, $server_pid and their cleanup; CPU/RSS helpers
# A throwaway certificate for the TLS servers, trusted by the generator.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null


port=0
start_server() { # name[@flag+flag...] -> sets server_pid, port, protocol
    local name=${1%%@*} extra=()
    [[ $1 == *@* ]] && IFS=+ read -r -a extra <<<"${1#*@}"
    port=$((20000 + RANDOM % 20000))
    budget_flag=()
    client_flags=()
    local tls=(--tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem")
    case $name in
    lifeline-ws | lifeline-wss)
        protocol=websocket
        [[ $name == lifeline-wss ]] || tls=()
        [[ $name == lifeline-wss ]] && client_flags=(--tls --tls-ca "$tmp/cert.pem")
        # The server pings only a connection quiet for 1.5 s: the clients' own
        # pings (1 s) keep every one busy, so the round trips are theirs, as in framed mode.
        taskset -c 0 "$lifeline" serve --mode websocket --listen "127.0.0.1:$port" --heartbeat 1500ms \
            --timeout 3s "${tls[@]}" "${extra[@]}" --log text >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    lifeline-tls)
        protocol=framed
        client_flags=(--tls --tls-ca "$tmp/cert.pem")
        taskset -c 0 "$lifeline" serve --listen "127.0.0.1:$port" --heartbeat 1s --timeout 3s \
            --max-timeout 3s "${tls[@]}" "${extra[@]}" --log text >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    lifeline | lifeline-uring)
        protocol=framed
        local io=epoll
        [[ $name == lifeline-uring ]] && io=uring
        taskset -c 0 "$lifeline" serve --io "$io" --listen "127.0.0.1:$port" --heartbeat 1s --timeout 3s \
            --max-timeout 3s "${extra[@]}" --log text >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    floor)
        protocol=echo
        taskset -c 0 "$floor" --listen "127.0.0.1:$port" >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    uring-floor)
        protocol=echo
        taskset -c 0 "$uring_floor" --listen "127.0.0.1:$port" >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    asio)
        protocol=echo
        budget_flag=(--server-budget 3s)
        taskset -c 0 "$asio" --listen "127.0.0.1:$port" --timeout-ms 3000 >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    mosquitto)
        protocol=mqtt
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_dest none\n' \
            "$port" >"$tmp/mosquitto.conf"
        # Its descriptor limit is inherited: raise it to the hard limit first.
        (ulimit -n "$(ulimit -Hn)" && exec taskset -c 0 mosquitto -c "$tmp/mosquitto.conf") \
            >"$tmp/server.out" 2>"$tmp/server.err" &
        ;;
    esac
    server_pid=$!
    # Ready when the port accepts (bounded: 5 s).
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "compare.sh: $name did not start listening on $port" >&2
    cat "$tmp/server.err" >&2
    exit 1
}

csv=$out_dir/compare.csv
echo "server,connections,run,cpu_us_per_rt,rss_bytes_per_conn,detect_p50_ms,detect_p99_ms,detect_max_ms,budget_ms,detected,silenced,false_positives,connect_failures,arrivals,rt_p50_ms,rt_p99_ms,rt_p999_ms,rt_per_server_wakeup,events_per_generator_wakeup" >"$csv"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "load: heartbeat 1 s per connection, ramp $ramp/s, CPU over ${window}s after ${settle}s of settling; server on CPU 0, generator on CPU 1"
printf '%-15s %-8s %6s %4s %10s %11s %26s %7s %4s %22s\n' server arrivals N run "CPU µs/RT" "RSS B/conn" \
    "detect p50/p99/max (ms)" budget FP "RT p50/p99/p99.9 ms"

for n in "${counts[@]}"; do
  for run in $(seq "$repeat"); do
   for arrivals in "${arrivals_list[@]}"; do
    for name in "${servers[@]}"; do
        start_server "$name"
        rss0=$(rss_tree_kib "$server_pid")
        taskset -c 1 "$lifeline" bench "127.0.0.1:$port" --protocol "$protocol" -n "$n" --ramp "$ramp" \
            --heartbeat 1s --timeout 3s --hold "${hold}s" --silence 0.1 --silence-after "${silence_after}s" \
            --arrivals "$arrivals" --seed "$run" \
            "${budget_flag[@]}" "${client_flags[@]}" --json >"$tmp/bench.json" 2>"$tmp/bench.err" &
        bench_pid=$!
        ramp_s=$(awk -v n="$n" -v r="$ramp" 'BEGIN { printf "%.3f", n / r + 0.1 }')
        sleep "$(awk -v a="$ramp_s" -v s="$settle" 'BEGIN { print a + s }')"
        cpu0=$(cpu_tree_s "$server_pid")
        wake0=$(wakeups_tree "$server_pid") gen_wake0=$(wakeups_tree "$bench_pid")
        t0=$(date +%s.%N)
        rss1=$(rss_tree_kib "$server_pid")
        sleep "$window"
        cpu1=$(cpu_tree_s "$server_pid")
        wake1=$(wakeups_tree "$server_pid") gen_wake1=$(wakeups_tree "$bench_pid")
        t1=$(date +%s.%N)
        wait "$bench_pid" || { echo "compare.sh: bench against $name failed:" >&2; cat "$tmp/bench.err" >&2; exit 1; }
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        # One round trip per connected connection per second over the window.
        connected=$(json_field "$tmp/bench.json" connected)
        read -r cpu_us rss_per <<<"$(awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v n="${connected:-$n}" \
            -v r0="$rss0" -v r1="$rss1" 'BEGIN { printf "%.2f %.0f", (c1 - c0) * 1e6 / (n * (t1 - t0)), (r1 - r0) * 1024 / n }')"
        j=$tmp/bench.json
        field() { json_field "$j" "$1"; }
        p50=$(grep -o '"p50":{"after_last_send_ms":[^,]*' "$j" | cut -d: -f3)
        p99=$(grep -o '"p99":{"after_last_send_ms":[^,]*' "$j" | cut -d: -f3)
        pmax=$(grep -o '"p100":{"after_last_send_ms":[^,]*' "$j" | cut -d: -f3)
        budget=$(field server_budget_ms)
        detected=$(field detected)
        silenced=$(field silenced)
        fp=$(field false_closes)
        failures=$(field connect_failures)
        rt() { grep -o "\"round_trip\":{[^}]*" "$j" | grep -o "\"$1\":[^,}]*" | cut -d: -f2; }
        rt50=$(rt p50_ms) rt99=$(rt p99_ms) rt999=$(rt p999_ms)
        # How many round trips the server handled per wake-up: 1 when every
        # heartbeat wakes it alone, more when they reach it bunched.
        per_wake=$(awk -v w0="$wake0" -v w1="$wake1" -v t0="$t0" -v t1="$t1" -v n="${connected:-$n}" \
            'BEGIN { w = w1 - w0; printf "%.2f", (w > 0 ? n * (t1 - t0) / w : 0) }')
        # The same for the generator: about 2 (a wake-up to send, one to read
        # the reply) when each ping leaves on its own, more when they bunch.
        gen_per_wake=$(awk -v w0="$gen_wake0" -v w1="$gen_wake1" -v t0="$t0" -v t1="$t1" -v n="${connected:-$n}" \
            'BEGIN { w = w1 - w0; printf "%.2f", (w > 0 ? 2 * n * (t1 - t0) / w : 0) }')
        echo "$name,$n,$run,$cpu_us,$rss_per,$p50,$p99,$pmax,$budget,$detected,$silenced,$fp,$failures,$arrivals,$rt50,$rt99,$rt999,$per_wake,$gen_per_wake" >>"$csv"
        if [[ $detected == 0 ]]; then det="none (no timers)"; else
            det=$(printf '%.0f / %.0f / %.0f' "$p50" "$p99" "$pmax"); fi
        printf '%-15s %-8s %6s %4s %10s %11s %26s %7s %4s %22s\n' "$name" "$arrivals" "$n" "$run" "$cpu_us" "$rss_per" \
            "$det ($detected/$silenced)" "$(printf '%.0f' "$budget")" "$fp" \
            "$(printf '%.3f / %.3f / %.3f' "$rt50" "$rt99" "$rt999")"
    done
   done
  done
done

# Medians over the runs, and each server's ratio to the epoll floor at the same N.
summary=$out_dir/compare-summary.csv
awk -F, -v out="$summary" '
function median(list,    a, k, i, j, v) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > v + 0; j--) a[j + 1] = a[j]; a[j + 1] = v }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
NR == 1 { next }
{ key = $1 "," $14 "," $2; if (!(key in cpu)) order[++count] = key
  cpu[key] = cpu[key] " " $4; rss[key] = rss[key] " " $5; p99[key] = p99[key] " " $7; fp[key] += $12; runs[key]++ }
END {
    print "server,arrivals,connections,runs,cpu_us_per_rt_median,cpu_ratio_to_floor,rss_bytes_per_conn_median,detect_p99_ms_median,false_positives_total" > out
    for (i = 1; i <= count; i++) { key = order[i]; med[key] = median(cpu[key]) }
    printf "\n%-15s %-8s %6s %4s %14s %9s %11s %13s %4s\n", "server", "arrivals", "N", "runs", "CPU µs/RT med", "x floor", "RSS B/conn", "detect p99 ms", "FP"
    for (i = 1; i <= count; i++) {
        key = order[i]; split(key, k, ",")
        f = med["floor," k[2] "," k[3]]; ratio = f > 0 ? sprintf("%.2f", med[key] / f) : "-"
        printf "%s,%s,%d,%s,%.2f,%s,%.0f,%.1f,%d\n", k[1], k[2], k[3], runs[key], med[key], ratio, median(rss[key]), median(p99[key]), fp[key] > out
        printf "%-15s %-8s %6s %4s %14.2f %9s %11.0f %13.1f %4d\n", k[1], k[2], k[3], runs[key], med[key], ratio, median(rss[key]), median(p99[key]), fp[key]
    }
}' "$csv"

# The chart: CPU per round trip against N, one line per server.
awk -F, -v out="$out_dir/compare.svg" '
NR == 1 { next }
{ name = $2 == "uniform" ? $1 : $1 " (" $2 ")"  # Summary columns: server, arrivals, N, runs, CPU median.
  s[name] = 1; key = name SUBSEP $3; y[key] = $5; if ($3 > maxn) maxn = $3; if ($5 > maxy) maxy = $5
  if (!($3 in ns)) { ns[$3] = 1; nv[++count] = $3 + 0 } }
END {
    W = 640; H = 400; L = 70; R = 130; T = 30; B = 50
    split("#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #e6ab02 #a6761d #666666 #1f78b4", colors, " ")
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H > out
    printf "<text x=\"%d\" y=\"18\" font-size=\"14\">Server CPU per heartbeat round trip (µs, median of runs) against connections</text>\n", L > out
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B > out
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L, H - B > out
    maxy *= 1.1
    for (i = 0; i <= 5; i++) {
        v = maxy * i / 5; py = H - B - (H - B - T) * i / 5
        printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L - 6, py + 4, v > out
        printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, W - R, py > out
    }
    # mawk has no asort: insertion-sort the connection counts.
    for (i = 2; i <= count; i++) { v = nv[i]; for (j = i - 1; j >= 1 && nv[j] > v; j--) nv[j + 1] = nv[j]; nv[j + 1] = v }
    for (n in ns) {
        px = L + (W - L - R) * n / maxn
        printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", px, H - B + 16, n > out
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">connections (one heartbeat per second each)</text>\n", (L + W - R) / 2, H - 12 > out
    c = 0
    for (name in s) {
        c++; pts = ""
        for (k = 1; k <= count; k++) {
            n = nv[k]; if (!((name SUBSEP n) in y)) continue
            px = L + (W - L - R) * n / maxn; py = H - B - (H - B - T) * y[name SUBSEP n] / maxy
            pts = pts sprintf("%.1f,%.1f ", px, py)
            printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px, py, colors[c] > out
        }
        printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", colors[c], pts > out
        printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", W - R + 10, T + 16 * c, colors[c], name > out
    }
    print "</svg>" > out
}' "$summary"
echo
echo "results: $csv (every run), $summary (medians), chart: $out_dir/compare.svg"
