"""Execute notebooks/launch.ipynb and notebooks/watch.ipynb headless (nbclient + ipykernel) against a
temporary local store, and check what their cells produced: the run in the database, its final state
and the widgets' values, which each notebook's last cell prints as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from bot.api import Cyto
from bot.ledger import RunDB
from bot.settings import Settings
from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "cyto-test-python"
DATE = "2018-12-05"

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A small wordcount batch in a tmp store, the configuration in the environment, and a kernel
    spec for this very interpreter (a fresh CI machine has no registered kernel to rely on)."""
    for analysis, text in (("A1", "hello world\n"), ("A2", "one two three\nfour\n")):
        path = tmp_path / "data" / "Input" / DATE / "batch-7" / analysis / "in.txt"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    kernel_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cyto test", "language": "python"}))
    values = {
        "CYTO_STORE": str(tmp_path / "data"),
        "CYTO_DB": str(tmp_path / "runs.sqlite"),
        "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"),
        "CYTO_DEFAULT_PIPELINE": "wordcount",
        "CYTO_EXECUTOR": "local",
        "CYTO_POLL_SECONDS": "0.2",
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        # The kernel and the jobs it starts import bot/ and container/ from this checkout.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for name in ("CYTO_NOTEBOOK_DATE", "CYTO_NOTEBOOK_BATCH", "CYTO_NOTEBOOK_AUTORUN", "CYTO_NOTEBOOK_RUN",
                 "CYTO_NOTEBOOK_WAIT", "CYTO_NOTEBOOK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def execute(name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch,
            **params: str) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Run the notebook with `params` in the kernel's environment; return it and its last cell's JSON."""
    for key, value in params.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=seconds(60), resources={"metadata": {"path": str(cwd)}}).execute()
    last = nb.cells[-1]
    text = "".join(out.get("text", "") for out in last.outputs if out.output_type == "stream")
    return nb, json.loads(text)


def widget_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [out.data["application/vnd.jupyter.widget-view+json"]["model_id"]
            for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == "display_data" or out.output_type == "execute_result"
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]


def test_launch_notebook_starts_the_run_and_follows_it_to_the_end(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb, values = execute("launch", tmp_path, monkeypatch, CYTO_NOTEBOOK_DATE=DATE, CYTO_NOTEBOOK_BATCH="batch-7",
                         CYTO_NOTEBOOK_AUTORUN="1")

    form, watcher = values["form"], values["watcher"]
    assert (form["date"], form["batch"], form["pipeline"]) == (DATE, "batch-7", "wordcount")
    assert form["errors"] == {} and form["analyses"] == ["A1", "A2"]
    assert form["run_disabled"], "after Run, the button waits for a change"
    run = RunDB(env["CYTO_DB"]).run(form["run_id"])
    assert run is not None and run.state.value == "SUCCEEDED" and run.requested_by.startswith("notebook")
    assert (run.date, run.batch, run.pipeline) == (DATE, "batch-7", "wordcount")
    assert watcher["run_id"] == run.id and watcher["state"] == "SUCCEEDED"
    assert watcher["progress"] == [2, 2] and watcher["analyses"] == {"A1": "SUCCEEDED", "A2": "SUCCEEDED"}
    assert watcher["log_shown"]
    assert len(widget_outputs(nb)) == 2  # the form and the watcher were displayed as widgets
    assert (Path(env["CYTO_STORE"]) / "Output" / DATE / "batch-7" / "A1" / "wordcount.json").exists()


def test_launch_notebook_with_a_missing_date_explains_it_and_runs_nothing(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, values = execute("launch", tmp_path, monkeypatch, CYTO_NOTEBOOK_DATE="2019-01-01", CYTO_NOTEBOOK_AUTORUN="1")

    form = values["form"]
    assert form["date"] == "2019-01-01" and "nearest dates: 2018-12-05" in form["errors"]["date"]
    assert form["run_disabled"] and form["run_id"] is None
    assert RunDB(env["CYTO_DB"]).runs() == []


def test_watch_notebook_follows_a_run_to_the_end(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cyto = Cyto(Settings.from_env(env))
    older = cyto.engine.start_run(cyto.plan(DATE, "batch-7", pipeline="wordcount"), "test", submit=False)
    cyto.engine.start_run(cyto.plan(DATE, "batch-7", pipeline="wordcount"), "test", submit=False,
                          allow_concurrent=True)  # the newest

    nb, values = execute("watch", tmp_path, monkeypatch, CYTO_NOTEBOOK_RUN=older.id, CYTO_NOTEBOOK_WAIT="1")

    assert values["run_id"] == older.id and values["state"] == "SUCCEEDED"
    assert values["progress"] == [2, 2] and values["counts"] == {"SUCCEEDED": 2}
    assert values["log_analysis"] == "A1" and values["log_shown"]
    assert values["retry_disabled"] and values["cancel_disabled"] and values["live"]
    assert cyto.status(older.id).run.state.value == "SUCCEEDED"
    assert len(widget_outputs(nb)) == 1
