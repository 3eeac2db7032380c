#!/usr/bin/env bash
# Where the server's CPU goes under load: runs the load benchmark against Verdict (unary
# Check, 64 in flight), samples the server with `perf record -e cpu-clock` (this VM has no
# hardware counters) for 5 s, and prints the shares of the samples that fall in each part of
# the request path (benches/perf_summary.py). Installs Debian's linux-perf when missing.
#
#   benches/profile.sh              # Markdown table on stdout
set -euo pipefail
cd "$(dirname "$0")/.."
if ! perf --version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null
fi
cargo bench --bench load --no-run --locked >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
LOAD_TARGETS=verdict LOAD_MODES=check LOAD_IN_FLIGHT=64 LOAD_SECONDS=12 \
    cargo bench --bench load --locked >"$work/load.log" 2>&1 &
load=$!
server=
for _ in $(seq 1 100); do
    server=$(pgrep -f 'target/release/verdict serve' | head -n 1 || true)
    [ -n "$server" ] && break
    sleep 0.1
done
[ -n "$server" ] || { cat "$work/load.log" >&2; exit 1; }
sleep 4  # past the warm-up second, into the measurement
perf record -q -e cpu-clock -F 2000 --call-graph dwarf,16384 -p "$server" -o "$work/perf.data" \
    -- sleep 5 >&2
wait "$load"
grep '^| verdict | check | 64' "$work/load.log" >&2
perf script -i "$work/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$work/perf.txt"
python3 benches/perf_summary.py "$work/perf.txt"
