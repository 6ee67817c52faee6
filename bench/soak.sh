#!/usr/bin/env bash
# Soak (issue 20): RUNS mixed runs (default 10,000) through `skillsandbox exec`, 8 at
# a time: benign, non-zero exit, a detached daemon, timeout (its fork survives the
# skill), OOM, a missing command, a refused setup. Afterwards the leak test asserts
# zero leaked processes, orphaned stages, cgroups, mounts, scratch and temp dirs, a
# supervisor holding few fds during a run, exactly one trace and one audit record per
# run, and an audit chain that verifies (crates/cli/tests/it/escape_life.rs).
# Then the serve half (tests/mcp/soak_serve.py, the MCP Python SDK as client): as many
# mixed exec_command calls through one long-lived `skillsandbox serve`, 8 in flight;
# its RSS after the last run must be at most 1.2x its RSS after the first tenth, and
# nothing of any run may be left (processes, traces, audit records, chain).
# CI runs the same with RUNS=1000.
set -euo pipefail
cd "$(dirname "$0")/.."
export SKILLSANDBOX_TEST_REQUIRE=full
export SKILLSANDBOX_LEAK_RUNS=${RUNS:-10000}
export SKILLSANDBOX_LEAK_WORKERS=${WORKERS:-8}
start=$(date +%s)
cargo test -q -p skillsandbox-cli --test it -- --exact \
    escape_life::many_runs_of_every_kind_leave_nothing_behind
echo "soak: $SKILLSANDBOX_LEAK_RUNS runs, $SKILLSANDBOX_LEAK_WORKERS at a time, nothing leaked, in $(( $(date +%s) - start )) s"
start=$(date +%s)
SKILLSANDBOX_BIN="$(readlink -f "${CARGO_TARGET_DIR:-target}")/debug/skillsandbox" RUNS="$SKILLSANDBOX_LEAK_RUNS" \
    WORKERS="$SKILLSANDBOX_LEAK_WORKERS" python3 tests/mcp/soak_serve.py | tail -25
echo "soak (serve): done in $(( $(date +%s) - start )) s"
