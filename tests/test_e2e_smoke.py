"""End to end: the real smoke suite on Debian's kernel in QEMU (real boot, SSH, QMP)."""
from __future__ import annotations

import sqlite3

import pytest

from harness.results.schema import problems
from tests.conftest import kvmconf, load_run, statuses

pytestmark = pytest.mark.e2e

SMOKE = ["smoke/boot", "smoke/ssh", "smoke/qmp-status", "smoke/kernel-version", "smoke/dev-kvm",
         "smoke/edu-device", "smoke/poweroff"]


def test_smoke_run_passes_and_keeps_the_contract(tmp_path, debian_kernel):
    out = tmp_path / "run"
    done = kvmconf("run", "--suite", "smoke", "--output", str(out), "--label", "e2e",
                   "--history", str(tmp_path / "h.sqlite"))
    assert done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    assert statuses(record) == {case: "PASS" for case in SMOKE}
    assert record["kernel"]["kind"] == "debian" and record["kernel"]["version"] == debian_kernel.version
    assert record["kernel"]["sha256"] == debian_kernel.sha256
    assert record["platform"]["accel"] in ("tcg", "kvm") and record["platform"]["qemu"].startswith("QEMU")
    guest = record["platform"]["capabilities"]["guest"]
    assert guest["uname_r"] == debian_kernel.version and guest["kvm"]["present"] is True
    assert 0 < record["timing"]["boot_to_ready_s"] < record["timing"]["total_s"]
    for log in ("all.serial.log", "all.qmp.log", "junit.xml"):
        assert (out / log).stat().st_size > 0, log
    assert "kvmconf: ready" in (out / "all.serial.log").read_text()
    assert 'tests="7"' in (out / "junit.xml").read_text()
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("SELECT label FROM runs").fetchall() == [("e2e",)]
        assert db.execute("SELECT count(*) FROM cases WHERE status='PASS'").fetchone()[0] == 7
    assert "pass=7" in done.stdout


def test_probe_reports_host_and_guest(tmp_path, debian_kernel):
    import json
    done = kvmconf("probe", "--json", "--output", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout)
    assert facts["guest"]["uname_r"] == debian_kernel.version
    assert facts["accel"] in ("tcg", "kvm") and facts["host"]["cpu_vendor"]
    kvm = facts["guest"]["kvm"]
    # Debian's 6.1 has KVM's Hyper-V emulation: the caps and leaves are there.
    assert kvm["caps"]["hyperv"] > 0 and kvm["caps"]["hyperv_enforce_cpuid"] > 0
    assert any(leaf["function"] == 0x40000080 for leaf in kvm["hv_cpuid"])
    assert any(d["id"] == "1234:11e8" and d["driver"] == "vfio-pci" for d in facts["guest"]["pci"])
