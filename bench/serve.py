#!/usr/bin/env python3
"""The warm path (issue 17): `exec_command /bin/true` through a long-lived
`skillsandbox serve`, with a stage kept spawned ahead of each run (the default) and
without (`serve --no-warm`), beside bwrap and bare fork+exec, in one run with the
variants alternating. Driven by the official MCP Python SDK (tests/mcp).

Reports medians of:
- launch: from the run's start in the server to the skill's `execve` (the trace's
  phases up to `go`): what the warm path shortens; the issue's goal is <= 2 ms;
- round trip: the MCP call as the client sees it, which also holds the skill's run,
  the durable trace and audit record, and the protocol;
- bwrap --unshare-all and fork+exec of /bin/true, launch to exit, as baselines.

Usage: python3 bench/serve.py [--runs 40] [--bin target/release/skillsandbox] [--phases]
       python3 bench/serve.py --runs 20 --gate bench/baseline.json   # CI
The last line of stdout is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gate  # noqa: E402 - bench/gate.py


def wall_ms(argv: list[str]) -> float:
    t0 = time.perf_counter_ns()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return (time.perf_counter_ns() - t0) / 1e6


PHASES: dict[str, dict[str, list[float]]] = {"warm": {}, "cold": {}}


def launch_ms(trace_path: str, name: str) -> tuple[float, bool]:
    """(ms from the run's start to `go`, whether the trace says the stage was warm)."""
    with open(trace_path) as f:
        trace = json.load(f)
    total = 0.0
    for phase in trace["timings"]:
        total += phase["us"] / 1000
        PHASES[name].setdefault(phase["phase"], []).append(phase["us"] / 1000)
        if phase["phase"] == "go":
            break
    else:
        sys.exit(f"{trace_path}: no `go` phase in the timings")
    warm = any("ahead of the launch" in e.get("detail", "") for e in trace["events"])
    return total, warm


async def call(session: ClientSession) -> tuple[float, str]:
    t0 = time.perf_counter_ns()
    res = await session.call_tool("exec_command", {"command": ["/bin/true"]})
    dt = (time.perf_counter_ns() - t0) / 1e6
    out = res.structured_content or {}
    if res.is_error or out.get("exit_code") != 0 or not out.get("trace_path"):
        sys.exit(f"exec_command failed: {res.content}")
    return dt, out["trace_path"]


async def bench(a: argparse.Namespace) -> dict:
    state = tempfile.mkdtemp(prefix="ss-bench-serve-")
    env = dict(os.environ, XDG_STATE_HOME=state)
    env.pop("SKILLSANDBOX_AUDIT_LOG", None)
    times: dict[str, list[float]] = {k: [] for k in
                                     ("warm launch", "cold launch", "warm round trip",
                                      "cold round trip", "bwrap", "fork+exec")}
    bwrap = shutil.which("bwrap")
    bwrap_argv = [bwrap or "bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                  "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    try:
        async with AsyncExitStack() as stack:
            sessions = {}
            for name, extra in (("warm", []), ("cold", ["--no-warm"])):
                params = StdioServerParameters(
                    command=a.bin,
                    args=["serve", "--audit-log", os.path.join(state, f"{name}.jsonl"), *extra],
                    env=env)
                read, write = await stack.enter_async_context(stdio_client(params))
                s = await stack.enter_async_context(ClientSession(read, write))
                await s.initialize()
                await call(s)  # warm caches
                sessions[name] = s
            for i in range(a.runs):
                order = ["warm", "cold"] if i % 2 == 0 else ["cold", "warm"]
                for name in order:
                    rt, path = await call(sessions[name])
                    launch, warm = launch_ms(path, name)
                    if warm != (name == "warm"):
                        sys.exit(f"{name} run's trace says warm={warm}: {path}")
                    times[f"{name} launch"].append(launch)
                    times[f"{name} round trip"].append(rt)
                    # The server is idle again before the baselines: the warm one
                    # respawns its stage meanwhile, as it would between an agent's calls.
                    await anyio.sleep(0.005)
                if bwrap:
                    times["bwrap"].append(wall_ms(bwrap_argv))
                times["fork+exec"].append(wall_ms(["/bin/true"]))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return {k: statistics.median(v) for k, v in times.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--bin", default="target/release/skillsandbox")
    ap.add_argument("--gate", metavar="BASELINE_JSON",
                    help="fail on a ratio above twice the recorded one (section `serve`)")
    ap.add_argument("--phases", action="store_true",
                    help="also print each launch phase's median, warm and cold")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    med = anyio.run(bench, a)
    print(f"medians of {a.runs} alternating rounds ({os.cpu_count()} CPUs):")
    for k, v in med.items():
        print(f"  {k:<16} {v:7.2f} ms")
    if a.phases:
        print("launch phases (median ms, in the warm run's order):  warm   cold")
        for phase, v in PHASES["warm"].items():
            cold = PHASES["cold"].get(phase)
            print(f"  {phase:<16} {statistics.median(v):7.3f} "
                  f"{statistics.median(cold) if cold else float('nan'):7.3f}")
    summary = {"runs": a.runs, "medians_ms": med,
               "warm_launch_vs_cold": med["warm launch"] / med["cold launch"]}
    if "bwrap" in med:
        summary["warm_launch_vs_bwrap"] = med["warm launch"] / med["bwrap"]
        summary["warm_round_trip_vs_bwrap"] = med["warm round trip"] / med["bwrap"]
        print(f"warm launch (request -> execve) {med['warm launch']:.2f} ms = "
              f"{summary['warm_launch_vs_bwrap']:.2f}x bwrap launch-to-exit; "
              f"{summary['warm_launch_vs_cold']:.2f}x the cold launch; goal <= 2 ms")
    print(json.dumps(summary))
    if a.gate:
        gate.check(a.gate, "serve", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
