"""One PostgreSQL ledger for the lab (issue 18): two `cyto serve` processes and a CLI on it, with the
local executor and the Slack stand-in. A run started from the CLI is seen by `/cyto status`; a run
started in Slack finishes when the bot that started it is killed mid-run, a Retry clicked in Slack is
followed by `cyto status --wait`, and no Slack message is posted twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from serve_process import start_serve
from slack_harness import DATE, ROOT, click_body, fix_analysis, make_batch, signed_headers, wait_for
from slack_stand_in import SlackStandIn

from bot.ledger import RunDB
from tests.timeouts import seconds

pytestmark = pytest.mark.slow


def posted_keys(stand_in: SlackStandIn) -> list[str]:
    """The outbox key of every message Slack accepted a post of."""
    keys = []
    for call in stand_in.calls_to("chat.postMessage"):
        metadata = call.params.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata or {}
        keys.append(str((metadata.get("event_payload") or {}).get("key") or call.ts))
    return keys


def test_two_bots_and_a_cli_share_one_postgres_ledger(tmp_path: Path, stand_in: SlackStandIn, store: Path,
                                                      postgres_url: str) -> None:
    make_batch(store, "from-cli", 3)
    make_batch(store, "from-slack", 8, failing=("A02",))
    slow = tmp_path / "slow_job.py"  # each job takes a while, so a bot can be killed mid-run
    slow.write_text("import runpy, sys, time\ntime.sleep(1.5)\nsys.argv = ['entrypoint']\n"
                    "runpy.run_module('container.entrypoint', run_name='__main__')\n")
    env = {"CYTO_DB": postgres_url, "CYTO_LOCAL_COMMAND": f"{sys.executable} {slow}", "CYTO_LOCAL_MAX_PARALLEL": "2"}
    first = start_serve(tmp_path, stand_in, store, poll_seconds=0.3, name="first", **env)
    second = start_serve(tmp_path, stand_in, store, poll_seconds=0.3, name="second", **env)
    db = RunDB(postgres_url)
    try:
        cli_env = {**os.environ, "PYTHONPATH": str(ROOT), "CYTO_STORE": str(store), "CYTO_DB": postgres_url,
                   "CYTO_LOCAL_SPOOL": str(tmp_path / "spool"), **env}
        started = subprocess.run([sys.executable, "-m", "bot.cli", "run", DATE, "from-cli", "--pipeline", "wordcount",
                                  "--retries", "0"], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                                 timeout=seconds(120))
        assert started.returncode == 0, started.stdout + started.stderr
        cli_run = wait_for(lambda: next((r for r in db.runs() if r.batch == "from-cli"), None), what="the CLI's run")
        assert second.command(f"status {cli_run.id}")[0] == 200
        answer = wait_for(lambda: stand_in.calls_to("respond"), what="the answer to /cyto status")[0]
        assert "from-cli" in json.dumps(answer.params) and "3 analyses" in json.dumps(answer.params), answer.params

        first.command(f"run {DATE} from-slack retries=0")
        run = wait_for(lambda: next((r for r in db.runs() if r.batch == "from-slack"), None), what="the Slack run")
        wait_for(lambda: any(j.state.value in ("QUEUED", "RUNNING") for j in db.jobs(run.id)), what="jobs running")
        first.kill()  # mid-run: the other bot carries on
        finished = wait_for(lambda: (r := db.run(run.id)) and r.state.is_finished and r, timeout=seconds(120),
                            what="the Slack run finished by the other bot")
        assert finished.state.value == "FAILED"  # A02 fails for good, the others succeed
        assert wait_for(lambda: db.run(cli_run.id).state.is_finished, timeout=seconds(60), what="the CLI's run")
        wait_for(lambda: any("failed for good" in json.dumps(c.blocks) for c in stand_in.calls_to("chat.postMessage")),
                 timeout=seconds(60), what="the failure reply")
        wait_for(lambda: any(k.startswith("done:") for k in posted_keys(stand_in)), timeout=seconds(60),
                 what="the done alert")

        # A Retry clicked in Slack (on the bot still running) is what `cyto status --wait` follows.
        fix_analysis(store, "from-slack", "A02")
        reply = next(c for c in stand_in.calls_to("chat.postMessage") if "failed for good" in json.dumps(c.blocks))
        retry = next(e for b in reply.blocks if b["type"] == "actions" for e in b["elements"])
        click = click_body(stand_in, reply.ts, retry)
        assert second.post(click, signed_headers(click))[0] == 200
        wait_for(lambda: db.job(run.id, "A02").attempt == 2, what="the retry recorded")
        followed = subprocess.run([sys.executable, "-m", "bot.cli", "status", run.id, "--wait", "--json"], cwd=ROOT,
                                  env=cli_env, capture_output=True, text=True, timeout=seconds(120))
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert json.loads(followed.stdout)["run"]["state"] == "succeeded", followed.stdout
    finally:
        log = second.stop()
        first.kill() if first.proc.poll() is None else None
    keys = posted_keys(stand_in)
    assert {k.split(":")[0] for k in keys} >= {"root", "failures", "done"}, keys
    twice = [k for k, n in Counter(keys).items() if n > 1]
    assert twice == [], (twice, log)
    assert len(db.jobs(run.id)) == 8
    submitted = [a.job_name for j in db.jobs(run.id) for a in db.attempts(j.id)]
    assert len(submitted) == len(set(submitted)) == 9, "nothing submitted twice (A02 twice: its retry)"
