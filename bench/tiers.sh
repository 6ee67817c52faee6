#!/usr/bin/env bash
# Process-tier launch cost: `skillsandbox exec --tier process -- /bin/true` against a
# bare fork+exec of /bin/true (hyperfine without a shell, so the baseline is exactly
# one fork+exec+wait), with the container tier and our binary's own start-up
# (`--version`) for scale. Prints the ratios; docs/tiers.md quotes a run.
#
#   bench/tiers.sh                 # uses target/release/skillsandbox if built, else debug
#   SKILLSANDBOX_BIN=... RUNS=300 bench/tiers.sh
#
# Each sandboxed run is complete: tier probe, cgroup, stage, Landlock, seccomp,
# trace file and audit-log record. Needs hyperfine and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SKILLSANDBOX_BIN:-}
if [ -z "$bin" ]; then
    for b in "${CARGO_TARGET_DIR:-target}/release/skillsandbox" target/release/skillsandbox \
             "${CARGO_TARGET_DIR:-target}/debug/skillsandbox" target/debug/skillsandbox; do
        if [ -x "$b" ]; then bin=$b; break; fi
    done
fi
[ -x "$bin" ] || { echo "build skillsandbox first (cargo build -p skillsandbox-cli)" >&2; exit 2; }
runs=${RUNS:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

flags="--trace-output $tmp/trace.json --audit-log $tmp/audit.jsonl"
# Without cgroup rights (non-root, no delegation) the runs need --allow-degraded.
if ! "$bin" exec --tier process $flags -- /bin/true 2>/dev/null; then
    flags="$flags --allow-degraded"
fi
container=1
"$bin" exec --tier container $flags -- /bin/true 2>/dev/null || container=0

cmds=("/bin/true" "$bin --version" "$bin exec --tier process $flags -- /bin/true")
[ "$container" = 1 ] && cmds+=("$bin exec --tier container $flags -- /bin/true")

echo "binary: $bin ($(file -b "$bin" | cut -d, -f1)); $runs runs each; $(nproc) CPUs; $(uname -r)"
hyperfine -N --warmup 20 --runs "$runs" --export-json "$tmp/h.json" "${cmds[@]}" >/dev/null

python3 - "$tmp/h.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
def med(i): return sorted(res[i]["times"])[len(res[i]["times"]) // 2] * 1000
names = ["bare fork+exec /bin/true", "skillsandbox --version", "process tier /bin/true", "container tier /bin/true"]
base = med(0)
print(f"{'':28}{'median':>10}{'mean':>10}{'ratio':>8}")
for i, r in enumerate(res):
    print(f"{names[i]:28}{med(i):9.2f}ms{r['mean']*1000:9.2f}ms{med(i)/base:7.1f}x")
startup = med(1)
print(f"process tier minus our binary's start-up: {med(2) - startup:.2f} ms "
      f"({(med(2) - startup) / base:.1f}x the bare fork+exec)")
PY
