#!/usr/bin/env bash
# Run one feature's suite on linux-source-6.1 with each hand-written mutant of
# ci/mutants/<feature>/ (or the patches named) applied, after the unmutated
# kernel has passed the same run. This is `kvmconf mutate --hand-written-only`
# (through `kvmconf mutate --patch`), so the definition
# of killed is the campaign's one (harness/mutate/campaign.py: verdict()): a
# mutant is KILLED by a case that FAILs on it and not on the unmutated kernel;
# a patch whose header says "profile_verdict NAME" is killed only when the
# run's profile_verdict for the feature is NAME (e.g. v7 for syndbg, fixed for
# vfio). Each mutant runs once.
#
# usage: ci/mutants.sh FEATURE [MUTANT.patch ...]
# Environment: SOURCE (default /usr/src/linux-source-6.1.tar.xz), PYTHON
# (default .venv/bin/python), OUT (default results/mutants-<feature>), SEED (1).
# Exit 0 when every mutant is killed, 1 when one is not (survived or wrong
# profile), 2 on bad usage, a red unmutated kernel or a run that broke.
set -uo pipefail
if [ $# -lt 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
    echo "usage: ci/mutants.sh FEATURE [MUTANT.patch ...]" >&2
    exit 2
fi
FEATURE=$1
shift
patches=()
for patch in "$@"; do   # named relative to the caller's folder
    case $patch in /*) patches+=("$patch") ;; *) patches+=("$PWD/$patch") ;; esac
done
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SOURCE=${SOURCE:-/usr/src/linux-source-6.1.tar.xz}
OUT=${OUT:-results/mutants-$FEATURE}
SEED=${SEED:-1}
args=(--features "$FEATURE" --hand-written-only --source "$SOURCE" --seed "$SEED" --output "$OUT")
for patch in "${patches[@]}"; do args+=(--patch "$patch"); done
exec "$PYTHON" -m harness.cli mutate "${args[@]}"
