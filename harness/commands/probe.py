"""`kvmconf probe` and `kvmconf bench`: boot once (or N times) and report."""
from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

from rich.table import Table

from harness.commands.common import err, out, output_dir
from harness.commands.kernel import resolve_kernel


def boot_once(args, kernel, profile_name: str, logdir: Path):
    from harness.guest import Guest
    from harness.guestimage import build_base, with_keys
    from harness.kernel import pvh
    from harness.machine import Machine
    from harness.machine.profiles import PROFILES
    from harness.payloads import build as payload_build
    from harness.probe import choose_accel
    from harness.remote.keys import generate

    profile = PROFILES[profile_name]
    accel, reason = choose_accel(args.accel)
    workdir = Path(tempfile.mkdtemp(prefix="kvmconf-"))
    image = build_base(kernel, {"probe": payload_build.build("probe").path}, profile.module_groups)
    keys = generate(workdir)
    initrd = with_keys(image, keys.client_public, keys.host_key_file, workdir / "initrd.cpio")
    machine = Machine(profile.name, profile, pvh.boot_file(kernel), initrd, workdir, logdir, accel=accel)
    return Guest.boot(machine, keys, {}, args.boot_timeout), accel, reason, workdir


def feature_state(row, live) -> str:
    """What a run's first case of the feature would meet: "ready", or the SKIP (or
    FAIL) reason the shared driver gives, from the same probe."""
    import pytest

    from harness.driver import CapabilityMissing, Suite
    try:
        Suite(row, live, row.profiles[0], live.kernel).require({})
    except pytest.skip.Exception as e:
        return f"SKIP: {e.msg}"
    except CapabilityMissing as e:
        return f"FAIL: {e}"
    return "ready"


def probe_live(args, spec) -> int:
    """`kvmconf probe --target local|ssh://...`: what the host runs and offers, and what
    each feature lacks there (the SKIP reasons a run would give)."""
    from harness import features
    from harness.probe import host_capabilities
    from harness.targets.live import LiveHost, LiveOptions
    logdir = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="kvmconf-probe-"))
    output_dir(logdir)
    names = list(features.names())
    live = LiveHost.open(LiveOptions(spec, names, ["probe"] + names, logdir, args.ssh_key, args.host_key,
                                     args.vfio_device, args.allow_module_changes))
    try:
        facts = {"target": {"kind": spec.kind, "where": spec.where}, "kernel": live.kernel.record(),
                 "host": host_capabilities(), "capabilities": live.capabilities,
                 "features": {n: feature_state(features.get(n), live) for n in names}}
    finally:
        facts["cleanup"] = live.close()
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        table = Table(title=f"kvmconf probe: target {spec.where}")
        table.add_column("")
        table.add_column("", overflow="fold")
        table.add_row("kernel", f"{live.kernel.version} (config: {live.kernel.config_source or 'unreadable'})")
        table.add_row("cpu", f"{live.capabilities.get('cpu_vendor')} {live.capabilities.get('cpu_model')}")
        for name, state in facts["features"].items():
            table.add_row(name, state)
        table.add_row("left behind", "; ".join(facts["cleanup"]["left_behind"]) or "nothing")
        out.print(table)
    return 2 if facts["cleanup"]["left_behind"] else 0


def cmd_probe(args) -> int:
    from harness import targets
    from harness.machine import qemu_binary
    from harness.probe import host_capabilities, qemu_version
    spec = targets.parse(args.target)
    targets.check_options(spec, args)
    if spec.live:
        return probe_live(args, spec)
    kernel = resolve_kernel(args)
    logdir = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="kvmconf-probe-"))
    output_dir(logdir)
    guest, accel, reason, workdir = boot_once(args, kernel, args.machine, logdir)
    try:
        facts = {"host": host_capabilities(), "accel": accel, "accel_reason": reason,
                 "qemu": qemu_version(qemu_binary()), "kernel": kernel.record(),
                 "guest": guest.capabilities, "boot_to_ready_s": round(guest.boot_to_ready_s, 3)}
    finally:
        guest.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(facts, indent=1))
        return 0
    table = Table(title="kvmconf probe")
    table.add_column("capability")
    table.add_column("value", overflow="fold")
    g = guest.capabilities
    kvm = g.get("kvm", {})
    rows = [
        ("host cpu", f"{facts['host']['cpu_vendor']} {facts['host']['cpu_model']}"),
        ("host kvm", str(facts["host"]["kvm"])),
        ("accel", f"{accel} ({reason})"), ("qemu", facts["qemu"]),
        ("guest kernel", g.get("uname_r", "?")),
        ("guest cpu", f"{g.get('cpu_vendor')} svm={'svm' in g.get('cpu_flags', [])} "
                      f"vmx={'vmx' in g.get('cpu_flags', [])}"),
        ("nested", " ".join(f"{k}={v}" for k, v in g.items() if k.startswith(("kvm_amd.", "kvm_intel.")))),
        ("/dev/kvm", f"present={kvm.get('present')} api={kvm.get('api_version')} caps={kvm.get('caps')}"),
        ("hyper-v cpuid", "errno " + str(kvm["hv_cpuid"]["errno"]) if isinstance(kvm.get("hv_cpuid"), dict)
         else f"{len(kvm.get('hv_cpuid') or [])} leaves"),
        ("iommu groups", g.get("iommu_groups", "?")),
        ("vfio devices", " ".join(f"{d['address']}({d['id']},{d['driver']},group {d['iommu_group']})"
                                  for d in g.get("pci", []) if d["driver"] == "vfio-pci") or "none"),
        ("perf capabilities", str(g.get("perf_capabilities"))),
        ("pt", str("intel_pt" in g.get("cpu_flags", []))),
        ("sev", f"cpuid 0x8000001f eax={g.get('cpuid_8000001f_eax')} sev_status={g.get('sev_status')}"),
        ("boot to ssh", f"{facts['boot_to_ready_s']} s"),
    ]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print_json(json.dumps(facts))
    return 0


def cmd_bench(args) -> int:
    kernel = resolve_kernel(args)
    times = []
    for i in range(args.boots):
        logdir = Path(tempfile.mkdtemp(prefix="kvmconf-bench-"))
        guest, accel, _, workdir = boot_once(args, kernel, args.machine, logdir)
        times.append(guest.boot_to_ready_s)
        guest.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
        err.print(f"boot {i + 1}/{args.boots}: {guest.boot_to_ready_s:.2f} s")
    result = {"kernel": kernel.version, "machine": args.machine, "accel": accel,
              "boot_to_ready_s": [round(t, 3) for t in times],
              "median_s": round(statistics.median(times), 3)}
    print(json.dumps(result))
    return 0
