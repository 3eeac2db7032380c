#!/usr/bin/env bash
# Scale: load time and memory of the real binary on generated bundles (the generator of
# benches/reload.rs: documents shared with users and nested teams, owners;
# policies of four shapes over 50 actions).
#
#   benches/scale.sh                      # the sizes below; a Markdown table on stdout
#   SIZES="100000:0 0:1000" benches/scale.sh
#
# For each TUPLES:POLICIES size it writes the bundle, then
# - times `verdict validate` under /usr/bin/time -v: wall time of a full load (read, parse,
#   validate, index) and the process's peak resident set;
# - starts `verdict serve` on loopback, waits until it serves, and reads its resident set
#   (VmRSS): the memory a serving process holds for the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100000:0 1000000:0 10000000:0 0:1000 0:10000"}
cargo build --release --locked --bin verdict >&2
reload=$(benches/bench-binary.sh reload)
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT
echo "| tuples | policies | bundle on disk | load (validate) | peak RSS (validate) | RSS serving |"
echo "|---|---|---|---|---|---|"
for size in $SIZES; do
    tuples=${size%%:*}
    policies=${size##*:}
    dir="$work/bundle-$tuples-$policies"
    RELOAD_BENCH_WRITE="$dir" RELOAD_BENCH_TUPLES="$tuples" RELOAD_BENCH_POLICIES="$policies" \
        "$reload" --bench >&2
    disk=$(du -sm "$dir" | cut -f1)
    /usr/bin/time -v target/release/verdict validate "$dir" >"$work/validate.out" 2>"$work/time.txt"
    wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
    peak=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
    target/release/verdict serve --policies "$dir" --grpc-addr 127.0.0.1:0 --metrics-addr off \
        --watch false --poll-interval 0 --log-format json 2>"$work/serve.log" &
    server=$!
    for _ in $(seq 1 600); do
        grep -q 'grpc listening' "$work/serve.log" && break
        sleep 0.2
    done
    grep -q 'grpc listening' "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }
    serving=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    echo "| $tuples | $policies | ${disk} MiB | ${wall} | $((peak / 1024)) MiB | $((serving / 1024)) MiB |"
    rm -rf "$dir"
done
