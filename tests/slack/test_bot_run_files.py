"""Runs own their files, through Slack: each failure reply points at its own run's log, and a second
`/cyto run` of a batch that is still running is refused unless `--allow-concurrent` (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from slack_harness import USER, Served, make_batch, wait_for
from test_bot_e2e import failure_replies, responds, thread_replies

from tests.timeouts import seconds

pytestmark = pytest.mark.slow

BATCH = "batch-7"


def local_path(uri: str) -> Path:
    return Path(unquote(urlsplit(uri).path)) if uri.startswith("file:") else Path(uri)


def start(served: Served, text: str, runs_before: int) -> str:
    served.command(text)
    runs = wait_for(lambda: len(r := served.bot.cyto.engine.db.runs(10)) > runs_before and r, what="run")
    wait_for(lambda: served.bot.cyto.engine.get_run(runs[0].id).slack_thread_ts, what="thread recorded")
    return runs[0].id


def test_each_runs_failure_reply_links_its_own_log(served: Served, store: Path) -> None:
    # More failures than a reply details (5): listed ones carry the run's own log too.
    failing = ("A01", "A02", "A03", "A04", "A05", "A06", "A07")
    make_batch(store, BATCH, 7, failing=failing)
    links: dict[str, dict[str, str]] = {}
    for runs_before in range(2):
        run_id = start(served, f"run 2018-12-05 {BATCH} retries=0", runs_before)
        served.bot.cyto.wait(run_id, interval=0.05, timeout=seconds(30))  # the engine only: Slack learns all at once
        served.drive(run_id)
        replies = failure_replies(served, served.bot.cyto.engine.get_run(run_id).slack_thread_ts)
        posts = [p for reply in replies for p in served.bot.state.message(run_id, reply.ts)]
        links[run_id] = {p.entry.analysis: p.entry.full_log for p in posts}
        assert sorted(links[run_id]) == list(failing)
        assert any(not p.entry.detailed for p in posts), "at least one listed compactly"
        for analysis, full_log in links[run_id].items():
            assert full_log.endswith(f"/Logs/2018-12-05/{BATCH}/{analysis}/{run_id}/attempt-1.log")
            assert f"cyto job {run_id} attempt 1" in local_path(full_log).read_text(), "the run's own log"
        detailed = next(p for p in posts if p.entry.detailed)
        text = json.dumps([r.blocks for r in replies])
        assert f"{store}/Logs/2018-12-05/{BATCH}/{detailed.entry.analysis}/{run_id}/attempt-1.log" in text
    first, second = links
    assert all(links[first][a] != links[second][a] for a in failing)


def test_second_run_of_an_active_batch_is_refused_then_allowed_with_its_own_output(served: Served,
                                                                                  store: Path) -> None:
    make_batch(store, BATCH, 2)
    first_id = start(served, f"run 2018-12-05 {BATCH}", 0)
    posts = served.stand_in.count("chat.postMessage")

    served.command(f"run 2018-12-05 {BATCH}")
    [answer] = wait_for(lambda: responds(served), what="ephemeral refusal")
    assert served.stand_in.calls_to("respond")[0].params["response_type"] == "ephemeral"
    assert answer.startswith(f"⚠️ Run `{first_id}` of *2018-12-05/{BATCH}* is still running (started by <@{USER}> "
                             "at ")
    assert "0/2 done), so nothing was started" in answer
    assert f"Cancel it (`/cyto cancel {first_id}`), or add `--allow-concurrent` to run both" in answer
    assert [r.id for r in served.bot.cyto.engine.db.runs(5)] == [first_id], "nothing recorded"
    assert served.stand_in.count("chat.postMessage") == posts, "nothing posted"

    second = served.bot.cyto.engine.get_run(start(served, f"run 2018-12-05 {BATCH} --allow-concurrent", 1))
    assert second.id != first_id and second.outputs_scoped
    root = served.stand_in.calls_to("chat.postMessage")[-1]
    assert f"this one writes its own `Output/2018-12-05/{BATCH}.run-{second.id}/`" in json.dumps(root.blocks)
    served.drive(first_id)
    served.drive(second.id)
    for run_id, folder in ((first_id, BATCH), (second.id, f"{BATCH}.run-{second.id}")):
        run = served.bot.cyto.engine.get_run(run_id)
        [alert] = [c for c in thread_replies(served, run.slack_thread_ts) if "finished" in c.params["text"]]
        assert f"{store}/Output/2018-12-05/{folder}/" in json.dumps(alert.blocks)
        for analysis in ("A01", "A02"):
            result = json.loads((store / "Output/2018-12-05" / folder / analysis / "result.json").read_text())
            assert result["run_id"] == run_id
