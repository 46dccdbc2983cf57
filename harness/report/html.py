"""The HTML report: one self-contained page per run, or per comparison of runs.

`render_run(record, trend_rows)` and `render_compare(records, trend_rows)` return the
whole page as a string. Everything the page needs is inline (CSS, a few lines of JS,
SVG charts): it fetches nothing when viewed, so it can be mailed, archived as a CI
artifact or opened from file:// on an air-gapped lab host.

`record` is a run.json (harness/results/record.py); `trend_rows` are the history
store's case rows, {run_id, started, case_id, feature, status, reason, duration_s},
newest runs first, possibly empty.

Every string taken from a record is escaped (`_e`, `_attr`): records hold guest
output. URL schemes in that text are broken with an invisible <wbr> (a word joiner
in attributes), so the page holds no http(s) reference at all, even one it only shows.
"""
from __future__ import annotations

import html
import json
import re
import shlex
from collections import defaultdict

from harness.results.compare_runs import compare as compare_records

STATUSES = ("FAIL", "ERROR", "MISS", "SKIP", "PASS")
RAN = ("PASS", "FAIL", "ERROR")  # the statuses of a case that ran (trends, flakiness)
_SCHEME = re.compile(r"(?i)\b(https?|ftp|wss?)(:)(?=//)")
_REPLAY_VAR = re.compile(r"KVMCONF_[A-Z0-9_]+_REPLAY")
_SCRIPT_IN_REASON = re.compile(r"script: (\{.*)$", re.S)
_TREND_RUNS = 12  # run columns of the trend table


# -- escaping -------------------------------------------------------------------------

def _e(value) -> str:
    """Text content: escaped, 'null' shown as an em dash, URL schemes defanged."""
    if value is None:
        return "&mdash;"
    return _SCHEME.sub(r"\1\2<wbr>", html.escape(str(value), quote=True))


def _attr(value) -> str:
    """An attribute value (always inside double quotes)."""
    return _SCHEME.sub("\\1\\2\u2060", html.escape("" if value is None else str(value), quote=True))


def _status_class(status) -> str:
    status = str(status)
    return f"s-{status.lower()}" if status in STATUSES else "s-none"


def _badge(status) -> str:
    return f'<span class="badge {_status_class(status)}">{_e(status)}</span>'


def _seconds(value) -> str:
    return "&mdash;" if value is None else f"{float(value):.1f}&nbsp;s"


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    th = "".join(f"<th>{h}</th>" for h in head)
    thead = f"<thead><tr>{th}</tr></thead>" if any(head) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{thead}<tbody>{body}</tbody></table>'


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{content}</section>'


def _features(cases: list[dict]) -> dict[str, list[dict]]:
    """Cases per feature, features and cases in record order."""
    out: dict[str, list[dict]] = {}
    for case in cases:
        out.setdefault(str(case.get("feature")), []).append(case)
    return out


# -- the page -------------------------------------------------------------------------

_CSS = """
:root{--pass:#1a7f37;--fail:#cf222e;--error:#bc4c00;--skip:#6e7781;--miss:#8250df;
--bg:#fff;--fg:#1f2328;--mute:#656d76;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header.top{padding:14px 24px;border-bottom:1px solid var(--line);background:var(--soft)}
header.top h1{margin:0 0 4px;font-size:20px}
nav a{margin-right:12px;color:var(--fg)}
main{padding:0 24px 40px;max-width:1400px}
h2{margin:28px 0 10px;font-size:17px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{margin:14px 0 6px;font-size:15px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--soft);border:1px solid var(--line);padding:8px;margin:4px 0;white-space:pre-wrap;word-break:break-all;max-height:360px;overflow:auto}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--soft)}
.mute{color:var(--mute)}
.badge{display:inline-block;padding:0 6px;border-radius:9px;color:#fff;font-size:12px;font-weight:600}
.s-pass{background:var(--pass)}.s-fail{background:var(--fail)}.s-error{background:var(--error)}
.s-skip{background:var(--skip)}.s-miss{background:var(--miss)}.s-none{background:#eaeef2;color:var(--mute)}
.counts .badge{margin-right:6px}
.grid{display:flex;flex-wrap:wrap;gap:3px;margin:4px 0 12px}
.cell{display:inline-flex;flex-direction:column;min-width:120px;max-width:260px;padding:2px 6px;border-radius:4px;color:#fff;text-decoration:none;font-size:12px}
.cell .cid{font-family:ui-monospace,Menlo,Consolas,monospace;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.cell .st{font-weight:700;font-size:10.5px;opacity:.9}
.filters label{margin-right:10px}
body.hide-PASS [data-status=PASS].cell,body.hide-SKIP [data-status=SKIP].cell{display:none}
body.only-changed tr.unchanged{display:none}
.detail{border:1px solid var(--line);border-left:5px solid var(--fail);padding:6px 12px;margin:10px 0;border-radius:4px}
.detail.s-line-error{border-left-color:var(--error)}
.sbs{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.sbs h4{margin:4px 0 0;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.exp pre{border-color:var(--pass)}.obs pre{border-color:var(--fail)}
pre.repro{user-select:all;max-height:140px}
.detail h4{margin:8px 0 0;font-size:12px}
.finding{border:1px solid var(--line);padding:6px 12px;margin:8px 0;border-radius:4px}
.ok{color:var(--pass);font-weight:600}.bad{color:var(--fail);font-weight:600}
table.cmp td.cell-td{color:#fff;font-weight:600;text-align:center;font-size:12px}
tr.regressed td:first-child{box-shadow:inset 5px 0 0 var(--fail)}
tr.fixed td:first-child{box-shadow:inset 5px 0 0 var(--pass)}
tr.flaky td:first-child{box-shadow:inset 5px 0 0 var(--miss)}
.dots span{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:1px}
svg text{font:12px system-ui,sans-serif;fill:var(--fg)}
"""

_JS = """
document.querySelectorAll('input[data-toggle]').forEach(function (box) {
  box.addEventListener('change', function () {
    document.body.classList.toggle(box.getAttribute('data-toggle'), box.checked);
  });
});
"""


def _page(title: str, subtitle: str, nav: list[tuple[str, str]], sections: list[str]) -> str:
    links = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{_CSS}</style></head>"
            f"<body><header class=\"top\"><h1>{_e(title)}</h1><div class=\"mute\">{subtitle}</div>"
            f"<nav>{links}</nav></header><main>{''.join(s for s in sections if s)}</main>"
            f"<script>{_JS}</script></body></html>\n")


def _counts(summary: dict) -> str:
    return '<div class="counts">' + "".join(
        f'<span class="badge {_status_class(s)}">{_e(s)} {int(summary.get(s.lower(), 0) or 0)}</span>'
        for s in STATUSES) + "</div>"


# -- run page -------------------------------------------------------------------------

def render_run(record: dict, trend_rows: list[dict]) -> str:
    """The report of one run record."""
    cases = record.get("cases") or []
    rows = _with_record(trend_rows or [], record)
    sections = [
        _run_summary(record),
        _platform(record),
        _matrix(cases),
        _failures(cases),
        _skips(cases),
        _findings(record.get("findings") or []),
        _verdicts(record),
        _coverage(record.get("model_coverage") or []),
        _random_and_differentials(record),
        _time_chart(cases, record.get("timing") or {}),
        _trends(rows),
        _flaky(rows, flaky_cases(_before(trend_rows or [], [record]), [record])),
    ]
    nav = [("summary", "Summary"), ("platform", "Platform"), ("matrix", "Matrix"),
           ("failures", "Failures"), ("skips", "SKIPs"), ("findings", "Findings"),
           ("verdicts", "Profiles"), ("coverage", "Coverage"), ("time", "Time"),
           ("trends", "Trends"), ("flaky", "Flaky")]
    subtitle = (f"started {_e(record.get('started'))} &middot; label {_e(record.get('label') or '-')}"
                f" &middot; kernel {_e((record.get('kernel') or {}).get('version'))}")
    return _page(f"kvmconf run {record.get('run_id', '?')}", subtitle, nav, sections)


def _run_summary(record: dict) -> str:
    timing = record.get("timing") or {}
    harness = record.get("harness") or {}
    facts = [["run", _e(record.get("run_id"))], ["started", _e(record.get("started"))],
             ["label", _e(record.get("label") or "-")],
             ["harness", f"{_e(harness.get('version'))} ({_e(harness.get('git'))})"],
             ["seed", _e(record.get("seed"))],
             ["boot to ready", _seconds(timing.get("boot_to_ready_s"))],
             ["total", _seconds(timing.get("total_s"))]]
    if record.get("interrupted"):
        facts.append(["interrupted", f'<span class="bad">{_e(record["interrupted"])}</span>'])
    return _section("summary", "Summary", _counts(record.get("summary") or {}) + _table(["", ""], facts, "kv"))


def _platform(record: dict) -> str:
    platform = record.get("platform") or {}
    caps = platform.get("capabilities") or {}
    host = caps.get("host") or {}
    guest = caps.get("guest") or {}
    target = record.get("target") or {}
    rows = [["CPU", f"{_e(platform.get('host_cpu'))} <span class=mute>{_e(host.get('cpu_vendor') or '')}</span>"]]
    microcode = platform.get("microcode") or host.get("microcode")
    if microcode:
        rows.append(["microcode", _e(microcode)])
    host_kernel = platform.get("host_kernel") or host.get("kernel") or host.get("uname_r")
    rows += [["host kernel", _e(host_kernel) if host_kernel else '<span class="mute">not recorded</span>'],
             ["accel", f"{_e(platform.get('accel'))} <span class=mute>{_e(platform.get('accel_reason') or '')}</span>"],
             ["QEMU", _e(platform.get("qemu"))],
             ["machine profile", _e(platform.get("machine_profile"))], ["boot", _e(platform.get("boot"))],
             ["target", _e(_target(target))]]
    if isinstance(host.get("kvm"), dict):
        rows.append(["/dev/kvm", _e(host["kvm"].get("detail"))])
    if guest.get("uname_r"):
        rows.append(["guest uname -r", _e(guest.get("uname_r"))])
    return _section("platform", "Platform fingerprint",
                    _table(["", ""], rows, "kv") + "<h3>Kernel under test</h3>" + _kernel(record.get("kernel") or {}))


def _target(target: dict) -> str:
    kind, where = target.get("kind") or "qemu", target.get("where")
    return kind if where in (None, kind) else f"{kind} ({where})"


def _kernel(kernel: dict) -> str:
    source = kernel.get("source") or {}
    if not isinstance(source, dict):
        source = {"path": source}
    rows = [["kind", _e(kernel.get("kind"))], ["version", _e(kernel.get("version"))],
            ["sha256", f'<span class="mono">{_e(kernel.get("sha256"))}</span>'],
            ["source", f'{_e(source.get("path"))} <span class="mono mute">{_e(source.get("sha256") or "")}</span>'],
            ["config sha256", f'<span class="mono">{_e(kernel.get("config_sha256"))}</span>']]
    series = kernel.get("series") or []
    out = _table(["", ""], rows, "kv")
    if series:
        out += "<h3>Series</h3>" + _table(
            ["#", "subject", "revision", "message-id", "sha256"],
            [[str(i + 1), _e(p.get("subject")), _e(p.get("revision")), _e(p.get("message_id")),
              f'<span class="mono">{_e((p.get("sha256") or "")[:16])}</span>'] for i, p in enumerate(series)])
    else:
        out += '<p class="mute">no series applied</p>'
    return out


def _matrix(cases: list[dict]) -> str:
    """Feature x case: one cell per case, carrying data-case and data-status."""
    filters = ('<p class="filters">'
               '<label><input type="checkbox" data-toggle="hide-PASS"> hide PASS</label>'
               '<label><input type="checkbox" data-toggle="hide-SKIP"> hide SKIP</label></p>')
    parts = [filters]
    index = _anchors(cases)
    for feature, group in _features(cases).items():
        counts = {s: sum(1 for c in group if c.get("status") == s) for s in STATUSES}
        summary = " ".join(f"{s} {n}" for s, n in counts.items() if n)
        parts.append(f"<h3>{_e(feature)} <span class=mute>{len(group)} cases: {_e(summary)}</span></h3>")
        parts.append('<div class="grid">' + "".join(_cell(c, index.get(id(c))) for c in group) + "</div>")
    return _section("matrix", "Feature × case matrix", "".join(parts))


def _anchors(cases: list[dict]) -> dict[int, str]:
    """The detail anchor of each FAIL/ERROR case (by object id: ids may repeat)."""
    return {id(c): f"case-{i}" for i, c in enumerate(cases) if c.get("status") in ("FAIL", "ERROR")}


def _cell(case: dict, anchor: str | None) -> str:
    cid, status, feature = str(case.get("id")), case.get("status"), str(case.get("feature"))
    short = cid[len(feature) + 1:] if cid.startswith(feature + "/") else cid
    tip = f"{cid}: {status}" + (f" ({case.get('reason')})" if case.get("reason") else "")
    tag, href = ("a", f' href="#{anchor}"') if anchor else ("span", "")
    return (f'<{tag} class="cell {_status_class(status)}"{href} data-case="{_attr(cid)}" '
            f'data-status="{_attr(status)}" title="{_attr(tip[:500])}">'
            f'<span class="cid">{_e(short)}</span><span class="st">{_e(status)}</span></{tag}>')


def _failures(cases: list[dict]) -> str:
    index = _anchors(cases)
    bad = [c for c in cases if id(c) in index]
    if not bad:
        return _section("failures", "Failures and divergences", '<p class="ok">no case FAILed or ERRORed</p>')
    return _section("failures", f"Failures and divergences ({len(bad)})",
                    "".join(_case_detail(c, index[id(c)]) for c in bad))


def _case_detail(case: dict, anchor: str, run_id: str | None = None) -> str:
    """A FAIL/ERROR case: its reason, its divergence side by side, its op-script, its
    reproduction line."""
    status = case.get("status")
    cls = "s-line-error" if status == "ERROR" else ""
    where = f' <span class="mute">in run {_e(run_id)}</span>' if run_id else ""
    out = [f'<article class="detail {cls}" id="{_attr(anchor)}" data-detail="{_attr(case.get("id"))}">',
           f'<h3>{_e(case.get("id"))} {_badge(status)}{where}</h3>',
           f'<p>{_e(case.get("reason"))}</p>']
    divergence = case.get("divergence")
    if isinstance(divergence, dict):
        out.append(_divergence(divergence, case))
    if case.get("attempts"):
        out.append(_attempts(case["attempts"]))
    out.append(f'<h4>reproduce</h4><pre class="repro">{_e(case.get("reproduce"))}</pre></article>')
    return "".join(out)


def _divergence(divergence: dict, case: dict) -> str:
    facts = [["step", _e(divergence.get("step"))], ["action", f'<code>{_e(divergence.get("action"))}</code>'],
             ["field", f'<code>{_e(divergence.get("field"))}</code>'],
             ["matches profile", _e(divergence.get("matches_profile"))]]
    if "explained_by" in case:
        facts.append(["explained by", _e(", ".join(map(str, case.get("explained_by") or [])) or "no profile")])
    sbs = (f'<div class="sbs"><div class="exp"><h4>expected (model)</h4><pre>{_e(divergence.get("expected"))}</pre></div>'
           f'<div class="obs"><h4>observed (kernel)</h4><pre>{_e(divergence.get("observed"))}</pre></div></div>')
    script = _op_script(divergence, case)
    script_html = (f'<details open><summary>op-script</summary><pre>{_e(script)}</pre></details>' if script else "")
    return _table(["", ""], facts, "kv") + sbs + script_html


def _op_script(divergence: dict, case: dict) -> str | None:
    """The divergence's op-script: its own `script` field, else the replay script of the
    reproduction line (KVMCONF_<FEATURE>_REPLAY='...'), else the one the reason quotes
    (cut at 400 characters by the record)."""
    script = divergence.get("script")
    if script is None:
        script = _replay_script(str(case.get("reproduce") or ""))
    if script is None:
        found = _SCRIPT_IN_REASON.search(str(case.get("reason") or ""))
        if not found:
            return None
        script = found.group(1)
    if isinstance(script, str):
        try:
            script = json.loads(script)
        except ValueError:
            return script + ("\n(cut short in run.json)" if script.endswith("...") else "")
    return json.dumps(script, indent=1)


def _replay_script(reproduce: str) -> str | None:
    try:
        words = shlex.split(reproduce)
    except ValueError:
        return None
    for word in words:
        name, _, value = word.partition("=")
        if _REPLAY_VAR.fullmatch(name):
            return value
    return None


def _attempts(attempts: list[dict]) -> str:
    return "<p>attempts: " + " &rarr; ".join(
        f'{_badge(a.get("status"))} <span class="mute">{_e(a.get("reason") or "")}</span>' for a in attempts) + "</p>"


def _skips(cases: list[dict]) -> str:
    by_reason: dict[str, list[str]] = {}
    for case in cases:
        if case.get("status") == "SKIP":
            by_reason.setdefault(str(case.get("reason") or ""), []).append(str(case.get("id")))
    if not by_reason:
        return _section("skips", "SKIP reasons", '<p class="mute">no case SKIPped</p>')
    rows = [[_e(reason), str(len(ids)), _id_list(ids)] for reason, ids in
            sorted(by_reason.items(), key=lambda kv: -len(kv[1]))]
    return _section("skips", "SKIP reasons", _table(["reason", "cases", "which"], rows))


def _id_list(ids: list[str], shown: int = 6) -> str:
    items = "".join(f"<code>{_e(i)}</code><br>" for i in ids)
    if len(ids) <= shown:
        return items
    return f"<details><summary>{len(ids)} cases</summary>{items}</details>"


def _findings(findings: list[dict]) -> str:
    if not findings:
        return _section("findings", "Findings", '<p class="mute">no findings</p>')
    parts = []
    for f in findings:
        parts.append(
            f'<div class="finding"><h3>{_e(f.get("title"))} <span class="mute mono">{_e(f.get("id"))}</span></h3>'
            + _table(["", ""], [["feature", _e(f.get("feature"))], ["intended", _e(f.get("intended"))],
                                ["observed", _e(f.get("observed"))], ["mechanism", _e(f.get("mechanism"))],
                                ["cases", _id_list([str(c) for c in f.get("cases") or []])]], "kv")
            + "</div>")
    return _section("findings", f"Findings ({len(findings)})", "".join(parts))


def _verdicts(record: dict) -> str:
    expected = record.get("profiles") or {}
    verdict = record.get("profile_verdict") or {}
    rows = []
    for feature in list(expected) + [f for f in verdict if f not in expected]:
        v, want = verdict.get(feature), expected.get(feature)
        if v is None:
            shown = '<span class="bad">no profile explains every case</span>'
        else:
            shown = f'<span class="{"ok" if v == want else "bad"}">{_e(v)}</span>'
        rows.append([_e(feature), _e(want), shown])
    body = _table(["feature", "expected profile", "verdict"], rows) if rows else '<p class="mute">no profiles</p>'
    return _section("verdicts", "Profile verdicts", body)


def _coverage(coverage: list[dict]) -> str:
    if not coverage:
        return _section("coverage", "Model coverage", '<p class="mute">no model coverage recorded</p>')
    rows = []
    for c in coverage:
        unreachable = c.get("unreachable") or {}
        un_html = (f'<details><summary>{len(unreachable)}</summary>'
                   + "".join(f"<code>{_e(r)}</code>: {_e(why)}<br>" for r, why in unreachable.items())
                   + "</details>") if unreachable else "0"
        rows.append([_e(c.get("feature")), _e(c.get("rules")), _e(c.get("named")), _e(c.get("random")),
                     _id_list([str(r) for r in c.get("unreached") or []]) or '<span class="ok">none</span>',
                     un_html])
    return _section("coverage", "Model coverage",
                    _table(["feature", "rules", "named reach", "random reach", "unreached", "unreachable"], rows))


def _random_and_differentials(record: dict) -> str:
    parts = []
    if record.get("random"):
        parts.append("<h3>Random op-scripts</h3>" + _table(
            ["feature", "seed", "scripts", "actions", "diverged"],
            [[_e(r.get("feature")), _e(r.get("seed")), _e(r.get("scripts")), _e(r.get("actions")),
              _e(r.get("diverged"))] for r in record["random"]]))
    if record.get("differentials"):
        parts.append("<h3>Differentials</h3>" + _table(
            ["feature", "name", "inputs", "implementations", "disagreements", "case"],
            [[_e(d.get("feature")), _e(d.get("name")), _e(d.get("compared")),
              _e(", ".join(map(str, d.get("implementations") or []))),
              "<br>".join(f"{_e(k)}: {_e(v)}" for k, v in (d.get("disagreements") or {}).items()),
              f'<code>{_e(d.get("case"))}</code>'] for d in record["differentials"]]))
    return _section("random", "Random scripts and differentials", "".join(parts)) if parts else ""


def _time_chart(cases: list[dict], timing: dict) -> str:
    """Time per feature: inline SVG bars of the summed case durations."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        totals[str(case.get("feature"))] += float(case.get("duration_s") or 0)
        counts[str(case.get("feature"))] += 1
    if not totals:
        return _section("time", "Time per feature", '<p class="mute">no cases</p>')
    bars = sorted(totals.items(), key=lambda kv: -kv[1])
    top = max(v for _, v in bars) or 1.0
    label_w, bar_w, row_h = 150, 460, 24
    height = row_h * len(bars) + 8
    items = []
    for i, (feature, seconds) in enumerate(bars):
        y = 4 + i * row_h
        w = max(1.0, bar_w * seconds / top)
        items.append(f'<g data-feature="{_attr(feature)}"><text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(feature)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="#0969da" rx="2"></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{seconds:.1f} s, {counts[feature]} cases</text></g>')
    svg = (f'<svg role="img" aria-label="time per feature" width="{label_w + bar_w + 170}" height="{height}" '
           f'viewBox="0 0 {label_w + bar_w + 170} {height}">{"".join(items)}</svg>')
    note = (f'<p class="mute">sum of case durations {sum(totals.values()):.1f} s; boot to ready '
            f'{_seconds(timing.get("boot_to_ready_s"))}; run total {_seconds(timing.get("total_s"))}</p>')
    return _section("time", "Time per feature", svg + note)


# -- history --------------------------------------------------------------------------

def _with_record(rows: list[dict], record: dict) -> list[dict]:
    """The trend rows with the record's own cases first, unless the store already has
    the run."""
    run_id = record.get("run_id")
    if any(r.get("run_id") == run_id for r in rows):
        return list(rows)
    own = [{"run_id": run_id, "started": record.get("started"), "case_id": c.get("id"),
            "feature": c.get("feature"), "status": c.get("status"), "reason": c.get("reason"),
            "duration_s": c.get("duration_s")} for c in record.get("cases") or []]
    return own + list(rows)


def _before(rows: list[dict], records: list[dict]) -> list[dict]:
    """The history without the runs of `records`: a status change in the runs being
    reported is a regression or a fix, one before them makes the case flaky."""
    ours = {r.get("run_id") for r in records}
    return [row for row in rows if row.get("run_id") not in ours]


def _runs_oldest_first(rows: list[dict]) -> list[tuple[str, str]]:
    """(run_id, started) of every run in the rows, oldest first (rows are newest first)."""
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(str(row.get("run_id")), str(row.get("started") or ""))
    return list(reversed(list(seen.items())))


def _pass_rates(rows: list[dict]) -> tuple[list[tuple[str, str]], dict[str, list[float | None]]]:
    """Per feature, its pass rate (PASS over cases that ran) in each run, oldest first;
    None where the feature did not run."""
    runs = _runs_oldest_first(rows)
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    features: list[str] = []
    for row in rows:
        feature = str(row.get("feature"))
        if feature not in features:
            features.append(feature)
        if row.get("status") in RAN:
            t = tally[(feature, str(row.get("run_id")))]
            t[0] += row.get("status") == "PASS"
            t[1] += 1
    rates = {}
    for feature in sorted(features):
        rates[feature] = [(tally[(feature, r)][0] / tally[(feature, r)][1]) if tally[(feature, r)][1] else None
                          for r, _ in runs]
    return runs, rates


def _sparkline(values: list[float | None], width: int = 160, height: int = 28) -> str:
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<span class="mute">never ran</span>'
    step = (width - 8) / max(1, len(values) - 1)
    xy = [(4 + i * step, 3 + (1 - v) * (height - 6)) for i, v in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{"#1a7f37" if v == 1 else "#cf222e"}"></circle>'
                   for (x, y), (_, v) in zip(xy, points))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<line x1="0" y1="3" x2="{width}" y2="3" stroke="#d0d7de"></line>'
            f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="1.5"></polyline>{dots}</svg>')


def _pct(value: float | None) -> str:
    return '<span class="mute">&ndash;</span>' if value is None else f"{100 * value:.0f}%"


def _trends(rows: list[dict]) -> str:
    if not rows:
        return _section("trends", "History trends", '<p class="mute">no history</p>')
    runs, rates = _pass_rates(rows)
    shown = runs[-_TREND_RUNS:]
    head = ["feature", "pass rate over runs", "latest"] + [
        f'<span class="mono" title="{_attr(started)}">{_e(run_id)}</span>' for run_id, started in shown]
    body = []
    for feature, values in rates.items():
        latest = next((v for v in reversed(values) if v is not None), None)
        body.append([_e(feature), _sparkline(values), _pct(latest)] + [_pct(v) for v in values[-_TREND_RUNS:]])
    note = (f'<p class="mute">{len(runs)} runs, oldest left; pass rate = PASS / (PASS+FAIL+ERROR); '
            f'the last {len(shown)} runs in columns</p>')
    return _section("trends", "History trends", note + _table(head, body, "trend"))


def _status_history(rows: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """Per case, (run_id, status) of the runs where it ran, oldest first."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in reversed(rows):
        if row.get("status") in RAN:
            out[str(row.get("case_id"))].append((str(row.get("run_id")), str(row.get("status"))))
    return out


def flaky_cases(rows: list[dict], records: list[dict]) -> dict[str, str]:
    """Of the records' cases, case id -> why it is flaky: its status changed between
    consecutive runs it ran in (the history rows, see _before), or a record retried it."""
    wanted = {str(c.get("id")) for r in records for c in r.get("cases") or []}
    out = {}
    for case_id, history in _status_history(rows).items():
        if case_id not in wanted:
            continue
        flips = sum(1 for a, b in zip(history, history[1:]) if a[1] != b[1])
        if flips:
            out[case_id] = f"{flips} status change{'s' if flips > 1 else ''} in {len(history)} runs"
    for record in records:
        for case in record.get("cases") or []:
            if case.get("retried"):
                tries = " → ".join(str(a.get("status")) for a in case.get("attempts") or [])
                why = f"retried in {record.get('run_id')}" + (f" ({tries})" if tries else "")
                cid = str(case.get("id"))
                out[cid] = f"{out[cid]}; {why}" if cid in out else why
    return out


def _dots(history: list[tuple[str, str]]) -> str:
    return '<span class="dots">' + "".join(
        f'<span class="{_status_class(s)}" title="{_attr(r)}: {_attr(s)}"></span>' for r, s in history) + "</span>"


def _flaky(rows: list[dict], flaky: dict[str, str]) -> str:
    if not flaky:
        return _section("flaky", "Flaky cases", '<p class="ok">no flaky case: no status change between '
                        'consecutive runs, no retried case</p>')
    history = _status_history(rows)
    body = [[f"<code>{_e(cid)}</code>", _e(why), _dots(history.get(cid, []))] for cid, why in sorted(flaky.items())]
    return _section("flaky", f"Flaky cases ({len(flaky)})",
                    _table(["case", "why", "statuses, oldest first"], body))


# -- compare page ---------------------------------------------------------------------

def render_compare(records: list[dict], trend_rows: list[dict]) -> str:
    """Runs side by side (oldest first, as `kvmconf compare` takes them): regressions and
    fixes highlighted, flaky cases listed apart from them."""
    table = compare_records(records)
    # Flaky: a status change in the history before these runs, a retry in one of them,
    # or more than one change across them; a single change across them is a
    # regression or a fix.
    flaky = flaky_cases(_before(trend_rows or [], records), records)
    flaky.update({cid: "retried" for cid in table.get("flaky", []) if cid not in flaky})
    flaky.update(_flapping(table, flaky))
    rows = list(trend_rows or [])
    for record in records:
        rows = _with_record(rows, record)
    sections = [
        _compare_runs(records, table["warnings"]),
        _compare_changes(table, flaky),
        _compare_matrix(records, table, flaky),
        _compare_details(records, table, flaky),
        _trends(rows),
        _flaky(rows, flaky),
    ]
    nav = [("runs", "Runs"), ("changes", "Changes"), ("matrix", "Matrix"), ("failures", "Regressions"),
           ("trends", "Trends"), ("flaky", "Flaky")]
    ids = " vs ".join(str(r.get("run_id")) for r in records)
    return _page(f"kvmconf compare {ids}", f"{len(records)} runs, {len(table['cases'])} cases", nav, sections)


def _flapping(table: dict, known: dict[str, str]) -> dict[str, str]:
    """Cases whose status changes more than once across the compared runs."""
    out = {}
    for row in table["cases"]:
        changed = [c for c in row["changes"] if c not in ("unchanged", "unchanged failure")]
        if len(changed) > 1 and row["id"] not in known:
            out[row["id"]] = f"changed {len(changed)} times across the compared runs ({' → '.join(map(str, row['statuses']))})"
    return out


def _compare_runs(records: list[dict], warnings: list[str]) -> str:
    rows = [[f"<code>{_e(r.get('run_id'))}</code>", _e(r.get("started")), _e(r.get("label") or "-"),
             _e((r.get("kernel") or {}).get("version")), _e((r.get("platform") or {}).get("accel")),
             _counts(r.get("summary") or {})] for r in records]
    out = _table(["run", "started", "label", "kernel", "accel", "summary"], rows)
    if warnings:
        out += '<p class="bad">the runs differ besides the kernel:</p><ul>' + "".join(
            f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"
    return _section("runs", "Runs", out)


def _change_list(ids: list[str], empty: str) -> str:
    if not ids:
        return f'<p class="mute">{_e(empty)}</p>'
    return "<ul>" + "".join(f"<li><code>{_e(i)}</code></li>" for i in ids) + "</ul>"


def _compare_changes(table: dict, flaky: dict[str, str]) -> str:
    regressed = [i for i in table["regressed"] if i not in flaky]
    fixed = [i for i in table["fixed"] if i not in flaky]
    moved = {i: "regressed" for i in table["regressed"]} | {i: "fixed" for i in table["fixed"]}
    flaky_rows = [[f"<code>{_e(cid)}</code>", _e(why) + (f' <span class="bad">({moved[cid]} in these runs)</span>'
                                                         if cid in moved else "")]
                  for cid, why in sorted(flaky.items())]
    out = (f'<h3 class="bad">Regressions ({len(regressed)})</h3>' + _change_list(regressed, "no regression")
           + f'<h3 class="ok">Fixes ({len(fixed)})</h3>' + _change_list(fixed, "no fix")
           + f"<h3>Flaky, not counted above ({len(flaky)})</h3>"
           + (_table(["case", "why"], flaky_rows) if flaky_rows else '<p class="mute">none</p>'))
    return _section("changes", "Changes", out)


def _row_class(row: dict, flaky: dict[str, str]) -> str:
    if row["id"] in flaky:
        return "flaky"
    if "regressed" in row["changes"]:
        return "regressed"
    if "fixed" in row["changes"]:
        return "fixed"
    return "unchanged" if all(c in ("unchanged", "unchanged failure") for c in row["changes"]) else "changed"


def _compare_matrix(records: list[dict], table: dict, flaky: dict[str, str]) -> str:
    """One row per case (data-case), one cell per run (data-run, data-status)."""
    features = {str(c.get("id")): str(c.get("feature")) for r in records for c in r.get("cases") or []}
    head = "".join(f'<th class="mono">{_e(r.get("run_id"))}</th>' for r in records)
    body, last_feature = [], None
    for row in table["cases"]:
        feature = features.get(row["id"])
        if feature != last_feature:
            body.append(f'<tr class="feature-row"><th colspan="{len(records) + 2}">{_e(feature)}</th></tr>')
            last_feature = feature
        cls = _row_class(row, flaky)
        cells = "".join(
            f'<td class="cell-td {_status_class(s)}" data-run="{_attr(r.get("run_id"))}" data-status="{_attr(s or "")}">'
            f'{_e(s) if s else "&ndash;"}</td>' for r, s in zip(records, row["statuses"]))
        change = ", ".join(c for c in row["changes"] if c != "unchanged") or "unchanged"
        body.append(f'<tr class="{cls}" data-case="{_attr(row["id"])}" data-change="{_attr(cls)}">'
                    f'<td><code>{_e(row["id"])}</code></td>{cells}<td>{_e("flaky: " + change if cls == "flaky" else change)}</td></tr>')
    filters = ('<p class="filters"><label><input type="checkbox" data-toggle="only-changed"> '
               'only rows that changed</label></p>')
    return _section("matrix", "Side-by-side matrix",
                    filters + f'<table class="cmp"><thead><tr><th>case</th>{head}<th>change</th></tr></thead>'
                    f'<tbody>{"".join(body)}</tbody></table>')


def _compare_details(records: list[dict], table: dict, flaky: dict[str, str]) -> str:
    """Each regression (flaky ones too) as its newest bad run recorded it."""
    by_run = [{str(c.get("id")): c for c in r.get("cases") or []} for r in records]
    parts = []
    for n, cid in enumerate(table["regressed"]):
        for record, cases in reversed(list(zip(records, by_run))):
            case = cases.get(cid)
            if case and case.get("status") in ("FAIL", "ERROR"):
                parts.append(_case_detail(case, f"reg-{n}", str(record.get("run_id"))))
                break
    body = "".join(parts) if parts else '<p class="ok">no regression</p>'
    return _section("failures", "Regressions in detail", body)
