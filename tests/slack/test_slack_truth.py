"""The Slack thread tells the truth (issue 13), against `cyto serve` processes, the Slack stand-in
and the real local executor: Slack's rate limits never stall the engine, every post reaches Slack
at most once whatever the connection or a SIGKILL does, no run executes without its thread,
commands act once, and the outbox and holds are recorded in the ledger. The root-post and outbox
cases also run with two bot processes on one database."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import ServeProcess, start_serve
from slack_harness import CHANNEL, DATE, USER, command_body, make_batch, signed_headers, wait_for
from slack_stand_in import DROPPED, SlackStandIn

from bot.ledger import Run, RunDB
from bot.states import JobState, RunState
from tests.spool_helpers import spool_job_names
from tests.timeouts import seconds

pytestmark = pytest.mark.slow


@pytest.fixture
def bots(tmp_path: Path, stand_in: SlackStandIn, store: Path) -> Iterator[list[ServeProcess]]:
    """Started by the test (`start(n)`), stopped afterwards."""
    started: list[ServeProcess] = []
    yield started
    for bot in started:
        bot.stop()


def start(bots: list[ServeProcess], tmp_path: Path, stand_in: SlackStandIn, store: Path, n: int = 1,
          poll_seconds: float = 0.5, **extra: str) -> list[ServeProcess]:
    for i in range(n):
        bots.append(start_serve(tmp_path, stand_in, store, poll_seconds=poll_seconds, name=f"bot{len(bots) + i}",
                                **extra))
    return bots[-n:]


# A job command whose first attempt of A02 fails the way a transient problem does (exit 1, retried
# automatically), and which otherwise runs the real entrypoint.
FLAKY_A02 = """
import os, sys
if os.environ["CYTO_ANALYSIS"] == "A02" and os.environ["CYTO_ATTEMPT"] == "1":
    print("ERROR: the network share went away", flush=True)
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "container.entrypoint"])
"""


def latest_run(db: RunDB) -> Run | None:
    runs = db.runs(1)
    return runs[0] if runs else None


def finished_run(db: RunDB, timeout: float = seconds(60)) -> Run:
    return wait_for(lambda: (r := latest_run(db)) is not None and r.state.is_finished and r, timeout=timeout,
                    what="run finished in the ledger")


def top_level(stand_in: SlackStandIn) -> list[tuple[str, dict]]:
    return [(ts, p) for ts, p in stand_in.posts(CHANNEL) if not p.get("thread_ts")]


def in_thread(stand_in: SlackStandIn, root_ts: str) -> list[tuple[str, dict]]:
    return [(ts, p) for ts, p in stand_in.posts(CHANNEL) if p.get("thread_ts") == root_ts]


def failure_posts(stand_in: SlackStandIn, root_ts: str) -> list[dict]:
    return [p for _, p in in_thread(stand_in, root_ts) if "failed for good" in json.dumps(p.get("blocks"))]


def done_alerts(stand_in: SlackStandIn, root_ts: str) -> list[dict]:
    return [p for _, p in in_thread(stand_in, root_ts) if p["blocks"] and '"done"' in json.dumps(p["blocks"])]


def responds(stand_in: SlackStandIn) -> list[str]:
    return [c.params.get("text", "") for c in stand_in.calls_to("respond")]


def outbox(db: RunDB) -> list[dict]:
    with db.transaction() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM slack_outbox ORDER BY created_at")]


def hold_state(db: RunDB, run_id: str) -> str:
    with db.transaction() as conn:
        return conn.execute("SELECT state FROM slack_holds WHERE run_id = ?", (run_id,)).fetchone()[0]


def submitted_attempts(db: RunDB, run_id: str) -> list[tuple[str, int]]:
    return [(job.analysis, a.attempt) for job in db.jobs(run_id) for a in db.attempts(job.id) if a.executor_job_id]


# -- 1. Slack's rate limits never stall the engine ---------------------------------------------
def test_huge_retry_after_delays_messages_but_never_job_state_or_retries(bots, tmp_path: Path,
                                                                          stand_in: SlackStandIn,
                                                                          store: Path) -> None:
    make_batch(store, "batch-7", 7)
    flaky = tmp_path / "flaky_job.py"
    flaky.write_text(FLAKY_A02)
    poll = 1.0
    [bot] = start(bots, tmp_path, stand_in, store, poll_seconds=poll,
                  CYTO_LOCAL_COMMAND=f"{sys.executable} {flaky}")
    bot.command(f"run {DATE} batch-7 retries=1")
    run = wait_for(lambda: (r := latest_run(bot.db)) is not None and r.slack_thread_ts and r, what="thread")
    stand_in.fail_next("chat.postMessage", 1000, retry_after=3600)
    stand_in.fail_next("chat.update", 1000, retry_after=3600)

    run = finished_run(bot.db)
    db = bot.db
    assert run.state == RunState.SUCCEEDED  # A02's transient failure was retried automatically
    assert ("A02", 2) in submitted_attempts(db, run.id), "the automatic retry was submitted"
    for job in db.jobs(run.id):
        attempt = db.attempt(job.id, job.attempt)
        assert attempt is not None and attempt.stopped_at is not None
        delay = job.updated_at - attempt.stopped_at
        assert delay <= 2 * poll, f"{job.analysis}: the ledger knew {delay:.2f}s after the executor"
    status, health = wait_for(bot.health, what="/healthz")
    assert status == 200 and health["ok"], health
    assert health["outbox_backlog"], "the messages Slack refused wait in the outbox"
    # The sender waits out Retry-After instead of hammering Slack: one refused call per method.
    refused = [c.method for c in stand_in.calls if c.status == 429]
    assert refused.count("chat.postMessage") <= 1 and refused.count("chat.update") <= 1, refused
    log = bot.stop()
    assert "maximum number of running instances" not in log and "executed successfully" not in log


# -- 2. at most one message per intent, whatever the connection does ----------------------------
@pytest.mark.parametrize("processes", [1, 2])
def test_root_post_never_answered_abandons_the_run_with_nothing_submitted(bots, tmp_path: Path,
                                                                          stand_in: SlackStandIn, store: Path,
                                                                          processes: int) -> None:
    make_batch(store, "batch-7", 3)
    stand_in.drop_next("chat.postMessage", 50, after_accept=False)
    first = start(bots, tmp_path, stand_in, store, processes)[0]
    first.command(f"run {DATE} batch-7")
    run = finished_run(first.db)
    db = first.db
    assert run.state == RunState.CANCELLED and run.slack_thread_ts is None
    assert all(j.state == JobState.CANCELLED and "abandoned" in (j.reason or "") for j in db.jobs(run.id))
    assert submitted_attempts(db, run.id) == [], "nothing was submitted"
    assert hold_state(db, run.id) == "abandoned"
    posts = stand_in.calls_to("chat.postMessage", accepted_only=False)
    assert [c.status for c in posts] == [DROPPED] * 5, "5 tries, each looked up first after the first"
    assert stand_in.count("conversations.history") == 5
    waiting, told = wait_for(lambda: len(responds(stand_in)) == 2 and responds(stand_in), what="the user is told")
    assert f"run `{run.id}` is recorded and waits for its thread" in waiting
    assert f"run `{run.id}` was abandoned and nothing was submitted" in told
    spool = tmp_path / "spool"
    assert not spool.exists() or spool_job_names(spool) == [], "no job ever started"


def test_root_post_refused_abandons_the_run_at_once_and_says_how_to_fix_it(bots, tmp_path: Path,
                                                                           stand_in: SlackStandIn,
                                                                           store: Path) -> None:
    make_batch(store, "batch-7", 3)
    stand_in.refused_channels.add(CHANNEL)
    [bot] = start(bots, tmp_path, stand_in, store)
    bot.command(f"run {DATE} batch-7")
    run = finished_run(bot.db)
    assert run.state == RunState.CANCELLED and submitted_attempts(bot.db, run.id) == []
    assert hold_state(bot.db, run.id) == "abandoned"
    [told] = wait_for(lambda: responds(stand_in), what="the user is told")
    assert told == (f"⚠️ Could not post in this channel (not_in_channel); run `{run.id}` was abandoned and nothing "
                    "was submitted. Invite the app to this channel (`/invite @cyto`) and try again.")
    posts = stand_in.calls_to("chat.postMessage", accepted_only=False)
    assert len(posts) == 1 and posts[0].response["error"] == "not_in_channel", "refused for good: not tried again"
    assert stand_in.count("conversations.history") == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_root_accepted_but_answer_lost_is_found_by_its_key_not_posted_again(bots, tmp_path: Path,
                                                                            stand_in: SlackStandIn, store: Path,
                                                                            processes: int) -> None:
    make_batch(store, "batch-7", 3)
    stand_in.drop_next("chat.postMessage", 1, after_accept=True)
    first = start(bots, tmp_path, stand_in, store, processes)[0]
    first.command(f"run {DATE} batch-7")
    run = finished_run(first.db)
    [(root_ts, root)] = top_level(stand_in)
    assert run.state == RunState.SUCCEEDED and run.slack_thread_ts == root_ts
    assert json.loads(json.dumps(root["metadata"]))["event_payload"]["key"] == f"root:{run.id}"
    wait_for(lambda: done_alerts(stand_in, root_ts), what="done alert")
    assert len(in_thread(stand_in, root_ts)) == 1, "only the done alert in the thread"
    assert stand_in.count("conversations.history") == 1, "looked once before posting again, and found it"
    assert len(stand_in.calls_to("chat.postMessage", accepted_only=False)) == 2, "root once, done alert once"
    assert sorted(submitted_attempts(first.db, run.id)) == [("A01", 1), ("A02", 1), ("A03", 1)]


@pytest.mark.parametrize("processes", [1, 2])
def test_failure_replies_and_done_alert_once_with_slow_slack_and_lost_answers(bots, tmp_path: Path,
                                                                             stand_in: SlackStandIn, store: Path,
                                                                             processes: int) -> None:
    failing = tuple(f"A{i:02d}" for i in range(1, 11))
    make_batch(store, "batch-7", 12, failing=failing)
    for method in ("chat.postMessage", "chat.update", "conversations.replies"):
        stand_in.slow_answer[method] = 0.3
    first = start(bots, tmp_path, stand_in, store, processes)[0]
    first.command(f"run {DATE} batch-7 retries=0")
    wait_for(lambda: (r := latest_run(first.db)) is not None and r.slack_thread_ts, what="thread")
    stand_in.drop_next("chat.postMessage", 2, after_accept=True)  # the first failure reply's answer is lost
    run = finished_run(first.db)
    root_ts = run.slack_thread_ts
    wait_for(lambda: done_alerts(stand_in, root_ts), timeout=seconds(60), what="done alert")
    wait_for(lambda: not any(r["state"] in ("pending", "sending") for r in outbox(first.db)), timeout=seconds(60),
             what="outbox drained")
    texts = [json.dumps(p["blocks"]) for p in failure_posts(stand_in, root_ts)]
    for analysis in failing:
        assert sum(f"*{analysis}*" in t for t in texts) == 1, f"{analysis} replied exactly once"
    assert len(done_alerts(stand_in, root_ts)) == 1
    assert len(top_level(stand_in)) == 1
    keys = [r["key"] for r in outbox(first.db) if r["kind"] == "failures"]
    assert len(keys) == len(texts), "one Slack message per failure intent"


# -- 3. a run never executes without its thread ------------------------------------------------
@pytest.mark.parametrize("accepted", [True, False], ids=["after-slack-accepted", "before-slack-accepted"])
def test_sigkill_during_the_root_post_resumes_in_one_thread(bots, tmp_path: Path, stand_in: SlackStandIn,
                                                           store: Path, accepted: bool) -> None:
    make_batch(store, "batch-7", 3)
    if accepted:
        stand_in.slow_answer["chat.postMessage"] = 30
    else:
        stand_in.delay["chat.postMessage"] = 3
    [first] = start(bots, tmp_path, stand_in, store)
    first.command(f"run {DATE} batch-7")
    db = first.db
    run = wait_for(lambda: latest_run(db), what="run recorded")
    if accepted:
        wait_for(lambda: top_level(stand_in), what="Slack has the root message")
    else:
        wait_for(lambda: any(r["state"] == "sending" for r in outbox(db)), what="root post in flight")
    assert db.run(run.id).state == RunState.HELD and submitted_attempts(db, run.id) == []
    first.kill()
    stand_in.slow_answer.clear()
    stand_in.delay.clear()

    start(bots, tmp_path, stand_in, store)
    run = finished_run(db)
    [(root_ts, _)] = wait_for(lambda: top_level(stand_in), what="root")
    assert run.state == RunState.SUCCEEDED and run.slack_thread_ts == root_ts
    [posted] = [c for c in stand_in.calls_to("chat.postMessage") if not c.params.get("thread_ts")]
    assert ("Resuming after an interruption" in json.dumps(posted.blocks)) is not accepted
    assert sorted(submitted_attempts(db, run.id)) == [("A01", 1), ("A02", 1), ("A03", 1)], "each job once"
    assert hold_state(db, run.id) == "released"
    wait_for(lambda: done_alerts(stand_in, root_ts), what="done alert")


def test_sigkill_after_slack_accepted_a_failure_reply_posts_it_once(bots, tmp_path: Path, stand_in: SlackStandIn,
                                                                    store: Path) -> None:
    make_batch(store, "batch-7", 3, failing=("A02",))
    [first] = start(bots, tmp_path, stand_in, store)
    first.command(f"run {DATE} batch-7 retries=0")
    db = first.db
    run = wait_for(lambda: (r := latest_run(db)) is not None and r.slack_thread_ts and r, what="thread")
    stand_in.slow_answer["chat.postMessage"] = 30  # Slack takes the reply; the answer never arrives in time
    wait_for(lambda: failure_posts(stand_in, run.slack_thread_ts), timeout=seconds(60),
             what="Slack has the failure reply")
    first.kill()
    stand_in.slow_answer.clear()
    start(bots, tmp_path, stand_in, store)
    wait_for(lambda: done_alerts(stand_in, run.slack_thread_ts), timeout=seconds(60), what="done alert")
    [reply] = failure_posts(stand_in, run.slack_thread_ts)
    assert "*A02*" in json.dumps(reply["blocks"])
    assert len(in_thread(stand_in, run.slack_thread_ts)) == 2, "one failure reply, one done alert"
    assert stand_in.count("conversations.replies") == 1, "the restarted bot looked in the thread, and found it"
    assert finished_run(db).state == RunState.FAILED


# -- 4. commands act once -----------------------------------------------------------------------
def test_a_redelivered_or_replayed_command_acts_once(bots, tmp_path: Path, stand_in: SlackStandIn,
                                                     store: Path) -> None:
    make_batch(store, "batch-7", 2)
    make_batch(store, "batch-8", 2)
    [bot] = start(bots, tmp_path, stand_in, store)
    body = command_body(stand_in, f"run {DATE} batch-7", trigger_id="4242.1.abc")
    headers = signed_headers(body)
    assert bot.post(body, headers)[0] == 200
    run = wait_for(lambda: (r := latest_run(bot.db)) is not None and r.slack_thread_ts and r, what="thread")
    assert bot.post(body, headers)[0] == 200  # a byte-identical replay within Slack's 5 minutes
    assert bot.post(body, {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})[0] == 200
    link = f"<https://slack.com/archives/{CHANNEL}/p{run.slack_thread_ts.replace('.', '')}|run `{run.id}`>"
    answers = wait_for(lambda: len(responds(stand_in)) >= 2 and responds(stand_in), what="answers")
    assert answers == [f"Already started: {link}"] * 2
    # three deliveries of another command at once: one run
    burst = command_body(stand_in, f"run {DATE} batch-8", trigger_id="4343.1.abc")
    threads = [threading.Thread(target=bot.post, args=(burst, signed_headers(burst))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(responds(stand_in)) >= 4, what="answers to the burst")
    finished = wait_for(lambda: len(runs := bot.db.runs(10)) == 2 and all(r.state.is_finished for r in runs)
                        and runs, what="both runs finished")
    assert len(top_level(stand_in)) == 2
    for r in finished:
        assert len(submitted_attempts(bot.db, r.id)) == 2
    with bot.db.transaction() as conn:
        recorded = conn.execute("SELECT trigger_id, user, channel, run_id FROM slack_commands ORDER BY trigger_id")
        assert [tuple(row) for row in recorded] == [("4242.1.abc", USER, CHANNEL, run.id),
                                                    ("4343.1.abc", USER, CHANNEL, finished[0].id)]
    log = bot.stop()
    assert log.count(f"/cyto run by {USER} in {CHANNEL}: run ") == 2
    assert log.count("re-delivery") == 4
