"""Block Kit messages for runs. Pure: engine state and the decision of what the run allows
(bot/actions.py, through `Cyto.actions`) in, `SlackMessage` out.

Every message keeps within Slack's limits: at most 50 blocks, at most 3,000 characters in a
section's text, button values at most 2,000 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.actions import RunActions
from bot.api import Run, RunSummary, run_layout
from bot.states import DISPLAY_ORDER, JobState, RunState

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_BUTTON_VALUE = 2000
# A failure message shows this many failures in full (excerpt and buttons) and lists the rest
# compactly, so hundreds of failures found in one poll make a few messages, not hundreds.
DETAILED_PER_MESSAGE = 5
COMPACT_PER_MESSAGE = 200
BAR_WIDTH = 20

# action_id prefixes; a suffix keeps ids unique within one message.
RETRY = "cyto_retry"
RETRY_MORE_MEMORY = "cyto_retry_2x_memory"
RETRY_LISTED = "cyto_retry_listed"
RETRY_ALL = "cyto_retry_all"
CANCEL = "cyto_cancel"

_ICONS = {JobState.PENDING: "⏳", JobState.QUEUED: "🕓", JobState.RUNNING: "⚙️",
          JobState.SUCCEEDED: "✅", JobState.FAILED: "❌", JobState.CANCELLED: "⛔"}
_FINAL = {RunState.SUCCEEDED: "✅ *Finished: every analysis succeeded*",
          RunState.FAILED: "❌ *Finished with failures*", RunState.CANCELLED: "⛔ *Cancelled*"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class SlackMessage:
    text: str  # the notification and accessibility fallback
    blocks: tuple[Block, ...]

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SlackMessage:
        return cls(str(payload["text"]), tuple(b for b in map(Block.parse, payload.get("blocks") or []) if b))

    def validate(self) -> None:
        if len(self.blocks) > MAX_BLOCKS:
            raise ValueError(f"{len(self.blocks)} blocks; Slack takes at most {MAX_BLOCKS}")
        for block in self.blocks:
            block.validate_json()


@dataclass(frozen=True)
class FailureEntry:
    """One analysis that failed for good, as shown in a failure reply."""

    analysis: str
    attempt: int
    reason: str | None
    exit_code: int | None
    full_log: str
    detailed: bool = True  # shown with its excerpt and buttons, or only listed
    excerpt: str | None = None
    explanation: str | None = None
    memory_mib: int | None = None
    out_of_memory: bool = False
    retried_by: str | None = None
    rule: str | None = None  # the failure policy's rule: why it was (not) retried automatically
    retry_memory_mib: int | None = None  # the memory a retry is offered with (bot/actions.py decides)


# -- small pieces ------------------------------------------------------------------------------
def mention(user: str) -> str:
    """A Slack mention for a Slack user id; other names (a CLI user) as they are."""
    return f"<@{user}>" if _USER_ID.match(user) else escape(user)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = width if total == 0 else min(width, done * width // total)
    percent = 100 if total == 0 else done * 100 // total
    return f"`{'█' * filled}{'░' * (width - filled)}` {percent}% ({done}/{total})"


def counts_line(counts: dict[JobState, int]) -> str:
    parts = [f"{_ICONS[s]} {counts[s]} {s.value.lower()}" for s in DISPLAY_ORDER if counts.get(s)]
    return "  ".join(parts) or "no analyses"


def resources_line(run: Run) -> str:
    r = run.resources
    return (f"pipeline `{run.pipeline}` · {r.get('vcpus', 1):g} vCPU · {r.get('memory_mib')} MiB · "
            f"{r.get('retries')} automatic retries · run `{run.id}`")


def code_block(text: str, budget: int) -> str:
    """`text` in a code block of at most `budget` characters, keeping its end (the final error)."""
    room = budget - len("```\n\n```")
    if room < 2:
        return ""
    raw = text.replace("```", "`\u200b``").strip("\n") or " "
    body = escape(raw)
    if len(body) > room:
        # Cut the raw text, not the escaped one, so that no `&amp;` is cut in half.
        keep = room - 1
        while len(body := escape(raw[-keep:])) > room - 1:
            keep -= len(body) - (room - 1)
        body = "…" + body
    return f"```\n{body}\n```"


def _button_value(**fields: Any) -> str:
    value = json.dumps(fields, separators=(",", ":"))
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError("button value too long")
    return value


def parse_value(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- the root message: one per run, edited in place -------------------------------------------
def root_message(summary: RunSummary, actions: RunActions) -> SlackMessage:
    run = summary.run
    headline = f"{mention(run.requested_by)} started *{escape(run.label)}*: {summary.total} analyses"
    if run.state.is_finished:
        state = f"{_FINAL[run.state]} in {duration(summary.wall_s)}"
    elif run.state == RunState.HELD:
        state = "⏸ Waiting for this thread before submitting"
    elif run.state == RunState.CANCELLING:
        by = f" by {mention(run.cancel_requested_by)}" if run.cancel_requested_by else ""
        state = f"⛔ Cancelling (requested{by}) · elapsed {duration(summary.wall_s)}"
    else:
        state = f"⏱ Running · elapsed {duration(summary.wall_s)}"
    blocks: list[Block] = [
        SectionBlock(block_id="headline", text=MarkdownTextObject(text=f"{headline}\n{resources_line(run)}")),
        SectionBlock(block_id="progress", text=MarkdownTextObject(
            text=f"{progress_bar(summary.done, summary.total)}\n{counts_line(summary.counts)}\n{state}")),
    ]
    buttons = []
    if actions.retry_failed:
        buttons.append(ButtonElement(text="Retry all failed", action_id=RETRY_ALL, value=_button_value(r=run.id)))
    if actions.cancel:
        buttons.append(ButtonElement(
            text="Cancel run", action_id=CANCEL, value=_button_value(r=run.id), style="danger",
            confirm=ConfirmObject(title="Cancel this run?", text=f"Stop every analysis of {escape(run.label)} "
                                  f"that has not finished yet (run {run.id}).", confirm="Cancel run",
                                  deny="Keep running", style="danger")))
    if buttons:
        blocks.append(ActionsBlock(block_id="run_actions", elements=buttons))
    text = f"{headline} — {summary.done}/{summary.total} done"
    return SlackMessage(text, tuple(blocks))


def started_message(run: Run, total: int, *, resumed: bool = False) -> SlackMessage:
    """The root message as first posted, before the run has a summary. `resumed`: posted again
    after an interruption left it unknown whether the first post reached Slack."""
    headline = f"{mention(run.requested_by)} started *{escape(run.label)}*: {total} analyses"
    details = resources_line(run)
    if run.outputs_scoped:
        details += (f"\nAnother run of this batch is unfinished: this one writes its own "
                    f"`{escape(run_layout(run).output_prefix)}`")
    state = "🔄 Resuming after an interruption: nothing ran before this message" if resumed else "⏱ Submitting"
    return SlackMessage(headline, (
        SectionBlock(block_id="headline", text=MarkdownTextObject(text=f"{headline}\n{details}")),
        SectionBlock(block_id="progress", text=MarkdownTextObject(
            text=f"{progress_bar(0, total)}\n⏳ {total} pending\n{state}")),
    ))


# -- failure replies in the thread ------------------------------------------------------------
def plan_failure_messages(entries: Sequence[FailureEntry]) -> list[list[FailureEntry]]:
    """Split failures found in one poll into messages: each shows up to DETAILED_PER_MESSAGE in
    full and lists up to COMPACT_PER_MESSAGE more."""
    groups: list[list[FailureEntry]] = []
    per_message = DETAILED_PER_MESSAGE + COMPACT_PER_MESSAGE
    for start in range(0, len(entries), per_message):
        chunk = entries[start:start + per_message]
        groups.append([_with_detail(e, i < DETAILED_PER_MESSAGE) for i, e in enumerate(chunk)])
    return groups


def _with_detail(entry: FailureEntry, detailed: bool) -> FailureEntry:
    return replace(entry, detailed=detailed)


def failure_message(run: Run, entries: Sequence[FailureEntry]) -> SlackMessage:
    """One failure reply: the detailed failures with excerpt and Retry buttons, then the rest
    listed compactly with one button that retries the listed ones."""
    detailed = [e for e in entries if e.detailed]
    listed = [e for e in entries if not e.detailed]
    noun = "analysis" if len(entries) == 1 else "analyses"
    # The fallback text is shown in notifications: user-chosen names are escaped there too.
    text = f"{len(entries)} {noun} of {escape(run.label)} failed: " + \
        ", ".join(escape(e.analysis) for e in entries[:10]) + ("…" if len(entries) > 10 else "")
    blocks: list[Block] = [SectionBlock(block_id="failures_head", text=MarkdownTextObject(
        text=f"❌ *{len(entries)} {noun} failed for good* in {escape(run.label)} (run `{run.id}`)"))]
    for index, entry in enumerate(detailed):
        blocks.extend(_detailed_blocks(run, entry, index))
    if listed:
        blocks.extend(_listed_blocks(run, listed, MAX_BLOCKS - len(blocks)))
    return SlackMessage(text, tuple(blocks[:MAX_BLOCKS]))


def _title(entry: FailureEntry, reason_chars: int = 300) -> str:
    attempts = "1 attempt" if entry.attempt == 1 else f"{entry.attempt} attempts"
    reason = entry.reason or "no reason given"
    reason = escape(reason if len(reason) <= reason_chars else reason[:reason_chars - 1] + "…")
    return f"*{escape(entry.analysis)}* — {reason} (after {attempts})"


def _detailed_blocks(run: Run, entry: FailureEntry, index: int) -> list[Block]:
    title = _title(entry)
    if entry.retried_by:
        return [SectionBlock(block_id=f"f{index}", text=MarkdownTextObject(
            text=f"🔁 {title}\nRetried by {mention(entry.retried_by)} — in progress in this thread"[
                :MAX_SECTION_CHARS]))]
    head = f"❌ {title}"[:MAX_SECTION_CHARS - 40]
    body = code_block(entry.excerpt, MAX_SECTION_CHARS - len(head) - 1) if entry.excerpt else ""
    section = SectionBlock(block_id=f"f{index}", text=MarkdownTextObject(
        text=f"{head}\n{body}" if body else f"{head}\n_(no log captured)_"))
    notes = [f"Full log: `{escape(entry.full_log)}`"]
    if entry.rule:
        notes.append(escape(entry.rule[:1].upper() + entry.rule[1:]))
    if entry.explanation:
        notes.append(escape(entry.explanation))
    if entry.out_of_memory and entry.memory_mib:
        notes.append(f"It looks like it ran out of memory at {entry.memory_mib} MiB.")
    context = ContextBlock(block_id=f"f{index}_log", elements=[
        MarkdownTextObject(text=" · ".join(notes)[:MAX_SECTION_CHARS])])
    buttons = [ButtonElement(text="Retry", action_id=f"{RETRY}:{index}", style="primary",
                             value=_button_value(r=run.id, a=entry.analysis, n=entry.attempt))]
    if entry.retry_memory_mib:
        more = entry.retry_memory_mib
        label = "2× memory" if entry.memory_mib and more == 2 * entry.memory_mib else "more memory"
        buttons.append(ButtonElement(
            text=f"Retry with {label} ({more} MiB)", action_id=f"{RETRY_MORE_MEMORY}:{index}",
            value=_button_value(r=run.id, a=entry.analysis, n=entry.attempt, m=more)))
    return [section, context, ActionsBlock(block_id=f"f{index}_actions", elements=buttons)]


def _listed_blocks(run: Run, listed: Sequence[FailureEntry], room: int) -> list[Block]:
    lines = []
    for entry in listed:
        if entry.retried_by:
            lines.append(f"🔁 ~{escape(entry.analysis)}~ retried by {mention(entry.retried_by)}")
        else:
            # Short reasons keep 200 listed failures within the message's blocks.
            lines.append(f"• {_title(entry, reason_chars=120)}")
    header = f"*{len(listed)} more* (full logs next to each analysis under Logs/):"
    sections = _pack([header, *lines], MAX_SECTION_CHARS)
    waiting = [e for e in listed if not e.retried_by]
    reserve = 1 if waiting else 0
    blocks: list[Block] = [SectionBlock(block_id=f"listed{i}", text=MarkdownTextObject(text=text))
                           for i, text in enumerate(sections[:max(0, room - reserve)])]
    if waiting:
        blocks.append(ActionsBlock(block_id="listed_actions", elements=[ButtonElement(
            text=f"Retry these {len(waiting)}", action_id=f"{RETRY_LISTED}:0", value=_button_value(r=run.id))]))
    return blocks


def _pack(lines: Iterable[str], limit: int) -> list[str]:
    """Join lines into texts of at most `limit` characters each."""
    texts: list[str] = []
    current = ""
    for line in lines:
        line = line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            texts.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts


# -- the done alert ---------------------------------------------------------------------------
def done_alert(summary: RunSummary, output_uri: str) -> SlackMessage:
    run = summary.run
    ok, failed = summary.count(JobState.SUCCEEDED), summary.count(JobState.FAILED)
    cancelled = summary.count(JobState.CANCELLED)
    outcome = {RunState.SUCCEEDED: "finished", RunState.FAILED: "finished with failures",
               RunState.CANCELLED: "was cancelled"}.get(run.state, "finished")
    parts = [f"{ok} succeeded", f"{failed} failed"] + ([f"{cancelled} cancelled"] if cancelled else [])
    text = (f"{mention(run.requested_by)} *{escape(run.label)}* {outcome}: {', '.join(parts)} "
            f"of {summary.total} in {duration(summary.wall_s)}.")
    notes = [f"Output: `{escape(output_uri)}`"]
    if failed:
        notes.append(f"`/cyto retry {run.id}` retries every failed analysis")
    return SlackMessage(text, (
        SectionBlock(block_id="done", text=MarkdownTextObject(text=text)),
        ContextBlock(block_id="done_output", elements=[MarkdownTextObject(text=" · ".join(notes))]),
    ))


# -- ephemeral answers ------------------------------------------------------------------------
def status_message(summary: RunSummary) -> SlackMessage:
    root = root_message(summary, RunActions(summary.run.id, retry_failed=False, cancel=False))
    blocks = [b for b in root.blocks if not isinstance(b, ActionsBlock)]
    if summary.reasons:
        top = sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:5]
        text = "Failure reasons:\n" + "\n".join(f"• {n} × {escape(r)}" for r, n in top)
        blocks.append(SectionBlock(block_id="reasons", text=MarkdownTextObject(text=text[:MAX_SECTION_CHARS])))
    return SlackMessage(root.text, tuple(blocks))


def batch_in_use(active: Run, done: int, total: int, started: str) -> str:
    """The answer to a `/cyto run` of a batch that another run is still working on."""
    still = "being cancelled" if active.state == RunState.CANCELLING else "still running"
    return (f"⚠️ Run `{active.id}` of *{escape(active.label)}* is {still} (started by "
            f"{mention(active.requested_by)} at {started}, {done}/{total} done), so nothing was started. "
            f"Cancel it (`/cyto cancel {active.id}`), or add `--allow-concurrent` to run both, each writing "
            "its own Output folder.")


def text_message(text: str) -> SlackMessage:
    sections = _pack(text.splitlines(), MAX_SECTION_CHARS)[:MAX_BLOCKS]
    return SlackMessage(text[:3000], tuple(SectionBlock(text=MarkdownTextObject(text=s)) for s in sections))


def runs_list(runs: Sequence[Run], dates: Sequence[str] | None = None, date: str | None = None,
              batches: Sequence[str] | None = None) -> SlackMessage:
    lines = []
    if date is not None:
        lines.append(f"*Batches on {date}:* " + (", ".join(f"`{escape(b)}`" for b in batches or []) or "none"))
    elif dates is not None:
        lines.append("*Dates in the store:* " + (", ".join(f"`{d}`" for d in dates[-30:]) or "none yet"))
    lines.append("*Recent runs:*" if runs else "_No runs yet._")
    for run in runs:
        lines.append(f"• `{run.id}` {escape(run.label)} — {run.state.value.lower()} "
                     f"({run.pipeline}, by {mention(run.requested_by)})")
    return text_message("\n".join(lines))
