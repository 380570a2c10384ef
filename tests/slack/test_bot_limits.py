"""The bot against Slack's rate limits and size limits, and with an executor the test steers
(tests/scripted_executor.py) where hundreds of analyses must fail at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scripted_executor import ScriptedExecutor
from slack_harness import USER, Served, make_batch, poll_cycle, wait_for
from slack_stand_in import Call
from test_bot_e2e import buttons, failure_replies, responds, root_updates, start_run, thread_replies

from bot.ledger import Run
from bot.states import JobState, RunState
from handlers.render import MAX_SECTION_CHARS

pytestmark = pytest.mark.slow


class Clock:
    """The bot's clock, moved on by the test (Retry-After waits without waiting)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_429_storm_delays_updates_but_shows_the_final_state_and_loses_no_failure_reply(start_bot, settings,
                                                                                       store: Path) -> None:
    clock = Clock()
    served = start_bot(settings, clock=clock)
    make_batch(store, "batch-7", 4, failing=("A01", "A03"))
    run_id, root, _ = start_run(served, "run 2018-12-05 batch-7 retries=0")
    served.stand_in.fail_next("chat.postMessage", 3, retry_after=2)
    served.stand_in.fail_next("chat.update", 3, retry_after=2)
    served.drive(run_id)  # the run finishes in the ledger whatever Slack answers
    for _ in range(12):
        clock.now += 2.5  # Retry-After honoured: nothing is sent again before it has passed
        poll_cycle(served.bot)
    posts = served.stand_in.calls_to("chat.postMessage", accepted_only=False)
    assert [c.status for c in posts].count(429) == 3 and posts[-1].status == 200
    accepted_keys = [c.params["metadata"]["event_payload"]["key"] for c in posts if c.status == 200]
    assert len(accepted_keys) == len(set(accepted_keys)), "each refused post was retried, and posted once"
    refused_keys = {c.params["metadata"]["event_payload"]["key"] for c in posts if c.status == 429}
    assert refused_keys <= set(accepted_keys)
    root_ts = root.ts
    assert "Finished with failures" in json.dumps(root_updates(served, root_ts)[-1].blocks)
    posted = [e["text"]["text"] for c in failure_replies(served, root_ts) for e in c.blocks if e["type"] == "section"]
    for analysis in ("A01", "A03"):
        assert sum(f"*{analysis}*" in text for text in posted) == 1, f"{analysis} replied exactly once"
    alerts = [c for c in thread_replies(served, root_ts) if "finished" in c.params["text"]]
    assert len(alerts) == 1
    assert served.bot.sender.outbox.backlog() == {}


def test_a_run_held_by_a_rate_limit_can_be_cancelled_and_never_gets_a_thread(start_bot, settings,
                                                                             store: Path) -> None:
    clock = Clock()
    served = start_bot(settings, clock=clock)
    make_batch(store, "batch-7", 2)
    served.stand_in.fail_next("chat.postMessage", 1, retry_after=3600)
    served.command("run 2018-12-05 batch-7")
    waiting = wait_for(lambda: [t for t in responds(served) if "waits for its thread" in t], what="held")[0]
    run = served.bot.cyto.engine.db.runs(1)[0]
    assert run.state == "HELD" and f"run `{run.id}`" in waiting
    poll_cycle(served.bot)
    assert served.bot.cyto.engine.db.jobs(run.id)[0].state == "PENDING", "a poll does not submit a held run"
    served.command(f"cancel {run.id}")
    wait_for(lambda: any("nothing was submitted" in t for t in responds(served)), what="cancelled")
    clock.now += 3601
    poll_cycle(served.bot)
    run = served.bot.cyto.engine.get_run(run.id)
    assert run.state == "CANCELLED" and run.slack_thread_ts is None
    assert all(a.executor_job_id is None for j in served.bot.cyto.engine.db.jobs(run.id)
               for a in served.bot.cyto.engine.db.attempts(j.id))
    assert [c.status for c in served.stand_in.calls_to("chat.postMessage", accepted_only=False)] == [429], \
        "the root of a cancelled run is never posted"
    assert served.bot.sender.outbox.backlog() == {}


def scripted(start_bot, settings) -> tuple[Served, ScriptedExecutor]:
    executor = ScriptedExecutor()
    return start_bot(settings, executor=executor), executor


def test_hundreds_of_failures_are_grouped_within_slack_limits(start_bot, settings, store: Path) -> None:
    served, executor = scripted(start_bot, settings)
    names = make_batch(store, "big", 300, prefix="W")
    run_id, root, _ = start_run(served, "run 2018-12-05 big retries=0")
    wait_for(lambda: len(executor.submit_calls) == 300, what="submitted")
    noisy = "\n".join([f"step {i}: <data> & more {'x' * 150}" for i in range(60)]
                      + ["ERROR: ``` cannot parse <sample> & stop " + "y" * 3000])
    for name in names:
        executor.set(name, JobState.FAILED, exit_code=1, reason="exit code 1", log=noisy)
    poll_cycle(served.bot)
    replies = failure_replies(served, root.ts)
    assert len(replies) == 2, "300 failures in two messages, not 300"
    seen: list[str] = []
    for reply in replies:
        assert len(reply.blocks) <= 50
        for block in reply.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= MAX_SECTION_CHARS
            for element in block.get("elements", []):
                assert len(element.get("value", "")) <= 2000 and len(element.get("action_id", "")) <= 255
        text = json.dumps(reply.blocks)
        seen += [n for n in names if f"*{n}*" in text]
    assert sorted(seen) == sorted(names), "every failure replied once"
    # the listed ones are retried together, the detailed ones keep their own buttons
    first = replies[0]
    listed = next(b for b in buttons(first) if b["text"]["text"].startswith("Retry these"))
    assert listed["text"]["text"] == "Retry these 200"
    served.click(first.ts, listed)
    edit = wait_for(lambda: [c for c in served.stand_in.calls_to("chat.update") if c.params["ts"] == first.ts],
                    what="edit")[-1]
    retried = [n for n in names if served.bot.cyto.engine.db.job(run_id, n).attempt == 2]
    assert len(retried) == 200 and all(served.bot.cyto.engine.db.job(run_id, n).retried_by == USER for n in retried)
    assert not any(b["text"]["text"].startswith("Retry these") for b in buttons(edit))
    assert sum(b["text"]["text"] == "Retry" for b in buttons(edit)) == 5


def test_memory_death_offers_retry_with_twice_the_memory(start_bot, settings, store: Path) -> None:
    served, executor = scripted(start_bot, settings)
    make_batch(store, "batch-7", 2)
    run_id, root, _ = start_run(served, "run 2018-12-05 batch-7 memory=2048 retries=0")
    wait_for(lambda: len(executor.submit_calls) == 2, what="submitted")
    executor.set("A01", JobState.SUCCEEDED, exit_code=0)
    executor.set("A02", JobState.FAILED, exit_code=137, reason="exit code 137",
                 log="loading 12 GB of events\nKilled\n")
    poll_cycle(served.bot)
    [reply] = failure_replies(served, root.ts)
    [more] = [b for b in buttons(reply) if "2× memory" in b["text"]["text"]]
    assert more["text"]["text"] == "Retry with 2× memory (4096 MiB)"
    served.click(reply.ts, more)
    job = wait_for(lambda: (j := served.bot.cyto.engine.db.job(run_id, "A02")) and j.attempt == 2 and j)
    assert served.bot.cyto.engine.db.attempt(job.id, 2).resources == {"memory_mib": 4096}
    wait_for(lambda: len(executor.submit_calls) == 3, what="resubmitted")
    assert executor.specs[executor.latest("A02")].resources.memory_mib == 4096


def test_cancel_button_has_a_confirm_dialog_and_cancels_the_run(start_bot, settings, store: Path) -> None:
    served, executor = scripted(start_bot, settings)
    make_batch(store, "batch-7", 3)
    run_id, root, _ = start_run(served, "run 2018-12-05 batch-7")
    wait_for(lambda: len(executor.submit_calls) == 3, what="submitted")
    poll_cycle(served.bot)
    [cancel] = [b for b in buttons(root_updates(served, root.ts)[-1]) if b["text"]["text"] == "Cancel run"]
    assert cancel["style"] == "danger" and cancel["confirm"]["confirm"]["text"] == "Cancel run"
    served.click(root.ts, cancel, user="UBOB")
    wait_for(lambda: served.bot.cyto.engine.get_run(run_id).cancel_requested_by == "UBOB", what="cancel")
    served.drive(run_id)
    assert "Cancelled" in json.dumps(root_updates(served, root.ts)[-1].blocks)
    assert any("was cancelled" in c.params["text"] for c in thread_replies(served, root.ts))
    served.click(root.ts, cancel, user="UBOB")
    [answer] = wait_for(lambda: [c.params["text"] for c in served.stand_in.calls_to("respond")], what="answer")
    assert "already finished" in answer


def accepted(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.status == 200]


def test_status_list_cancel_and_help_answer_only_the_asker(start_bot, settings, store: Path) -> None:
    served, executor = scripted(start_bot, settings)
    make_batch(store, "batch-7", 3)
    make_batch(store, "batch-9", 1)
    run_id, _, _ = start_run(served, "run 2018-12-05 batch-7")
    wait_for(lambda: len(executor.submit_calls) == 3, what="submitted")
    status, ack = served.command("help")
    assert status == 200 and "/cyto run DATE BATCH" in ack
    for n, text in enumerate(("status", f"status {run_id}", "list", "list 2018-12-05", f"cancel {run_id}",
                              f"cancel {run_id}")):
        served.command(text)
        wait_for(lambda n=n: served.stand_in.count("respond") == n + 1, what=f"answer to {text}")
    answers = served.stand_in.calls_to("respond")
    texts = [json.dumps(c.params) for c in answers]
    assert all(c.params["response_type"] == "ephemeral" for c in answers)
    assert all("3 analyses" in t for t in texts[:2])
    assert "2018-12-05" in texts[2] and "batch-7" in texts[3] and "batch-9" in texts[3]
    assert f"Cancelling run `{run_id}`" in texts[4] and "nothing to cancel" in texts[5]


def test_status_without_a_run_answers_for_this_channel_s_latest_run_behind_many_elsewhere(
        start_bot, settings, store: Path) -> None:
    served, _ = scripted(start_bot, settings)
    make_batch(store, "batch-7", 3)
    start_run(served, "run 2018-12-05 batch-7")
    db, now = served.bot.cyto.engine.db, time.time()
    for i in range(60):  # newer runs in another channel, more than any page of runs
        other = Run(id=f"other{i:02d}", date="2018-12-05", batch=f"elsewhere-{i}", pipeline="wordcount", params={},
                    resources={}, executor="scripted", store=str(store), requested_by="U2", state=RunState.HELD,
                    created_at=now + 1 + i, finished_at=None, cancel_requested_by=None, slack_channel="C0OTHER",
                    slack_thread_ts=None, version=0)
        assert db.create_run(other, ["A000"], 1, [f"job-other-{i}"], now + 1 + i)
    served.command("status")
    answer = wait_for(lambda: served.stand_in.calls_to("respond"), what="answer to status")[0]
    assert "batch-7" in json.dumps(answer.params) and "elsewhere" not in json.dumps(answer.params)
