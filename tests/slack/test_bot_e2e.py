"""The bot end to end: signed requests over HTTP to the bot on loopback, the Slack Web API
stand-in, the real local executor running the real wordcount pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from slack_harness import CHANNEL, USER, Served, make_batch, wait_for
from slack_stand_in import Call

pytestmark = pytest.mark.slow


def start_run(served: Served, text: str) -> tuple[str, Call, str]:
    """Send `/cyto run …`; returns the run id, the root message call and the ack's text."""
    before = served.stand_in.count("chat.postMessage")
    status, body = served.command(text)
    assert status == 200
    root = wait_for(lambda: served.stand_in.calls_to("chat.postMessage")[before:], what="root message")[0]
    run_id = wait_for(lambda: served.bot.engine.db.runs(1), what="run")[0].id
    wait_for(lambda: served.bot.engine.get_run(run_id).slack_thread_ts, what="thread recorded")
    return run_id, root, body


def thread_replies(served: Served, root_ts: str) -> list[Call]:
    return [c for c in served.stand_in.calls_to("chat.postMessage") if c.params.get("thread_ts") == root_ts]


def root_updates(served: Served, root_ts: str) -> list[Call]:
    return [c for c in served.stand_in.calls_to("chat.update") if c.params.get("ts") == root_ts]


def buttons(call: Call) -> list[dict]:
    return [e for b in call.blocks if b["type"] == "actions" for e in b["elements"]]


def test_happy_run_root_message_coalesced_updates_and_done_alert(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 5)
    run_id, root, ack = start_run(served, "run 2018-12-05 batch-7 memory=1G retries=1")
    assert "Looking at 2018-12-05/batch-7" in ack
    assert root.params["channel"] == CHANNEL and "thread_ts" not in root.params
    assert root.params["text"].startswith(f"<@{USER}> started *2018-12-05/batch-7*: 5 analyses")
    assert "1024 MiB" in json.dumps(root.blocks) and "pipeline `wordcount`" in json.dumps(root.blocks)
    run = served.bot.engine.get_run(run_id)
    assert run.slack_channel == CHANNEL and (CHANNEL, run.slack_thread_ts) in served.stand_in.messages

    cycles = 0
    versions_seen = set()
    while not served.bot.engine.get_run(run_id).state.is_finished:
        served.bot.poll_cycle()
        cycles += 1
        versions_seen.add(served.bot.engine.get_run(run_id).version)
        time.sleep(0.05)
    updates = root_updates(served, run.slack_thread_ts)
    # Coalesced: at most one root edit per poll cycle, and only when the run changed.
    assert 1 <= len(updates) <= min(cycles, len(versions_seen))
    for _ in range(3):
        served.bot.poll_cycle()
    assert len(root_updates(served, run.slack_thread_ts)) == len(updates), "no edit without a change"
    final = updates[-1]
    assert "every analysis succeeded" in json.dumps(final.blocks)
    assert not buttons(final), "a finished run has no Retry all / Cancel"
    replies = thread_replies(served, run.slack_thread_ts)
    assert len(replies) == 1, "only the done alert in the thread"
    alert = replies[0].params["text"]
    assert alert.startswith(f"<@{USER}> *2018-12-05/batch-7* finished: 5 succeeded, 0 failed of 5")
    assert f"{store}/Output/2018-12-05/batch-7/" in json.dumps(replies[0].blocks)
