"""Pure parts of the bot: parsing `/cyto` text, permissions and Block Kit rendering."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from slack_sdk.models.blocks import Block

from bot.actions import FailedAttempt, run_actions
from bot.api import Run, RunSummary
from bot.states import DISPLAY_ORDER, JobState, RunState
from handlers import render
from handlers.commands import (
    CancelRequest,
    HelpRequest,
    ListRequest,
    RetryRequest,
    RunRequest,
    StatusRequest,
    UsageError,
    parse,
    parse_memory,
)
from handlers.permissions import Permissions
from handlers.render import FailureEntry


@pytest.mark.parametrize(("text", "request_"), [
    ("", HelpRequest()),
    ("help", HelpRequest()),
    ("run 2018-12-05 batch-7", RunRequest("2018-12-05", "batch-7")),
    ("RUN 2018-12-05 batch-7 pipeline=wordcount vcpus=2 memory=4G retries=0",
     RunRequest("2018-12-05", "batch-7", "wordcount", 2.0, 4096, 0)),
    ('run 2018-12-05 “batch 7” memory=512M', RunRequest("2018-12-05", "batch 7", memory_mib=512)),
    ("run 2018-12-05 batch-7 --allow-concurrent memory=4G",
     RunRequest("2018-12-05", "batch-7", memory_mib=4096, allow_concurrent=True)),
    ("run 2018-12-05 batch-7 \u2014Allow-Concurrent", RunRequest("2018-12-05", "batch-7", allow_concurrent=True)),
    ("status", StatusRequest()),
    ("status abc123", StatusRequest("abc123")),
    ("retry abc123", RetryRequest("abc123")),
    ("retry abc123 A07", RetryRequest("abc123", "A07")),
    ("cancel abc123", CancelRequest("abc123")),
    ("list", ListRequest()),
    ("list 2018-12-05", ListRequest("2018-12-05")),
])
def test_parse(text: str, request_: object) -> None:
    assert parse(text) == request_


@pytest.mark.parametrize(("text", "reason"), [
    ("run 2018-12-05 batch-7 extra", "did not understand `extra`"),
    ("run 2018-12-05 batch-7 retries=two", "retries `two` is not a whole number"),
    ("run 2018-12-05 batch-7 vcpus=", "option `vcpus` has no value"),
    ("run 2018-12-05 batch-7 --wait", "unknown flag `--wait`; the only flag is --allow-concurrent"),
    ("cancel", "missing RUN"),
    ("cancel a b", "too many words"),
    ("list yesterday", "not written YYYY-MM-DD"),
    ('run "2018-12-05 batch', "could not read the command"),
])
def test_parse_refuses(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse(text)


def test_memory_units() -> None:
    assert [parse_memory(t) for t in ("4096", "4096MiB", "2g", "1.5GiB")] == [4096, 4096, 2048, 1536]


def test_permissions() -> None:
    assert Permissions().refusal("U1", "C1") is None
    only = Permissions(frozenset({"U1"}), frozenset({"C1"}))
    assert only.refusal("U1", "C1") is None
    assert "CYTO_ALLOWED_USERS" in (only.refusal("U2", "C1") or "")
    assert "<#C1>" in (only.refusal("U1", "C2") or "")


def run(state: RunState = RunState.ACTIVE) -> Run:
    return Run(id="abc123", date="2018-12-05", batch="batch-7", pipeline="wordcount", params={},
               resources={"vcpus": 1, "memory_mib": 2048, "retries": 2}, executor="local", store="/s",
               requested_by="UALICE", state=state, created_at=0.0, finished_at=None, cancel_requested_by=None,
               slack_channel="C1", slack_thread_ts="1.1", version=3)


def summary(state: RunState, **counts: int) -> RunSummary:
    c = {s: counts.get(s.value.lower(), 0) for s in DISPLAY_ORDER}
    return RunSummary(run(state), c, sum(c.values()), 192.0, {}, [], {"exit code 2": 1} if c[JobState.FAILED] else {})


def validate(message: render.SlackMessage) -> list[dict]:
    message.validate()
    payload = message.payload()
    for raw in payload["blocks"]:
        parsed = Block.parse(raw)
        assert parsed is not None
        parsed.validate_json()
    return payload["blocks"]


def test_root_message_counts_progress_and_buttons() -> None:
    blocks = validate(root(summary(RunState.ACTIVE, succeeded=27, failed=2, running=5, queued=14)))
    text = str(blocks)
    assert "<@UALICE> started *2018-12-05/batch-7*: 48 analyses" in text
    assert "60% (29/48)" in text and "27 succeeded" in text and "14 queued" in text and "elapsed 3m 12s" in text
    actions = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["Retry all failed", "Cancel run"]
    final = validate(root(summary(RunState.FAILED, succeeded=46, failed=2)))
    assert "Finished with failures" in str(final)
    assert [e["text"]["text"] for b in final if b["type"] == "actions" for e in b["elements"]] == ["Retry all failed"]


def test_failure_message_excerpt_fits_a_section_and_escapes() -> None:
    log = "".join(f"line {i} <tag> & ``` {'z' * 80}\n" for i in range(200)) + "ERROR: the end"
    entry = FailureEntry("A07", 3, "exit code 1", 1, "s3://b/Logs/x/attempt-3.log", excerpt=log,
                         memory_mib=2048, out_of_memory=True, retry_memory_mib=4096)
    blocks = validate(render.failure_message(run(), [entry]))
    section = blocks[1]["text"]["text"]
    assert len(section) <= 3000 and section.rstrip().endswith("ERROR: the end\n```")
    assert "<tag>" not in section and "&lt;tag&gt;" in section and "&amp;" in section
    assert section.count("```") == 2, "the log cannot close the code block"
    labels = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Retry", "Retry with 2× memory (4096 MiB)"]


def test_grouping_hundreds_of_failures() -> None:
    entries = [FailureEntry(f"A{i:04d}", 1, "exit code 2 " + "r" * 100, 2, "/logs", excerpt="x" * 2600)
               for i in range(1000)]
    groups = render.plan_failure_messages(entries)
    assert len(groups) == 5
    for group in groups:
        blocks = validate(render.failure_message(run(), group))
        assert len(blocks) <= 50
        listed = " ".join(b["text"]["text"] for b in blocks
                          if b["block_id"].startswith("listed") and b["type"] == "section")
        assert all(f"*{e.analysis}*" in listed for e in group if not e.detailed)
    assert [e.analysis for g in groups for e in g] == [e.analysis for e in entries]


def root(summary_: RunSummary) -> render.SlackMessage:
    """The root message with the library's decision of what the run allows (bot/actions.py)."""
    failed = [FailedAttempt(f"F{i}", 1, "exit code 1", 1, 2048) for i in range(summary_.count(JobState.FAILED))]
    return render.root_message(summary_, run_actions(summary_.run.id, summary_.run.state, failed))


def test_a_memory_retry_button_offers_the_decided_memory_only() -> None:
    entry = FailureEntry("A07", 2, "OutOfMemoryError", 137, "s3://b/log", excerpt="Killed", memory_mib=49152,
                         out_of_memory=True, retry_memory_mib=65536)
    labels = [e["text"]["text"] for b in validate(render.failure_message(run(), [entry]))
              if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Retry", "Retry with more memory (65536 MiB)"]
    at_cap = replace(entry, memory_mib=65536, retry_memory_mib=None)
    labels = [e["text"]["text"] for b in validate(render.failure_message(run(), [at_cap]))
              if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Retry"], "no bigger-memory button once the attempt ran at the cap"


@pytest.mark.parametrize("state", [RunState.HELD, RunState.ACTIVE, RunState.FAILED])
def test_user_chosen_names_never_mention_anyone_in_blocks_or_fallback_text(state: RunState) -> None:
    """A batch named `<!channel>` and an analysis `F<!everyone>`: every text Slack may render
    (blocks, the notification fallback `text`, confirm dialogs) shows them escaped."""
    hostile = replace(run(state), batch="<!channel>", requested_by="<!here|here>")
    failed = FailureEntry("F<!everyone>", 2, "died <@U999>", 1, full_log="Logs/<!subteam^S1>/attempt-2.log",
                          excerpt="ERROR: <!channel> & friends", explanation="see <https://evil|here>")
    summary_ = replace(summary(state, FAILED=1), run=hostile)
    messages = [root(summary_), render.started_message(hostile, 1),
                render.started_message(hostile, 1, resumed=True), render.status_message(summary_),
                render.failure_message(hostile, [failed]),
                render.failure_message(hostile, [replace(failed, retried_by="<!channel>")]),
                render.done_alert(summary_, "s3://b/Output/<!channel>/"), render.runs_list([hostile])]
    for message in messages:
        validate(message)
        # Button values are data handed back to the bot, never rendered.
        rendered = json.dumps({"text": message.text, "blocks": message.payload()["blocks"]})
        rendered = re.sub(r'"value": "(?:[^"\\]|\\.)*"', '"value": ""', rendered)
        assert "<!" not in rendered and "<@U999>" not in rendered and "<https://evil" not in rendered, rendered
    assert render.failure_message(hostile, [failed]).text == \
        "1 analysis of 2018-12-05/&lt;!channel&gt; failed: F&lt;!everyone&gt;"
