"""Slack bot figures.

1. Ack latency of `/cyto run` for a 10,000-analysis local batch, in process: a signed request
   through Bolt's `app.dispatch` (signature check included) until the ack comes back. Goal: p99 < 50 ms;
   the ack must not wait for the listing, which happens in the lazy listener afterwards. Measured
   idle (each request's lazy work finished before the next) and busy (requests back to back while
   earlier requests list, record and submit 10,000 analyses in the background).
2. Slack Web API calls for a run of 1,000 analyses with 10 failures, counted at the local Slack
   stand-in (tests/slack/slack_stand_in.py), over as many poll cycles as the run takes.

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
from slack_stand_in import SlackStandIn  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.states import JobState  # noqa: E402
from handlers.app import CytoBot, build_app  # noqa: E402
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
    return CytoBot.from_settings(settings, sleep=lambda s: None, executor=executor), executor


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
                              "trigger_id": "1"})
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
        runs = bot.engine.db.runs(1)[0]
        assert bot.engine.summary(runs.id).total == 10_000
    stand_in.close()
    print(f"ack latency of /cyto run, 10,000-analysis batch, in process ({requests} requests each):")
    for label, values in (("idle", idle), ("busy", busy)):
        print(f"  {label}: p50 {statistics.median(values):6.2f} ms   p99 {percentile(values, 99):6.2f} ms   "
              f"max {max(values):6.2f} ms")
    print(f"  (after the ack, the lazy listener lists 10,000 folders, records the run and posts the root "
          f"message: {lazy_s:.2f} s a run when idle)")


def bench_calls(analyses: int = 1000, failures: int = 10) -> None:
    stand_in = SlackStandIn()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = make_batch(root / "store", "k1", analyses)
        bot, executor = setup(root, stand_in)
        plan = bot.cyto.plan(DATE, "k1", retries=0)
        run = bot.engine.start_run(plan, requested_by="UALICE", submit=False)
        posted = bot.client.chat_postMessage(channel="CLAB", text="root")
        bot.engine.db.set_slack_thread(run.id, "CLAB", posted["ts"])
        bot.engine.submit_pending(run.id)
        failing = set(names[:: analyses // failures][:failures])
        # Each poll cycle 50 analyses start and 50 finish; the failures are spread over the run.
        pending = list(names)
        running: list[str] = []
        cycles = 0
        while not bot.engine.get_run(run.id).state.is_finished:
            for name in running[:50]:
                if name in failing:
                    executor.set(name, JobState.FAILED, exit_code=1, reason="exit code 1",
                                 log=f"ERROR: {name} could not be read\n")
                else:
                    executor.set(name, JobState.SUCCEEDED, exit_code=0)
            running = running[50:]
            for name in pending[:50]:
                executor.set(name, JobState.RUNNING)
            running += pending[:50]
            pending = pending[50:]
            bot.poll_cycle()
            cycles += 1
        for _ in range(3):
            bot.poll_cycle()
        bot.close()
    calls = Counter(c.method for c in stand_in.web_api_calls())
    stand_in.close()
    total = sum(calls.values())
    print(f"Slack Web API calls for a run of {analyses} analyses with {failures} failures "
          f"({cycles} poll cycles, counted at the stand-in):")
    for method, n in sorted(calls.items()):
        print(f"  {method:20s} {n}")
    print(f"  {'total':20s} {total}   (root post 1 + root edits ≤ 1 per cycle + failure replies + done alert)")


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
