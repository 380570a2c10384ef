"""The run report: written to the run's own folder, every section there, the cytometry results
(merged tables, QC verdicts, plate map, plots), and `cyto report` on the command line."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from bot.cli import cli
from bot.report import build_report
from bot.report.cytometry import FileQC, headline
from bot.report.overview import Tile, overview_png, plates
from bot.report.wells import from_file_name, normalise, well_of
from tests.report_fixtures import finished_cytometry_run
from tests.timeouts import seconds


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    return finished_cytometry_run(tmp_path_factory.mktemp("finished"))


def test_report_of_a_cytometry_run(finished, tmp_path: Path) -> None:
    result = build_report(finished.engine, finished.run_id, out_dir=tmp_path / "copy")
    prefix = f"Output/2026-11-30/demo-plate/_runs/{finished.run_id}/"
    assert result.key == prefix + "report.html"
    folder = finished.store.root / prefix
    assert sorted(p.name for p in folder.iterdir()) == ["overview.png", "qc_table.csv", "report.html",
                                                         "stats_merged.csv"]
    assert (tmp_path / "copy" / "report.html").read_bytes() == (folder / "report.html").read_bytes()
    html = (folder / "report.html").read_text()
    for section in ("run", "cytometry", "analyses", "failures", "timeline", "durations", "parameters"):
        assert f'<section id="{section}">' in html
    assert "started by ada" in html and "row-C" in html and "this file was cut off" not in html
    assert re.search(r"<h3>row-C: no FCS file could be analysed.*\(exit code 2\)</h3>", html)
    assert "(exit code 2) (exit code 2)" not in html
    # nothing the page would fetch: every src is a data URI, no http(s) anywhere in an attribute
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]+)"', html))
    assert len(re.findall(r'<img class="thumb"', html)) == 8

    assert result.headline == ("5 pass · 2 warn · 2 fail: B03 too few events (400); C01 unreadable; "
                               "A03 FSC-A drift (30%) …")
    qc = list(csv.DictReader(io.StringIO((folder / "qc_table.csv").read_text())))
    by_file = {(r["analysis"], r["file"]): r for r in qc}
    assert by_file[("row-B", "tube-4.fcs")]["well"] == "B04"  # from $WELLID
    assert by_file[("row-B", "sample_B03.fcs")]["verdict"] == "fail"
    assert by_file[("row-C", "C01.fcs")]["reasons"].startswith("unreadable: ")
    assert {r["run"] for r in qc} == {finished.run_id}

    stats = list(csv.DictReader(io.StringIO((folder / "stats_merged.csv").read_text())))
    assert {r["analysis"] for r in stats} == {"row-A", "row-B"}
    assert {r["population"] for r in stats} == {"all", "cells", "singlets"}
    assert len(stats) == 8 * 3 and {r["run"] for r in stats} == {finished.run_id}
    assert "CD4 FITC" not in stats[0] and "FL1-A_median" in stats[0]

    image = Image.open(folder / "overview.png")
    colours = {colour for _, colour in image.getcolors(1 << 16)}
    assert image.size[0] > 600 and {(102, 187, 106), (255, 167, 38), (239, 83, 80)} <= colours


def test_a_pipeline_without_results_gets_the_run_sections(cyto, tmp_path: Path) -> None:
    from bot.demo import write_demo_batch

    ref, _ = write_demo_batch(cyto.store, "2026-11-30")
    run = cyto.engine.start_run(cyto.plan(ref.date, ref.batch, pipeline="wordcount", retries=0), "ada",
                                submit=False)
    result = cyto.report(run.id)
    html = Path(result.uri.removeprefix("file://")).read_text()
    assert '<section id="analyses">' in html and "cytometry" not in html.split("<main>")[1].split("Analyses")[0]
    assert result.headline is None and result.files.keys() == {"report.html"}


def test_wells_both_ways() -> None:
    assert normalise("c7") == "C07" and normalise(" H12 ") == "H12" and normalise("Z1") is None
    assert from_file_name("plate1/sample_A01.fcs") == "A01" and from_file_name("H12.fcs") == "H12"
    assert from_file_name("B7-stain.fcs") == "B07" and from_file_name("CD4_E2000.fcs") is None
    assert from_file_name("tube-4.fcs") is None and well_of("tube-4.fcs", "D05") == "D05"
    assert from_file_name("P24.fcs") == "P24"


def tile(analysis: str, file: str, well: str | None, verdict: str = "pass") -> Tile:
    return Tile(analysis, file, well, verdict, 12_000, 90.0, 93.0)


def test_plate_map_when_wells_are_known_else_a_strip() -> None:
    named = [tile("a", "A01.fcs", "A01"), tile("a", "x.fcs", "H12", "fail")]
    assert plates(named) == [("", named)]
    repeated = [tile("p1", "A01.fcs", "A01"), tile("p2", "A01.fcs", "A01")]
    assert [name for name, _ in plates(repeated) or []] == ["p1", "p2"]
    assert plates([tile("a", "one.fcs", None)]) is None
    plate = Image.open(io.BytesIO(overview_png(named, "b")))
    strip = Image.open(io.BytesIO(overview_png([tile("a", "one.fcs", None)], "b")))
    assert plate.size != strip.size
    big = Image.open(io.BytesIO(overview_png([tile("a", "P24.fcs", "P24")], "b")))
    assert big.size[1] > plate.size[1]  # a 384-well plate


def test_headline_lists_the_worst_first() -> None:
    files = [FileQC("a", f"A0{k}.fcs", f"A0{k}", v, (r,) if r else (), 1, 1.0, 1.0, None)
             for k, (v, r) in enumerate([("pass", ""), ("warn", "FL1-A saturated"), ("fail", "too few events (9)")])]
    assert headline(files) == "1 pass · 1 warn · 1 fail: A02 too few events (9); A01 FL1-A saturated"


def test_cyto_report_command(finished, tmp_path: Path) -> None:
    env = {"CYTO_STORE": str(finished.store.root), "CYTO_DB": finished.engine.db.path, "CYTO_EXECUTOR": "local",
           "CYTO_LOCAL_SPOOL": str(tmp_path / "spool")}
    result = CliRunner().invoke(cli, ["report", finished.run_id, "--out", str(tmp_path / "r")], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("QC: 5 pass · 2 warn · 2 fail: B03 too few events (400)")
    assert lines[1] == f"report: {finished.store.root}/Output/2026-11-30/demo-plate/_runs/{finished.run_id}/report.html"
    assert f"copy: {tmp_path / 'r' / 'report.html'}" in lines
    missing = CliRunner().invoke(cli, ["report", "nope00"], env=env)
    assert missing.exit_code == 2 and "no run 'nope00'" in missing.output


def test_the_report_builds_where_the_jobs_dependencies_are_not_installed(finished, tmp_path: Path) -> None:
    """The bot image has no numpy or matplotlib: the report, verdicts and overview need neither."""
    import subprocess
    import sys

    from tests.test_parameter_checks import JOB_ONLY, ROOT

    code = (
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {JOB_ONLY!r}: raise ImportError('not in the bot image: ' + name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from bot.api import Cyto\n"
        "from bot.settings import Settings\n"
        f"cyto = Cyto(Settings(store={str(finished.store.root)!r}, db={finished.engine.db.path!r}, "
        f"local_spool={str(tmp_path / 'spool')!r}))\n"
        f"print(cyto.report({finished.run_id!r}, {str(tmp_path / 'out')!r}).headline)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=seconds(120))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("5 pass · 2 warn · 2 fail")
    assert (tmp_path / "out" / "overview.png").stat().st_size > 1000


def test_a_pipeline_whose_results_fail_still_gets_the_run_report(finished, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    from bot.report import pipelines

    monkeypatch.setitem(pipelines.RESULTS, "cytometry", "tests.test_report:_broken_results")
    result = build_report(finished.engine, finished.run_id, out_dir=tmp_path / "r")
    html = (tmp_path / "r" / "report.html").read_text()
    assert "The cytometry results could not be built: ValueError: qc.json &lt;broken&gt;" in html
    assert '<section id="analyses">' in html and result.notes and result.headline is None


def _broken_results(facts, outputs):
    raise ValueError("qc.json <broken>")
