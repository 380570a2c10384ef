"""The `cyto` CLI as a user runs it: CliRunner for most cases, a real subprocess for the demo and
for a crash in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from tests.cli_helpers import invoke, write_two_analyses
from tests.timeouts import deadline_after, seconds

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    write_two_analyses(Path(cyto_env["CYTO_STORE"]))
    return cyto_env


def test_run_wait_succeeds_with_exit_0_and_status_logs_runs(batch: dict[str, str]) -> None:
    result = invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--wait")
    assert result.exit_code == 0, result.output
    run_id = result.output.split()[1].rstrip(":")
    assert "2 analyses: 2 succeeded" in result.output
    status = invoke(batch, "status", run_id)
    assert status.exit_code == 0 and "succeeded" in status.output
    runs = invoke(batch, "runs")
    assert run_id in runs.output and "2/2 ok" in runs.output
    logs = invoke(batch, "logs", run_id, "A01", "--tail", "3")
    assert logs.exit_code == 0 and "attempt 1" in logs.output
    assert invoke(batch, "batches").output.startswith("2018-12-05  1 batch: b7")
    assert invoke(batch, "batches", "2018-12-05").output == "b7  2 analyses\n"


def test_failures_give_exit_1_and_retry_needs_a_target(batch: dict[str, str]) -> None:
    store = Path(batch["CYTO_STORE"])
    (store / "Input/2018-12-05/b7/A02/params.json").write_text(json.dumps({"files": ["gone.txt"]}))
    result = invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--retries", "0", "--wait")
    assert result.exit_code == 1
    assert "✗ A02 (1 attempt): params.json names \"gone.txt\"" in result.output
    run_id = result.output.split()[1].rstrip(":")
    assert invoke(batch, "retry", run_id).exit_code == 2
    (store / "Input/2018-12-05/b7/A02/gone.txt").write_text("back\n")
    retried = invoke(batch, "retry", run_id, "--failed", "--wait")
    assert retried.exit_code == 0, retried.output
    assert "retrying A02" in retried.output


@pytest.mark.parametrize(("args", "message"), [
    (("run", "2018-02-30", "b7"), "not a real calendar date"),
    (("run", "2018-12-05", ".."), "batch name '..' is not allowed"),
    (("run", "2018-12-05", "b8"), "no batch 'b8' on 2018-12-05; batches on that date: b7"),
    (("run", "2018-12-05", "b7", "--pipeline", "nope"), "unknown pipeline 'nope'"),
    (("run", "2018-12-05", "b7", "--memory", "10"), "--memory 10 is out of range: 128M to 1024G"),
    (("run", "2018-12-05", "b7", "--param", "novalue"), "expected KEY=VALUE"),
    (("status", "zzzzzz"), "no run 'zzzzzz'"),
    (("batches", "yesterday"), "YYYY-MM-DD"),
])
def test_bad_input_is_one_clear_line_with_exit_2_and_nothing_recorded(batch: dict[str, str], args, message) -> None:
    result = CliRunner().invoke(cli, list(args), env=batch)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    if Path(batch["CYTO_DB"]).exists():
        with sqlite3.connect(batch["CYTO_DB"]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_bad_configuration_names_the_variable(batch: dict[str, str]) -> None:
    for env, message in (({"CYTO_EXECUTOR": "slurm"}, "CYTO_EXECUTOR='slurm'"),
                         ({"CYTO_POLL_SECONDS": "soon"}, "CYTO_POLL_SECONDS='soon'"),
                         ({"CYTO_EXECUTOR": "batch"}, "CYTO_BATCH_JOB_QUEUE")):
        result = CliRunner().invoke(cli, ["runs"], env={**batch, **env})
        assert result.exit_code == 2 and message in result.output, result.output


def test_database_from_a_newer_schema_exits_2(batch: dict[str, str]) -> None:
    invoke(batch, "runs")
    with sqlite3.connect(batch["CYTO_DB"]) as conn:
        conn.execute("UPDATE schema_version SET version = 42")
    result = CliRunner().invoke(cli, ["runs"], env=batch)
    assert result.exit_code == 2 and "newer than this cyto-bot understands" in result.output


def test_unreadable_store_exits_2(batch: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-store"
    result = CliRunner().invoke(cli, ["batches"], env={**batch, "CYTO_STORE": str(missing)})
    assert result.exit_code == 2 and "does not exist" in result.output


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in cli.commands.items():
        assert f"cyto {name}" in readme, f"README does not mention `cyto {name}`"
        assert command.help, f"`cyto {name}` has no help text"


def _cli_env(cyto_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CYTO_", "SLACK_"))}
    return {**env, **cyto_env, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_demo_as_a_new_user_runs_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CYTO_", "SLACK_", "XDG_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["HOME"] = str(tmp_path / "home")  # the defaults live under the user's home (bot/paths.py)
    # The console script that `pip install` made beside this interpreter, as a new user runs it.
    script = Path(sys.executable).with_name("cyto")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    result = subprocess.run([*command, "demo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=seconds(300))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 analyses: 2 succeeded, 1 failed" in result.stdout
    assert "  QC: 5 pass · 2 warn · 2 fail: B03 too few events (400); C01 unreadable" in result.stdout
    report = next(line for line in result.stdout.splitlines() if line.startswith("  report: "))
    assert report.endswith("report.html") and Path(report.removeprefix("  report: ")).is_file()
    assert "ERROR: no FCS file could be analysed" in result.stdout
    assert (tmp_path / "home" / "cyto-data" / "Output").is_dir()
    state = tmp_path / "home" / ".local" / "state" / "cyto-bot"
    assert [p.name for p in state.glob("*/runs.sqlite")] == ["runs.sqlite"]
    assert not (tmp_path / ".cyto").exists() and not (tmp_path / "cyto-data").exists()

    words = subprocess.run([*command, "demo", "--pipeline", "wordcount"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=seconds(120))
    assert words.returncode == 0, words.stdout + words.stderr
    assert "6 analyses: 5 succeeded, 1 failed" in words.stdout
    assert 'ERROR: params.json names "counts.txt"' in words.stdout


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_runs_every_analysis_exactly_once(cyto_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    store = Path(cyto_env["CYTO_STORE"])
    analyses = [f"S{i:02d}" for i in range(8)]
    for name in analyses:
        (store / "Input/2018-12-05/b7" / name).mkdir(parents=True)
        (store / "Input/2018-12-05/b7" / name / "x.txt").write_text(f"{name}\n")
    invocations = tmp_path / "invocations.txt"
    counting = tmp_path / "counting_entrypoint.py"
    counting.write_text(
        "import os, sys, time\n"
        f"with open({str(invocations)!r}, 'a') as fh:\n"
        "    fh.write(os.environ['CYTO_ANALYSIS'] + ' ' + os.environ['CYTO_ATTEMPT'] + '\\n')\n"
        "time.sleep(0.4)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'container.entrypoint'])\n")
    env = _cli_env({**cyto_env, "CYTO_LOCAL_MAX_PARALLEL": "2",
                    "CYTO_LOCAL_COMMAND": f"{sys.executable} {counting}"})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "2018-12-05", "b7", "--pipeline", "wordcount",
                             "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = deadline_after(30)
    while time.monotonic() < deadline and (not invocations.exists() or len(invocations.read_text().split("\n")) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_line = proc.stdout.read().splitlines()[0]
    run_id = first_line.split()[1].rstrip(":")
    done_before = len(invocations.read_text().splitlines())
    assert 0 < done_before < len(analyses)

    resumed = subprocess.run([sys.executable, "-m", "bot.cli", "status", run_id, "--wait"], env=env,
                             capture_output=True, text=True, timeout=seconds(120))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "8 analyses: 8 succeeded" in resumed.stdout
    lines = invocations.read_text().splitlines()
    assert sorted(lines) == sorted(f"{a} 1" for a in analyses)
    for name in analyses:
        assert (store / "Output/2018-12-05/b7" / name / "wordcount.json").exists()


def test_cancel_stops_running_and_queued_local_jobs(batch: dict[str, str], tmp_path: Path) -> None:
    store = Path(batch["CYTO_STORE"])
    for name in ("A03", "A04"):
        (store / "Input/2018-12-05/b7" / name).mkdir(parents=True)
    env = {**batch, "CYTO_LOCAL_MAX_PARALLEL": "1",
           "CYTO_LOCAL_COMMAND": f"{sys.executable} -c 'import time; print(\"working\", flush=True); time.sleep(60)'"}
    started = invoke(env, "run", "2018-12-05", "b7", "--pipeline", "wordcount")
    run_id = started.output.split()[1].rstrip(":")
    deadline = deadline_after(20)
    while "1 running" not in invoke(env, "status", run_id).output:
        assert time.monotonic() < deadline, "no job started"
        time.sleep(0.1)
    cancelled = invoke(env, "cancel", run_id)
    assert cancelled.exit_code == 0 and f"run {run_id}: cancelling" in cancelled.output
    assert "nothing to cancel" in invoke(env, "cancel", run_id).output
    final = CliRunner().invoke(cli, ["status", run_id, "--wait"], env=env)
    assert final.exit_code == 1, final.output
    assert "4 analyses: 4 cancelled" in final.output
    assert "cancelled" in invoke(env, "runs").output


def test_serve_without_tokens_names_them_and_exits_2(cyto_env: dict[str, str]) -> None:
    env = {**cyto_env, "SLACK_BOT_TOKEN": "", "SLACK_APP_TOKEN": "", "SLACK_SIGNING_SECRET": ""}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2 and "set SLACK_BOT_TOKEN and SLACK_APP_TOKEN" in result.output
    result = CliRunner().invoke(cli, ["serve", "--http"], env={**env, "SLACK_BOT_TOKEN": "xoxb-1"})
    assert result.exit_code == 2 and "set SLACK_SIGNING_SECRET" in result.output


def test_cancel_of_a_run_held_for_its_slack_thread_says_cancelled(batch: dict[str, str]) -> None:
    from bot.api import Cyto

    session = Cyto.from_env(batch)
    held = session.engine.start_run(session.plan("2018-12-05", "b7", pipeline="wordcount"), "U1", hold=True)
    result = invoke(batch, "cancel", held.id)
    assert result.exit_code == 0 and result.output.strip() == f"run {held.id}: cancelled"
    assert session.engine.get_run(held.id).state == "CANCELLED"
