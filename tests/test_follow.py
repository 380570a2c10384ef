"""`Cyto.follow`: the one loop that follows a run (CLI --wait, the notebook watcher, `Cyto.wait`),
reading the ledger's durable events with its own cursor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.api import Cyto, RunEvent, RunSummary
from bot.states import EventKind
from tests.cli_helpers import BATCH, DATE, write_two_analyses_a02_failing
from tests.timeouts import deadline_after, seconds


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    write_two_analyses_a02_failing(Path(cyto_env["CYTO_STORE"]))
    return cyto_env


def test_follow_hands_over_every_event_once_in_order_and_returns_the_final_summary(batch: dict[str, str]) -> None:
    cyto = Cyto.from_env(batch)
    run = cyto.run(DATE, BATCH, pipeline="wordcount", retries=0)
    seen: list[RunEvent] = []
    summaries: list[RunSummary] = []

    summary = cyto.follow(run.id, seen.append, interval=0.05, timeout=seconds(60), on_summary=summaries.append)

    assert summary.finished and summary.run.state.value == "FAILED"
    assert seen == cyto.db.events(0, run_id=run.id)
    assert [e.seq for e in seen] == sorted({e.seq for e in seen})
    assert seen[0].kind == EventKind.RUN_STARTED and seen[-1].kind == EventKind.RUN_FINISHED
    assert any(e.kind == EventKind.JOB_FAILED and e.analysis == "A02" for e in seen)
    assert summaries[-1] == summary and not any(s.finished for s in summaries[:-1])


def test_follow_sees_what_another_process_applies_without_polling_itself(
        batch: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    follower, bot = Cyto.from_env(batch), Cyto.from_env(batch)
    run = bot.run(DATE, BATCH, pipeline="wordcount", retries=0)
    monkeypatch.setattr(follower, "poll", lambda: pytest.fail("poll=False must not poll"))
    deadline = deadline_after(60)

    def bot_polls(_: float) -> None:  # between the follower's reads, the other process polls
        assert time.monotonic() < deadline, "the run did not finish"
        bot.poll()
        time.sleep(0.05)

    seen: list[RunEvent] = []
    summary = follower.follow(run.id, seen.append, poll=False, sleep=bot_polls)

    assert summary.finished
    failed = [e for e in seen if e.kind == EventKind.JOB_FAILED]
    assert [(e.analysis, e.attempt) for e in failed] == [("A02", 1)]
    assert 'params.json names "gone.txt"' in (failed[0].reason or "")


def test_follow_stops_at_the_timeout_of_its_own_clock(batch: dict[str, str]) -> None:
    cyto = Cyto.from_env(batch)
    run = cyto.run(DATE, BATCH, pipeline="wordcount", retries=0)
    now = [1000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:  # no real time passes: the run stays unfinished, nobody polls
        slept.append(s)
        now[0] += s

    on_the_fake_clock = 10.0  # seconds of the injected clock: no real time passes, nothing to scale
    summary = cyto.follow(run.id, lambda _: None, interval=2.0, clock=lambda: now[0], sleep=sleep, poll=False,
                          timeout=on_the_fake_clock)

    assert not summary.finished and summary.run.id == run.id
    assert slept == [2.0] * 5
    cyto.cancel(run.id, by="test")


def test_following_an_unknown_run_is_refused_at_once(cyto: Cyto) -> None:
    from bot.api import NotFound

    with pytest.raises(NotFound):
        cyto.follow("nope00", lambda _: None, sleep=lambda _: pytest.fail("must not wait"))
