"""Unit tests of the VFIO reference model (harness/reference/vfio.py); no guest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness.compare import first_divergence
from harness.payloads import vfio as enc
from harness.reference import vfio as model

FIXTURE = Path(__file__).parent / "fixtures" / "vfio_6.1_traces.json"
ONES = (1 << 64) - 1
M1, M2, M4, M3 = (0x100000, 0x100000), (0x200000, 0x10000), (0x22C000, 0x5000), (0x300000, 0x3000)
S1 = [{"op": "map", "iova": i, "size": s, "voff": n << 20}
      for n, (i, s) in enumerate((M1, M2, M4, M3))]
START = {"op": "dirty", "flags": 1}
STOP = {"op": "dirty", "flags": 2}


def run(actions, iommu="v2", profile="6.1"):
    """Events of the actions (setup event dropped)."""
    return model.predict(enc.normalise({"iommu": iommu, "actions": actions}), profile)[1:]


def words(event):
    return dict((i, v) for i, v in event["bitmap"])


def get(iova, size, **kw):
    return {"op": "get", "iova": iova, "size": size, **kw}


# ---------------------------------------------------------------- bitmaps

def test_one_mapping_all_dirty_every_get():
    ev = run(S1 + [START, get(*M1), get(*M1)])
    assert words(ev[-1]) == words(ev[-2]) == {0: ONES, 1: ONES, 2: ONES, 3: ONES}
    assert ev[-1]["guards"] == [model.GUARD, model.GUARD]


def test_unaligned_merge_matches_the_observed_layout():
    # spec VD-22: bits 0-271, 300-304, 512-514
    ev = run(S1 + [START, get(0x100000, 0x205000, bsize=72)])[-1]
    assert ev["result"] == "ok"
    assert words(ev) == {0: ONES, 1: ONES, 2: ONES, 3: ONES,
                         4: 0xFFFF | (0x1F << 44), 8: 0x7}


@pytest.mark.parametrize("profile, expected", [("6.1", 0x0001F0000000FFFF), ("fixed", 0x1F)])
def test_stale_bits_after_shifted_merge(profile, expected):
    ev = run(S1 + [START, get(0x100000, 0x205000, bsize=72), get(*M4)], profile=profile)
    assert words(ev[-1]) == {0: expected}


def test_stale_bits_in_unmap_and_gone_after_restart():
    ev = run(S1 + [START, get(0x100000, 0x205000, bsize=72),
                   {"op": "unmap", "flags": 1, "iova": 0x200000, "size": 0x31000}])
    assert ev[-1]["size"] == 0x15000
    assert words(ev[-1]) == {0: 0xFFFF | (0xFFFF << 44)}        # bits 44-59, not 44-48
    ev = run(S1 + [START, get(0x100000, 0x205000, bsize=72), STOP, START, get(*M4)])
    assert words(ev[-1]) == {0: 0x1F}


def test_shifted_path_ors_the_whole_user_word():
    # M4 at bit 3 of a 0x5a-filled buffer: the whole user word is OR-ed in
    ev = run(S1 + [START, get(0x229000, 0x8000, fill=1)])[-1]
    assert words(ev) == {0: model.FILL_WORD | (0x1F << 3)}


def test_words_without_mapping_untouched_and_whole_word_overwritten():
    ev = run(S1 + [START, get(0x10000000, 0x1000, fill=1), get(*M3, fill=1)])
    assert ev[-2]["bitmap"] == [] and ev[-1]["bitmap"] == [[0, 0x7]]


def test_map_while_tracking_and_unmap_with_bitmap():
    m5 = {"op": "map", "iova": 0x400000, "size": 0x8000, "voff": 4 << 20}
    ev = run(S1 + [START, m5, {"op": "unmap", "flags": 1, "iova": 0x400000, "size": 0x8000},
                   get(0x400000, 0x8000)])
    assert (ev[-2]["result"], ev[-2]["size"], words(ev[-2])) == ("ok", 0x8000, {0: 0xFF})
    assert ev[-1]["result"] == "ok" and ev[-1]["bitmap"] == []   # gone


def test_efault_keeps_mapping_and_size():
    m5 = {"op": "map", "iova": 0x400000, "size": 0x8000, "voff": 4 << 20}
    ev = run(S1 + [START, m5, {"op": "unmap", "flags": 1, "iova": 0x400000, "size": 0x8000, "data": 1},
                   get(0x400000, 0x8000)])
    assert (ev[-2]["result"], ev[-2]["size"]) == ("EFAULT", 0x8000)
    assert words(ev[-1]) == {0: 0xFF}


# ---------------------------------------------------------------- errno order

@pytest.mark.parametrize("action, iommu, errno", [
    ({"op": "dirty", "flags": 0}, "v1", "EACCES"),          # v2 check comes first
    ({"op": "dirty", "flags": 1, "null": 1}, "v2", "EFAULT"),
    ({"op": "dirty", "flags": 1, "argsz": 7}, "v2", "EINVAL"),
    ({"op": "dirty", "flags": 3}, "v2", "EINVAL"),
    ({"op": "dirty", "flags": 8}, "v2", "EINVAL"),
    ({"op": "dirty", "flags": 1}, "none", "EINVAL"),
    ({"op": "dirty", "flags": 2}, "v2", "ok"),
    (get(*M1), "v2", "EINVAL"),                              # not tracking
])
def test_dirty_errnos(action, iommu, errno):
    assert run([action], iommu=iommu)[-1]["result"] == errno


@pytest.mark.parametrize("overrides", [
    {"argsz": 47}, {"pgsize": 8192}, {"pgsize": 0}, {"bsize": 24}, {"bsize": 0},
    {"bsize": 0x10000008}, {"data": 2}, {"iova": 0x100800}, {"size": 0x100800},
    {"iova": 0x180000, "size": 0x80000}, {"iova": 0x100000, "size": 0x80000},
])
def test_get_argument_errors(overrides):
    a = get(*M1)
    a.update(overrides)
    assert run(S1 + [START, a])[-1]["result"] == "EINVAL"


def test_get_wrap_and_end_at_top():
    top = (1 << 64) - 0x1000
    ev = run(S1 + [START, get(top - 0x1000, 0x3000), get(top, 0x1000)])
    assert [e["result"] for e in ev[-2:]] == ["EINVAL", "EINVAL"]


def test_unmap_range_ending_at_top_is_accepted_and_empty():
    ev = run(S1 + [{"op": "unmap", "iova": (1 << 64) - 0x1000, "size": 0x1000}])[-1]
    assert (ev["result"], ev["size"]) == ("ok", 0)


def test_bitmap_max_accepted_and_one_page_more_refused():
    ev = run(S1 + [START, get(0, 1 << 43, bsize=0x10000000),
                   get(0, (1 << 43) + 0x1000, bsize=0x10000000)])
    assert ev[-2]["result"] == "ok" and words(ev[-2])[4] == ONES   # M1 at page 256
    assert ev[-1]["result"] == "EINVAL"


def test_unmap_bitmap_rules():
    ev = run(S1 + [{"op": "unmap", "flags": 1, "iova": M3[0], "size": M3[1]},
                   START,
                   {"op": "unmap", "flags": 3, "iova": 0, "size": 0},
                   {"op": "unmap", "flags": 1, "iova": 0x100000, "size": 0x1000},
                   {"op": "unmap", "flags": 1, "iova": 0x600000, "size": 0x1000}])
    assert [e["result"] for e in ev[-5:]] == ["EINVAL", "ok", "EINVAL", "EINVAL", "ok"]
    assert ev[-1]["size"] == 0 and ev[-1]["bitmap"] == []


def test_v1_unmap_semantics():
    ev = run([S1[0], {"op": "unmap", "iova": 0x101000, "size": 0x1000},
              {"op": "unmap", "iova": 0x100000, "size": 0x1000}], iommu="v1")
    assert [(e["result"], e["size"]) for e in ev[-2:]] == [("ok", 0), ("ok", 0x100000)]


def test_vaddr_invalidate_and_restore():
    ev = run(S1 + [{"op": "unmap", "flags": 4, "iova": 0x200000, "size": 0x31000},
                   {"op": "unmap", "flags": 4, "iova": M2[0], "size": M2[1]},
                   {"op": "map", "flags": 4, "iova": M2[0], "size": M2[1], "voff": 0},
                   {"op": "map", "flags": 4, "iova": M2[0], "size": M2[1], "voff": 0}])
    assert [(e["result"], e.get("size")) for e in ev[-4:]] == [
        ("ok", 0x15000), ("EINVAL", M2[1]), ("ok", None), ("EINVAL", None)]


def test_info_caps_and_argsz_rules():
    ev = run([{"op": "info"}, {"op": "info", "argsz": 16}, {"op": "info", "argsz": 24},
              {"op": "info", "argsz": 15}, S1[0], {"op": "info"}])
    full, a16, a24, a15, _, after = ev
    assert full["argsz"] == 4096 and full["cap_offset"] == 24
    assert [c["id"] for c in full["caps"]] == [2, 3, 1]
    mig = full["caps"][0]
    assert (mig["pgsize_bitmap"], mig["max_dirty_bitmap_size"], mig["hole"]) == (0x1000, 1 << 28, 0)
    assert (a16["argsz"], a16["cap_offset"], a16["flags"]) == (116, model.CAP_OFFSET_SENTINEL, 3)
    assert (a24["argsz"], a24["cap_offset"]) == (116, 0)
    assert a15["result"] == "EINVAL"
    assert after["caps"][1]["avail"] == 65534


def test_dma_model():
    m5w = {"op": "map", "iova": 0x400000, "size": 0x8000, "voff": 4 << 20, "flags": 2}
    m6r = {"op": "map", "iova": 0x500000, "size": 0x8000, "voff": 5 << 20, "flags": 1}
    ev = run([S1[0], m5w, m6r,
              {"op": "dma", "src": 0x400000, "dst": 0x100000},    # write-only source: readable (VT-d)
              {"op": "dma", "src": 0x100000, "dst": 0x500000},    # read-only destination
              {"op": "dma", "src": 0x100000, "dst": 0x700000}])   # unmapped destination
    assert [e["result"] for e in ev[-3:]] == ["match", "mismatch", "mismatch"]


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown vfio profile"):
        model.predict({"iommu": "v2", "actions": []}, "5.8")


# ---------------------------------------------------------------- lib/bitmap.c helpers

def _shift_reference(words_in, shift, nbits):
    """__bitmap_shift_left(dst == src) bit by bit: words below BITS_TO_LONGS(nbits) shifted
    (no masking of the last word), the rest untouched."""
    lim = (nbits + 63) // 64
    value = sum(w << (64 * i) for i, w in enumerate(words_in[:lim]))
    value = (value << shift) & ((1 << (64 * lim)) - 1)
    return [(value >> (64 * i)) & ONES for i in range(lim)] + words_in[lim:]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, ONES), min_size=2, max_size=6), st.integers(1, 63), st.data())
def test_shift_left_matches_bitwise_reference(bm, shift, data):
    nbits = data.draw(st.integers(1, 64 * len(bm)))
    got = list(bm)
    model.bitmap_shift_left_inplace(got, shift, nbits)
    assert got == _shift_reference(list(bm), shift, nbits)


@given(st.integers(0, 400), st.integers(0, 400), st.booleans())
def test_fill_range_matches_bit_loop(start, n, on):
    a = [0x5A5A5A5A5A5A5A5A] * 14
    b = list(a)
    model.bitmap_fill_range(a, start, n, on)
    (model.bitmap_set if on else model.bitmap_clear)(b, start, n)
    assert a == b


def test_verify_bitmap_size():
    assert model.verify_bitmap_size(256, 31) and not model.verify_bitmap_size(256, 32)
    assert model.verify_bitmap_size(0, 8) and model.verify_bitmap_size(1, 0)
    assert model.verify_bitmap_size(1, model.DIRTY_BITMAP_SIZE_MAX + 8)
    assert model.ffs0(0) == 64 and model.shr(0x1000, 64) == 0x1000


# ---------------------------------------------------------------- recorded guest traces

def test_model_predicts_recorded_6_1_traces():
    """Traces observed on Debian 6.1.192 in a real guest (tests/fixtures) agree with
    profile 6.1; the stale-bit scripts among them disagree with profile fixed."""
    fx = json.loads(FIXTURE.read_text())
    stale = 0
    for script, trace in zip(fx["scripts"], fx["traces"]):
        script = enc.normalise(script)
        assert first_divergence(model.predict(script, "6.1"), trace) is None, script
        stale += first_divergence(model.predict(script, "fixed"), trace) is not None
    assert stale >= 3


# ---------------------------------------------------------------- v1 migration state table

def test_v1_state_encodings():
    valid = [s for s in range(8) if model.v1_state_valid(s)]
    assert valid == [0, 1, 2, 3, 4]
    assert model.v1_state_is_error(6) and not model.v1_state_is_error(2)


def test_v1_transitions():
    R, S, RES = model.V1_RUNNING, model.V1_SAVING, model.V1_RESUMING
    assert model.v1_transition(R, R | S) == {("ok", R | S)}              # pre-copy required
    assert model.v1_transition(R | S, S) == {("ok", S)}
    assert model.v1_transition(RES, R) == {("ok", R)}
    assert model.v1_transition(R, RES | R) == {("error", R)}             # invalid encoding
    assert model.v1_transition(R, S | RES) == {("error", R)}             # user cannot set error
    assert model.v1_transition(S | RES, R) == {("error", S | RES)}       # only reset leaves it
    optional = model.v1_transition(S, R)
    assert ("ok", R) in optional and ("error", S) in optional
    walk = model.v1_walk([R | S, S, 0])
    assert [next(iter(w)) for w in walk] == [("ok", 3), ("ok", 2), ("ok", 0)]


# ---------------------------------------------------------------- rules added for mutants

def test_info_argsz_exactly_needed_gets_the_caps():
    ev = run([{"op": "info", "argsz": 116}, {"op": "info", "argsz": 115}])
    assert (ev[0]["argsz"], ev[0]["cap_offset"], len(ev[0]["caps"])) == (116, 24, 3)
    assert (ev[1]["argsz"], ev[1]["cap_offset"], ev[1]["caps"]) == (116, 0, [])


def test_extensions_before_set_iommu_poll_type1_with_null_iommu():
    ev = run([{"op": "ext", "arg": a} for a in (3, 10, 4)], iommu="none")
    assert [e["value"] for e in ev] == [1, 0, 0]
    ev = run([{"op": "ext", "arg": a} for a in (3, 10, 4)])
    assert [e["value"] for e in ev] == [1, 1, 0]


@pytest.mark.parametrize("iova, size", [(0x600800, 0x1000), (0x600001, 0x1000),
                                        (0x600000, 0x2800), (0x600000, 0x2001)])
def test_unaligned_get_and_unmap_in_an_empty_range(iova, size):
    ev = run(S1 + [START, get(iova, size), {"op": "unmap", "iova": iova, "size": size},
                   {"op": "unmap", "iova": iova, "size": size, "flags": 1}])
    assert [e["result"] for e in ev[-3:]] == ["EINVAL"] * 3


def test_unmap_starting_at_a_mapping_end_finds_nothing():
    ev = run(S1 + [{"op": "unmap", "iova": 0x210000, "size": 0x1000},
                   {"op": "unmap", "iova": 0x303000, "size": 0x1000}])
    assert [(e["result"], e["size"]) for e in ev[-2:]] == [("ok", 0), ("ok", 0)]


def test_vaddr_unmap_rolls_back_the_mappings_it_invalidated():
    ev = run(S1 + [{"op": "unmap", "iova": M4[0], "size": M4[1], "flags": 4},
                   {"op": "unmap", "iova": 0x200000, "size": 0x31000, "flags": 4},
                   {"op": "map", "iova": M2[0], "size": M2[1], "voff": 5 << 20, "flags": 4},
                   {"op": "map", "iova": M4[0], "size": M4[1], "voff": 6 << 20, "flags": 4}])
    assert [e["result"] for e in ev[-4:]] == ["ok", "EINVAL", "EINVAL", "ok"]


# ---------------------------------------------------------------- rules added for rule coverage

def test_noiommu_container_fails_set_iommu_and_runs_nothing():
    events = model.predict(enc.normalise({"iommu": "noiommu", "actions": [{"op": "info"}]}))
    assert events == [{"op": "setup", "iommu": 8, "result": "ENODEV", "step": "VFIO_SET_IOMMU"}]


def test_info_chain_offsets_fields_and_untouched_bytes():
    full, exact, short, a16 = run([{"op": "info"}, {"op": "info", "argsz": 116},
                                   {"op": "info", "argsz": 115}, {"op": "info", "argsz": 16}])
    assert [(c["id"], c["next"]) for c in full["caps"]] == [(2, 56), (3, 68), (1, 0)]
    iova = full["caps"][2]
    assert (iova["nr_iovas"], iova["reserved"]) == (2, 0)
    assert full["pad"] == model.INFO_PAD and full["outside"] == []
    assert exact["caps"] == full["caps"] and short["caps"] == [] and a16["caps"] == []


def test_info_faults():
    ev = run([{"op": "info", "arg": 1}, {"op": "info", "arg": 2}, {"op": "info", "argsz": 24, "arg": 2}])
    assert [e["result"] for e in ev] == ["EFAULT", "EFAULT", "ok"]
    assert (ev[2]["argsz"], ev[2]["cap_offset"]) == (116, 0)


def test_map_wrap_and_bad_vaddr_order():
    top = (1 << 64) - 0x1000
    ev = run([S1[0], {"op": "map", "iova": top, "size": 0x2000},
              {"op": "map", "iova": M1[0], "size": 0x2000, "vaddr": top},      # wrap before EEXIST
              {"op": "map", "iova": 0x800000, "size": 0x1000, "vaddr": 0x1000},
              {"op": "map", "iova": 0x800000, "size": 0x1000, "arg": 1}, {"op": "info"}])
    assert [e["result"] for e in ev[1:5]] == ["EINVAL", "EINVAL", "EFAULT", "EFAULT"]
    assert ev[-1]["caps"][1]["avail"] == 65534          # the failed pin gave its entry back


def test_dma_entry_limit_gives_enospc_after_eexist():
    script = enc.normalise({"dma_entry_limit": 1, "actions": [
        S1[0], S1[1], S1[0], {"op": "info"}, {"op": "unmap", "iova": M1[0], "size": M1[1]}, S1[1]]})
    ev = model.predict(script)[1:]
    assert [e["result"] for e in ev] == ["ok", "ENOSPC", "EEXIST", "ok", "ok", "ok"]
    assert ev[3]["caps"][1]["avail"] == 0


def test_rlimit_memlock_counts_live_mappings():
    a = {"op": "map", "iova": 0x100000, "size": 0x8000}
    b = {"op": "map", "iova": 0x200000, "size": 0x9000, "voff": 1 << 20}
    script = enc.normalise({"memlock": 16 * 4096, "actions": [
        a, b, {"op": "unmap", "iova": 0x100000, "size": 0x8000, "child": 1}, b]})
    assert [e["result"] for e in model.predict(script)[1:]] == ["ok", "ENOMEM", "ok", "ok"]


def test_child_unmaps_like_the_parent():
    mine = run(S1 + [START, {"op": "unmap", "flags": 1, "iova": M3[0], "size": M3[1]}])
    child = run(S1 + [START, {"op": "unmap", "flags": 1, "iova": M3[0], "size": M3[1], "child": 1}])
    assert mine == child and child[-1]["size"] == M3[1]


def test_second_copy_from_user_faults():
    ev = run(S1 + [START, get(*M1, arg=2), get(*M1, arg=2, argsz=47),
                   {"op": "unmap", "flags": 1, "iova": M3[0], "size": M3[1], "arg": 2},
                   {"op": "unmap", "iova": M3[0], "size": M3[1], "arg": 2}])
    assert [e["result"] for e in ev[-4:]] == ["EFAULT", "EINVAL", "EFAULT", "ok"]
    assert ev[-2]["size"] == M3[1]


def test_rules_reached_name_the_kernel_branch():
    from harness.reference import rules
    with rules.reached() as seen:
        run([{"op": "dirty", "flags": 1}], iommu="v1")
    assert seen >= {"vfio_iommu_type1.c:vfio_iommu_type1_open:v1",
                    "vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:not-v2-eacces"}
    assert not set(model.UNREACHABLE) & seen


def test_unmap_reports_the_fields_copied_back():
    ev = run(S1 + [{"op": "unmap", "iova": M3[0], "size": M3[1], "argsz": 40, "flags": 0},
                   {"op": "unmap", "iova": M3[0], "size": 0x1000, "argsz": 23}])
    assert [(e["result"], e["argsz"], e["flags"], e["iova"], e["size"]) for e in ev[-2:]] == [
        ("ok", 40, 0, M3[0], M3[1]), ("EINVAL", 23, 0, M3[0], 0x1000)]
