"""The App Home tab: the user's recent runs and the recent runs of the channels, each with its state,
counts and a link to its thread, published with `views.publish` when the user opens the tab.

`home_view` is pure (runs and summaries in, a view out); `publish_home` reads the runs through `Cyto`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk import WebClient

from bot.api import Run, RunSummary
from bot.states import JobState

log = logging.getLogger(__name__)

SHOWN = 10  # runs per section; 2 sections of 10 stay far below a view's 100 blocks
SCANNED = 200
STATE_MARKS = {"ACTIVE": "⏳", "CANCELLING": "⛔", "SUCCEEDED": "✅", "FAILED": "❌", "CANCELLED": "⛔"}


def thread_link(team_url: str | None, run: Run) -> str | None:
    """`https://lab.slack.com/archives/C…/p1700000000000123`, the permalink form Slack uses."""
    if not team_url or not run.slack_channel or not run.slack_thread_ts:
        return None
    return f"{team_url.rstrip('/')}/archives/{run.slack_channel}/p{run.slack_thread_ts.replace('.', '')}"


def run_line(summary: RunSummary, team_url: str | None) -> str:
    run = summary.run
    mark = STATE_MARKS.get(run.state.value, "•")
    label = f"*{run.label}*"
    link = thread_link(team_url, run)
    if link:
        label = f"<{link}|{run.label}>"
    failed = summary.count(JobState.FAILED)
    counts = f"{summary.count(JobState.SUCCEEDED)}/{summary.total} succeeded" + (f", {failed} failed" if failed else "")
    where = f" in <#{run.slack_channel}>" if run.slack_channel else ""
    return (f"{mark} {label} `{run.id}` {run.pipeline} — {run.state.value.lower()}, {counts}; "
            f"by <@{run.requested_by}>{where}")


def _section(title: str, lines: Sequence[str], empty: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    text = "\n".join(lines) if lines else empty
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    return blocks


def home_view(user: str, mine: Sequence[RunSummary], channels: Sequence[RunSummary],
              team_url: str | None) -> dict[str, Any]:
    blocks = _section("Your recent runs", [run_line(s, team_url) for s in mine],
                      "No runs of yours yet: type `/cyto run` in a channel to open the form.")
    blocks.append({"type": "divider"})
    blocks += _section("Recent runs in the channels", [run_line(s, team_url) for s in channels],
                       "No runs started from Slack yet.")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                   "`/cyto run` opens the run form · `/cyto help` lists the commands"}]})
    return {"type": "home", "blocks": blocks}


def publish_home(client: WebClient, user: str, runs: Callable[[int], list[Run]],
                 summary: Callable[[str], RunSummary], team_url: str | None) -> None:
    recent = runs(SCANNED)
    mine = [summary(r.id) for r in recent if r.requested_by == user][:SHOWN]
    channels = [summary(r.id) for r in recent if r.slack_channel][:SHOWN]
    client.views_publish(user_id=user, view=home_view(user, mine, channels, team_url))


class Home:
    def __init__(self, bot: Any) -> None:
        self.bot = bot
        self._team_url: str | None = None

    def team_url(self, client: WebClient) -> str | None:
        if self._team_url is None:
            try:
                self._team_url = str(client.auth_test().get("url") or "") or None
            except Exception:  # links are a nicety; the tab still lists the runs
                log.warning("auth.test failed; the App Home shows runs without thread links")
        return self._team_url

    def opened(self, event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        publish_home(client, event["user"], self.bot.cyto.runs, self.bot.cyto.summary, self.team_url(client))
