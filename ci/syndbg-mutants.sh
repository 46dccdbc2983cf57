#!/usr/bin/env bash
# Run the syndbg suite on linux-source-6.1 with each mutant of ci/mutants/syndbg/
# applied; every mutant must be killed: `kvmconf run` exits 1 with a FAIL whose
# divergence names step, action, field, expected and observed values.  The v7
# mutant must also be recognised as the v7 profile (matches_profile: v7).
#
# usage: ci/syndbg-mutants.sh [SOURCE] [MUTANT.patch ...]
#   SOURCE   linux-source-6.1 tarball or tree (default: the one the Debian
#            package installs, /usr/src/linux-source-6.1.tar.xz)
#   MUTANT   patches to run (default: all of ci/mutants/syndbg/*.patch)
# Environment: KVMCONF (default .venv/bin/kvmconf), OUT (default results/mutants-syndbg).
set -euo pipefail
cd "$(dirname "$0")/.."

KVMCONF=${KVMCONF:-.venv/bin/kvmconf}
OUT=${OUT:-results/mutants-syndbg}
SOURCE=${1:-/usr/src/linux-source-6.1.tar.xz}
shift || true
if [ $# -gt 0 ]; then
    MUTANTS=("$@")
else
    MUTANTS=(ci/mutants/syndbg/*.patch)
fi
if [ ! -e "$SOURCE" ]; then
    echo "syndbg-mutants: no kernel source at $SOURCE (apt-get install linux-source-6.1)" >&2
    exit 2
fi

mkdir -p "$OUT"
survivors=0
printf '%-28s %-6s %s\n' mutant result divergence
for patch in "${MUTANTS[@]}"; do
    name=$(basename "$patch" .patch)
    dir="$OUT/$name"
    rm -rf "$dir"
    set +e
    "$KVMCONF" run --features syndbg --source "$SOURCE" --patch "$patch" \
        --output "$dir" --label "mutant syndbg/$name" >"$OUT/$name.log" 2>&1
    rc=$?
    set -e
    verdict=$(python3 - "$dir/run.json" "$name" "$rc" <<'EOF'
import json, sys
path, name, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
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
text = (f"{fails[0]['id']} step {d['step']} ({d['action']}): {d['field']} "
        f"expected {d['expected']}, observed {d['observed']}")
if name.startswith("v7-"):
    v7 = [c for c in fails if c["divergence"].get("matches_profile") == "v7"]
    if not v7:
        print(f"SURVIVED no divergence matches profile v7 ({text})")
        sys.exit(0)
    text = f"{v7[0]['id']} matches_profile v7; {text}"
print(f"KILLED {len(fails)} FAIL: {text}")
EOF
)
    printf '%-28s %s\n' "$name" "$verdict"
    case "$verdict" in KILLED*) ;; *) survivors=$((survivors + 1)) ;; esac
done
if [ "$survivors" -gt 0 ]; then
    echo "syndbg-mutants: $survivors mutant(s) survived" >&2
    exit 1
fi
echo "syndbg-mutants: all ${#MUTANTS[@]} mutants killed"
