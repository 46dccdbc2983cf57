"""End to end: the pebs_pt suite on Debian's 6.1 kernel: perf's PT decoder and KVM's Intel
PMU MSR code compiled from its linux-source (ptdec, pmusim), the feature-absent cases in a
guest booting that kernel (kvm-amd under nested SVM), the hardware cases SKIP."""
from __future__ import annotations

import pytest

from harness.results.schema import problems
from tests.conftest import kvmconf, load_run

pytestmark = pytest.mark.e2e


def test_pebs_pt_suite(tmp_path, debian_kernel):
    out = tmp_path / "run"
    done = kvmconf("run", "--features", "pebs_pt", "--suite", "pebs_pt", "--seed", "1", "--output", str(out),
                   "--history", str(tmp_path / "h"), timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    cases = {c["id"]: c for c in record["cases"] if c["feature"] == "pebs_pt"}
    bad = [(i, c["status"], c["reason"]) for i, c in cases.items() if c["status"] in ("FAIL", "ERROR", "MISS")]
    assert not bad, bad

    def passed(prefix):
        return [i for i, c in cases.items() if i.startswith(prefix) and c["status"] == "PASS"]
    assert len(passed("pebs_pt/vector/")) + len(passed("pebs_pt/decoder/")) >= 30
    assert len(passed("pebs_pt/msr/")) >= 25 and len(passed("pebs_pt/absent/")) >= 15
    hardware = [c for i, c in cases.items() if i.startswith("pebs_pt/hardware/")]
    assert hardware and all(c["status"] == "SKIP" and "(" in c["reason"] for c in hardware)
    (random,) = record["random"]
    assert random["scripts"] >= 300 and random["diverged"] == 0 and all(random["action_kinds"].values())
    (differential,) = record["differentials"]
    assert differential["compared"] >= 2000 and differential["disagreements"]["perf-vs-codec"] == 0
    counts = differential["counts"]
    assert counts["streams_three_way"] > 0 and min(counts["packets_per_type"].values()) >= 20
    assert {"tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c", "arch/x86/kvm/vmx/pmu_intel.c"} <= \
        set(record["compiled_kernel_files"]["pebs_pt"])
    assert record["profile_verdict"] == {"pebs_pt": "6.1"}
