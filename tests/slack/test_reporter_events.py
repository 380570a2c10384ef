"""The Slack reporter is one consumer of the ledger's durable events: what another process applies
(the CLI's `cyto run --wait`, a notebook) reaches the run's thread, and a restarted bot carries on
from its cursor in the Slack tables without posting anything twice."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from slack_harness import Served, make_batch, wait_for

from bot.api import Cyto
from bot.settings import Settings
from tests.timeouts import seconds


def thread_posts(served: Served, root_ts: str) -> list[str]:
    return [json.dumps(c.blocks) for c in served.stand_in.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == root_ts]


def test_a_transition_applied_by_another_process_reaches_the_thread_and_a_restart_repeats_nothing(
        start_bot: Callable[..., Served], settings: Settings, store: Path) -> None:
    make_batch(store, "batch-7", 3, failing=("A02",))
    bot = start_bot(settings)
    status, _ = bot.command("run 2018-12-05 batch-7 retries=0")
    assert status == 200
    run_id = wait_for(lambda: bot.bot.cyto.runs(1), what="run")[0].id
    root_ts = wait_for(lambda: bot.bot.cyto.get_run(run_id).slack_thread_ts, what="thread recorded")

    # Another process on the same ledger polls the run to its end (as `cyto run --wait` would); the
    # bot's own poll job never runs.
    cli = Cyto(settings)
    deadline = time.monotonic() + seconds(30)
    while not cli.get_run(run_id).state.is_finished:
        assert time.monotonic() < deadline, "run did not finish"
        cli.submit_pending(run_id)
        cli.poll()
        time.sleep(0.05)

    bot.bot.slack_cycle()  # the Slack job alone: it learns of the finish from the events
    posts = thread_posts(bot, root_ts)
    assert len(posts) == 2, posts
    assert "failed for good" in posts[0] and "*A02*" in posts[0]
    assert "Finished" in json.dumps(bot.stand_in.calls_to("chat.update")[-1].blocks)
    last_seq = cli.events(0, limit=10_000)[-1].seq
    assert bot.bot.state.cursor() == last_seq, "the reporter's cursor is at the last event it planned"

    bot.close()
    restarted = start_bot(settings)
    assert restarted.bot.reporter.plan() == 0, "nothing after the cursor: nothing to plan again"
    restarted.bot.slack_cycle()
    assert len(thread_posts(restarted, root_ts)) == 2, "nothing posted twice"
