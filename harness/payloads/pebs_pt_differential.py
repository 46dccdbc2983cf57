"""The pebs_pt decoder differential (issue 13 item 2): the same PT streams through perf's
packet decoder compiled from the kernel under test (ptdec), the reference codec
(harness/reference/pebs_pt_codec.py) and libipt (ipt), in the representation of
docs/pebs-pt-suite.md section 1.

perf and ours must agree on every packet field and on where and how a decode stops: a
disagreement there is the kernel's decoder against the model (FAIL). libipt joins on the
streams without block packets (it has no BBP/BIP/BEP): each perf/libipt disagreement is
put in a class by the first packet type and field that differ; classes decided from the
sources (KNOWN_LIBIPT) are findings of libipt 2.0.5, any other class fails the case until
it is decided.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis import seed as hypothesis_seed

from harness.reference import pebs_pt_codec as codec

FIELDS = ("off", "len", "type", "count", "payload")

# perf 6.1 vs libipt 2.0.5 on the same bytes, decided from both sources
# (tests/test_pebs_pt_decoders.py records an example of each).
KNOWN_LIBIPT = {
    "pwre": dict(
        title="libipt 2.0.5 reads PWRE's HW flag from payload bit 3",
        intended="PWRE's HW flag is payload bit 7 (perf intel-pt-pkt-decoder.c: intel_pt_print_pkt "
                 "`payload & 0x80`)",
        observed="libipt maps bit 3 (mask 0x8) to pwre.hw and drops every other bit",
        mechanism="libipt src/pt_packet.c pt_pkt_read_pwre(): pt_pl_pwre_hw_mask 0x8"),
    "pwrx": dict(
        title="libipt 2.0.5 keeps only the PWRX fields it knows",
        intended="perf keeps the whole 5-byte payload",
        observed="libipt drops reserved and unknown bits of PWRX",
        mechanism="libipt src/pt_packet.c pt_pkt_read_pwrx(): only last/deepest/wr fields"),
    "mode_exec": dict(
        title="MODE.Exec with CS.L and CS.D both set, or IF: libipt and perf differ",
        intended="perf refuses CS.L=CS.D=1 (bad_packet) and keeps the whole mode byte as count",
        observed="libipt 2.0.5 reports an unknown mode and has no IF flag",
        mechanism="perf intel_pt_get_mode(); libipt pt_pkt_read_mode_exec()"),
    "mode_tsx": dict(
        title="MODE.TSX with InTX and TXAbort both set",
        intended="perf refuses it (bad_packet)", observed="libipt 2.0.5 accepts it",
        mechanism="perf intel_pt_get_mode(); libipt pt_pkt_read_mode_tsx()"),
    "cbr": dict(
        title="CBR's reserved byte", intended="perf keeps both payload bytes",
        observed="libipt 2.0.5 keeps only the ratio byte",
        mechanism="perf intel_pt_get_cbr(); libipt pt_pkt_read_cbr()"),
    "tma": dict(
        title="TMA reserved bits", intended="perf accepts them", observed="libipt 2.0.5 refuses (bad_packet)",
        mechanism="perf intel_pt_get_tma(); libipt pt_pkt_read_tma() checks the reserved bits"),
    "tnt": dict(
        title="long TNT without a stop bit", intended="perf decodes it as a TNT of 0 bits",
        observed="libipt 2.0.5 refuses it (bad_packet)",
        mechanism="perf intel_pt_get_long_tnt(); libipt pt_pkt_read_tnt_64()"),
    "error:bad_packet/need_more_bytes": dict(
        title="an opcode neither decoder knows, at the end of the stream",
        intended="perf stops with bad_packet at the byte (intel_pt_do_get_packet(): no case)",
        observed="libipt 2.0.5 hands it to the unknown-packet callback, whose size (ipt's callback, "
                 "guests/pebs_pt/ipt/ipt.c) runs past the end: need_more_bytes",
        mechanism="libipt src/pt_packet_decoder.c pt_pkt_decode_unknown()"),
    "cyc": dict(
        title="CYC wider than 64 bits", intended="perf accepts it (its own test vector)",
        observed="libipt 2.0.5 refuses it (bad_packet)",
        mechanism="perf intel_pt_get_cyc(); libipt pt_pkt_read_cyc()"),
}


@dataclass
class Outcome:
    compared: int = 0
    three_way: int = 0
    two_way: int = 0
    per_type: Counter = field(default_factory=Counter)      # packets of each type perf decoded
    against_model: list = field(default_factory=list)       # (stream, field, ours, perf, hex)
    libipt: Counter = field(default_factory=Counter)        # class -> streams
    examples: dict = field(default_factory=dict)


def first_difference(a: dict, b: dict) -> tuple[str, object, object] | None:
    """The first field where two decodes ({"packets", "error"}) differ."""
    for i, (x, y) in enumerate(zip(a["packets"], b["packets"])):
        for name in FIELDS:
            if x.get(name) != y.get(name):
                return f"packet {i} {x.get('type')} {name}", x.get(name), y.get(name)
    if len(a["packets"]) != len(b["packets"]):
        return "packet count", len(a["packets"]), len(b["packets"])
    if a["error"] != b["error"]:
        return "error", a["error"], b["error"]
    return None


def _class(perf: dict, ipt: dict) -> str:
    """A perf/libipt disagreement's class: the perf packet type where they part."""
    for x, y in zip(perf["packets"], ipt["packets"]):
        if any(x.get(n) != y.get(n) for n in FIELDS):
            return x["type"]
    longer = perf["packets"][len(ipt["packets"]):] or ipt["packets"][len(perf["packets"]):]
    if longer:
        return longer[0]["type"]
    kinds = [(d["error"] or {}).get("error", "none") for d in (perf, ipt)]
    return f"error:{kinds[0]}/{kinds[1]}"


def compare(streams: list, perf: list[dict], ipt: list[dict]) -> Outcome:
    """`streams` (pt_streams.Stream), perf's and libipt's answers in order."""
    out = Outcome()
    for n, (s, p, i) in enumerate(zip(streams, perf, ipt)):
        out.compared += 1
        packets, error = codec.decode(s.data)
        ours = {"packets": packets, "error": error}
        theirs = {"packets": p["packets"], "error": p["error"]}
        for packet in p["packets"]:
            out.per_type[packet["type"]] += 1
        found = first_difference(theirs, ours)
        if found:
            out.against_model.append((n, *found, s.data.hex()))
        if s.three_way and not any(t["type"] in ("bbp", "bip", "bep", "bep_ip") for t in p["packets"]):
            out.three_way += 1
            if first_difference(theirs, {"packets": i["packets"], "error": i["error"]}):
                name = _class(theirs, i)
                out.libipt[name] += 1
                out.examples.setdefault(name, s.data.hex()[:96])
        else:
            out.two_way += 1
    return out


def corpus(pt_streams, seed: int, count: int) -> list:
    """`count` streams: a fifth drawn by hypothesis from `pt_streams` (the feature's
    strategy module: valid and malformed), the rest spliced from those by a seeded RNG
    (two or three joined, then truncated or a byte flipped one time in three) — the
    decoders are compared with each other, so any bytes are a fair stream, and splicing
    is a hundred times cheaper than drawing."""
    base: list = []

    @settings(max_examples=max(1, count // 5), database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @hypothesis_seed(seed)
    @given(st.one_of(pt_streams.streams(), pt_streams.malformed()))
    def draw(stream):
        base.append(stream)
    draw()
    rng = random.Random(seed)
    out = list(base)
    while len(out) < count:
        parts = rng.sample(base, rng.randint(2, 3)) if len(base) > 2 else base
        data = b"".join(p.data for p in parts)
        how = rng.randrange(3)
        if how == 0 and len(data) > 1:
            data = data[:rng.randrange(1, len(data))]
        elif how == 1 and data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ rng.randrange(1, 256)]) + data[i + 1:]
        out.append(replace(parts[0], data=data, packets=[], mutation="spliced",
                           three_way=all(p.three_way for p in parts), records_ok=False))
    return out[:count]
