"""The r-script pipeline runs a real Rscript; these tests skip only where R is not installed."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from container.pipelines import ParameterError, PipelineContext, PipelineError, load, rscript

needs_r = pytest.mark.skipif(
    shutil.which("Rscript") is None,
    reason="Rscript is not installed here (CI and the job image install r-base-core)",
)

WRITE_CSV = """\
args <- commandArgs(trailingOnly = TRUE)
params <- Sys.getenv("CYTO_PARAMS")
cat("input", args[1] == Sys.getenv("CYTO_INPUT_DIR"), "\\n")
events <- read.csv(file.path(args[1], "events.csv"))
gate <- as.numeric(regmatches(params, regexpr("[0-9]+", params)))
kept <- events[events$fsc > gate, , drop = FALSE]
write.csv(kept, file.path(Sys.getenv("CYTO_OUTPUT_DIR"), "gated.csv"), row.names = FALSE)
message("kept ", nrow(kept), " of ", nrow(events), " events")
"""


def make_context(tmp_path: Path, files: dict[str, str], params: dict[str, Any] | None = None) -> PipelineContext:
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    for name, text in files.items():
        (input_dir / name).write_text(text)
    return PipelineContext(
        input_dir=input_dir,
        output_dir=tmp_path / "out",
        params=params or {},
        log=logging.getLogger("test.rscript"),
        analysis="A01",
    )


def test_registry_loads_the_module() -> None:
    assert load("r-script") is rscript


@needs_r
def test_runs_analysis_r_and_writes_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    events = "fsc,ssc\n10,1\n250,2\n300,3\n"
    ctx = make_context(tmp_path, {"analysis.R": WRITE_CSV, "events.csv": events}, {"gate": 100})
    with caplog.at_level(logging.INFO, logger="test.rscript"):
        summary = rscript.run(ctx)
    assert summary == {"script": "analysis.R", "output_files": 1}
    with (ctx.output_dir / "gated.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["fsc"] for row in rows] == ["250", "300"]
    # stdout and stderr (message()) both reach the log, line by line
    assert "[R] input TRUE " in caplog.messages
    assert "[R] kept 2 of 3 events" in caplog.messages


@needs_r
def test_script_parameter_and_params_json(tmp_path: Path) -> None:
    script = 'writeLines(Sys.getenv("CYTO_PARAMS"), file.path(commandArgs(TRUE)[2], "params.json"))\n'
    params = {"script": "gate.R", "k": [1, 2]}
    ctx = make_context(tmp_path, {"gate.R": script}, params)
    assert rscript.run(ctx)["script"] == "gate.R"
    assert json.loads((ctx.output_dir / "params.json").read_text()) == params


@needs_r
def test_r_error_lines_become_the_message(tmp_path: Path) -> None:
    script = 'cat("gating\\n")\ngate <- function() stop("bad gate")\ngate()\n'
    ctx = make_context(tmp_path, {"analysis.R": script})
    with pytest.raises(PipelineError) as failure:
        rscript.run(ctx)
    assert not isinstance(failure.value, ParameterError)
    message = str(failure.value)
    assert "bad gate" in message
    assert "Error in gate()" in message
    assert "Execution halted" in message
    assert "exit status 1" in message
    assert "gating" not in message


@needs_r
def test_warns_about_files_written_to_the_input_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_context(tmp_path, {"analysis.R": 'write.csv(data.frame(a = 1), "result.csv")\n'})
    with caplog.at_level(logging.WARNING, logger="test.rscript"):
        assert rscript.run(ctx)["output_files"] == 0
    assert any("result.csv" in m and "not kept" in m for m in caplog.messages)


def test_missing_script_names_what_was_looked_for_and_what_exists(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"gating.R": "1\n", "events.csv": "a\n"})
    with pytest.raises(ParameterError, match=r"no R script 'analysis\.R'.*R scripts there: gating\.R"):
        rscript.run(ctx)


def test_missing_named_script_in_folder_without_r_files(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, {"events.csv": "a\n"}, {"script": "gate.R"})
    with pytest.raises(ParameterError, match=r"'gate\.R'.*no \.R file there; it holds: events\.csv"):
        rscript.run(ctx)


@pytest.mark.parametrize("script", ["../analysis.R", "/etc/passwd", "", 3])
def test_script_parameter_must_stay_inside_the_folder(tmp_path: Path, script: object) -> None:
    ctx = make_context(tmp_path, {"analysis.R": "1\n"}, {"script": script})
    with pytest.raises(ParameterError, match="script"):
        rscript.run(ctx)


def test_missing_rscript_says_r_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    ctx = make_context(tmp_path, {"analysis.R": "1\n"})
    with pytest.raises(PipelineError, match="R is not installed in this image"):
        rscript.run(ctx)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["x", "Error in f() : bad gate", "Calls: f", "Execution halted"],
            "Error in f() : bad gate | Calls: f | Execution halted",
        ),
        (["Error: first", "more", "Error: bad gate", "Execution halted"], "Error: bad gate | Execution halted"),
        (["a", "b", "c", "d", ""], "b | c | d"),
        ([], "R printed nothing"),
    ],
)
def test_error_excerpt(lines: list[str], expected: str) -> None:
    assert rscript.r_error_excerpt(lines) == expected


def test_killed_r_is_described() -> None:
    assert "out of memory" in rscript._describe_status(-9)
