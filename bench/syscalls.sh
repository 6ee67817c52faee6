#!/usr/bin/env bash
# Syscall overhead of confinement (issue 21): loops timed inside the process, run
# directly and under each configuration, alternating, median of RUNS (default 9).
#   open:  200,000 os.open/os.close of one file (/usr/lib/os-release)
#   deep:  the same, of a file 12 directories below a declared path
#   stat:  200,000 os.stat of a file 12 directories deep
#   rw:    200,000 getpid + 1-byte write + read on a pipe
# Prints each loop's median in ms and its ratio to direct.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/skillsandbox
runs=${RUNS:-9}
# Not under /tmp or /var/tmp: those are the sandbox's own scratch inside.
work=$(mktemp -d "$PWD/target/ss-syscalls.XXXXXX")
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
deep=$work/a/b/c/d/e/f/g/h/i/j/k/l
mkdir -p "$deep" && echo x > "$deep/f"
cat > "$work/loops.py" <<'PY'
import os, sys, time
kind, deep = sys.argv[1], sys.argv[2]
n = 200000
t = time.perf_counter()
if kind == "open":
    for _ in range(n):
        os.close(os.open("/usr/lib/os-release", os.O_RDONLY))
elif kind == "deep":
    for _ in range(n):
        os.close(os.open(deep + "/f", os.O_RDONLY))
elif kind == "stat":
    for _ in range(n):
        os.stat(deep + "/f")
else:
    r, w = os.pipe()
    for _ in range(n):
        os.getpid(); os.write(w, b"x"); os.read(r, 1)
print((time.perf_counter() - t) * 1000)
PY
declare -A cmd=(
    [direct]="python3"
    [container]="$bin exec -q --read $work -- python3"
    [container-write]="$bin exec -q --read $work --write $work/out -- python3"
    [container-no-landlock]="env SKILLSANDBOX_DANGEROUSLY_DISABLE_LAYER_FOR_TESTS=landlock $bin exec -q --allow-degraded --read $work -- python3"
    [process]="$bin exec -q --tier process --read $work -- python3"
)
mkdir -p "$work/out"
order=(direct container container-write container-no-landlock process)
out=$work/results
for loop in open deep stat rw; do
    for ((i = 0; i < runs; i++)); do
        for c in "${order[@]}"; do
            echo "$loop $c $(${cmd[$c]} "$work/loops.py" "$loop" "$deep")" >> "$out"
        done
        order=("${order[@]:1}" "${order[0]}")   # rotate: no configuration always first
    done
done
python3 - "$out" <<'PY'
import statistics, sys, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    loop, conf, ms = line.split()
    d[(loop, conf)].append(float(ms))
print(f"{'loop':<6}{'configuration':<24}{'median ms':>10}{'vs direct':>10}")
for loop in ("open", "deep", "stat", "rw"):
    base = statistics.median(d[(loop, "direct")])
    for conf in ("direct", "container", "container-write", "container-no-landlock", "process"):
        m = statistics.median(d[(loop, conf)])
        print(f"{loop:<6}{conf:<24}{m:>10.0f}{m / base:>9.2f}x")
PY
