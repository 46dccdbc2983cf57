#!/bin/sh
# Runs kvmconf on this machine's running kernel and reports each case of its run
# record to LAVA with lava-test-case (the lava-test-shell helpers are on PATH
# inside a LAVA test; tests/test_pipelines.py runs this script with
# lava-dispatcher's own helpers).
#
#   lava-kvmconf.sh [--output DIR] [-- KVMCONF-RUN-ARGS...]
#       kvmconf run --target local --output DIR ARGS, then report DIR/run.json
#   lava-kvmconf.sh --record RUN.json
#       report an existing run record only
#
# Result mapping (kvmconf status → LAVA result):
#   PASS → pass, FAIL → fail, SKIP → skip,
#   ERROR → fail     the case could not reach a verdict (crash, hang, harness
#                    trouble): a red in LAVA, like kvmconf's own exit status, so
#                    that it is looked at and not averaged away as "unknown"
#   MISS → unknown   the case never ran (the run stopped first): no verdict either way
#   anything else → unknown
# LAVA test case ids allow [-_a-zA-Z0-9.] only: the case id's "/" becomes "." and
# any other character "_" (smoke/first → smoke.first). A case's reason, when it has
# one, is printed on the line before its result.
# With a run, one more case, kvmconf-run, is kvmconf's exit status (0 → pass).
# Exits 0 once the results are reported (LAVA's verdict is in them), 1 when there
# is no readable run record.
set -u
KVMCONF=${KVMCONF:-.venv/bin/kvmconf}
PYTHON=${PYTHON:-python3}
out=results/lava
record=
while [ $# -gt 0 ]; do
    case "$1" in
        --output) out=$2; shift 2 ;;
        --record) record=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "lava-kvmconf.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ -z "$record" ]; then
    rc=0
    "$KVMCONF" run --target local --output "$out" --quiet "$@" || rc=$?
    record=$out/run.json
    if [ "$rc" -eq 0 ]; then run_result=pass; else run_result=fail; fi
else
    run_result=
fi

cases=$("$PYTHON" - "$record" <<'PY'
import json, re, sys
RESULT = {"PASS": "pass", "FAIL": "fail", "SKIP": "skip", "ERROR": "fail", "MISS": "unknown"}
try:
    with open(sys.argv[1]) as f:
        run = json.load(f)
    cases = run["cases"]
except (OSError, ValueError, KeyError, TypeError) as e:
    print(f"lava-kvmconf.sh: no readable run record {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
for case in cases:
    cid = re.sub(r"[^-_a-zA-Z0-9.]", "_", str(case.get("id", "")).replace("/", "."))
    reason = " ".join(str(case.get("reason") or "").split())
    print(f"{cid}\t{RESULT.get(case.get('status'), 'unknown')}\t{case.get('status')}\t{reason}")
PY
) || {
    [ -n "$run_result" ] && lava-test-case kvmconf-run --result fail
    exit 1
}

tab=$(printf '\t')
printf '%s\n' "$cases" | while IFS="$tab" read -r id result status reason; do
    [ -n "$id" ] || continue
    [ -z "$reason" ] || echo "kvmconf: $id $status: $reason"
    lava-test-case "$id" --result "$result"
done
[ -z "$run_result" ] || lava-test-case kvmconf-run --result "$run_result"
exit 0
