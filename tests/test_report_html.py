"""The HTML report (harness/report/html.py) in a real headless Chromium.

Fixtures (tests/fixtures/report_html/): real.json is a real run.json (a run killed by
SIGTERM: PASS, ERROR, MISS); crafted.json is the same suite's next run, edited by hand
to hold everything the report shows: a FAIL with a divergence and its op-script, a SKIP,
a retried case, a finding, model coverage, a series, a microcode and host kernel, and
guest output that is HTML (a <script>, an <img onerror>) and URLs; trend.json is three
older runs of the history store's rows, in which smoke/after-c flips PASS, FAIL, PASS.

Each page is loaded from file:// with nothing else around: a page that fetched anything,
or ran the guest's markup, would log a console error or change its title.

docs/report-screenshot.png (shown in README.md) is written when it is missing, or again
with KVMCONF_UPDATE_SCREENSHOT=1.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness.report.html import render_compare, render_run

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures") / "report_html"
SCREENSHOT = REPO / "docs" / "report-screenshot.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} missing: apt-get install chromium chromium-driver (make deps)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def load(browser, page: str, folder: Path, name: str = "report.html") -> Path:
    """Write the page, open it from file://, and check what every page must keep."""
    path = folder / name
    path.write_text(page)
    browser.get_log("browser")                 # drop what an earlier page logged
    browser.set_window_size(1400, 1000)
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.get_log("browser") == []    # no console error (nor warning)
    for source in (page, browser.page_source):
        assert "http://" not in source and "https://" not in source
    # Nothing the page would fetch: no external script, style, image, font or frame.
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1            # the page's own
    assert browser.find_elements(By.CSS_SELECTOR, "img, iframe, link[rel=stylesheet], object, embed") == []
    return path


def screenshot(browser, path: Path) -> None:
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 40, 6000))
    assert browser.save_screenshot(str(path))
    browser.set_window_size(1400, 1000)


def matrix_cells(browser) -> dict[str, str]:
    cells = browser.find_elements(By.CSS_SELECTOR, "[data-case]")
    found = [(c.get_attribute("data-case"), c.get_attribute("data-status")) for c in cells]
    assert len(found) == len({cid for cid, _ in found})    # one cell per case
    return dict(found)


def test_real_record(browser, tmp_path):
    record = fixture("real.json")
    load(browser, render_run(record, []), tmp_path)
    assert matrix_cells(browser) == {c["id"]: c["status"] for c in record["cases"]}
    error = browser.find_element(By.CSS_SELECTOR, '[data-detail="smoke/wait-a"]')
    assert "interrupted by SIGTERM" in error.text
    assert "kvmconf run --seed 3703536535 --case smoke/wait-a" in error.text
    platform = browser.find_element(By.ID, "platform").text
    for shown in ("AMD EPYC", "QEMU emulator version 7.2.22", "6.1.0-57-amd64", "tcg"):
        assert shown in platform
    screenshot(browser, tmp_path / "real.png")
    assert (tmp_path / "real.png").stat().st_size > 10_000


def test_crafted_record_with_a_fail(browser, tmp_path):
    record = fixture("crafted.json")
    page = render_run(record, fixture("trend.json"))
    load(browser, page, tmp_path)
    assert browser.title == "kvmconf run 20261202-070000-c0de"        # the guest's <script> did not run
    assert matrix_cells(browser) == {c["id"]: c["status"] for c in record["cases"]}

    fail = browser.find_element(By.CSS_SELECTOR, '[data-detail="smoke/first"]')
    expected = fail.find_element(By.CSS_SELECTOR, ".exp pre").text
    observed = fail.find_element(By.CSS_SELECTOR, ".obs pre").text
    assert (expected, observed) == ("0x0", "0x3 <img src=x onerror=alert(2)>")     # shown as text
    assert record["cases"][0]["reproduce"] in fail.find_element(By.CSS_SELECTOR, "pre.repro").text
    assert '"msr": "0x400000f1"' in fail.text                             # its op-script
    assert "https://bugzilla.kernel.org/show_bug.cgi?id=1" in fail.text   # a URL reads as one
    # The matrix cell links to the detail.
    cell = browser.find_element(By.CSS_SELECTOR, '[data-case="smoke/first"]')
    assert cell.get_attribute("data-status") == "FAIL" and cell.get_attribute("href").endswith("#case-0")

    assert "SEV missing: CPUID 0x8000001F" in browser.find_element(By.ID, "skips").text
    assert "HvCallPostDebugData status <lost>" in browser.find_element(By.ID, "findings").text
    assert "no profile explains every case" in browser.find_element(By.ID, "verdicts").text
    assert "hyperv.c:kvm_hv_hypercall:fast-xmm" in browser.find_element(By.ID, "coverage").text
    platform = browser.find_element(By.ID, "platform").text
    for shown in ("0xa0011d1", "Debian 6.1.158-1", "[PATCH v2 1/2] KVM: x86: Hyper-V: fix <syndbg> & pending"):
        assert shown in platform
    bars = browser.find_elements(By.CSS_SELECTOR, "#time svg g[data-feature]")
    assert [b.get_attribute("data-feature") for b in bars] == ["smoke"]
    trends = browser.find_element(By.ID, "trends").text
    assert "4 runs" in trends and "smoke" in trends
    flaky = browser.find_element(By.ID, "flaky").text
    assert "smoke/after-c" in flaky and "smoke/wait-b" in flaky     # flipped in history; retried
    assert "smoke/first" not in flaky                                # this run's FAIL is not flakiness

    # The inline JS runs: "hide PASS" hides the PASS cells only.
    browser.find_element(By.CSS_SELECTOR, 'input[data-toggle="hide-PASS"]').click()
    shown = {c.get_attribute("data-case") for c in browser.find_elements(By.CSS_SELECTOR, "[data-case]")
             if c.is_displayed()}
    assert shown == {c["id"] for c in record["cases"] if c["status"] != "PASS"}
    browser.find_element(By.CSS_SELECTOR, 'input[data-toggle="hide-PASS"]').click()
    assert browser.get_log("browser") == []

    screenshot(browser, tmp_path / "crafted.png")
    assert (tmp_path / "crafted.png").stat().st_size > 10_000
    if not SCREENSHOT.exists() or os.environ.get("KVMCONF_UPDATE_SCREENSHOT") == "1":
        browser.execute_script("window.scrollTo(0, 0)")
        browser.set_window_size(1400, 1500)
        assert browser.save_screenshot(str(SCREENSHOT))
        browser.set_window_size(1400, 1000)


def test_compare_page(browser, tmp_path):
    before, after = fixture("real.json"), fixture("crafted.json")
    load(browser, render_compare([before, after], fixture("trend.json")), tmp_path, "compare.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-case]")
    assert len(rows) == len({c["id"] for c in before["cases"] + after["cases"]})
    change = {r.get_attribute("data-case"): r.get_attribute("data-change") for r in rows}
    assert change["smoke/first"] == "regressed"          # PASS -> FAIL
    assert change["smoke/wait-a"] == "fixed"             # ERROR -> PASS
    assert change["smoke/wait-b"] == "flaky"             # retried
    assert change["smoke/after-c"] == "flaky"            # flipped in the history before
    first = browser.find_element(By.CSS_SELECTOR, 'tr[data-case="smoke/first"]')
    cells = first.find_elements(By.CSS_SELECTOR, "td[data-run]")
    assert [(c.get_attribute("data-run"), c.get_attribute("data-status")) for c in cells] == [
        (before["run_id"], "PASS"), (after["run_id"], "FAIL")]

    changes = browser.find_element(By.ID, "changes")
    lists = {h.text.split(" (")[0]: h.find_element(By.XPATH, "following-sibling::*[1]").text
             for h in changes.find_elements(By.TAG_NAME, "h3")}
    assert "smoke/first" in lists["Regressions"] and "smoke/wait-a" in lists["Fixes"]
    for flaky in ("smoke/wait-b", "smoke/after-c"):
        assert flaky in lists["Flaky, not counted above"] and flaky not in lists["Regressions"]
    detail = browser.find_element(By.CSS_SELECTOR, '#failures [data-detail="smoke/first"]')
    assert "0x3 <img src=x onerror=alert(2)>" in detail.text and after["cases"][0]["reproduce"] in detail.text

    # "only rows that changed" hides the unchanged ones.
    browser.find_element(By.CSS_SELECTOR, 'input[data-toggle="only-changed"]').click()
    assert all(r.is_displayed() == (r.get_attribute("data-change") != "unchanged") for r in rows)
    assert browser.get_log("browser") == []
    screenshot(browser, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_every_record_string_is_escaped():
    """Without a browser: markup in any record string reaches the page as text."""
    record = fixture("crafted.json")
    record["run_id"] = "<b>id</b>"
    record["cases"][1]["id"] = 'smoke/"><script>x()</script>'
    record["platform"]["qemu"] = "<iframe src=//evil>"
    page = render_run(record, [dict(r, case_id="<i>c</i>") for r in fixture("trend.json")])
    assert "<script>x()" not in page and "<iframe" not in page and "<b>id</b>" not in page
    assert "<i>c</i>" not in page and page.count("<script>") == 1
    compare = render_compare([fixture("real.json"), record], [])
    assert "<script>x()" not in compare and compare.count("<script>") == 1
