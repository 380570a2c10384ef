"""Slack the way Slack apps work: `/cyto run` alone opens a form (views.open), the batch menu asks
the bot (block_suggestion), submitting it is checked like the CLI with errors on the fields
(view_submission) and starts the run in the channel; the App Home tab lists recent runs
(views.publish); the typed grammar takes timeout and storage. Over signed HTTP into the served bot,
with the Slack stand-in, the real local executor and the real wordcount pipeline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_harness import CHANNEL, ROOT, SECRET, TOKEN, USER, Served, make_batch, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from handlers.modal import FORM
from tests.timeouts import seconds

pytestmark = pytest.mark.slow


def values(date: str | None = "2018-12-05", batch: str | None = "batch-7", pipeline: str = "wordcount",
           **texts: str) -> dict[str, Any]:
    """The form's state as Slack sends it in block_suggestion and view_submission."""
    state: dict[str, Any] = {
        "date": {"date": {"type": "datepicker", "selected_date": date}},
        "batch": {"batch": {"type": "external_select",
                            "selected_option": {"text": {"type": "plain_text", "text": batch}, "value": batch}
                            if batch else None}},
        "pipeline": {"pipeline": {"type": "static_select", "selected_option": {
            "text": {"type": "plain_text", "text": pipeline}, "value": pipeline}}},
    }
    for name in ("params", "vcpus", "memory", "storage", "timeout", "retries"):
        state[name] = {name: {"type": "plain_text_input", "value": texts.get(name)}}
    return state


def open_form(served: Served, trigger_id: str = "1.2.3") -> dict[str, Any]:
    before = len(served.stand_in.views)
    status, ack = served.command("run", trigger_id=trigger_id)
    assert status == 200 and "Looking at" not in ack
    method, view = wait_for(lambda: served.stand_in.views[before:], what="views.open")[0]
    assert method == "views.open" and view["callback_id"] == FORM
    return view


def test_the_form_opens_suggests_batches_checks_fields_and_starts_the_run(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 3)
    make_batch(store, "other", 1)
    make_batch(store, "old", 2, date="2018-11-01")
    view = open_form(served)
    call = served.stand_in.calls_to("views.open")[-1]
    assert call.params["trigger_id"] == "1.2.3"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert blocks["date"]["element"]["initial_date"] == "2018-12-05"  # the newest date in the store
    assert blocks["pipeline"]["element"]["initial_option"]["value"] == "wordcount"
    assert set(blocks) == {"date", "batch", "pipeline", "params", "vcpus", "memory", "storage", "timeout", "retries"}
    assert json.loads(view["private_metadata"]) == {"channel": CHANNEL}

    offered = served.suggest(view, values(batch=None))
    assert [(o["value"], o["text"]["text"]) for o in offered["options"]] == [
        ("batch-7", "batch-7 (3 analyses)"), ("other", "other (1 analysis)")]
    assert [o["value"] for o in served.suggest(view, values(batch=None), query="oth")["options"]] == ["other"]
    assert [o["value"] for o in served.suggest(view, values(date="2018-11-01", batch=None))["options"]] == ["old"]

    # Checked like the CLI, each refusal on its own field; nothing recorded.
    status, answer = served.submit_view(view, values(memory="10", timeout="soon", params="[1, 2]", vcpus="many"))
    assert status == 200 and answer["response_action"] == "errors"
    assert answer["errors"] == {
        "memory": "10 is out of range: 128M to 1024G",
        "timeout": "`soon` is not a duration: write seconds (3600) or with units (90s, 30m, 2h, 1h30m)",
        "params": "write one object of KEY: VALUE pairs, not a list",
        "vcpus": "`many` is not a number",
    }
    assert served.stand_in.views[-1][0] == "views.open"
    _, missing = served.submit_view(view, values(batch="batch-8"))
    assert missing["errors"].keys() == {"batch"} and "no batch 'batch-8'" in missing["errors"]["batch"]
    _, typo = served.submit_view(view, values(params='{"filez": ["a.txt"]}'))
    assert typo["errors"].keys() == {"params"} and "did you mean 'files'" in typo["errors"]["params"]
    assert served.bot.cyto.engine.db.runs() == []

    status, answer = served.submit_view(view, values(params="files: [sample.txt]", memory="1G", timeout="2h",
                                                     retries="0"))
    assert status == 200 and answer is None  # an empty ack closes the form
    root = wait_for(lambda: served.stand_in.calls_to("chat.postMessage"), what="root message")[0]
    assert root.params["channel"] == CHANNEL
    assert root.params["text"].startswith(f"<@{USER}> started *2018-12-05/batch-7*: 3 analyses")
    run = served.bot.cyto.engine.db.runs(1)[0]
    assert run.params == {"files": ["sample.txt"]} and run.requested_by == USER
    assert (run.resources["memory_mib"], run.resources["timeout_s"], run.resources["retries"]) == (1024, 7200, 0)
    served.drive(run.id)
    assert served.bot.cyto.engine.get_run(run.id).state.value == "SUCCEEDED"

    # The App Home tab lists it, with a link to its thread.
    status, _ = served.event({"type": "app_home_opened", "user": USER, "channel": "D0HOME", "tab": "home"})
    assert status == 200
    _, home = wait_for(lambda: [v for v in served.stand_in.views if v[0] == "views.publish"],
                            what="views.publish")[0]
    text = json.dumps(home)
    thread = run.slack_thread_ts or served.bot.cyto.engine.get_run(run.id).slack_thread_ts
    assert f"https://lab.slack.com/archives/{CHANNEL}/p{thread.replace('.', '')}" in text
    assert "3/3 succeeded" in text and run.id in text
    assert served.stand_in.calls_to("views.publish")[-1].params["user_id"] == USER


def test_the_form_respects_the_allowed_users(start_bot, settings, store: Path) -> None:
    served = start_bot(settings, allowed_users=frozenset({"UBOB"}))
    status, ack = served.command("run")
    assert status == 200 and "CYTO_ALLOWED_USERS" in ack
    assert served.stand_in.views == []


def test_the_typed_command_takes_timeout_storage_and_parameters(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 1)
    status, _ = served.command("run 2018-12-05 batch-7 timeout=90m storage=30G params='{\"files\": [\"sample.txt\"]}'")
    assert status == 200
    run = wait_for(lambda: served.bot.cyto.engine.db.runs(1), what="run")[0]
    assert (run.resources["timeout_s"], run.resources["storage_gib"]) == (5400, 30)
    assert run.params == {"files": ["sample.txt"]}
    status, ack = served.command("run 2018-12-05 batch-7 timeout=soon")
    assert "timeout `soon` is not a duration" in ack
    served.command("run 2018-12-05 batch-7 params=\"{filez: [a.txt]}\"")
    wait_for(lambda: [c for c in served.stand_in.calls_to("respond")
                      if "unknown parameter 'filez' (did you mean 'files'?)" in json.dumps(c.params)],
             what="the parameter check's answer")
    assert len(served.bot.cyto.engine.db.runs()) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cyto_serve_opens_the_form_and_answers_the_batch_menu(tmp_path: Path, stand_in: SlackStandIn) -> None:
    store = tmp_path / "store"
    make_batch(store, "batch-7", 2)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CYTO_STORE": str(store), "CYTO_DB": str(tmp_path / "db.sqlite"),
           "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), "CYTO_DEFAULT_PIPELINE": "wordcount",
           "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": stand_in.url}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--http", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def post(body: str, content_type: str = "application/x-www-form-urlencoded") -> tuple[int, str]:
        headers = {**signed_headers(body), "Content-Type": content_type}
        request = urllib.request.Request(base + "/slack/events", data=body.encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=seconds(10)) as response:
            return response.status, response.read().decode()

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=seconds(1)):
                return True
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=seconds(30), what="/healthz")
        command = urlencode({"command": "/cyto", "text": "run", "user_id": USER, "channel_id": CHANNEL,
                             "team_id": "T0LAB", "response_url": stand_in.response_url(), "trigger_id": "9.9.9"})
        assert post(command)[0] == 200
        _, view = wait_for(lambda: stand_in.views, what="views.open")[0]
        suggestion = {"type": "block_suggestion", "user": {"id": USER}, "team": {"id": "T0LAB"},
                      "action_id": "batch", "block_id": "batch", "value": "",
                      "view": {**view, "id": "V1", "state": {"values": values(batch=None)}}}
        status, answer = post(urlencode({"payload": json.dumps(suggestion)}))
        assert status == 200 and json.loads(answer)["options"][0]["value"] == "batch-7"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=seconds(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
