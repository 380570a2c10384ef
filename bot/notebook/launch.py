"""LaunchForm: set a run up with widgets, preview the analyses it will submit, and start it.

Every check comes from the session: the form asks `cyto.resource_errors(...)` and `cyto.plan(...)`
(which submits nothing) after each change and shows what was refused next to the input it concerns.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from bot.api import BadParameters, Cyto, EngineError, Plan, Run
from bot.catalog import UnknownBatch
from bot.layout import LayoutError, is_date, nearest_dates, parse_date
from bot.notebook.render import message_html, preview_html
from bot.store import StoreError

RESOURCE_FIELDS = ("vcpus", "memory_mib", "storage_gib", "timeout_s", "retries")
FIELDS = ("date", "batch", "pipeline", *RESOURCE_FIELDS, "params")
FORM = "form"  # errors that belong to no single input
_WIDE = widgets.Layout(width="22em")
_STYLE = {"description_width": "8em"}


def _options(known: Sequence[str], wanted: str | None) -> list[tuple[str, str]]:
    """Dropdown options; a requested value the store lacks stays selectable and is marked, so the
    engine's explanation can be shown next to it instead of the value silently changing."""
    options = [(value, value) for value in known]
    if wanted and wanted not in known:
        options.append((f"{wanted} (not found)", wanted))
    return options


def notebook_user() -> str:
    try:
        return f"notebook:{getpass.getuser()}"
    except (KeyError, OSError):
        return "notebook"


class LaunchForm:
    def __init__(self, cyto: Cyto, *, date: str | None = None, batch: str | None = None,
                 pipeline: str | None = None, requested_by: str | None = None) -> None:
        self.cyto = cyto
        self.requested_by = requested_by or notebook_user()
        self.plan: Plan | None = None
        self.errors: dict[str, str] = {}
        self.last_run: Run | None = None
        self._submitted: tuple[Any, ...] | None = None
        self._listeners: list[Callable[[Run], None]] = []
        self._quiet = False

        defaults = cyto.default_resources()
        self.date = widgets.Dropdown(description="Date", layout=_WIDE, style=_STYLE)
        self.batch = widgets.Dropdown(description="Batch", layout=_WIDE, style=_STYLE)
        self.pipeline = widgets.Dropdown(description="Pipeline", layout=_WIDE, style=_STYLE)
        self.vcpus = widgets.FloatText(value=defaults.vcpus, description="vCPU", layout=_WIDE, style=_STYLE)
        self.memory_mib = widgets.IntText(value=defaults.memory_mib, description="Memory (MiB)", layout=_WIDE,
                                          style=_STYLE)
        self.storage_gib = widgets.IntText(value=defaults.storage_gib, description="Storage (GiB)", layout=_WIDE,
                                           style=_STYLE)
        self.timeout_s = widgets.IntText(value=defaults.timeout_s, description="Timeout (s)", layout=_WIDE,
                                         style=_STYLE)
        self.retries = widgets.IntText(value=defaults.retries, description="Retries", layout=_WIDE, style=_STYLE)
        self.params = widgets.Textarea(value="{}", description="Parameters", placeholder='{"files": ["a.txt"]}',
                                       continuous_update=False, layout=widgets.Layout(width="40em", height="5em"),
                                       style=_STYLE)
        self.reload_button = widgets.Button(description="Reload dates", icon="refresh")
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play", disabled=True)
        self.messages = {name: widgets.HTML() for name in (*FIELDS, FORM)}
        self.preview = widgets.HTML()
        self.status = widgets.HTML()

        self._fill(date, batch, pipeline or cyto.settings.default_pipeline)
        for name in FIELDS:
            getattr(self, name).observe(self._changed, names="value")
        self.date.observe(self._date_changed, names="value")
        self.reload_button.on_click(lambda _: self.reload())
        self.run_button.on_click(lambda _: self.run())
        self.validate()

        rows = [widgets.HBox([getattr(self, name), self.messages[name]]) for name in FIELDS]
        self.widget = widgets.VBox([
            widgets.HBox([self.reload_button, self.messages[FORM]]), *rows, self.preview,
            widgets.HBox([self.run_button, self.status]),
        ])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def on_run(self, listener: Callable[[Run], None]) -> None:
        """Call `listener(run)` after the Run button started a run (a RunWatcher's `follow`, say)."""
        self._listeners.append(listener)

    # -- options from the store ---------------------------------------------------------------
    def _fill(self, date: str | None, batch: str | None, pipeline: str) -> None:
        self._quiet = True
        try:
            dates = self.cyto.dates()
            self.date.options = _options(dates, date)
            self.date.value = date or (dates[-1] if dates else None)  # the newest date by default
            self._fill_batches(batch)
            self.pipeline.options = _options(self.cyto.pipelines(), pipeline)
            self.pipeline.value = pipeline
        finally:
            self._quiet = False

    def _fill_batches(self, wanted: str | None = None) -> None:
        date = self.date.value
        try:
            batches = self.cyto.batches(date) if date else []
        except (LayoutError, StoreError):
            batches = []  # validate() shows why next to the date
        self.batch.options = _options(batches, wanted)
        self.batch.value = wanted or (batches[0] if batches else None)

    def reload(self) -> None:
        """Read the store's dates and batches again, keeping the selection where it still exists."""
        self._fill(self.date.value, self.batch.value, self.pipeline.value)
        self.validate()

    def _date_changed(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._quiet = True
        try:
            self._fill_batches()
        finally:
            self._quiet = False
        self.validate()

    def _changed(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["owner"] is not self.date:
            self.validate()

    # -- validation by the session ------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name).value for name in FIELDS)

    def _parse_params(self, errors: dict[str, str]) -> dict[str, Any]:
        text = self.params.value.strip()
        if not text:
            return {}
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            errors["params"] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            return {}
        if not isinstance(params, dict):
            errors["params"] = 'parameters must be a JSON object, for example {"files": ["a.txt"]}'
            return {}
        return params

    def _nothing_to_choose(self, date: str | None) -> tuple[str, str]:
        """Why the date or batch dropdown is empty, as (input, message)."""
        uri = self.cyto.store_uri
        if not date:
            return "date", f"no dates in the store {uri}: add folders Input/YYYY-MM-DD/batch/analysis/"
        try:
            parse_date(date)
        except LayoutError as exc:
            return "date", str(exc)
        dates = self.cyto.dates()
        if date in dates:
            return "batch", f"no batches on {date}: add folders Input/{date}/batch/analysis/"
        nearest = ", ".join(nearest_dates(date, dates)) or "none"
        return "date", f"nothing on {date} in the store {uri}; nearest dates: {nearest}"

    def validate(self) -> Plan | None:
        """Ask the session whether the form's run would be accepted; show its answers by input."""
        values = {name: getattr(self, name).value for name in RESOURCE_FIELDS}
        errors = self.cyto.resource_errors(**values)  # one at a time: every out-of-range input gets its message
        resources = {name: value for name, value in values.items() if name not in errors}
        params = self._parse_params(errors)
        date, batch, pipeline = self.date.value, self.batch.value, self.pipeline.value
        plan = None
        if not date or not batch:
            field, message = self._nothing_to_choose(date)
            errors[field] = message
        else:
            try:
                plan = self.cyto.plan(date, batch, pipeline=pipeline, params=params, **resources)
            except UnknownBatch as exc:
                errors["batch" if date in self.cyto.dates() else "date"] = str(exc)
            except LayoutError as exc:
                errors["batch" if is_date(date) else "date"] = str(exc)
            except BadParameters as exc:
                errors["params"] = str(exc)
            except EngineError as exc:
                errors["pipeline" if pipeline not in self.cyto.pipelines() else FORM] = str(exc)
            except StoreError as exc:
                errors[FORM] = str(exc)
        self.errors = errors
        self.plan = plan if not errors else None
        for name, box in self.messages.items():
            box.value = message_html(errors.get(name))
        self.preview.value = preview_html(self.plan) if self.plan else ""
        # After a run started, Run stays off until an input changes: a double click starts one run.
        self.run_button.disabled = self.plan is None or self._key() == self._submitted
        return self.plan

    # -- starting the run ---------------------------------------------------------------------
    def run(self) -> Run | None:
        """What the Run button does: start the run the form describes, if the session accepts it."""
        if self.validate() is None or self.run_button.disabled:
            return None
        key = self._key()
        self.run_button.disabled = True
        options = {name: getattr(self, name).value for name in RESOURCE_FIELDS}
        try:
            run = self.cyto.run(self.date.value, self.batch.value, requested_by=self.requested_by,
                                pipeline=self.pipeline.value, params=self._parse_params({}), **options)
        except Exception as exc:  # a button handler's exception would vanish into the kernel log
            self.status.value = message_html(f"could not start the run: {exc}")
            self.validate()
            return None
        self._submitted = key
        self.last_run = run
        self.status.value = message_html(
            f"started run {run.id} ({len(self.plan.analyses) if self.plan else '?'} analyses); "
            "change an input to start another", "ok")
        self.validate()
        for listener in self._listeners:
            listener(run)
        return run

    def values(self) -> dict[str, Any]:
        """The form's state as plain data (what the notebooks print for a headless check)."""
        return {
            **{name: getattr(self, name).value for name in FIELDS},
            "errors": dict(self.errors),
            "run_disabled": self.run_button.disabled,
            "analyses": list(self.plan.analyses) if self.plan else [],
            "date_options": [value for _, value in self.date.options],
            "batch_options": [value for _, value in self.batch.options],
            "run_id": self.last_run.id if self.last_run else None,
        }
