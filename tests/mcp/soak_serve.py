#!/usr/bin/env python3
"""The serve half of the soak (issue 20): RUNS mixed `exec_command` calls through one
long-lived `skillsandbox serve`, 8 in flight at a time, driven by the official MCP
Python SDK. Kinds: benign, non-zero exit, a detached daemon, refused egress, OOM, a
timeout. Afterwards: the server's RSS after the last run is at most 1.2x its RSS
after the first tenth of the runs; no process of any run is left; exactly one trace
file and one audit record per run; the audit chain verifies.

Env: SKILLSANDBOX_BIN (the binary), RUNS (default 200), WORKERS (default 8).
Prints `PASSED ...` or `FAILED: reason` and exits 0 or 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_mcp import marker_pids  # noqa: E402 - the MCP client test's process finder


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def call_for(i: int, marker: str) -> tuple[str, dict, object]:
    """The i-th call of the mix: (kind, arguments, expected exit code)."""
    kinds = [
        ("benign", {"command": ["echo", marker]}, 0),
        ("exit3", {"command": ["sh", "-c", f"exit 3 # {marker}"]}, 3),
        ("daemon", {"command": ["sh", "-c", f"(sleep 300 # {marker}\n) & echo started"]}, 0),
        ("egress", {"command": ["python3", "-c",
                                "import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
                                "except OSError: raise SystemExit(7)\n# " + marker]}, 7),
        ("benign2", {"command": ["sh", "-c", f"echo {marker} | wc -c"]}, 0),
        ("oom", {"command": ["python3", "-c", f"b = bytearray(512 << 20) # {marker}"],
                 "memory_mb": 64}, 137),
        ("benign3", {"command": ["true"]}, 0),
        ("exit3b", {"command": ["false"]}, 1),
        ("benign4", {"command": ["echo", "x"]}, 0),
        ("benign5", {"command": ["echo", "y"]}, 0),
    ]
    if i % 50 == 49:
        return ("timeout", {"command": ["sleep", "30"], "timeout_s": 1}, 124)
    return kinds[i % len(kinds)]


async def main() -> int:
    # Absolute: the server runs with its cwd in a temp dir.
    binary = str(Path(os.environ["SKILLSANDBOX_BIN"]).resolve())
    runs = int(os.environ.get("RUNS", "200"))
    workers = int(os.environ.get("WORKERS", "8"))
    marker = f"SOAKSERVE{uuid.uuid4().hex[:10]}"
    session = f"soak-{marker}"
    with tempfile.TemporaryDirectory(prefix="skillsandbox-soak-serve-") as tmp:
        base = Path(tmp)
        (base / "config").mkdir()
        state = base / "state"
        env = {
            **os.environ,
            "XDG_STATE_HOME": str(state),
            "XDG_CONFIG_HOME": str(base / "config"),
            "SKILLSANDBOX_SESSION_DB": str(state / "sessions.db"),
            "SKILLSANDBOX_AUDIT_LOG": str(state / "audit.jsonl"),
        }
        params = StdioServerParameters(
            command=binary,
            args=["serve", "--session", session, "--max-concurrent-runs", str(workers),
                  "--ceiling-memory", "256"],
            env=env,
            cwd=str(base),
        )
        failures: list[str] = []
        rss: dict[str, int] = {}
        done = 0
        # The server's log (a line per run) goes to a file, shown only on failure.
        server_log = base / "serve.log"
        errlog = open(server_log, "w")
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                server = [p for p in marker_pids(session) if Path(f"/proc/{p}/exe").resolve().name == "skillsandbox"]
                if len(server) != 1:
                    print(f"FAILED: cannot find the server process: {server}")
                    return 1
                pid = server[0]
                next_i = 0
                lock = anyio.Lock()

                async def worker() -> None:
                    nonlocal next_i, done
                    while True:
                        async with lock:
                            i = next_i
                            if i >= runs:
                                return
                            next_i += 1
                        kind, args, want = call_for(i, marker)
                        res = await s.call_tool("exec_command", args)
                        st = res.structured_content or {}
                        if st.get("exit_code") != want:
                            failures.append(f"run {i} ({kind}): exit {st.get('exit_code')}, want {want}: "
                                            f"{json.dumps(st)[:400]}")
                        async with lock:
                            done += 1
                            if done == max(1, runs // 10):
                                rss["tenth"] = rss_kib(pid)

                with anyio.fail_after(max(600, runs)):
                    async with anyio.create_task_group() as tg:
                        for _ in range(workers):
                            tg.start_soon(worker)
                rss["end"] = rss_kib(pid)
        # The server is gone: nothing of any run may be left.
        deadline = time.monotonic() + 10
        while marker_pids(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = marker_pids(marker)
        if left:
            failures.append(f"processes left: {left}")
        traces = list((state / "skillsandbox" / "traces").glob("*.json"))
        if len(traces) != runs:
            failures.append(f"{len(traces)} trace files for {runs} runs")
        records = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
        run_records = [r for r in records if r["kind"] == "run"]
        if len(run_records) != runs:
            failures.append(f"{len(run_records)} audit run records for {runs} runs")
        v = subprocess.run([binary, "audit", "verify", "--log", str(state / "audit.jsonl")],
                           capture_output=True, text=True)
        if v.returncode != 0:
            failures.append(f"audit verify: {v.stdout}{v.stderr}")
        ratio = rss["end"] / rss["tenth"]
        summary = (f"{runs} runs through serve, {workers} at a time; RSS {rss['tenth']} KiB after "
                   f"run {max(1, runs // 10)}, {rss['end']} KiB after run {runs} ({ratio:.2f}x)")
        if ratio > 1.2:
            failures.append(f"RSS grew {ratio:.2f}x (limit 1.2x)")
        errlog.close()
        if failures:
            print("--- the end of serve's log ---")
            print("\n".join(server_log.read_text().splitlines()[-30:]))
            for f in failures[:20]:
                print(f"FAIL - {f}")
            print(f"FAILED: {summary}")
            return 1
        print(f"PASSED: {summary}; nothing left, one trace and one audit record per run, chain verifies")
        return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
