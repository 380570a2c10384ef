"""A finished run's results in its Slack thread: the done alert carries the QC verdicts and a link to
the run report, and the batch overview image is uploaded into the thread (files_upload_v2: Slack's
external upload, needs the `files:write` scope).

`prepare` builds the report (bot/report) and the message; `upload_overview` posts the image. The
message itself is pure rendering (`with_results`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock

from bot.api import Cyto, EngineError, Run, RunSummary, run_layout
from bot.report import ReportResult
from bot.report.links import ReportLink
from bot.store import StoreError
from handlers import render
from handlers.render import MAX_SECTION_CHARS, SlackMessage, escape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoneResults:
    message: SlackMessage
    report: ReportResult | None = None
    link: ReportLink | None = None


def prepare(cyto: Cyto, summary: RunSummary, output_uri: str) -> DoneResults:
    """The done alert with the run's results; the plain alert when the report cannot be built."""
    base = render.done_alert(summary, output_uri)
    try:
        report = cyto.report(summary.run.id)
        link = cyto.report_link(report.key)
    except Exception as exc:  # the alert goes out whatever happened to the report
        level = logging.WARNING if isinstance(exc, EngineError | StoreError | OSError) else logging.ERROR
        log.log(level, "report of run %s not built: %s", summary.run.id, exc, exc_info=level == logging.ERROR)
        return DoneResults(base)
    return DoneResults(with_results(base, report.headline, link), report, link)


def with_results(base: SlackMessage, headline: str | None, link: ReportLink) -> SlackMessage:
    """The done alert plus a QC line (when the pipeline has one) and where the report is. Pure."""
    blocks = list(base.blocks)
    text = base.text
    if headline:
        qc = f"*QC:* {escape(headline)}"
        blocks.insert(1, SectionBlock(block_id="done_qc", text=MarkdownTextObject(text=qc[:MAX_SECTION_CHARS])))
        text = f"{text} QC: {headline}"
    if link.url:
        where = f"<{escape(link.url)}|Open the run report> (link valid {link.lifetime_text})"
    else:
        where = f"Report: `{escape(link.path)}`"
    blocks.append(ContextBlock(block_id="done_report", elements=[MarkdownTextObject(text=where)]))
    return SlackMessage(text[:3000], tuple(blocks))


def upload_overview(client: WebClient, run: Run, done: DoneResults) -> str | None:
    """Upload the batch overview image into the run's thread; returns the file id."""
    report = done.report
    return upload_image(client, run, report.overview_png if report else None)


def upload_stored_overview(client: WebClient, cyto: Cyto, run: Run) -> str | None:
    """Upload the overview that the run's report left in the store (after the done alert was sent)."""
    from bot.report.cytometry import OVERVIEW
    from bot.store import ObjectNotFound

    try:
        image = cyto.read_output(run.id, run_layout(run).run_prefix(run.id) + OVERVIEW)
    except ObjectNotFound:
        return None  # no report, or a pipeline without an overview
    return upload_image(client, run, image)


def upload_image(client: WebClient, run: Run, image: bytes | None) -> str | None:
    if image is None or not run.slack_channel or not run.slack_thread_ts:
        return None
    response = client.files_upload_v2(
        channel=run.slack_channel, thread_ts=run.slack_thread_ts, content=image,
        filename=f"overview-{run.id}.png", title=f"{run.label}: QC overview (run {run.id})",
        alt_txt=f"QC verdict, events, % cells and % singlets per file of {run.label}")
    files = response.get("files") or [{}]
    return str(files[0].get("id") or "") or None
