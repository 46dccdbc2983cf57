#!/usr/bin/env bash
# Nightly pipeline for a hardware or CI host: the project's tests, the suite on
# Debian's kernel and on linux-source-6.1 built from source, every hand-written
# mutant, the full generated mutation campaign, and the boot benchmark.
# Results land in $OUT (default results/nightly-<date>); the script exits
# non-zero when any step does, after running them all.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/nightly-$(date +%Y%m%d)}
mkdir -p "$OUT"
make venv >/dev/null
K=.venv/bin/kvmconf
status=0
step() { echo "== $*"; "$@" || status=1; }
step make test TEST_ARGS="--junitxml=$OUT/project-tests.xml"
step $K run --output "$OUT/debian" --label "nightly debian"
step $K run --source /usr/src/linux-source-6.1.tar.xz --output "$OUT/source" --label "nightly linux-source-6.1"
step $K compare "$OUT/debian" "$OUT/source"
step bash ci/mutants.sh syndbg
step bash ci/mutants.sh vfio
step $K mutate --features syndbg,vfio --output "$OUT/mutate"
step $K bench --boots 5 > "$OUT/bench.json"
exit $status
