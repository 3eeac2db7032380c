#!/usr/bin/env bash
# Instructions per decision under valgrind's callgrind (see benches/instructions.rs). Needs
# valgrind (Debian's package; installed here when missing). Prints one Markdown table row per
# workload: instructions counted inside the measured function, divided by the decisions made.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-20}
if ! command -v valgrind >/dev/null; then
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
binary=$(benches/bench-binary.sh instructions)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "| workload | decisions | instructions per decision |"
echo "|---|---|---|"
# The decision log's writer thread is counted too (its `drain`), so that a record's cost is
# counted wherever it is paid, and so are tokio's blocking threads (large batches are decided
# there).
for workload in ${WORKLOADS:-owner-verdict owner-cedar example-verdict owner-handler owner-batch owner-handler-log-queued owner-handler-log-tracing context-verdict context-handler}; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$workload" \
        --toggle-collect='instructions::measured_*' \
        --toggle-collect='*decision_log::writer::drain*' \
        --toggle-collect='tokio::runtime::blocking::pool::Inner::run' "$binary" "$workload" "$PASSES" \
        >"$out/$workload.log" 2>&1
    decisions=$(grep -o '[0-9]* decisions' "$out/$workload.log" | cut -d' ' -f1)
    total=$(grep -o 'Collected : [0-9]*' "$out/$workload.log" | tr -dc '0-9')
    echo "| $workload | $decisions | $((total / decisions)) |"
done
