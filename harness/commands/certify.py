"""`kvmconf certify RUN --expect PLATFORM.toml --key KEY [--output F]`: judge a run
against a platform's expectations and write a signed bundle (harness/certify);
`kvmconf certify --new-key DIR`: a signing key pair; `kvmconf verify BUNDLE --pubkey K`:
check a bundle offline.

certify: exit 0 certified, 1 not certified (the bundle is written either way, with
each reason), 2 bad input. verify: 0 certified, 1 not certified, 2 the bundle is invalid.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from harness.commands import argtypes as t
from harness.commands.common import err, out
from harness.errors import UsageError


def add_certify_options(p) -> None:
    p.add_argument("run", nargs="?", type=t.run_record, help="run folder (or its run.json)")
    p.add_argument("--expect", type=t.platform_file, metavar="PLATFORM.toml", help="the platform's expectations")
    p.add_argument("--key", type=t.ssh_private_key, metavar="KEY", help="ed25519 private key (PEM, mode 0600)")
    p.add_argument("--output", type=t.output_file, metavar="F",
                   help="bundle to write (default: kvmconf-cert-RUN_ID.tar.gz here)")
    p.add_argument("--new-key", type=t.output_folder, metavar="DIR",
                   help="write a new key pair (kvmconf-cert.key, kvmconf-cert.pub) into DIR and stop")
    p.set_defaults(func=cmd_certify)


def add_verify_options(p) -> None:
    p.add_argument("bundle", type=t.bundle_file, help="certification bundle (.tar.gz)")
    p.add_argument("--pubkey", type=t.public_key_file, metavar="K",
                   help="the vendor's public key (PEM, or an OpenSSH ssh-ed25519 line; required)")
    p.add_argument("--json", action="store_true", help="the verdict as JSON")
    p.set_defaults(func=cmd_verify)


def _print_verdict(certified: bool, platform: str, run_id: str, reasons: list[str], notes: list[str]) -> None:
    out.print(f"{'CERTIFIED' if certified else 'NOT CERTIFIED'}: run {run_id} on platform {platform}",
              markup=False)
    for reason in reasons:
        out.print(f"  - {reason}", markup=False)
    for note in notes:
        out.print(f"  {note}", markup=False)


def cmd_certify(args) -> int:
    from harness.certify import bundle, expectations, keys
    from harness.commands.report import load_runs
    if args.new_key:
        if args.run or args.expect or args.key or args.output:
            raise UsageError("certify --new-key DIR takes no RUN, --expect, --key or --output")
        private, public, print_ = keys.new_pair(Path(args.new_key))
        out.print(f"private key: {private} (0600; keep it in the lab)\npublic key:  {public} "
                  f"(publish it)\nfingerprint: {print_}", markup=False)
        return 0
    for flag, value in (("RUN", args.run), ("--expect PLATFORM.toml", args.expect), ("--key KEY", args.key)):
        if not value:
            raise UsageError(f"certify needs {flag} (or --new-key DIR)")
    ((record, folder),) = load_runs([args.run])      # one-line errors for a broken record
    raw = (folder / "run.json").read_bytes()           # the bytes bundled are the bytes judged
    try:
        same = json.loads(raw) == record
    except ValueError:
        same = False
    if not same:
        raise UsageError(f"{args.run}: run.json changed while being certified (is the run still going?)")
    expect = expectations.load(args.expect)
    key = keys.load_private(Path(args.key))
    output = Path(args.output or f"{bundle.top_folder(record['run_id'])}.tar.gz")
    now = dt.datetime.now(dt.timezone.utc)
    verdict = bundle.write(folder, raw, record, expect, key, output, now)
    notes = [f"{len(verdict['waived'])} waived, {len(verdict['allowed_skips'])} allowed SKIPs, "
             f"{verdict['required']['passed']}/{verdict['required']['cases']} required cases PASS",
             f"bundle: {output} ({output.stat().st_size} bytes), signed by {keys.fingerprint(key.public_key())}"]
    _print_verdict(verdict["certified"], expect.name, record["run_id"], verdict["reasons"], notes)
    return 0 if verdict["certified"] else 1


def cmd_verify(args) -> int:
    from harness.certify import bundle, keys
    if not args.pubkey:
        raise UsageError("verify needs --pubkey K (the vendor's public key: a bundle is checked against it)")
    public = keys.load_public(Path(args.pubkey))
    start = time.monotonic()
    try:
        checked = bundle.check(Path(args.bundle), public, dt.datetime.now(dt.timezone.utc).date())
    except bundle.Invalid as e:
        err.print(f"kvmconf: {args.bundle}: invalid bundle: {e}", markup=False)
        return 2
    took = time.monotonic() - start
    v = checked.verdict
    if args.json:
        out.print(json.dumps({"certified": checked.certified, "reasons": checked.reasons, "verdict": v,
                              "signer": checked.signer, "members": checked.members,
                              "verify_s": round(took, 3)}, indent=1), markup=False, highlight=False)
    else:
        _print_verdict(checked.certified, v["platform"], v["run_id"], checked.reasons,
                       [f"signature by {checked.signer}: good; {checked.members} members match the manifest; "
                        f"verdict recomputed from run.json and PLATFORM.toml (judged on {v['judged_on']}); "
                        f"{took:.2f} s"])
    return 0 if checked.certified else 1
