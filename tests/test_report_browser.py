"""The run report in a real browser: headless Chromium through Selenium loads a finished run's
report from disk; its tables, overview and plots are visible, no request leaves the file, and the
console has no errors. CI installs Debian's chromium and chromium-driver (.ci/run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.report import build_report
from tests.report_fixtures import finished_cytometry_run

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Chromium and its driver (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_report_opens_offline_with_tables_overview_and_plots(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    finished = finished_cytometry_run(tmp_path / "run")
    result = build_report(finished.engine, finished.run_id, out_dir=tmp_path / "report")
    page = (tmp_path / "report" / "report.html").resolve()
    browser.get(page.as_uri())

    assert browser.title == f"cyto run {finished.run_id} — 2026-11-30/demo-plate"
    qc_rows = browser.find_elements(By.CSS_SELECTOR, "#qc-table tbody tr")
    assert len(qc_rows) == 9 and all(row.is_displayed() for row in qc_rows)
    assert browser.find_element(By.CSS_SELECTOR, "#analyses table").is_displayed()
    images = {"overview": browser.find_elements(By.CSS_SELECTOR, "#overview img"),
              "plots": browser.find_elements(By.CSS_SELECTOR, "img.thumb")}
    assert len(images["overview"]) == 1 and len(images["plots"]) == 8
    for image in images["overview"] + images["plots"]:
        browser.execute_script("arguments[0].scrollIntoView()", image)
        assert image.is_displayed()
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 200
    assert browser.find_element(By.CSS_SELECTOR, "#timeline svg").is_displayed()

    requests = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    sent = [m["params"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert not [p["request"]["url"] for p in sent if p["request"]["url"].startswith(("http", "ws", "ftp"))]
    by_report = [p["request"]["url"] for p in sent if p.get("documentURL") == page.as_uri()]
    assert by_report[0] == page.as_uri() and all(url.startswith("data:") for url in by_report[1:]), by_report
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert result.local_path == page
