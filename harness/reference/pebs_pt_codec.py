"""Reference codec for Intel PT packets with PEBS blocks (issue 13 item 1).

Packet layer (compared with perf's and libipt's decoders, docs/pebs-pt-suite.md §1):
`decode(data) -> (packets, error | None)` gives perf's `struct intel_pt_pkt` per packet as
`{"off", "len", "type", "count", "payload"}`; `encode(packets) -> bytes` takes the same
dicts (off/len ignored). The rules were written from Linux 6.1's
tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c, function by function; each rule
names the function it mirrors. Where the suite's spec (shared/specs/pebs_pt.md) and the
source disagree the source wins (see the notes marked SOURCE-WINS).

Higher layers (our own, not compared with perf):
`ips(packets)` reconstructs full IPs from IPBytes compression and the last IP
(intel-pt-decoder.c: intel_pt_calc_ip()); `pebs_records(packets)` assembles BBP..BIP..
BEP / BEP.IP+FUP into adaptive PEBS records; `record_layout(cfg)` / `record_size(cfg)`
give the PT block layout and the DS record size for a PEBS_DATA_CFG value.
"""
from __future__ import annotations

MASK64 = (1 << 64) - 1

# intel-pt-pkt-decoder.h: enum intel_pt_pkt_type, without INTEL_PT_, lower case (BAD is
# never a decoded packet). SOURCE-WINS: the enum says INTEL_PT_TRACESTOP, so the name is
# "tracestop" (docs/pebs-pt-suite.md §1 lists it as "trace_stop").
TYPES = (
    "pad", "tnt", "tip_pgd", "tip_pge", "tsc", "tma", "mode_exec", "mode_tsx", "mtc",
    "tip", "fup", "cyc", "vmcs", "psb", "psbend", "cbr", "tracestop", "pip", "ovf", "mnt",
    "ptwrite", "ptwrite_ip", "exstop", "exstop_ip", "mwait", "pwre", "pwrx", "bbp", "bip",
    "bep", "bep_ip", "cfe", "cfe_ip", "evd",
)

# intel-pt-pkt-decoder.h: INTEL_PT_NEED_MORE_BYTES, INTEL_PT_BAD_PACKET
NEED_MORE_BYTES = -1
BAD_PACKET = -2
ERRORS = {NEED_MORE_BYTES: "need_more_bytes", BAD_PACKET: "bad_packet"}

# intel-pt-pkt-decoder.h: enum intel_pt_pkt_ctx
NO_CTX, BLK_4_CTX, BLK_8_CTX = 0, 1, 2
CTX_NAMES = {NO_CTX: "INTEL_PT_NO_CTX", BLK_4_CTX: "INTEL_PT_BLK_4_CTX",
             BLK_8_CTX: "INTEL_PT_BLK_8_CTX"}

PSB_BYTES = b"\x02\x82" * 8          # intel-pt-pkt-decoder.h: INTEL_PT_PSB_STR

# IPBytes code -> number of IP bytes in the packet (intel_pt_get_ip()); 5 and 7 are bad.
IP_BYTES = {0: 0, 1: 2, 2: 4, 3: 6, 4: 6, 6: 8}

# intel_pt_get_mode(): MODE.Exec bits 1:0 -> payload
_EXEC_BITS = {0: 16, 1: 64, 2: 32}


def _le(buf: bytes, start: int, n: int) -> int:
    return int.from_bytes(buf[start:start + n], "little")


def _pkt(type_: str, count: int = 0, payload: int = 0) -> dict:
    return {"type": type_, "count": count, "payload": payload & MASK64}


# --------------------------------------------------------------------------- packet rules
# Each returns (length, packet) or (negative error, None). `buf` holds the bytes from the
# packet's first byte on (at most 16 are looked at), `n` how many bytes remain in the
# stream from there (perf's `len`).

def _short_tnt(byte: int):
    # intel-pt-pkt-decoder.c: intel_pt_get_short_tnt(): the stop bit is the highest set
    # bit; count = bits below it down to bit 1; the byte is shifted until the stop bit
    # is bit 7 and then placed at bit 57, so the stop bit falls off the top (unsigned int
    # arithmetic, the u64 keeps bits 63..57).
    count = 6
    while count and not byte & 0x80:
        byte <<= 1
        count -= 1
    return 1, _pkt("tnt", count, byte << 57)


def _long_tnt(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_long_tnt(): the whole 8 bytes (header 02 a3
    # included) are the payload; shifted left until the stop bit is bit 63 (at most 47
    # times), then once more to drop it. The header bits stay in the low part.
    if n < 8:
        return NEED_MORE_BYTES, None
    payload = _le(buf, 0, 8)
    count = 47
    while count and not payload & (1 << 63):
        payload = (payload << 1) & MASK64
        count -= 1
    return 8, _pkt("tnt", count, payload << 1)


def _pip(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_pip(): 6 payload bytes, raw (NR in bit 0)
    if n < 8:
        return NEED_MORE_BYTES, None
    return 8, _pkt("pip", 0, _le(buf, 2, 6))


def _cbr(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_cbr(): 16 bits from byte 2 (libipt keeps 8)
    if n < 4:
        return NEED_MORE_BYTES, None
    return 4, _pkt("cbr", 0, _le(buf, 2, 2))


def _vmcs(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_vmcs(): count = (52 - 5) >> 3 = 5 bytes
    count = (52 - 5) >> 3
    if n < count + 2:
        return NEED_MORE_BYTES, None
    return count + 2, _pkt("vmcs", count, _le(buf, 2, count))


def _psb(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_psb(): the length test comes before the
    # pattern test, so a short wrong PSB is need_more_bytes, not bad_packet.
    if n < 16:
        return NEED_MORE_BYTES, None
    if bytes(buf[:16]) != PSB_BYTES:
        return BAD_PACKET, None
    return 16, _pkt("psb")


def _tma(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_tma(): payload = CTC (bytes 2-3), count = FC
    # (byte 5 and bit 0 of byte 6); byte 4 and bits 7:1 of byte 6 are not kept.
    if n < 7:
        return NEED_MORE_BYTES, None
    return 7, _pkt("tma", buf[5] | ((buf[6] & 1) << 8), buf[2] | (buf[3] << 8))


def _three_byte(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_3byte() -> intel_pt_get_mnt()
    if n < 3:
        return NEED_MORE_BYTES, None
    if buf[2] != 0x88:
        return BAD_PACKET, None
    if n < 11:
        return NEED_MORE_BYTES, None
    return 11, _pkt("mnt", 0, _le(buf, 3, 8))


def _ptwrite(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_ptwrite(): count = PayloadBytes (bits 6:5),
    # bit 7 = IP; 0 -> 4 bytes, 1 -> 8 bytes, 2/3 bad.
    count = (buf[1] >> 5) & 3
    type_ = "ptwrite_ip" if buf[1] & 0x80 else "ptwrite"
    if count == 0:
        if n < 6:
            return NEED_MORE_BYTES, None
        return 6, _pkt(type_, 0, _le(buf, 2, 4))
    if count == 1:
        if n < 10:
            return NEED_MORE_BYTES, None
        return 10, _pkt(type_, 1, _le(buf, 2, 8))
    return BAD_PACKET, None


def _fixed(type_, total, start=2, nbytes=0, count=0):
    """A packet of a fixed total length whose payload is nbytes from byte `start`
    (intel_pt_get_mwait(), _pwre(), _pwrx(), _bep(), _bep_ip(), _tracestop(), ...)."""
    def rule(buf, n):
        if n < total:
            return NEED_MORE_BYTES, None
        return total, _pkt(type_, count, _le(buf, start, nbytes))
    return rule


def _bbp(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_bbp(): count = SZ (bit 7), payload = type
    # (bits 4:0); bits 6:5 are not kept.
    if n < 3:
        return NEED_MORE_BYTES, None
    return 3, _pkt("bbp", buf[2] >> 7, buf[2] & 0x1F)


def _cfe(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_cfe(): bit 7 of byte 2 = IP, count = type
    # (bits 4:0), payload = vector (byte 3)
    if n < 4:
        return NEED_MORE_BYTES, None
    return 4, _pkt("cfe_ip" if buf[2] & 0x80 else "cfe", buf[2] & 0x1F, buf[3])


def _evd(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_evd(): count = type (bits 5:0 of byte 2),
    # payload = 8 bytes from byte 3
    if n < 11:
        return NEED_MORE_BYTES, None
    return 11, _pkt("evd", buf[2] & 0x3F, _le(buf, 3, 8))


# intel-pt-pkt-decoder.c: intel_pt_get_ext(): second byte -> rule. Rules that do not
# check the length (TraceStop, OVF, PSBEND, EXSTOP) need only the 2 bytes get_ext checked.
_EXT = {
    0xA3: _long_tnt,
    0x43: _pip,
    0x83: _fixed("tracestop", 2),
    0x03: _cbr,
    0xC8: _vmcs,
    0xF3: _fixed("ovf", 2),
    0x82: _psb,
    0x23: _fixed("psbend", 2),
    0x73: _tma,
    0xC3: _three_byte,
    0x62: _fixed("exstop", 2),
    0xE2: _fixed("exstop_ip", 2),
    0xC2: _fixed("mwait", 10, 2, 8),
    0x22: _fixed("pwre", 4, 2, 2),
    0xA2: _fixed("pwrx", 7, 2, 5),
    0x63: _bbp,
    0x33: _fixed("bep", 2),
    0xB3: _fixed("bep_ip", 2),
    0x13: _cfe,
    0x53: _evd,
}


def _ext(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_ext(): PTW is recognised by the low 5 bits
    # before the switch on the whole second byte.
    if n < 2:
        return NEED_MORE_BYTES, None
    if buf[1] & 0x1F == 0x12:
        return _ptwrite(buf, n)
    rule = _EXT.get(buf[1])
    if rule is None:
        return BAD_PACKET, None
    return rule(buf, n)


def _cyc(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_cyc(): 5 bits in the first byte (7:3), bit 2
    # says another byte follows; each further byte gives 7 bits (7:1), bit 0 says another
    # follows. At most 10 bytes: asking for an 11th is bad_packet (tested before the
    # length), a missing byte is need_more_bytes. Bits beyond 64 are lost (u64).
    byte = buf[0]
    payload = byte >> 3
    more = byte & 4
    offs, shift = 1, 5
    while more:
        if offs > 9:
            return BAD_PACKET, None
        if n - 1 < offs:
            return NEED_MORE_BYTES, None
        byte = buf[offs]
        offs += 1
        payload |= (byte >> 1) << shift
        more = byte & 1
        shift += 7
    return offs, _pkt("cyc", 0, payload)


_IP_TYPES = {0x0D: "tip", 0x11: "tip_pge", 0x01: "tip_pgd", 0x1D: "fup"}


def _ip(type_, buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_ip(): count = IPBytes (bits 7:5), payload =
    # the IP bytes as carried (no last-IP reconstruction); 5 and 7 are bad.
    count = buf[0] >> 5
    size = IP_BYTES.get(count)
    if size is None:
        return BAD_PACKET, None
    if n < size + 1:
        return NEED_MORE_BYTES, None
    return size + 1, _pkt(type_, count, _le(buf, 1, size))


def _mode(buf, n):
    # intel-pt-pkt-decoder.c: intel_pt_get_mode(): bits 7:5 of byte 1 select Exec (0) or
    # TSX (1). Exec: count = the whole byte, payload = 16/64/32 from bits 1:0 (3 bad).
    # TSX: payload = bits 1:0 (3 bad), count 0; other bits are not kept.
    if n < 2:
        return NEED_MORE_BYTES, None
    leaf = buf[1] >> 5
    if leaf == 0:
        bits = _EXEC_BITS.get(buf[1] & 3)
        if bits is None:
            return BAD_PACKET, None
        return 2, _pkt("mode_exec", buf[1], bits)
    if leaf == 1:
        if buf[1] & 3 == 3:
            return BAD_PACKET, None
        return 2, _pkt("mode_tsx", 0, buf[1] & 3)
    return BAD_PACKET, None


def _bip(buf, n, size):
    # intel-pt-pkt-decoder.c: intel_pt_get_bip_4() / intel_pt_get_bip_8(): count = item
    # ID (bits 7:3), payload = 4 or 8 bytes
    if n < size + 1:
        return NEED_MORE_BYTES, None
    return size + 1, _pkt("bip", buf[0] >> 3, _le(buf, 1, size))


def _do_get_packet(buf, n, ctx):
    # intel-pt-pkt-decoder.c: intel_pt_do_get_packet(): in a block context a first byte
    # with bits 2:0 = 100b is a BIP before anything else; otherwise the first byte's class
    # decides: bit 0 clear: PAD (0), extended (2) or short TNT; bits 1:0 = 11: CYC; else
    # the low 5 bits: TIP / TIP.PGE / TIP.PGD / FUP, or 0x19 with TSC/MTC/MODE by the byte.
    if n <= 0:
        return NEED_MORE_BYTES, None
    byte = buf[0]
    if ctx in (BLK_4_CTX, BLK_8_CTX) and byte & 7 == 4:
        return _bip(buf, n, 4 if ctx == BLK_4_CTX else 8)
    if not byte & 1:
        if byte == 0:
            return 1, _pkt("pad")                      # intel_pt_get_pad()
        if byte == 2:
            return _ext(buf, n)
        return _short_tnt(byte)
    if byte & 2:
        return _cyc(buf, n)
    low = byte & 0x1F
    if low in _IP_TYPES:
        return _ip(_IP_TYPES[low], buf, n)
    if low == 0x19:
        if byte == 0x99:
            return _mode(buf, n)
        if byte == 0x19:
            # intel-pt-pkt-decoder.c: intel_pt_get_tsc(): 7 bytes
            return (8, _pkt("tsc", 0, _le(buf, 1, 7))) if n >= 8 else (NEED_MORE_BYTES, None)
        if byte == 0x59:
            # intel-pt-pkt-decoder.c: intel_pt_get_mtc(): 1 byte
            return (2, _pkt("mtc", 0, buf[1])) if n >= 2 else (NEED_MORE_BYTES, None)
    return BAD_PACKET, None


# intel-pt-pkt-decoder.c: intel_pt_upd_pkt_ctx(): packets that leave the context alone
# (PAD, TSC, TMA, MTC, FUP, CYC, CBR, MNT, EXSTOP(_IP), PWRE, PWRX, BIP) and BBP, which
# sets it by SZ; every other packet resets it to NO_CTX.
CTX_KEEPING = frozenset({"pad", "tsc", "tma", "mtc", "fup", "cyc", "cbr", "mnt", "exstop",
                         "exstop_ip", "pwre", "pwrx", "bip"})


def upd_ctx(packet: dict, ctx: int) -> int:
    # intel-pt-pkt-decoder.c: intel_pt_upd_pkt_ctx()
    t = packet["type"]
    if t in CTX_KEEPING:
        return ctx
    if t == "bbp":
        return BLK_4_CTX if packet["count"] else BLK_8_CTX
    return NO_CTX


def get_packet(data: bytes, off: int = 0, ctx: int = NO_CTX):
    """One packet at `off` as perf's intel_pt_get_packet() decodes it.

    Returns (ret, packet | None, new ctx): ret is the length (> 0) or NEED_MORE_BYTES /
    BAD_PACKET; the context is updated only on success."""
    n = len(data) - off
    buf = data[off:off + 16]
    ret, pkt = _do_get_packet(buf, n, ctx)
    if ret > 0:
        # intel-pt-pkt-decoder.c: intel_pt_get_packet(): zero bytes after a packet
        # (PADs) are folded into its length while the length is below 8.
        while ret < 8 and n > ret and data[off + ret] == 0:
            ret += 1
        ctx = upd_ctx(pkt, ctx)
    return ret, pkt, ctx


def decode(data: bytes, ctx: int = NO_CTX) -> tuple[list[dict], dict | None]:
    """Packets of `data` from `ctx` (a stream starts in NO_CTX at offset 0), stopping at
    the first error: ([{"off", "len", "type", "count", "payload"}...], error | None)."""
    data = bytes(data)
    packets: list[dict] = []
    off = 0
    while off < len(data):
        ret, pkt, ctx = get_packet(data, off, ctx)
        if ret < 0:
            return packets, {"error": ERRORS[ret], "off": off}
        packets.append({"off": off, "len": ret, **pkt})
        off += ret
    return packets, None


# --------------------------------------------------------------------------- encoder

def _u(value: int, nbytes: int, what: str) -> bytes:
    if not 0 <= value < 1 << (8 * nbytes):
        raise ValueError(f"{what}: payload {value:#x} does not fit in {nbytes} bytes")
    return value.to_bytes(nbytes, "little")


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def _enc_tnt(p: dict, ctx: int) -> bytes:
    # inverse of intel_pt_get_short_tnt() / intel_pt_get_long_tnt(): a short TNT payload
    # has only its `count` top bits, a long TNT payload carries the 02 a3 header below
    # them (shifted left by 48 - count).
    count, payload = p["count"], p["payload"]
    _need(0 <= count <= 47, f"tnt: count {count}")
    low_mask = (1 << (64 - count)) - 1
    bits = payload >> (64 - count)                          # TNT bits, first is MSB
    if 1 <= count <= 6 and not payload & low_mask:
        byte = (1 << (count + 1)) | (bits << 1)
        _need(byte != 2, "tnt: no short form")
        _need(ctx == NO_CTX or byte & 7 != 4,
              f"tnt: short TNT {byte:#04x} would be read as a BIP inside a block")
        return bytes([byte])
    _need(payload & low_mask == (0xA302 << (48 - count)) & low_mask,
          f"tnt: payload {payload:#x} is neither a short nor a long TNT of {count} bits")
    word = 0xA302 | (bits << 16) | (1 << (16 + count))
    return word.to_bytes(8, "little")


_IP_OPC = {v: k for k, v in _IP_TYPES.items()}
_EXT_OPC = {"tracestop": 0x83, "ovf": 0xF3, "psbend": 0x23, "exstop": 0x62,
            "exstop_ip": 0xE2, "bep": 0x33, "bep_ip": 0xB3}


def _enc_cyc(payload: int) -> bytes:
    # inverse of intel_pt_get_cyc()
    _need(0 <= payload <= MASK64, "cyc: payload")
    rest = payload >> 5
    out = [((payload & 0x1F) << 3) | (4 if rest else 0) | 3]
    while rest:
        chunk, rest = rest & 0x7F, rest >> 7
        out.append((chunk << 1) | (1 if rest else 0))
    return bytes(out)


def encode_packet(p: dict, ctx: int = NO_CTX) -> bytes:
    """The bytes of one packet dict decoded in `ctx` (ValueError if there are none)."""
    t, count, payload = p["type"], p.get("count", 0), p.get("payload", 0)
    zero_count = {"pad", "tsc", "mtc", "cyc", "psb", "pip", "cbr", "mnt", "mwait", "pwre",
                  "pwrx", "mode_tsx", *_EXT_OPC}
    if t in zero_count:
        _need(count == 0, f"{t}: count {count} (perf stores 0)")
    if t in _EXT_OPC or t in ("pad", "psb"):
        _need(payload == 0, f"{t}: payload {payload:#x} (perf stores 0)")
    if t == "pad":
        return b"\x00"
    if t == "tnt":
        return _enc_tnt(p, ctx)
    if t in _IP_OPC:
        size = IP_BYTES.get(count)
        _need(size is not None, f"{t}: IPBytes {count}")
        return bytes([(count << 5) | _IP_OPC[t]]) + _u(payload, size, t)
    if t == "tsc":
        return b"\x19" + _u(payload, 7, t)
    if t == "mtc":
        return b"\x59" + _u(payload, 1, t)
    if t == "mode_exec":
        _need(0 <= count < 32 and _EXEC_BITS.get(count & 3) == payload,
              f"mode_exec: count {count:#x} payload {payload}")
        return bytes([0x99, count])
    if t == "mode_tsx":
        _need(0 <= payload <= 2, f"mode_tsx: payload {payload}")
        return bytes([0x99, 0x20 | payload])
    if t == "cyc":
        return _enc_cyc(payload)
    if t in _EXT_OPC:
        return bytes([2, _EXT_OPC[t]])
    if t == "psb":
        return PSB_BYTES
    if t == "pip":
        return b"\x02\x43" + _u(payload, 6, t)
    if t == "cbr":
        return b"\x02\x03" + _u(payload, 2, t)
    if t == "vmcs":
        _need(count == 5, f"vmcs: count {count} (perf stores 5)")
        return b"\x02\xc8" + _u(payload, 5, t)
    if t == "tma":
        _need(0 <= count <= 0x1FF, f"tma: FC {count:#x}")
        ctc = _u(payload, 2, t)
        return b"\x02\x73" + ctc + bytes([0, count & 0xFF, count >> 8])
    if t == "mnt":
        return b"\x02\xc3\x88" + _u(payload, 8, t)
    if t in ("ptwrite", "ptwrite_ip"):
        _need(count in (0, 1), f"{t}: count {count}")
        opc = 0x12 | (count << 5) | (0x80 if t == "ptwrite_ip" else 0)
        return bytes([2, opc]) + _u(payload, 4 if count == 0 else 8, t)
    if t == "mwait":
        return b"\x02\xc2" + _u(payload, 8, t)
    if t == "pwre":
        return b"\x02\x22" + _u(payload, 2, t)
    if t == "pwrx":
        return b"\x02\xa2" + _u(payload, 5, t)
    if t == "bbp":
        _need(count in (0, 1) and 0 <= payload < 32, f"bbp: SZ {count} type {payload}")
        return bytes([2, 0x63, (count << 7) | payload])
    if t == "bip":
        _need(ctx != NO_CTX, "bip: outside a block (no BBP context)")
        _need(0 <= count < 32, f"bip: id {count}")
        return bytes([(count << 3) | 4]) + _u(payload, 4 if ctx == BLK_4_CTX else 8, t)
    if t in ("cfe", "cfe_ip"):
        _need(0 <= count < 32, f"{t}: type {count}")
        return bytes([2, 0x13, count | (0x80 if t == "cfe_ip" else 0)]) + _u(payload, 1, t)
    if t == "evd":
        _need(0 <= count < 64, f"evd: type {count}")
        return bytes([2, 0x53, count]) + _u(payload, 8, t)
    raise ValueError(f"unknown packet type {t!r}")


def encode_parts(packets: list[dict], ctx: int = NO_CTX) -> list[bytes]:
    """Each packet's bytes, the block context carried as the decoder carries it."""
    parts = []
    for i, p in enumerate(packets):
        try:
            parts.append(encode_packet(p, ctx))
        except ValueError as e:
            raise ValueError(f"packet {i}: {e}") from None
        ctx = upd_ctx(p, ctx)
    return parts


def encode(packets: list[dict], ctx: int = NO_CTX) -> bytes:
    """Bytes for packet dicts (off/len ignored) that decode() reads back."""
    return b"".join(encode_parts(packets, ctx))


def canonical(packets: list[dict], ctx: int = NO_CTX) -> list[dict]:
    """What decode(encode(packets)) gives: off/len filled in, and PADs that perf's
    intel_pt_get_packet() folds into the packet before them (while its length is
    below 8) dropped, that packet's len grown by them."""
    parts = encode_parts(packets, ctx)
    out: list[dict] = []
    off = 0
    i = 0
    while i < len(packets):
        p = packets[i]
        length = len(parts[i])
        i += 1
        while length < 8 and i < len(packets) and packets[i]["type"] == "pad":
            length += 1
            i += 1
        out.append({"off": off, "len": length, "type": p["type"],
                    "count": p.get("count", 0), "payload": p.get("payload", 0)})
        off += length
    return out


# --------------------------------------------------------------------------- helpers

def pkt(type_: str, count: int = 0, payload: int = 0) -> dict:
    """A packet dict (off/len left out)."""
    return {"type": type_, "count": count, "payload": payload}


def tnt(bits: str, long: bool = False) -> dict:
    """A TNT packet dict for a string of T/N (first branch first), as perf stores it."""
    count = len(bits)
    value = int("".join("1" if b in "T1" else "0" for b in bits) or "0", 2)
    top = (value << (64 - count)) & MASK64 if count else 0
    if not long:
        _need(1 <= count <= 6, "short tnt: 1..6 bits")
        return pkt("tnt", count, top)
    _need(0 <= count <= 47, "long tnt: 0..47 bits")
    return pkt("tnt", count, top | ((0xA302 << (48 - count)) & ((1 << (64 - count)) - 1)))


# --------------------------------------------------------------------------- IPs

IP_PACKETS = frozenset({"tip", "tip_pge", "tip_pgd", "fup"})


def calc_ip(count: int, payload: int, last_ip: int) -> int:
    # intel-pt-decoder.c: intel_pt_calc_ip(): 1: replace bits 15:0; 2: bits 31:0;
    # 3: 48 bits sign-extended from bit 47; 4: replace bits 47:0; 6: the full IP.
    if count == 1:
        return (last_ip & 0xFFFFFFFFFFFF0000) | payload
    if count == 2:
        return (last_ip & 0xFFFFFFFF00000000) | payload
    if count == 3:
        return payload | 0xFFFF000000000000 if payload & 0x800000000000 else payload
    if count == 4:
        return (last_ip & 0xFFFF000000000000) | payload
    if count == 6:
        return payload
    raise ValueError(f"IPBytes {count} carries no IP")


def ips(packets: list[dict]) -> list[int | None]:
    """The full IP of each packet (None for packets without one and for suppressed
    IPs, IPBytes 0). The last IP starts at 0 and is reset to 0 by PSB
    (intel-pt-decoder.c: intel_pt_psb() / intel_pt_hop_trace(): last_ip = 0); every IP
    packet with an IP updates it (intel_pt_set_last_ip())."""
    last_ip = 0
    out: list[int | None] = []
    for p in packets:
        if p["type"] == "psb":
            last_ip = 0
        if p["type"] in IP_PACKETS and p["count"]:
            try:
                last_ip = calc_ip(p["count"], p["payload"], last_ip)
            except ValueError as e:
                raise ValueError(f"offset {p.get('off', '?')}: {e}") from None
            out.append(last_ip)
        else:
            out.append(None)
    return out


# --------------------------------------------------------------------------- PEBS blocks

# intel-pt-decoder.h: enum intel_pt_blk_type
GP_REGS, PEBS_BASIC, PEBS_MEM, LBR_0, LBR_1, LBR_2, XMM = 1, 4, 5, 8, 9, 10, 16

GPR_NAMES = ("rflags", "rip", "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
BASIC_NAMES = ("ip", "applicable_counters", "timestamp")
MEM_NAMES = ("mem_access_address", "mem_aux_info", "mem_access_latency", "tsx_aux_info")
LBR_PER_BLOCK = 10          # intel-pt.c: intel_pt_add_lbrs(): triples, mask >>= 3 over 32 ids
XMM_ITEMS = 32              # 16 registers x 2 quadwords

# Item IDs a block type defines (intel-pt-decoder.h: struct intel_pt_blk_items names).
# SOURCE-WINS: an LBR block holds 10 from/to/info triples (IDs 0..29); IDs 30/31 are
# stored by intel_pt_bip() but intel_pt_add_lbrs() never uses them, so they are an
# "item beyond its block" here, and 3 LBR blocks carry at most 30 entries.
BLOCK_ITEMS = {
    GP_REGS: len(GPR_NAMES), PEBS_BASIC: len(BASIC_NAMES), PEBS_MEM: len(MEM_NAMES),
    LBR_0: 3 * LBR_PER_BLOCK, LBR_1: 3 * LBR_PER_BLOCK, LBR_2: 3 * LBR_PER_BLOCK,
    XMM: XMM_ITEMS,
}
BLOCK_NAMES = {GP_REGS: "gp_regs", PEBS_BASIC: "pebs_basic", PEBS_MEM: "pebs_mem",
               LBR_0: "lbr_0", LBR_1: "lbr_1", LBR_2: "lbr_2", XMM: "xmm"}
MAX_PT_LBR = 3 * LBR_PER_BLOCK

# arch/x86/include/asm/perf_event.h: PEBS_DATACFG_*
DATACFG_MEMINFO, DATACFG_GP, DATACFG_XMMS, DATACFG_LBRS = 1, 2, 4, 8
DATACFG_LBR_SHIFT = 24

# arch/x86/include/asm/perf_event.h: sizeof struct pebs_basic / pebs_meminfo / pebs_gprs /
# pebs_xmm / lbr_entry
SIZE_BASIC, SIZE_MEMINFO, SIZE_GPRS, SIZE_XMM, SIZE_LBR_ENTRY = 32, 32, 144, 256, 24


def lbr_count(pebs_data_cfg: int) -> int:
    """LBR entries a PEBS_DATA_CFG asks for (0 without PEBS_DATACFG_LBRS).
    ds.c: setup_pebs_adaptive_sample_data(): ((format_size >> 24) & 0xff) + 1."""
    if not pebs_data_cfg & DATACFG_LBRS:
        return 0
    return ((pebs_data_cfg >> DATACFG_LBR_SHIFT) & 0xFF) + 1


def record_size(pebs_data_cfg: int) -> int:
    """Size of the adaptive PEBS record (DS layout) for a PEBS_DATA_CFG value.
    ds.c: adaptive_pebs_record_size_update() adds the groups by the PEBS_DATACFG bits and
    x86_pmu.lbr_nr LBR entries; pebs_update_adaptive_cfg() writes lbr_nr - 1 into bits
    31:24, and setup_pebs_adaptive_sample_data() walks the record with bits 31:24 + 1 and
    checks the end against format_size >> 48: so the size follows from the cfg bits."""
    size = SIZE_BASIC
    if pebs_data_cfg & DATACFG_MEMINFO:
        size += SIZE_MEMINFO
    if pebs_data_cfg & DATACFG_GP:
        size += SIZE_GPRS
    if pebs_data_cfg & DATACFG_XMMS:
        size += SIZE_XMM
    size += lbr_count(pebs_data_cfg) * SIZE_LBR_ENTRY
    return size


def record_layout(pebs_data_cfg: int) -> list[tuple[int, list[int]]]:
    """The PT blocks (block type, item IDs) of a record for a PEBS_DATA_CFG value, in
    the DS record's group order (basic, memory, GPRs, XMM, LBRs). More than 30 LBR
    entries have no PT block in perf 6.1 (LBR_0..LBR_2): ValueError."""
    layout = [(PEBS_BASIC, list(range(len(BASIC_NAMES))))]
    if pebs_data_cfg & DATACFG_MEMINFO:
        layout.append((PEBS_MEM, list(range(len(MEM_NAMES)))))
    if pebs_data_cfg & DATACFG_GP:
        layout.append((GP_REGS, list(range(len(GPR_NAMES)))))
    if pebs_data_cfg & DATACFG_XMMS:
        layout.append((XMM, list(range(XMM_ITEMS))))
    n = lbr_count(pebs_data_cfg)
    if n > MAX_PT_LBR:
        raise ValueError(f"{n} LBR entries: perf 6.1 has LBR blocks 0..2 of "
                         f"{LBR_PER_BLOCK} entries each (at most {MAX_PT_LBR})")
    for k, blk in enumerate((LBR_0, LBR_1, LBR_2)):
        entries = min(max(n - k * LBR_PER_BLOCK, 0), LBR_PER_BLOCK)
        if entries:
            layout.append((blk, list(range(3 * entries))))
    return layout


def record_packets(pebs_data_cfg: int, values: dict[int, dict[int, int]] | None = None,
                   sz4: bool = False, ip: int | None = None, ip_count: int = 6) -> list[dict]:
    """The PT packets of one record: BBP + BIPs per block of record_layout(), then BEP, or
    BEP.IP + FUP(ip_count, ip) when `ip` is given. values[block][id] default to
    distinct numbers."""
    out = []
    for blk, ids in record_layout(pebs_data_cfg):
        out.append(pkt("bbp", 1 if sz4 else 0, blk))
        for i in ids:
            v = (values or {}).get(blk, {}).get(i, (blk << 40) | (i << 8) | 0x5A)
            out.append(pkt("bip", i, v & (0xFFFFFFFF if sz4 else MASK64)))
    if ip is None:
        out.append(pkt("bep"))
    else:
        out += [pkt("bep_ip"), pkt("fup", ip_count, ip)]
    return out


def _cfg_of(blocks: dict, lbr: list) -> int:
    cfg = 0
    if PEBS_MEM in blocks:
        cfg |= DATACFG_MEMINFO
    if GP_REGS in blocks:
        cfg |= DATACFG_GP
    if XMM in blocks:
        cfg |= DATACFG_XMMS
    if lbr:
        cfg |= DATACFG_LBRS | ((len(lbr) - 1) << DATACFG_LBR_SHIFT)
    return cfg


def _finish(rec: dict, blocks: dict, off) -> dict:
    for blk, items in blocks.items():
        want = BLOCK_ITEMS[blk]
        if blk in (LBR_0, LBR_1, LBR_2):
            if set(items) != set(range(len(items))) or len(items) % 3:
                raise ValueError(f"offset {off}: LBR block {blk} items {sorted(items)} "
                                 "are not whole from/to/info entries from ID 0")
        elif len(items) != want:
            missing = sorted(set(range(want)) - set(items))
            raise ValueError(f"offset {off}: block {BLOCK_NAMES[blk]} lacks items {missing}")
    if PEBS_BASIC not in blocks:
        raise ValueError(f"offset {off}: record without a PEBS basic block")
    lbr = []
    for k, blk in enumerate((LBR_0, LBR_1, LBR_2)):
        items = blocks.get(blk)
        if items is None:
            continue
        if k and len(lbr) != k * LBR_PER_BLOCK:
            raise ValueError(f"offset {off}: LBR block {blk} after a partial LBR block")
        lbr += [(items[3 * e], items[3 * e + 1], items[3 * e + 2])
                for e in range(len(items) // 3)]
    b = blocks[PEBS_BASIC]
    rec["basic"] = {name: b[i] for i, name in enumerate(BASIC_NAMES)}
    rec["mem"] = ({name: blocks[PEBS_MEM][i] for i, name in enumerate(MEM_NAMES)}
                  if PEBS_MEM in blocks else None)
    rec["gprs"] = ({name: blocks[GP_REGS][i] for i, name in enumerate(GPR_NAMES)}
                   if GP_REGS in blocks else None)
    rec["xmm"] = [blocks[XMM][i] for i in range(XMM_ITEMS)] if XMM in blocks else None
    rec["lbr"] = lbr
    rec["pebs_data_cfg"] = _cfg_of(blocks, lbr)
    rec["size"] = record_size(rec["pebs_data_cfg"])
    return rec


def pebs_records(packets: list[dict]) -> list[dict]:
    """Adaptive PEBS records from decoded packets.

    A record is one or more blocks (BBP then BIPs; a BBP met in a block context continues
    the record: intel-pt-decoder.c: intel_pt_bbp() clears the items only when the previous
    context was NO_CTX) ended by BEP, or by BEP.IP and the FUP after it (PADs skipped:
    intel_pt_get_next_packet()). Packets that keep perf's block context (timing, PAD, FUP,
    ...) may sit inside a record; one that resets it (TNT, TIP, PSB, ...) before the BEP
    leaves the record unterminated. Each record:
    {"off", "end": "bep" | "bep_ip", "ip": FUP IP | None, "sz4": SZ, "blocks": [types],
     "basic", "mem", "gprs", "xmm", "lbr": [(from, to, info)], "pebs_data_cfg", "size"}.
    ValueError (naming the offset) for a BIP outside a block, an unknown block type, an
    item ID beyond its block, a duplicate block or item, an unterminated record, an
    incomplete block, a BEP.IP without its FUP."""
    full_ips = ips(packets)
    records: list[dict] = []
    rec = None
    blocks: dict[int, dict[int, int]] = {}
    cur = None
    ctx = NO_CTX
    i = 0
    while i < len(packets):
        p = packets[i]
        off = p.get("off", f"packet {i}")
        t = p["type"]
        if t == "bbp":
            blk = p["payload"]
            if blk not in BLOCK_ITEMS:
                raise ValueError(f"offset {off}: unknown block type {blk:#x}")
            if ctx == NO_CTX:
                rec = {"off": p.get("off"), "sz4": bool(p["count"]), "blocks": []}
                blocks = {}
            elif bool(p["count"]) != rec["sz4"]:
                raise ValueError(f"offset {off}: BBP SZ changes inside a record")
            if blk in blocks:
                raise ValueError(f"offset {off}: duplicate block type {blk:#x}")
            blocks[blk] = {}
            cur = blk
            rec["blocks"].append(blk)
        elif t == "bip":
            if ctx == NO_CTX:
                raise ValueError(f"offset {off}: BIP outside a block")
            if p["count"] >= BLOCK_ITEMS[cur]:
                raise ValueError(f"offset {off}: item ID {p['count']} beyond block "
                                 f"{BLOCK_NAMES[cur]} ({BLOCK_ITEMS[cur]} items)")
            if p["count"] in blocks[cur]:
                raise ValueError(f"offset {off}: duplicate item {p['count']} in block "
                                 f"{BLOCK_NAMES[cur]}")
            blocks[cur][p["count"]] = p["payload"]
        elif t in ("bep", "bep_ip"):
            if ctx == NO_CTX:
                raise ValueError(f"offset {off}: {t.upper()} outside a block")
            rec["end"] = t
            rec["ip"] = None
            if t == "bep_ip":
                j = i + 1
                while j < len(packets) and packets[j]["type"] == "pad":
                    j += 1
                if j >= len(packets) or packets[j]["type"] != "fup":
                    raise ValueError(f"offset {off}: BEP.IP without the FUP after it")
                rec["ip"] = full_ips[j]
            records.append(_finish(rec, blocks, rec["off"]))
            rec, cur = None, None
        elif ctx != NO_CTX and t not in CTX_KEEPING:
            raise ValueError(f"offset {off}: {t} inside a record (no BEP)")
        ctx = upd_ctx(p, ctx)
        i += 1
    if rec is not None:
        raise ValueError(f"offset {rec['off']}: record without BEP at the end")
    return records
