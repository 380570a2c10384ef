"""`cyto serve --http` as a real process: /healthz, signed requests, and the scheduler in the same
process driving polls and Slack updates with nobody calling the poll step."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from slack_harness import ROOT, SECRET, TOKEN, USER, make_batch, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from bot.cli import cli
from tests.timeouts import seconds

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode(), headers=signed_headers(body), method="POST")
    with urllib.request.urlopen(request, timeout=seconds(10)) as response:
        return response.status, response.read().decode()


def test_cyto_serve_http_healthz_and_scheduler_driven_run(tmp_path: Path, stand_in: SlackStandIn) -> None:
    store = tmp_path / "store"
    make_batch(store, "batch-7", 3)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CYTO_STORE": str(store), "CYTO_DB": str(tmp_path / "db.sqlite"),
           "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_POLL_SECONDS": "0.2",
           "CYTO_DEFAULT_PIPELINE": "wordcount", "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_API_URL": stand_in.url}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def health() -> dict | None:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=seconds(1)) as response:
                    return json.loads(response.read())
            except OSError:
                return None

        status = wait_for(health, timeout=seconds(20), what="/healthz")
        assert status["ok"] is True and status["scheduler"] is True
        body = urlencode({"command": "/cyto", "text": "run 2018-12-05 batch-7", "user_id": USER,
                          "channel_id": "CLAB", "team_id": "T0LAB", "response_url": stand_in.response_url(),
                          "trigger_id": "1.2.3"})
        code, ack = post(base + "/slack/events", body)
        assert code == 200 and "Looking at" in ack
        # Nobody calls the poll step here: the scheduler in the serve process drives the run.
        alert = wait_for(lambda: [c for c in stand_in.calls_to("chat.postMessage") if "finished" in c.params["text"]],
                         timeout=seconds(30), what="done alert")
        assert alert[0].params["text"].startswith(f"<@{USER}> *2018-12-05/batch-7* finished: 3 succeeded")
        assert stand_in.calls_to("chat.update"), "root message edited by the scheduled sync"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=seconds(10))[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
    assert TOKEN not in output and SECRET not in output, "secrets are never logged"


def test_serve_refuses_to_start_without_its_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CYTO_DB", str(tmp_path / "db.sqlite"))
    result = CliRunner().invoke(cli, ["serve", "--http"])
    assert result.exit_code != 0 and "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET" in result.output
    result = CliRunner().invoke(cli, ["serve"])
    assert "SLACK_BOT_TOKEN and SLACK_APP_TOKEN" in result.output
