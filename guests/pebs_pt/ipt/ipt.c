/* ipt: Intel's libipt packet decoder (pt_pkt_decoder) speaking the decoder
 * programs' line format of docs/pebs-pt-suite.md section 1 (shared with ptdec:
 * ../ptdec/declines.h).
 *
 * Each stream: pt_pkt_sync_set(0), then pt_pkt_next() until the end of the buffer.
 * Each libipt packet is mapped to perf's struct intel_pt_pkt representation
 * {"type", "count", "payload"} where the kind has a 1:1 perf counterpart (see
 * map_packet(): what perf stores is rebuilt from libipt's fields; bits libipt does
 * not keep cannot be rebuilt and are noted there). Kinds libipt 2.0.5 does not know
 * (BBP, BEP, BEP.IP, CFE, EVD: perf's ext opcodes 0x63 0x33 0xb3 0x13 0x53) reach
 * the unknown-packet callback, which sizes them so decoding can go on, and print as
 * {"type": "unknown", "count": 0, "payload": <ext opcode byte>}. libipt has no
 * block context: a BIP header byte (bits 2:0 = 100b) inside a block is read as a
 * short TNT, and its payload bytes as whatever they encode.
 *
 * Errors end the stream at the offset of the packet that failed:
 *   -pte_eos before the end of the buffer -> need_more_bytes (-pte_eos exactly at
 *            the end is the normal end of the stream);
 *   -pte_bad_opc, -pte_bad_packet         -> bad_packet.
 * Any other libipt error is a bug here: message on stderr, exit 1.
 *
 * PADs: perf's intel_pt_get_packet() folds up to 8 - n zero bytes after an n-byte
 * packet into that packet's length (its callers skip PADs that way); libipt returns
 * every PAD as a 1-byte packet. So that lengths and packet lists compare, ipt folds
 * libipt's PAD packets the same way (each folded PAD is still decoded by libipt);
 * "-r" prints libipt's own packet boundaries instead.
 *
 * What libipt 2.0.5 does differently from perf's decoder (6.1) on the same bytes:
 *  - long TNT with an all-zero payload (no stop bit): libipt bad_packet; perf a TNT
 *    with count 0;
 *  - MODE.Exec with CS.L and CS.D both set: libipt decodes it (ptem_unknown, printed
 *    with payload 0); perf bad_packet.  MODE.TSX with InTX and TXAbort both set:
 *    libipt decodes it; perf bad_packet;
 *  - MODE.Exec count: perf stores the whole mode byte (IF bit 2, reserved bits 4:3);
 *    libipt 2.0.5 keeps only CS.L and CS.D, so count is csl | csd << 1 here;
 *  - CBR: perf's payload is the 16 bits after the opcode (ratio and the reserved
 *    byte); libipt keeps the ratio byte only;
 *  - TMA: libipt rejects reserved bits (byte 4 non-zero, byte 6 bits 7:1) as
 *    bad_packet; perf ignores them;
 *  - CYC: libipt rejects a value wider than 64 bits (9 extension bytes already:
 *    5 + 9 * 7 bits); perf accepts up to 9 extension bytes;
 *  - PWRE / PWRX: perf's payload is the raw 2 / 5 payload bytes; libipt keeps only
 *    the fields it knows (PWRE: hw, sub-C-state 11:8, C-state 15:12; PWRX: deepest
 *    3:0, last 7:4, wake reasons bits 8, 10, 11), rebuilt here, other bits 0;
 *  - PWRE HW flag: perf (intel_pt_pkt_desc: payload & 0x80) and the SDM have it in
 *    bit 7 of the first payload byte; libipt 2.0.5 reads it from bit 3
 *    (pt_pl_pwre_hw_mask 0x8). ipt prints libipt's flag at perf's bit 7, so
 *    02 22 08 00 is perf 0x0008, ipt 0x0080; 02 22 80 00 is perf 0x0080, ipt 0;
 *  - CFE and EVD (perf 6.1 decodes them) are unknown to libipt 2.0.5.
 */
#include "declines.h"

#include <intel-pt.h>

static int raw_mode;

/* Sizes of the ext packets perf knows and libipt 2.0.5 does not, so libipt can
 * step over them (pt_pkt_read_unknown checks the size against the buffer end). */
static int unknown_cb(struct pt_packet_unknown *unknown, const struct pt_config *config,
		      const uint8_t *pos, void *context)
{
	(void)unknown;
	(void)context;
	if (pos + 2 > config->end)
		return -pte_eos;
	if (pos[0] != 0x02)
		return -pte_bad_opc;
	switch (pos[1]) {
	case 0x63:		/* BBP */
		return 3;
	case 0x33:		/* BEP */
	case 0xb3:		/* BEP.IP */
		return 2;
	case 0x13:		/* CFE */
		return 4;
	case 0x53:		/* EVD */
		return 11;
	default:
		return -pte_bad_opc;
	}
}

struct mapped {
	const char *type;
	long long count;
	uint64_t payload;
};

static int map_packet(const struct pt_packet *p, struct mapped *m)
{
	m->count = 0;
	m->payload = 0;
	switch (p->type) {
	case ppt_pad:
		m->type = "pad";
		break;
	case ppt_psb:
		m->type = "psb";
		break;
	case ppt_psbend:
		m->type = "psbend";
		break;
	case ppt_stop:
		m->type = "tracestop";
		break;
	case ppt_ovf:
		m->type = "ovf";
		break;
	case ppt_fup:
	case ppt_tip:
	case ppt_tip_pge:
	case ppt_tip_pgd:
		/* perf: count = the IPBytes code, payload = the raw (zero-extended) IP
		 * bytes; libipt's ipc enum values are the IPBytes codes, ip the raw bytes */
		m->type = p->type == ppt_fup ? "fup" : p->type == ppt_tip ? "tip" :
			  p->type == ppt_tip_pge ? "tip_pge" : "tip_pgd";
		m->count = p->payload.ip.ipc;
		m->payload = p->payload.ip.ip;
		break;
	case ppt_tnt_8:
		/* libipt: bit_size TNT bits, oldest at bit bit_size - 1, stop bit removed.
		 * perf: the same bits left-aligned at bit 63 (the header bit 0 shifted out) */
		m->type = "tnt";
		m->count = p->payload.tnt.bit_size;
		m->payload = p->payload.tnt.payload << (64 - p->payload.tnt.bit_size);
		break;
	case ppt_tnt_64:
		/* perf shifts the whole little-endian 8 bytes (02 a3 header included) left
		 * until the stop bit leaves bit 63, then once more: the TNT bits left-aligned
		 * and the header 0xa302 below them. The header bytes are the packet's fixed
		 * opcode, so this is perf's payload exactly. */
		m->type = "tnt";
		m->count = p->payload.tnt.bit_size;
		m->payload = (p->payload.tnt.payload << (64 - p->payload.tnt.bit_size)) |
			     (0xa302ULL << (48 - p->payload.tnt.bit_size));
		break;
	case ppt_mode:
		if (p->payload.mode.leaf == pt_mol_exec) {
			const struct pt_packet_mode_exec *e = &p->payload.mode.bits.exec;

			m->type = "mode_exec";
			/* perf: count = the whole mode byte (IF bit 2 too): libipt 2.0.5
			 * keeps CS.L (bit 0) and CS.D (bit 1) only */
			m->count = e->csl | e->csd << 1;
			m->payload = e->csl ? (e->csd ? 0 : 64) : (e->csd ? 32 : 16);
		} else {
			m->type = "mode_tsx";
			m->payload = p->payload.mode.bits.tsx.intx |
				     p->payload.mode.bits.tsx.abrt << 1;
		}
		break;
	case ppt_pip:
		/* perf: the raw 6 payload bytes (NR in bit 0, CR3[51:5] in bits 47:1);
		 * libipt: cr3 = (raw >> 1) << 5, nr = raw & 1 */
		m->type = "pip";
		m->payload = (p->payload.pip.cr3 >> 5) << 1 | p->payload.pip.nr;
		break;
	case ppt_vmcs:
		/* perf: count = 5 payload bytes, payload raw; libipt: base = raw << 12 */
		m->type = "vmcs";
		m->count = 5;
		m->payload = p->payload.vmcs.base >> 12;
		break;
	case ppt_cbr:
		m->type = "cbr";
		m->payload = p->payload.cbr.ratio;
		break;
	case ppt_tsc:
		m->type = "tsc";
		m->payload = p->payload.tsc.tsc;
		break;
	case ppt_tma:
		/* perf: payload = CTC (bytes 2-3), count = FC (byte 5, byte 6 bit 0) */
		m->type = "tma";
		m->payload = p->payload.tma.ctc;
		m->count = p->payload.tma.fc;
		break;
	case ppt_mtc:
		m->type = "mtc";
		m->payload = p->payload.mtc.ctc;
		break;
	case ppt_cyc:
		m->type = "cyc";
		m->payload = p->payload.cyc.value;
		break;
	case ppt_mnt:
		m->type = "mnt";
		m->payload = p->payload.mnt.payload;
		break;
	case ppt_exstop:
		m->type = p->payload.exstop.ip ? "exstop_ip" : "exstop";
		break;
	case ppt_mwait:
		m->type = "mwait";
		m->payload = p->payload.mwait.hints | (uint64_t)p->payload.mwait.ext << 32;
		break;
	case ppt_pwre:
		/* hw: libipt 2.0.5 takes it from payload bit 3, perf's place is bit 7 */
		m->type = "pwre";
		m->payload = (uint64_t)p->payload.pwre.hw << 7 |
			     (uint64_t)(p->payload.pwre.sub_state & 0xf) << 8 |
			     (uint64_t)(p->payload.pwre.state & 0xf) << 12;
		break;
	case ppt_pwrx:
		m->type = "pwrx";
		m->payload = (uint64_t)(p->payload.pwrx.deepest & 0xf) |
			     (uint64_t)(p->payload.pwrx.last & 0xf) << 4 |
			     (uint64_t)p->payload.pwrx.interrupt << 8 |
			     (uint64_t)p->payload.pwrx.store << 10 |
			     (uint64_t)p->payload.pwrx.autonomous << 11;
		break;
	case ppt_ptw:
		/* perf: count = the payload-size code (opcode bits 6:5), IP bit 7 */
		m->type = p->payload.ptw.ip ? "ptwrite_ip" : "ptwrite";
		m->count = p->payload.ptw.plc;
		m->payload = p->payload.ptw.payload;
		break;
	case ppt_unknown:
		m->type = "unknown";
		m->payload = p->payload.unknown.packet[1];
		break;
	default:
		return -1;
	}
	return 0;
}

static void __attribute__((noreturn)) fail(const char *what, int err, uint64_t off)
{
	fflush(stdout);
	fprintf(stderr, "ipt: %s at offset %llu: %s\n", what, (unsigned long long)off,
		pt_errstr(pt_errcode(err)));
	exit(1);
}

static void decode_stream(const unsigned char *buf, size_t len)
{
	struct pt_config config;
	struct pt_packet_decoder *dec;
	struct pt_packet packet;
	struct mapped m;
	uint64_t off = 0;
	int err;

	if (!len) {
		dec_end(NULL, 0);
		return;
	}
	pt_config_init(&config);
	config.begin = (uint8_t *)buf;
	config.end = (uint8_t *)buf + len;
	config.decode.callback = unknown_cb;
	dec = pt_pkt_alloc_decoder(&config);
	if (!dec)
		fail("pt_pkt_alloc_decoder", -pte_nomem, 0);
	err = pt_pkt_sync_set(dec, 0);
	if (err < 0)
		fail("pt_pkt_sync_set", err, 0);
	for (;;) {
		int size;

		err = pt_pkt_get_offset(dec, &off);
		if (err < 0)
			fail("pt_pkt_get_offset", err, off);
		if (off >= len) {
			dec_end(NULL, 0);
			break;
		}
		size = pt_pkt_next(dec, &packet, sizeof(packet));
		if (size == -pte_eos) {
			dec_end("need_more_bytes", off);
			break;
		}
		if (size == -pte_bad_opc || size == -pte_bad_packet) {
			dec_end("bad_packet", off);
			break;
		}
		if (size <= 0)
			fail("pt_pkt_next", size < 0 ? size : -pte_internal, off);
		if (map_packet(&packet, &m) < 0)
			fail("unexpected libipt packet type", -pte_internal, off);
		/* fold following PADs as perf's intel_pt_get_packet() does */
		while (!raw_mode && size < 8 && off + size < len && !buf[off + size]) {
			struct pt_packet pad;
			int n = pt_pkt_next(dec, &pad, sizeof(pad));

			if (n != 1 || pad.type != ppt_pad)
				fail("libipt did not decode a zero byte as PAD", n < 0 ? n :
				     -pte_internal, off + size);
			size += 1;
		}
		dec_packet(off, size, m.type, m.count, m.payload);
	}
	pt_pkt_free_decoder(dec);
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "-r")) {
		raw_mode = 1;
	} else if (argc != 1) {
		fprintf(stderr, "usage: ipt [-r]  (line format: docs/pebs-pt-suite.md section 1)\n");
		return 2;
	}
	return dec_main();
}
