#!/usr/bin/env python3
"""Launch-to-exit latency of `/bin/true`: skillsandbox exec vs bwrap vs bare fork+exec.

The three variants alternate within one run (so machine noise hits all of them
alike); the report gives medians and ratios. Usage:

    cargo build --release
    python3 bench/launch.py [--runs 200] [--bin target/release/skillsandbox]
    python3 bench/launch.py --runs 40 --gate bench/baseline.json   # CI

Writes a JSON summary to stdout's last line for scripts. With --gate, exits 1 when a
ratio is more than twice the one recorded in the baseline file (a gross regression:
shared hosts are too noisy for a finer bound), naming each.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import gate  # bench/gate.py


def timed(argv, env):
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter_ns() - t0
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return dt / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--bin", default="target/release/skillsandbox")
    ap.add_argument("--gate", metavar="BASELINE_JSON",
                    help="fail on a ratio above twice the recorded one")
    a = ap.parse_args()
    state = tempfile.mkdtemp(prefix="ss-bench-")
    env = dict(os.environ, XDG_STATE_HOME=state, SKILLSANDBOX_AUDIT_LOG=os.path.join(state, "audit.jsonl"))
    variants = {
        "fork+exec": ["/bin/true"],
        "skillsandbox exec": [a.bin, "exec", "-q", "--", "/bin/true"],
        "skillsandbox process": [a.bin, "exec", "-q", "--tier", "process", "--", "/bin/true"],
    }
    bwrap = shutil.which("bwrap")
    if bwrap:
        variants["bwrap"] = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                             "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    times = {k: [] for k in variants}
    try:
        for argv in variants.values():  # warm caches
            timed(argv, env)
        for _ in range(a.runs):
            for k, argv in variants.items():
                times[k].append(timed(argv, env))
    finally:  # also when a variant fails or its binary is missing
        shutil.rmtree(state, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["fork+exec"]
    print(f"{'variant':<20} {'median ms':>10} {'p90 ms':>8} {'x fork+exec':>12} {'x bwrap':>8}")
    for k, v in times.items():
        p90 = statistics.quantiles(v, n=10)[-1]
        vs_bwrap = f"{med[k] / med['bwrap']:.2f}" if "bwrap" in med else "-"
        print(f"{k:<20} {med[k]:>10.2f} {p90:>8.2f} {med[k] / base:>12.2f} {vs_bwrap:>8}")
    ratios = {"container_vs_fork_exec": med["skillsandbox exec"] / base,
              "process_vs_fork_exec": med["skillsandbox process"] / base}
    if "bwrap" in med:
        ratios["container_vs_bwrap"] = med["skillsandbox exec"] / med["bwrap"]
    print(json.dumps({"runs": a.runs, "median_ms": med, "ratios": ratios}))
    if a.gate:
        gate.check(a.gate, "launch", ratios)

if __name__ == "__main__":
    main()
