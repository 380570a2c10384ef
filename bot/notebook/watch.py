"""RunWatcher: follow one run in a notebook: progress bar, table of analyses by state, log viewer,
Retry and Cancel. It polls the engine and renders what the run database says; no run logic here."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets

from bot.api import Cyto, RunActions
from bot.engine import NotFound, RunSummary
from bot.ledger import Job, Run
from bot.notebook.launch import notebook_user
from bot.notebook.render import BAR_STYLES, jobs_table_html, log_html, message_html, progress_html, run_label
from bot.notebook.results import MAX_PLOTS, results_html
from bot.report import ReportResult
from bot.report.links import report_link
from bot.states import JobState
from bot.store import ObjectNotFound

LIVE_INTERVAL_S = 2.0


class RunWatcher:
    def __init__(self, cyto: Cyto, run_id: str | None = None, *, by: str | None = None, tail: int = 15,
                 interval: float | None = None, limit: int = 20) -> None:
        self.cyto = cyto
        self.by = by or notebook_user()
        self.tail = tail
        self.limit = limit
        self.interval = interval or min(cyto.settings.poll_seconds, LIVE_INTERVAL_S)
        self.summary: RunSummary | None = None
        self.jobs: list[Job] = []
        self.actions: RunActions | None = None  # what the run allows now (bot/actions.py, decided once)
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
                self.summary = self.cyto.status(run_id)
                self.jobs = self.cyto.jobs(run_id)
                self.actions = self.cyto.actions(run_id)
            except Exception as exc:  # shown in the widget: a live loop or a click has nowhere else to report
                self.message.value = self._refresh_error = message_html(f"could not refresh: {exc}")
                return self.summary
            if self._refresh_error and self.message.value == self._refresh_error:
                self.message.value = ""  # the store or executor answers again
            self._refresh_error = None
            self._render()
            return self.summary

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
                    plots.setdefault(analysis, []).append((key_.rsplit("/", 1)[-1], self.cyto.store.read_bytes(key_)))
                except ObjectNotFound:
                    continue
            budget -= len(keys)
            if budget <= 0:
                break
        link = report_link(self.cyto.store, report.key)
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
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)

    def wait(self, timeout: float | None = None) -> RunSummary | None:
        """Refresh until the watched run has finished (or `timeout` seconds passed); for scripts and
        headless runs. A live notebook uses `start()` so that its buttons stay responsive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            summary = self.refresh()
            if summary is None or summary.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(min(self.interval, 0.5))
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
