"""Hypothesis strategies of PT packet streams for the pebs_pt differential (issue 13).

`streams()` draws a valid stream: a list of segments (PSB+ sequences, TIP/TIP.PGE/
TIP.PGD/FUP with every IPBytes form, short and long TNT, timing packets, the other
packets perf 6.1 decodes, PADs, and PEBS records as BBP (SZ 0/1) blocks of every block
type with their BIPs, ended by BEP or BEP.IP + FUP), encoded by the reference codec's
encoder. `malformed()` draws a valid stream and mutates it: truncated at a random
point, one byte flipped, a BIP-shaped byte (bits 2:0 = 100b) put where there is no block
context, or an unknown extended opcode inserted at a packet boundary.

Each draw is a `Stream`: `data` (the bytes), `packets` (for a valid stream exactly what
perf's decoder must give, i.e. `pebs_pt_codec.canonical()` of what was encoded; for a
malformed one, the valid stream it was made from), `mutation` (None for a valid stream),
`three_way` (no packet kind libipt 2.0.5 lacks: compare perf, ours and libipt; else
perf and ours), `records_ok` (pebs_records() must accept it: False when an odd block
with an unknown type or item IDs was drawn).

The weights make 2,000 streams hold every kind of `KINDS` at least ~20 times
(tests/test_pebs_pt_codec.py: test_strategy_coverage measures it with `counts()`).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from hypothesis import strategies as st

from harness.reference import pebs_pt_codec as codec
from harness.reference.pebs_pt_codec import pkt

# Every packet type perf 6.1 decodes (intel-pt-pkt-decoder.h: enum intel_pt_pkt_type).
KINDS = list(codec.TYPES)

# Kinds libipt 2.0.5 has no packet type for (intel-pt.h: enum pt_packet_type): BBP/BEP/
# CFE/EVD go to its unknown-packet callback, BIP is read as TNT.
NOT_IN_LIBIPT = frozenset({"bbp", "bip", "bep", "bep_ip", "cfe", "cfe_ip", "evd"})


@dataclass(frozen=True)
class Stream:
    data: bytes
    packets: list
    mutation: str | None = None
    three_way: bool = True
    records_ok: bool = True


def counts(streams) -> dict[str, int]:
    """How many packets of each kind of KINDS the streams' `packets` hold."""
    out = {k: 0 for k in KINDS}
    for s in streams:
        for p in s.packets:
            out[p["type"]] += 1
    return out


# --------------------------------------------------------------------------- packets
# Strategies are built once here (hypothesis validates a strategy object the first time
# it is drawn from; building them inside composites costs that on every draw).

@functools.lru_cache(maxsize=None)
def _uint(nbytes: int):
    top = (1 << (8 * nbytes)) - 1
    return st.one_of(st.integers(0, top), st.sampled_from([0, 1, top]))


_EXEC = {0: 16, 1: 64, 2: 32}
_IP_COUNTS = sorted(codec.IP_BYTES)
_SEXT48 = st.one_of(st.integers(0xFFFF80000000, 0xFFFFFFFFFFFF), st.integers(0, 0x7FFFFFFFFFFF))


@functools.lru_cache(maxsize=None)
def ip_packet(types=("tip", "tip_pge", "tip_pgd", "fup")):
    """TIP/TIP.PGE/TIP.PGD/FUP with any IPBytes form (payload as carried; the
    sign-extended 48-bit form with both halves likely)."""
    def one(t, count):
        size = codec.IP_BYTES[count]
        payload = _SEXT48 if count == 3 else (_uint(size) if size else st.just(0))
        return payload.map(lambda v: pkt(t, count, v))
    return st.one_of(*[one(t, c) for t in types for c in _IP_COUNTS])


TNT = st.one_of(st.text("TN", min_size=1, max_size=6).map(codec.tnt),
                st.text("TN", min_size=0, max_size=47).map(lambda b: codec.tnt(b, long=True)))


def _p(t, payload=None, count=None):
    """Strategy of a `t` packet with payload/count strategies (or constants)."""
    return st.tuples(payload if payload is not None else st.just(0),
                     count if count is not None else st.just(0)) \
        .map(lambda pc: pkt(t, pc[1], pc[0]))


# Packets that keep perf's block context (intel_pt_upd_pkt_ctx()): may sit in a record.
TIMING = st.one_of(
    _p("tsc", _uint(7)), _p("mtc", _uint(1)),
    _p("cyc", st.one_of(st.integers(0, 0x1F), st.integers(0, 0xFFFFF),
                        st.integers(0, codec.MASK64))),
    _p("tma", _uint(2), st.integers(0, 0x1FF)), _p("cbr", _uint(2)), _p("mnt", _uint(8)),
    _p("exstop"), _p("exstop_ip"), _p("pwre", _uint(2)), _p("pwrx", _uint(5)))

MODE_EXEC = st.integers(0, 31).filter(lambda b: b & 3 != 3).map(
    lambda b: pkt("mode_exec", b, _EXEC[b & 3]))
MODE_TSX = _p("mode_tsx", st.integers(0, 2))
PIP = _p("pip", _uint(6))
VMCS = _p("vmcs", _uint(5), st.just(5))

OTHER = st.one_of(
    MODE_EXEC, MODE_TSX, PIP, VMCS, _p("ovf"), _p("tracestop"),
    _p("ptwrite", _uint(4)), _p("ptwrite", _uint(8), st.just(1)),
    _p("ptwrite_ip", _uint(4)), _p("ptwrite_ip", _uint(8), st.just(1)),
    _p("mwait", _uint(8)), _p("cfe", _uint(1), st.integers(0, 31)),
    _p("cfe_ip", _uint(1), st.integers(0, 31)), _p("evd", _uint(8), st.integers(0, 63)))

PAD = st.just(pkt("pad"))

# PSB, the status packets of a PSB+ (TSC, TMA, CBR, MODE, PIP, VMCS, FUP, MNT, PAD) in
# some order, PSBEND.
PSB_PLUS = st.lists(st.one_of(TIMING, ip_packet(("fup",)), MODE_EXEC, MODE_TSX, PIP, VMCS, PAD),
                    max_size=6).map(lambda inner: [pkt("psb"), *inner, pkt("psbend")])

_LBR_N = st.one_of(st.integers(1, 10), st.integers(11, codec.MAX_PT_LBR))
_EXTRA = st.lists(st.tuples(st.integers(1, 1 << 16), st.one_of(TIMING, PAD)), max_size=2)


@st.composite
def pebs_record(draw):
    """One PEBS record: the blocks of record_layout() for a drawn PEBS_DATA_CFG (every
    block type), BBP SZ 0 or 1, a few context-keeping packets between items, BEP or
    BEP.IP + FUP (any IPBytes form)."""
    cfg = draw(st.integers(0, 15))
    if cfg & codec.DATACFG_LBRS:
        cfg |= (draw(_LBR_N) - 1) << codec.DATACFG_LBR_SHIFT
    sz4 = draw(st.booleans())
    mask = 0xFFFFFFFF if sz4 else codec.MASK64
    values = None
    seed = draw(st.integers(0, 2**32 - 1))
    if seed & 1:        # item values from one drawn seed (one draw, not one per item)
        rng = random.Random(seed)
        values = {blk: {i: rng.choice((0, mask, rng.getrandbits(64) & mask)) for i in ids}
                  for blk, ids in codec.record_layout(cfg)}
    end_ip = draw(st.one_of(st.none(), ip_packet(("fup",))))
    out = codec.record_packets(cfg, values, sz4=sz4)[:-1]          # without the BEP
    for at, p in sorted(draw(_EXTRA), key=lambda e: -e[0]):
        out.insert(1 + at % (len(out) - 1) if len(out) > 1 else 1, p)
    out += [pkt("bep")] if end_ip is None else [pkt("bep_ip"), end_ip]
    return out


# A block the packet layer decodes but pebs_records() refuses: any type 0..31 (unknown
# ones included), any item IDs 0..31, BEP or BEP.IP (without its FUP).
ODD_BLOCK = st.tuples(
    st.integers(0, 1), st.integers(0, 31),
    st.lists(st.tuples(st.integers(0, 31), _uint(8)), max_size=4),
    st.sampled_from(["bep", "bep_ip"])).map(
    lambda x: [pkt("bbp", x[0], x[1]),
               *[pkt("bip", i, v & (0xFFFFFFFF if x[0] else codec.MASK64)) for i, v in x[2]],
               pkt(x[3])])


def _one(s):
    return s.map(lambda p: [p])


# Segments and their weights (by repetition in the one_of).
SEGMENTS = [
    (PSB_PLUS, 2),
    (_one(ip_packet()), 3),
    (_one(TNT), 2),
    (_one(TIMING), 3),
    (_one(OTHER), 4),
    (st.lists(PAD, min_size=1, max_size=9), 1),
    (pebs_record(), 2),
    (ODD_BLOCK, 1),
]
# (not st.one_of: it flattens nested one_ofs into their leaves and picks a leaf
# uniformly, so the ip_packet() forms would outweigh a PEBS record 24 to 1)
_WEIGHTED = st.sampled_from([s for s, w in SEGMENTS for _ in range(w)])


@st.composite
def segment(draw):
    return draw(draw(_WEIGHTED))


SEGMENT = segment()


@functools.lru_cache(maxsize=None)
def _segments(max_segments: int):
    return st.lists(SEGMENT, min_size=1, max_size=max_segments)


@st.composite
def streams(draw, max_segments: int = 14):
    """A valid stream (see the module doc)."""
    return _stream([p for part in draw(_segments(max_segments)) for p in part])


def _stream(packets: list) -> Stream:
    data = codec.encode(packets)
    expect = codec.canonical(packets)
    kinds = {p["type"] for p in expect}
    try:
        codec.pebs_records(expect)
        ok = True
    except ValueError:
        ok = False
    return Stream(data=data, packets=expect, three_way=not kinds & NOT_IN_LIBIPT,
                  records_ok=ok)


# --------------------------------------------------------------------------- malformed

# intel-pt-pkt-decoder.c: intel_pt_get_ext(): second bytes it knows (PTW by bits 4:0).
_KNOWN_EXT = {0xA3, 0x43, 0x83, 0x03, 0xC8, 0xF3, 0x82, 0x23, 0x73, 0xC3, 0x62, 0xE2,
              0xC2, 0x22, 0xA2, 0x63, 0x33, 0xB3, 0x13, 0x53}
UNKNOWN_EXT = sorted(b for b in range(256) if b not in _KNOWN_EXT and b & 0x1F != 0x12)


def _no_ctx_boundaries(packets: list) -> list[int]:
    """Offsets between packets where perf's block context is NO_CTX."""
    out, ctx = [0], codec.NO_CTX
    for p in packets:
        ctx = codec.upd_ctx(p, ctx)
        if ctx == codec.NO_CTX:
            out.append(p["off"] + p["len"])
    return out


_VALID = streams()
_HOW = st.sampled_from(["truncate", "truncate", "flip", "bip_outside", "unknown_ext"])
_UNKNOWN_EXT = st.sampled_from(UNKNOWN_EXT)


@st.composite
def malformed(draw):
    """A valid stream mutated: truncate / flip / bip_outside / unknown_ext."""
    base = draw(_VALID)
    data, packets = base.data, base.packets
    how = draw(_HOW)
    if how == "truncate" and len(data) > 1:
        # mostly inside a packet (need_more_bytes expected), sometimes anywhere
        p = draw(st.sampled_from([p for p in packets if p["len"] > 1] or packets))
        cut = draw(st.integers(p["off"] + 1, p["off"] + p["len"] - 1)) if p["len"] > 1 \
            else draw(st.integers(1, len(data) - 1))
        new = data[:max(1, cut)]
    elif how == "flip" or how == "truncate":
        how = "flip"
        i = draw(st.integers(0, len(data) - 1))
        new = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    else:
        at = draw(st.sampled_from(_no_ctx_boundaries(packets)))
        if how == "bip_outside":
            ins = bytes([(draw(st.integers(0, 31)) << 3) | 4]) + draw(st.binary(
                min_size=0, max_size=8))
        else:
            ins = bytes([2, draw(_UNKNOWN_EXT)])
        new = data[:at] + ins + data[at:]
    return Stream(data=new, packets=packets, mutation=how, three_way=base.three_way,
                  records_ok=False)
