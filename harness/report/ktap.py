"""A run record as KTAP version 1 (Documentation/dev-tools/ktap.rst), the way the
kernel's selftests print results: one subtest per feature, its cases inside.

    KTAP version 1
    # kvmconf run 20261201-220300-ab12: kernel 6.1.0-57-amd64 (debian) ...
    1..3
      KTAP version 1
      # Subtest: smoke
      1..7
      ok 1 boot
      ...
    # smoke: pass:7 fail:0 skip:0 error:0 miss:0
    ok 1 smoke
      KTAP version 1
      # Subtest: vfio
      1..2
      # stale/get-after-shifted-merge: step 7 (get ...): bitmap[0][1] = 0x1f0000000ffff
      # stale/get-after-shifted-merge: reproduce: kvmconf run --seed 1 --case ...
      not ok 1 stale/get-after-shifted-merge
      ok 2 migration/v1-region-state-table # SKIP VFIO device migration ... missing
    # vfio: pass:0 fail:1 skip:1 error:0 miss:0
    not ok 2 vfio
    ...
    # Totals: pass:196 fail:1 xfail:0 xpass:0 skip:1 error:0

The statuses: PASS `ok`; FAIL `not ok`, its reason, divergence and reproduce line as
diagnostic lines just before it; SKIP `ok ... # SKIP reason`; ERROR `not ok ... # ERROR
reason`; MISS (planned, never run: the harness's failure, so not a skip that would look
like success) `not ok ... # ERROR MISS: reason`. A feature is `not ok` when any of its
cases is, `ok ... # SKIP` when all were skipped. Subtests are indented two spaces, each
starts with its own version line (KTAP, not TAP14's "Subtest:" line; the "# Subtest:"
diagnostic names the block as KUnit's output does, for kunit.py's parser).
"""
from __future__ import annotations

import re

INDENT = "  "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str) -> str:
    """No control characters (a reason can hold guest output): shown escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _one_line(text: str) -> str:
    return " ".join(_clean(str(text)).split())


def _directive_text(text: str) -> str:
    """A directive's diagnostic data: one line, and no " # " in it, so a reason that
    quotes "# SKIP" does not read as a second directive ("#VC" stays as it is)."""
    text = _one_line(text)
    while " # " in text:
        text = text.replace(" # ", " ## ")
    return text


def _description(name: str) -> str:
    """A result line's description: one line, no '#' (it starts the directive)."""
    return _one_line(name).replace("#", "_") or "_"


def _diagnostics(label: str, text: str) -> list[str]:
    return [f"# {label}: {_clean(line)}".rstrip() for line in str(text).splitlines() if line.strip()]


def features(record: dict) -> dict[str, list[dict]]:
    """Cases per feature, both in record order."""
    grouped: dict[str, list[dict]] = {}
    for case in record["cases"]:
        grouped.setdefault(case["feature"], []).append(case)
    return grouped


def _case_lines(number: int, case: dict) -> list[str]:
    feature = case["feature"]
    name = _description(case["id"][len(feature) + 1:] if case["id"].startswith(feature + "/") else case["id"])
    status, reason = case["status"], case.get("reason") or ""
    if status == "PASS":
        return [f"ok {number} {name}"]
    if status == "SKIP":
        return [f"ok {number} {name} # SKIP {_directive_text(reason)}".rstrip()]
    lines = []
    if status == "FAIL":
        lines += _diagnostics(name, reason)
        divergence = case.get("divergence")
        if divergence:
            lines.append(f"# {name}: divergence at step {divergence.get('step')} "
                         f"({_one_line(divergence.get('action'))}): {_one_line(divergence.get('field'))} "
                         f"expected {_one_line(divergence.get('expected'))}, "
                         f"observed {_one_line(divergence.get('observed'))}")
    for attempt in case.get("attempts") or []:
        lines.append(f"# {name}: attempt {attempt.get('status')}: {_one_line(attempt.get('reason') or '')}".rstrip())
    if case.get("reproduce"):
        lines.append(f"# {name}: reproduce: {_one_line(case['reproduce'])}")
    if status == "FAIL":
        lines.append(f"not ok {number} {name}")
    elif status == "ERROR":
        lines.append(f"not ok {number} {name} # ERROR {_directive_text(reason)}".rstrip())
    else:   # MISS
        lines.append(f"not ok {number} {name} # ERROR MISS: {_directive_text(reason) or 'not run'}")
    return lines


def _counts(cases: list[dict]) -> dict[str, int]:
    counts = {s: 0 for s in ("pass", "fail", "skip", "error", "miss")}
    for case in cases:
        counts[case["status"].lower()] += 1
    return counts


def _header(record: dict) -> list[str]:
    kernel = record.get("kernel") or {}
    platform = record.get("platform") or {}
    harness = record.get("harness") or {}
    where = (record.get("target") or {}).get("kind") or "qemu"
    lines = [f"# kvmconf run {record['run_id']}: kernel {kernel.get('version')} ({kernel.get('kind')}), "
             f"{where} {platform.get('accel') or ''} on {platform.get('host_cpu')}, "
             f"harness {harness.get('version')} ({harness.get('git')}), started {record['started']}"]
    if record.get("label"):
        lines.append(f"# label: {_one_line(record['label'])}")
    series = kernel.get("series") or []
    if series:
        lines.append(f"# series: {len(series)} patch(es): " +
                     "; ".join(_one_line(p.get("subject") or "") for p in series))
    if record.get("interrupted"):
        lines.append(f"# interrupted: {_one_line(record['interrupted'])}")
    return lines


def render(record: dict) -> str:
    """The whole KTAP text of one run record."""
    grouped = features(record)
    lines = ["KTAP version 1", *_header(record), f"1..{len(grouped)}"]
    if not grouped:
        lines.append("# no cases in this run")
    for number, (feature, cases) in enumerate(grouped.items(), 1):
        block = ["KTAP version 1", f"# Subtest: {_description(feature)}", f"1..{len(cases)}"]
        for index, case in enumerate(cases, 1):
            block += _case_lines(index, case)
        lines += [INDENT + line for line in block]
        counts = _counts(cases)
        lines.append(f"# {_description(feature)}: " + " ".join(f"{k}:{v}" for k, v in counts.items()))
        name = _description(feature)
        if counts["fail"] or counts["error"] or counts["miss"]:
            lines.append(f"not ok {number} {name}")
        elif counts["skip"] == len(cases):
            lines.append(f"ok {number} {name} # SKIP all {len(cases)} cases skipped")
        else:
            lines.append(f"ok {number} {name}")
    total = _counts(record["cases"])
    lines.append(f"# Totals: pass:{total['pass']} fail:{total['fail']} xfail:0 xpass:0 "
                 f"skip:{total['skip']} error:{total['error'] + total['miss']}")
    return "\n".join(lines) + "\n"
