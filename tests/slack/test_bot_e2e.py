"""The bot end to end: signed requests over HTTP to the bot on loopback, the Slack Web API
stand-in, the real local executor running the real wordcount pipeline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_harness import CHANNEL, USER, Served, fix_analysis, make_batch, poll_cycle, signed_headers, wait_for
from slack_stand_in import Call

from tests.timeouts import seconds

pytestmark = pytest.mark.slow


def start_run(served: Served, text: str) -> tuple[str, Call, str]:
    """Send `/cyto run …`; returns the run id, the root message call and the ack's text."""
    before = served.stand_in.count("chat.postMessage")
    status, body = served.command(text)
    assert status == 200
    root = wait_for(lambda: served.stand_in.calls_to("chat.postMessage")[before:], what="root message")[0]
    run_id = wait_for(lambda: served.bot.cyto.engine.db.runs(1), what="run")[0].id
    wait_for(lambda: served.bot.cyto.engine.get_run(run_id).slack_thread_ts, what="thread recorded")
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
    run = served.bot.cyto.engine.get_run(run_id)
    assert run.slack_channel == CHANNEL and (CHANNEL, run.slack_thread_ts) in served.stand_in.messages

    cycles = 0
    while not served.bot.cyto.engine.get_run(run_id).state.is_finished:
        before = len(root_updates(served, run.slack_thread_ts))
        poll_cycle(served.bot)
        cycles += 1
        assert len(root_updates(served, run.slack_thread_ts)) - before <= 1, "at most one root edit per poll"
        time.sleep(0.05)
    updates = root_updates(served, run.slack_thread_ts)
    assert 1 <= len(updates) <= cycles
    for _ in range(3):
        poll_cycle(served.bot)
    assert len(root_updates(served, run.slack_thread_ts)) == len(updates), "no edit without a change"
    final = updates[-1]
    assert "every analysis succeeded" in json.dumps(final.blocks)
    assert not buttons(final), "a finished run has no Retry all / Cancel"
    replies = thread_replies(served, run.slack_thread_ts)
    assert len(replies) == 1, "only the done alert in the thread"
    alert = replies[0].params["text"]
    assert alert.startswith(f"<@{USER}> *2018-12-05/batch-7* finished: 5 succeeded, 0 failed of 5")
    assert f"{store}/Output/2018-12-05/batch-7/" in json.dumps(replies[0].blocks)


def responds(served: Served, user: str = USER) -> list[str]:
    return [c.params.get("text", "") for c in served.stand_in.calls_to("respond")
            if c.path.endswith(f"/{user}")]


def failure_replies(served: Served, root_ts: str) -> list[Call]:
    return [c for c in thread_replies(served, root_ts) if "failed for good" in json.dumps(c.blocks)]


def test_failure_reply_with_excerpt_then_retry_click_succeeds_and_edits_the_reply(served: Served,
                                                                                 store: Path) -> None:
    make_batch(store, "batch-7", 3, failing=("A02",))
    run_id, _, _ = start_run(served, "run 2018-12-05 batch-7 retries=1")
    served.drive(run_id)
    root_ts = served.bot.cyto.engine.get_run(run_id).slack_thread_ts
    [reply] = failure_replies(served, root_ts)
    text = json.dumps(reply.blocks)
    assert "A02" in text and "exit code 2" in text and "after 1 attempt" in text
    assert "Bad input or parameters (exit code 2): not retried automatically" in text, "which rule applied"
    section = next(b for b in reply.blocks if b["type"] == "section" and "A02" in b["text"]["text"])
    assert "```" in section["text"]["text"] and "missing.fcs" in section["text"]["text"], "excerpt in a code block"
    assert f"{store}/Logs/2018-12-05/batch-7/A02/{run_id}/attempt-1.log" in text, "where the full log is"
    [retry] = [b for b in buttons(reply) if b["text"]["text"] == "Retry"]
    assert "Retry with 2× memory" not in text, "not a memory death"
    assert "Retry all failed" in json.dumps(root_updates(served, root_ts)[-1].blocks)

    fix_analysis(store, "batch-7", "A02")
    status, _ = served.click(reply.ts, retry)
    assert status == 200
    job = wait_for(lambda: (j := served.bot.cyto.engine.db.job(run_id, "A02")) and j.attempt == 2 and j)
    assert job.retried_by == USER
    edit = wait_for(lambda: [c for c in served.stand_in.calls_to("chat.update")
                             if c.params["ts"] == reply.ts], what="failure reply edited")[-1]
    assert f"Retried by <@{USER}>" in json.dumps(edit.blocks)
    assert not buttons(edit), "the Retry button is gone"
    served.drive(run_id)
    assert served.bot.cyto.engine.db.job(run_id, "A02").state == "SUCCEEDED"
    assert "every analysis succeeded" in json.dumps(root_updates(served, root_ts)[-1].blocks)
    alerts = [c for c in thread_replies(served, root_ts) if "finished" in c.params["text"]]
    outcomes = [a.params["text"].split(": ")[1][:21] for a in alerts]
    assert outcomes == ["2 succeeded, 1 failed", "3 succeeded, 0 failed"], "one alert per finish"
    assert len(failure_replies(served, root_ts)) == 1, "the retried attempt succeeded: no new failure reply"



def test_double_click_and_duplicate_delivery_retry_once(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 2, failing=("A01",))
    run_id, _, _ = start_run(served, "run 2018-12-05 batch-7 retries=0")
    served.drive(run_id)
    [reply] = failure_replies(served, served.bot.cyto.engine.get_run(run_id).slack_thread_ts)
    [retry] = [b for b in buttons(reply) if b["text"]["text"] == "Retry"]
    results: list[int] = []
    clickers = [threading.Thread(target=lambda u=u: results.append(served.click(reply.ts, retry, user=u)[0]))
                for u in ("UALICE", "UBOB", "UALICE")]
    for t in clickers:
        t.start()
    for t in clickers:
        t.join()
    assert results == [200, 200, 200]
    wait_for(lambda: len(served.stand_in.calls_to("respond")) >= 2, what="ephemeral answers")
    job = served.bot.cyto.engine.db.job(run_id, "A01")
    assert job.attempt == 2, "retried exactly once"
    job_names = [a.job_name for a in served.bot.cyto.engine.db.attempts(job.id)]
    assert len(job_names) == 2
    already = [c.params["text"] for c in served.stand_in.calls_to("respond")]
    assert len(already) == 2 and all(f"already retried by <@{job.retried_by}>" in t for t in already)
    # a late duplicate delivery acts no more
    served.click(reply.ts, retry, user="UCAROL")
    wait_for(lambda: responds(served, "UCAROL"), what="ephemeral to the late clicker")
    assert served.bot.cyto.engine.db.job(run_id, "A01").attempt == 2


@pytest.mark.parametrize("how", ["forged", "stale", "unsigned"])
def test_bad_signature_or_stale_timestamp_is_401_and_nothing_submitted(served: Served, store: Path,
                                                                       how: str) -> None:
    make_batch(store, "batch-7", 2)
    body = served.command_body("run 2018-12-05 batch-7")
    headers = {"forged": signed_headers(body, secret="not-the-secret"),
               "stale": signed_headers(body, timestamp=int(time.time()) - 600),
               "unsigned": {"Content-Type": "application/x-www-form-urlencoded"}}[how]
    status, _ = served.post(body, headers)
    assert status == 401
    payload = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": USER},
                                                "actions": [{"action_id": "cyto_retry_all", "value": "{}"}]})})
    assert served.post(payload, {**headers, **({"X-Slack-Signature": "v0=00"} if how != "unsigned" else {})})[0] \
        == 401
    time.sleep(seconds(0.3))  # long enough for a run to be recorded, had the request been let in
    assert served.bot.cyto.engine.db.runs(5) == []
    assert served.stand_in.count("chat.postMessage") == 0 and served.stand_in.count("respond") == 0


def test_unknown_batch_answers_ephemerally_with_suggestions(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 2)
    make_batch(store, "batch-12", 1)
    status, _ = served.command("run 2018-12-05 batch-8")
    assert status == 200
    [answer] = wait_for(lambda: responds(served), what="ephemeral answer")
    respond = served.stand_in.calls_to("respond")[0].params
    assert respond["response_type"] == "ephemeral"
    assert "no batch 'batch-8' on 2018-12-05" in answer and "batch-7" in answer
    assert served.bot.cyto.engine.db.runs(5) == [] and served.stand_in.count("chat.postMessage") == 0


@pytest.mark.parametrize(("text", "reason"), [
    # `run` alone opens the run form (tests/slack/test_run_form.py)
    ("run 2018-12-05", "`run` needs BATCH"),
    ("run 2018-13-05 batch-7", "not a real calendar date"),
    ("run 12/05/2018 batch-7", "not written YYYY-MM-DD"),
    ("run 2018-12-05 batch-7 colour=blue", "unknown option `colour`"),
    ("run 2018-12-05 batch-7 memory=lots", "memory `lots` is not a size"),
    ("frobnicate", "unknown command `frobnicate`"),
    ("retry", "missing RUN"),
])
def test_bad_input_is_answered_in_the_ack_and_nothing_is_submitted(served: Served, store: Path, text: str,
                                                                   reason: str) -> None:
    make_batch(store, "batch-7", 2)
    status, ack = served.command(text)
    assert status == 200 and reason in ack and "/cyto run DATE BATCH" in ack
    time.sleep(seconds(0.2))
    assert served.bot.cyto.engine.db.runs(5) == [] and served.stand_in.count("chat.postMessage") == 0


def test_retry_of_unknown_run_or_analysis_that_did_not_fail_is_refused(served: Served, store: Path) -> None:
    make_batch(store, "batch-7", 2)
    run_id, _, _ = start_run(served, "run 2018-12-05 batch-7")
    served.drive(run_id)
    served.command("retry ffffff")
    wait_for(lambda: responds(served), what="answer")
    served.command(f"retry {run_id} A01")
    served.command(f"retry {run_id} Z99")
    answers = wait_for(lambda: len(responds(served)) >= 3 and responds(served), what="answers")
    assert "no run 'ffffff'" in answers[0]
    assert any("A01 is succeeded, not failed" in a for a in answers)
    assert any("has no analysis 'Z99'" in a for a in answers)
    assert served.bot.cyto.engine.db.job(run_id, "A01").attempt == 1


def test_user_not_allowed_is_refused(start_bot, settings, store: Path) -> None:
    served = start_bot(settings, allowed_users=frozenset({"UBOB"}), allowed_channels=frozenset({CHANNEL}))
    make_batch(store, "batch-7", 2, failing=("A01",))
    status, ack = served.command("run 2018-12-05 batch-7")
    assert status == 200 and "not on this bot's list" in ack
    status, ack = served.command("run 2018-12-05 batch-7", user="UBOB", channel="COTHER")
    assert "works only in <#CLAB>" in ack
    time.sleep(seconds(0.2))
    assert served.bot.cyto.engine.db.runs(5) == []
    # Bob starts a run; Alice may not retry it
    status, _ = served.command("run 2018-12-05 batch-7 retries=0", user="UBOB")
    run_id = wait_for(lambda: served.bot.cyto.engine.db.runs(1), what="run")[0].id
    wait_for(lambda: served.bot.cyto.engine.get_run(run_id).slack_thread_ts)
    served.drive(run_id)
    [reply] = failure_replies(served, served.bot.cyto.engine.get_run(run_id).slack_thread_ts)
    retry = buttons(reply)[0]
    served.click(reply.ts, retry, user=USER)
    [answer] = wait_for(lambda: responds(served, USER), what="refusal")
    assert "not on this bot's list" in answer
    assert served.bot.cyto.engine.db.job(run_id, "A01").attempt == 1


def test_restarted_bot_keeps_updating_the_same_thread(start_bot, settings, store: Path) -> None:
    make_batch(store, "batch-7", 4, failing=("A03",))
    first = start_bot(settings)
    run_id, root, _ = start_run(first, "run 2018-12-05 batch-7 retries=0")
    poll_cycle(first.bot)
    first.close()  # the bot dies mid-run; its jobs keep running
    second = start_bot(settings)  # a new app and reporter on the same database
    second.drive(run_id)
    root_ts = root.ts
    assert second.bot.cyto.engine.get_run(run_id).slack_thread_ts == root_ts
    updates = second.stand_in.calls_to("chat.update")
    assert updates and all(c.params["ts"] == root_ts for c in updates)
    assert "Finished with failures" in json.dumps(updates[-1].blocks)
    assert len(failure_replies(second, root_ts)) == 1
    for _ in range(2):
        poll_cycle(start_bot(settings).bot)  # more restarts: nothing posted twice
    assert len(thread_replies(second, root_ts)) == 2  # one failure reply, one done alert
