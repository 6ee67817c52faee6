#!/usr/bin/env bash
# How long `skillsandbox hook claude-code` takes to decide one Bash PreToolUse event
# (parse, find and load the project profile, read the session store, reply), against
# plain fork+exec of /bin/true in the same run. Goal: <= 5 ms per decision.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/skillsandbox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/proj" && echo '{}' > "$work/proj/package.json"
export XDG_STATE_HOME=$work/state SKILLSANDBOX_SESSION_DB=$work/state/sessions.db
(cd "$work/proj" && "$bin" init >/dev/null)
cat > "$work/event.json" <<JSON
{"session_id":"bench-1","transcript_path":"/dev/null","cwd":"$work/proj","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"cargo test --workspace","description":"tests"},"tool_use_id":"toolu_bench"}
JSON
hyperfine -N --warmup 20 --runs 200 --export-json "$work/h.json" \
    "/bin/true" "$bin hook claude-code --input $work/event.json" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"].split()[0].rsplit("/", 1)[-1]: x for x in json.load(open(sys.argv[1]))["results"]}
t, h = r["true"]["median"] * 1e3, r["skillsandbox"]["median"] * 1e3
print(f"hook decision: median {h:.2f} ms ({h / t:.1f}x fork+exec of /bin/true at {t:.2f} ms); goal <= 5 ms")
PY
