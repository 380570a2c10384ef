"""Parameters are checked at plan time, before anything is recorded or submitted (issue 12, case 5):
`cyto run … --param transfrom=arcsinh` used to be submitted and fail in every job, retried twice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bot.api import Cyto
from bot.cli import cli
from bot.engine import BadParameters
from bot.layout import BatchRef
from bot.parameters import LIST_OBJECTS_PER_ANALYSIS, LIST_PAGE, find_params_files
from bot.settings import Settings
from container import pipelines
from tests.aws.batch_setup import seed_objects
from tests.aws.conftest import Aws
from tests.spool_helpers import spool_job_names

pytest_plugins = ["tests.aws.conftest"]

DATE, BATCH = "2018-12-05", "b7"


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    store = Path(cyto_env["CYTO_STORE"])
    for name in ("A01", "A02", "A03"):
        path = store / "Input" / DATE / BATCH / name / "x.txt"
        path.parent.mkdir(parents=True)
        path.write_text(f"{name} hello world\n")
    return cyto_env


def params_json(env: dict[str, str], analysis: str, content: str | dict) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (Path(env["CYTO_STORE"]) / "Input" / DATE / BATCH / analysis / "params.json").write_text(text)


def refused(env: dict[str, str], *args: str) -> str:
    """Run `cyto run DATE BATCH args…`; assert exit 2 with one line and nothing recorded or submitted."""
    result = CliRunner().invoke(cli, ["run", DATE, BATCH, *args], env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    if Path(env["CYTO_DB"]).exists():
        with sqlite3.connect(env["CYTO_DB"]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    spool = Path(env["CYTO_LOCAL_SPOOL"])
    assert not spool.exists() or spool_job_names(spool) == []
    return lines[0]


def test_a_typo_in_the_run_parameters_is_refused_with_a_did_you_mean(batch: dict[str, str]) -> None:
    assert refused(batch, "--param", "transfrom=arcsinh") == \
        "cyto: unknown parameter 'transfrom' (did you mean 'transform'?)"


@pytest.mark.parametrize(("args", "message"), [
    (("--pipeline", "wordcount", "--params", '{"file": ["x.txt"]}'),
     "unknown parameter 'file' (did you mean 'files'?)"),
    (("--pipeline", "fasta-kmers", "--param", "k=13"), "k must be an integer from 1 to 12, got 13"),
    (("--pipeline", "r-script", "--param", "script=../shared.R"),
     "parameter 'script' ('../shared.R') must name a file"),
    (("--param", "cofactor=0"), "cofactor: must be > 0"),
])
def test_every_pipeline_checks_its_own_parameters(batch: dict[str, str], args: tuple[str, ...], message: str) -> None:
    assert message in refused(batch, *args)


def test_a_bad_key_in_one_analysis_params_json_names_that_analysis(batch: dict[str, str]) -> None:
    params_json(batch, "A01", {"transform": "arcsinh"})
    params_json(batch, "A02", {"transfrom": "arcsinh"})
    assert refused(batch) == "cyto: A02/params.json: unknown parameter 'transfrom' (did you mean 'transform'?)"


def test_a_params_json_that_is_not_json_is_refused_the_same_way(batch: dict[str, str]) -> None:
    params_json(batch, "A03", '{"transform": arcsinh}')
    assert refused(batch).startswith("cyto: A03/params.json is not valid JSON: Expecting value")


def test_the_merged_parameters_are_checked(batch: dict[str, str]) -> None:
    """logicle.w must be <= m / 2: valid in the run, made invalid by the analysis's own m."""
    params_json(batch, "A01", {"logicle": {"m": 0.5}})
    message = refused(batch, "--params", '{"logicle": {"w": 0.5}}')
    assert message.startswith("cyto: A01/params.json: logicle.w: must be <= logicle.m / 2")


def test_one_line_says_how_many_analyses_have_problems(batch: dict[str, str], cyto_env: dict[str, str]) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    for i in range(4, 9):
        (store / "Input" / DATE / BATCH / f"A{i:02d}").mkdir()
    for name in ("A08", "A03", "A05", "A06", "A04"):
        params_json(batch, name, {"colour": "red"})
    assert refused(batch, "--pipeline", "wordcount") == (
        "cyto: A03/params.json: unknown parameter 'colour'; known: files "
        "(parameter problems in A04, A05, A06 and 1 more too)")


def test_valid_parameters_pass_and_the_run_keeps_its_own(batch: dict[str, str]) -> None:
    params_json(batch, "A02", {"files": ["x.txt"]})
    params_json(batch, "A03", {})
    cyto = Cyto.from_env(batch)
    plan = cyto.plan(DATE, BATCH, pipeline="wordcount", params={"files": ["x.txt"]})
    assert plan.analyses == ["A01", "A02", "A03"] and plan.params == {"files": ["x.txt"]}
    # A missing named file is the job's to find (it reads the staged folder), not the plan's.
    params_json(batch, "A02", {"files": ["not-there.txt"]})
    assert cyto.plan(DATE, BATCH, pipeline="wordcount").analyses == ["A01", "A02", "A03"]


def test_a_params_json_deeper_in_the_folder_is_not_the_analysis_one(batch: dict[str, str]) -> None:
    nested = Path(batch["CYTO_STORE"]) / "Input" / DATE / BATCH / "A01" / "sub" / "params.json"
    nested.parent.mkdir()
    nested.write_text("not json at all")
    assert Cyto.from_env(batch).plan(DATE, BATCH, pipeline="wordcount").analyses == ["A01", "A02", "A03"]


def test_a_pipeline_without_a_check_is_not_checked(batch: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pipelines.PIPELINES, "crashing", "tests.crashing_pipeline")
    params_json(batch, "A01", "not json")
    plan = Cyto.from_env(batch).plan(DATE, BATCH, pipeline="crashing", params={"anything": 1})
    assert plan.params == {"anything": 1}


def test_the_engine_raises_bad_parameters_for_every_front_end(batch: dict[str, str]) -> None:
    cyto = Cyto.from_env(batch)
    with pytest.raises(BadParameters, match=r"^unknown parameter 'transfrom' \(did you mean 'transform'\?\)$"):
        cyto.run(DATE, BATCH, params={"transfrom": "arcsinh"})
    assert cyto.runs() == []


def test_analyses_with_many_files_are_asked_for_their_params_json_instead_of_listed_on(
        cyto_env: dict[str, str]) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    files = 3 * LIST_OBJECTS_PER_ANALYSIS  # a plate's worth of FCS files per analysis
    for i in range(1, 101):
        folder = store / "Input" / DATE / BATCH / f"A{i:03d}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"well-{f:02d}.fcs").write_bytes(b"")
    params_json(cyto_env, "A002", {"transform": "arcsinh"})
    params_json(cyto_env, "A090", {"transfrom": "arcsinh"})
    cyto = Cyto.from_env(cyto_env)
    names = [f"A{i:03d}" for i in range(1, 101)]
    listed, asked = find_params_files(cyto.store, BatchRef(DATE, BATCH), names)
    assert listed == {"A002": f"Input/{DATE}/{BATCH}/A002/params.json"}
    # The listing stopped after LIST_PAGE objects: 27 whole analyses of 36 (A002: 37) objects.
    assert LIST_PAGE == 1000 and asked == names[27:]
    with pytest.raises(BadParameters, match=r"^A090/params\.json: unknown parameter 'transfrom'"):
        cyto.plan(DATE, BATCH)


# -- on S3 (moto over HTTP) ----------------------------------------------------------------------


@pytest.fixture
def s3_cyto(aws: Aws, tmp_path: Path) -> Cyto:
    boto3.client("s3").create_bucket(Bucket="lab-bucket")
    return Cyto(Settings(store="s3://lab-bucket/lab", db=str(tmp_path / "runs.sqlite"),
                         local_spool=str(tmp_path / "spool"), default_pipeline="cytometry"))


def test_on_s3_only_the_params_json_that_exist_are_read(aws: Aws, s3_cyto: Cyto) -> None:
    store = s3_cyto.store
    prefix = f"Input/{DATE}/{BATCH}"
    for i in range(1, 121):
        store.write_bytes(f"{prefix}/A{i:03d}/sample.fcs", b"fcs")
        store.write_bytes(f"{prefix}/A{i:03d}/sub/params.json", b"not the analysis's own")
    for i in (7, 40, 41, 99):
        store.write_bytes(f"{prefix}/A{i:03d}/params.json", json.dumps({"transform": "arcsinh"}).encode())
    aws.middleware.reset()
    plan = s3_cyto.plan(DATE, BATCH)
    assert len(plan.analyses) == 120
    assert aws.calls("s3:GET") == 4  # one GetObject per params.json, none for the 116 without one

    store.write_bytes(f"{prefix}/A041/params.json", b'{"transfrom": "arcsinh"}')
    store.write_bytes(f"{prefix}/A099/params.json", b"[]")
    with pytest.raises(BadParameters) as caught:
        s3_cyto.plan(DATE, BATCH)
    assert str(caught.value) == ("A041/params.json: unknown parameter 'transfrom' (did you mean 'transform'?) "
                                 "(parameter problems in A099 too)")
    assert s3_cyto.runs() == []


def test_on_s3_a_batch_of_many_files_per_analysis_costs_one_listing_page_then_parallel_gets(
        aws: Aws, s3_cyto: Cyto) -> None:
    prefix = f"lab/Input/{DATE}/{BATCH}"
    files = 3 * LIST_OBJECTS_PER_ANALYSIS
    seed_objects("lab-bucket", [f"{prefix}/A{i:03d}/well-{f:02d}.fcs" for i in range(1, 81) for f in range(files)])
    s3_cyto.store.write_bytes(f"Input/{DATE}/{BATCH}/A003/params.json", b'{"transform": "arcsinh"}')
    s3_cyto.store.write_bytes(f"Input/{DATE}/{BATCH}/A070/params.json", b'{"transfrom": "arcsinh"}')
    aws.middleware.reset()
    with pytest.raises(BadParameters, match=r"^A070/params\.json: unknown parameter 'transfrom'"):
        s3_cyto.plan(DATE, BATCH)
    assert aws.calls("s3:ListObjectsV2") == 1 + 1  # the batch's analyses, then one page of its objects
    # A003's as listed; the 1,000 objects of the page cover 27 whole analyses, the other 53 are asked for.
    assert LIST_PAGE == 1000 and aws.calls("s3:GET") == 1 + 53
    assert s3_cyto.runs() == []
