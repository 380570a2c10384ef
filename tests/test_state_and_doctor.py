"""State in one place per user (the same store, run database and spool from any directory, for the
CLI and the Python API), reading commands that are current, and a doctor whose verdicts and hints
can be trusted. Through the installed `cyto` script where the working directory matters."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.executors.local import LocalExecutor
from bot.ledger import CORE, RunDB
from bot.settings import Settings
from bot.states import JobState, RunState
from handlers.slack_check import check_app_token
from tests.timeouts import deadline_after, seconds

ROOT = Path(__file__).resolve().parent.parent


def user_env(home: Path) -> dict[str, str]:
    """A new user's environment: no CYTO_*, SLACK_* or XDG_* variables, HOME in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CYTO_", "SLACK_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return env


def cyto(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("cyto")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=seconds(120))


def seed(store: Path, analyses: tuple[str, ...] = ("A01", "A02")) -> None:
    for name in analyses:
        path = store / "Input/2018-12-05/b7" / name / "x.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name} hello world\n")


@pytest.mark.slow
def test_one_history_from_any_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_env(home)
    seed(home / "cyto-data")
    here, there = tmp_path / "project", tmp_path / "elsewhere" / "notebooks"
    here.mkdir()
    there.mkdir(parents=True)

    started = cyto(env, here, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--wait")
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.split()[1].rstrip(":")

    listed = cyto(env, there, "runs")
    assert run_id in listed.stdout and "2/2 ok" in listed.stdout, listed.stdout + listed.stderr
    assert not (here / ".cyto").exists() and not (there / ".cyto").exists() and not (there / "cyto-data").exists()

    state = home / ".local" / "state" / "cyto-bot" / f"local@{str(home / 'cyto-data').strip('/').replace('/', '-')}"
    assert (state / "runs.sqlite").is_file() and (state / "local-jobs").is_dir()

    # The Python API (what the notebooks use), started in another folder, sees the same run.
    api = subprocess.run([sys.executable, "-c", "from bot.api import Cyto; c = Cyto.from_env(); "
                          "print(c.settings.db); print([r.id for r in c.runs()])"],
                         cwd=there, env=env, capture_output=True, text=True, timeout=seconds(60))
    assert api.stdout.splitlines() == [str(state / "runs.sqlite"), str([run_id])], api.stderr

    doctor = cyto(env, there, "doctor")
    assert f"✓ Store folder: {home / 'cyto-data'} is reachable (CYTO_STORE)" in doctor.stdout
    assert f"✓ Run database: {state / 'runs.sqlite'} is writable; schema core {CORE.version} (CYTO_DB)" in doctor.stdout
    assert f"✓ Local job spool: {state / 'local-jobs'} is writable (CYTO_LOCAL_SPOOL)" in doctor.stdout
    assert "Slack not checked" in doctor.stdout and "Slack token" not in doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


def test_state_folders_are_per_store_and_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    local = Settings.from_env({"CYTO_STORE": str(tmp_path / "lab")})
    again = Settings.from_env({"CYTO_STORE": str(tmp_path / "lab") + "/"})
    other = Settings.from_env({"CYTO_STORE": str(tmp_path / "other")})
    s3 = Settings.from_env({"CYTO_STORE": "s3://lab-bucket/cyto", "CYTO_EXECUTOR": "batch",
                            "CYTO_BATCH_JOB_QUEUE": "q", "CYTO_BATCH_JOB_DEFINITION": "d"})
    assert local.db == again.db and Path(local.db).parent.parent == tmp_path / "state" / "cyto-bot"
    assert local.db != other.db
    assert s3.db == str(tmp_path / "state" / "cyto-bot" / "batch@s3-lab-bucket-cyto" / "runs.sqlite")
    assert Settings.from_env({"CYTO_DB": str(tmp_path / "mine.sqlite")}).db == str(tmp_path / "mine.sqlite")


def test_runs_and_status_are_current_without_wait(cyto_env: dict[str, str]) -> None:
    seed(Path(cyto_env["CYTO_STORE"]))
    started = CliRunner().invoke(cli, ["run", "2018-12-05", "b7", "--pipeline", "wordcount"], env=cyto_env)
    assert started.exit_code == 0, started.output
    run_id = started.output.split()[1].rstrip(":")
    # The jobs finish while nobody records it: ask the executor itself, not the run database.
    ids = [a.executor_job_id for _, a in RunDB(cyto_env["CYTO_DB"]).jobs_with_attempts(run_id)]
    executor = LocalExecutor(cyto_env["CYTO_LOCAL_SPOOL"])
    deadline = deadline_after(60)
    while any(s.state != JobState.SUCCEEDED for s in executor.describe(ids).values()) or \
            len(executor.describe(ids)) < 2:
        assert time.monotonic() < deadline, "the local jobs did not finish"
        time.sleep(0.1)
    assert RunDB(cyto_env["CYTO_DB"]).run(run_id).state == RunState.ACTIVE  # the ledger is behind
    listed = CliRunner().invoke(cli, ["runs"], env=cyto_env)
    assert f"{run_id}  2018-12-05/b7" in listed.output and "succeeded" in listed.output, listed.output
    assert "2/2 ok" in listed.output


# -- the doctor ---------------------------------------------------------------------------------------
def doctor(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, ["doctor", *args], env=env)


def run_fix(output: str, env: dict[str, str]) -> dict[str, str]:
    """Run the hint's command (the part before two spaces) in a shell, as a user would paste it;
    `export NAME=VALUE` hints change `env`."""
    fix = next(line.strip().removeprefix("fix: ") for line in output.splitlines() if line.strip().startswith("fix:"))
    command = fix.split("  ")[0]
    if command.startswith("export "):
        name, _, value = command.removeprefix("export ").partition("=")
        return {**env, name: shlex.split(value)[0]}
    subprocess.run(["bash", "-c", command], check=True, env={**os.environ, **env})
    return env


def test_doctor_hints_are_commands_that_work(cyto_env: dict[str, str], tmp_path: Path) -> None:
    missing = doctor(cyto_env)
    assert missing.exit_code == 1 and f"fix: mkdir -p {cyto_env['CYTO_STORE']}" in missing.output
    run_fix(missing.output, cyto_env)
    assert doctor(cyto_env).exit_code == 0

    seed(Path(cyto_env["CYTO_STORE"]))
    inside = {**cyto_env, "CYTO_STORE": cyto_env["CYTO_STORE"] + "/Input/2018-12-05"}
    wrong = doctor(inside)
    assert wrong.exit_code == 1
    assert "points inside the store's Input/ folder" in wrong.output
    fixed = run_fix(wrong.output, inside)
    assert fixed["CYTO_STORE"] == cyto_env["CYTO_STORE"]
    assert doctor(fixed).exit_code == 0


def test_doctor_runs_a_no_op_job_with_the_local_command(cyto_env: dict[str, str], tmp_path: Path) -> None:
    Path(cyto_env["CYTO_STORE"]).mkdir()
    good = doctor(cyto_env)
    assert good.exit_code == 0 and "✓ Local jobs: a no-op job ran in" in good.output, good.output
    broken = tmp_path / "broken-job"
    broken.write_text("#!/bin/sh\necho 'python3.9: No module named container' >&2\nexit 1\n")
    broken.chmod(0o755)
    result = doctor({**cyto_env, "CYTO_LOCAL_COMMAND": str(broken)})
    assert result.exit_code == 1
    assert (f"✗ Local jobs: a no-op job failed with `{broken}`: exit code 1; its log ends: "
            "python3.9: No module named container") in result.output
    assert "fix: unset CYTO_LOCAL_COMMAND" in result.output


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CYTO_DEFAULT_PIPELINE", "cytometri", "CYTO_DEFAULT_PIPELINE='cytometri' is not a pipeline: did you mean "
                                           "'cytometry'?"),
    ("CYTO_STORE", "s3:/bad", "CYTO_STORE='s3:/bad': expected a folder or s3://bucket[/prefix]"),
])
def test_configuration_errors_exit_2(cyto_env: dict[str, str], name: str, value: str, message: str) -> None:
    result = doctor({**cyto_env, name: value})
    assert result.exit_code == 2 and result.output.startswith(f"✗ Configuration: {message}"), result.output
    run = CliRunner().invoke(cli, ["runs"], env={**cyto_env, name: value})
    assert run.exit_code == 2 and message in run.output


def test_slack_checks_run_only_when_slack_is_configured(cyto_env: dict[str, str]) -> None:
    Path(cyto_env["CYTO_STORE"]).mkdir()
    quiet = doctor(cyto_env)
    assert "Slack" not in quiet.output.replace("(Slack not checked", "") and quiet.exit_code == 0
    asked = doctor({**cyto_env, "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "http://127.0.0.1:9/"})
    assert "✗ Slack token: cannot reach the Slack Web API" in asked.output and asked.exit_code == 1
    assert "Slack" not in doctor({**cyto_env, "SLACK_BOT_TOKEN": "xoxb-1"}, "--no-slack").output


def test_socket_mode_needs_an_app_token() -> None:
    assert not check_app_token(Settings(slack_bot_token="xoxb-1")).ok
    assert "SLACK_APP_TOKEN" in (check_app_token(Settings(slack_bot_token="xoxb-1")).fix or "")
    assert not check_app_token(Settings(slack_app_token="xoxb-wrong")).ok
    assert check_app_token(Settings(slack_app_token="xapp-1-a")).ok
    http_only = check_app_token(Settings(slack_signing_secret="s"))
    assert http_only.ok and "cyto serve --http" in http_only.detail


def test_gitignore_keeps_state_out_of_git() -> None:
    assert ".cyto/" in (ROOT / ".gitignore").read_text().splitlines()
