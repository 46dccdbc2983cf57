"""Kernel report blocks and their attribution (harness/machine/kernel_log.py),
and the probe payload's /dev/kmsg reader (probe --kmsg-from SEQ).

A live host's log holds reports of everything the machine does: only the
blocks the feature can cause (its code paths, or its payload as the task) may
fail a case, and "Modules linked in", which names kvm in every report on a KVM
host, must not count.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from harness.machine import kernel_log
from harness.payloads import build as payload_build

KVM = [r"arch/x86/kvm/", r"\bkvm_", r"drivers/vfio/", r"\bvfio_"]

BOOT = """\
[  301.000000] kvm: vcpu 0: requested 1000 ns lapic timer period limited to 200000 ns
[  301.000100] ------------[ cut here ]------------"""

WARN_KVM = """\
[  312.118224] WARNING: CPU: 1 PID: 345 at arch/x86/kvm/hyperv.c:1498 kvm_hv_set_msr_common+0x5a1/0xb90 [kvm]
[  312.118301] Modules linked in: kvm_amd kvm vfio_pci vfio_iommu_type1 vfio irqbypass amdgpu drm_ttm_helper
[  312.118350] CPU: 1 PID: 345 Comm: syndbg Not tainted 6.1.0 #1
[  312.118353] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  312.118355] RIP: 0010:kvm_hv_set_msr_common+0x5a1/0xb90 [kvm]
[  312.118401] Code: 48 8b 83 e8 00 00 00 48 85 c0 74 0e 48 8b 40 18 <0f> 0b 31 c0 e9 5e fb ff ff
[  312.118403] RSP: 0018:ffffb3c2c0a4fc88 EFLAGS: 00010246
[  312.118406] RAX: 0000000000000000 RBX: ffff9d1a4b5c0000 RCX: 0000000000000000
[  312.118420] Call Trace:
[  312.118422]  <TASK>
[  312.118425]  kvm_set_msr_common+0x2b7/0x1110 [kvm]
[  312.118470]  svm_set_msr+0x4ab/0x7a0 [kvm_amd]
[  312.118500]  kvm_arch_vcpu_ioctl+0x8d1/0x12a0 [kvm]
[  312.118520]  __x64_sys_ioctl+0x8d/0xd0
[  312.118522]  do_syscall_64+0x58/0xc0
[  312.118525]  entry_SYSCALL_64_after_hwframe+0x63/0xcd
[  312.118530]  </TASK>
[  312.118532] ---[ end trace 0000000000000000 ]---"""

BETWEEN = """\
[  313.000000] amdgpu 0000:03:00.0: [drm] fb0: amdgpudrmfb frame buffer device
[  313.100000] vfio-pci 0000:00:03.0: enabling device (0000 -> 0002)"""

OOPS_DRM = """\
[  315.204001] BUG: kernel NULL pointer dereference, address: 0000000000000008
[  315.204010] #PF: supervisor read access in kernel mode
[  315.204012] #PF: error_code(0x0000) - not-present page
[  315.204014] PGD 0 P4D 0
[  315.204016] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  315.204020] CPU: 3 PID: 1201 Comm: kworker/u16:3 Tainted: G        W          6.1.0 #1
[  315.204022] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  315.204024] Workqueue: events_unbound commit_work [drm_kms_helper]
[  315.204026] RIP: 0010:drm_atomic_helper_commit_planes+0x2e/0x240 [drm_kms_helper]
[  315.204030] Code: 41 57 41 56 41 55 41 54 55 53 48 83 ec 18 <48> 8b 47 08 48 89 04 24
[  315.204032] RSP: 0018:ffffb3c2c1e3fd90 EFLAGS: 00010286
[  315.204040] Call Trace:
[  315.204041]  <TASK>
[  315.204043]  drm_atomic_helper_commit_tail+0x49/0x80 [drm_kms_helper]
[  315.204050]  commit_tail+0xc1/0x1a0 [drm_kms_helper]
[  315.204052]  process_one_work+0x1c7/0x380
[  315.204054]  worker_thread+0x4d/0x380
[  315.204056]  kthread+0xe9/0x110
[  315.204058]  ret_from_fork+0x22/0x30
[  315.204060]  </TASK>
[  315.204062] Modules linked in: kvm_amd kvm vfio_pci vfio_iommu_type1 vfio irqbypass amdgpu drm_ttm_helper
[  315.204070] CR2: 0000000000000008
[  315.204072] ---[ end trace 0000000000000001 ]---
[  315.204080] RIP: 0010:drm_atomic_helper_commit_planes+0x2e/0x240 [drm_kms_helper]
[  315.204082] Code: 41 57 41 56 41 55 41 54 55 53 48 83 ec 18 <48> 8b 47 08 48 89 04 24
[  315.204084] RSP: 0018:ffffb3c2c1e3fd90 EFLAGS: 00010286"""

# The payload's process ("kvmconf-vfio-payload", which the kernel keeps as its
# first 15 chars) dies in list code: only the Comm says it is the feature's.
GPF_PAYLOAD = """\
[  320.551002] general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#2] PREEMPT SMP NOPTI
[  320.551010] CPU: 0 PID: 351 Comm: kvmconf-vfio-pa Tainted: G      D W          6.1.0 #1
[  320.551012] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[  320.551015] RIP: 0010:__list_del_entry_valid+0x1c/0x90
[  320.551020] Code: 48 8b 17 4c 8b 47 08 48 b8 00 01 00 00 00 00 ad de <48> 39 c2 74 2c
[  320.551022] RSP: 0018:ffffb3c2c0b57d40 EFLAGS: 00010246
[  320.551030] Call Trace:
[  320.551031]  <TASK>
[  320.551033]  mmput+0x5e/0x140
[  320.551036]  do_exit+0x2fa/0xb10
[  320.551040]  do_group_exit+0x2d/0x90
[  320.551042]  __x64_sys_exit_group+0x14/0x20
[  320.551045]  do_syscall_64+0x58/0xc0
[  320.551047]  entry_SYSCALL_64_after_hwframe+0x63/0xcd
[  320.551050]  </TASK>
[  320.551051] Modules linked in: kvm_amd kvm vfio_pci vfio_iommu_type1 vfio irqbypass
[  320.551060] ---[ end trace 0000000000000002 ]---"""

AFTER = """\
[  321.000000] note: kvmconf-vfio-pa[351] exited with irqs disabled
[  321.100000] kvm_amd: kvm [351]: vcpu0, guest rIP: 0xfff0 unimplemented wrmsr: 0xc0010115 data 0x0"""


def _lines(*parts: str) -> list[str]:
    return [line for part in parts for line in part.splitlines()]


def _kmsg(lines: list[str]) -> list[str]:
    """The same records as /dev/kmsg (and probe --kmsg-from) give them: no timestamp."""
    return [re.sub(r"^\[[ \d.]+\] ", "", line) for line in lines]


LOG = _lines(BOOT, WARN_KVM, BETWEEN, OOPS_DRM, BETWEEN, GPF_PAYLOAD, AFTER)


@pytest.mark.parametrize("form", [list, _kmsg], ids=["serial", "kmsg"])
def test_blocks_are_split_at_end_traces_and_lines_between_are_dropped(form):
    blocks = kernel_log.report_blocks(form(LOG))
    assert blocks == [form(_lines(WARN_KVM)), form(_lines(OOPS_DRM)), form(_lines(GPF_PAYLOAD))]
    # The Oops banner under its "BUG:" line and the registers repeated after
    # the end trace stay in the BUG's block; none of BETWEEN or AFTER is in any.
    assert "Oops: 0000 [#1]" in blocks[1][4] and blocks[1][-1].endswith("EFLAGS: 00010286")
    assert not {line for b in blocks for line in b} & set(form(_lines(BOOT, BETWEEN, AFTER)))


@pytest.mark.parametrize("form", [list, _kmsg], ids=["serial", "kmsg"])
def test_only_the_features_blocks_are_attributed(form):
    mine, others = kernel_log.feature_reports(form(LOG), KVM, ["kvmconf-vfio-payload"])
    assert mine == form(_lines(WARN_KVM, GPF_PAYLOAD))
    assert others == form(_lines(OOPS_DRM))


def test_modules_linked_in_says_nothing():
    drm = kernel_log.report_blocks(_lines(OOPS_DRM))[0]
    assert any(re.search(r"\bkvm_", line) for line in drm)   # the module list names kvm_amd
    assert not kernel_log.attributed(drm, KVM, ["syndbg"])
    assert kernel_log.attributed(drm, [r"drivers/gpu/drm|\bdrm_"], [])
    assert kernel_log.attributed(drm, [], ["kworker/u16:3"])


def test_comm_attribution_compares_the_kernels_15_chars():
    gpf = kernel_log.report_blocks(_lines(GPF_PAYLOAD))[0]
    assert not kernel_log.attributed(gpf, KVM, [])
    assert kernel_log.attributed(gpf, KVM, ["kvmconf-vfio-payload"])
    assert kernel_log.attributed(gpf, KVM, ["kvmconf-vfio-pa"])
    assert not kernel_log.attributed(gpf, KVM, ["kvmconf-vfio"])      # not a prefix match
    assert not kernel_log.attributed(gpf, KVM, ["kvmconf-vfio-pb-payload"])
    warn = kernel_log.report_blocks(_lines(WARN_KVM))[0]
    assert kernel_log.attributed(warn, [], ["syndbg"]) and not kernel_log.attributed(warn, [], ["syndb"])
    newer = ["WARNING: CPU: 1 PID: 345 at lib/list_debug.c:62 __list_del_entry_valid+0x8/0x90",
             "CPU: 1 UID: 0 PID: 345 Comm: syndbg Not tainted 6.12.0 #1", "---[ end trace 0 ]---"]
    assert kernel_log.attributed(newer, [], ["syndbg"])


def test_a_report_without_end_trace_ends_at_the_next_report_or_80_lines():
    sleeping = ["BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
                "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 345, name: syndbg",
                "CPU: 1 PID: 345 Comm: syndbg Not tainted 6.1.0 #1", "Call Trace:", " <TASK>",
                " dump_stack_lvl+0x44/0x5c", " </TASK>"]
    kasan = ["==================================================================",
             "BUG: KASAN: slab-out-of-bounds in kvm_hv_set_msr_common+0x1a2/0xb90 [kvm]",
             "Read of size 8 at addr ffff888104a3e1c0 by task syndbg/345",
             "==================================================================",
             "kvm_amd: unrelated line after the report"]
    blocks = kernel_log.report_blocks(sleeping + _kmsg(_lines(WARN_KVM)) + kasan)
    assert blocks == [sleeping, _kmsg(_lines(WARN_KVM)), kasan[1:4]]
    endless = sleeping + [f" frame_{i}+0x1/0x2" for i in range(100)]
    blocks = kernel_log.report_blocks(endless + ["Call Trace:", " x+0x1/0x2"])
    assert [len(b) for b in blocks] == [80, 2] and blocks[0] == endless[:80]


def test_reports_is_unchanged():
    assert kernel_log.reports(LOG)[:3] == _lines(WARN_KVM)[:3]


def _probe() -> str:
    return str(payload_build.build("probe").path)


def _kmsg_from(probe: str, seq: int) -> tuple[list[dict], int]:
    done = subprocess.run([probe, "--kmsg-from", str(seq)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out and set(out[-1]) == {"next"}
    for record in out[:-1]:
        assert set(record) == {"seq", "level", "ts_us", "text"} and 0 <= record["level"] <= 7
        assert "\n" not in record["text"]
    return out[:-1], out[-1]["next"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing: PATH has no gcc")
@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg not readable (needs root)")
def test_probe_reads_kmsg_from_a_seq():
    probe = _probe()
    records, next_seq = _kmsg_from(probe, 0)
    seqs = [r["seq"] for r in records]
    assert records and seqs == sorted(set(seqs)) and next_seq == seqs[-1] + 1
    assert any(r["text"].startswith("Linux version") for r in records) or seqs[0] > 0

    marker = f"kvmconf-test {uuid.uuid4().hex}"
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(f'{marker}\t"q" \\\n')
    records, after = _kmsg_from(probe, next_seq)
    assert records and records[0]["seq"] == next_seq and all(r["seq"] >= next_seq for r in records)
    mine = [r for r in records if marker in r["text"]]
    # Tab and backslash as kmsg escapes them (\xNN), the quote JSON-escaped and back.
    assert [r["text"] for r in mine] == [marker + '\\x09"q" \\x5c']
    default_level = int(open("/proc/sys/kernel/printk").read().split()[1])
    assert mine[0]["level"] == default_level            # prio & 7: the facility (user) is masked
    assert after == records[-1]["seq"] + 1

    # Past the newest record: nothing, and the seq after the newest record read.
    records, again = _kmsg_from(probe, after + 1000)
    assert records == [] and again >= after


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("unshare") is None,
                    reason="needs gcc and unshare")
def test_probe_without_kmsg_prints_nothing_and_fails():
    probe = _probe()
    # A mount namespace of its own with an empty /dev: the host's /dev is untouched.
    done = subprocess.run(["unshare", "-m", "sh", "-c",
                           f'mount -t tmpfs none /dev || exit 99; exec "{probe}" --kmsg-from 0'],
                          capture_output=True, text=True, timeout=60)
    if done.returncode == 99 or "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert (done.returncode, done.stdout) == (1, "") and "/dev/kmsg" in done.stderr
