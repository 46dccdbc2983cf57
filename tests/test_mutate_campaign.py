"""The mutation campaign: the one definition of killed, the base run that must be green
before any mutant, each mutant once, and the generator's scope from the feature registry.

The `kvmconf run` step is injected (the campaign's own `runner` seam): these tests are
about the campaign's logic, not a kernel. The real runs are in the e2e tests.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from harness import features as registry
from harness.errors import UsageError
from harness.mutate import campaign, generate
from harness.mutate.campaign import verdict
from tests.conftest import REPO


def case(id_: str, status: str, reason: str = "", **extra) -> dict:
    return {"id": id_, "feature": id_.split("/")[0], "status": status, "reason": reason,
            "divergence": None, **extra}


BASE = [case("syndbg/a", "PASS"), case("syndbg/b", "PASS"), case("syndbg/c", "FAIL", "known on base")]


# -- verdict --------------------------------------------------------------------------
def test_a_new_fail_kills_and_names_its_cases():
    run = {"cases": [case("syndbg/a", "FAIL", "exit.msr differs"), case("syndbg/b", "PASS"),
                     case("syndbg/c", "FAIL", "known on base")]}
    status, killers, reason = verdict(BASE, run, 1)
    assert status == "KILLED" and killers == ["syndbg/a"]
    assert reason.startswith("syndbg/a: exit.msr differs")


def test_a_fail_the_base_also_has_does_not_kill():
    run = {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "PASS"), case("syndbg/c", "FAIL", "known")]}
    status, killers, reason = verdict(BASE, run, 1)
    assert (status, killers) == ("SURVIVED", [])
    assert "syndbg/c" in reason
    # id -> status works as the base too
    assert verdict({"syndbg/c": "FAIL"}, run, 1)[0] == "SURVIVED"


def test_every_case_agreeing_survives():
    run = {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "SKIP", "no cap")]}
    assert verdict(BASE, run, 0)[:2] == ("SURVIVED", [])


def test_the_divergence_is_the_reason_when_there_is_one():
    d = {"step": 3, "action": "wrmsr 0x400000f1 = 0x1", "field": "exit.msr", "expected": "1",
         "observed": "none", "matches_profile": None}
    run = {"cases": [case("syndbg/b", "FAIL", "long text", divergence=d)]}
    status, _, reason = verdict(BASE, run, 1)
    assert status == "KILLED"
    assert reason == "syndbg/b step 3 (wrmsr 0x400000f1 = 0x1): exit.msr expected 1, observed none"


def test_profile_named_by_the_patch_must_be_the_runs_profile_verdict():
    fails = [case("syndbg/a", "FAIL", "diverges", divergence={"step": 1, "action": "rdmsr", "field": "gp",
                                                               "expected": "1", "observed": "0",
                                                               "matches_profile": "v7"})]
    # Killed by a new FAIL, but the run says no profile explains it: not killed.
    status, killers, reason = verdict(BASE, {"cases": fails, "profile_verdict": {"syndbg": None}}, 1,
                                      expect_profile="v7", feature="syndbg")
    assert status == "WRONG-PROFILE" and killers == ["syndbg/a"]
    assert "names profile v7" in reason and "profile_verdict syndbg=null" in reason
    # Another profile: not killed, and the reason says which profile was found.
    status, _, reason = verdict(BASE, {"cases": fails, "profile_verdict": {"syndbg": "mainline"}}, 1,
                                expect_profile="v7", feature="syndbg")
    assert status == "WRONG-PROFILE" and "syndbg=mainline" in reason
    # A case's matches_profile is evidence, not the verdict: an older record without
    # profile_verdict is read with .get and is not killed either.
    status, _, reason = verdict(BASE, {"cases": fails}, 1, expect_profile="v7", feature="syndbg")
    assert status == "WRONG-PROFILE" and "no profile_verdict" in reason
    # The named profile: killed. The feature defaults to the run's only one.
    run = {"cases": fails, "profile_verdict": {"syndbg": "v7"}}
    assert verdict(BASE, run, 1, expect_profile="v7", feature="syndbg")[0] == "KILLED"
    assert verdict(BASE, run, 1, expect_profile="v7")[0] == "KILLED"
    # The right profile without a new FAIL does not kill.
    calm = {"cases": [case("syndbg/a", "PASS")], "profile_verdict": {"syndbg": "v7"}}
    assert verdict(BASE, calm, 0, expect_profile="v7", feature="syndbg")[0] == "SURVIVED"


def test_a_broken_run_is_error_not_killed_or_survived():
    run = {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "ERROR", "ssh lost"),
                     case("syndbg/c", "FAIL", "known")]}
    status, killers, reason = verdict(BASE, run, 2)
    assert (status, killers) == ("ERROR", []) and "exit 2" in reason and "syndbg/b ERROR: ssh lost" in reason
    assert verdict(BASE, {"cases": [case("syndbg/a", "MISS")]}, 2, stderr="kvmconf: boot failed")[0] == "ERROR"
    status, _, reason = verdict(BASE, None, 2, stderr="kvmconf: build failed")
    assert status == "ERROR" and "no run record" in reason and "build failed" in reason
    # An exit 1 whose record has no FAIL at all is not a kill either.
    assert verdict(BASE, {"cases": [case("syndbg/a", "PASS")]}, 1)[0] == "ERROR"
    # A new FAIL is evidence even when the run also broke.
    assert verdict(BASE, {"cases": [case("syndbg/a", "FAIL", "x"), case("syndbg/b", "ERROR")]}, 1)[0] == "KILLED"


def test_the_hand_written_patches_name_known_profiles():
    assert campaign.expected_profile(REPO / "ci/mutants/syndbg/v7-inactive-ignored.patch") is None      # only evidence: no profile explains the whole run
    assert campaign.expected_profile(REPO / "ci/mutants/vfio/fix-stale-bits.patch") == "fixed"
    assert campaign.expected_profile(REPO / "ci/mutants/syndbg/hcall-result-lost.patch") is None
    for feature in generate.mutable_features():
        patches = sorted((REPO / "ci/mutants" / feature).glob("*.patch"))
        specs = campaign.hand_written(feature, patches)     # raises on an unknown profile
        assert [s.expect_profile for s in specs if s.expect_profile] in ([], ["fixed"])


def test_a_patch_naming_an_unknown_profile_is_a_usage_error(tmp_path):
    patch = tmp_path / "x.patch"
    patch.write_text("Expected: profile_verdict v9\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(UsageError, match="profile_verdict .v9.*known: mainline, v7"):
        campaign.hand_written("syndbg", [patch])


# -- the campaign ---------------------------------------------------------------------
class FakeRuns:
    """Stands in for `kvmconf run`: writes the run.json the test gives for each run."""

    def __init__(self, records: dict):
        self.records = records       # "base" | patch stem -> (exit code, run.json dict or None)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.calls.append(argv)
        out = Path(argv[argv.index("--output") + 1])
        key = Path(argv[argv.index("--patch") + 1]).stem if "--patch" in argv else "base"
        code, record = self.records[key]
        out.mkdir(parents=True, exist_ok=True)
        if record is not None:
            (out / "run.json").write_text(json.dumps(record))
        return code, "" if code != 2 else "kvmconf: the run broke"


def specs(tmp_path: Path) -> list:
    patches = []
    for name, header in (("kill", ""), ("same", ""), ("v7", "profile_verdict v7\n"), ("broken", "")):
        patch = tmp_path / f"{name}.patch"
        patch.write_text(f"{header}--- a/arch/x86/kvm/hyperv.c\n+++ b/arch/x86/kvm/hyperv.c\n")
        patches.append(patch)
    return campaign.hand_written("syndbg", patches)


def test_a_red_base_stops_the_campaign_before_any_mutant(tmp_path):
    runs = FakeRuns({"base": (1, {"cases": [case("syndbg/a", "PASS"),
                                            case("syndbg/b", "FAIL", "exit.msr expected 1, observed none\nmore")]})})
    built = []
    folder = tmp_path / "campaign"
    with pytest.raises(campaign.BaseRed) as e:
        campaign.run_campaign(specs(tmp_path), Path("/src/linux.tar.xz"), folder, 7, lambda text: None,
                              runner=runs, builder=lambda source, patches: built.append(patches))
    record = folder / "base-syndbg" / "run.json"
    assert str(e.value) == f"base kernel is red: syndbg/b: exit.msr expected 1, observed none (run record: {record})"
    assert built == [] and len(runs.calls) == 1
    # The base run is the mutants' run without the patch: same source, feature, suite and seed.
    argv = runs.calls[0]
    assert "--patch" not in argv
    assert argv[argv.index("--source") + 1] == "/src/linux.tar.xz" and argv[argv.index("--seed") + 1] == "7"
    assert argv[argv.index("--features") + 1] == argv[argv.index("--suite") + 1] == "syndbg"
    report = json.loads((folder / "mutants.json").read_text())
    assert report["base"]["status"] == "RED" and report["done"] == 0 and report["mutants"] == []
    assert report["base"]["cases"] == [{"id": "syndbg/b", "status": "FAIL",
                                        "reason": "exit.msr expected 1, observed none"}]


def test_a_base_that_broke_is_red_too(tmp_path):
    runs = FakeRuns({"base": (2, None)})
    with pytest.raises(campaign.BaseRed, match=r"base kernel is red: syndbg \(no run record\): exit 2: "
                                               r"kvmconf: the run broke"):
        campaign.run_campaign(specs(tmp_path), Path("/src"), tmp_path / "c", 0, lambda text: None,
                              runner=runs, builder=lambda *a: None)
    runs = FakeRuns({"base": (2, {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "MISS", "never ran")]})})
    with pytest.raises(campaign.BaseRed, match="syndbg/b: never ran"):
        campaign.run_campaign(specs(tmp_path), Path("/src"), tmp_path / "c", 0, lambda text: None,
                              runner=runs, builder=lambda *a: None)


def test_kvmconf_mutate_says_the_base_is_red_in_one_line_and_exits_2(tmp_path, monkeypatch):
    import harness.cli as entry
    runs = FakeRuns({"base": (1, {"cases": [case("syndbg/b", "FAIL", "rax expected 0x0, observed 0x2")]})})
    monkeypatch.setattr(campaign, "run_kvmconf", runs)
    monkeypatch.setattr(campaign, "_build", lambda *a: pytest.fail("a mutant was built"))
    stderr = io.StringIO()
    monkeypatch.setattr(entry, "err", Console(file=stderr, width=400))
    import harness.commands.mutate as command
    monkeypatch.setattr(command, "err", Console(file=io.StringIO()))
    code = entry.main(["mutate", "--features", "syndbg", "--hand-written-only", "--output", str(tmp_path / "m"),
                       "--patch", str(REPO / "ci/mutants/syndbg/hcall-result-lost.patch")])
    assert code == 2
    assert stderr.getvalue().splitlines() == [
        f"kvmconf: base kernel is red: syndbg/b: rax expected 0x0, observed 0x2 "
        f"(run record: {tmp_path / 'm' / 'base-syndbg' / 'run.json'})"]
    assert len(runs.calls) == 1


def test_a_green_base_then_each_mutant_once_judged_against_it(tmp_path):
    green = [case("syndbg/a", "PASS"), case("syndbg/b", "PASS")]
    runs = FakeRuns({
        "base": (0, {"cases": green, "profile_verdict": {"syndbg": "mainline"}}),
        "kill": (1, {"cases": [case("syndbg/a", "FAIL", "x"), case("syndbg/b", "PASS")],
                     "profile_verdict": {"syndbg": None}}),
        "same": (0, {"cases": green, "profile_verdict": {"syndbg": "mainline"}}),
        "v7": (1, {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "FAIL", "gp")],
                   "profile_verdict": {"syndbg": "mainline"}}),
        "broken": (2, {"cases": [case("syndbg/a", "PASS"), case("syndbg/b", "ERROR", "ssh lost")]}),
    })
    built = []
    report = campaign.run_campaign(specs(tmp_path), Path("/src"), tmp_path / "c", 3, lambda text: None,
                                   runner=runs, builder=lambda source, patches: built.append(patches[0].stem))
    assert report["base"]["status"] == "GREEN"
    got = {m["id"]: (m["status"], m["killers"]) for m in report["mutants"]}
    assert got == {"syndbg-hand-kill": ("KILLED", ["syndbg/a"]), "syndbg-hand-same": ("SURVIVED", []),
                   "syndbg-hand-v7": ("WRONG-PROFILE", ["syndbg/b"]), "syndbg-hand-broken": ("ERROR", [])}
    v7 = next(m for m in report["mutants"] if m["id"] == "syndbg-hand-v7")
    assert v7["expect_profile"] == "v7" and v7["profile_verdict"] == "mainline"
    # One base run, then each mutant built and run exactly once.
    assert built == ["kill", "same", "v7", "broken"]
    stems = [Path(a[a.index("--patch") + 1]).stem if "--patch" in a else "base" for a in runs.calls]
    assert stems == ["base", "kill", "same", "v7", "broken"]
    assert report["counts"] == {"KILLED": 1, "SURVIVED": 1, "WRONG-PROFILE": 1, "DROPPED": 0, "ERROR": 1}
    assert campaign.exit_code(report) == (1, "2 mutant(s) not killed (1 survived, 1 wrong profile)")
    assert json.loads((tmp_path / "c" / "mutants.json").read_text())["done"] == 4


def test_unbuildable_mutants_dropped_when_generated_error_when_hand_written(tmp_path):
    from harness.errors import HarnessError
    hand = specs(tmp_path)[0]
    gen = campaign.MutantSpec("syndbg-hyperv-9-negate-if", "syndbg", hand.patch, "generated", "negate-if")
    runs = FakeRuns({"base": (0, {"cases": [case("syndbg/a", "PASS")]})})

    def builder(source, patches):
        raise HarnessError("patch does not apply: hunk 1")

    report = campaign.run_campaign([hand, gen], Path("/src"), tmp_path / "c", 0, lambda text: None,
                                   runner=runs, builder=builder)
    assert [m["status"] for m in report["mutants"]] == ["ERROR", "DROPPED"]
    assert len(runs.calls) == 1
    assert campaign.exit_code(report)[0] == 2
    assert campaign.exit_code({"counts": {"KILLED": 3, "DROPPED": 2}, "mutants": []}) == (0, None)


# -- ci/mutants.sh is the campaign's entry point -----------------------------------------
def test_mutants_sh_calls_the_campaign_with_its_usage(tmp_path):
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$ARGS_FILE\"\nexit 1\n")
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "ARGS_FILE": str(tmp_path / "args"), "SEED": "5",
           "OUT": "results/x"}
    done = subprocess.run(["bash", str(REPO / "ci/mutants.sh"), "syndbg", "a.patch"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1      # the campaign's exit code, passed through
    assert (tmp_path / "args").read_text().splitlines() == [
        "-m", "harness.cli", "mutate", "--features", "syndbg", "--hand-written-only",
        "--source", "/usr/src/linux-source-6.1.tar.xz", "--seed", "5", "--output", "results/x",
        "--patch", str(tmp_path / "a.patch")]
    bad = subprocess.run(["bash", str(REPO / "ci/mutants.sh")], env=env, capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and bad.stderr.strip() == "usage: ci/mutants.sh FEATURE [MUTANT.patch ...]"
    assert "python3 -" not in (REPO / "ci/mutants.sh").read_text()   # no second definition of killed


def test_mutants_sh_bad_feature_is_a_usage_error():
    done = subprocess.run(["bash", str(REPO / "ci/mutants.sh"), "nope"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHON": str(REPO / ".venv/bin/python")})
    assert done.returncode == 2 and "unknown feature 'nope'" in done.stderr


# -- the generator's scope comes from the registry -----------------------------------------
HYPERV_C = """\
static int stimer_set_config(int config)
{
\tif (config == 1)
\t\treturn 1;
\treturn 0;
}

static int syndbg_set_msr(int msr, int data)
{
\tswitch (msr) {
\tcase HV_X64_MSR_SYNIC_SCONTROL: {
\t\tfoo(1);
\t}
\tcase HV_X64_MSR_STIMER0_CONFIG:
\t\tbar(2);
\t\tbreak;
\tcase HV_X64_MSR_SYNDBG_OPTIONS:
\t\tbaz(3);
\t\tbreak;
\t}
\ttrace_kvm_thing(msr,
\t\t\tdata + 1);
\tqux(4);
\treturn 0;
}
"""


def synthetic_tree(root: Path) -> Path:
    (root / "arch/x86/kvm").mkdir(parents=True)
    (root / "arch/x86/kvm/hyperv.c").write_text(HYPERV_C)
    return root


def test_generate_takes_files_functions_and_case_scope_from_the_syndbg_row(tmp_path):
    row = registry.get("syndbg")
    assert "syndbg_set_msr" in row.cited_functions() and "stimer_set_config" not in row.cited_functions()
    assert row.kernel_files == ("arch/x86/kvm/hyperv.c",)
    mutants = generate.generate("syndbg", synthetic_tree(tmp_path))
    assert {m.function for m in mutants} == {"syndbg_set_msr"}
    assert {m.path for m in mutants} == {"arch/x86/kvm/hyperv.c"}
    # Only the SYNDBG case body and the code after the switch: the row's mutate_case_scope
    # leaves out SynIC and stimers; the tracepoint is unobservable.
    assert sorted({m.line for m in mutants}) == [18, 23, 24]
    assert not hasattr(generate, "TARGET_FILES") and not hasattr(generate, "CASE_SCOPE")
    assert not hasattr(generate, "cited_functions")


def _extra_row(tmp_path: Path, name: str, kernel_files: tuple, scope: str | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.py").write_text("# hyperv.c: syndbg_set_msr() and stimer_set_config()\nPROFILES = ('x',)\n")
    (folder / "row.py").write_text(textwrap.dedent(f"""\
        from harness.features import Feature
        FEATURE = Feature(name={name!r}, title="toy", machine=frozenset(), modules=(), config=None,
                          kernel_files={kernel_files!r}, model="model.py", codec="codec.py",
                          cases="cases.py", strategy="gen.py", payload=".",
                          mutate_case_scope={scope!r}, origin=__import__("pathlib").Path({str(folder)!r}))
        """))
    return folder / "row.py"


def test_generate_follows_another_rows_scope_and_refuses_rows_without_kernel_files(tmp_path, monkeypatch):
    toy = _extra_row(tmp_path, "toy", ("arch/x86/kvm/hyperv.c",), "SYNIC")
    bare = _extra_row(tmp_path, "bare", (), None)
    monkeypatch.setenv(registry.EXTRA_ENV, f"{toy}:{bare}")
    mutants = generate.generate("toy", synthetic_tree(tmp_path / "src"))
    # This row cites stimer_set_config() too, and its scope is the SynIC case only.
    assert {m.function for m in mutants} == {"stimer_set_config", "syndbg_set_msr"}
    assert sorted({m.line for m in mutants if m.function == "syndbg_set_msr"}) == [12, 23, 24]
    assert generate.mutable_features() == ["syndbg", "vfio", "sev_es", "pebs_pt", "toy"]
    with pytest.raises(UsageError) as e:
        generate.generate("bare", tmp_path / "src")
    assert "bare has no kernel_files" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError) as e:
        generate.check_mutable(["syndbg", "bare"])
    assert str(e.value).startswith("--features syndbg,bare: bare has no kernel_files")
    # A kernel file the tree lacks is a one-line error naming it.
    with pytest.raises(UsageError, match="drivers/vfio/vfio_iommu_type1.c not readable"):
        generate.generate("vfio", tmp_path / "src")
