"""End to end on the three targets (harness/targets): syndbg and VFIO in a guest kvmconf
boots (qemu); the same suites over SSH in an existing machine (a guest this test boots
and hands over the way a lab hands over a host: its address, a key, its host key);
this machine's own kernel (local)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.results.schema import problems
from tests.conftest import kvmconf, load_run

pytestmark = pytest.mark.e2e

SEED = "11"
FEATURES = "syndbg,vfio"
STALE = "vfio/stale-bits-after-shifted-merge"


def feature_verdicts(record: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in record["cases"] if c["feature"] in ("syndbg", "vfio")}


@pytest.fixture(scope="module")
def qemu_run(tmp_path_factory, debian_kernel):
    out = tmp_path_factory.mktemp("qemu") / "run"
    done = kvmconf("run", "--features", FEATURES, "--output", str(out), "--seed", SEED,
                   "--history", str(out.parent / "h"), timeout=2400)
    return SimpleNamespace(done=done, record=load_run(out))


@pytest.fixture(scope="module")
def lab_host(debian_kernel, tmp_path_factory):
    """A running machine with the kernel under test, as a lab would hand it over:
    booted here through kvmconf's own machine code, then used only over SSH."""
    from harness.commands.probe import boot_once
    logdir = tmp_path_factory.mktemp("lab")
    guest, _, _, workdir = boot_once(SimpleNamespace(accel="auto", boot_timeout=120.0), debian_kernel,
                                     "all", logdir)
    try:
        shown = subprocess.run(["dropbearkey", "-y", "-f", str(workdir / "dropbear_host_key")],
                               capture_output=True, text=True, check=True, timeout=30).stdout
        host_key = logdir / "host_key.pub"
        host_key.write_text(next(line for line in shown.splitlines() if line.startswith("ssh-ed25519 ")) + "\n")
        (edu,) = [d["address"] for d in guest.capabilities["pci"] if d["id"] == "1234:11e8"]
        # the lab's device starts on no driver: kvmconf binds it to vfio-pci for the run
        # and must give it back unbound
        guest.run(["sh", "-c", 'echo "$1" > /sys/bus/pci/drivers/vfio-pci/unbind; '
                   'echo > "/sys/bus/pci/devices/$1/driver_override"', "sh", edu])
        yield SimpleNamespace(guest=guest, target=f"ssh://root@127.0.0.1:{guest.machine.ssh_port}",
                              key=str(workdir / "id_ed25519"), host_key=str(host_key), edu=edu)
    finally:
        guest.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)


def test_qemu_target_passes_syndbg_and_vfio_on_debian_kernel(qemu_run):
    assert qemu_run.done.returncode == 0, qemu_run.done.stderr[-2000:]
    record = qemu_run.record
    assert problems(record) == []
    assert record["target"] == {"kind": "qemu", "where": "qemu"}
    syndbg = [c for c in record["cases"] if c["feature"] == "syndbg" and "/random/" not in c["id"]]
    # On 6.1 every Hyper-V leaf, syndbg MSR and hypercall exists: nothing may SKIP.
    assert len(syndbg) >= 40 and {c["status"] for c in syndbg} == {"PASS"}, \
        [(c["id"], c["status"], c["reason"]) for c in syndbg if c["status"] != "PASS"]
    vfio = [c for c in record["cases"] if c["feature"] == "vfio"]
    assert len(vfio) >= 40 and not [c for c in vfio if c["status"] in ("FAIL", "ERROR", "MISS")]
    assert all("missing" in c["reason"] for c in vfio if c["status"] == "SKIP")
    for feature in ("syndbg", "vfio"):
        (random,) = [r for r in record["random"] if r["feature"] == feature]
        assert random["scripts"] >= 200 and random["diverged"] == 0 and random["seed"] == int(SEED)
        assert all(random["action_kinds"].values())
    finding = next(f for f in record["findings"] if f["id"] == STALE)
    assert finding["cases"] and "update_user_bitmap" in finding["mechanism"]
    assert record["profile_verdict"] == {"syndbg": "mainline", "vfio": "6.1"}


@pytest.mark.nightly   # minutes of make test's budget: ci/nightly.sh runs it
def test_ssh_target_gives_the_qemu_verdicts_case_by_case(qemu_run, lab_host, tmp_path):
    out = tmp_path / "ssh"
    done = kvmconf("run", "--target", lab_host.target, "--ssh-key", lab_host.key, "--host-key", lab_host.host_key,
                   "--vfio-device", lab_host.edu, "--allow-module-changes", "--features", FEATURES,
                   "--seed", SEED, "--output", str(out), "--history", str(tmp_path / "h"), timeout=2400)
    assert done.returncode == qemu_run.done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    assert record["target"]["kind"] == "ssh" and record["target"]["where"] == lab_host.target
    assert record["kernel"]["kind"] == "running" and record["kernel"]["version"] == qemu_run.record["kernel"]["version"]
    assert feature_verdicts(record) == feature_verdicts(qemu_run.record)
    assert record["profile_verdict"] == qemu_run.record["profile_verdict"]
    assert [f["id"] for f in record["findings"]] == [f["id"] for f in qemu_run.record["findings"]]
    # Nothing left on the host: the payload folder gone, the device back on no driver.
    cleanup = record["target"]["cleanup"]
    assert cleanup["left_behind"] == [] and cleanup["scratch"].startswith("/tmp/kvmconf-target.")
    assert lab_host.guest.run(["ls", "/tmp"]).text.split() == []
    driver = lab_host.guest.run(["sh", "-c", 'readlink "/sys/bus/pci/devices/$1/driver"; true', "sh", lab_host.edu])
    assert driver.text.strip() == ""


def test_ssh_target_refuses_a_wrong_host_key(lab_host, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(other)], capture_output=True, check=True, timeout=30)
    line = next(l for l in subprocess.run(["dropbearkey", "-y", "-f", str(other)], capture_output=True, text=True,
                                          check=True, timeout=30).stdout.splitlines() if l.startswith("ssh-"))
    done = kvmconf("run", "--target", lab_host.target, "--ssh-key", lab_host.key, "--host-key", line,
                   "--features", "syndbg", "--output", str(tmp_path / "o"), "--history", str(tmp_path / "h"))
    assert done.returncode == 2
    (message,) = done.stderr.strip().splitlines()
    assert message.startswith("kvmconf: ssh ") and "differs from --host-key" in message and "refused" in message
    # and never blindly: no --host-key and no known_hosts entry for it
    done = kvmconf("run", "--target", lab_host.target, "--ssh-key", lab_host.key, "--features", "syndbg",
                   "--output", str(tmp_path / "p"), "--history", str(tmp_path / "h"),
                   env={"HOME": tempfile.mkdtemp()})
    assert done.returncode == 2 and "no --host-key was given: refused" in done.stderr.strip().splitlines()[-1]


def test_local_target_runs_what_it_can_and_leaves_nothing_behind(tmp_path):
    before = sorted(p.name for p in Path("/tmp").glob("kvmconf-target.*"))
    modules = Path("/proc/modules").read_text() if Path("/proc/modules").exists() else ""
    out = tmp_path / "local"
    done = kvmconf("run", "--target", "local", "--features", FEATURES, "--seed", SEED, "--output", str(out),
                   "--history", str(tmp_path / "h"), timeout=1800)
    record = load_run(out)
    assert problems(record) == []
    statuses = {c["status"] for c in record["cases"]}
    assert "ERROR" not in statuses and "MISS" not in statuses, \
        [(c["id"], c["reason"]) for c in record["cases"] if c["status"] in ("ERROR", "MISS")]
    assert done.returncode == (1 if "FAIL" in statuses else 0), done.stderr[-1500:]
    for case in record["cases"]:
        if case["status"] == "SKIP":    # the capability, and where it was seen missing
            assert "missing" in case["reason"] or "none given" in case["reason"], case
            assert "local:" in case["reason"], case
    assert record["target"]["kind"] == "local" and record["target"]["cleanup"]["left_behind"] == []
    assert record["kernel"]["version"] == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert sorted(p.name for p in Path("/tmp").glob("kvmconf-target.*")) == before
    assert (Path("/proc/modules").read_text() if Path("/proc/modules").exists() else "") == modules
