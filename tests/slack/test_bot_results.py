"""A finished cytometry run's results in its Slack thread, end to end: the real local executor runs
the real pipeline on the demo plate, the done alert states the QC verdicts and where the report is,
and the batch overview is uploaded into the thread through Slack's external-upload flow (on the
stand-in: files.getUploadURLExternal, the POST of the bytes, files.completeUploadExternal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slack_harness import CHANNEL, USER, Served, poll_cycle, wait_for
from slack_sdk.models.blocks import SectionBlock
from slack_stand_in import SlackStandIn

from bot.demo import write_cytometry_batch
from bot.report.links import ReportLink
from bot.store.local import LocalStore
from handlers.render import SlackMessage
from handlers.results import with_results
from tests.timeouts import seconds

pytestmark = pytest.mark.slow
DATE = "2026-11-30"


def test_done_alert_has_qc_verdicts_report_path_and_the_overview_in_the_thread(served: Served, store: Path) -> None:
    write_cytometry_batch(LocalStore(store), DATE)
    before = served.stand_in.count("chat.postMessage")
    status, _ = served.command(f"run {DATE} demo-plate pipeline=cytometry retries=0")
    assert status == 200
    root = wait_for(lambda: served.stand_in.calls_to("chat.postMessage")[before:], what="root message")[0]
    run_id = wait_for(lambda: served.bot.cyto.engine.db.runs(1), what="run")[0].id
    thread = wait_for(lambda: served.bot.cyto.engine.get_run(run_id).slack_thread_ts, what="thread recorded")
    served.drive(run_id, timeout=seconds(240))
    for _ in range(3):  # the failure reply first, then the alert; more cycles change nothing
        poll_cycle(served.bot)

    replies = [c for c in served.stand_in.calls_to("chat.postMessage") if c.params.get("thread_ts") == thread]
    alerts = [c for c in replies if "finished" in c.params["text"]]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.params["text"].startswith(f"<@{USER}> *{DATE}/demo-plate* finished with failures: 2 succeeded, "
                                           "1 failed")
    blocks = {b.get("block_id"): b for b in alert.blocks}
    qc = blocks["done_qc"]["text"]["text"]
    assert qc.startswith("*QC:* 5 pass · 2 warn · 2 fail: B03 too few events (400); C01 unreadable")
    report = f"{store}/Output/{DATE}/demo-plate/_runs/{run_id}/report.html"
    assert blocks["done_report"]["elements"][0]["text"] == f"Report: `{report}`"
    assert Path(report).read_text().startswith("<!DOCTYPE html>")

    assert served.stand_in.count("files.getUploadURLExternal") == 1
    assert [c.status for c in served.stand_in.calls if c.method == "upload"] == [200]
    shared = served.stand_in.shared_files()
    assert len(shared) == 1
    upload = shared[0]
    assert upload.shared is not None
    assert upload.shared["channel_id"] == CHANNEL and upload.shared["thread_ts"] == thread == root.ts
    assert json.loads(upload.shared["files"])[0]["title"] == f"{DATE}/demo-plate: QC overview (run {run_id})"
    overview = store / f"Output/{DATE}/demo-plate/_runs/{run_id}/overview.png"
    assert upload.content == overview.read_bytes() and upload.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert upload.filename == f"overview-{run_id}.png"


def test_a_refused_upload_leaves_one_alert(served: Served, store: Path, stand_in: SlackStandIn) -> None:
    write_cytometry_batch(LocalStore(store), DATE, batch="plate-2")
    stand_in.fail_next("files.completeUploadExternal", 1, status=500)
    served.command(f"run {DATE} plate-2 pipeline=cytometry retries=0")
    run_id = wait_for(lambda: served.bot.cyto.engine.db.runs(1), what="run")[0].id
    thread = wait_for(lambda: served.bot.cyto.engine.get_run(run_id).slack_thread_ts, what="thread recorded")
    served.drive(run_id, timeout=seconds(240))
    for _ in range(3):
        poll_cycle(served.bot)
    alerts = [c for c in stand_in.calls_to("chat.postMessage")
              if c.params.get("thread_ts") == thread and "finished" in c.params["text"]]
    assert len(alerts) == 1 and stand_in.shared_files() == []


def test_with_results_renders_a_presigned_link_with_its_lifetime() -> None:
    from slack_sdk.models.blocks import MarkdownTextObject

    base = SlackMessage("done.", (SectionBlock(block_id="done", text=MarkdownTextObject(text="done.")),))
    link = ReportLink("https://lab-bucket.s3.amazonaws.com/r.html?X-Amz-Expires=604800&a=<b>", "s3://b/r.html",
                      604800)
    message = with_results(base, "1 pass · 0 warn · 0 fail", link)
    message.validate()
    texts = [b.to_dict() for b in message.blocks]
    assert texts[1]["text"]["text"] == "*QC:* 1 pass · 0 warn · 0 fail"
    assert texts[-1]["elements"][0]["text"] == ("<https://lab-bucket.s3.amazonaws.com/r.html?X-Amz-Expires=604800"
                                                "&amp;a=&lt;b&gt;|Open the run report> (link valid 7 days)")
    assert message.text == "done. QC: 1 pass · 0 warn · 0 fail"


def test_a_report_that_cannot_be_written_leaves_the_plain_done_alert(tmp_path: Path) -> None:
    from bot.store import StoreError
    from handlers import render
    from handlers.results import prepare
    from tests.report_fixtures import finished_cytometry_run

    finished = finished_cytometry_run(tmp_path)

    def refuse(key: str, data: bytes) -> None:
        raise StoreError(f"cannot write {key}: read-only store")

    finished.store.write_bytes = refuse  # type: ignore[method-assign]
    summary = finished.engine.summary(finished.run_id)
    done = prepare(finished.engine, summary, "out/")
    assert done.report is None and done.message == render.done_alert(summary, "out/")
