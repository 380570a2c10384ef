"""Runs and attempts own their files (issue 12, case 4): run-scoped logs, output folders that hold
one run's results whole, and a second unfinished run of a batch refused unless allowed, then kept
apart. Engine rules against the scripted executor; the rest end to end on the local executor with
the real entrypoint, through the CLI and the Python API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.api import Cyto
from bot.cli import cli
from bot.engine import BatchInUse, Engine
from bot.executors import JobStatus, Resources
from bot.executors.batch import submit_request
from bot.executors.local import LocalExecutor
from bot.executors.local_spool import JOBS, SPEC
from bot.ledger import RunDB
from bot.states import JobState, RunState
from bot.store.local import LocalStore
from container.staging import join_uri, upload_file
from tests.cli_helpers import invoke, write_two_analyses
from tests.scripted_executor import ScriptedExecutor
from tests.timeouts import deadline_after

DATE, BATCH = "2018-12-05", "b7"


# -- engine rules (scripted executor) -------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    store = LocalStore(tmp_path / "store")
    for name in ("A01", "A02"):
        store.write_bytes(f"Input/{DATE}/{BATCH}/{name}/x.txt", b"hello\n")
    return Engine(store, ScriptedExecutor(), RunDB(str(tmp_path / "runs.sqlite")))


def start(engine: Engine, by: str = "alice", allow_concurrent: bool = False):
    plan = engine.plan(DATE, BATCH, "wordcount", Resources(retries=0))
    return engine.start_run(plan, by, allow_concurrent=allow_concurrent)


def finish(engine: Engine, state: JobState = JobState.SUCCEEDED) -> None:
    """Every job submitted so far, of every run, ends in `state`."""
    executor = engine.executor
    assert isinstance(executor, ScriptedExecutor)
    for job_id in executor.specs:
        executor.states[job_id] = JobStatus(job_id, state, exit_code=0 if state == JobState.SUCCEEDED else 1,
                                            started_at=1.0, stopped_at=2.0)
    engine.poll()


def env_of(engine: Engine, run_id: str, analysis: str) -> dict[str, str]:
    executor = engine.executor
    assert isinstance(executor, ScriptedExecutor)
    [spec] = [s for s in executor.specs.values() if s.env.run_id == run_id and s.env.analysis == analysis]
    return spec.environment()


def test_a_queued_attempt_never_shows_the_log_of_an_earlier_run(engine: Engine, tmp_path: Path) -> None:
    first = start(engine)
    # The job of the first run leaves its log where the contract tells it to, as the entrypoint does.
    logs_uri = env_of(engine, first.id, "A01")["CYTO_LOGS_URI"]
    log_file = tmp_path / "job.log"
    log_file.write_text("first run's line\nERROR: first run's failure\n")
    upload_file(log_file, join_uri(logs_uri, "attempt-1.log"))
    finish(engine, JobState.FAILED)
    assert engine.log_excerpt(first.id, "A01").excerpt is not None, "the first run's own log is found"

    second = start(engine)
    assert engine.db.job(second.id, "A01").state == JobState.QUEUED
    log = engine.log_excerpt(second.id, "A01")
    assert log.excerpt is None and log.source is None, "no log yet: not the first run's"
    assert log.full_log == engine.store.uri_for(f"Logs/{DATE}/{BATCH}/A01/{second.id}/attempt-1.log")
    assert logs_uri == engine.store.uri_for(f"Logs/{DATE}/{BATCH}/A01/{first.id}/")
    assert env_of(engine, second.id, "A01")["CYTO_LOGS_URI"] == \
        engine.store.uri_for(f"Logs/{DATE}/{BATCH}/A01/{second.id}/")


def test_a_second_unfinished_run_is_refused_naming_the_active_one(engine: Engine) -> None:
    first = start(engine, by="U123")
    with pytest.raises(BatchInUse) as refused:
        start(engine, by="bob")
    message = str(refused.value)
    assert message.startswith(f"run {first.id} of {DATE}/{BATCH} is still active (started by U123 at ")
    assert "0/2 done); cancel it or pass --allow-concurrent" in message
    assert [r.id for r in engine.db.runs()] == [first.id], "nothing recorded"
    assert len(engine.executor.submit_calls) == 2, "nothing submitted"

    engine.cancel(first.id, by="U123")  # cancelling, its jobs still running: still unfinished
    assert engine.get_run(first.id).state == RunState.CANCELLING
    with pytest.raises(BatchInUse, match=f"run {first.id} of {DATE}/{BATCH} is still cancelling .* wait for it "
                                         "to stop or pass --allow-concurrent"):
        start(engine)


def test_an_allowed_concurrent_run_writes_its_own_output_folder(engine: Engine) -> None:
    first = start(engine)
    second = start(engine, allow_concurrent=True)
    assert (first.outputs_scoped, second.outputs_scoped) == (False, True)
    store = engine.store
    assert env_of(engine, first.id, "A01")["CYTO_OUTPUT_URI"] == store.uri_for(f"Output/{DATE}/{BATCH}/A01/")
    assert env_of(engine, second.id, "A01")["CYTO_OUTPUT_URI"] == \
        store.uri_for(f"Output/{DATE}/{BATCH}.run-{second.id}/A01/")
    assert engine.output_uri(second) == store.uri_for(f"Output/{DATE}/{BATCH}.run-{second.id}/")
    assert engine.db.active_run(DATE, BATCH).id == second.id, "the newest unfinished run"

    finish(engine)
    assert engine.db.active_run(DATE, BATCH) is None
    third = start(engine)
    assert not third.outputs_scoped, "alone again: the batch's own Output folder"


def test_a_finished_run_is_not_retried_into_the_folder_a_newer_active_run_writes(engine: Engine) -> None:
    first = start(engine)
    finish(engine, JobState.FAILED)
    second = start(engine, by="bob")  # the batch's own folder again
    with pytest.raises(BatchInUse, match=f"run {second.id} of {DATE}/{BATCH} is still active .*it writes the "
                                         f"same Output folder as run {first.id}: retry after it has finished"):
        engine.retry(first.id, "A01", by="alice")
    assert engine.db.job(first.id, "A01").attempt == 1, "nothing retried"

    third = start(engine, allow_concurrent=True)  # its own folder: retrying it is fine
    finish(engine, JobState.FAILED)
    assert engine.retry(third.id, "A01", by="alice") == ["A01"]
    assert engine.retry(second.id, "A01", by="alice") == ["A01"], "no other run writes its folder now"


def test_allow_concurrent_alone_uses_the_batch_folder(engine: Engine) -> None:
    run = start(engine, allow_concurrent=True)
    assert not run.outputs_scoped
    assert env_of(engine, run.id, "A02")["CYTO_OUTPUT_URI"] == engine.store.uri_for(f"Output/{DATE}/{BATCH}/A02/")


def test_both_executors_give_a_job_the_same_run_scoped_environment(engine: Engine, tmp_path: Path) -> None:
    start(engine)
    run = start(engine, allow_concurrent=True)
    executor = engine.executor
    assert isinstance(executor, ScriptedExecutor)
    [spec] = [s for s in executor.specs.values() if s.env.run_id == run.id and s.env.analysis == "A01"]

    local = LocalExecutor(tmp_path / "spool", 1)
    local_env = json.loads((tmp_path / "spool" / JOBS / local.submit(spec) / SPEC).read_text())["env"]
    batch = submit_request(spec, "queue", "definition", 1)["containerOverrides"]["environment"]
    assert local_env == {e["name"]: e["value"] for e in batch} == spec.env.to_env()
    assert local_env["CYTO_OUTPUT_URI"] == engine.store.uri_for(f"Output/{DATE}/{BATCH}.run-{run.id}/A01/")
    assert local_env["CYTO_LOGS_URI"] == engine.store.uri_for(f"Logs/{DATE}/{BATCH}/A01/{run.id}/")
    assert (local_env["CYTO_RUN_ID"], local_env["CYTO_ATTEMPT"]) == (run.id, "1")


# -- end to end: local executor, real entrypoint ---------------------------------------------------


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    write_two_analyses(Path(cyto_env["CYTO_STORE"]))
    return cyto_env


def run_id_of(output: str) -> str:
    return output.split()[1].rstrip(":")


def wait_until_finished(env: dict[str, str], run_id: str) -> None:
    finished = CliRunner().invoke(cli, ["status", run_id, "--wait"], env=env)
    assert "analyses:" in finished.output, finished.output


@pytest.mark.slow
def test_cyto_logs_of_a_queued_job_says_no_log_yet_not_the_earlier_runs(batch: dict[str, str]) -> None:
    first = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount", "--wait")
    assert first.exit_code == 0, first.output
    earlier = invoke(batch, "logs", run_id_of(first.output), "A02")
    assert "succeeded" in earlier.output, "the first run's log is there"

    # One slot, taken by A01's long job: A02 of the second run stays queued.
    env = {**batch, "CYTO_LOCAL_MAX_PARALLEL": "1",
           "CYTO_LOCAL_COMMAND": f"{sys.executable} -c 'import time; print(\"working\", flush=True); time.sleep(60)'"}
    second = invoke(env, "run", DATE, BATCH, "--pipeline", "wordcount")
    run_id = run_id_of(second.output)
    deadline = deadline_after(20)
    while "1 running" not in (status := invoke(env, "status", run_id).output):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert "1 queued" in status
    store = Path(batch["CYTO_STORE"])
    logs = invoke(env, "logs", run_id, "A02")
    assert logs.exit_code == 0
    full_log = f"{store.as_uri()}/Logs/{DATE}/{BATCH}/A02/{run_id}/attempt-1.log"
    assert logs.output == f"A02, attempt 1 (full log: {full_log})\nno log yet\n"
    invoke(env, "cancel", run_id)
    wait_until_finished(env, run_id)


@pytest.mark.slow
def test_a_later_run_leaves_no_file_of_the_earlier_one_beside_its_results(batch: dict[str, str]) -> None:
    store = Path(batch["CYTO_STORE"])
    first = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount", "--wait")
    assert first.exit_code == 0, first.output
    folder = store / f"Output/{DATE}/{BATCH}/A01"
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "wordcount.json"]

    # The second run's A01 fails (its params.json names a missing file) and writes no counts.
    (store / f"Input/{DATE}/{BATCH}/A01/params.json").write_text(json.dumps({"files": ["gone.txt"]}))
    second = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount", "--retries", "0", "--wait")
    assert second.exit_code == 1, second.output
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"], "the first run's counts are gone"
    result = json.loads((folder / "result.json").read_text())
    assert (result["run_id"], result["attempt"], result["status"]) == (run_id_of(second.output), 1, "failed")
    assert result["outputs"] == []
    for analysis in ("A01", "A02"):
        for run in (first, second):
            assert (store / f"Logs/{DATE}/{BATCH}/{analysis}/{run_id_of(run.output)}/attempt-1.log").exists()


@pytest.mark.slow
def test_concurrent_run_refused_with_exit_2_then_allowed_and_kept_apart(batch: dict[str, str]) -> None:
    store = Path(batch["CYTO_STORE"])
    first = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount")
    assert first.exit_code == 0, first.output
    first_id = run_id_of(first.output)

    refused = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount")
    assert refused.exit_code == 2
    assert refused.output.startswith(f"cyto: run {first_id} of {DATE}/{BATCH} is still active (started by ")
    assert "cancel it or pass --allow-concurrent" in refused.output and refused.output.count("\n") == 1
    assert [r.id for r in RunDB(batch["CYTO_DB"]).runs()] == [first_id], "nothing recorded"

    allowed = invoke(batch, "run", DATE, BATCH, "--pipeline", "wordcount", "--allow-concurrent")
    assert allowed.exit_code == 0, allowed.output
    second_id = run_id_of(allowed.output)
    assert f"this run writes to {store.as_uri()}/Output/{DATE}/{BATCH}.run-{second_id}/" in allowed.output
    wait_until_finished(batch, first_id)
    wait_until_finished(batch, second_id)

    for run_id, folder in ((first_id, BATCH), (second_id, f"{BATCH}.run-{second_id}")):
        for analysis in ("A01", "A02"):
            out = store / "Output" / DATE / folder / analysis
            assert sorted(p.name for p in out.iterdir()) == ["result.json", "wordcount.json"]
            assert json.loads((out / "result.json").read_text())["run_id"] == run_id
    assert sorted(p.name for p in (store / "Output" / DATE).iterdir()) == [BATCH, f"{BATCH}.run-{second_id}"]


@pytest.mark.slow
def test_python_api_refuses_then_allows_a_concurrent_run(cyto: Cyto) -> None:
    store = Path(cyto.store.uri)
    (store / f"Input/{DATE}/{BATCH}/A01").mkdir(parents=True)
    (store / f"Input/{DATE}/{BATCH}/A01/x.txt").write_text("hello\n")
    first = cyto.run(DATE, BATCH, pipeline="wordcount")
    with pytest.raises(BatchInUse, match=f"run {first.id} of {DATE}/{BATCH} is still active"):
        cyto.run(DATE, BATCH, pipeline="wordcount")
    second = cyto.run(DATE, BATCH, pipeline="wordcount", allow_concurrent=True)
    assert second.outputs_scoped
    for run in (first, second):
        assert cyto.wait(run.id).run.state == RunState.SUCCEEDED
    assert json.loads((store / f"Output/{DATE}/{BATCH}.run-{second.id}/A01/result.json").read_text())["run_id"] == \
        second.id
    assert json.loads((store / f"Output/{DATE}/{BATCH}/A01/result.json").read_text())["run_id"] == first.id
