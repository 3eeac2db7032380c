#!/usr/bin/env bash
# Builds the bench NAME (release, locked) and prints the path of its executable, for the
# scripts that run a bench binary under another tool (callgrind, a generated bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
cargo bench --bench "$name" --no-run --locked >&2
cargo bench --bench "$name" --no-run --locked --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
        print(m["executable"])' "$name"
