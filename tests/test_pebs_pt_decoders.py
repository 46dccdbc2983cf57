"""The pebs_pt suite's foreign decoders (docs/pebs-pt-suite.md section 1): ptdec (the
Debian 6.1 tree's own perf intel-pt-pkt-decoder.c) checked against perf's own test
vectors (tools/perf/arch/x86/tests/intel-pt-pkt-decoder-test.c of the same tree), and
ipt (libipt) against ptdec outside blocks, with the differences between the two
recorded as decisions."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.cache import sha256_file
from harness.errors import DeadlineExceeded, HarnessError
from harness.payloads import pebs_pt_decoders as dec

VECTORS = "tools/perf/arch/x86/tests/intel-pt-pkt-decoder-test.c"
PREFIX = {"no": b"", "blk4": bytes.fromhex("026380"), "blk8": bytes.fromhex("026300")}
# After a packet, this probe shows the block context perf left: a BIP header byte,
# then TIP.PGD bytes (0x01). No context: TNT (1 byte); 4-byte items: BIP of 5 bytes;
# 8-byte items: BIP of 9 bytes.
PROBE = bytes.fromhex("04" + "01" * 8)
PROBE_SHOWS = {("tnt", 1): "no", ("bip", 5): "blk4", ("bip", 9): "blk8"}
CTX = {"0": "no", "INTEL_PT_NO_CTX": "no", "INTEL_PT_BLK_4_CTX": "blk4",
       "INTEL_PT_BLK_8_CTX": "blk8"}


@pytest.fixture(scope="module")
def tree() -> Path:
    from harness.kernel import build
    tree, _digest = build.pristine_tree(build.DEFAULT_SOURCE)
    return Path(tree)


@pytest.fixture(scope="module")
def ptdec(tree):
    return dec.build_ptdec(tree)


@pytest.fixture(scope="module")
def ipt():
    return dec.build_ipt()


def decode(path, *streams: bytes) -> list[dict]:
    return dec.run_decoder(path, list(streams), timeout=20)


def one(path, data: bytes) -> tuple[list[dict], dict | None]:
    res = decode(path, data)[0]
    return res["packets"], res["error"]


def c_int(expr: str) -> int:
    expr = re.sub(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr.strip())
    if not re.fullmatch(r"[0-9a-fA-FxX\s<>|()]+", expr):
        raise ValueError(expr)
    return eval(expr) & (2**64 - 1)   # noqa: S307 (digits, shifts and | only)


def perf_vectors(tree: Path) -> list[dict]:
    """perf's struct test_data entries, parsed from the tree's test file."""
    text = (tree / VECTORS).read_text()
    body = text[text.index("} data[] = {"):]
    body = body[:body.index("\n};")]
    out = []
    pat = re.compile(r"\{\s*(\d+)\s*,\s*\{([^}]*)\}\s*,\s*(\w+)\s*,\s*\{\s*(\w+)\s*,\s*([^,]+?)\s*,"
                     r"\s*([^}]+?)\s*\}\s*,\s*(\w+)\s*,\s*(\d)\s*\}")
    for m in pat.finditer(body):
        n = int(m.group(1))
        if not n:
            continue   # terminator
        data = bytes(c_int(b) for b in m.group(2).split(",") if b.strip())
        out.append({"bytes": data.ljust(n, b"\0"), "ctx": CTX[m.group(3)],
                    "type": m.group(4).removeprefix("INTEL_PT_").lower(),
                    "count": c_int(m.group(5)), "payload": c_int(m.group(6)),
                    "new_ctx": CTX[m.group(7)], "unchanged": m.group(8) == "1"})
    return out


def test_ptdec_records_the_kernel_files_it_compiles(tree, ptdec):
    assert set(ptdec.kernel_files) == {"tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c",
                                       "tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.h"}
    for rel, sha in ptdec.kernel_files.items():
        assert sha256_file(tree / rel) == sha
    assert (ptdec.path.parent / "kernel_files.json").is_file()
    assert dec.build_ptdec(tree).path == ptdec.path   # cached


def test_type_names_come_from_the_tree(tree):
    names = dec.type_names((tree / dec.DECODER_H).read_text())
    assert names[:3] == ["BAD", "PAD", "TNT"] and "BEP_IP" in names and "EVD" in names
    assert "TRACESTOP" in names   # the name is "tracestop" (the contract's list says trace_stop)


def test_perf_vectors_through_ptdec(tree, ptdec):
    """Every entry of perf's own packet-decoder test, as perf's test_one() checks it:
    length, type, count, payload, the new block context, and for the ctx_unchanged
    packets that no context changes. A vector decoded in a block context gets the BBP
    that makes it; the context after is read from the probe's decoding."""
    vectors = perf_vectors(tree)
    text = (tree / VECTORS).read_text()
    entries = text[text.index("} data[] = {"):].split("\n};")[0].count("\n\t{")
    assert len(vectors) == entries - 1 >= 100, (len(vectors), entries)   # all but the terminator
    cases = []   # (stream, index of the packet, vector, context expected after)
    for v in vectors:
        cases.append((PREFIX[v["ctx"]] + v["bytes"] + PROBE, 0 if v["ctx"] == "no" else 1,
                      v, v["new_ctx"]))
        if v["unchanged"] and v["ctx"] == "no" and v["bytes"][0] != 0:
            for ctx in ("blk4", "blk8"):
                cases.append((PREFIX[ctx] + v["bytes"] + PROBE, 1, v, ctx))
    results = decode(ptdec.path, *(c[0] for c in cases))
    bad = []
    for (data, k, v, after), res in zip(cases, results):
        pkts = res["packets"]
        want = {"off": len(data) - len(v["bytes"]) - len(PROBE), "len": len(v["bytes"]),
                "type": v["type"], "count": v["count"], "payload": v["payload"]}
        probe = pkts[k + 1] if len(pkts) > k + 1 else {}
        shows = PROBE_SHOWS.get((probe.get("type"), probe.get("len")))
        if res["error"] or pkts[k] != want or shows != after:
            bad.append((data.hex(), pkts[k:k + 2], res["error"], want, after))
    assert not bad, bad[:5]


def test_bip_outside_a_block(ptdec, ipt):
    """A BIP-shaped byte (0xfc: bits 2:0 = 100b, item 0x1f) is a short TNT outside a
    block (perf: no context; libipt: always), a BIP inside one, a TNT again after BEP
    and after the other packets that reset perf's context (TNT here), not after those
    that keep it (TSC)."""
    tnt6 = {"type": "tnt", "count": 6, "payload": 0x3e << 58}
    for path in (ptdec.path, ipt):
        pkts, err = one(path, bytes.fromhex("fc"))
        assert err is None and [{k: p[k] for k in tnt6} for p in pkts] == [tnt6]
    pkts, err = one(ptdec.path, bytes.fromhex("026380 fc01020304 0233 fc"))
    assert err is None
    assert [(p["type"], p["count"], p["payload"]) for p in pkts] == [
        ("bbp", 1, 0), ("bip", 0x1f, 0x04030201), ("bep", 0, 0), ("tnt", 6, 0x3e << 58)]
    pkts, _ = one(ptdec.path, bytes.fromhex("026300 06 fc"))          # TNT resets
    assert [p["type"] for p in pkts] == ["bbp", "tnt", "tnt"]
    pkts, _ = one(ptdec.path, bytes.fromhex("026300 19010203040506 07 fc0102030405060708"))
    assert [p["type"] for p in pkts] == ["bbp", "tsc", "bip"]        # TSC keeps (07: 1 byte)
    # libipt has no block context: BBP is unknown, the BIP header a TNT
    pkts, err = one(ipt, bytes.fromhex("026380 fc01020304 0233 fc"))
    assert pkts[0] == {"off": 0, "len": 3, "type": "unknown", "count": 0, "payload": 0x63}
    assert {k: pkts[1][k] for k in tnt6} == tnt6 and pkts[1]["off"] == 3


NON_BLOCK = [
    "00", "04", "06", "80", "fe", "02a3020000000000", "02a3ffffffffffff",
    "0d", "2d0102", "4d01020304", "6d010203040506", "8d010203040506", "cd0102030405060708",
    "11", "510a0b0c0d", "01", "c1ffffffffffffffff", "1d", "3d3412", "dd0807060504030201",
    "02430204060810" "0c", "024303040608100c", "9900", "9901", "9902", "9920", "9921", "9922",
    "0283", "02031200", "190102030405060" "7", "5912", "0273010200ff01",
    "03", "0b", "fb", "0702", "fffe", "07010102", "ff" * 8 + "fe"[:2],
    "02c80102030405", "02f3", "0282" * 8, "0223", "02c3880102030405060708",
    "021201020304", "02320102030405060708", "029201020304", "02b20102030405060708",
    "0262", "02e2", "02c20102030405060708", "02220034", "0222005600", "02a2f10d000000",
    "02a2000d000000", "0000000000000000000000", "2d0102" + "00" * 3 + "0d",
]


def test_libipt_agrees_with_perf_outside_blocks(ptdec, ipt):
    streams = [bytes.fromhex(h) for h in NON_BLOCK]
    streams.append(b"".join(streams))   # all of them as one stream
    perf, lib = decode(ptdec.path, *streams), decode(ipt, *streams)
    diff = [(s.hex(), p, q) for s, p, q in zip(streams, perf, lib) if p != q]
    assert not diff, diff[:3]
    assert any(p["packets"] and p["packets"][0]["len"] == 8 and p["packets"][0]["type"] == "pad"
               for p in perf)   # PAD folding (perf's intel_pt_get_packet) is mirrored by ipt


# Where libipt 2.0.5 and perf (6.1) decode the same bytes differently: (bytes, perf, ipt)
# as (type, count, payload) of the first packet, or the error.
DIFFERENCES = [
    ("02a3000000000000", ("tnt", 0, 0xa302 << 48), "bad_packet"),      # long TNT, no stop bit
    ("07" + "01" * 8 + "02", ("cyc", 0, 0x2000000000000000), "bad_packet"),  # 9 ext bytes
    ("ff" * 9 + "0e", ("cyc", 0, 2**64 - 1), "bad_packet"),
    ("9903", "bad_packet", ("mode_exec", 3, 0)),                        # CS.L and CS.D
    ("9923", "bad_packet", ("mode_tsx", 0, 3)),                         # InTX and TXAbort
    ("9904", ("mode_exec", 4, 16), ("mode_exec", 0, 16)),               # IF bit: not in 2.0.5
    ("02031201", ("cbr", 0, 0x0112), ("cbr", 0, 0x12)),                 # reserved CBR byte
    ("0273010201ff01", ("tma", 0x1ff, 0x201), "bad_packet"),            # TMA reserved byte 4
    ("0273010200ff03", ("tma", 0x1ff, 0x201), "bad_packet"),            # TMA byte 6 bit 1
    # PWRE: perf (and the SDM) read HW from bit 7; libipt 2.0.5 from bit 3 (mask 0x8), printed
    # here at perf's bit 7; other reserved bits are dropped by libipt
    ("02228000", ("pwre", 0, 0x0080), ("pwre", 0, 0)),
    ("02220800", ("pwre", 0, 0x0008), ("pwre", 0, 0x0080)),
    ("02220f01", ("pwre", 0, 0x010f), ("pwre", 0, 0x0180)),
    ("02a200020000ff", ("pwrx", 0, 0xff00000200), ("pwrx", 0, 0)),      # PWRX bit 9, byte 6
    ("021301020302", ("cfe", 1, 2), ("unknown", 0, 0x13)),              # CFE: unknown to 2.0.5
]


def _first(res: dict):
    if not res["packets"]:
        return res["error"]["error"]
    p = res["packets"][0]
    return (p["type"], p["count"], p["payload"])


def test_recorded_differences_between_perf_and_libipt(ptdec, ipt):
    streams = [bytes.fromhex(h) for h, _, _ in DIFFERENCES]
    perf, lib = decode(ptdec.path, *streams), decode(ipt, *streams)
    got = [(h, _first(p), _first(q)) for (h, _, _), p, q in zip(DIFFERENCES, perf, lib)]
    assert got == DIFFERENCES


TRUNCATABLE = ["2d0102", "4d01020304", "cd0102030405060708", "02a3020000000000", "9900",
               "190102030405060" "7", "5912", "0273010200ff01", "07010102", "02c80102030405",
               "0282" * 8, "02c3880102030405060708", "021201020304", "02b20102030405060708",
               "02c20102030405060708", "02220134", "02a20102030405", "02031200"]


def test_truncated_packets(ptdec, ipt):
    """Every proper prefix (of at least one byte) of a multi-byte packet after a TIP.PGD
    (0x01): the packet at offset 1 needs more bytes, for both decoders; and perf's block
    packets (BBP, BIP in a block) for ptdec, BBP for libipt's callback."""
    streams = [b"\x01" + bytes.fromhex(h)[:n] for h in TRUNCATABLE
               for n in range(1, len(bytes.fromhex(h)))]
    for path in (ptdec.path, ipt):
        for s, res in zip(streams, decode(path, *streams)):
            assert res["error"] == {"error": "need_more_bytes", "off": 1}, (path.name, s.hex())
            assert [p["type"] for p in res["packets"]] == ["tip_pgd"], (path.name, s.hex())
    for s, off in ((bytes.fromhex("0263"), 0), (bytes.fromhex("026380 04010203"), 3),
                   (bytes.fromhex("026300 0401020304050607"), 3), (bytes.fromhex("02"), 0)):
        res = decode(ptdec.path, s)[0]
        assert res["error"] == {"error": "need_more_bytes", "off": off}, s.hex()
    for s in (bytes.fromhex("0263"), bytes.fromhex("02")):
        assert decode(ipt, s)[0]["error"] == {"error": "need_more_bytes", "off": 0}


def test_bad_packets_and_an_empty_stream(ptdec, ipt):
    for path in (ptdec.path, ipt):
        res = decode(path, bytes.fromhex("0d 02ff"), b"", bytes.fromhex("ad01"))
        assert res[0]["error"] == {"error": "bad_packet", "off": 1}   # ext opcode ff
        assert res[1] == {"stream": 1, "packets": [], "error": None}
        assert res[2]["error"] == {"error": "bad_packet", "off": 0}   # TIP with IPBytes 5


def test_line_format_errors(ptdec, ipt):
    import subprocess
    for path in (ptdec.path, ipt):
        for text in ("X 0 00\n", "D 0 0\n", "D 0 zz\n", "D a 00\n",
                     f"D 0 {'00' * (dec.MAX_STREAM + 1)}\n"):
            done = subprocess.run([str(path)], input=text, capture_output=True, text=True,
                                  timeout=20)
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, text[:20]
        done = subprocess.run([str(path)], input="D 0x1f 04\n\nD 7\n", capture_output=True,
                              text=True, timeout=20)
        assert done.returncode == 0
        assert done.stdout.splitlines()[-1] == '{"op": "done"}'
        assert [ln[:14] for ln in done.stdout.splitlines()[:2]] == ['{"stream": 31,', '{"stream": 7, ']
    with pytest.raises(HarnessError, match="at most"):
        dec.run_decoder(ptdec.path, [b"\0" * (dec.MAX_STREAM + 1)])


def test_run_decoder_deadline_and_failures(tmp_path):
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 30 &\nwait\n")
    slow.chmod(0o755)
    with pytest.raises(DeadlineExceeded, match="within 0.5 s"):
        dec.run_decoder(slow, [b"\0"], timeout=0.5)
    bad = tmp_path / "bad"
    bad.write_text("#!/bin/sh\necho 'it broke' >&2\nexit 3\n")
    bad.chmod(0o755)
    with pytest.raises(HarnessError, match="bad: exit 3: it broke"):
        dec.run_decoder(bad, [b"\0"])


def _fake_tree(tree: Path, root: Path) -> Path:
    d = root / dec.DECODER_DIR
    d.mkdir(parents=True)
    for name in ("intel-pt-pkt-decoder.c", "intel-pt-pkt-decoder.h"):
        shutil.copy(tree / dec.DECODER_DIR / name, d / name)
    return root


def test_a_tree_with_another_packet_kind(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMCONF_CACHE", str(tmp_path / "cache"))
    fake = _fake_tree(tree, tmp_path / "tree")
    h = fake / dec.DECODER_H
    h.write_text(h.read_text().replace("\tINTEL_PT_EVD,\n", "\tINTEL_PT_EVD,\n\tINTEL_PT_NEWKIND,\n"))
    built = dec.build_ptdec(fake)
    assert built.kernel_files[dec.DECODER_H] == sha256_file(h)
    assert "newkind" in dec.names_header(h.read_text())
    assert one(built.path, bytes.fromhex("0d"))[0][0]["type"] == "tip"


def test_build_failure_shows_the_compiler_error(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMCONF_CACHE", str(tmp_path / "cache"))
    fake = _fake_tree(tree, tmp_path / "tree")
    c = fake / dec.DECODER_C
    c.write_text(c.read_text().replace("#include <linux/compiler.h>",
                                       "#include <linux/compiler.h>\n#include <linux/bitops.h>"))
    with pytest.raises(HarnessError) as e:
        dec.build_ptdec(fake)
    msg = str(e.value)
    assert "\n" not in msg and "intel-pt-pkt-decoder.c" in msg and "linux/bitops.h" in msg
