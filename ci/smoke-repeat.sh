#!/usr/bin/env bash
# The smoke suite N times in a row (default 100), each a real `kvmconf run` (boot,
# SSH, uploads, poweroff), through `kvmconf soak`: exits non-zero when any cycle had
# a case that did not PASS, left a QEMU process or a temporary folder behind.
# Its figures (cycles, failures by kind, leaks, peak RSS) are in $OUT/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
OUT=${OUT:-results/smoke-repeat-$(date +%Y%m%d-%H%M%S)}
make venv >/dev/null
exec .venv/bin/kvmconf soak --cycles "$N" --minutes $((N * 5)) --output "$OUT"
