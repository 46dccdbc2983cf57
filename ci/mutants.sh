#!/usr/bin/env bash
# Run one feature's suite on linux-source-6.1 with each hand-written mutant of
# ci/mutants/<feature>/ applied; every mutant must be killed: `kvmconf run`
# exits 1 with a FAIL whose divergence names step, action, field, expected and
# observed values. A mutant whose header says "matches_profile NAME" must also
# be recognised as that model profile (e.g. v7 for syndbg, fixed for vfio).
#
# usage: ci/mutants.sh FEATURE [MUTANT.patch ...]
# Environment: SOURCE (default /usr/src/linux-source-6.1.tar.xz), KVMCONF
# (default .venv/bin/kvmconf), OUT (default results/mutants-<feature>), SEED (1).
# Exit 0 when every mutant is killed, 1 when one survives, 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
FEATURE=${1:?usage: ci/mutants.sh FEATURE [MUTANT.patch ...]}
shift
KVMCONF=${KVMCONF:-.venv/bin/kvmconf}
SOURCE=${SOURCE:-/usr/src/linux-source-6.1.tar.xz}
OUT=${OUT:-results/mutants-$FEATURE}
SEED=${SEED:-1}
if [ $# -gt 0 ]; then MUTANTS=("$@"); else MUTANTS=(ci/mutants/"$FEATURE"/*.patch); fi
[ -e "${MUTANTS[0]}" ] || { echo "mutants: no patches for feature '$FEATURE' in ci/mutants/$FEATURE" >&2; exit 2; }

mkdir -p "$OUT"
survivors=0
printf '%-30s %s\n' mutant verdict
for patch in "${MUTANTS[@]}"; do
    name=$(basename "$patch" .patch)
    dir="$OUT/$name"
    rm -rf "$dir"
    set +e
    "$KVMCONF" run --features "$FEATURE" --suite "$FEATURE" --source "$SOURCE" --patch "$patch" --seed "$SEED" \
        --output "$dir" --label "mutant $FEATURE/$name" >"$OUT/$name.log" 2>&1
    rc=$?
    set -e
    profile=$(sed -n '/^--- a\//q; s/.*matches_profile \([A-Za-z0-9_.]*\).*/\1/p' "$patch" | head -1)
    verdict=$(python3 - "$dir/run.json" "$rc" "$profile" <<'PY'
import json, sys
path, rc, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    run = json.load(open(path))
except (OSError, ValueError) as e:
    print(f"SURVIVED no run record ({e}), exit {rc}")
    sys.exit(0)
fails = [c for c in run["cases"] if c["status"] == "FAIL" and c.get("divergence")]
if rc != 1 or not fails:
    print(f"SURVIVED exit {rc}, {len(fails)} FAIL with a divergence")
    sys.exit(0)
d = fails[0]["divergence"]
text = f"{fails[0]['id']} step {d['step']} ({d['action']}): {d['field']} expected {d['expected']}, observed {d['observed']}"
if profile:
    named = [c for c in fails if c["divergence"].get("matches_profile") == profile]
    if not named:
        print(f"SURVIVED no divergence matches profile {profile} ({text})")
        sys.exit(0)
    text = f"{named[0]['id']} matches_profile {profile}; {text}"
print(f"KILLED {len(fails)} FAIL: {text}")
PY
)
    printf '%-30s %s\n' "$name" "$verdict"
    case "$verdict" in KILLED*) ;; *) survivors=$((survivors + 1)) ;; esac
done
if [ "$survivors" -gt 0 ]; then
    echo "mutants: $survivors $FEATURE mutant(s) survived" >&2
    exit 1
fi
echo "mutants: all ${#MUTANTS[@]} $FEATURE mutants killed"
