"""A run record as a SQUAD submission: the three files SQUAD's submit API takes as the
form fields `tests`, `metrics` and `metadata`:

    curl --header "Authorization: token $SQUAD_TOKEN" \\
        --form tests=@tests.json --form metrics=@metrics.json --form metadata=@metadata.json \\
        https://SQUAD/api/submit/GROUP/PROJECT/BUILD/ENVIRONMENT

tests.json     {"<case id>": "pass" | {"result": "fail"|"skip", "log": "STATUS: reason"}}: SQUAD
               splits a name at its last "/" into suite and test ("vfio/unmap/ends-at-2^64":
               suite "vfio/unmap"). SQUAD knows pass and fail, and shows anything else as
               skip: FAIL and ERROR are fail, SKIP and MISS skip (the log says which).
               SQUAD's xfail is a fail its project marks as a known issue, server side:
               the submission has none.
metrics.json   {"kvmconf/boot_to_ready_s", "kvmconf/total_s", "<feature>/duration_s" (the
               feature's cases added up), "<feature>/op_scripts_per_s" and
               "<feature>/op_actions_per_s" (record["random"] over the op-scripts case's
               time, when that case PASSed: a failing one also spent time shrinking)}:
               plain numbers, unknown ones left out.
metadata.json  strings only (SQUAD's rule): job_id = the run id (unique per project, no "/"),
               datetime, job_status, job_url, the kernel (version, kind, hashes, patchset
               hash, message-ids) and the platform.

`build_and_environment` suggests the BUILD and ENVIRONMENT of the submit URL (both must
match SQUAD's [a-zA-Z0-9][a-zA-Z0-9_.-]*). `check` applies SQUAD's own checks of a
submission (api/submit's ValidateTestRun, and the result and name rules) and raises
HarnessError: a submission SQUAD would refuse is kvmconf's bug.
"""
from __future__ import annotations

import math
import re

from harness.errors import HarnessError
from harness.report.kcidb import patchset_hash

FILES = ("tests", "metrics", "metadata")
RESULT = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "SKIP": "skip", "MISS": "skip"}
_SLUG = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_UNSLUG = re.compile(r"[^a-zA-Z0-9_.-]")


def _slug(text: str) -> str:
    text = _UNSLUG.sub("-", text).lstrip("_.-")
    return text or "unknown"


def build_and_environment(record: dict) -> tuple[str, str]:
    """BUILD (the kernel version; a patched kernel reports its base's version, so then
    with the patchset hash's first 12 digits) and ENVIRONMENT (where and how the cases
    ran) of SQUAD's submit URL."""
    kernel = record.get("kernel") or {}
    platform = record.get("platform") or {}
    target = (record.get("target") or {}).get("kind") or "qemu"
    build = _slug(str(kernel.get("version") or "unknown"))
    digest = patchset_hash(kernel.get("series") or []) if kernel.get("series") else None
    if digest:
        build += "-" + digest[:12]
    env = _slug("-".join(str(p) for p in (target, platform.get("accel"), platform.get("machine_profile")) if p))
    return build, env


def tests(record: dict) -> dict:
    out: dict = {}
    for case in record["cases"]:
        result = RESULT[case["status"]]
        if case["status"] == "PASS":
            out[case["id"]] = result
        else:
            out[case["id"]] = {"result": result, "log": f"{case['status']}: {case.get('reason') or ''}".rstrip()}
    return out


def _number(value) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def metrics(record: dict) -> dict:
    out: dict = {}
    timing = record.get("timing") or {}
    for key in ("boot_to_ready_s", "total_s"):
        if _number(timing.get(key)) is not None:
            out[f"kvmconf/{key}"] = timing[key]
    durations: dict[str, float] = {}
    for case in record["cases"]:
        durations[case["feature"]] = durations.get(case["feature"], 0.0) + (_number(case.get("duration_s")) or 0.0)
    for feature, seconds in durations.items():
        out[f"{feature}/duration_s"] = round(seconds, 3)
    by_id = {c["id"]: c for c in record["cases"]}
    for entry in record.get("random") or []:
        case = by_id.get(f"{entry['feature']}/random/op-scripts")
        seconds = _number(case.get("duration_s")) if case else None
        if case is None or case["status"] != "PASS" or not seconds:
            continue
        out[f"{entry['feature']}/op_scripts_per_s"] = round(entry["scripts"] / seconds, 3)
        out[f"{entry['feature']}/op_actions_per_s"] = round(entry["actions"] / seconds, 3)
    return out


def metadata(record: dict, job_url: str | None = None) -> dict:
    kernel = record.get("kernel") or {}
    platform = record.get("platform") or {}
    harness = record.get("harness") or {}
    series = kernel.get("series") or []
    counts = record.get("summary") or {}
    if record.get("interrupted"):
        status = f"interrupted ({record['interrupted']})"
    elif counts.get("miss"):
        status = f"incomplete ({counts['miss']} cases not run)"
    else:
        status = "complete"
    fields = {
        "job_id": record["run_id"].replace("/", "_"), "datetime": record["started"], "job_status": status,
        "job_url": job_url, "label": record.get("label") or None,
        "kernel_version": kernel.get("version"), "kernel_kind": kernel.get("kind"),
        "kernel_sha256": kernel.get("sha256"), "kernel_config_sha256": kernel.get("config_sha256"),
        "kernel_source": (kernel.get("source") or {}).get("path"),
        "patchset_hash": patchset_hash(series) if series else None,
        "series_message_ids": " ".join(p["message_id"] for p in series if p.get("message_id")) or None,
        "series_subjects": "; ".join(str(p.get("subject")) for p in series) or None,
        "platform_host_cpu": platform.get("host_cpu"), "platform_accel": platform.get("accel"),
        "platform_qemu": platform.get("qemu"), "platform_machine_profile": platform.get("machine_profile"),
        "platform_boot": platform.get("boot"),
        "target": (record.get("target") or {}).get("kind"),
        "harness_version": harness.get("version"), "harness_git": harness.get("git"),
        "seed": record.get("seed"),
    }
    return {k: str(v) for k, v in fields.items() if v is not None}


def submission(record: dict, job_url: str | None = None) -> dict[str, dict]:
    """{"tests": ..., "metrics": ..., "metadata": ...}, checked (see `check`)."""
    return check({"tests": tests(record), "metrics": metrics(record), "metadata": metadata(record, job_url)})


def check(files: dict[str, dict]) -> dict[str, dict]:
    """SQUAD's checks of a submission; a failure is kvmconf's bug (HarnessError)."""
    def bad(what: str):
        return HarnessError(f"squad: the submission kvmconf made would be refused (a kvmconf bug): {what}")
    if set(files) != set(FILES) or not all(isinstance(files[f], dict) for f in FILES):
        raise bad(f"expected the objects {', '.join(FILES)}")
    for name, value in files["tests"].items():
        result = value.get("result") if isinstance(value, dict) else value
        if not isinstance(name, str) or not name or name.endswith("/") or result not in ("pass", "fail", "skip"):
            raise bad(f"tests: {name!r}: {value!r}")
        if isinstance(value, dict) and set(value) - {"result", "log"}:
            raise bad(f"tests: {name!r}: unknown keys {sorted(set(value) - {'result', 'log'})}")
    for name, value in files["metrics"].items():
        if _number(value) is None:
            raise bad(f"metrics: {name!r}: {value!r} is not a finite number")
    meta = files["metadata"]
    job_id = meta.get("job_id")
    if not isinstance(job_id, str) or not job_id or "/" in job_id:
        raise bad(f"metadata: job_id {job_id!r} (a string without '/')")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise bad(f"metadata: {key} is {type(value).__name__}, not a string")
    return files
