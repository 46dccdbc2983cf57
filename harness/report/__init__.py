"""Exporters of run records (`kvmconf report`): one module per format.

ktap.py    KTAP version 1, as the kernel's selftests print it, one subtest per feature
kcidb.py   a KCIDB I/O document (checkout, build, tests), validated with kcidb-io
squad.py   a SQUAD submission (tests.json, metrics.json, metadata.json)
html.py    self-contained HTML pages (one per run, one comparing runs)
publish.py sending them over HTTP (`kvmconf publish`): kcidb-rest's /submit, SQUAD's /api/submit

JUnit XML is harness/results/junit.py (run also writes it into the run folder).
"""
