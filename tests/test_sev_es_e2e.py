"""End to end: the sev_es suite on the kernel under test's own #VC code (vcsim built from
its source), for Debian's 6.1 kernel (its linux-source of the same version; with the
baseline triggers run natively in a guest booting that kernel, the kvmconf_vc module
built against its linux-headers) and for linux-source-6.1 given as --source with
--user-space-only (a run that compiles only that code builds and boots no kernel)."""
from __future__ import annotations

import pytest

from harness.features import get
from harness.results.schema import problems
from tests.conftest import kvmconf, load_run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("kernel", [[], ["--source", "/usr/src/linux-source-6.1.tar.xz", "--user-space-only"]],
                         ids=["debian-kernel", "linux-source"])
def test_sev_es_suite_on_the_kernels_own_vc_code(tmp_path, kernel, debian_kernel):
    out = tmp_path / "run"
    done = kvmconf("run", *kernel, "--features", "sev_es", "--suite", "sev_es", "--seed", "1",
                   "--output", str(out), "--history", str(tmp_path / "h"), timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    cases = [c for c in record["cases"] if c["feature"] == "sev_es"]
    assert not [c for c in cases if c["status"] in ("FAIL", "ERROR", "MISS")]
    passed = [c for c in cases if c["status"] == "PASS"]
    assert len(passed) >= 100          # every named case, the random scripts, the differential
    hardware = [c for c in cases if c["id"].startswith("sev_es/hardware/")]
    assert hardware and all(c["status"] == "SKIP" and "missing" in c["reason"] and "(" in c["reason"]
                            for c in hardware), hardware
    (random,) = record["random"]
    assert random["scripts"] >= 300 and random["diverged"] == 0 and all(random["action_kinds"].values())
    (differential,) = record["differentials"]
    assert differential["compared"] >= 10_000 and differential["disagreements"]["kernel-vs-model"] == 0
    assert {"sev_es/df-string-element-offset", "sev_es/in-al-ax-whole-rax",
            "sev_es/decoder-high-byte-register"} <= {f["id"] for f in record["findings"]}
    compiled = record["compiled_kernel_files"]["sev_es"]
    assert set(get("sev_es").kernel_files) <= set(compiled) and all(len(v) == 64 for v in compiled.values())
    assert record["profile_verdict"] == {"sev_es": "6.1"}
    baseline = [c for c in cases if c["id"].startswith("sev_es/baseline/")]
    if not kernel:     # every trigger natively: user mode, and the module's at CPL0
        assert len(baseline) >= 40 and all(c["status"] == "PASS" for c in baseline), \
            [(c["id"], c["status"], c["reason"]) for c in baseline if c["status"] != "PASS"]
    else:
        assert baseline == []
    if kernel:     # nothing but the #VC code runs: no kernel build, no guest
        assert record["kernel"]["kind"] == "source" and record["timing"]["boot_to_ready_s"] is None
