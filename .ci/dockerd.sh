#!/usr/bin/env bash
# A Docker engine for the OCI runtime tests (crates/cli/tests/it/oci.rs): registers
# the skillsandbox binary given as $1 as dockerd runtimes, then reloads the running
# dockerd or starts one (no iptables, no bridge: the host network is left alone),
# and waits for it. Idempotent.
#
# Runtimes (daemon.json `runtimes`; dockerd calls PATH RUNTIMEARGS... --root ... create ...):
#   skillsandbox               oci, deny-all egress (no manifest)
#   skillsandbox-test          oci with the test manifest (crates/cli/tests/oci/egress.yaml)
#   skillsandbox-test-session  the same, charged to session oci-test-kill
# Docker 20.10 (Debian 12) has no `docker run --annotation`, so per-container
# manifests are tested through the runtime CLI directly; here they come from the
# runtime's registration (`--default-manifest`, `--default-session`).
set -euo pipefail
bin=$(readlink -f "$1")
fixtures=$(cd "$(dirname "$0")/../crates/cli/tests/oci" && pwd)
state=/var/lib/skillsandbox-oci-test
mkdir -p "$state/traces"

# The config file of the dockerd that runs, else the default one.
conf=/etc/docker/daemon.json
pid=$(pgrep -x dockerd | head -1 || true)
if [ -n "$pid" ]; then
    c=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n '/^--config-file/{n;p}' | head -1)
    [ -n "$c" ] && conf=$c
fi
mkdir -p "$(dirname "$conf")"
python3 - "$conf" "$bin" "$fixtures" "$state" <<'PY'
import json, os, sys
conf, bin_, fx, state = sys.argv[1:]
c = json.load(open(conf)) if os.path.exists(conf) and os.path.getsize(conf) else {}
if not os.path.exists(conf):
    # A fresh engine: keep the host's network untouched.
    c.update({"iptables": False, "ip-masq": False, "bridge": "none"})
test = ["--trace-dir", state + "/traces", "--default-manifest", fx + "/egress.yaml",
        "--egress-hosts", fx + "/hosts"]
c.setdefault("runtimes", {}).update({
    "skillsandbox": {"path": bin_, "runtimeArgs": ["oci", "--trace-dir", state + "/traces"]},
    "skillsandbox-test": {"path": bin_, "runtimeArgs": ["oci"] + test},
    "skillsandbox-test-session": {"path": bin_, "runtimeArgs":
        ["--store", "sqlite:" + state + "/sessions.db", "oci"] + test
        + ["--default-session", "oci-test-kill"]},
})
json.dump(c, open(conf, "w"), indent=2)
PY

if [ -n "$pid" ]; then
    kill -HUP "$pid"
else
    nohup dockerd --config-file "$conf" >/var/log/skillsandbox-ci-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
    if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q skillsandbox-test-session; then
        exit 0
    fi
    sleep 1
done
echo "dockerd did not come up with the skillsandbox runtimes in 60 s:" >&2
tail -20 /var/log/skillsandbox-ci-dockerd.log >&2 || true
exit 1
