#!/usr/bin/env bash
# A longer run of every fuzz target (crates/fuzz) than CI's 60 s each: the committed
# corpus, then random inputs for SECONDS per target (default 600), release build.
# A failure prints the input and its seed; add it under
# crates/fuzz/tests/__fuzz__/<target>/crashes so every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
export SKILLSANDBOX_FUZZ_SECONDS="${SECONDS_PER_TARGET:-600}"
cargo test --release -p skillsandbox-fuzz --test targets -- --test-threads="$(nproc)"
