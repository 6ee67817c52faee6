#!/bin/bash
# Slugs of the titles given as arguments, built in a scratch file in the workdir of
# the run (the private /tmp), then printed.
set -eu
out="${TMPDIR:-/tmp}/slugs.txt"
: > "$out"
for title in "$@"; do
    printf '%s\n' "$title" | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9]\+/-/g' -e 's/^-//' -e 's/-$//' >> "$out"
done
cat "$out"
