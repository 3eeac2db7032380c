#!/usr/bin/env bash
# Instructions per Check in the whole server process (every thread: transport, tower layers,
# handler, decision log writer), under valgrind's callgrind: counters are zeroed after 200
# warm-up requests and dumped after N more, sent one at a time by a grpcio client outside the
# measured process. Deterministic where wall-clock load tests on this VM are not (±20%), so two
# builds can be compared by their instructions.
#
#   benches/server-instructions.sh [BINARY...]     # default: a release build of this tree
#   N=2000 benches/server-instructions.sh /tmp/verdict-before /tmp/verdict-after
#
# The server runs as shipped (decision log on at its default sampling, to a file), on the
# example bundle, with no OTLP endpoint. Needs valgrind and Python 3 (a grpcio venv is made in
# .tools/, as tests/it/clients.rs makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
N=${N:-2000}
GRPCIO=1.85.1
venv=$root/.tools/python-grpcio-$GRPCIO
if ! command -v valgrind >/dev/null; then
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
if [ ! -e "$venv/.installed" ]; then
    python3 -m venv --clear "$venv"
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check \
        "grpcio==$GRPCIO" "grpcio-tools==$GRPCIO"
    touch "$venv/.installed"
fi
if [ $# -eq 0 ]; then
    cargo build -q --release --locked --bin verdict
    set -- "$root/target/release/verdict"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| binary | requests | instructions per request |"
echo "|---|---|---|"
for binary in "$@"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    run=$(mktemp -d -p "$out")
    valgrind --tool=callgrind --callgrind-out-file="$run/cg.%p" "$binary" serve \
        --policies "$root/policies" --grpc-addr "127.0.0.1:$port" --metrics-addr off \
        --watch false --poll-interval 0 2>"$run/server.log" &
    server=$!
    for _ in $(seq 1 600); do
        grep -q "grpc listening" "$run/server.log" && break
        sleep 0.5
    done
    "$venv/bin/python3" benches/server-instructions.py "127.0.0.1:$port" 200 >/dev/null
    callgrind_control -z "$server" >/dev/null 2>&1
    answers=$("$venv/bin/python3" benches/server-instructions.py "127.0.0.1:$port" "$N")
    callgrind_control -d "$server" >/dev/null 2>&1
    kill -TERM "$server"
    wait "$server" || true
    dump=$(ls "$run"/cg.*.1 | head -1)
    total=$(grep -m1 '^summary:' "$dump" | tr -dc '0-9')
    echo "| $binary | $N ($answers) | $((total / N)) |"
done
