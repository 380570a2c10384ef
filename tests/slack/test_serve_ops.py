"""`cyto serve` as an operator sees it: quiet, safe logs with one audit line per command and
button, one line and exit 2 when Slack or AWS is down at start, never a 500 for a bad header or an
absurd number, and a /healthz that fails (503, with the reason) when the bot is broken."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from serve_process import free_port, serve_env, start_serve
from slack_harness import CHANNEL, DATE, ROOT, USER, click_body, make_batch, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from tests.timeouts import seconds

pytestmark = pytest.mark.slow


def test_logs_hold_no_request_bodies_no_chatter_and_one_audit_line_per_command_and_button(
        tmp_path: Path, stand_in: SlackStandIn, store: Path) -> None:
    make_batch(store, "batch-7", 3, failing=("A02",))
    bot = start_serve(tmp_path, stand_in, store, poll_seconds=0.2)
    try:
        before = bot.log_path.stat().st_size
        big = "payload=" + "x" * 1_000_000 + "&response_url=" + stand_in.response_url("leak")
        for _ in range(10):
            assert bot.post(big, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
        wait_for(lambda: bot.log().count("bad or missing Slack signature") == 10, what="ten short lines")
        assert bot.log_path.stat().st_size - before < 5_000, "unsigned bodies never reach the log"

        body = "command=%2Fcyto&text=help"
        assert bot.post(body, {**signed_headers(body), "X-Slack-Request-Timestamp": "not-a-number"})[0] == 401
        status, ack = bot.command(f"run {DATE} batch-7 memory={'9' * 400}G")
        assert status == 200 and "far too large" in ack

        bot.command(f"run {DATE} batch-7 retries=0")
        run = wait_for(lambda: (r := bot.db.runs(1)) and r[0].state.is_finished and r[0], timeout=seconds(60),
                       what="run")
        reply = wait_for(lambda: [c for c in stand_in.calls_to("chat.postMessage")
                                  if "failed for good" in json.dumps(c.blocks)], what="failure reply")[0]
        retry = next(e for b in reply.blocks if b["type"] == "actions" for e in b["elements"])
        click = click_body(stand_in, reply.ts, retry)
        assert bot.post(click, signed_headers(click))[0] == 200
        wait_for(lambda: f"button {retry['action_id']} by {USER}" in bot.log(), what="button audit line")
    finally:
        log = bot.stop()
    assert "leak" not in log and "respond/" not in log and "x" * 100 not in log
    assert log.count(f"/cyto run by {USER} in {CHANNEL}: ") == 2  # the refused memory and the real run
    assert f"/cyto run by {USER} in {CHANNEL}: run {run.id}" in log
    assert f"button {retry['action_id']} by {USER} in {CHANNEL}: run {run.id} A02 (done)" in log
    for chatter in ("Running job", "executed successfully", "maximum number of running instances",
                    "will be unused", "Traceback"):
        assert chatter not in log, chatter
    assert len(log.splitlines()) < 40, log


def start_and_fail(tmp_path: Path, stand_in: SlackStandIn, store: Path, **env: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1",
                           "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=seconds(120),
                          env=serve_env(tmp_path, stand_in, store, 0.5, **env))
    return proc.returncode, proc.stdout + proc.stderr


def test_slack_down_or_token_refused_at_start_is_one_line_and_exit_2(tmp_path: Path, stand_in: SlackStandIn,
                                                                      store: Path) -> None:
    code, output = start_and_fail(tmp_path, stand_in, store, SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert output.startswith("cyto: cannot start: Slack (http://127.0.0.1:") and "unreachable" in output
    stand_in.auth_error = "invalid_auth"
    code, output = start_and_fail(tmp_path, stand_in, store)
    assert code == 2 and output.strip() == ("cyto: cannot start: Slack (" + stand_in.url + ") refused the bot "
                                            "token (invalid_auth); check SLACK_BOT_TOKEN"), output


def test_aws_down_at_start_is_one_line_and_exit_2(tmp_path: Path, stand_in: SlackStandIn, store: Path) -> None:
    code, output = start_and_fail(
        tmp_path, stand_in, store, CYTO_EXECUTOR="batch", CYTO_STORE="s3://lab-bucket",
        CYTO_BATCH_JOB_QUEUE="cyto-queue", CYTO_BATCH_JOB_DEFINITION="cyto-job", AWS_DEFAULT_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_MAX_ATTEMPTS="1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert output.startswith("cyto: cannot start: the batch executor is unreachable or unusable"), output


def test_healthz_fails_with_the_reason(tmp_path: Path, stand_in: SlackStandIn, store: Path) -> None:
    make_batch(store, "batch-7", 2)
    make_batch(store, "batch-8", 2)
    # jobs that keep running, so that every poll has work to record
    sleeper = f"{sys.executable} -c 'import time; time.sleep(120)'"
    bot = start_serve(tmp_path, stand_in, store, poll_seconds=0.3, CYTO_LOCAL_COMMAND=sleeper)
    try:
        status, health = wait_for(lambda: (h := bot.health()) and h[1]["last_poll_s_ago"] is not None and h,
                                  what="first poll")
        assert status == 200 and health["ok"] and health["outbox_backlog"] == {}
        bot.command(f"run {DATE} batch-7")
        wait_for(lambda: (r := bot.db.runs(1)) and r[0].state == "ACTIVE", what="run released")

        # the poll is blocked (another process holds the database's write lock) for > 3 intervals
        blocker = sqlite3.connect(tmp_path / "db.sqlite", timeout=seconds(10))
        blocker.execute("BEGIN IMMEDIATE")
        try:
            status, health = wait_for(lambda: (h := bot.health()) and h[0] == 503 and h, timeout=seconds(30),
                                      what="503 for a stalled poll")
            assert any(p.startswith("no successful poll for") for p in health["problems"]), health
        finally:
            blocker.rollback()
            blocker.close()
        wait_for(lambda: bot.health()[0] == 200, timeout=seconds(30), what="healthy again")

        # Slack refuses the token: the root post is refused, the run stays held, /healthz says why
        stand_in.auth_error = "invalid_auth"
        bot.command(f"run {DATE} batch-8 retries=0")  # batch-7's run is still going
        status, health = wait_for(lambda: (h := bot.health()) and h[0] == 503
                                  and h[1].get("outbox_backlog", {}).get("root") and h, what="503 for invalid_auth")
        assert "Slack refuses the bot token (invalid_auth)" in health["problems"]
        assert health["outbox_backlog"]["root"] == 1
        run = bot.db.runs(1)[0]
        assert run.state == "HELD" and bot.db.jobs(run.id)[0].state == "PENDING"

        # the database is gone
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp_path / 'db.sqlite'}{suffix}").unlink(missing_ok=True)
        status, health = wait_for(lambda: (h := bot.health()) and h[0] == 503
                                  and any("database" in p for p in h[1]["problems"]) and h, what="503 for the db")
        assert any("no longer exists" in p for p in health["problems"]), health
    finally:
        bot.stop()
    assert os.environ.get("SLACK_BOT_TOKEN", "xoxb-test-token") not in bot.log()
