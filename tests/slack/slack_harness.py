"""Helpers for the Slack bot's end-to-end tests: batches for the real `wordcount` pipeline, signed
requests, and `Served`, the bot over HTTP as Slack reaches it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier
from slack_stand_in import SlackStandIn

from handlers.cyto_bot import CytoBot
from tests.slack.server_thread import ServerThread
from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
CHANNEL = "CLAB"
USER = "UALICE"
DATE = "2018-12-05"


def make_batch(store: Path, batch: str, analyses: int, failing: tuple[str, ...] = (), date: str = DATE,
               prefix: str = "A") -> list[str]:
    """A batch for the wordcount pipeline; a failing analysis's params.json names a missing file."""
    names = [f"{prefix}{i:02d}" for i in range(1, analyses + 1)]
    for name in names:
        folder = store / "Input" / date / batch / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sample.txt").write_text(f"{name} counts words\n")
        if name in failing:
            (folder / "params.json").write_text(json.dumps({"files": ["missing.fcs"]}))
    return names


def fix_analysis(store: Path, batch: str, name: str, date: str = DATE) -> None:
    (store / "Input" / date / batch / name / "params.json").unlink()


def wait_for(condition: Callable[[], Any], timeout: float = seconds(15.0), what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def signed_headers(body: str, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}


def command_body(stand_in: SlackStandIn, text: str, user: str = USER, channel: str = CHANNEL,
                 trigger_id: str | None = None) -> str:
    """A `/cyto` slash command as Slack sends it; each has its own trigger_id unless one is given."""
    return urlencode({"token": "legacy", "team_id": "T0LAB", "team_domain": "lab", "channel_id": channel,
                      "channel_name": "lab", "user_id": user, "user_name": user.lower(), "command": "/cyto",
                      "text": text, "api_app_id": "A0CYTO", "response_url": stand_in.response_url(user),
                      "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.{int(time.time())}.abc"})


def click_body(stand_in: SlackStandIn, message_ts: str, action: dict[str, Any], user: str = USER,
               channel: str = CHANNEL) -> str:
    """A button click on a message, as Slack sends it."""
    payload = {
        "type": "block_actions", "team": {"id": "T0LAB", "domain": "lab"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0LAB"}, "api_app_id": "A0CYTO",
        "token": "legacy", "trigger_id": "1.2.3", "response_url": stand_in.response_url(user),
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "lab"},
        "message": {"type": "message", "ts": message_ts, "text": ""},
        "actions": [{**action, "block_id": action.get("block_id", "b"), "type": "button",
                     "action_ts": str(time.time())}],
    }
    return urlencode({"payload": json.dumps(payload)})


@dataclass
class Served:
    """The bot over HTTP, as Slack reaches it."""

    bot: CytoBot
    server: Any
    stand_in: SlackStandIn
    running: ServerThread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.effective_port}"

    def post(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(self.url + "/slack/events", data=body.encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=seconds(10)) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def command_body(self, text: str, user: str = USER, channel: str = CHANNEL, trigger_id: str | None = None) -> str:
        return command_body(self.stand_in, text, user, channel, trigger_id)

    def command(self, text: str, user: str = USER, channel: str = CHANNEL, trigger_id: str | None = None,
                **sign: Any) -> tuple[int, str]:
        body = self.command_body(text, user, channel, trigger_id)
        return self.post(body, signed_headers(body, **sign))

    def click(self, message_ts: str, action: dict[str, Any], user: str = USER, channel: str = CHANNEL,
              **sign: Any) -> tuple[int, str]:
        body = click_body(self.stand_in, message_ts, action, user, channel)
        return self.post(body, signed_headers(body, **sign))

    def interaction(self, payload: dict[str, Any], **sign: Any) -> tuple[int, str]:
        """An interactivity request (block_suggestion, view_submission, …) as Slack posts it."""
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, signed_headers(body, **sign))

    def suggest(self, view: dict[str, Any], values: dict[str, Any], query: str = "", user: str = USER) -> Any:
        """What the bot offers in the form's batch menu (a `block_suggestion` request)."""
        status, answer = self.interaction({
            "type": "block_suggestion", "user": {"id": user, "team_id": "T0LAB"}, "team": {"id": "T0LAB"},
            "api_app_id": "A0CYTO", "token": "legacy", "action_id": "batch", "block_id": "batch", "value": query,
            "container": {"type": "view", "view_id": "V0001"},
            "view": {**view, "id": "V0001", "state": {"values": values}}})
        assert status == 200, answer
        return json.loads(answer)

    def submit_view(self, view: dict[str, Any], values: dict[str, Any], user: str = USER) -> tuple[int, Any]:
        """Press the form's submit button (a `view_submission` request); returns the ack's body."""
        status, answer = self.interaction({
            "type": "view_submission", "user": {"id": user, "team_id": "T0LAB"}, "team": {"id": "T0LAB"},
            "api_app_id": "A0CYTO", "token": "legacy", "trigger_id": "1.2.4",
            "view": {**view, "id": "V0001", "state": {"values": values}}})
        return status, json.loads(answer) if answer.strip() else None

    def event(self, event: dict[str, Any], **sign: Any) -> tuple[int, str]:
        """An Events API callback (app_home_opened, …) as Slack posts it."""
        body = json.dumps({"token": "legacy", "team_id": "T0LAB", "api_app_id": "A0CYTO", "type": "event_callback",
                           "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()), "event": event})
        headers = {**signed_headers(body, **sign), "Content-Type": "application/json"}
        return self.post(body, headers)

    def drive(self, run_id: str, timeout: float = seconds(30.0)) -> None:
        """Call the poll step until the run has finished (jobs are real processes)."""
        deadline = time.monotonic() + timeout
        while True:
            poll_cycle(self.bot)
            if self.bot.cyto.engine.get_run(run_id).state.is_finished:
                return
            assert time.monotonic() < deadline, "run did not finish"
            time.sleep(0.05)

    def close(self) -> None:
        self.running.stop()
        self.bot.close()



def assert_valid_payloads(stand_in: SlackStandIn) -> None:
    """Every Block Kit payload the bot sent parses with slack_sdk's models and keeps Slack's limits."""
    for call in stand_in.calls:
        blocks = call.blocks
        assert len(blocks) <= 50, f"{call.method}: {len(blocks)} blocks"
        for raw in blocks:
            block = Block.parse(raw)
            assert block is not None, raw
            block.validate_json()
            assert block.to_dict() == raw
        if call.method in ("chat.postMessage", "chat.update"):
            assert call.params.get("text"), "messages need fallback text"


def poll_cycle(bot: CytoBot) -> None:
    """Both of the bot's scheduler jobs, one after the other, as a test drives them."""
    bot.poll()
    bot.slack_cycle()
