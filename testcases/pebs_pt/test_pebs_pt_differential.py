"""pebs_pt/decoder/*: perf's PT packet decoder, compiled from the kernel under test's own
tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c (ptdec), the reference codec and
libipt decode the same streams (harness/payloads/pebs_pt_differential.py), and perf's own
test vectors (tools/perf/arch/x86/tests/intel-pt-pkt-decoder-test.c of the same tree)
are named cases that both perf's compiled decoder and the codec must pass.
"""
from __future__ import annotations

import re
from functools import lru_cache

import pytest

from harness import missing
from harness.compare import Divergence
from harness.errors import HarnessError, KernelFailure
from harness.kernel import source
from harness.missing import Lack
from harness.payloads import pebs_pt_decoders as decoders
from harness.payloads import pebs_pt_differential as differential
from harness.reference import pebs_pt_codec as codec

import perf_vectors      # noqa: E402 (the case's own folder)
import pt_streams        # noqa: E402

FEATURE = "pebs_pt"
STREAMS = 2_000
FLOOR = 20               # packets of each type perf decoded, at least
BLOCK_PREFIX = {1: bytes([0x02, 0x63, 0x80 | 0x04]), 2: bytes([0x02, 0x63, 0x04])}   # BBP SZ=1 / SZ=0
VECTORS = perf_vectors.vectors()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@lru_cache(maxsize=None)
def _tools(tree):
    built = decoders.build_ptdec(tree)
    return built, decoders.build_ipt()


def _tree(kvmconf_ctx):
    try:
        tree = source.tree_of(kvmconf_ctx.kernel, kvmconf_ctx.workdir)
    except source.NoSource as e:
        missing.skip(Lack("kernel source", str(e)))
    built, ipt = _tools(tree)
    record = kvmconf_ctx.record
    record.data.setdefault("compiled_kernel_files", {}).setdefault(FEATURE, {}).update(built.kernel_files)
    record.write()
    return tree, built.path, ipt


@pytest.mark.parametrize("cid", ["pebs_pt/decoder/differential"])
def test_decoder_differential(cid, kvmconf_ctx, kvmconf_seed, run_record):
    """2,000+ streams (valid, malformed, spliced): perf and the codec agree on every
    packet and on where a decode stops; libipt on the streams without blocks, each of its
    disagreement classes decided (a finding) or the case fails."""
    _, ptdec, ipt = _tree(kvmconf_ctx)
    streams = differential.corpus(pt_streams, kvmconf_seed, STREAMS)
    data = [s.data for s in streams]
    outcome = differential.compare(streams, decoders.run_decoder(ptdec, data, timeout=300),
                                   decoders.run_decoder(ipt, data, timeout=300))
    run_record.add_differential(
        FEATURE, "pt-packet-decoder", outcome.compared,
        ["perf intel-pt-pkt-decoder.c (kernel under test)", "reference codec", "libipt 2.0.5"],
        {"perf-vs-codec": len(outcome.against_model),
         **{f"perf-vs-libipt:{k}": v for k, v in outcome.libipt.items()}},
        counts={"streams_three_way": outcome.three_way, "streams_two_way": outcome.two_way,
                "packets_per_type": dict(sorted(outcome.per_type.items()))})
    for name in outcome.libipt.keys() & differential.KNOWN_LIBIPT.keys():
        known = differential.KNOWN_LIBIPT[name]
        run_record.add_finding(id=f"pebs_pt/libipt-{name.replace(':', '-').replace('/', '-')}", feature=FEATURE,
                               **{**known, "observed": f"{known['observed']} ({outcome.libipt[name]} of "
                                                       f"{outcome.three_way} streams, e.g. {outcome.examples[name]})"})
    thin = {t: outcome.per_type.get(t, 0) for t in pt_streams.KINDS if outcome.per_type.get(t, 0) < FLOOR}
    if thin:
        raise HarnessError(f"the corpus reached too few packets of {thin} (floor {FLOOR}): the strategy's fault")
    if outcome.against_model:
        n, where, theirs, ours, hexed = outcome.against_model[0]
        raise Divergence(n, f"stream {hexed[:80]}", where, ours, theirs,
                         detail=f"{len(outcome.against_model)} of {outcome.compared} streams decode differently "
                                f"in perf's decoder and the codec")
    undecided = {k: v for k, v in outcome.libipt.items() if k not in differential.KNOWN_LIBIPT}
    if undecided:
        raise KernelFailure("perf's decoder and libipt disagree in classes not decided yet: " + ", ".join(
            f"{k} x{v} (e.g. {outcome.examples[k]})" for k, v in undecided.items()))


@pytest.mark.parametrize("vector", VECTORS, ids=[f"pebs_pt/vector/{_slug(v['name'])}" for v in VECTORS])
def test_perf_vector(vector, kvmconf_ctx):
    """One of perf's own test vectors, as the kernel under test's test file states it:
    perf's compiled decoder and the codec both give exactly the expected packet (a vector
    that needs block context gets a BBP in front)."""
    tree, ptdec, _ = _tree(kvmconf_ctx)
    mine = {v["name"]: v for v in _tree_vectors(tree)}
    if vector["name"] not in mine:
        missing.skip(Lack("perf test vector",
                          f"the kernel under test's {perf_vectors.REL_PATH} has no vector {vector['name']!r}"))
    v = mine[vector["name"]]
    prefix = BLOCK_PREFIX.get(v["ctx"], b"")
    data = prefix + v["bytes"]
    shift = len(prefix)
    expected = [{**p, "off": p["off"] + shift} for p in v["packets"]]
    (perf,) = decoders.run_decoder(ptdec, [data], timeout=60)
    ours, error = codec.decode(data)
    for who, got in (("perf's decoder (the kernel under test's)", perf["packets"]), ("the codec", ours)):
        got = got[1:] if prefix else got
        if got != expected:
            raise KernelFailure(f"{vector['name']}: {who} decodes {data.hex()} as {got}, perf's test expects "
                                f"{expected}")
    if perf["error"] is not None or error is not None:
        raise KernelFailure(f"{vector['name']}: a decode error ({perf['error'] or error}) where perf's test "
                            f"expects none")


@lru_cache(maxsize=None)
def _tree_vectors(tree):
    return perf_vectors.vectors(tree)
