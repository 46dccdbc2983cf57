"""A run record as a KCIDB I/O document (kcidb-io's newest schema, v5.3 in kcidb-io
141), validated with kcidb-io before it is written.

One checkout (the kernel source and the patch series applied to it), one build (the
kernel under test) and one test per case, plus a summary test "kvmconf" for the whole
run. Every id is "kvmconf:..." (origin "kvmconf"): the checkout, the build and the
summary test are "kvmconf:<run_id>" (ids are unique per kind), a case
"kvmconf:<run_id>:<case id>".

- checkout.patchset_hash is KCIDB's: the sha256 over the newline-terminated sha256s of
  the patches, in order (harness/series computes the same for an mbox); "" when no
  patch was applied; absent when a patch's hash is unknown (a digest without bodies) or
  the kernel is a live target's running one. The patches' message-ids, subjects and
  hashes are in checkout.misc (message_id is the first patch's).
- build.misc holds the config hash (config_sha256), the bzImage hash and the kind.
- a case's path is kvmconf.<feature>.<group>.<name>: the case id's "/" become ".", and
  each characters KCIDB paths do not allow ([^A-Za-z0-9_-]) becomes "_" (misc.case_id
  keeps the id itself). Statuses map one to one (KCIDB has PASS FAIL ERROR SKIP MISS).
- environment {comment, misc} is the platform (host CPU, accelerator, QEMU, machine
  profile, boot method, target); the summary test's misc holds the whole platform
  record, capabilities included.
- output_files: run.json, junit.xml and the serial logs found in the run folder, as
  URLs under the artifacts URL (by default the folder's file:// URL); log_url is the
  run's pytest.log when there is one.

A document that kcidb-io rejects is kvmconf's bug: `validate` raises HarnessError.
"""
from __future__ import annotations

import hashlib
import re
import urllib.parse
from pathlib import Path

from harness.errors import HarnessError

ORIGIN = "kvmconf"
# The document is written for schema v5.3; a newer 5.x only adds optional fields
# (minor versions are backward compatible), so it is declared the newest 5.x kcidb-io has.
VERSION = {"major": 5, "minor": 3}


def _version() -> dict:
    import kcidb_io
    latest = kcidb_io.schema.LATEST
    return {"major": 5, "minor": latest.minor} if latest.major == 5 and latest.minor >= 3 else dict(VERSION)
# KCIDB's test statuses, highest priority first (FAIL > ERROR > MISS > PASS > DONE > SKIP)
PRIORITY = ("FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP")
STATUS = {"PASS": "PASS", "FAIL": "FAIL", "ERROR": "ERROR", "SKIP": "SKIP", "MISS": "MISS"}
_PATH_PART = re.compile(r"[^A-Za-z0-9_-]")
_NUL = "\x00"
LOG_EXCERPT_MAX = 16384


def _text(value) -> str:
    """A string for a KCIDB text field: no NUL (every such field forbids it)."""
    return str(value).replace(_NUL, "\\0")


def test_path(case_id: str) -> str:
    """kvmconf.<feature>.<group>.<name> for the case id "feature/group/name"."""
    parts = [_PATH_PART.sub("_", part) or "_" for part in case_id.split("/")]
    return ".".join([ORIGIN, *parts])


def patchset_hash(series: list[dict]) -> str | None:
    """KCIDB's patchset hash of run.json's kernel.series: "" for no patch, None when a
    patch's own hash is unknown."""
    if any(not patch.get("sha256") for patch in series):
        return None
    return hashlib.sha256("".join(patch["sha256"] + "\n" for patch in series).encode()).hexdigest() \
        if series else ""


def artifact_base(run_folder: Path, artifacts_url: str | None, run_id: str) -> str:
    """The URL the run folder's files are under, ending in "/": `artifacts_url` with
    "{run_id}" replaced, or the folder's own file:// URL."""
    if artifacts_url is None:
        base = Path(run_folder).resolve().as_uri()
    else:
        base = artifacts_url.replace("{run_id}", urllib.parse.quote(run_id, safe=""))
    return base if base.endswith("/") else base + "/"


def run_files(run_folder: Path) -> list[str]:
    """The run folder's files a report links: run.json, junit.xml, the serial logs."""
    folder = Path(run_folder)
    names = [n for n in ("run.json", "junit.xml") if (folder / n).is_file()]
    names += sorted(p.name for p in folder.glob("*.serial.log") if p.is_file())
    return names


def _url(base: str, name: str) -> str:
    return base + urllib.parse.quote(name)


def _drop_none(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if v is not None}


def _environment(record: dict, whole: bool) -> dict:
    platform = record.get("platform") or {}
    target = record.get("target") or {}
    where = target.get("kind") or "qemu"
    if where == "qemu":
        comment = (f"QEMU ({platform.get('accel')}, {platform.get('machine_profile')} machine) "
                   f"on {platform.get('host_cpu')}")
    else:
        comment = f"{where} target {target.get('where') or ''} on {platform.get('host_cpu')}".replace("  ", " ")
    misc = dict(platform) if whole else {k: platform.get(k) for k in (
        "host_cpu", "accel", "accel_reason", "qemu", "machine_profile", "boot") if k in platform}
    if target:
        misc["target"] = target
    return {"comment": _text(comment), "misc": misc}


def _checkout(record: dict, checkout_id: str) -> dict:
    kernel = record.get("kernel") or {}
    series = kernel.get("series") or []
    source = kernel.get("source") or {}
    words = [f"linux {kernel.get('version')}"]
    if source.get("path"):
        words.append(f"from {source['path']}")
    if series:
        words.append(f"+ {len(series)} patch(es): " + "; ".join(str(p.get("subject")) for p in series))
    message_ids = [p["message_id"] for p in series if p.get("message_id")]
    checkout = {
        "id": checkout_id, "origin": ORIGIN, "comment": _text(" ".join(words)),
        "start_time": record["started"], "valid": True,
        "misc": _drop_none({"kernel_kind": kernel.get("kind"), "kernel_version": kernel.get("version"),
                            "source": source or None, "series": series, "message_ids": message_ids,
                            "revision": next((p.get("revision") for p in series if p.get("revision")), None)}),
    }
    if kernel.get("kind") != "running":         # a live target's kernel: its patches are unknown
        digest = patchset_hash(series)
        if digest is not None:
            checkout["patchset_hash"] = digest
    if series and len(message_ids) == len(series):
        checkout["message_id"] = message_ids[0]
    return checkout


def _build(record: dict, build_id: str, checkout_id: str) -> dict:
    kernel = record.get("kernel") or {}
    return {
        "id": build_id, "origin": ORIGIN, "checkout_id": checkout_id,
        "start_time": record["started"], "architecture": "x86_64", "status": "PASS",
        "comment": _text(f"{kernel.get('version')} ({kernel.get('kind')})"),
        "misc": _drop_none({"kind": kernel.get("kind"), "version": kernel.get("version"),
                            "config_sha256": kernel.get("config_sha256"),
                            "kernel_sha256": kernel.get("sha256"),
                            "config_source": kernel.get("config_source"),
                            "proc_version": kernel.get("proc_version")}),
    }


def _summary_status(cases: list[dict]) -> str | None:
    present = {STATUS[c["status"]] for c in cases}
    return next((s for s in PRIORITY if s in present), None)


def _case_test(record: dict, case: dict, build_id: str, files: list[dict], log_url: str | None,
               findings: dict[str, list[str]]) -> dict:
    status = STATUS[case["status"]]
    reason = case.get("reason") or ""
    test = {
        "id": f"{ORIGIN}:{record['run_id']}:{_text(case['id'])}", "origin": ORIGIN, "build_id": build_id,
        "path": test_path(case["id"]), "status": status, "start_time": record["started"],
        "duration": case.get("duration_s") or 0.0,
        "comment": _text(f"{case['id']}: {status}" + (f": {' '.join(reason.split())[:300]}" if reason else "")),
        "environment": _environment(record, whole=False),
        "output_files": files,
        "misc": _drop_none({"case_id": case["id"], "feature": case["feature"], "reason": reason or None,
                            "seed": case.get("seed"), "reproduce": case.get("reproduce"),
                            "divergence": case.get("divergence"), "explained_by": case.get("explained_by"),
                            "retried": case.get("retried"), "attempts": case.get("attempts"),
                            "findings": findings.get(case["id"])}),
    }
    if log_url:
        test["log_url"] = log_url
    if status in ("FAIL", "ERROR") and reason:
        test["log_excerpt"] = _text(reason)[:LOG_EXCERPT_MAX]
    return test


def document(record: dict, run_folder: Path, artifacts_url: str | None = None) -> dict:
    """The KCIDB document of one run record (not yet validated: see `validate`)."""
    run_id = record["run_id"]
    checkout_id = build_id = f"{ORIGIN}:{_text(run_id)}"
    base = artifact_base(run_folder, artifacts_url, run_id)
    files = [{"name": name, "url": _url(base, name)} for name in run_files(run_folder)]
    log_url = _url(base, "pytest.log") if (Path(run_folder) / "pytest.log").is_file() else None
    findings: dict[str, list[str]] = {}
    for finding in record.get("findings") or []:
        for cid in finding.get("cases") or []:
            findings.setdefault(cid, []).append(finding["id"])
    cases = record["cases"]
    summary = {
        "id": f"{ORIGIN}:{_text(run_id)}", "origin": ORIGIN, "build_id": build_id, "path": ORIGIN,
        "start_time": record["started"],
        "comment": _text(f"kvmconf run {run_id}: " + ", ".join(f"{v} {k}" for k, v in record["summary"].items())),
        "environment": _environment(record, whole=True), "output_files": files,
        "misc": _drop_none({"run_id": run_id, "label": record.get("label") or None,
                            "harness": record.get("harness"), "summary": record.get("summary"),
                            "profiles": record.get("profiles"), "profile_verdict": record.get("profile_verdict"),
                            "seed": record.get("seed"), "interrupted": record.get("interrupted"),
                            "timing": record.get("timing"), "random": record.get("random") or None,
                            "findings": record.get("findings") or None}),
    }
    status = _summary_status(cases)
    if status:
        summary["status"] = status
    if (record.get("timing") or {}).get("total_s") is not None:
        summary["duration"] = record["timing"]["total_s"]
    if log_url:
        summary["log_url"] = log_url
    return {
        "version": _version(),
        "checkouts": [_checkout(record, checkout_id)],
        "builds": [_build(record, build_id, checkout_id)],
        "tests": [summary] + [_case_test(record, case, build_id, files, log_url, findings) for case in cases],
    }


def validate(doc: dict) -> dict:
    """`doc` checked by kcidb-io against its newest schema (formats included: the URLs,
    the timestamps, the message-id); ids unique per object kind. Invalid is kvmconf's
    bug: HarnessError naming the first problem and where it is."""
    import jsonschema
    import kcidb_io
    try:
        kcidb_io.schema.LATEST.validate(doc)
    except jsonschema.exceptions.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(document)"
        raise HarnessError(f"kcidb: the document kvmconf made is not valid KCIDB "
                           f"{kcidb_io.schema.LATEST.major}.{kcidb_io.schema.LATEST.minor} "
                           f"(a kvmconf bug): at {where}: {' '.join(e.message.split())[:300]}") from None
    for kind in ("checkouts", "builds", "tests"):
        ids = [obj["id"] for obj in doc.get(kind, [])]
        if len(ids) != len(set(ids)):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise HarnessError(f"kcidb: {kind} id {dup!r} twice in the document (a kvmconf bug)")
    return doc
