"""One ledger for the lab: two `cyto serve` processes and the `cyto` command line on one run
database (SQLite file, and a real PostgreSQL server), the local executor and the Slack stand-in.

A run started from the CLI is seen by `/cyto status`; a Retry clicked in Slack shows in
`cyto status RUN --wait`; killing one bot mid-run loses and duplicates nothing; and no Slack message
is posted twice.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import ServeProcess, serve_env, start_serve
from slack_harness import DATE, ROOT, click_body, fix_analysis, make_batch, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from bot.ledger import RunDB
from bot.states import RunState
from tests.timeouts import seconds

pytestmark = pytest.mark.slow

# Each job takes a moment, so that a bot can be killed while its run is in flight.
SLOW_JOB = ("import time, os, sys; time.sleep(0.7); "
            "os.execv(sys.executable, [sys.executable, '-m', 'container.entrypoint'])")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def bots(tmp_path: Path, stand_in: SlackStandIn, store: Path, ledger: str) -> Iterator[list[ServeProcess]]:
    command = shlex.join([sys.executable, "-c", SLOW_JOB])
    started = [start_serve(tmp_path, stand_in, store, poll_seconds=0.3, name=name, CYTO_DB=ledger,
                           CYTO_LOCAL_COMMAND=command) for name in ("bot-a", "bot-b")]
    yield started
    for bot in started:
        bot.stop()


def cli(tmp_path: Path, stand_in: SlackStandIn, store: Path, ledger: str, *args: str) -> subprocess.Popen[str]:
    env = serve_env(tmp_path, stand_in, store, 0.3, CYTO_DB=ledger)
    return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=seconds(120))
    return proc.returncode, out


def posted_keys(stand_in: SlackStandIn) -> list[str]:
    """The outbox key of every message Slack accepted a post of."""
    keys = []
    for call in stand_in.calls_to("chat.postMessage"):
        metadata = call.params.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata or {}
        keys.append(str((metadata.get("event_payload") or {}).get("key") or call.ts))
    return keys


def test_two_bots_and_the_cli_share_one_ledger(bots: list[ServeProcess], tmp_path: Path, stand_in: SlackStandIn,
                                                store: Path, ledger: str) -> None:
    bot_a, bot_b = bots
    db = RunDB(ledger)
    make_batch(store, "from-cli", 2)
    make_batch(store, "from-slack", 4, failing=("A02",))

    # A run started from the command line is seen from Slack.
    code, out = finish(cli(tmp_path, stand_in, store, ledger, "run", DATE, "from-cli", "--json"))
    assert code == 0, out
    cli_run = json.loads(out.strip().splitlines()[-1])["run_id"]
    status, ack = bot_b.command(f"status {cli_run}")
    assert status == 200
    shown = wait_for(lambda: ack if cli_run in ack else next(
        (c.params.get("text", "") + json.dumps(c.params.get("blocks")) for c in stand_in.calls_to("respond")
         if cli_run in json.dumps(c.params)), None), what="/cyto status of the CLI's run")
    assert "from-cli" in shown and "2 analyses" in shown, shown

    # A run started in Slack, followed from the command line; one bot dies while it is in flight.
    bot_a.command(f"run {DATE} from-slack retries=0")
    run = wait_for(lambda: next((r for r in db.runs(5) if r.batch == "from-slack"), None), what="the Slack run")
    follower = cli(tmp_path, stand_in, store, ledger, "status", run.id, "--wait")
    wait_for(lambda: any(j.state.value in ("RUNNING", "SUCCEEDED") for j in db.jobs(run.id)), what="a job running")
    bot_a.kill()
    reply = wait_for(lambda: next((c for c in stand_in.calls_to("chat.postMessage")
                                   if "failed for good" in json.dumps(c.blocks)), None),
                     timeout=seconds(60), what="the failure reply, posted by the surviving bot")
    retry = next(e for b in reply.blocks if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"].startswith("cyto_retry:"))
    fix_analysis(store, "from-slack", "A02")
    click = click_body(stand_in, reply.ts, retry)
    assert bot_b.post(click, signed_headers(click))[0] == 200

    code, out = finish(follower)
    assert code == 0, out
    assert "A02: failed after 1 attempt(s)" in out and "A02: retry requested by" in out, out
    assert db.run(run.id).state == RunState.SUCCEEDED
    assert wait_for(lambda: db.run(cli_run).state.is_finished, timeout=seconds(60), what="the CLI's run")
    wait_for(lambda: any(k.startswith("done:") for k in posted_keys(stand_in)), timeout=seconds(60),
             what="the done alert")

    # Nothing lost, nothing twice: every analysis succeeded, each attempt was submitted once, and
    # every Slack message went out once.
    jobs = db.jobs(run.id)
    assert sorted(j.analysis for j in jobs) == ["A01", "A02", "A03", "A04"]
    submitted = Counter(a.executor_job_id for j in jobs for a in db.attempts(j.id) if a.executor_job_id)
    assert submitted and max(submitted.values()) == 1
    assert [j.attempt for j in jobs if j.analysis == "A02"] == [2]
    keys = posted_keys(stand_in)
    assert {k.split(":")[0] for k in keys} >= {"root", "failures", "done"}, keys
    assert [k for k, n in Counter(keys).items() if n > 1] == [], keys
