"""`kvmconf report` (issue 15 item 2): every exporter on real run records
(tests/fixtures/report/, see its README), and the command end to end.

KTAP is read back by a parser of ktap.rst's grammar (version, plan, result and
diagnostic lines, two-space nesting, plans that match the results); KCIDB is checked
with kcidb-io itself, and mutated documents must fail that check; SQUAD's files are
checked against the submit API's rules; the command's bad inputs are one stderr line.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import kcidb_io
import pytest

from harness import series as serieslib
from harness.cli import main
from harness.commands import report as report_cmd
from harness.errors import HarnessError
from harness.report import kcidb, ktap, squad
from harness.results.record import load
from tests.conftest import kvmconf

FIXTURES = Path(__file__).parent / "fixtures" / "report"
FULL = FIXTURES / "syndbg-vfio"            # PASS, FAIL, SKIP; three features; op-scripts
INTERRUPTED = FIXTURES / "interrupted"     # PASS, ERROR, MISS; interrupted by SIGTERM
MBOX = Path(__file__).parent / "fixtures" / "syndbg-series-v2.mbox"


@pytest.fixture(scope="module")
def full() -> dict:
    return load(FULL / "run.json")


@pytest.fixture(scope="module")
def interrupted() -> dict:
    return load(INTERRUPTED / "run.json")


def _statuses(record: dict) -> dict[str, int]:
    counts = {s: 0 for s in ("PASS", "FAIL", "ERROR", "SKIP", "MISS")}
    for case in record["cases"]:
        counts[case["status"]] += 1
    return counts


def test_the_fixtures_hold_every_status(full, interrupted):
    both = {s: _statuses(full)[s] + _statuses(interrupted)[s] for s in _statuses(full)}
    assert all(both.values()), both


# -- KTAP ------------------------------------------------------------------------------
_RESULT = re.compile(r"(ok|not ok) ([0-9]+)(?: ([^#]*?))?(?: # (.*))?")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], i: int, indent: int) -> tuple[list[dict], list[str], int]:
    """One KTAP (sub)test block at `indent`: its results (each with its subtests and the
    diagnostics just before it) and the index of the first line after the block."""
    assert lines[i] == " " * indent + "KTAP version 1", f"line {i + 1}: {lines[i]!r}"
    i += 1
    plan, results, pending, notes = None, [], None, []
    while i < len(lines):
        line = lines[i]
        depth = _indent(line)
        if depth < indent:
            break
        if depth > indent:
            assert depth == indent + 2 and line.strip() == "KTAP version 1", \
                f"line {i + 1}: indented {depth}, not a subtest's version line: {line!r}"
            assert pending is None, f"line {i + 1}: two subtests before one result line"
            pending, _, i = _block(lines, i, indent + 2)
            continue
        body = line[indent:]
        if body.startswith("#"):
            notes.append(body)
        elif re.fullmatch(r"1\.\.[0-9]+", body):
            assert plan is None and not results, f"line {i + 1}: a second plan, or a plan after results"
            plan = int(body[3:])
        else:
            m = _RESULT.fullmatch(body)
            assert m, f"line {i + 1}: not a KTAP line: {line!r}"
            results.append({"ok": m[1] == "ok", "number": int(m[2]), "name": m[3],
                            "directive": m[4], "subtests": pending, "notes": notes})
            pending, notes = None, []
        i += 1
    assert pending is None, "a subtest block without its result line"
    assert plan == len(results), f"plan 1..{plan} but {len(results)} results"
    assert [r["number"] for r in results] == list(range(1, len(results) + 1))
    return results, notes, i


def parse_ktap(text: str) -> tuple[list[dict], list[str]]:
    assert text.endswith("\n")
    lines = text.splitlines()
    results, notes, end = _block(lines, 0, 0)
    assert end == len(lines), f"line {end + 1} is outside the top-level block: {lines[end]!r}"
    return results, notes


def test_ktap_nests_one_subtest_per_feature(full):
    text = ktap.render(full)
    results, notes = parse_ktap(text)
    features = ktap.features(full)
    assert [r["name"] for r in results] == list(features) == ["smoke", "syndbg", "vfio"]
    for result, (feature, cases) in zip(results, features.items()):
        subtests = result["subtests"]
        assert [s["name"] for s in subtests] == [c["id"][len(feature) + 1:] for c in cases]
        for sub, case in zip(subtests, cases):
            if case["status"] == "PASS":
                assert sub["ok"] and sub["directive"] is None
            elif case["status"] == "SKIP":
                assert sub["ok"] and sub["directive"] == "SKIP " + " ".join(case["reason"].split())
            else:
                assert case["status"] == "FAIL" and not sub["ok"] and sub["directive"] is None
                name = sub["name"]
                assert sub["notes"][0].startswith(f"# {name}: step 27 (vcpu1 vmmcall control=0x6c")
                assert any(n.startswith(f"# {name}: divergence at step 27 ") for n in sub["notes"])
                assert any(n.startswith(f"# {name}: reproduce: KVMCONF_SYNDBG_REPLAY=") for n in sub["notes"])
        statuses = {c["status"] for c in cases}
        assert result["ok"] == (statuses <= {"PASS", "SKIP"})
    assert [r["ok"] for r in results] == [True, False, True]
    skip_lines = [l for l in text.splitlines() if re.match(r"\s*ok \d+ .* # SKIP ", l)]
    assert len(skip_lines) == _statuses(full)["SKIP"] == 1
    assert len(re.findall(r"(?m)^\s*not ok ", text)) == 1 + 1      # the FAIL case and its feature
    assert text.splitlines()[-1] == "# Totals: pass:17 fail:1 xfail:0 xpass:0 skip:1 error:0"
    assert "ok 5 unmap/ends-at-2^64" in text


def test_ktap_error_and_miss_are_not_ok_with_their_directive(interrupted):
    text = ktap.render(interrupted)
    results, _ = parse_ktap(text)
    assert "# interrupted: SIGTERM" in text.splitlines()[:4]
    (smoke,) = results
    assert smoke["name"] == "smoke" and not smoke["ok"]
    got = [(s["ok"], s["directive"]) for s in smoke["subtests"]]
    assert got == [(True, None), (False, "ERROR interrupted by SIGTERM")] + [(False, "ERROR MISS: planned, not run")] * 5


def test_ktap_a_hostile_reason_stays_one_result_line(full):
    record = copy.deepcopy(full)
    record["cases"] = record["cases"][:2]
    record["cases"][0].update(status="SKIP", reason="needs # SKIP this\nsecond line \x1b[31m")
    record["cases"][1].update(id="smoke/odd#name", status="ERROR", reason="x # TODO y")
    record["summary"] = {"pass": 0, "fail": 0, "error": 1, "skip": 1, "miss": 0}
    results, _ = parse_ktap(ktap.render(record))
    first, second = results[0]["subtests"]
    assert first["ok"] and first["directive"] == "SKIP needs ## SKIP this second line \\x1b[31m"
    assert second["name"] == "odd_name" and second["directive"] == "ERROR x ## TODO y"


def test_ktap_of_a_run_without_cases(full):
    record = dict(full, cases=[], summary={"pass": 0, "fail": 0, "error": 0, "skip": 0, "miss": 0})
    results, _ = parse_ktap(ktap.render(record))
    assert results == []


# -- KCIDB -----------------------------------------------------------------------------
def test_kcidb_document_is_valid_for_kcidb_io(full, interrupted):
    for record, folder in ((full, FULL), (interrupted, INTERRUPTED)):
        doc = kcidb.document(record, folder)
        kcidb_io.schema.LATEST.validate(doc)            # kcidb-io itself, not only our wrapper
        assert kcidb.validate(doc) is doc
        assert kcidb_io.schema.LATEST.is_compatible_exactly(doc)      # the newest schema kcidb-io has
        assert doc["version"] == {"major": kcidb_io.schema.LATEST.major, "minor": kcidb_io.schema.LATEST.minor}
        assert kcidb_io.schema.LATEST.count(doc) == 2 + 1 + len(record["cases"])


def test_kcidb_ids_paths_statuses_and_environment(full, interrupted):
    for record, folder in ((full, FULL), (interrupted, INTERRUPTED)):
        doc = kcidb.document(record, folder)
        objects = doc["checkouts"] + doc["builds"] + doc["tests"]
        assert all(o["id"].startswith("kvmconf:") and o["origin"] == "kvmconf" for o in objects)
        summary, *tests = doc["tests"]
        assert summary["path"] == "kvmconf" and summary["environment"]["misc"]["capabilities"]
        by_case = {t["misc"]["case_id"]: t for t in tests}
        assert list(by_case) == [c["id"] for c in record["cases"]]
        for case in record["cases"]:
            test = by_case[case["id"]]
            assert test["status"] == case["status"]
            assert test["path"] == "kvmconf." + ".".join(re.sub(r"[^A-Za-z0-9_-]", "_", p)
                                                         for p in case["id"].split("/"))
            assert test["build_id"] == doc["builds"][0]["id"]
            assert test["environment"]["misc"]["accel"] == record["platform"]["accel"] == "tcg"
            assert "tcg" in test["environment"]["comment"]
        assert doc["builds"][0]["checkout_id"] == doc["checkouts"][0]["id"]
    assert by_case["smoke/wait-a"]["log_excerpt"] == "interrupted by SIGTERM"
    statuses = {t["status"] for d in (kcidb.document(full, FULL), kcidb.document(interrupted, INTERRUPTED))
                for t in d["tests"][1:]}
    assert statuses == {"PASS", "FAIL", "SKIP", "ERROR", "MISS"}
    doc = kcidb.document(full, FULL)
    assert {t["path"] for t in doc["tests"]} >= {"kvmconf.vfio.unmap.ends-at-2_64", "kvmconf.smoke.boot"}
    assert doc["tests"][0]["status"] == "FAIL"              # KCIDB's priority: FAIL first
    assert kcidb.document(interrupted, INTERRUPTED)["tests"][0]["status"] == "ERROR"


def test_kcidb_paths_sanitized():
    assert kcidb.test_path("vfio/unmap/ends-at-2^64") == "kvmconf.vfio.unmap.ends-at-2_64"
    assert kcidb.test_path("a/b.c/d e//f") == "kvmconf.a.b_c.d_e._.f"
    assert kcidb_io.schema.LATEST.test_path_re.fullmatch(kcidb.test_path("x/ü.{}/\x00"))


def test_kcidb_output_files_under_the_artifacts_url(full):
    doc = kcidb.document(full, FULL)
    base = FULL.resolve().as_uri() + "/"
    files = doc["tests"][1]["output_files"]
    assert [f["name"] for f in files] == ["run.json", "junit.xml", "all.serial.log"]
    assert [f["url"] for f in files] == [base + n for n in ("run.json", "junit.xml", "all.serial.log")]
    assert doc["tests"][1]["log_url"] == base + "pytest.log"
    doc = kcidb.validate(kcidb.document(full, FULL, "https://ci.example.org/runs/{run_id}"))
    assert doc["tests"][0]["output_files"][0]["url"] == \
        f"https://ci.example.org/runs/{full['run_id']}/run.json"


def test_kcidb_checkout_no_patches_and_config_hash(full):
    doc = kcidb.document(full, FULL)
    (checkout,) = doc["checkouts"]
    assert checkout["patchset_hash"] == "" and "message_id" not in checkout     # Debian's kernel, no patch
    record = copy.deepcopy(full)
    record["kernel"]["config_sha256"] = "c" * 64
    assert kcidb.document(record, FULL)["builds"][0]["misc"]["config_sha256"] == "c" * 64


def test_kcidb_patchset_hash_and_message_ids_of_an_mbox_series(full):
    """A kernel built from an mbox: run.json's kernel.series as the build records it
    (harness/series Revision.records())."""
    revision = serieslib.pick(MBOX)
    record = copy.deepcopy(full)
    record["kernel"].update(kind="built", series=revision.records())
    doc = kcidb.validate(kcidb.document(record, FULL))
    (checkout,) = doc["checkouts"]
    patch_hashes = [hashlib.sha256(p.diff.encode()).hexdigest() for p in revision.patches]
    expected = hashlib.sha256("".join(h + "\n" for h in patch_hashes).encode()).hexdigest()
    assert checkout["patchset_hash"] == expected == revision.sha256
    ids = [p.message_id for p in revision.patches]
    assert all(ids) and checkout["misc"]["message_ids"] == ids and checkout["message_id"] == ids[0]
    assert [p["subject"] for p in checkout["misc"]["series"]] == [p.subject for p in revision.patches]
    # a --patch file has no message-id: the hash still, no message_id
    record["kernel"]["series"] = [{"subject": "fix.patch", "revision": None, "message_id": None, "sha256": "a" * 64}]
    (checkout,) = kcidb.validate(kcidb.document(record, FULL))["checkouts"]
    assert checkout["patchset_hash"] == hashlib.sha256(b"a" * 64 + b"\n").hexdigest()
    assert "message_id" not in checkout
    # a patch whose hash is unknown (a digest without bodies): no patchset hash at all
    record["kernel"]["series"][0]["sha256"] = None
    assert "patchset_hash" not in kcidb.validate(kcidb.document(record, FULL))["checkouts"][0]


MUTATIONS = {
    "unknown-status": lambda d: d["tests"][1].update(status="BROKEN"),
    "slash-in-path": lambda d: d["tests"][1].update(path="kvmconf.vfio/unmap"),
    "id-without-origin": lambda d: d["builds"][0].update(id="no-origin-here"),
    "url-not-a-uri": lambda d: d["tests"][1]["output_files"][0].update(url="not a uri"),
    "null-field": lambda d: d["tests"][1].update(comment=None),
    "unknown-field": lambda d: d["checkouts"][0].update(series_hash="x"),
    "bad-patchset-hash": lambda d: d["checkouts"][0].update(patchset_hash="1234"),
    "bad-time": lambda d: d["tests"][1].update(start_time="yesterday"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_kcidb_a_mutated_document_fails_validation(full, mutation):
    doc = copy.deepcopy(kcidb.document(full, FULL))
    kcidb.validate(doc)
    MUTATIONS[mutation](doc)
    with pytest.raises(jsonschema.exceptions.ValidationError):
        kcidb_io.schema.LATEST.validate(doc)
    with pytest.raises(HarnessError, match=r"^kcidb: the document kvmconf made is not valid KCIDB 5\.\d+ "
                                           r"\(a kvmconf bug\): at "):
        kcidb.validate(doc)


def test_kcidb_a_duplicate_id_fails(full):
    doc = copy.deepcopy(kcidb.document(full, FULL))
    doc["tests"].append(copy.deepcopy(doc["tests"][1]))
    with pytest.raises(HarnessError, match="twice in the document"):
        kcidb.validate(doc)


# -- SQUAD -----------------------------------------------------------------------------
def _squad_name(name: str) -> tuple[str, str]:
    """SQUAD's parse_name: the suite is all before the last "/" (no [variant] here)."""
    suite, _, test = name.rpartition("/")
    return suite or "/", test


def test_squad_tests_file(full, interrupted):
    for record in (full, interrupted):
        tests = squad.submission(record)["tests"]
        assert list(tests) == [c["id"] for c in record["cases"]]
        for case in record["cases"]:
            value = tests[case["id"]]
            expected = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "SKIP": "skip", "MISS": "skip"}[case["status"]]
            if case["status"] == "PASS":
                assert value == "pass"
            else:
                assert value == {"result": expected, "log": f"{case['status']}: {case['reason']}"}
    assert _squad_name("vfio/unmap/ends-at-2^64") == ("vfio/unmap", "ends-at-2^64")
    assert {_squad_name(n)[0] for n in squad.tests(full)} == {"smoke", "syndbg/discovery", "vfio/discovery",
                                                              "vfio/unmap", "syndbg/random", "vfio/random",
                                                              "vfio/migration"}


def test_squad_metrics_file(full):
    metrics = squad.submission(full)["metrics"]
    assert metrics["kvmconf/boot_to_ready_s"] == full["timing"]["boot_to_ready_s"] == 7.524
    assert metrics["kvmconf/total_s"] == full["timing"]["total_s"]
    for feature in ("smoke", "syndbg", "vfio"):
        assert metrics[f"{feature}/duration_s"] == round(sum(c["duration_s"] for c in full["cases"]
                                                             if c["feature"] == feature), 3)
    vfio = next(r for r in full["random"] if r["feature"] == "vfio")
    seconds = next(c["duration_s"] for c in full["cases"] if c["id"] == "vfio/random/op-scripts")
    assert metrics["vfio/op_scripts_per_s"] == round(vfio["scripts"] / seconds, 3) == round(300 / 21.432, 3)
    assert metrics["vfio/op_actions_per_s"] == round(vfio["actions"] / seconds, 3)
    assert "syndbg/op_scripts_per_s" not in metrics    # its op-scripts FAILed: time spent shrinking
    assert all(isinstance(v, (int, float)) for v in metrics.values())


def test_squad_metadata_file(full, interrupted):
    meta = squad.submission(full, "https://ci.example.org/runs/x/")["metadata"]
    assert meta["job_id"] == full["run_id"] and "/" not in meta["job_id"]
    assert meta["kernel_version"] == "6.1.0-57-amd64" and meta["platform_accel"] == "tcg"
    assert meta["platform_host_cpu"] == "AMD EPYC" and meta["datetime"] == full["started"]
    assert meta["job_url"] == "https://ci.example.org/runs/x/" and meta["job_status"] == "complete"
    assert all(isinstance(v, str) for v in meta.values())
    assert squad.metadata(interrupted)["job_status"] == "interrupted (SIGTERM)"
    build, env = squad.build_and_environment(full)
    assert (build, env) == ("6.1.0-57-amd64", "qemu-tcg-all")
    assert all(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", x) for x in (build, env))


@pytest.mark.parametrize("bad", [
    lambda f: f["metadata"].update(job_id="a/b"),
    lambda f: f["metadata"].update(seed=3),
    lambda f: f["metrics"].update({"x/y": "fast"}),
    lambda f: f["metrics"].update({"x/y": float("nan")}),
    lambda f: f["tests"].update({"x/y": "xpass"}),
    lambda f: f.pop("metrics"),
])
def test_squad_check_refuses_what_squad_would(full, bad):
    files = copy.deepcopy(squad.submission(full))
    bad(files)
    with pytest.raises(HarnessError, match=r"^squad: the submission kvmconf made would be refused"):
        squad.check(files)


# -- the command -----------------------------------------------------------------------
def _html_present() -> bool:
    return report_cmd._html_module() is not None


def test_cli_end_to_end_every_format(tmp_path):
    out = tmp_path / "out"
    done = kvmconf("report", str(FULL), str(INTERRUPTED / "run.json"), "--output", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    full_id, int_id = load(FULL / "run.json")["run_id"], load(INTERRUPTED / "run.json")["run_id"]
    for run_id in (full_id, int_id):
        for name in (f"{run_id}.ktap", f"{run_id}.kcidb.json", f"{run_id}.junit.xml",
                     f"{run_id}.squad/tests.json", f"{run_id}.squad/metrics.json", f"{run_id}.squad/metadata.json"):
            assert (out / name).is_file() and (out / name).stat().st_size > 0, name
            assert f"{out / name.split('/')[0]}" in done.stdout
        kcidb.validate(json.loads((out / f"{run_id}.kcidb.json").read_text()))
        parse_ktap((out / f"{run_id}.ktap").read_text())
        root = ET.parse(out / f"{run_id}.junit.xml").getroot()
        record = load((FULL if run_id == full_id else INTERRUPTED) / "run.json")
        assert len(root.findall(".//testcase")) == len(record["cases"])
        squad.check({f: json.loads((out / f"{run_id}.squad" / f"{f}.json").read_text()) for f in squad.FILES})
    assert ("api/submit/GROUP/PROJECT/6.1.0-57-amd64/qemu-tcg-all") in done.stdout
    if _html_present():
        assert (out / f"{full_id}.html").is_file() and (out / f"{int_id}.html").is_file()
        assert (out / "compare.html").is_file()
        assert "<html" in (out / "compare.html").read_text()[:500].lower()


def test_cli_one_format_only(tmp_path):
    assert main(["report", str(FULL), "--ktap", "--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{load(FULL / 'run.json')['run_id']}.ktap"]
    assert main(["report", str(FULL), "--kcidb", "--squad", "--artifacts-url", "https://ci.example.org/r/{run_id}/",
                 "--output", str(tmp_path / "b")]) == 0
    run_id = load(FULL / "run.json")["run_id"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [f"{run_id}.kcidb.json", f"{run_id}.squad"]
    doc = json.loads((tmp_path / "b" / f"{run_id}.kcidb.json").read_text())
    assert doc["tests"][0]["log_url"] == f"https://ci.example.org/r/{run_id}/pytest.log"
    meta = json.loads((tmp_path / "b" / f"{run_id}.squad" / "metadata.json").read_text())
    assert meta["job_url"] == f"https://ci.example.org/r/{run_id}/"


@pytest.mark.skipif(not _html_present(), reason="harness/report/html.py is not in this tree yet")
def test_cli_html_gets_the_trend_rows(tmp_path, monkeypatch):
    """--html: one page per run, compare.html for two runs or more, each given the
    history store's recent case rows (none when the store cannot list them)."""
    from harness.report import html
    from harness.results import history
    calls = []
    monkeypatch.setattr(html, "render_run", lambda record, rows: calls.append(("run", record["run_id"], rows)) or "R")
    monkeypatch.setattr(html, "render_compare", lambda records, rows: calls.append(("compare", len(records), rows)) or "C")
    rows = [{"run_id": "r1", "started": "2026-12-01T00:00:00+00:00", "case_id": "smoke/boot", "feature": "smoke",
             "status": "PASS", "reason": "", "duration_s": 1.0}]
    opened = []

    class Store:
        def recent_cases(self, runs):
            opened.append(runs)
            return rows

        def close(self):
            opened.append("closed")
    monkeypatch.setattr(history, "open_store", lambda url: opened.append(url) or Store(), raising=False)
    db = tmp_path / "h.sqlite"
    sqlite3.connect(db).close()
    assert main(["report", str(FULL), "--html", "--history", str(db), "--output", str(tmp_path / "one")]) == 0
    assert calls == [("run", load(FULL / "run.json")["run_id"], rows)] and opened == [str(db), 50, "closed"]
    assert not (tmp_path / "one" / "compare.html").exists()
    calls.clear()
    assert main(["report", str(FULL), str(INTERRUPTED), "--html", "--history", str(db),
                 "--output", str(tmp_path / "two")]) == 0
    assert [c[0] for c in calls] == ["run", "run", "compare"] and calls[2][1:] == (2, rows)
    assert (tmp_path / "two" / "compare.html").read_text() == "C"
    # a store that cannot list recent cases: the pages get no rows
    monkeypatch.delattr(history, "open_store", raising=False)
    calls.clear()
    assert main(["report", str(FULL), "--html", "--output", str(tmp_path / "three")]) == 0
    assert calls == [("run", load(FULL / "run.json")["run_id"], [])]


def test_trend_rows_of_a_store_that_fails_or_is_not_there(tmp_path, monkeypatch):
    import argparse
    from harness.results import history

    def broken(url):
        raise sqlite3.DatabaseError("file is not a database")
    monkeypatch.setattr(history, "open_store", broken, raising=False)
    monkeypatch.delenv(report_cmd.ENV, raising=False)
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"")
    with pytest.raises(HarnessError, match=r"^--history .*h\.sqlite: cannot read the history store "
                                           r"\(DatabaseError: file is not a database\)$"):
        report_cmd.trend_rows(argparse.Namespace(db=None, history=str(db)))
    monkeypatch.setattr(report_cmd, "DEFAULT_HISTORY", db)      # the default store: a warning, no rows
    assert report_cmd.trend_rows(argparse.Namespace(db=None, history=None)) == []
    missing = tmp_path / "none.sqlite"                          # a report does not make a store
    assert report_cmd.trend_rows(argparse.Namespace(db=None, history=str(missing))) == []
    assert not missing.exists()


def test_an_unsafe_run_id_stays_inside_the_output(tmp_path, full):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(dict(full, run_id="../../escape")))
    assert main(["report", str(run), "--ktap", "--output", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["_.._escape.ktap"]


def _bad_record(tmp_path) -> Path:
    record = json.loads((FULL / "run.json").read_text())
    del record["cases"][0]["status"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("argv, line", [
    ((str(FULL),), r"kvmconf: report needs --output DIR \(the folder for the reports\)"),
    ((str(FULL), str(FULL / "run.json"), "--output", "{out}"),
     r"kvmconf: .*run\.json: the same run as .*syndbg-vfio \(run id 20261201-220319-6185\): give each run once"),
    ((str(FULL), str(INTERRUPTED), "--artifacts-url", "https://ci.example.org/x/", "--output", "{out}"),
     r"kvmconf: --artifacts-url https://ci.example.org/x/: 2 runs share it: put \{run_id\} in it where each run's folder goes"),
    (("{broken}", "--output", "{out}"),
     r"kvmconf: .*broken\.json: not a whole run record \(cases\[0\]\.status: bad or missing; \d+ more problems\)"),
    ((str(FULL), "--artifacts-url", "ci.example.org/x", "--output", "{out}"),
     r"kvmconf: --artifacts-url ci\.example\.org/x: not an absolute URL \(expected SCHEME://HOST/PATH, .*\)"),
    ((str(FULL), "--db", "sqlite://{out}/h.sqlite", "--history", "{out}/h2.sqlite", "--output", "{out}"),
     r"kvmconf: --history: not allowed with argument --db"),
], ids=["no-output", "same-run-twice", "artifacts-url-for-two", "broken-record", "bad-url", "two-stores"])
def test_cli_bad_input_is_one_line(tmp_path, argv, line):
    values = {"out": str(tmp_path / "out"), "broken": str(_bad_record(tmp_path))}
    done = kvmconf("report", *[a.format(**values) for a in argv], timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert re.fullmatch(line, done.stderr.strip()), done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_invalid_kcidb_document_stops_the_command(tmp_path, monkeypatch, capsys):
    """The command validates what it writes: an exporter bug is an error, no file."""
    real = kcidb.document
    monkeypatch.setattr(kcidb, "document", lambda *a, **k: dict(real(*a, **k), checkouts=[{"id": "x"}]))
    assert main(["report", str(FULL), "--kcidb", "--output", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_full_record_export_sizes(tmp_path, full):
    """A report of a real record stays small enough to mail or upload: each format
    under 64 KiB for the 19-case fixture (the 198-case original: see the commit)."""
    shutil.copytree(FULL, tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--ktap", "--kcidb", "--squad", "--junit",
                 "--output", str(tmp_path / "out")]) == 0
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 64 * 1024, path
