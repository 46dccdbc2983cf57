"""pebs_pt absent (issue 13 item 4): the feature-absent conformance cases, as data.

Each case is one `case` line of guests/pebs_pt/absent/pebs_pt_absent.c (encoded by
harness/payloads/pebs_pt_absent.py, which also predicts the answers): an MSR, a value,
the guest's PDCM / PT CPUID bits (`keep` KVM_GET_SUPPORTED_CPUID's, `set`, `clear`),
and the observations (`ops`, made in the payload's fixed order). CPUID cases name the
`fields` of the supported-CPUID event they are about.
"""
from harness.payloads import pebs_pt_absent as codec

ALL_MSR_OPS = ["msr_list", "feature_list", "feature_get", "guest_rdmsr", "guest_wrmsr",
               "host_get", "host_set", "host_set0", "guest_rdmsr2"]
RELOAD_VALUE = 0xFFFF_FFFF_FFF0      # a counter reset value: -16 in 48 bits

CASES = [
    # ---- what KVM_GET_SUPPORTED_CPUID advertises
    {"id": "pebs_pt/absent/cpuid-pdcm", "case": {"ops": ["cpuid"], "fields": ["pdcm"]},
     "rationale": "1.ECX[15] PDCM (the guest may read PERF_CAPABILITIES) is not advertised"},
    {"id": "pebs_pt/absent/cpuid-pt", "case": {"ops": ["cpuid"], "fields": ["pt"]},
     "rationale": "7.0.EBX[25] Intel PT is not advertised (cpuid.c masks it; only vmx sets it)"},
    {"id": "pebs_pt/absent/cpuid-leaf-0x14", "case": {"ops": ["cpuid"],
                                                      "fields": ["max_basic", "leaf_14", "leaf_14_entries"]},
     "rationale": "leaf 0x14 (PT capabilities) is absent or all zero, with no subleaves"},
    {"id": "pebs_pt/absent/cpuid-leaf-0xa", "case": {"ops": ["cpuid"], "fields": ["max_basic", "leaf_a"]},
     "rationale": "leaf 0xA (architectural PMU) is zero on AMD; within KVM's caps on Intel"},
    {"id": "pebs_pt/absent/cpuid-ds-dtes64", "case": {"ops": ["cpuid"], "fields": ["ds", "dtes64"]},
     "rationale": "DS (1.EDX[21]) and DTES64 (1.ECX[2]), which PEBS via DS needs, are not advertised on AMD"},

    # ---- IA32_PERF_CAPABILITIES: the generic x86.c rules
    {"id": "pebs_pt/absent/perfcap-guest-rdmsr-without-pdcm",
     "case": {"msr": codec.PERF_CAPABILITIES, "pdcm": "clear", "ops": ["guest_rdmsr"]},
     "rationale": "x86.c kvm_get_msr_common(): a guest without PDCM gets #GP"},
    {"id": "pebs_pt/absent/perfcap-guest-rdmsr-with-pdcm",
     "case": {"msr": codec.PERF_CAPABILITIES, "pdcm": "set", "ops": ["guest_rdmsr"]},
     "rationale": "PDCM forced into the guest's CPUID: the read succeeds, bit 16 (PEBS output to PT) clear"},
    {"id": "pebs_pt/absent/perfcap-guest-wrmsr-bit16",
     "case": {"msr": codec.PERF_CAPABILITIES, "pdcm": "set", "value": codec.PERF_CAP_PT,
              "ops": ["guest_wrmsr", "guest_rdmsr2"]},
     "rationale": "x86.c kvm_set_msr_common(): PERF_CAPABILITIES is read-only for the guest (#GP)"},
    {"id": "pebs_pt/absent/perfcap-host-get",
     "case": {"msr": codec.PERF_CAPABILITIES, "ops": ["host_get"]},
     "rationale": "KVM_GET_MSRS on the vCPU: the vCPU's initial perf_capabilities, bit 16 clear"},
    {"id": "pebs_pt/absent/perfcap-host-set-bit16",
     "case": {"msr": codec.PERF_CAPABILITIES, "pdcm": "set", "value": codec.PERF_CAP_PT,
              "ops": ["host_set", "host_set0", "guest_rdmsr2"]},
     "rationale": "x86.c kvm_set_msr_common(): bit 16 is outside the feature MSR's value, so refused; 0 accepted"},
    {"id": "pebs_pt/absent/perfcap-host-set-fw-writes",
     "case": {"msr": codec.PERF_CAPABILITIES, "pdcm": "set", "value": codec.PERF_CAP_FW_WRITES,
              "ops": ["host_set", "guest_rdmsr2"]},
     "rationale": "a bit the feature MSR does not report (kvm-amd reports 0) is refused from the host"},
    {"id": "pebs_pt/absent/perfcap-feature-msr",
     "case": {"msr": codec.PERF_CAPABILITIES, "ops": ["msr_list", "feature_list", "feature_get"]},
     "rationale": "listed in KVM_GET_MSR_INDEX_LIST and KVM_GET_MSR_FEATURE_INDEX_LIST; the system fd's "
                  "value has bit 16 clear (kvm-amd: 0)"},

    # ---- PEBS MSRs
    {"id": "pebs_pt/absent/pebs-enable-output-pt",
     "case": {"msr": codec.PEBS_ENABLE, "value": codec.PEBS_OUTPUT_PT | 1, "ops": ALL_MSR_OPS},
     "rationale": "IA32_PEBS_ENABLE with PEBS_OUTPUT_PT (bit 61): #GP from the guest, refused from the host"},
    {"id": "pebs_pt/absent/pebs-enable-pmi-each-record",
     "case": {"msr": codec.PEBS_ENABLE, "value": codec.PEBS_PMI_AFTER_EACH_RECORD,
              "ops": ["guest_wrmsr", "host_set"]},
     "rationale": "PEBS_PMI_AFTER_EACH_RECORD (bit 60) alone: #GP / refused"},
    {"id": "pebs_pt/absent/pebs-data-cfg",
     "case": {"msr": codec.PEBS_DATA_CFG, "value": 0x0F, "ops": ALL_MSR_OPS},
     "rationale": "MSR_PEBS_DATA_CFG (adaptive PEBS groups): #GP / refused"},
    {"id": "pebs_pt/absent/ds-area",
     "case": {"msr": codec.DS_AREA, "value": 0x30000, "ops": ALL_MSR_OPS},
     "rationale": "IA32_DS_AREA: #GP / refused (kvm-amd; kvm-intel: valid only with DS in the guest's CPUID)"},

    # ---- counter reload MSRs (PEBS via PT only)
    *[{"id": f"pebs_pt/absent/reload-pmc{n}",
       "case": {"msr": codec.RELOAD_PMC[n], "value": RELOAD_VALUE, "ops": ALL_MSR_OPS},
       "rationale": f"MSR_RELOAD_PMC{n}: not a KVM MSR without PEBS-via-PT: #GP, refused, unlisted"}
      for n in range(8)],
    *[{"id": f"pebs_pt/absent/reload-fixed{n}",
       "case": {"msr": codec.RELOAD_FIXED[n], "value": RELOAD_VALUE, "ops": ALL_MSR_OPS},
       "rationale": f"MSR_RELOAD_FIXED_CTR{n}: not a KVM MSR without PEBS-via-PT: #GP, refused, unlisted"}
      for n in range(4)],

    # ---- Intel PT (RTIT) MSRs, no PT in the guest's CPUID
    *[{"id": f"pebs_pt/absent/rtit-{name}",
       "case": {"msr": msr, "value": value, "pt": "clear", "ops": ALL_MSR_OPS},
       "rationale": f"{codec.NAMES[msr]} without PT: #GP from the guest, refused from the host, unlisted"}
      for name, msr, value in [
          ("ctl", codec.RTIT_CTL, 0x2001),              # TraceEn | BranchEn
          ("status", codec.RTIT_STATUS, 0x20),          # Stopped
          ("output-base", codec.RTIT_OUTPUT_BASE, 0x40000),
          ("output-mask", codec.RTIT_OUTPUT_MASK, 0x7F),
          ("cr3-match", codec.RTIT_CR3_MATCH, 0x1000),
          *[(f"addr{(m - 0x580) // 2}-{'ab'[(m - 0x580) % 2]}", m, 0x10000) for m in codec.RTIT_ADDR],
      ]],
    {"id": "pebs_pt/absent/rtit-ctl-pt-forced",
     "case": {"msr": codec.RTIT_CTL, "value": 0x2001, "pt": "set",
              "ops": ["guest_rdmsr", "guest_wrmsr", "host_get", "host_set"]},
     "rationale": "PT forced into the guest's CPUID on a kernel that does not virtualize PT: still #GP"},
]
