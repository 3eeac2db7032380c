#!/usr/bin/env bash
# The third-party cross-check of the load bench (issue 20): h2load (nghttp2) drives unary
# `Check` at 64 requests in flight (4 connections x 16 streams) against the no-op server and
# against Verdict with its decision log off and as shipped (every deny and 1% of allows logged,
# JSON lines on stderr into a file), one request body repeated: a deny (so every decision is
# logged when the log is on: the all-deny load) or, with H2LOAD_BODY=allow, an allow.
# Servers on CPU 0, h2load on CPU 1, as in the load bench; H2LOAD_PIN=0 pins nothing, so the
# server and h2load share both cores as the scheduler likes (the server's decision-log writer
# can then run beside its request threads). Installs nghttp2-client when missing.
#
#   benches/h2load.sh                      # 5 s per run after 1 s of warm-up
#   H2LOAD_SECONDS=10 H2LOAD_ROUNDS=3 benches/h2load.sh
#   H2LOAD_PIN=0 benches/h2load.sh
#
# h2load counts any HTTP 200 as a success whatever the grpc-status trailer says, so each
# server's answer to the same body is first checked through tonic (--h2load-verify), and
# Verdict's own counters (grpc_server_handled_total by code, decisions by result) are read
# from /metrics after each run and printed beside h2load's count.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${H2LOAD_SECONDS:-5}
rounds=${H2LOAD_ROUNDS:-1}
body=${H2LOAD_BODY:-deny}
if [ "${H2LOAD_PIN:-1}" = 0 ]; then
    server_cpu=()
    client_cpu=()
    placement="nothing pinned"
else
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
    placement="servers on CPU 0, h2load on CPU 1"
fi
if ! command -v h2load >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
harness=$(benches/bench-binary.sh load)
verdict=target/release/verdict
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$harness" --h2load-setup "$work" >/dev/null

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until $1 (host:port) accepts connections, for at most 20 s.
wait_port() {
    for _ in $(seq 200); do
        if python3 -c 'import socket, sys; h, p = sys.argv[1].split(":"); socket.create_connection((h, int(p)), 1).close()' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

# Runs h2load against $1 (host:port); prints "requests/s succeeded failed p50 p99"-ish fields.
run_h2load() {
    "${client_cpu[@]}" h2load -c 4 -m 16 -t 1 -D "$seconds" --warm-up-time 1 \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$work/$body.grpc" "http://$1/verdict.v1.Authorization/Check" >"$work/h2load.out"
    python3 - "$work/h2load.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rate = re.search(r"finished in [^,]+, ([0-9.]+) req/s", text).group(1)
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
codes = re.search(r"status codes: (\d+) 2xx", text).group(1)
req = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
print(f"{float(rate):.0f} {m.group(4)} {m.group(5)} {m.group(6)} {codes} mean={req.group(3)} sd={req.group(4)} max={req.group(2)}")
PY
}

# Starts the no-op server; sets $noop to its address. (The servers are started by functions
# called directly, never inside $(...), so that their pids are this shell's to stop.)
start_noop() {
    "${server_cpu[@]}" "$harness" --noop-server >"$work/noop.out" 2>&1 &
    pids+=($!)
    noop=
    for _ in $(seq 200); do
        noop=$(sed -n 's/^noop listening //p' "$work/noop.out")
        [ -n "$noop" ] && break
        sleep 0.1
    done
    wait_port "$noop"
}

# start_verdict NAME [serve flags...]: sets $grpc and $metrics to its addresses.
start_verdict() {
    local name=$1
    shift
    grpc=127.0.0.1:$(free_port)
    metrics=127.0.0.1:$(free_port)
    "${server_cpu[@]}" "$verdict" serve --policies "$work/bundle" --grpc-addr "$grpc" \
        --metrics-addr "$metrics" --log-format json --max-batch 100 "$@" \
        >/dev/null 2>"$work/$name.stderr" &
    pids+=($!)
    wait_port "$grpc"
    for _ in $(seq 200); do
        curl -fs "http://$metrics/readyz" >/dev/null && break
        sleep 0.1
    done
}

# Verdict's own count of Check calls by gRPC code (including h2load's warm-up, and the streams
# still in flight when it stops, which end CANCELLED), of decisions, and of decision log
# records dropped, from /metrics.
counters() {
    curl -fs "http://$1/metrics" | python3 -c '
import re, sys
codes = {}
decisions = {}
dropped = 0
for line in sys.stdin:
    if line.startswith("grpc_server_handled_total{") and "grpc_method=\"Check\"" in line:
        code = re.search(r"grpc_code=\"(\w+)\"", line).group(1)
        codes[code] = codes.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
    if line.startswith("verdict_decision_log_dropped_total"):
        dropped += int(float(line.rsplit(" ", 1)[1]))
    m = re.match(r"verdict_decisions_total\{(.*)\} (\S+)", line)
    if m and "front_end=\"grpc\"" in m.group(1):
        d = re.search(r"decision=\"(\w+)\"", m.group(1))
        if d:
            decisions[d.group(1)] = decisions.get(d.group(1), 0) + float(m.group(2))
print(f"Check calls by code {codes}, decisions {dict((k, int(v)) for k, v in sorted(decisions.items()))}, decision log records dropped {dropped}")
'
}

echo "h2load: $seconds s per run after 1 s of warm-up, 4 connections x 16 streams, body: $body; $placement"
echo
echo "| round | server | requests/s | / no-op | succeeded | failed | errored | HTTP 2xx | h2load's request times | the server's own counters |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
    start_noop
    "$harness" --h2load-verify "$noop" "$work/$body.grpc" ok >/dev/null
    read -r noop_rate ok failed errored codes times < <(run_h2load "$noop")
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
    echo "| $round | no-op | $noop_rate | 1.00 | $ok | $failed | $errored | $codes | $times | |"
    for log in off shipped; do
        if [ "$log" = off ]; then
            flags=(--decision-log-deny-rate 0 --decision-log-allow-rate 0)
        else
            flags=()
        fi
        start_verdict "verdict-$log" "${flags[@]}"
        "$harness" --h2load-verify "$grpc" "$work/$body.grpc" "$body" >/dev/null
        read -r rate ok failed errored codes times < <(run_h2load "$grpc")
        own=$(counters "$metrics")
        kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
        logged=$(grep -c '"message":"decision"' "$work/verdict-$log.stderr" || true)
        ratio=$(python3 -c "print(f'{$rate / $noop_rate:.2f}')")
        echo "| $round | verdict, decision log $log | $rate | $ratio | $ok | $failed | $errored | $codes | $times | $own; $logged records logged |"
    done
done
