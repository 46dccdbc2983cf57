"""Unit tests of the pebs_pt absent Python side (harness/payloads/pebs_pt_absent.py and
testcases/pebs_pt/test_pebs_pt_absent.py) on payload output recorded in a kvmconf QEMU
guest (Debian 6.1, kvm-amd under nested SVM on TCG, no PMU: `SVM: PMU virtualization is
disabled`), plus synthesized kvm-intel probes for the Intel rules."""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import HarnessError, KernelFailure
from harness.payloads import pebs_pt_absent as codec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "testcases" / "pebs_pt"))
from absent_cases import CASES  # noqa: E402

# `pebs_pt_absent --probe` and `pebs_pt_absent < cases` (all CASES, in order) in the guest.
RECORDED_PROBE = '{"probe":"pebs_pt_absent","vendor":"amd","host_cpuid":{"max_basic":13,"pdcm":0,"dtes64":0,"ds":0,"hypervisor":1,"pt":0},"ignore_msrs":"N","enable_pmu":"N","pt_mode":null,"host_rdmsr":{"0x3f1":"ok","0x3f2":"ok","0x600":"ok","0x345":"ok","0x570":"ok","0x571":"ok","0x560":"ok","0x561":"ok","0x572":"ok","0x580":"ok","0x14c1":"ok","0x1309":"ok"},"dev_kvm":true,"get_msr_features":1,"supported":{"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0},"feature_perf_caps":{"ret":1,"value":0}}'
RECORDED_OUT = """\
{"script":0,"op":"cpuid","ret":0,"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0}
{"script":0,"op":"done"}
{"script":1,"op":"cpuid","ret":0,"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0}
{"script":1,"op":"done"}
{"script":2,"op":"cpuid","ret":0,"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0}
{"script":2,"op":"done"}
{"script":3,"op":"cpuid","ret":0,"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0}
{"script":3,"op":"done"}
{"script":4,"op":"cpuid","ret":0,"pdcm":0,"dtes64":0,"ds":0,"pt":0,"max_basic":13,"leaf_a":[0,0,0,0],"leaf_14":null,"leaf_14_entries":0}
{"script":4,"op":"done"}
{"script":5,"op":"setup","ok":true}
{"script":5,"op":"guest_rdmsr","msr":837,"result":"fault","value":null}
{"script":5,"op":"done"}
{"script":6,"op":"setup","ok":true}
{"script":6,"op":"guest_rdmsr","msr":837,"result":"ok","value":0}
{"script":6,"op":"done"}
{"script":7,"op":"setup","ok":true}
{"script":7,"op":"guest_wrmsr","msr":837,"value":65536,"result":"fault"}
{"script":7,"op":"guest_rdmsr","msr":837,"result":"ok","value":0}
{"script":7,"op":"done"}
{"script":8,"op":"setup","ok":true}
{"script":8,"op":"host_get","msr":837,"ret":1,"value":0}
{"script":8,"op":"done"}
{"script":9,"op":"setup","ok":true}
{"script":9,"op":"host_set","msr":837,"value":65536,"ret":0}
{"script":9,"op":"host_set","msr":837,"value":0,"ret":1}
{"script":9,"op":"guest_rdmsr","msr":837,"result":"ok","value":0}
{"script":9,"op":"done"}
{"script":10,"op":"setup","ok":true}
{"script":10,"op":"host_set","msr":837,"value":8192,"ret":0}
{"script":10,"op":"guest_rdmsr","msr":837,"result":"ok","value":0}
{"script":10,"op":"done"}
{"script":11,"op":"msr_list","msr":837,"listed":true}
{"script":11,"op":"feature_list","msr":837,"listed":true}
{"script":11,"op":"feature_get","msr":837,"ret":1,"value":0}
{"script":11,"op":"done"}
{"script":12,"op":"msr_list","msr":1009,"listed":true}
{"script":12,"op":"feature_list","msr":1009,"listed":false}
{"script":12,"op":"feature_get","msr":1009,"ret":0,"value":null}
{"script":12,"op":"setup","ok":true}
{"script":12,"op":"guest_rdmsr","msr":1009,"result":"fault","value":null}
{"script":12,"op":"guest_wrmsr","msr":1009,"value":2305843009213693953,"result":"fault"}
{"script":12,"op":"host_get","msr":1009,"ret":1,"value":0}
{"script":12,"op":"host_set","msr":1009,"value":2305843009213693953,"ret":0}
{"script":12,"op":"host_set","msr":1009,"value":0,"ret":1}
{"script":12,"op":"guest_rdmsr","msr":1009,"result":"fault","value":null}
{"script":12,"op":"done"}
{"script":13,"op":"setup","ok":true}
{"script":13,"op":"guest_wrmsr","msr":1009,"value":1152921504606846976,"result":"fault"}
{"script":13,"op":"host_set","msr":1009,"value":1152921504606846976,"ret":0}
{"script":13,"op":"done"}
{"script":14,"op":"msr_list","msr":1010,"listed":true}
{"script":14,"op":"feature_list","msr":1010,"listed":false}
{"script":14,"op":"feature_get","msr":1010,"ret":0,"value":null}
{"script":14,"op":"setup","ok":true}
{"script":14,"op":"guest_rdmsr","msr":1010,"result":"fault","value":null}
{"script":14,"op":"guest_wrmsr","msr":1010,"value":15,"result":"fault"}
{"script":14,"op":"host_get","msr":1010,"ret":1,"value":0}
{"script":14,"op":"host_set","msr":1010,"value":15,"ret":0}
{"script":14,"op":"host_set","msr":1010,"value":0,"ret":1}
{"script":14,"op":"guest_rdmsr","msr":1010,"result":"fault","value":null}
{"script":14,"op":"done"}
{"script":15,"op":"msr_list","msr":1536,"listed":true}
{"script":15,"op":"feature_list","msr":1536,"listed":false}
{"script":15,"op":"feature_get","msr":1536,"ret":0,"value":null}
{"script":15,"op":"setup","ok":true}
{"script":15,"op":"guest_rdmsr","msr":1536,"result":"fault","value":null}
{"script":15,"op":"guest_wrmsr","msr":1536,"value":196608,"result":"fault"}
{"script":15,"op":"host_get","msr":1536,"ret":1,"value":0}
{"script":15,"op":"host_set","msr":1536,"value":196608,"ret":0}
{"script":15,"op":"host_set","msr":1536,"value":0,"ret":1}
{"script":15,"op":"guest_rdmsr","msr":1536,"result":"fault","value":null}
{"script":15,"op":"done"}
{"script":16,"op":"msr_list","msr":5313,"listed":false}
{"script":16,"op":"feature_list","msr":5313,"listed":false}
{"script":16,"op":"feature_get","msr":5313,"ret":0,"value":null}
{"script":16,"op":"setup","ok":true}
{"script":16,"op":"guest_rdmsr","msr":5313,"result":"fault","value":null}
{"script":16,"op":"guest_wrmsr","msr":5313,"value":281474976710640,"result":"fault"}
{"script":16,"op":"host_get","msr":5313,"ret":0,"value":null}
{"script":16,"op":"host_set","msr":5313,"value":281474976710640,"ret":0}
{"script":16,"op":"host_set","msr":5313,"value":0,"ret":0}
{"script":16,"op":"guest_rdmsr","msr":5313,"result":"fault","value":null}
{"script":16,"op":"done"}
{"script":17,"op":"msr_list","msr":5314,"listed":false}
{"script":17,"op":"feature_list","msr":5314,"listed":false}
{"script":17,"op":"feature_get","msr":5314,"ret":0,"value":null}
{"script":17,"op":"setup","ok":true}
{"script":17,"op":"guest_rdmsr","msr":5314,"result":"fault","value":null}
{"script":17,"op":"guest_wrmsr","msr":5314,"value":281474976710640,"result":"fault"}
{"script":17,"op":"host_get","msr":5314,"ret":0,"value":null}
{"script":17,"op":"host_set","msr":5314,"value":281474976710640,"ret":0}
{"script":17,"op":"host_set","msr":5314,"value":0,"ret":0}
{"script":17,"op":"guest_rdmsr","msr":5314,"result":"fault","value":null}
{"script":17,"op":"done"}
{"script":18,"op":"msr_list","msr":5315,"listed":false}
{"script":18,"op":"feature_list","msr":5315,"listed":false}
{"script":18,"op":"feature_get","msr":5315,"ret":0,"value":null}
{"script":18,"op":"setup","ok":true}
{"script":18,"op":"guest_rdmsr","msr":5315,"result":"fault","value":null}
{"script":18,"op":"guest_wrmsr","msr":5315,"value":281474976710640,"result":"fault"}
{"script":18,"op":"host_get","msr":5315,"ret":0,"value":null}
{"script":18,"op":"host_set","msr":5315,"value":281474976710640,"ret":0}
{"script":18,"op":"host_set","msr":5315,"value":0,"ret":0}
{"script":18,"op":"guest_rdmsr","msr":5315,"result":"fault","value":null}
{"script":18,"op":"done"}
{"script":19,"op":"msr_list","msr":5316,"listed":false}
{"script":19,"op":"feature_list","msr":5316,"listed":false}
{"script":19,"op":"feature_get","msr":5316,"ret":0,"value":null}
{"script":19,"op":"setup","ok":true}
{"script":19,"op":"guest_rdmsr","msr":5316,"result":"fault","value":null}
{"script":19,"op":"guest_wrmsr","msr":5316,"value":281474976710640,"result":"fault"}
{"script":19,"op":"host_get","msr":5316,"ret":0,"value":null}
{"script":19,"op":"host_set","msr":5316,"value":281474976710640,"ret":0}
{"script":19,"op":"host_set","msr":5316,"value":0,"ret":0}
{"script":19,"op":"guest_rdmsr","msr":5316,"result":"fault","value":null}
{"script":19,"op":"done"}
{"script":20,"op":"msr_list","msr":5317,"listed":false}
{"script":20,"op":"feature_list","msr":5317,"listed":false}
{"script":20,"op":"feature_get","msr":5317,"ret":0,"value":null}
{"script":20,"op":"setup","ok":true}
{"script":20,"op":"guest_rdmsr","msr":5317,"result":"fault","value":null}
{"script":20,"op":"guest_wrmsr","msr":5317,"value":281474976710640,"result":"fault"}
{"script":20,"op":"host_get","msr":5317,"ret":0,"value":null}
{"script":20,"op":"host_set","msr":5317,"value":281474976710640,"ret":0}
{"script":20,"op":"host_set","msr":5317,"value":0,"ret":0}
{"script":20,"op":"guest_rdmsr","msr":5317,"result":"fault","value":null}
{"script":20,"op":"done"}
{"script":21,"op":"msr_list","msr":5318,"listed":false}
{"script":21,"op":"feature_list","msr":5318,"listed":false}
{"script":21,"op":"feature_get","msr":5318,"ret":0,"value":null}
{"script":21,"op":"setup","ok":true}
{"script":21,"op":"guest_rdmsr","msr":5318,"result":"fault","value":null}
{"script":21,"op":"guest_wrmsr","msr":5318,"value":281474976710640,"result":"fault"}
{"script":21,"op":"host_get","msr":5318,"ret":0,"value":null}
{"script":21,"op":"host_set","msr":5318,"value":281474976710640,"ret":0}
{"script":21,"op":"host_set","msr":5318,"value":0,"ret":0}
{"script":21,"op":"guest_rdmsr","msr":5318,"result":"fault","value":null}
{"script":21,"op":"done"}
{"script":22,"op":"msr_list","msr":5319,"listed":false}
{"script":22,"op":"feature_list","msr":5319,"listed":false}
{"script":22,"op":"feature_get","msr":5319,"ret":0,"value":null}
{"script":22,"op":"setup","ok":true}
{"script":22,"op":"guest_rdmsr","msr":5319,"result":"fault","value":null}
{"script":22,"op":"guest_wrmsr","msr":5319,"value":281474976710640,"result":"fault"}
{"script":22,"op":"host_get","msr":5319,"ret":0,"value":null}
{"script":22,"op":"host_set","msr":5319,"value":281474976710640,"ret":0}
{"script":22,"op":"host_set","msr":5319,"value":0,"ret":0}
{"script":22,"op":"guest_rdmsr","msr":5319,"result":"fault","value":null}
{"script":22,"op":"done"}
{"script":23,"op":"msr_list","msr":5320,"listed":false}
{"script":23,"op":"feature_list","msr":5320,"listed":false}
{"script":23,"op":"feature_get","msr":5320,"ret":0,"value":null}
{"script":23,"op":"setup","ok":true}
{"script":23,"op":"guest_rdmsr","msr":5320,"result":"fault","value":null}
{"script":23,"op":"guest_wrmsr","msr":5320,"value":281474976710640,"result":"fault"}
{"script":23,"op":"host_get","msr":5320,"ret":0,"value":null}
{"script":23,"op":"host_set","msr":5320,"value":281474976710640,"ret":0}
{"script":23,"op":"host_set","msr":5320,"value":0,"ret":0}
{"script":23,"op":"guest_rdmsr","msr":5320,"result":"fault","value":null}
{"script":23,"op":"done"}
{"script":24,"op":"msr_list","msr":4873,"listed":false}
{"script":24,"op":"feature_list","msr":4873,"listed":false}
{"script":24,"op":"feature_get","msr":4873,"ret":0,"value":null}
{"script":24,"op":"setup","ok":true}
{"script":24,"op":"guest_rdmsr","msr":4873,"result":"fault","value":null}
{"script":24,"op":"guest_wrmsr","msr":4873,"value":281474976710640,"result":"fault"}
{"script":24,"op":"host_get","msr":4873,"ret":0,"value":null}
{"script":24,"op":"host_set","msr":4873,"value":281474976710640,"ret":0}
{"script":24,"op":"host_set","msr":4873,"value":0,"ret":0}
{"script":24,"op":"guest_rdmsr","msr":4873,"result":"fault","value":null}
{"script":24,"op":"done"}
{"script":25,"op":"msr_list","msr":4874,"listed":false}
{"script":25,"op":"feature_list","msr":4874,"listed":false}
{"script":25,"op":"feature_get","msr":4874,"ret":0,"value":null}
{"script":25,"op":"setup","ok":true}
{"script":25,"op":"guest_rdmsr","msr":4874,"result":"fault","value":null}
{"script":25,"op":"guest_wrmsr","msr":4874,"value":281474976710640,"result":"fault"}
{"script":25,"op":"host_get","msr":4874,"ret":0,"value":null}
{"script":25,"op":"host_set","msr":4874,"value":281474976710640,"ret":0}
{"script":25,"op":"host_set","msr":4874,"value":0,"ret":0}
{"script":25,"op":"guest_rdmsr","msr":4874,"result":"fault","value":null}
{"script":25,"op":"done"}
{"script":26,"op":"msr_list","msr":4875,"listed":false}
{"script":26,"op":"feature_list","msr":4875,"listed":false}
{"script":26,"op":"feature_get","msr":4875,"ret":0,"value":null}
{"script":26,"op":"setup","ok":true}
{"script":26,"op":"guest_rdmsr","msr":4875,"result":"fault","value":null}
{"script":26,"op":"guest_wrmsr","msr":4875,"value":281474976710640,"result":"fault"}
{"script":26,"op":"host_get","msr":4875,"ret":0,"value":null}
{"script":26,"op":"host_set","msr":4875,"value":281474976710640,"ret":0}
{"script":26,"op":"host_set","msr":4875,"value":0,"ret":0}
{"script":26,"op":"guest_rdmsr","msr":4875,"result":"fault","value":null}
{"script":26,"op":"done"}
{"script":27,"op":"msr_list","msr":4876,"listed":false}
{"script":27,"op":"feature_list","msr":4876,"listed":false}
{"script":27,"op":"feature_get","msr":4876,"ret":0,"value":null}
{"script":27,"op":"setup","ok":true}
{"script":27,"op":"guest_rdmsr","msr":4876,"result":"fault","value":null}
{"script":27,"op":"guest_wrmsr","msr":4876,"value":281474976710640,"result":"fault"}
{"script":27,"op":"host_get","msr":4876,"ret":0,"value":null}
{"script":27,"op":"host_set","msr":4876,"value":281474976710640,"ret":0}
{"script":27,"op":"host_set","msr":4876,"value":0,"ret":0}
{"script":27,"op":"guest_rdmsr","msr":4876,"result":"fault","value":null}
{"script":27,"op":"done"}
{"script":28,"op":"msr_list","msr":1392,"listed":false}
{"script":28,"op":"feature_list","msr":1392,"listed":false}
{"script":28,"op":"feature_get","msr":1392,"ret":0,"value":null}
{"script":28,"op":"setup","ok":true}
{"script":28,"op":"guest_rdmsr","msr":1392,"result":"fault","value":null}
{"script":28,"op":"guest_wrmsr","msr":1392,"value":8193,"result":"fault"}
{"script":28,"op":"host_get","msr":1392,"ret":0,"value":null}
{"script":28,"op":"host_set","msr":1392,"value":8193,"ret":0}
{"script":28,"op":"host_set","msr":1392,"value":0,"ret":0}
{"script":28,"op":"guest_rdmsr","msr":1392,"result":"fault","value":null}
{"script":28,"op":"done"}
{"script":29,"op":"msr_list","msr":1393,"listed":false}
{"script":29,"op":"feature_list","msr":1393,"listed":false}
{"script":29,"op":"feature_get","msr":1393,"ret":0,"value":null}
{"script":29,"op":"setup","ok":true}
{"script":29,"op":"guest_rdmsr","msr":1393,"result":"fault","value":null}
{"script":29,"op":"guest_wrmsr","msr":1393,"value":32,"result":"fault"}
{"script":29,"op":"host_get","msr":1393,"ret":0,"value":null}
{"script":29,"op":"host_set","msr":1393,"value":32,"ret":0}
{"script":29,"op":"host_set","msr":1393,"value":0,"ret":0}
{"script":29,"op":"guest_rdmsr","msr":1393,"result":"fault","value":null}
{"script":29,"op":"done"}
{"script":30,"op":"msr_list","msr":1376,"listed":false}
{"script":30,"op":"feature_list","msr":1376,"listed":false}
{"script":30,"op":"feature_get","msr":1376,"ret":0,"value":null}
{"script":30,"op":"setup","ok":true}
{"script":30,"op":"guest_rdmsr","msr":1376,"result":"fault","value":null}
{"script":30,"op":"guest_wrmsr","msr":1376,"value":262144,"result":"fault"}
{"script":30,"op":"host_get","msr":1376,"ret":0,"value":null}
{"script":30,"op":"host_set","msr":1376,"value":262144,"ret":0}
{"script":30,"op":"host_set","msr":1376,"value":0,"ret":0}
{"script":30,"op":"guest_rdmsr","msr":1376,"result":"fault","value":null}
{"script":30,"op":"done"}
{"script":31,"op":"msr_list","msr":1377,"listed":false}
{"script":31,"op":"feature_list","msr":1377,"listed":false}
{"script":31,"op":"feature_get","msr":1377,"ret":0,"value":null}
{"script":31,"op":"setup","ok":true}
{"script":31,"op":"guest_rdmsr","msr":1377,"result":"fault","value":null}
{"script":31,"op":"guest_wrmsr","msr":1377,"value":127,"result":"fault"}
{"script":31,"op":"host_get","msr":1377,"ret":0,"value":null}
{"script":31,"op":"host_set","msr":1377,"value":127,"ret":0}
{"script":31,"op":"host_set","msr":1377,"value":0,"ret":0}
{"script":31,"op":"guest_rdmsr","msr":1377,"result":"fault","value":null}
{"script":31,"op":"done"}
{"script":32,"op":"msr_list","msr":1394,"listed":false}
{"script":32,"op":"feature_list","msr":1394,"listed":false}
{"script":32,"op":"feature_get","msr":1394,"ret":0,"value":null}
{"script":32,"op":"setup","ok":true}
{"script":32,"op":"guest_rdmsr","msr":1394,"result":"fault","value":null}
{"script":32,"op":"guest_wrmsr","msr":1394,"value":4096,"result":"fault"}
{"script":32,"op":"host_get","msr":1394,"ret":0,"value":null}
{"script":32,"op":"host_set","msr":1394,"value":4096,"ret":0}
{"script":32,"op":"host_set","msr":1394,"value":0,"ret":0}
{"script":32,"op":"guest_rdmsr","msr":1394,"result":"fault","value":null}
{"script":32,"op":"done"}
{"script":33,"op":"msr_list","msr":1408,"listed":false}
{"script":33,"op":"feature_list","msr":1408,"listed":false}
{"script":33,"op":"feature_get","msr":1408,"ret":0,"value":null}
{"script":33,"op":"setup","ok":true}
{"script":33,"op":"guest_rdmsr","msr":1408,"result":"fault","value":null}
{"script":33,"op":"guest_wrmsr","msr":1408,"value":65536,"result":"fault"}
{"script":33,"op":"host_get","msr":1408,"ret":0,"value":null}
{"script":33,"op":"host_set","msr":1408,"value":65536,"ret":0}
{"script":33,"op":"host_set","msr":1408,"value":0,"ret":0}
{"script":33,"op":"guest_rdmsr","msr":1408,"result":"fault","value":null}
{"script":33,"op":"done"}
{"script":34,"op":"msr_list","msr":1409,"listed":false}
{"script":34,"op":"feature_list","msr":1409,"listed":false}
{"script":34,"op":"feature_get","msr":1409,"ret":0,"value":null}
{"script":34,"op":"setup","ok":true}
{"script":34,"op":"guest_rdmsr","msr":1409,"result":"fault","value":null}
{"script":34,"op":"guest_wrmsr","msr":1409,"value":65536,"result":"fault"}
{"script":34,"op":"host_get","msr":1409,"ret":0,"value":null}
{"script":34,"op":"host_set","msr":1409,"value":65536,"ret":0}
{"script":34,"op":"host_set","msr":1409,"value":0,"ret":0}
{"script":34,"op":"guest_rdmsr","msr":1409,"result":"fault","value":null}
{"script":34,"op":"done"}
{"script":35,"op":"msr_list","msr":1410,"listed":false}
{"script":35,"op":"feature_list","msr":1410,"listed":false}
{"script":35,"op":"feature_get","msr":1410,"ret":0,"value":null}
{"script":35,"op":"setup","ok":true}
{"script":35,"op":"guest_rdmsr","msr":1410,"result":"fault","value":null}
{"script":35,"op":"guest_wrmsr","msr":1410,"value":65536,"result":"fault"}
{"script":35,"op":"host_get","msr":1410,"ret":0,"value":null}
{"script":35,"op":"host_set","msr":1410,"value":65536,"ret":0}
{"script":35,"op":"host_set","msr":1410,"value":0,"ret":0}
{"script":35,"op":"guest_rdmsr","msr":1410,"result":"fault","value":null}
{"script":35,"op":"done"}
{"script":36,"op":"msr_list","msr":1411,"listed":false}
{"script":36,"op":"feature_list","msr":1411,"listed":false}
{"script":36,"op":"feature_get","msr":1411,"ret":0,"value":null}
{"script":36,"op":"setup","ok":true}
{"script":36,"op":"guest_rdmsr","msr":1411,"result":"fault","value":null}
{"script":36,"op":"guest_wrmsr","msr":1411,"value":65536,"result":"fault"}
{"script":36,"op":"host_get","msr":1411,"ret":0,"value":null}
{"script":36,"op":"host_set","msr":1411,"value":65536,"ret":0}
{"script":36,"op":"host_set","msr":1411,"value":0,"ret":0}
{"script":36,"op":"guest_rdmsr","msr":1411,"result":"fault","value":null}
{"script":36,"op":"done"}
{"script":37,"op":"msr_list","msr":1412,"listed":false}
{"script":37,"op":"feature_list","msr":1412,"listed":false}
{"script":37,"op":"feature_get","msr":1412,"ret":0,"value":null}
{"script":37,"op":"setup","ok":true}
{"script":37,"op":"guest_rdmsr","msr":1412,"result":"fault","value":null}
{"script":37,"op":"guest_wrmsr","msr":1412,"value":65536,"result":"fault"}
{"script":37,"op":"host_get","msr":1412,"ret":0,"value":null}
{"script":37,"op":"host_set","msr":1412,"value":65536,"ret":0}
{"script":37,"op":"host_set","msr":1412,"value":0,"ret":0}
{"script":37,"op":"guest_rdmsr","msr":1412,"result":"fault","value":null}
{"script":37,"op":"done"}
{"script":38,"op":"msr_list","msr":1413,"listed":false}
{"script":38,"op":"feature_list","msr":1413,"listed":false}
{"script":38,"op":"feature_get","msr":1413,"ret":0,"value":null}
{"script":38,"op":"setup","ok":true}
{"script":38,"op":"guest_rdmsr","msr":1413,"result":"fault","value":null}
{"script":38,"op":"guest_wrmsr","msr":1413,"value":65536,"result":"fault"}
{"script":38,"op":"host_get","msr":1413,"ret":0,"value":null}
{"script":38,"op":"host_set","msr":1413,"value":65536,"ret":0}
{"script":38,"op":"host_set","msr":1413,"value":0,"ret":0}
{"script":38,"op":"guest_rdmsr","msr":1413,"result":"fault","value":null}
{"script":38,"op":"done"}
{"script":39,"op":"msr_list","msr":1414,"listed":false}
{"script":39,"op":"feature_list","msr":1414,"listed":false}
{"script":39,"op":"feature_get","msr":1414,"ret":0,"value":null}
{"script":39,"op":"setup","ok":true}
{"script":39,"op":"guest_rdmsr","msr":1414,"result":"fault","value":null}
{"script":39,"op":"guest_wrmsr","msr":1414,"value":65536,"result":"fault"}
{"script":39,"op":"host_get","msr":1414,"ret":0,"value":null}
{"script":39,"op":"host_set","msr":1414,"value":65536,"ret":0}
{"script":39,"op":"host_set","msr":1414,"value":0,"ret":0}
{"script":39,"op":"guest_rdmsr","msr":1414,"result":"fault","value":null}
{"script":39,"op":"done"}
{"script":40,"op":"msr_list","msr":1415,"listed":false}
{"script":40,"op":"feature_list","msr":1415,"listed":false}
{"script":40,"op":"feature_get","msr":1415,"ret":0,"value":null}
{"script":40,"op":"setup","ok":true}
{"script":40,"op":"guest_rdmsr","msr":1415,"result":"fault","value":null}
{"script":40,"op":"guest_wrmsr","msr":1415,"value":65536,"result":"fault"}
{"script":40,"op":"host_get","msr":1415,"ret":0,"value":null}
{"script":40,"op":"host_set","msr":1415,"value":65536,"ret":0}
{"script":40,"op":"host_set","msr":1415,"value":0,"ret":0}
{"script":40,"op":"guest_rdmsr","msr":1415,"result":"fault","value":null}
{"script":40,"op":"done"}
{"script":41,"op":"setup","ok":true}
{"script":41,"op":"guest_rdmsr","msr":1392,"result":"fault","value":null}
{"script":41,"op":"guest_wrmsr","msr":1392,"value":8193,"result":"fault"}
{"script":41,"op":"host_get","msr":1392,"ret":0,"value":null}
{"script":41,"op":"host_set","msr":1392,"value":8193,"ret":0}
{"script":41,"op":"done"}
"""


def _probe(**changes) -> dict:
    probe = json.loads(RECORDED_PROBE)
    for key, value in changes.items():
        probe[key] = value
    return probe


def _recorded() -> list[list[dict]]:
    return codec.decode(RECORDED_OUT.encode(), len(CASES))


def _case(name: str) -> dict:
    (case,) = [c for c in CASES if c["id"] == f"pebs_pt/absent/{name}"]
    return case["case"]


INTEL = _probe(vendor="intel", enable_pmu="Y", pt_mode="0", ignore_msrs="N",
               host_cpuid={"max_basic": 0x1B, "pdcm": 1, "dtes64": 1, "ds": 1, "hypervisor": 0, "pt": 1},
               supported={"pdcm": 1, "dtes64": 1, "ds": 1, "pt": 0, "max_basic": 0x1B,
                          "leaf_a": [0x07300802, 0, 0, 0x8603], "leaf_14": [0, 0, 0, 0],
                          "leaf_14_entries": 1},
               # FW_WRITES | PEBS format 4 | ARCH_REG | TRAP | LBR format 5 (an Ice Lake server)
               feature_perf_caps={"ret": 1, "value": 0x24C5})


def test_cases_are_many_and_named():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 15 and len(set(ids)) == len(ids)
    assert all(i.startswith("pebs_pt/absent/") for i in ids)
    msrs = {c["case"].get("msr") for c in CASES}
    assert set(codec.RELOAD) | set(codec.RTIT) | set(codec.PEBS) | {codec.PERF_CAPABILITIES} <= msrs


def test_encode_line_format():
    line = codec.encode([{"msr": 0x3F1, "value": 1 << 61, "pdcm": "set", "pt": "clear",
                          "ops": ["host_set", "guest_rdmsr"]}], first=7).decode()
    assert line == "case 7 msr=0x3f1 value=0x2000000000000000 pdcm=1 pt=0 ops=0x90\n"
    assert codec.encode([{"ops": ["cpuid"]}]).decode() == "case 0 value=0x0 pdcm=2 pt=2 ops=0x1\n"
    with pytest.raises(HarnessError):
        codec.encode([{"ops": ["guest_rdmsr"]}])          # an MSR op without an MSR
    with pytest.raises(HarnessError):
        codec.encode([{"msr": 1, "ops": ["bogus"]}])


def test_recording_agrees_with_the_amd_prediction():
    probe = codec.parse_probe(RECORDED_PROBE)
    assert probe["vendor"] == "amd"
    for case, observed in zip(CASES, _recorded()):
        predicted = codec.predict(case["case"], probe)
        assert codec.compare(case["case"], predicted, observed) == [], case["id"]


def test_recorded_amd_answers():
    by_id = dict(zip([c["id"] for c in CASES], _recorded()))
    pebs = {e["op"] + str(e.get("value", "")): e for e in by_id["pebs_pt/absent/pebs-enable-output-pt"]}
    assert pebs["guest_wrmsr" + str((1 << 61) | 1)]["result"] == "fault"
    # QEMU TCG reads any MSR as 0, so rdmsr_safe() succeeds and PEBS_ENABLE is to-be-saved
    assert by_id["pebs_pt/absent/pebs-enable-output-pt"][0] == {"op": "msr_list", "msr": 0x3F1, "listed": True}
    reload_get = [e for e in by_id["pebs_pt/absent/reload-pmc0"] if e["op"] == "host_get"]
    assert reload_get == [{"op": "host_get", "msr": 0x14C1, "ret": 0, "value": None}]
    assert [e["result"] for e in by_id["pebs_pt/absent/perfcap-guest-rdmsr-without-pdcm"]
            if e["op"] == "guest_rdmsr"] == ["fault"]


def test_a_wrong_answer_names_msr_and_field():
    case = _case("pebs-enable-output-pt")
    observed = copy.deepcopy(_recorded()[[c["case"] for c in CASES].index(case)])
    for e in observed:
        if e["op"] == "guest_wrmsr":
            e["result"] = "ok"
    diffs = codec.compare(case, codec.predict(case, _probe()), observed)
    assert diffs == [("IA32_PEBS_ENABLE (0x3f1)", "guest_wrmsr.result", "fault", "ok")]


def test_decode_is_strict():
    with pytest.raises(HarnessError):
        codec.decode(b'{"script":0,"op":"cpuid"}\n', 1)                 # no done
    with pytest.raises(HarnessError):
        codec.decode(b'{"script":3,"op":"done"}\n', 1)                  # out of range
    with pytest.raises(HarnessError):
        codec.parse_probe(b"not json\n")


def test_ignore_msrs_turns_unsupported_into_zero_on_amd():
    probe = _probe(ignore_msrs="Y")
    events = codec.predict(_case("reload-pmc3"), probe)
    get = [e for e in events if e["op"] == "host_get"][0]
    rd = [e for e in events if e["op"] == "guest_rdmsr"][0]
    assert (get["ret"], get["value"], rd["result"], rd["value"]) == (1, 0, "ok", 0)
    # PERF_CAPABILITIES' guest write fails with 1, not KVM_MSR_RET_UNSUPPORTED: still #GP
    assert codec.predict(_case("perfcap-guest-wrmsr-bit16"), probe)[1]["result"] == "fault"


def test_host_rdmsr_unknown_is_unmodelled():
    probe = _probe(host_rdmsr={k: None for k in json.loads(RECORDED_PROBE)["host_rdmsr"]})
    with pytest.raises(codec.Unmodelled, match="/dev/cpu/0/msr"):
        codec.predict(_case("ds-area"), probe)
    codec.predict(_case("reload-fixed0"), probe)     # reload MSRs never are in msrs_to_save


def test_intel_rules_without_pebs_via_pt():
    ops = ["msr_list", "feature_list", "feature_get", "setup", "guest_rdmsr", "guest_wrmsr",
           "host_get", "host_set", "host_set0", "guest_rdmsr2"]
    pebs = dict(zip(ops, codec.predict(_case("pebs-enable-output-pt"), INTEL)))
    # PEBS via DS present (format 4): the MSR is valid, bit 61 is outside pebs_enable_mask
    assert pebs["guest_rdmsr"]["result"] == "ok" and pebs["guest_rdmsr2"]["result"] == "ok"
    assert pebs["guest_wrmsr"]["result"] == "fault"
    assert pebs["host_set"]["ret"] == 0 and pebs["host_set0"]["ret"] == 1
    # no PEBS baseline in vmx_get_perf_capabilities(): PEBS_DATA_CFG is not a PMU MSR
    cfg = codec.predict(_case("pebs-data-cfg"), INTEL)
    assert [e["result"] for e in cfg if e["op"] == "guest_rdmsr"] == ["fault", "fault"]
    # RTIT: vmx returns 1, which ignore_msrs does not mask
    rtit = codec.predict(_case("rtit-ctl"), dict(INTEL, ignore_msrs="Y"))
    assert {e["op"]: e.get("result", e.get("ret")) for e in rtit}["guest_rdmsr"] == "fault"
    assert [e["ret"] for e in rtit if e["op"] == "host_get"] == [0]
    # the feature MSR may hold host bits, never bit 16 or the PEBS baseline
    feat = [e for e in codec.predict(_case("perfcap-feature-msr"), INTEL) if e["op"] == "feature_get"][0]
    assert feat["value"] == 0x24C5 and feat["value"] != 0x24C5 | codec.PERF_CAP_PT
    assert feat["value"] != codec.PERF_CAP_PEBS_BASELINE
    # initial perf_capabilities = supported_perf_cap; PDCM forced: the guest reads it
    rd = codec.predict(_case("perfcap-guest-rdmsr-with-pdcm"), INTEL)[1]
    assert (rd["result"], rd["value"]) == ("ok", 0x24C5)
    # FW_WRITES is supported there: the host may set it
    fw = codec.predict(_case("perfcap-host-set-fw-writes"), INTEL)
    assert fw[1]["ret"] == 1 and fw[2]["value"] == codec.PERF_CAP_FW_WRITES
    cpuid = codec.predict(_case("cpuid-leaf-0xa"), INTEL)[0]
    assert cpuid["leaf_a"] == [0x07300802, 0, 0, 0x8603] and cpuid["leaf_a"] != [3, 0, 0, 0]
    assert cpuid["pt"] == 0 and cpuid["leaf_14"] == [0, 0, 0, 0]
    with pytest.raises(codec.Unmodelled, match="pt_mode=1"):
        codec.predict(_case("rtit-status"), dict(INTEL, pt_mode="1", supported=dict(INTEL["supported"], pt=1)))


# ---- the pytest module's own logic, with a fake target --------------------------

class _Res:
    def __init__(self, rc=0, stdout=b"", stderr=b""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class _FakeGuest:
    where, scratch = "fake target", "/scratch"

    def __init__(self, probe: str, answer: bytes):
        self.probe, self.answer, self.uploads = probe, answer, []
        self.remote = SimpleNamespace(upload=lambda local, remote, mode=None:
                                      self.uploads.append((remote, mode)))

    def run(self, argv, stdin=b"", timeout=60.0):
        if argv[1:] == ["--probe"]:
            return _Res(stdout=self.probe.encode() + b"\n")
        return _Res(stdout=self.answer)


@pytest.fixture
def module(monkeypatch):
    # loaded by path: the unit-test module has the same basename
    spec = importlib.util.spec_from_file_location(
        "kvmconf_case_module_pebs_pt_absent", ROOT / "testcases" / "pebs_pt" / "test_pebs_pt_absent.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod.payload_build, "build",
                        lambda name, folder: SimpleNamespace(path=Path("/built") / name))
    monkeypatch.setattr(mod.on_target, "_placed", {})    # each test places the payload anew
    return mod


def _answer_of(index: int, mutate=None) -> bytes:
    events = copy.deepcopy(_recorded()[index])
    if mutate:
        mutate(events)
    return b"".join(json.dumps({"script": 0, **e}).encode() + b"\n" for e in events) + \
        b'{"script":0,"op":"done"}\n'


# the recorded lab guest ran Debian's 6.1
_CTX = type("Ctx", (), {"kernel": type("K", (), {"version": "6.1.0-57-amd64"})()})()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")   # targets: kvmconf's plugin
def test_module_pass_fail_and_skip(module):
    index = [c["id"] for c in CASES].index("pebs_pt/absent/reload-fixed2")
    case = CASES[index]
    guest = _FakeGuest(RECORDED_PROBE, _answer_of(index))
    module.test_pebs_pt_absent(case, guest, _CTX)
    assert guest.uploads == [("/scratch/pebs_pt_absent", 0o700)]

    def refused_no_more(events):
        for e in events:
            if e["op"] == "host_set" and e["value"]:
                e["ret"] = 1
    module.on_target._placed.clear()
    with pytest.raises(KernelFailure) as failed:
        module.test_pebs_pt_absent(case, _FakeGuest(RECORDED_PROBE, _answer_of(index, refused_no_more)), _CTX)
    assert "MSR_RELOAD_FIXED_CTR2 (0x130b) host_set.ret" in str(failed.value)
    assert "kvm-amd answered 0x1" in str(failed.value)

    module.on_target._placed.clear()
    no_kvm = json.dumps({**json.loads(RECORDED_PROBE), "dev_kvm": False,
                         "dev_kvm_why": "No such file or directory"})
    with pytest.raises(pytest.skip.Exception, match="/dev/kvm absent on fake target"):
        module.test_pebs_pt_absent(case, _FakeGuest(no_kvm, b""), _CTX)


def test_a_kernel_reading_guest_caps_through_kvm_caps_faults_where_kvm_lacks_pdcm():
    """6.14+ (guest_cpu_cap_has): PDCM forced into an AMD guest's CPUID is not PDCM to KVM."""
    def guest_read(kernel):
        rd = codec.predict(_case("perfcap-guest-rdmsr-with-pdcm"), {**_probe(), "kernel": kernel})[1]
        return rd["result"]
    assert (guest_read("6.1.0-57-amd64"), guest_read("6.18.44")) == ("ok", "fault")
