"""Series parsing (mbox, format-patch folder, patchwork digest) and run comparison."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import series
from harness.errors import UsageError
from harness.results.compare_runs import classify, compare
from tests.conftest import FIXTURES, kvmconf

DIFF = """---
 arch/x86/kvm/hyperv.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/arch/x86/kvm/hyperv.c b/arch/x86/kvm/hyperv.c
--- a/arch/x86/kvm/hyperv.c
+++ b/arch/x86/kvm/hyperv.c
@@ -1,3 +1,3 @@
 a
-b{n}
+c{n}
 d
"""


def _mail(subject: str, msgid: str, reply_to: str | None, body: str, sender="Ann Dev <ann@example.org>") -> str:
    headers = [f"From {msgid} Mon Sep 17 00:00:00 2001", f"From: {sender}", f"Subject: {subject}",
               "Date: Thu, 19 Mar 2020 07:58:37 +0200", f"Message-Id: <{msgid}>"]
    if reply_to:
        headers += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    return "\n".join(headers) + "\n\n" + body + "\n"


def write_mbox(path: Path, revisions=(1,), count=3, title="kvm: do things") -> Path:
    mails = []
    for rev in revisions:
        cover = f"cover-v{rev}@example.org"
        mails.append(_mail(f"[PATCH v{rev} 0/{count}] {title}", cover, None, f"Cover letter v{rev}.\n"))
        for n in range(count, 0, -1):  # out of order on purpose
            mails.append(_mail(f"[PATCH v{rev} {n}/{count}] part {n}", f"p{n}-v{rev}@example.org", cover,
                               f"Part {n}.\n" + DIFF.format(n=n + 10 * rev)))
    path.write_text("".join(mails))
    return path


def test_seed_digest_lists_four_series_and_groups_syndbg_revisions():
    found, is_digest = series.load(FIXTURES / "seed-digest.txt")
    assert is_digest
    by_subject = {s.subject: s for s in found}
    assert len(found) == 4
    syndbg = by_subject["x86/kvm/hyper-v: add support for synthetic debugger"]
    assert [r.revision for r in syndbg.revisions] == [7, 8]
    assert syndbg.revisions[0].cover_message_id == "20200319055842.673513-1-arilou@gmail.com"
    assert all(not r.patches and r.sha256 is None for s in found for r in s.revisions)
    assert {s.subject for s in found} >= {"PEBS virtualization enabling via Intel PT", "x86: SEV-ES Guest Support",
                                          "KABIs to support migration for VFIO devices"}


def test_series_show_cli_on_the_digest_says_how_to_fetch_patches():
    done = kvmconf("series", "show", str(FIXTURES / "seed-digest.txt"))
    assert done.returncode == 0
    assert "b4 am 20200319063836.678562-1-arilou@gmail.com" in done.stdout
    assert done.stdout.count("x86/kvm/hyper-v: add support for synthetic debugger") == 1
    data = json.loads(kvmconf("series", "show", "--json", str(FIXTURES / "seed-digest.txt")).stdout)
    assert [r["revision"] for r in data[0]["revisions"]] == [7, 8]


def test_mbox_with_two_revisions_is_one_series_with_ordered_patches_and_hashes(tmp_path):
    found, is_digest = series.load(write_mbox(tmp_path / "s.mbox", revisions=(1, 2)))
    assert not is_digest and len(found) == 1
    v1, v2 = found[0].revisions
    assert [p.counter for p in v2.patches] == [1, 2, 3]
    assert [p.message_id for p in v2.patches] == [f"p{n}-v2@example.org" for n in (1, 2, 3)]
    assert v2.patches[0].diff.startswith("diff --git") and v1.sha256 != v2.sha256 and len(v2.sha256) == 64
    chosen = series.pick(tmp_path / "s.mbox")
    assert chosen.revision == 2
    assert series.pick(tmp_path / "s.mbox", revision=1).revision == 1
    with pytest.raises(UsageError, match="no revision v3"):
        series.pick(tmp_path / "s.mbox", revision=3)
    files = series.write_patches(chosen, tmp_path / "out")
    assert [f.name for f in files] == ["0001.patch", "0002.patch", "0003.patch"]
    assert chosen.records()[1] == {"subject": "part 2", "revision": 2, "message_id": "p2-v2@example.org",
                                   "sha256": chosen.patches[1].sha256}


def test_format_patch_folder_without_cover_letter(tmp_path):
    folder = tmp_path / "fp"
    folder.mkdir()
    for n in (1, 2):
        (folder / f"000{n}-part.patch").write_text(_mail(f"[PATCH {n}/2] part {n}", f"m{n}@x", None,
                                                         DIFF.format(n=n)))
    (found,), _ = series.load(folder)
    assert found.subject == "part 1" and [p.counter for p in found.revisions[0].patches] == [1, 2]


def test_malformed_inputs_are_named(tmp_path):
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(UsageError, match=r"junk: not an mbox"):
        series.load(tmp_path / "junk")
    (tmp_path / "nosubj.mbox").write_text("From x Mon Sep 17 00:00:00 2001\nFrom: a@b\n\nbody\n")
    with pytest.raises(UsageError, match=r"nosubj.mbox: message 1 has no Subject"):
        series.load(tmp_path / "nosubj.mbox")
    (tmp_path / "nodiff.mbox").write_text(_mail("[PATCH 1/1] x", "a@b", None, "no diff here"))
    with pytest.raises(UsageError, match=r"message '\[PATCH 1/1\] x' has no diff"):
        series.load(tmp_path / "nodiff.mbox")
    write_mbox(tmp_path / "two.mbox")
    text = (tmp_path / "two.mbox").read_text()
    (tmp_path / "two.mbox").write_text(text + text.replace("do things", "other").replace("Ann", "Bob")
                                       .replace("@example.org", "@example.com"))
    with pytest.raises(UsageError, match="holds 2 series"):
        series.pick(tmp_path / "two.mbox")
    done = kvmconf("series", "show", str(tmp_path / "junk"))
    assert done.returncode == 2 and "junk: not an mbox" in done.stderr


def _run(run_id: str, states: dict[str, str], seed=1) -> dict:
    return {"schema": "kvmconf-run/1", "run_id": run_id, "label": run_id, "seed": seed,
            "harness": {"version": "0.1.0"}, "profiles": {"syndbg": "mainline"},
            "kernel": {"version": "6.1"}, "platform": {"host_cpu": "x", "accel": "tcg", "qemu": "7.2"},
            "cases": [{"id": cid, "status": status} for cid, status in states.items()]}


def test_compare_classifies_changes():
    assert classify("PASS", "FAIL") == "regressed" and classify("SKIP", "ERROR") == "regressed"
    assert classify("FAIL", "PASS") == "fixed" and classify("FAIL", "ERROR") == "unchanged failure"
    assert classify(None, "PASS") == "new" and classify("PASS", None) == "removed"
    result = compare([_run("a", {"s/1": "PASS", "s/2": "FAIL", "s/3": "PASS"}),
                      _run("b", {"s/1": "FAIL", "s/2": "PASS", "s/4": "PASS"}, seed=2)])
    assert result["regressed"] == ["s/1"] and result["fixed"] == ["s/2"]
    assert {r["id"]: r["changes"] for r in result["cases"]}["s/3"] == ["removed"]
    assert any("seed" in w for w in result["warnings"])


def test_a_retried_error_is_flaky_not_a_regression_but_a_fail_stays_one():
    before = _run("a", {"s/1": "PASS", "s/2": "PASS", "s/3": "PASS"})
    after = _run("b", {"s/1": "ERROR", "s/2": "FAIL", "s/3": "PASS"})
    after["cases"][0]["retried"] = True          # ERROR, ERROR: the infrastructure
    after["cases"][1]["retried"] = True          # ERROR, then FAIL: a verdict
    after["cases"][2]["retried"] = True          # ERROR, then PASS
    result = compare([before, after])
    assert result["regressed"] == ["s/2"] and result["flaky"] == ["s/1", "s/2", "s/3"]
    assert {r["id"]: r["changes"] for r in result["cases"]}["s/1"] == ["flaky"]
    after["cases"][0]["retried"] = False         # an ERROR nobody retried is a regression
    assert compare([before, after])["regressed"] == ["s/1", "s/2"]


def test_compare_cli_exits_1_on_regression_and_0_otherwise(tmp_path):
    for name, states in (("a", {"s/1": "PASS"}), ("b", {"s/1": "FAIL"}), ("c", {"s/1": "PASS"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps(_run(name, states)))
    done = kvmconf("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert done.returncode == 1 and "regressed" in done.stdout and "s/1" in done.stderr
    assert kvmconf("compare", str(tmp_path / "a"), str(tmp_path / "c")).returncode == 0
    done = kvmconf("compare", str(tmp_path / "a"), str(tmp_path / "nope"))
    assert done.returncode == 2 and "no such run record" in done.stderr


def test_bisect_search_finds_the_first_changing_prefix_with_few_probes():
    from harness.series.bisect import first_changes
    calls = []

    def probe(k):
        calls.append(k)
        return {"a/x": "FAIL" if k >= 2 else "PASS", "a/y": "PASS", "a/z": "FAIL" if k >= 5 else "PASS"}

    assert first_changes(8, ["a/x", "a/y", "a/z"], probe) == {"a/x": 2, "a/y": None, "a/z": 5}
    assert len(calls) == len(set(calls)) and len(calls) <= 7


def test_generated_mutants_are_one_spot_patches_in_cited_functions(tmp_path):
    from harness.mutate.generate import function_bodies, mutants_of_line, sample
    lines = ["static int syndbg_set_msr(int a, int b)", "{", "\tint x = 0;", "\tif (a == 1 &&", "\t    b < 2)",
             "\t\treturn -1;", "\tfoo(a);", "\tx = a + 3;", "\treturn x;", "}"]
    assert function_bodies(lines, {"syndbg_set_msr"}) == {"syndbg_set_msr": (2, 8)}
    ops = {m.operator: m.mutated for m in mutants_of_line("syndbg", "f.c", "f", 4, lines[3])}
    assert ops["==->!="] == "\tif (a != 1 &&" and ops["&&->||"] == "\tif (a == 1 ||"
    assert ops["const1->2"] == "\tif (a == 2 &&"
    assert mutants_of_line("syndbg", "f.c", "f", 7, lines[6])[0].mutated == "\t;"
    assert [m.operator for m in mutants_of_line("syndbg", "f.c", "f", 5, lines[4], statement_start=False)] == \
        ["<-><=", "const2->3"]
    plus = mutants_of_line("syndbg", "f.c", "f", 8, lines[7])
    assert {m.operator for m in plus} == {"+->-", "const3->4", "remove-statement"}
    patch = plus[0].patch(lines)
    body = patch.splitlines()
    assert [l for l in body if l.startswith("-") and not l.startswith("---")] == ["-\tx = a + 3;"]
    assert [l for l in body if l.startswith("+") and not l.startswith("+++")] == ["+\tx = a - 3;"]
    assert len(sample(plus, 2, seed=1)) == 2 and sample(plus, 2, 1) == sample(plus, 2, 1)

