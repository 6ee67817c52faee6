#!/usr/bin/env python3
"""Cost of the seccomp layer, measured inside the sandbox.

1. Allowed-syscall overhead, timed with CLOCK_MONOTONIC inside the sandbox under the
   `default` profile vs `permissive` (architecture checks only), alternating runs:
   `getppid()` (no rule names it: the kernel's per-syscall action cache skips the
   filter) and `openat()+close()` (`openat` has argument rules: the filter runs).
2. Refusal observation: a loop of refused `unshare(CLONE_NEWUSER)` calls, each
   answered by the supervisor through seccomp user notification (the price of
   recording every refused call in the trace).

Usage: cargo build --release && python3 bench/seccomp.py [--runs 15] [--iters 2000000]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

LOOP_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <fcntl.h>
int main(int argc, char **argv) {
    long n = atol(argv[2]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (argv[1][0] == 'a') { for (long i = 0; i < n; i++) syscall(SYS_getppid); }
    else if (argv[1][0] == 'o') { for (long i = 0; i < n; i++) close(syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY)); }
    else { for (long i = 0; i < n; i++) syscall(SYS_unshare, CLONE_NEWUSER); }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.2f\n", ns / n);
    return 0;
}
"""

MANIFEST = """skill: {{name: seccomp-bench, version: "0.1.0"}}
permissions:
  syscalls: {{profile: {profile}}}
  filesystem: {{read: [{dir}]{write}}}
resources: {{max_runtime_seconds: 120}}
entrypoint: {{command: /bin/true}}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--iters", type=int, default=2_000_000)
    ap.add_argument("--bin", default="target/release/skillsandbox")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="ss-seccomp-bench-")
    os.chmod(d, 0o755)
    subprocess.run(["gcc", "-O2", "-o", f"{d}/loop", "-x", "c", "-"], input=LOOP_C.encode(), check=True)
    env = dict(os.environ, XDG_STATE_HOME=d, SKILLSANDBOX_AUDIT_LOG=f"{d}/audit.jsonl")
    # "default+write" declares a writable path: the set-id rules stay in the filter
    # (docs/seccomp.md), so openat runs it.
    os.mkdir(f"{d}/out")
    for name, prof, write in (("default", "default", ""), ("permissive", "permissive", ""),
                              ("default+write", "default", f", write: [{d}/out]")):
        with open(f"{d}/{name}.yaml", "w") as f:
            f.write(MANIFEST.format(profile=prof, dir=d, write=write))

    def inside(profile, mode, iters):
        r = subprocess.run([a.bin, "exec", "-q", "--manifest", f"{d}/{profile}.yaml", "--",
                            f"{d}/loop", mode, str(iters)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"run failed: {r.stderr}")
        return float(r.stdout.strip())

    host = statistics.median(float(subprocess.run([f"{d}/loop", "a", str(a.iters)], capture_output=True,
                                                  text=True).stdout) for _ in range(a.runs))
    res = {"default": [], "permissive": []}
    opn = {"default": [], "permissive": [], "default+write": []}
    for _ in range(a.runs):
        for prof in res:
            res[prof].append(inside(prof, "a", a.iters))
        for prof in opn:
            opn[prof].append(inside(prof, "o", a.iters // 4))
    med = {k: statistics.median(v) for k, v in res.items()}
    omed = {k: statistics.median(v) for k, v in opn.items()}
    overhead = (med["default"] / med["permissive"] - 1) * 100
    o_overhead = (omed["default"] / omed["permissive"] - 1) * 100
    w_overhead = (omed["default+write"] / omed["permissive"] - 1) * 100
    refused = statistics.median(inside("default", "r", 2000) for _ in range(5))
    print(f"getppid() on the host, no filter:       {host:8.1f} ns/call")
    print(f"getppid() in the sandbox, permissive:   {med['permissive']:8.1f} ns/call")
    print(f"getppid() in the sandbox, default:      {med['default']:8.1f} ns/call")
    print(f"default profile overhead vs permissive: {overhead:+7.1f} %  (target <= 5 %)")
    print(f"openat+close in the sandbox, permissive:{omed['permissive']:8.1f} ns/pair")
    print(f"openat+close in the sandbox, default:   {omed['default']:8.1f} ns/pair")
    print(f"default profile overhead vs permissive: {o_overhead:+7.1f} %  (target <= 2 %)")
    print(f"openat+close, default, writable path:   {omed['default+write']:8.1f} ns/pair")
    print(f"  overhead vs permissive (set-id rules):{w_overhead:+7.1f} %")
    print(f"refused call, observed via user notif:  {refused / 1000:8.1f} us/call")
    print(json.dumps({"host_ns": host, "getppid_ns": med, "getppid_overhead_pct": overhead,
                      "openat_close_ns": omed, "openat_overhead_pct": o_overhead, "openat_write_overhead_pct": w_overhead, "refused_us": refused / 1000}))


if __name__ == "__main__":
    main()
