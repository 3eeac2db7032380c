#!/usr/bin/env bash
# The relationship store at scale (issue 19): bulk import with `verdict relationships import`
# (COPY) and a replica's start from the store, on a throwaway PostgreSQL on loopback.
#
#   benches/store.sh                       # 10^6 and 10^7 tuples; a Markdown table on stdout
#   SIZES="100000" benches/store.sh
#
# For each size it generates a tuple file valid for the example bundle (`policies/`:
# documents each shared with ten users), imports it into a new database under
# /usr/bin/time -v (wall time, the importer's peak RSS), then starts `verdict serve` on that
# store and reads, once the store is loaded, the follower's own "relationship store loaded"
# time, the process's wall time to that point, and its peak and current resident set.
# Installs Debian's postgresql package if missing (as the tests do); everything else lives in
# a temporary directory removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 10000000"}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cargo build --release --locked --bin verdict >&2
verdict=target/release/verdict

work=$(mktemp -d)
chmod 755 "$work"  # PostgreSQL runs as `postgres` and must reach its directory
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    as_pg "$bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work/pg"
as_pg "$bin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w -t 60 \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null

echo "| tuples | import (COPY) | tuples/s | importer peak RSS | replica start: store loaded | process start to loaded | replica peak RSS | replica RSS serving |"
echo "|---|---|---|---|---|---|---|---|"
for tuples in $SIZES; do
    db="verdict_$tuples"
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
    url="postgres://postgres@127.0.0.1:$port/$db"
    "$verdict" migrate --store-url "$url" >&2
    file="$work/store-$tuples.tuples"
    awk -v n="$tuples" 'BEGIN { for (i = 0; i < n; i++)
        printf "Document::\"d%d\"#viewer@User::\"u%d\"\n", int(i / 10), (i * 7919) % 1000003 }' >"$file"
    /usr/bin/time -v "$verdict" relationships import "$file" --policies policies --store-url "$url" \
        >"$work/import.out" 2>"$work/import.time"
    grep -q "$tuples of them new" "$work/import.out" || { cat "$work/import.out" "$work/import.time" >&2; exit 1; }
    import_wall=$(grep 'Elapsed (wall clock)' "$work/import.time" | awk '{print $NF}')
    import_secs=$(python3 -c "import sys; p=sys.argv[1].split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))" "$import_wall")
    import_peak=$(grep 'Maximum resident set size' "$work/import.time" | awk '{print $NF}')
    rate=$(python3 -c "print(f'{$tuples / $import_secs:,.0f}')")
    rm -f "$file"

    started=$(date +%s.%N)
    "$verdict" serve --policies policies --store-url "$url" --grpc-addr 127.0.0.1:0 \
        --metrics-addr off --watch false --poll-interval 0 --log-format json 2>"$work/serve.log" &
    server=$!
    # Bounded: at most 10 minutes.
    for _ in $(seq 1 3000); do
        grep -q 'relationship store loaded' "$work/serve.log" && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.2
    done
    grep -q 'relationship store loaded' "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }
    ended=$(date +%s.%N)
    loaded_ms=$(grep 'relationship store loaded' "$work/serve.log" | head -1 | sed 's/.*"elapsed_ms":\([0-9]*\).*/\1/')
    sleep 1
    peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    total=$(python3 -c "print(f'{$ended - $started:.1f} s')")
    echo "| $tuples | ${import_secs} s | $rate | $((import_peak / 1024)) MiB | $((loaded_ms / 1000)).$(printf %03d $((loaded_ms % 1000))) s | $total | $((peak / 1024)) MiB | $((rss / 1024)) MiB |"
    as_pg "$bin/dropdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
done
