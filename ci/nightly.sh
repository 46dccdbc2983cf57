#!/usr/bin/env bash
# Nightly pipeline for a hardware or CI host: the project's tests, the suite on
# Debian's kernel and on linux-source-6.1 built from source, the mutation
# campaign of every registered feature with kernel files (its unmutated kernel
# first, then each hand-written mutant of ci/mutants/<feature>/ and each
# generated one, each run once), the boot benchmark and a 30-minute soak
# (ci/smoke-repeat.sh N is the same soak counted in cycles).
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
step make test TEST_ARGS="-m nightly --junitxml=$OUT/project-tests-nightly.xml"
step $K run --output "$OUT/debian" --label "nightly debian"
step $K run --source /usr/src/linux-source-6.1.tar.xz --output "$OUT/source" --label "nightly linux-source-6.1"
step $K compare "$OUT/debian" "$OUT/source"
# One campaign per feature, so a feature whose unmutated kernel is red does not stop the others.
# (ci/mutants.sh FEATURE is the hand-written part of the same campaign: not run again here.)
mutable=$(.venv/bin/python -c 'from harness.mutate import generate; print(" ".join(generate.mutable_features()))') \
    || { echo "nightly: cannot read the feature registry" >&2; status=1; mutable=; }
for feature in $mutable; do
    step $K mutate --features "$feature" --output "$OUT/mutate-$feature"
done
step $K bench --boots 5 > "$OUT/bench.json"
# 30 minutes of boot, smoke and shutdown: no failure, no leaked QEMU or folder
step $K soak --minutes 30 --output "$OUT/soak"
exit $status
