"""RunWatcher: follow one run in a notebook: progress bar, table of analyses by state, log viewer,
Retry and Cancel. It follows the run with `Cyto.follow` (the CLI's --wait loop) and renders the
summaries and jobs it reads; every action is a `Cyto` call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from bot.api import Cyto, Job, NotFound, Run, RunActions, RunEvent, RunSummary
from bot.notebook.launch import notebook_user
from bot.notebook.render import BAR_STYLES, jobs_table_html, log_html, message_html, progress_html, run_label
from bot.notebook.results import MAX_PLOTS, results_html
from bot.report import ReportResult
from bot.states import JobState
from bot.store import ObjectNotFound

LIVE_INTERVAL_S = 2.0


class _StopFollowing(Exception):
    """The live loop was stopped, or another run was picked: the run followed so far is left."""


class RunWatcher:
    def __init__(self, cyto: Cyto, run_id: str | None = None, *, by: str | None = None, tail: int = 15,
                 interval: float | None = None, limit: int = 20, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cyto = cyto
        self.clock, self.sleep = clock, sleep  # `wait()` runs on them; the live loop sleeps until stop()
        self.by = by or notebook_user()
        self.tail = tail
        self.limit = limit
        self.interval = interval or min(cyto.settings.poll_seconds, LIVE_INTERVAL_S)
        self.summary: RunSummary | None = None
        self.jobs: list[Job] = []
        self.actions: RunActions | None = None  # what the run allows now (bot/actions.py, decided once)
        self._jobs_stale = True  # an event arrived since the jobs were read
        self._lock = threading.RLock()  # the live loop and button clicks refresh from different threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancel_armed = False
        self._quiet = False
        self._refresh_error: str | None = None
        self.report: ReportResult | None = None
        self._report_for: tuple[str, float | None] | None = None  # (run, finished_at) the results show

        self.run_picker = widgets.Dropdown(description="Run", layout=widgets.Layout(width="46em"))
        self.reload_button = widgets.Button(description="Reload runs", icon="refresh")
        self.refresh_button = widgets.Button(description="Refresh", icon="sync")
        self.progress = widgets.IntProgress(min=0, max=1, value=0, layout=widgets.Layout(width="46em"))
        self.progress_text = widgets.HTML()
        self.table = widgets.HTML()
        self.analysis = widgets.Dropdown(description="Log of")
        self.log = widgets.HTML()
        self.retry_button = widgets.Button(description="Retry failed", icon="redo", disabled=True)
        self.cancel_button = widgets.Button(description="Cancel run", button_style="danger", icon="stop",
                                            disabled=True)
        self.message = widgets.HTML()
        self.results = widgets.HTML()

        self.run_picker.observe(self._picked, names="value")
        self.analysis.observe(lambda change: None if self._quiet else self.show_log(), names="value")
        self.reload_button.on_click(lambda _: self.load_runs())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.retry_button.on_click(lambda _: self.retry())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.widget = widgets.VBox([
            widgets.HBox([self.run_picker, self.reload_button, self.refresh_button]),
            self.progress, self.progress_text, self.table,
            widgets.HBox([self.retry_button, self.cancel_button, self.message]),
            self.analysis, self.log, self.results,
        ])
        self.load_runs(run_id)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def run_id(self) -> str | None:
        return self.run_picker.value

    # -- choosing a run -----------------------------------------------------------------------
    def load_runs(self, select: str | None = None) -> None:
        """List the recent runs; select `select`, else keep the current run, else the newest."""
        runs: list[Run] = self.cyto.runs(self.limit)
        wanted, problem = select or self.run_id, None
        if wanted and wanted not in {r.id for r in runs}:
            try:
                runs.append(self.cyto.status(wanted).run)  # an older run asked for by id
            except NotFound as exc:
                wanted, problem = None, str(exc)
        self._quiet = True
        try:
            self.run_picker.options = [(run_label(r), r.id) for r in runs]
            self.run_picker.value = wanted or (runs[0].id if runs else None)
        finally:
            self._quiet = False
        self._picked()
        if problem:
            self.message.value = message_html(problem)

    def _picked(self, change: dict[str, Any] | None = None) -> None:
        if self._quiet:
            return
        self._cancel_armed = False
        self.message.value = ""  # messages are about the run shown before
        self.refresh(poll=False)
        self.show_log()

    def follow(self, run: Run) -> None:
        """Watch `run` live (what the launch form calls after its Run button started a run)."""
        self.load_runs(run.id)
        self.start()

    # -- refreshing ---------------------------------------------------------------------------
    def refresh(self, poll: bool = True) -> RunSummary | None:
        """Let the engine poll the executor (while the run is unfinished), then re-render."""
        with self._lock:
            run_id = self.run_id
            if run_id is None:
                self.summary, self.jobs, self.actions = None, [], None
                self.message.value = message_html("no runs yet: start one with the launch form", "info")
                self._render()
                return None
            try:
                if poll and (self.summary is None or self.summary.run.id != run_id or not self.summary.finished):
                    self.cyto.poll()
                self._read(self.cyto.status(run_id), jobs_changed=True)
            except Exception as exc:  # shown in the widget: a live loop or a click has nowhere else to report
                self._show_refresh_error(exc)
                return self.summary
            self._rendered()
            return self.summary

    def _show_refresh_error(self, exc: Exception) -> None:
        self.message.value = self._refresh_error = message_html(f"could not refresh: {exc}")

    def _rendered(self) -> None:
        if self._refresh_error and self.message.value == self._refresh_error:
            self.message.value = ""  # the store or executor answers again
        self._refresh_error = None
        self._render()

    # -- following (Cyto.follow) --------------------------------------------------------------
    def _on_event(self, event: RunEvent) -> None:
        self._jobs_stale = True

    def _on_summary(self, summary: RunSummary) -> None:
        with self._lock:
            if summary.run.id != self.run_id:
                raise _StopFollowing  # another run was picked meanwhile
            moved_on = self._jobs_stale or self.summary is None or self.summary.run.id != summary.run.id
            self._read(summary, jobs_changed=moved_on)
            self._rendered()

    def _read(self, summary: RunSummary, *, jobs_changed: bool) -> None:
        """Take a new summary of the shown run, and read what else the widgets show from it (the jobs
        only when an event said they changed): the one place refresh() and following both read."""
        if jobs_changed:
            self.jobs = self.cyto.jobs(summary.run.id)
            self._jobs_stale = False
        self.summary = summary
        self.actions = self.cyto.actions(summary.run.id)

    def _follow(self, run_id: str, timeout: float | None, sleep: Callable[[float], None]) -> bool:
        """Follow `run_id` with `Cyto.follow`, rendering after each read; False when a poll or read
        failed (the error is shown in the widget, and the caller tries again after a pause)."""
        self._jobs_stale = True
        try:
            self.cyto.follow(run_id, self._on_event, interval=self.interval, clock=self.clock, sleep=sleep,
                             timeout=timeout, on_summary=self._on_summary)
        except _StopFollowing:
            pass
        except Exception as exc:  # shown in the widget, as in refresh()
            with self._lock:
                self._show_refresh_error(exc)
            return False
        return True

    def _render(self) -> None:
        summary = self.summary
        with self.progress.hold_sync():
            self.progress.max = max(summary.total, 1) if summary else 1
            self.progress.value = summary.done if summary else 0
            self.progress.bar_style = BAR_STYLES[summary.run.state] if summary else ""
        self.progress_text.value = progress_html(summary) if summary else ""
        self.table.value = jobs_table_html(self.jobs, summary.durations) if summary else ""
        names = [job.analysis for job in self.jobs]
        if [value for _, value in self.analysis.options] != names:
            current = self.analysis.value
            self._quiet = True
            try:
                self.analysis.options = [(name, name) for name in names]
                # Prefer a failed analysis: its log is the one worth reading.
                failed = [j.analysis for j in self.jobs if j.state == JobState.FAILED]
                self.analysis.value = current if current in names else next(iter(failed or names), None)
            finally:
                self._quiet = False
        actions = self.actions
        self.retry_button.disabled = not (actions and actions.retry_failed)
        self.cancel_button.disabled = not (actions and actions.cancel)
        if self.cancel_button.disabled:
            self._cancel_armed = False
        self.cancel_button.description = "Confirm cancel" if self._cancel_armed else "Cancel run"
        self._show_results()

    def _show_results(self) -> None:
        """When the run has finished: build its report once and show the results under the log."""
        summary = self.summary
        if summary is None or not summary.finished:
            self.results.value, self.report, self._report_for = "", None, None
            return
        key = (summary.run.id, summary.run.finished_at)
        if self._report_for == key:
            return
        try:
            report = self.cyto.report(summary.run.id)
        except Exception as exc:  # shown in the widget, as in refresh()
            self.results.value = message_html(f"could not build the run's report: {exc}")
            return
        plots: dict[str, list[tuple[str, bytes]]] = {}
        budget = MAX_PLOTS
        for analysis, keys in report.results.plots.items():
            for key_ in keys[:budget]:
                try:
                    plots.setdefault(analysis, []).append((key_.rsplit("/", 1)[-1],
                                                           self.cyto.read_output(summary.run.id, key_)))
                except (ObjectNotFound, NotFound):
                    continue
            budget -= len(keys)
            if budget <= 0:
                break
        link = self.cyto.report_link(report.key)
        self.report, self._report_for = report, key
        self.results.value = results_html(report, plots, link.url or link.path)

    def start(self, interval: float | None = None) -> None:
        """Refresh in the background every `interval` seconds until `stop()` (for a live notebook)."""
        if interval is not None:
            self.interval = interval
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cyto-run-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None

    @property
    def live(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        """Follow the picked run while it is unfinished; otherwise re-read it every `interval` (a
        retry, here or elsewhere, makes it unfinished again)."""
        while not self._stop.is_set():
            summary = self.refresh(poll=False)
            if summary is None or summary.finished or not self._follow(summary.run.id, None, self._live_sleep):
                self._stop.wait(self.interval)

    def _live_sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _StopFollowing

    def wait(self, timeout: float | None = None) -> RunSummary | None:
        """Follow the watched run until it has finished (or `timeout` seconds passed on the watcher's
        clock); for scripts and headless runs. A live notebook uses `start()` so that its buttons
        stay responsive."""
        deadline = None if timeout is None else self.clock() + timeout
        summary = self.refresh(poll=False)
        while summary is not None and not summary.finished:
            left = None if deadline is None else deadline - self.clock()
            if left is not None and left <= 0:
                break
            if not self._follow(summary.run.id, left, self.sleep):
                self.sleep(self.interval)  # a poll failed: shown in the widget; try again
            summary = self.summary
        self.show_log()
        return summary

    # -- logs, retry, cancel ------------------------------------------------------------------
    def show_log(self, analysis: str | None = None) -> None:
        run_id, analysis = self.run_id, analysis or self.analysis.value
        if analysis and analysis != self.analysis.value:
            self._quiet = True
            try:
                self.analysis.value = analysis
            finally:
                self._quiet = False
        if not run_id or not analysis:
            self.log.value = ""
            return
        try:
            self.log.value = log_html(self.cyto.logs(run_id, analysis, tail=self.tail))
        except Exception as exc:  # shown in the widget, as in refresh()
            self.log.value = message_html(f"could not read the log of {analysis}: {exc}")

    def retry(self) -> list[str]:
        """Retry every failed analysis of the run (what the Retry button does)."""
        if not self.run_id:
            return []
        try:
            retried = self.cyto.retry(self.run_id, by=self.by)
        except Exception as exc:  # shown in the widget, as in refresh()
            self.message.value = message_html(f"could not retry: {exc}")
            return []
        text = f"retrying {len(retried)} analyses: {', '.join(retried)}" if retried else "nothing to retry"
        self.message.value = message_html(text, "info")
        self.refresh(poll=False)
        return retried

    def cancel(self) -> bool:
        """The Cancel button: the first click asks for confirmation, the second cancels the run."""
        if not self.run_id or self.cancel_button.disabled:
            return False
        if not self._cancel_armed:
            self._cancel_armed = True
            self.cancel_button.description = "Confirm cancel"
            active = self.summary.total - self.summary.done if self.summary else 0
            self.message.value = message_html(
                f"click again to cancel run {self.run_id} ({active} analyses not finished)", "info")
            return False
        self._cancel_armed = False
        try:
            done = self.cyto.cancel(self.run_id, by=self.by)
        except Exception as exc:  # shown in the widget, as in refresh()
            self.message.value = message_html(f"could not cancel: {exc}")
            return False
        self.message.value = message_html(
            f"cancelling run {self.run_id}" if done else "the run was not active: nothing to cancel", "info")
        self.refresh()
        return done

    def values(self) -> dict[str, Any]:
        """The watcher's state as plain data (what the notebooks print for a headless check)."""
        summary = self.summary
        return {
            "run_id": self.run_id,
            "state": summary.run.state.value if summary else None,
            "counts": {s.value: n for s, n in summary.counts.items() if n} if summary else {},
            "progress": [self.progress.value, self.progress.max],
            "analyses": {job.analysis: job.state.value for job in self.jobs},
            "log_analysis": self.analysis.value,
            "log_shown": bool(self.log.value),
            "retry_disabled": self.retry_button.disabled,
            "cancel_disabled": self.cancel_button.disabled,
            "live": self.live,
            "results_shown": bool(self.results.value) and self.report is not None,
            "qc": self.report.headline if self.report else None,
        }
