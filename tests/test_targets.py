"""The targets (harness/targets): parsing and option rules, the local channel's
deadlines, host keys, a real local live host (opened, probed, checked, closed),
kernel reports attributed by feature on this machine's /dev/kmsg, and the
driver's SKIPs for what a target lacks."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import paramiko
import pytest

from harness import features, targets
from harness.driver import Suite
from harness.errors import DeadlineExceeded, UsageError
from harness.reference import vfio as vfio_model
from harness.targets.live import LiveHost, LiveOptions, parse_host_key
from harness.targets.local_shell import LocalShell
from tests.standin import Kernel, Recorder, StandinGuest
from tests.conftest import kvmconf

ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the local target runs as root")


@pytest.mark.parametrize("text,kind,user,host,port", [
    ("qemu", "qemu", "root", "", 22), ("local", "local", "root", "", 22),
    ("ssh://lab-7.example", "ssh", "root", "lab-7.example", 22),
    ("ssh://ci@10.0.0.5:2222", "ssh", "ci", "10.0.0.5", 2222),
    ("ssh://[fe80::1]:22", "ssh", "root", "fe80::1", 22)])
def test_target_forms(text, kind, user, host, port):
    spec = targets.parse(text)
    assert (spec.kind, spec.user, spec.host, spec.port) == (kind, user, host, port)


@pytest.mark.parametrize("text", ["", "ssh://", "ssh://h:0", "ssh://h:70000", "ssh://a b", "qemu:", "http://h",
                                  "ssh://h;rm", "ssh://$(id)"])
def test_bad_targets_are_one_line_usage_errors(text):
    with pytest.raises(UsageError, match=r"^--target .*: (expected|port)"):
        targets.parse(text)


def _args(**kw):
    base = dict(kernel=None, modules=None, source=None, series=None, revision=None, series_prefix=None,
                patch=[], config=[], append="", accel="auto", vfio_device=None, allow_module_changes=False,
                ssh_key=None, host_key=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("target,kw,message", [
    ("local", {"kernel": "bzImage"}, "--kernel with --target local"),
    ("ssh://h", {"patch": ["a.patch"]}, "--patch with --target ssh"),
    ("local", {"append": "quiet"}, "--append with --target local"),
    ("local", {"accel": "kvm"}, "--accel with --target local"),
    ("qemu", {"vfio_device": "0000:00:01.0"}, "--vfio-device needs --target local or ssh"),
    ("qemu", {"allow_module_changes": True}, "--allow-module-changes needs"),
    ("local", {"ssh_key": "k"}, "--ssh-key needs --target ssh"),
    ("local", {"vfio_device": "1:2"}, "--vfio-device 1:2: expected a PCI address")])
def test_options_that_do_not_fit_the_target(target, kw, message):
    with pytest.raises(UsageError, match="^" + message):
        targets.check_options(targets.parse(target), _args(**kw))


def test_local_shell_keeps_streams_and_kills_the_process_group_at_the_deadline(tmp_path):
    shell = LocalShell()
    res = shell.run(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"x" * 300000)
    assert (res.rc, res.stdout, res.stderr) == (3, b"x" * 300000, b"err\n")
    pidfile = tmp_path / "child"
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="no exit within 1 s"):
        shell.run(["sh", "-c", f'sleep 100 & echo $! > {pidfile}; wait'], timeout=1)
    assert time.monotonic() - start < 5
    time.sleep(0.2)
    stat = Path(f"/proc/{pidfile.read_text().strip()}/stat")    # the grandchild too: gone, or a
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"   # zombie for init


def test_local_stream_answers_request_by_request():
    stream = LocalShell().stream(["sh", "-c", "while read l; do echo got $l; done"])
    stream.send(b"one\n", timeout=5)
    assert stream.read_until(lambda out: out.endswith(b"\n"), timeout=5) == b"got one\n"
    stream.send(b"two\n", timeout=5)
    assert stream.read_until(lambda out: out.endswith(b"\n"), timeout=5) == b"got two\n"
    assert stream.close() == 0
    hung = LocalShell().stream(["sleep", "100"])
    with pytest.raises(DeadlineExceeded, match="no answer within 1 s"):
        hung.read_until(lambda out: bool(out), timeout=1)
    assert hung.close(timeout=0.5) is None       # killed, not waited for forever


def test_host_keys_from_a_line_a_known_hosts_line_or_a_file(tmp_path):
    key = paramiko.Ed25519Key.from_private_key_file(_new_key(tmp_path))
    line = f"{key.get_name()} {key.get_base64()} lab"
    assert parse_host_key(line).get_base64() == key.get_base64()
    assert parse_host_key(f"[10.0.0.5]:2222 {key.get_name()} {key.get_base64()}").get_base64() == key.get_base64()
    (tmp_path / "pub").write_text("# lab host\n" + line + "\n")
    assert parse_host_key(str(tmp_path / "pub")).get_base64() == key.get_base64()
    for bad in ("ssh-ed25519", "ssh-ed25519 !!notbase64", "AAAA"):
        with pytest.raises(UsageError, match="not an OpenSSH public key"):
            parse_host_key(bad)


def _new_key(tmp_path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    path = tmp_path / "id"
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    return str(path)


def _open_local(tmp_path, names, **kw) -> LiveHost:
    return LiveHost.open(LiveOptions(targets.parse("local"), names, ["probe"] + names, tmp_path, **kw))


@ROOT
def test_local_host_opens_probes_and_leaves_nothing_behind(tmp_path):
    host = _open_local(tmp_path, ["vfio"])
    scratch = host.scratch
    assert scratch.startswith("/tmp/kvmconf-target.") and (os.stat(scratch).st_mode & 0o777) == 0o700
    assert os.access(f"{scratch}/probe", os.X_OK)
    assert host.kernel.version == os.uname().release and host.kernel.record()["kind"] == "running"
    assert host.capabilities["uname_r"] == os.uname().release
    # no device named: VFIO never picks one itself
    assert "none given" in host.missing("vfio") and host.missing("vfio").endswith(host.where)
    assert host.payload_argv("vfio") == [f"{scratch}/vfio"]
    report = host.close()
    assert report == {"scratch": scratch, "modules_loaded": [], "left_behind": []}
    assert not Path(scratch).exists()
    assert host.close() is report     # closing twice does nothing more


@ROOT
def test_a_device_that_does_not_exist_is_a_usage_error_and_nothing_stays(tmp_path):
    before = set(Path("/tmp").glob("kvmconf-target.*"))
    with pytest.raises(UsageError, match=r"^--vfio-device 0000:7f:1f.7: no such PCI device on target local"):
        _open_local(tmp_path, ["vfio"], vfio_device="0000:7f:1f.7")
    assert set(Path("/tmp").glob("kvmconf-target.*")) == before


def _kmsg(line: str) -> None:
    with open("/dev/kmsg", "w") as f:     # one open per line: /dev/kmsg rate-limits per open file
        f.write(line + "\n")


@ROOT
def test_only_reports_the_feature_can_cause_fail_its_case(tmp_path):
    host = _open_local(tmp_path, ["syndbg", "vfio"])
    try:
        assert host.after_case("syndbg") == ([], True)
        tag = f"kvmconf-test-{os.getpid()}"
        for line in (f"{tag} WARNING: CPU: 1 PID: 77 at drivers/gpu/drm/drm_vblank.c:1 drm_foo+0x1/0x2",
                     f"{tag} Modules linked in: kvm_amd kvm vfio",
                     f"{tag} ---[ end trace 0000000000000000 ]---",
                     f"{tag} WARNING: CPU: 0 PID: 78 at arch/x86/kvm/hyperv.c:1 kvm_hv_set_msr+0x1/0x2 [kvm]",
                     f"{tag} ---[ end trace 0000000000000001 ]---"):
            _kmsg(line)
        problems, alive = host.after_case("vfio")     # a VFIO case: neither report is its
        assert (problems, alive) == ([], True)
        unrelated = (tmp_path / "local.unrelated-kernel-reports.txt").read_text()
        assert "drm_vblank" in unrelated and "hyperv.c" in unrelated
        _kmsg(f"{tag} WARNING: CPU: 0 PID: 79 at arch/x86/kvm/hyperv.c:2 kvm_hv_set_msr+0x1/0x2 [kvm]")
        _kmsg(f"{tag} ---[ end trace 0000000000000002 ]---")
        problems, alive = host.after_case("syndbg")    # a syndbg case: the KVM one is
        assert alive and len(problems) == 2 and "hyperv.c:2" in problems[0]
        assert host.after_case("syndbg") == ([], True)   # only lines logged since the last case
    finally:
        assert host.close()["left_behind"] == []


class _Target(StandinGuest):
    def __init__(self, missing=None, may_change=True):
        super().__init__(vfio_model.predict)
        self._why, self._may = missing, may_change
        self.where = "local:lab"

    def missing(self, feature):
        return self._why

    def may_change_host(self):
        return self._may


def test_the_driver_skips_what_the_target_lacks_before_running_anything():
    target = _Target(missing="/dev/kvm missing (/dev/kvm absent), on target local:lab")
    suite = Suite(features.get("syndbg"), target, "mainline", Kernel())
    with pytest.raises(pytest.skip.Exception, match="/dev/kvm missing .* on target local:lab"):
        suite.named(features.get("syndbg").named_cases[0], Recorder())
    assert target.runs == 0


def test_a_script_that_changes_a_module_parameter_needs_leave_on_a_live_host():
    case = next(c for c in features.get("vfio").named_cases if "dma_entry_limit" in c["script"])
    refused = Suite(features.get("vfio"), _Target(may_change=False), "6.1", Kernel())
    with pytest.raises(pytest.skip.Exception, match="changes the vfio_iommu_type1 module parameter "
                                                    "dma_entry_limit on target local:lab.*--allow-module-changes"):
        refused.named(case, Recorder())
    allowed = Suite(features.get("vfio"), _Target(may_change=True), "6.1", Kernel())
    allowed.guest.attach(allowed)
    allowed.named(case, Recorder())       # runs (the stand-in answers with the model)
    assert allowed.guest.runs == 1


def test_list_shows_what_runs_on_each_target():
    import json
    local = json.loads(kvmconf("list", "--target", "local", "--json").stdout)
    qemu = json.loads(kvmconf("list", "--json").stdout)
    smoke = lambda d: {c["id"] for c in d["cases"] if c["feature"] == "smoke"}  # noqa: E731
    assert smoke(local) == {"smoke/ssh", "smoke/kernel-version"}
    assert {"smoke/boot", "smoke/qmp-status", "smoke/poweroff"} <= smoke(qemu)
    local_ids = {c["id"] for c in local["cases"] if c["feature"] != "smoke"}
    qemu_ids = {c["id"] for c in qemu["cases"] if c["feature"] != "smoke"}
    # only the cases that need kvmconf's own machine (pc-testdev, an SEV-ES guest it boots)
    assert local_ids < qemu_ids and all(i.startswith(("sev_es/baseline/", "sev_es/hardware/"))
                                        for i in qemu_ids - local_ids)
    vfio = next(f for f in local["features"] if f["name"] == "vfio")
    assert any(n["user_device"] for n in vfio["host_needs"]) and vfio["targets"] == ["local", "qemu", "ssh"]


class _ModuleHost:
    """A stand-in channel for the module bookkeeping: /proc/modules, modprobe, test -e."""

    def __init__(self, loaded, loads, unloads=True):
        self.loaded, self.loads, self.calls = list(loaded), loads, []
        self.unloads = unloads      # False: modprobe -r leaves the modules (in use)
        self.connected = True

    def run(self, argv, stdin=b"", timeout=60.0, watch=None):
        from harness.remote import Result
        script, args = argv[2], argv[4:]
        self.calls.append((script, *args))
        if script.startswith("cat /proc/modules"):
            return Result(0, "".join(f"{m} 16384 0 - Live 0x0\n" for m in self.loaded).encode(), b"")
        if script.startswith("modprobe -r"):
            for m in self.loads.get(args[0], []) if self.unloads else []:
                self.loaded.remove(m)
            return Result(0, b"", b"")
        if script.startswith("modprobe"):
            if args[0] not in self.loads:
                return Result(1, b"", b"modprobe: ERROR: could not insert\n")
            self.loaded += self.loads[args[0]]
            return Result(0, b"", b"")
        if script.startswith("test -e"):
            return Result(0 if args[0] != "/dev/kvm" or "kvm" in self.loaded else 1, b"", b"")
        return Result(0, b"", b"")

    def close(self):
        self.connected = False


def test_modules_are_loaded_only_with_leave_and_unloaded_afterwards(tmp_path):
    need = features.get("syndbg").host_needs[0]
    for allowed in (False, True):
        channel = _ModuleHost(["msr"], {"kvm-intel": ["kvm", "kvm_intel"]})   # an Intel host
        host = LiveHost(LiveOptions(targets.parse("local"), ["syndbg"], [], tmp_path,
                                    allow_module_changes=allowed), channel)
        host._modules_before = host._modules()
        reason = host._meet_needs(features.get("syndbg"))
        if not allowed:
            assert "kvm-amd|kvm-intel not loaded" in reason and "--allow-module-changes" in reason
            assert not any(c[0].startswith("modprobe") for c in channel.calls)
            continue
        assert reason is None and host._loaded == ["kvm-intel"]    # kvm-amd was tried first, refused
        assert [c[1] for c in channel.calls if c[0].startswith("modprobe --")] == ["kvm-amd", "kvm-intel"]
        assert host.close()["left_behind"] == [] and channel.loaded == ["msr"]
        assert need.path == "/dev/kvm"


def test_a_module_that_stays_loaded_is_reported_left_behind(tmp_path):
    channel = _ModuleHost(["msr"], {"vfio-pci": ["vfio", "vfio_pci"]}, unloads=False)
    host = LiveHost(LiveOptions(targets.parse("local"), ["vfio"], [], tmp_path, allow_module_changes=True), channel)
    host._modules_before = host._modules()
    assert host._load_modules(features.get("vfio").host_needs[1]) is None
    assert host.close()["left_behind"] == ["module vfio still loaded", "module vfio_pci still loaded"]
