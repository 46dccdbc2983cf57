"""The history store: every run appended to SQLite, for compare and report."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, started TEXT, label TEXT, kernel_version TEXT,
  kernel_sha256 TEXT, accel TEXT, summary TEXT, record_path TEXT);
CREATE TABLE IF NOT EXISTS cases (
  run_id TEXT, case_id TEXT, feature TEXT, status TEXT, reason TEXT, duration_s REAL,
  PRIMARY KEY (run_id, case_id));
"""


def append(db: Path, record: dict, record_path: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    kernel = record.get("kernel") or {}
    platform = record.get("platform") or {}
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                     (record["run_id"], record["started"], record["label"], kernel.get("version"),
                      kernel.get("sha256"), platform.get("accel"), json.dumps(record["summary"]),
                      str(record_path)))
        conn.executemany("INSERT OR REPLACE INTO cases VALUES (?,?,?,?,?,?)",
                         [(record["run_id"], c["id"], c["feature"], c["status"], c["reason"],
                           c["duration_s"]) for c in record["cases"]])

