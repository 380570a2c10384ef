"""One gating file for the whole batch: `"gating_file": "../panel.xml"` names a file in the batch
folder, beside the analysis folders; the job stages exactly that file (local folder and S3) and the
bot refuses the run at plan time when it is missing."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.api import Cyto
from bot.engine import BadParameters
from bot.states import RunState
from container import entrypoint
from container.contract import BATCH_INPUT_URI, JobEnvironment, parent_folder_uri
from container.cytometry import params as params_mod
from container.pipelines import ParameterError
from container.staging import NotFound, download_file
from tests.cli_helpers import invoke
from tests.fcs_data import scatter_events, write_fcs
from tests.test_cytometry_gatingfile import WORKSPACES, flowjo_counts, needs_data
from tests.timeouts import seconds

DATE, BATCH = "2026-11-30", "batch-9"
CHANNELS = ["FSC-A", "FSC-H", "SSC-A", "FL1-A", "FL2-A", "Time"]
CELLS = {"FSC-A": (30_000.0, 150_000.0), "SSC-A": (5_000.0, None)}
FL1_POSITIVE = 1_000.0


def write_panel(path: Path) -> Path:
    """A GatingML 2.0 document: cells (a rectangle on FSC-A and SSC-A), FL1pos below it (a range)."""
    import flowkit as fk

    gs = fk.GatingStrategy()
    dims = [fk.Dimension(name, range_min=lo, range_max=hi) for name, (lo, hi) in CELLS.items()]
    gs.add_gate(fk.gates.RectangleGate("cells", dims), ("root",))
    gs.add_gate(fk.gates.RectangleGate("FL1pos", [fk.Dimension("FL1-A", range_min=FL1_POSITIVE)]), ("root", "cells"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fk.export_gatingml(gs, fh)
    return path


def expected_counts(events: np.ndarray) -> dict[str, int]:
    """The populations counted by hand: half-open bounds, min <= x < max, on the values as stored."""
    stored = events.astype(np.float32).astype(np.float64)
    cells = np.ones(len(stored), dtype=bool)
    for name, (lo, hi) in CELLS.items():
        x = stored[:, CHANNELS.index(name)]
        cells &= (x >= lo) & (x < hi if hi is not None else True)
    fl1 = cells & (stored[:, CHANNELS.index("FL1-A")] >= FL1_POSITIVE)
    return {"cells": int(cells.sum()), "cells/FL1pos": int(fl1.sum())}


def write_batch(input_root: Path) -> dict[str, dict[str, int]]:
    """A01 (two files) and A02 (one), no gating file of their own: file -> expected counts."""
    expected = {}
    for analysis, files in {"A01": ["d1.fcs", "d2.fcs"], "A02": ["d3.fcs"]}.items():
        for k, name in enumerate(files):
            events = scatter_events(3_000, seed=len(expected) + k + 1)
            write_fcs(input_root / analysis / name, events, CHANNELS)
            expected[f"{analysis}/{name}"] = expected_counts(events)
    return expected


def counts(stats_csv: Path) -> dict[str, dict[str, int]]:
    with stats_csv.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["population"] != "all":
            out.setdefault(row["file"], {})[row["population"]] = int(row["events"])
    return out


# -- the parameter, the contract, staging ---------------------------------------------------------


def test_a_batch_file_is_named_with_dot_dot_slash() -> None:
    assert params_mod.parse({"gating_file": "../panel.wsp"}).batch_files == {"gating_file": "panel.wsp"}
    assert params_mod.parse({"gating_file": "gates/panel.wsp"}).batch_files == {}
    assert params_mod.parse({}).batch_files == {}
    for bad in ("../sub/panel.wsp", "../../panel.wsp", "../", "..\\panel.wsp", "a/../../panel.xml"):
        with pytest.raises(ParameterError, match=r"or \.\./name for a file in the batch folder"):
            params_mod.parse({"gating_file": bad})


@pytest.mark.parametrize(
    ("uri", "parent"),
    [
        ("s3://lab/Input/2026-11-30/batch-9/A01/", "s3://lab/Input/2026-11-30/batch-9/"),
        ("s3://lab/Input/2026-11-30/batch-9/A01", "s3://lab/Input/2026-11-30/batch-9/"),
        ("s3://lab/A01/", "s3://lab/"),
        ("s3://lab/", ""),
        ("file:///srv/lab/Input/d/b/A%2001/", "file:///srv/lab/Input/d/b/"),
        ("file://localhost/srv/a/b/", "file://localhost/srv/a/"),
        ("/srv/lab/A01/", "/srv/lab/"),
        ("file:///", ""),
    ],
)
def test_the_batch_folder_is_the_input_folders_parent(uri: str, parent: str) -> None:
    assert parent_folder_uri(uri) == parent


def test_the_contract_carries_the_batch_folder() -> None:
    spec = JobEnvironment(run_id="r", attempt=1, date=DATE, batch=BATCH, analysis="A01", pipeline="cytometry",
                          input_uri="s3://lab/Input/2026-11-30/batch-9/A01/", output_uri="s3://lab/Output/x/",
                          logs_uri="s3://lab/Logs/x/")
    env = spec.to_env()
    assert env[BATCH_INPUT_URI] == "s3://lab/Input/2026-11-30/batch-9/"
    assert JobEnvironment.from_env(env).batch_uri == "s3://lab/Input/2026-11-30/batch-9/"
    # an older environment without the variable: the input folder's parent
    older = {k: v for k, v in env.items() if k != BATCH_INPUT_URI}
    assert JobEnvironment.from_env(older).batch_uri == env[BATCH_INPUT_URI]
    # a job run by hand may point elsewhere
    assert JobEnvironment.from_env({**env, BATCH_INPUT_URI: "s3://other/panels/"}).batch_uri == "s3://other/panels/"


def test_download_one_local_file(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "panel.xml").write_bytes(b"<xml/>")
    target = download_file((tmp_path / "store" / "panel.xml").as_uri(), tmp_path / "job" / "batch" / "panel.xml")
    assert target.read_bytes() == b"<xml/>"
    with pytest.raises(NotFound, match="does not exist"):
        download_file((tmp_path / "store" / "nope.xml").as_uri(), tmp_path / "job" / "nope.xml")
    with pytest.raises(NotFound, match="is not a file"):
        download_file((tmp_path / "store").as_uri(), tmp_path / "job" / "store")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="lab")
        yield client


def test_download_one_s3_object(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket="lab", Key="Input/d/b/panel.xml", Body=b"<xml/>")
    s3.put_object(Bucket="lab", Key="Input/d/b/panel.xml.bak", Body=b"not this")
    target = download_file("s3://lab/Input/d/b/panel.xml", tmp_path / "batch" / "panel.xml")
    assert target.read_bytes() == b"<xml/>" and sorted(p.name for p in target.parent.iterdir()) == ["panel.xml"]
    with pytest.raises(NotFound, match=r"s3://lab/Input/d/b/nope\.xml does not exist"):
        download_file("s3://lab/Input/d/b/nope.xml", tmp_path / "batch" / "nope.xml")


def job_env(input_uri: str, output_uri: str, logs_uri: str, params: dict[str, Any]) -> dict[str, str]:
    return JobEnvironment(run_id="run-1", attempt=1, date=DATE, batch=BATCH, analysis="A01", pipeline="cytometry",
                          input_uri=input_uri, output_uri=output_uri, logs_uri=logs_uri, params=params).to_env()


def test_a_job_on_s3_stages_the_batch_gating_file_and_nothing_else_of_the_batch(s3: Any, tmp_path: Path) -> None:
    local = tmp_path / "batch"
    expected = write_batch(local)
    write_panel(local / "panel.xml")
    (local / "notes.txt").write_text("the batch folder holds other files too")
    for path in local.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket="lab", Key=f"Input/{DATE}/{BATCH}/{path.relative_to(local).as_posix()}",
                          Body=path.read_bytes())
    out = f"s3://lab/Output/{DATE}/{BATCH}/A01/"
    env = job_env(f"s3://lab/Input/{DATE}/{BATCH}/A01/", out, f"s3://lab/Logs/{DATE}/{BATCH}/A01/run-1/",
                  {"gating_file": "../panel.xml"})
    assert entrypoint.main([], env) == 0
    stats = tmp_path / "stats.csv"
    s3.download_file("lab", f"Output/{DATE}/{BATCH}/A01/stats.csv", str(stats))
    assert counts(stats) == {k.removeprefix("A01/"): v for k, v in expected.items() if k.startswith("A01/")}
    result = json.loads(s3.get_object(Bucket="lab", Key=f"Output/{DATE}/{BATCH}/A01/result.json")["Body"].read())
    assert [f["path"] for f in result["inputs"]] == ["d1.fcs", "d2.fcs", "../panel.xml"]
    log = s3.get_object(Bucket="lab", Key=f"Logs/{DATE}/{BATCH}/A01/run-1/attempt-1.log")["Body"].read().decode()
    assert "staged ../panel.xml from the batch folder" in log

    # The file removed since the run was planned: bad input, exit 2, with the folder named.
    s3.delete_object(Bucket="lab", Key=f"Input/{DATE}/{BATCH}/panel.xml")
    assert entrypoint.main([], env) == 2
    log = s3.get_object(Bucket="lab", Key=f"Logs/{DATE}/{BATCH}/A01/run-1/attempt-1.log")["Body"].read().decode()
    assert log.splitlines()[-1] == (
        f"ERROR: gating_file names ../panel.xml, which is not in the batch folder s3://lab/Input/{DATE}/{BATCH}/"
    )


# -- the plan and a real run ----------------------------------------------------------------------


def test_the_plan_check_on_an_s3_store(s3: Any) -> None:
    from bot.batch_files import check_batch_files
    from bot.layout import BatchRef
    from bot.store.s3 import S3Store

    store, ref = S3Store.from_uri("s3://lab/cyto"), BatchRef(DATE, BATCH)
    checked = {"A01": params_mod.parse({"gating_file": "../panel.wsp"}), "A02": params_mod.parse({})}
    folder = f"s3://lab/cyto/Input/{DATE}/{BATCH}/"
    message = f"../panel.wsp is not in the batch folder {folder} (named for A01)"
    with pytest.raises(ParameterError, match=re.escape(message)):
        check_batch_files(store, ref, checked)
    s3.put_object(Bucket="lab", Key=f"cyto/Input/{DATE}/{BATCH}/panel.wsp", Body=b"<Workspace/>")
    check_batch_files(store, ref, checked)


def test_the_plan_refuses_a_missing_batch_gating_file_and_names_who_asked(cyto: Cyto) -> None:
    batch_root = Path(cyto.store.uri) / "Input" / DATE / BATCH
    write_batch(batch_root)
    with pytest.raises(BadParameters, match=r"gating_file: \.\./panel\.xml is not in the batch folder file://.*/"
                                            r"batch-9/ \(named for A01, A02\); put panel\.xml there"):
        cyto.plan(DATE, BATCH, pipeline="cytometry", params={"gating_file": "../panel.xml"})
    write_panel(batch_root / "panel.xml")
    plan = cyto.plan(DATE, BATCH, pipeline="cytometry", params={"gating_file": "../panel.xml"})
    assert plan.analyses == ["A01", "A02"]
    # an analysis's own params.json may name another batch file
    (batch_root / "A02" / "params.json").write_text(json.dumps({"gating_file": "../other.xml"}))
    with pytest.raises(BadParameters, match=r"\.\./other\.xml is not in the batch folder .* \(named for A02\)"):
        cyto.plan(DATE, BATCH, pipeline="cytometry", params={"gating_file": "../panel.xml"})


@pytest.mark.slow
def test_two_analyses_gated_by_one_batch_gatingml_file_through_cyto_run(cyto_env: dict[str, str]) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    expected = write_batch(store / "Input" / DATE / BATCH)
    write_panel(store / "Input" / DATE / BATCH / "panel.xml")
    result = invoke(cyto_env, "run", DATE, BATCH, "--pipeline", "cytometry", "--param", "gating_file=../panel.xml",
                    "--wait")
    assert result.exit_code == 0, result.output
    for analysis in ("A01", "A02"):
        found = counts(store / "Output" / DATE / BATCH / analysis / "stats.csv")
        assert found == {k.removeprefix(f"{analysis}/"): v for k, v in expected.items() if k.startswith(f"{analysis}/")}
        assert all(v["cells/FL1pos"] > 0 for v in found.values())
        summary = json.loads((store / "Output" / DATE / BATCH / analysis / "summary.json").read_text())
        assert summary["parameters"]["gating_file"] == "../panel.xml"


@pytest.mark.slow
@needs_data
def test_one_batch_workspace_gates_two_analyses_as_flowjo_counted(cyto: Cyto) -> None:
    workspace = WORKSPACES["diamond-biex"]
    batch_root = Path(cyto.store.uri) / "Input" / DATE / BATCH
    for analysis in ("A01", "A02"):
        (batch_root / analysis).mkdir(parents=True)
        for fcs_file in workspace.parent.glob("*.fcs"):
            shutil.copy(fcs_file, batch_root / analysis / fcs_file.name)
    shutil.copy(workspace, batch_root / "panel.wsp")
    plan = cyto.plan(DATE, BATCH, pipeline="cytometry", params={"gating_file": "../panel.wsp"})
    summary = cyto.wait(cyto.engine.start_run(plan, "tester").id, interval=0.2, timeout=seconds(300))
    assert summary.run.state == RunState.SUCCEEDED, summary
    stored = flowjo_counts(workspace)
    for analysis in ("A01", "A02"):
        found = counts(Path(cyto.store.uri) / "Output" / DATE / BATCH / analysis / "stats.csv")
        assert found and {k: v for k, v in found.items() if k in stored} == stored
