"""Hypothesis strategy of random pebs_pt PMU MSR op-scripts (the driver's strategy protocol).

A script is a host and guest CPU (Intel; PDCM, PT, DS, DTES64, kvm_intel.pt_mode, PMU
version and counter counts, the host perf's counters, the
host's PERF_CAPABILITIES with its PEBS, baseline, full-width, LBR and bit-16 fields
varied, host PEBS/PT/PEBS-via-PT support) and 1..max_actions MSR accesses. An action's
kind (KINDS) is its op and its MSR's group; each is drawn uniformly, the MSR within its
group and the value from the group's interesting values (the bits that matter, just
past the counters the CPUID gives, non-canonical and unaligned addresses, random
words). The reference model, not this generator, predicts every outcome.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.payloads.pebs_pt import ACTION_OPS, WRITES, normalise
from harness.reference import pebs_pt as m

GROUPS: dict[str, tuple[int, ...]] = {
    "perf_caps": (m.MSR_IA32_PERF_CAPABILITIES,),
    "pebs_enable": (m.MSR_IA32_PEBS_ENABLE,),
    "pebs_data_cfg": (m.MSR_PEBS_DATA_CFG,),
    "ds_area": (m.MSR_IA32_DS_AREA,),
    "rtit": tuple(msr for msr in m.MSRS if m.MSR_IA32_RTIT_OUTPUT_BASE <= msr <= m.MSR_IA32_RTIT_ADDR3_B),
    "reload": tuple(msr for msr in m.MSRS if msr >= m.MSR_RELOAD_FIXED_CTR0),
    "counters": tuple(msr for msr in m.MSRS if msr < 0x38D or m.MSR_IA32_PMC0 <= msr < m.MSR_IA32_PMC0 + 8
                      if msr not in (m.MSR_IA32_PERF_CAPABILITIES,)),
    "global": (m.MSR_CORE_PERF_FIXED_CTR_CTRL, m.MSR_CORE_PERF_GLOBAL_STATUS, m.MSR_CORE_PERF_GLOBAL_CTRL,
               m.MSR_CORE_PERF_GLOBAL_OVF_CTRL),
}
_GROUP_OF = {msr: g for g, msrs in GROUPS.items() for msr in msrs}
assert set(_GROUP_OF) == set(m.MSRS), sorted(set(m.MSRS) - set(_GROUP_OF))
KINDS = tuple(f"{op}:{g}" for op in ACTION_OPS for g in GROUPS)
# the MSR drawn within a group: RTIT_CTL (the most checks) and the reload MSRs of the
# default counters (4 GP, 3 fixed) more often
DRAWN = {**GROUPS,
         "rtit": GROUPS["rtit"] + (m.MSR_IA32_RTIT_CTL,) * 8 + (m.MSR_IA32_RTIT_STATUS,) * 2,
         "reload": GROUPS["reload"] + tuple(m.MSR_RELOAD_PMC0 + i for i in range(4)) * 2
         + tuple(m.MSR_RELOAD_FIXED_CTR0 + i for i in range(3)) * 2}


def kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds: `<op>:<MSR group>`."""
    return f"{action['op']}:{_GROUP_OF[action['msr']]}"


WORDS = (0, 1, 0xF, 0x10, 0xFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 0x7_0000_000F, 1 << 47, 0xFFFFFFFFFFFF,
         1 << 48, 0xFFFF800000000000, 0x0000800000000000, (1 << 64) - 1)
VALUES: dict[str, tuple[int, ...]] = {
    "perf_caps": (0, 0x2000, 0x24C0, 0x24C5, 0x64C0, 0x124C0, 0x164C5, 0x40, 0x400, 0x300, 0x2300, 0x10000,
                  1 << 63),
    "pebs_enable": (0, 1, 0xF, 0xFF, 1 << 4, 1 << 32, 0x7 << 32, m.PEBS_OUTPUT_PT, m.PEBS_OUTPUT_PT | 1,
                    m.PEBS_OUTPUT_PT | m.PEBS_PMI_AFTER_EACH_RECORD | 0xF, m.PEBS_PMI_AFTER_EACH_RECORD | 1,
                    1 << 62, 3 << 61),
    "pebs_data_cfg": (0, 1, 0xF, 0x1F000000, 0xFF00000F, 0x10, 1 << 32),
    "ds_area": (0, 0x1000, 0xFFFF888000100000, 0x0000800000000000, 0x00007FFFFFFFF000, 1 << 63),
    "rtit": (0, 1, 0x4, 0xC, 0x2105, 0x2104, 0x2107, 0x101, 0x41, 1 << 32, 2 << 32, 3 << 32, 1 << 36,
             1 << 40, 0xF << 14, 1 << 14, 0xF << 19, 0xF << 24, 1 << 30, 0x37, 0x8, 0x7F, 0x100000, 0x100040,
             1 << 36, 0xFFFFFFFF81000000, 1 << 47),
    "reload": (0, 1, 0xFFFFFFF0, 0xFFFFFFFFFFFF, 1 << 48),
    "counters": (0, 1, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFFFFFF, 1 << 48, 0x4300C0, 0x5300C0, 1 << 21,
                 1 << 34, 1 << 32),
    "global": (0, 0xF, 0xBBB, 0x4, 0xB000, 0x70000000F, 0x10, 1 << 55, 1 << 62, 0xC080000000000003, 1 << 40),
}
HOST_CAPS = (0x164C5, 0x24C5, 0x64C5, 0x2000, 0x0, 0x24C0, 0x124C0, 0x1E4C5, 0x2305, 0x64C0 | 0x3F)


def scripts(min_actions: int = 2, max_actions: int = 16, **env):
    """Normalised pebs_pt op-scripts of `min_actions` to `max_actions` MSR accesses."""

    @st.composite
    def build(draw):
        # Intel only: pmusim compiles kvm-intel, not kvm-amd (the AMD guest cases are pebs_pt/absent/)
        cpu = {"vendor": "intel",
               "pdcm": draw(st.integers(0, 4)) > 0, "pt": draw(st.integers(0, 2)) > 0,
               "pmu_version": draw(st.sampled_from([2, 2, 2, 1, 0, 4])),
               "gp_counters": draw(st.sampled_from([4, 4, 2, 8, 0, 1, 10])),
               "fixed_counters": draw(st.sampled_from([3, 3, 0, 1, 4])),
               "host_perf_caps": draw(st.sampled_from(HOST_CAPS)),
               "host_pebs": draw(st.integers(0, 4)) > 0, "host_pt": draw(st.integers(0, 4)) > 0,
               "host_pebs_output_pt": draw(st.integers(0, 3)) > 0,
               "pt_mode": 1 if draw(st.integers(0, 3)) else 0,
               "ds": draw(st.integers(0, 5)) > 0, "dtes64": draw(st.integers(0, 5)) > 0,
               "host_gp": draw(st.sampled_from([8, 8, 8, 4, 2])),
               "host_fixed": draw(st.sampled_from([3, 3, 3, 4, 1]))}
        actions = []
        for _ in range(draw(st.integers(min_actions, max_actions))):
            op = draw(st.sampled_from(ACTION_OPS))
            group = draw(st.sampled_from(list(GROUPS)))
            if op == "guest_wrmsr" and draw(st.integers(0, 3)) == 0:
                group = "rtit"                             # vmx_rtit_ctl_check's many reasons
            a = {"op": op, "msr": draw(st.sampled_from(DRAWN[group]))}
            if op in WRITES:
                if draw(st.integers(0, 4)) == 0:
                    a["value"] = draw(st.sampled_from(WORDS))
                else:
                    a["value"] = draw(st.sampled_from(VALUES[group]))
            actions.append(a)
        return normalise({"cpu": cpu, "actions": actions})

    return build()
