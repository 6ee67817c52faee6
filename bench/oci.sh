#!/usr/bin/env bash
# `docker run` wall time, SkillSandbox vs runc: N alternating runs of
# `docker run --rm --network none IMAGE sh -c :` per runtime, median and p90 in ms.
# Needs a dockerd with the runtime registered (.ci/dockerd.sh) and the test image
# (crates/cli/tests/it/oci.rs imports skillsandbox-oci-test:busybox).
#   bash bench/oci.sh [N] [RUNTIME...]      (default: 30 runc skillsandbox)
set -euo pipefail
n=${1:-30}; shift || true
runtimes=("${@:-runc}")
[ $# -eq 0 ] && runtimes=(runc skillsandbox)
image=${IMAGE:-skillsandbox-oci-test:busybox}
declare -A times
for _ in $(seq 1 "$n"); do
    for rt in "${runtimes[@]}"; do
        s=$(date +%s%N)
        docker run --rm --runtime "$rt" --network none "$image" sh -c : >/dev/null
        e=$(date +%s%N)
        times[$rt]+="$(( (e - s) / 1000000 )) "
    done
done
for rt in "${runtimes[@]}"; do
    # shellcheck disable=SC2086
    printf '%s\n' ${times[$rt]} | sort -n | awk -v rt="$rt" '
        { a[NR] = $1 } END { printf "%-24s median %4d ms  p90 %4d ms  (n=%d)\n", rt, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], NR }'
done
