"""The notebook watcher on a finished cytometry run: the failed analysis's log first, then the
results (QC verdicts, overview, QC table, merged statistics, each analysis's plots) built once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.api import Cyto
from bot.notebook import RunWatcher
from bot.settings import Settings
from tests.report_fixtures import finished_cytometry_run

pytestmark = pytest.mark.slow  # every test here runs jobs as processes


def test_watcher_shows_the_failed_log_first_then_the_results(tmp_path: Path) -> None:
    finished = finished_cytometry_run(tmp_path)
    settings = Settings(store=str(finished.store.root), db=finished.engine.db.path, poll_seconds=0.1)
    cyto = Cyto(settings, store=finished.store, executor=finished.engine.executor, db=finished.engine.db)
    watcher = RunWatcher(cyto, finished.run_id, interval=0.1)
    values = watcher.values()
    assert values["log_analysis"] == "row-C" and "no FCS file could be analysed" in watcher.log.value
    assert "<pre" in watcher.log.value  # monospace
    assert values["results_shown"] is True
    assert values["qc"].startswith("5 pass · 2 warn · 2 fail: B03 too few events (400)")
    html = watcher.results.value
    assert html.count('<img alt="batch overview') == 1
    assert re.search(r'<table class="cyto-qc">.*sample_B03\.fcs.*too few events', html, re.S)
    assert re.search(r'<table class="cyto-stats">.*<th>FSC-A_median</th>', html, re.S)
    assert html.count('<img alt="A0') == 4 and html.count("<h5>row-B</h5>") == 1
    assert f"_runs/{finished.run_id}/report.html" in html

    report_file = finished.store.root / finished.ref.run_prefix(finished.run_id) / "report.html"
    built = report_file.stat().st_mtime_ns
    watcher.refresh()
    assert report_file.stat().st_mtime_ns == built, "the report is built once per finish"
