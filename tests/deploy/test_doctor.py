"""`cyto doctor` against the stack in moto and the Slack stand-in: green on a good set-up, one red
line per broken setting, exit code 1."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bot.cli import doctor
from bot.doctor import Check, run_checks
from bot.settings import Settings
from handlers.slack_check import SLACK_CHECKS
from tests.deploy.cfn_moto import REGION
from tests.deploy.conftest import GOOD_TOKEN, NARROW_TOKEN, SlackStandIn


def bot_env(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path, **changes: str) -> dict[str, str]:
    """The bot's environment as the stack's task definition sets it (tokens from the stand-in)."""
    env = {
        "CYTO_STORE": stack["Store"],
        "CYTO_EXECUTOR": "batch",
        "CYTO_BATCH_JOB_QUEUE": stack["JobQueue"],
        "CYTO_BATCH_JOB_DEFINITION": stack["JobDefinition"],
        "CYTO_LOG_GROUP": stack["LogGroup"],
        "CYTO_DB": str(tmp_path / "data" / "runs.sqlite"),
        "SLACK_BOT_TOKEN": GOOD_TOKEN,
        "SLACK_APP_TOKEN": "xapp-1-test",
        "SLACK_API_URL": slack.url,
    }
    env.update(changes)
    return env


def checks_for(env: dict[str, str]) -> list[Check]:
    return run_checks(Settings.from_env(env), front_end=[SLACK_CHECKS])


def failing(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if not c.ok]


def put(bucket: str, key: str) -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=b"x")


def test_all_green_on_the_stack(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    env = bot_env(stack, slack, tmp_path)
    layout = next(c for c in checks_for(env) if c.name == "Input/ layout")
    assert layout.ok and "no batches yet" in layout.detail  # a fresh stack is fine

    put(stack["Bucket"], "Input/2018-12-05/batch-7/A01/a.fcs")
    checks = checks_for(env)
    assert failing(checks) == [], "\n".join(c.line() for c in checks)
    assert [c.name for c in checks] == ["Slack token", "Slack scopes", "Slack app token", "AWS region", "Store bucket",
                                        "Input/ layout",
                                        "Batch job queue", "Batch compute environment", "Batch job definition",
                                        "Log group", "Run database"]
    assert "auth.test" in slack.calls

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == 11 and "✗" not in result.output

    put(stack["Bucket"], "Input/batch-7/A01/a.fcs")  # no date folder
    layout = next(c for c in checks_for(env) if c.name == "Input/ layout")
    assert not layout.ok and "Input/batch-7/" in layout.detail and "YYYY-MM-DD" in (layout.fix or "")


def _run_cli(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(doctor, [])
    return result.exit_code, result.output


def test_disabled_queue_is_its_own_red_line(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("batch", region_name=REGION).update_job_queue(jobQueue=stack["JobQueue"], state="DISABLED")
    code, output = _run_cli(bot_env(stack, slack, tmp_path), monkeypatch)
    assert code == 1
    red = [line for line in output.splitlines() if line.startswith("✗")]
    assert red == [f"✗ Batch job queue: {stack['JobQueue']} is DISABLED/VALID: not usable"], output
    assert f"fix: aws batch update-job-queue --job-queue {stack['JobQueue']} --state ENABLED" in output


def test_disabled_compute_environment(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path) -> None:
    batch = boto3.client("batch", region_name=REGION)
    env_arn = batch.describe_job_queues(jobQueues=[stack["JobQueue"]])["jobQueues"][0][
        "computeEnvironmentOrder"][0]["computeEnvironment"]
    batch.update_compute_environment(computeEnvironment=env_arn, state="DISABLED")
    checks = checks_for(bot_env(stack, slack, tmp_path))
    assert failing(checks) == ["Batch compute environment"]


def test_missing_bucket_is_its_own_red_line(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _run_cli(bot_env(stack, slack, tmp_path, CYTO_STORE="s3://no-such-lab-bucket"), monkeypatch)
    assert code == 1
    red = [line for line in output.splitlines() if line.startswith("✗")]
    assert len(red) == 1 and red[0].startswith("✗ Store bucket:") and "no-such-lab-bucket" in red[0], output
    assert "Store output" in output


def test_bad_token_is_its_own_red_line(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _run_cli(bot_env(stack, slack, tmp_path, SLACK_BOT_TOKEN="xoxb-revoked"), monkeypatch)
    assert code == 1
    red = [line for line in output.splitlines() if line.startswith("✗")]
    assert red == ["✗ Slack token: Slack refused SLACK_BOT_TOKEN (invalid_auth)"], output
    assert "Bot User OAuth Token" in output


def test_missing_scope(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path) -> None:
    checks = checks_for(bot_env(stack, slack, tmp_path, SLACK_BOT_TOKEN=NARROW_TOKEN))
    assert failing(checks) == ["Slack scopes"]
    scopes = next(c for c in checks if c.name == "Slack scopes")
    assert scopes.detail.startswith("missing commands") and "slack-manifest.yaml" in (scopes.fix or "")


def test_wrong_names_and_unreachable_slack(stack: dict[str, str], slack: SlackStandIn, tmp_path: Path) -> None:
    checks = checks_for(bot_env(stack, slack, tmp_path, CYTO_BATCH_JOB_QUEUE="other-queue",
                                CYTO_BATCH_JOB_DEFINITION="other-job", CYTO_LOG_GROUP="/aws/batch/other",
                                SLACK_API_URL="http://127.0.0.1:9/api/"))
    assert failing(checks) == ["Slack token", "Batch job queue", "Batch job definition", "Log group"]
    assert "cannot reach the Slack Web API" in checks[0].detail


def test_local_mode(tmp_path: Path) -> None:
    store = tmp_path / "cyto-data"
    env = {"CYTO_STORE": str(store), "CYTO_DB": str(tmp_path / "db" / "runs.sqlite"),
           "CYTO_LOCAL_SPOOL": str(tmp_path / "spool")}
    checks = run_checks(Settings.from_env(env))
    assert failing(checks) == ["Store folder"]
    (store / "Input" / "2018-12-05" / "b1" / "A01").mkdir(parents=True)
    checks = run_checks(Settings.from_env(env))
    assert failing(checks) == [], [c.line() for c in checks]
    assert [c.name for c in checks] == ["Store folder", "Input/ layout", "Run database", "Local job spool",
                                        "Local jobs"]

    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        checks = run_checks(Settings.from_env({**env, "CYTO_DB": str(readonly / "runs.sqlite")}))
        import os

        if os.geteuid() != 0:  # root writes anywhere
            assert failing(checks) == ["Run database"]
    finally:
        readonly.chmod(0o700)


def test_bad_configuration_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYTO_EXECUTOR", "batch")
    monkeypatch.delenv("CYTO_BATCH_JOB_QUEUE", raising=False)
    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 2 and result.output.startswith("✗ Configuration:")
