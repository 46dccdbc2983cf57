"""Bad input and faults: each runs the real `kvmconf` and checks status, message, exit code."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from harness import tmpdirs
from harness.results.schema import problems
from tests.conftest import REPO, end_with_pytest, kvmconf, load_run, statuses

SMOKE_FEW = ["--suite", "smoke", "--retries", "0"]   # the faults are the subject: no retry


def _one_line_error(done) -> str:
    lines = [l for l in done.stderr.splitlines() if l.startswith("kvmconf: ")]
    assert lines, done.stderr[-1500:]
    return lines[-1]


def test_unknown_feature(tmp_path):
    done = kvmconf("run", "--features", "syndbg,warpdrive", "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert _one_line_error(done) == ("kvmconf: --features syndbg,warpdrive: unknown feature "
                                     "'warpdrive' (known: syndbg, vfio, sev_es, pebs_pt)")


def test_kernel_path_missing_or_not_a_bzimage(tmp_path):
    done = kvmconf("run", "--kernel", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert _one_line_error(done) == f"kvmconf: --kernel {tmp_path / 'nope'}: no such file"
    (tmp_path / "bz").write_bytes(b"\x7fELF" + b"\0" * 4096)
    done = kvmconf("run", "--kernel", str(tmp_path / "bz"), "--output", str(tmp_path / "o"))
    assert done.returncode == 2
    assert _one_line_error(done) == f"kvmconf: --kernel {tmp_path / 'bz'}: not a bzImage (no x86 boot header)"


def test_output_not_writable(tmp_path):
    (tmp_path / "file").write_text("")
    done = kvmconf("run", "--output", str(tmp_path / "file" / "run"))
    assert done.returncode == 2
    assert _one_line_error(done) == f"kvmconf: --output {tmp_path / 'file' / 'run'}: not writable (Not a directory)"


@pytest.mark.e2e
def test_missing_qemu_binary_errors_every_case_and_records_them(tmp_path, debian_kernel):
    out = tmp_path / "o"
    done = kvmconf("run", *SMOKE_FEW, "--output", str(out), "--history", str(tmp_path / "h"),
                   env={"KVMCONF_QEMU": "qemu-system-nonexistent"})
    assert done.returncode == 2
    assert "QEMU binary 'qemu-system-nonexistent' not found" in _one_line_error(done)
    record = load_run(out)
    assert problems(record) == []
    assert set(statuses(record).values()) == {"ERROR"}
    assert all("qemu-system-nonexistent" in c["reason"] for c in record["cases"])


@pytest.mark.e2e
def test_kernel_panic_at_boot_fails_the_boot_case_with_the_panic_lines(tmp_path, debian_kernel):
    out = tmp_path / "o"
    # No init in the initramfs path given: the kernel panics with "No working init found".
    done = kvmconf("run", *SMOKE_FEW, "--output", str(out), "--history", str(tmp_path / "h"),
                   "--append", "rdinit=/nonexistent init=/nonexistent")
    assert done.returncode == 1, done.stderr[-1500:]
    record = load_run(out)
    assert problems(record) == []
    cases = {c["id"]: c for c in record["cases"]}
    assert cases["smoke/boot"]["status"] == "FAIL"
    assert "Kernel panic - not syncing" in cases["smoke/boot"]["reason"]
    others = [c for cid, c in cases.items() if cid != "smoke/boot"]
    assert others and all(c["status"] == "ERROR" and "failed to boot" in c["reason"] for c in others)
    assert "Kernel panic" in (out / "all.serial.log").read_text()


@pytest.mark.e2e
def test_guest_without_ssh_is_an_error_with_evidence(tmp_path, debian_kernel):
    out = tmp_path / "o"
    done = kvmconf("run", "--case", "smoke/boot", "--case", "smoke/ssh", "--output", str(out),
                   "--history", str(tmp_path / "h"), "--append", "kvmconf.sshd=0",
                   "--boot-timeout", "25")
    assert done.returncode == 2
    assert "SSH on root@127.0.0.1:" in _one_line_error(done) and "not ready by the deadline" in done.stderr
    record = load_run(out)
    assert statuses(record) == {"smoke/boot": "ERROR", "smoke/ssh": "ERROR"}
    evidence = (out / "all.hang.txt").read_text()
    assert "query-status" in evidence and "RIP=" in evidence and "kvmconf: ready" in evidence


@pytest.mark.e2e
def test_sigkill_mid_run_leaves_a_valid_record_and_no_qemu(tmp_path, debian_kernel):
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *SMOKE_FEW, "--output", str(out),
                             "--history", str(tmp_path / "h")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=end_with_pytest)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                if any(c["status"] == "PASS" for c in json.loads((out / "run.json").read_text())["cases"]):
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            assert proc.poll() is None, "run ended before any case passed"
            time.sleep(0.05)
        else:
            pytest.fail("no case passed within 300 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    record = load_run(out)
    assert problems(record) == []
    states = list(statuses(record).values())
    assert "PASS" in states and "MISS" in states
    time.sleep(1.0)  # PR_SET_PDEATHSIG delivery is immediate; leave a margin for the reaper
    leftover = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"QEMU processes left behind: {leftover}"
    # SIGKILL left the run's folder (its keys, its initrd); the next command reclaims it
    left = tmpdirs.owned_by(proc.pid)
    assert len(left) == 1 and (left[0] / "initrd.cpio").exists()
    kvmconf("run", "--case", "smoke/no-such-case", "--output", str(tmp_path / "o2"), "--history", str(tmp_path / "h"))
    assert not left[0].exists()


@pytest.mark.e2e
def test_panic_or_hang_mid_run_costs_one_case_and_the_run_goes_on(tmp_path, debian_kernel):
    out = tmp_path / "o"
    done = kvmconf("run", "--suite", "smoke", "--retries", "0", "--output", str(out), "--history", str(tmp_path / "h"),
                   env={"KVMCONF_TESTCASES": str(REPO / "tests/fixtures/faultsuite")})
    assert done.returncode == 1, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    cases = {c["id"]: c for c in record["cases"]}
    assert {k: c["status"] for k, c in cases.items()} == {
        "smoke/before": "PASS", "smoke/panic": "FAIL", "smoke/after-panic": "PASS",
        "smoke/hang": "ERROR", "smoke/after-hang": "PASS"}
    assert "Kernel panic" in cases["smoke/panic"]["reason"] or "sysrq" in cases["smoke/panic"]["reason"].lower()
    assert re.search(r"no (exit|session) within 5 s", cases["smoke/hang"]["reason"])
    # Each boot keeps its own logs: the second machine (after the panic) is "all-2".
    evidence = (out / "all-2.lost-after-smoke_hang.txt").read_text()
    assert "Kernel panic" in (out / "all.serial.log").read_text()
    assert "query-status" in evidence and "'status': 'paused'" in evidence and "RIP=" in evidence


def test_case_that_matches_nothing(tmp_path):
    done = kvmconf("run", "--case", "smoke/no-such-case", "--output", str(tmp_path / "o"),
                   "--history", str(tmp_path / "h"))
    assert done.returncode == 2
    assert _one_line_error(done) == "kvmconf: --case smoke/no-such-case: matches no case of the suite"


def test_stuck_watch_fails_after_blocked_checks_in_a_row_and_poisons_the_guest(tmp_path):
    """Unit test of the D-state watch with a stand-in remote (no guest)."""
    from types import SimpleNamespace

    from harness.errors import KernelFailure
    from harness.guest import Guest
    from harness.targets.host import STUCK_CHECKS
    from harness.remote import Result

    answers = iter([b"S\n", b"D\n", b"S\n"] + [b"D\n"] * STUCK_CHECKS)
    calls = []

    def run(argv, stdin=b"", timeout=60.0, watch=None):
        calls.append(argv)
        if "state" in argv:
            return Result(0, next(answers), b"")
        return Result(0, b"boot\nsysrq: Show Blocked State\ntask:syndbg state:D\n" if argv == ["dmesg"] else b"", b"")

    machine = SimpleNamespace(logdir=tmp_path, running=True, name="all")
    guest = Guest(machine, SimpleNamespace(run=run, connected=True), {})
    watch = guest._stuck_watch("syndbg")
    for _ in range(2 + STUCK_CHECKS):  # S, D, S, then D one check short
        watch()
    with pytest.raises(KernelFailure, match=r"syndbg blocked in the kernel .*stacks: all.blocked-tasks.txt"):
        watch()
    assert ["sh", "-c", "echo w > /proc/sysrq-trigger"] in calls
    assert (tmp_path / "all.blocked-tasks.txt").read_text() == "Show Blocked State\ntask:syndbg state:D\n"
    assert guest.poisoned
    machine.new_kernel_reports = lambda: []
    assert guest.after_case() == ([], False)   # so the harness replaces it before the next case


@pytest.mark.e2e
def test_kernel_deadlock_fails_the_case_with_stacks_and_the_run_goes_on(tmp_path):
    """A mutant that never releases hv_lock: the payload sticks in the kernel."""
    from harness.kernel import build
    pristine, _ = build.pristine_tree(build.DEFAULT_SOURCE)
    lines = (pristine / "arch/x86/kvm/hyperv.c").read_text().splitlines()
    index = next(i for i, l in enumerate(lines) if l == "\t\tr = kvm_hv_set_msr_pw(vcpu, msr, data, host);")
    assert lines[index + 1] == "\t\tmutex_unlock(&hv->hv_lock);"
    patch = tmp_path / "no-unlock.patch"
    patch.write_text(f"--- a/arch/x86/kvm/hyperv.c\n+++ b/arch/x86/kvm/hyperv.c\n"
                     f"@@ -{index + 1},3 +{index + 1},2 @@\n {lines[index]}\n-{lines[index + 1]}\n {lines[index + 2]}\n")
    out = tmp_path / "o"
    done = kvmconf("run", "--source", str(build.DEFAULT_SOURCE), "--patch", str(patch),
                   "--case", "syndbg/host/set-get-all-six-without-hyperv", "--case", "syndbg/gating/no-hv-signature-gp",
                   "--output", str(out), "--history", str(tmp_path / "h"), timeout=1800)
    assert done.returncode == 1, done.stderr[-2000:]
    cases = {c["id"]: c for c in load_run(out)["cases"]}
    stuck = cases["syndbg/host/set-get-all-six-without-hyperv"]
    assert stuck["status"] == "FAIL" and "blocked in the kernel (state D)" in stuck["reason"]
    assert stuck["duration_s"] < 60
    assert cases["syndbg/gating/no-hv-signature-gp"]["status"] == "PASS"   # on a fresh guest
    stacks = (out / "nested.blocked-tasks.txt").read_text()
    assert "task:syndbg" in stacks and "state:D" in stacks and "kvm_hv_set_msr_common" in stacks
