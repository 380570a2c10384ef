"""`cyto serve` in Socket Mode (no --http), started as production starts it: a subprocess with
SLACK_APP_TOKEN and SLACK_API_URL pointing at the local stand-ins. The bot opens a connection
through `apps.connections.open`, receives `hello` and a `slash_commands` envelope over a real
WebSocket on loopback (socket_mode_stand_in.py), acknowledges the envelope, and posts the run's
root message through the Web API stand-in; the scheduler in the same process drives the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_harness import CHANNEL, DATE, ROOT, TOKEN, USER, assert_valid_payloads, make_batch, wait_for
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from socket_mode_stand_in import APP_ID, SocketModeSlackStandIn

from tests.timeouts import seconds

pytestmark = pytest.mark.slow
APP_TOKEN = "xapp-1-A0CYTO-test-app-token"


@pytest.fixture
def slack() -> Iterator[SocketModeSlackStandIn]:
    server = SocketModeSlackStandIn()
    yield server
    server.close()
    assert_valid_payloads(server)
    assert server.socket_mode.protocol_errors == []


def command_payload(slack: SocketModeSlackStandIn, text: str, user: str = USER) -> dict[str, Any]:
    """A slash command as Socket Mode delivers it (the same fields as over HTTP, as JSON)."""
    return {"token": "legacy", "team_id": "T0LAB", "team_domain": "lab", "channel_id": CHANNEL,
            "channel_name": "lab", "user_id": user, "user_name": user.lower(), "command": "/cyto", "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": slack.response_url(user), "trigger_id": "1.2.3"}


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=seconds(10))[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0]
        raise AssertionError(f"cyto serve did not stop on SIGINT:\n{output}") from None


def test_cyto_serve_socket_mode_acks_the_envelope_and_posts_the_root_message(
        tmp_path: Path, slack: SocketModeSlackStandIn) -> None:
    store = tmp_path / "store"
    make_batch(store, "batch-7", 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "CYTO_"))}
    env.update({"PYTHONPATH": str(ROOT), "CYTO_STORE": str(store), "CYTO_DB": str(tmp_path / "db.sqlite"),
                "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_POLL_SECONDS": "0.2",
                "CYTO_DEFAULT_PIPELINE": "wordcount", "SLACK_BOT_TOKEN": TOKEN, "SLACK_APP_TOKEN": APP_TOKEN,
                "SLACK_API_URL": slack.url})
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        socket_mode = slack.socket_mode
        connection = socket_mode.wait_for_connection(timeout=seconds(20))
        [opened] = slack.calls_to("apps.connections.open")
        assert opened.response["url"].startswith(f"ws://127.0.0.1:{socket_mode.port}/link/?ticket=")
        assert connection.path.endswith(f"app_id={APP_ID}")

        # bad input: answered in the ack itself, nothing posted
        bad = socket_mode.send_envelope("slash_commands", command_payload(slack, "run 2018-12-05"))
        ack = socket_mode.wait_for_ack(bad)
        assert "`run` needs BATCH" in ack["payload"]["text"] and "/cyto run DATE BATCH" in ack["payload"]["text"]

        started = time.monotonic()
        envelope = socket_mode.send_envelope("slash_commands", command_payload(slack, f"run {DATE} batch-7"))
        ack = socket_mode.wait_for_ack(envelope)
        assert time.monotonic() - started < 3, "acknowledged within Slack's 3 s"
        assert ack["payload"] == {"text": f"Looking at {DATE}/batch-7…"}
        root = wait_for(lambda: slack.calls_to("chat.postMessage"), what="root message")[0]
        assert root.params["channel"] == CHANNEL and "thread_ts" not in root.params
        assert root.params["text"].startswith(f"<@{USER}> started *{DATE}/batch-7*: 3 analyses")

        # the scheduler in the same process drives the run to its done alert in the same thread
        alert = wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if "finished" in c.params["text"]],
                         timeout=seconds(30), what="done alert")[0]
        assert alert.params["thread_ts"] == root.ts
        assert alert.params["text"].startswith(f"<@{USER}> *{DATE}/batch-7* finished: 3 succeeded")
        assert [c.params["ts"] for c in slack.calls_to("chat.update")] and \
            all(c.params["ts"] == root.ts for c in slack.calls_to("chat.update"))
        assert len(socket_mode.acks(envelope)) == 1 and len(socket_mode.acks(bad)) == 1, "each envelope acked once"
        assert slack.count("apps.connections.open") == 1, "one connection, no reconnects"
        assert connection.pings >= 1, "the client checks the connection with pings, answered with pongs"
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    assert TOKEN not in output and APP_TOKEN not in output, "secrets are never logged"


def test_connections_open_wants_an_app_level_token(slack: SocketModeSlackStandIn) -> None:
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=slack.url).apps_connections_open(app_token=TOKEN)
    assert refused.value.response["error"] == "not_allowed_token_type"
    url = WebClient(base_url=slack.url).apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith("ws://127.0.0.1:")
