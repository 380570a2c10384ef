"""Slack bot figures.

1. Ack latency of `/cyto run` for a 10,000-analysis local batch, in process: a signed request
   through Bolt's `app.dispatch` (signature check included) until the ack comes back. Goal: p99 < 50 ms;
   the ack must not wait for the listing, which happens in the lazy listener afterwards. Measured
   idle (each request's lazy work finished before the next) and busy (requests back to back while
   earlier requests list, record and submit 10,000 analyses in the background).
2. A run of 1,000 analyses with 10 failures while Slack answers 429 (Retry-After 1 s) to a third
   of all calls and drops 5 % of post/edit connections after accepting them, with the engine's
   poll and Slack's delivery as the separate scheduler jobs of `cyto serve`. Prints the messages
   Slack holds per kind (goal: exactly 1 root, 1 reply per failure batch, 1 done alert, 0
   duplicates), the Web API calls made, and the delay between the executor finishing a job and
   the ledger knowing it (goal: at most 2 poll intervals, whatever Slack does).

The store is a real local folder; the executor is an in-memory one (tests/scripted_executor.py),
so that 10,000-analysis runs do not start 10,000 processes per request. In the ack benchmark the
background submission of each run is switched off: it is not part of the ack path, and 80 runs of
10,000 submissions would only make the benchmark take minutes.

    python bench/bench_slack.py [--requests 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "slack")]

from slack_bolt.request import BoltRequest  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402
from slack_stand_in import Chaos, SlackStandIn  # noqa: E402

from bot.scheduler import PollScheduler  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.states import JobState  # noqa: E402
from handlers.app import build_app  # noqa: E402
from handlers.cyto_bot import CytoBot  # noqa: E402
from handlers.outbox import EVENT_TYPE  # noqa: E402
from handlers.slack_state import root_key  # noqa: E402
from tests.scripted_executor import ScriptedExecutor  # noqa: E402

SECRET = "bench-secret"
DATE = "2018-12-05"


def make_batch(store: Path, batch: str, n: int) -> list[str]:
    names = [f"a{i:05d}" for i in range(n)]
    for name in names:
        (store / "Input" / DATE / batch / name).mkdir(parents=True)
    return names


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts,
            "x-slack-signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def setup(root: Path, stand_in: SlackStandIn) -> tuple[CytoBot, ScriptedExecutor]:
    settings = Settings(store=str(root / "store"), db=str(root / "runs.sqlite"), local_spool=str(root / "spool"),
                        default_pipeline="wordcount", slack_bot_token="xoxb-bench", slack_signing_secret=SECRET,
                        slack_api_url=stand_in.url)
    executor = ScriptedExecutor()
    return CytoBot.from_settings(settings, executor=executor), executor


def bench_ack(requests: int) -> None:
    stand_in = SlackStandIn()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_batch(root / "store", "big", 10_000)
        bot, _ = setup(root, stand_in)
        bot.submit_soon = lambda run_id: None  # type: ignore[method-assign]
        app = build_app(bot, signing_secret=SECRET)

        def dispatch(i: int) -> float:
            # Every request records a new run of the same (unpolled, so unfinished) batch.
            body = urlencode({"command": "/cyto", "text": f"run {DATE} big --allow-concurrent", "user_id": f"U{i:05d}",
                              "channel_id": "CLAB", "team_id": "T1", "response_url": stand_in.response_url(),
                              "trigger_id": f"{i}.{time.time_ns()}"})
            t0 = time.perf_counter()
            response = app.dispatch(BoltRequest(body=body, headers=signed(body)))
            elapsed = (time.perf_counter() - t0) * 1000
            assert response.status == 200 and "Looking at" in response.body, response.body
            return elapsed

        def runs_posted() -> int:
            return stand_in.count("chat.postMessage") + stand_in.count("respond")  # root, or a refusal

        dispatch(-1)  # warm up (imports, first auth.test)
        wait(lambda: runs_posted() == 1)
        idle = []
        t_lazy = time.perf_counter()
        for i in range(requests):
            idle.append(dispatch(i))
            wait(lambda i=i: runs_posted() == i + 2)
        lazy_s = (time.perf_counter() - t_lazy) / requests
        busy = [dispatch(requests + i) for i in range(requests)]
        wait(lambda: runs_posted() == 2 * requests + 1, timeout=600)
        refused = [c.params.get("text") for c in stand_in.calls_to("respond")]
        assert not refused, refused
        runs = bot.cyto.runs(1)[0]
        assert bot.cyto.summary(runs.id).total == 10_000
    stand_in.close()
    print(f"ack latency of /cyto run, 10,000-analysis batch, in process ({requests} requests each):")
    for label, values in (("idle", idle), ("busy", busy)):
        print(f"  {label}: p50 {statistics.median(values):6.2f} ms   p99 {percentile(values, 99):6.2f} ms   "
              f"max {max(values):6.2f} ms")
    print(f"  (after the ack, the lazy listener lists 10,000 folders, records the run and posts the root "
          f"message: {lazy_s:.2f} s a run when idle)")


def bench_calls(analyses: int = 1000, failures: int = 10, poll_s: float = 0.5) -> None:
    stand_in = SlackStandIn(chaos=Chaos(rate_limited=1 / 3, dropped_after_accept=0.05, retry_after=1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = make_batch(root / "store", "k1", analyses)
        bot, executor = setup(root, stand_in)
        # What `/cyto run` does: a held run, its hold and root intent, the root posted when Slack
        # answers (or by the Slack job), which releases the run; the poll job submits and polls it.
        plan = bot.cyto.plan(DATE, "k1", retries=0)
        run, _ = bot.start_run(plan, "UALICE", "CLAB")
        scheduler = PollScheduler(bot.poll, poll_s)
        scheduler.add("slack", bot.slack_cycle, poll_s)
        bot.wake = scheduler.poll_now
        bot.wake_slack = lambda: scheduler.run_now("slack")
        scheduler.start()
        t0 = time.monotonic()
        wait(lambda: len(executor.submit_calls) == analyses, timeout=300)
        released_s = time.monotonic() - t0
        failing = set(names[:: analyses // failures][:failures])
        finished_at: dict[str, float] = {}
        # Every 0.1 s 50 analyses finish (the failures spread over the run), as an executor would.
        for start in range(0, analyses, 50):
            for name in names[start:start + 50]:
                if name in failing:
                    executor.set(name, JobState.FAILED, exit_code=1, reason="exit code 1",
                                 log=f"ERROR: {name} could not be read\n")
                else:
                    executor.set(name, JobState.SUCCEEDED, exit_code=0)
                finished_at[name] = time.time()
            time.sleep(0.1)
        wait(lambda: bot.cyto.get_run(run.id).state.is_finished, timeout=300)
        delays = sorted(job.updated_at - finished_at[job.analysis] for job in bot.cyto.jobs(run.id))
        wait(lambda: not bot.sender.outbox.backlog(), timeout=600)
        drained_s = time.monotonic() - t0
        scheduler.shutdown()
        bot.close()
        thread_ts = bot.cyto.get_run(run.id).slack_thread_ts
        with bot.outbox.tables.transaction() as conn:
            intents = Counter(r[0] for r in conn.execute("SELECT kind FROM slack_outbox WHERE run_id = ?", (run.id,)))
            abandoned = conn.execute("SELECT COUNT(*) FROM slack_outbox WHERE state = 'failed'").fetchone()[0]
    held = stand_in.posts("CLAB")
    keys = Counter(p["metadata"]["event_payload"]["key"] for _, p in held
                   if (p.get("metadata") or {}).get("event_type") == EVENT_TYPE)
    posted = Counter(key.split(":")[0] for key in keys)
    replied = Counter(n for _, p in held if "failed for good" in str(p.get("blocks"))
                      for n in failing if f"*{n}*" in str(p.get("blocks")))
    calls = Counter((c.method, c.status) for c in stand_in.web_api_calls())
    stand_in.close()
    print(f"run of {analyses} analyses, {failures} failures; Slack answers 429 to 1/3 of all calls and drops 5 % "
          f"of post/edit answers after accepting (poll and Slack jobs every {poll_s:g}s):")
    print(f"  Slack holds: {posted['root']} root, {posted['failures']} failure replies for "
          f"{intents['failures']} failure batches, {posted['done']} done alert; "
          f"{sum(n - 1 for n in keys.values())} duplicates; {len(held)} messages in all")
    print(f"  every failure replied once: {sorted(replied.values()) == [1] * failures}; root is the thread: "
          f"{keys.get(root_key(run.id)) == 1 and thread_ts is not None}; intents failed for good: {abandoned}")
    print(f"  executor finished -> ledger knew: p50 {statistics.median(delays):.2f}s  "
          f"p99 {percentile(delays, 99):.2f}s  max {max(delays):.2f}s  (goal <= {2 * poll_s:g}s)")
    print(f"  root posted and run released after {released_s:.1f}s; outbox drained {drained_s:.1f}s after the command")
    for method in sorted({m for m, _ in calls}):
        by_status = ", ".join(f"{n} {'ok' if s == 200 else 'refused' if s == 0 else 'dropped' if s < 0 else s}"
                              for (m, s), n in sorted(calls.items()) if m == method)
        print(f"  {method:24s} {by_status}")


def wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    bench_ack(args.requests)
    print()
    bench_calls()


if __name__ == "__main__":
    main()
