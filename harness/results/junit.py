"""junit.xml written from run.json, so that CI's view of a run is the record's: the
same cases with the same statuses, an interrupted or cut-short run included (a MISS
case is a skipped test case "planned, not run")."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cache import atomic_write_bytes

_ELEMENT = {"FAIL": "failure", "ERROR": "error", "SKIP": "skipped", "MISS": "skipped"}


def write(record: dict, path: Path) -> None:
    summary = record["summary"]
    suite = ET.Element("testsuite", name=f"kvmconf-{record['run_id']}",
                       tests=str(len(record["cases"])), failures=str(summary["fail"]),
                       errors=str(summary["error"]), skipped=str(summary["skip"] + summary["miss"]),
                       time=f"{sum(c['duration_s'] for c in record['cases']):.3f}",
                       timestamp=record["started"])
    if record.get("interrupted"):
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="interrupted",
                      value=record["interrupted"])
    for case in record["cases"]:
        feature, _, name = case["id"].partition("/")
        element = ET.SubElement(suite, "testcase", classname=feature, name=name,
                                time=f"{case['duration_s']:.3f}")
        if case["status"] in _ELEMENT:
            ET.SubElement(element, _ELEMENT[case["status"]], message=f"{case['status']}: {case['reason']}")
    root = ET.Element("testsuites")
    root.append(suite)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
