"""`/cyto run` with nothing after it opens a form (a Slack modal), as Slack apps do.

- The slash command's ack opens the modal with `views.open` (the trigger id is good for 3 s).
- The batch menu is an external select: Slack asks with `block_suggestion` as the user types, and
  the answer lists the batches of the chosen date with their number of analyses.
- Submitting (`view_submission`) is checked as the CLI checks a run — sizes by bot/sizes.py,
  parameters as a JSON or YAML object, then the engine's own plan (batch, pipeline, every
  parameter check) — and a refusal is shown on its field. A good form closes and the run starts in
  the channel the command came from, through the same path as a typed `/cyto run`.

The view builders and the form reader are pure; `register` wires them to Bolt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import defaults
from bot.api import Cyto
from bot.layout import LayoutError, parse_date
from bot.sizes import format_duration, format_mib, parse_resources
from handlers.commands import RunRequest

log = logging.getLogger(__name__)

FORM = "cyto_run_form"  # the modal's callback_id
BATCH_ACTION = "batch"
MAX_OPTIONS = 100  # Slack shows at most 100 options in a select
# (field, label, placeholder): the placeholder shows the default and a few ways to write a value.
RESOURCE_BLOCKS = (("vcpus", "CPUs (vCPU)", f"{defaults.VCPUS:g}"),
                   ("memory", "Memory", f"{format_mib(defaults.MEMORY_MIB)}  (4096, 512M, 4G)"),
                   ("storage", "Scratch storage", f"{defaults.STORAGE_GIB}G"),
                   ("timeout", "Timeout", f"{format_duration(defaults.TIMEOUT_S)}  (3600, 90m, 2h)"),
                   ("retries", "Automatic retries", str(defaults.RETRIES)))
Body = dict[str, Any]


def wants_form(text: str | None) -> bool:
    return (text or "").strip().lower() == "run"


# -- views (pure) ---------------------------------------------------------------------------------
def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None) -> dict[str, Any]:
    block = {"type": "input", "block_id": block_id, "label": _plain(label), "element": element,
             "optional": optional}
    if hint:
        block["hint"] = _plain(hint)
    return block


def form_view(channel: str, dates: Sequence[str], pipelines: Sequence[str], default_pipeline: str) -> dict[str, Any]:
    """The modal: date, batch (from the store), pipeline, parameters, resources."""
    date_picker: dict[str, Any] = {"type": "datepicker", "action_id": "date"}
    if dates:
        date_picker["initial_date"] = dates[-1]
    pipeline_options = [{"text": _plain(p), "value": p} for p in pipelines]
    initial = next((o for o in pipeline_options if o["value"] == default_pipeline), None)
    pipeline_select: dict[str, Any] = {"type": "static_select", "action_id": "pipeline", "options": pipeline_options}
    if initial:
        pipeline_select["initial_option"] = initial
    blocks = [
        _input("date", "Date", date_picker, hint="the Input/YYYY-MM-DD/ folder of the batch"),
        _input("batch", "Batch", {"type": "external_select", "action_id": BATCH_ACTION, "min_query_length": 0,
                                  "placeholder": _plain("batches of the date")}),
        _input("pipeline", "Pipeline", pipeline_select),
        _input("params", "Parameters", {"type": "plain_text_input", "action_id": "params", "multiline": True,
                                        "placeholder": _plain('{"transform": "logicle"}  or  transform: logicle')},
               optional=True, hint="a JSON or YAML object; an analysis's params.json overrides it"),
    ]
    for name, label, placeholder in RESOURCE_BLOCKS:
        blocks.append(_input(name, label, {"type": "plain_text_input", "action_id": name,
                                           "placeholder": _plain(placeholder)}, optional=True))
    return {"type": "modal", "callback_id": FORM, "title": _plain("Run a batch"), "submit": _plain("Run"),
            "close": _plain("Cancel"), "private_metadata": json.dumps({"channel": channel}), "blocks": blocks}


def batch_options(cyto: Cyto, date: str | None, query: str) -> list[dict[str, Any]]:
    """The batches of `date` whose name contains `query`, each with its number of analyses."""
    if not date:
        return []
    options = []
    for name in cyto.batches(date):
        if query.lower() not in name.lower():
            continue
        count = len(cyto.analyses(date, name))
        text = f"{name} ({count} analys{'es' if count != 1 else 'is'})"
        options.append({"text": _plain(text[:75]), "value": name[:150]})
        if len(options) == MAX_OPTIONS:
            break
    return options


def _value(values: Mapping[str, Any], block: str) -> Any:
    element = (values.get(block) or {}).get(block) or {}
    kind = element.get("type")
    if kind == "datepicker":
        return element.get("selected_date")
    if kind in ("external_select", "static_select"):
        return (element.get("selected_option") or {}).get("value")
    return element.get("value")


def read_form(values: Mapping[str, Any]) -> tuple[RunRequest | None, dict[str, str]]:
    """The form's values as a run request, or the errors to show, by block id. Pure."""
    errors: dict[str, str] = {}
    date = _value(values, "date")
    try:
        date = parse_date(date or "")
    except LayoutError as exc:
        errors["date"] = str(exc) if date else "choose the batch's date"
    batch = _value(values, BATCH_ACTION)
    if not batch:
        errors["batch"] = "choose a batch of that date"
    params = _params(_value(values, "params"), errors)
    resources, resource_errors = parse_resources({name: _value(values, name) for name, _, _ in RESOURCE_BLOCKS})
    errors.update(resource_errors)
    if errors:
        return None, errors
    return RunRequest(date=date, batch=batch, pipeline=_value(values, "pipeline"), params=params,
                      **resources), {}


def _params(text: str | None, errors: dict[str, str]) -> dict[str, Any] | None:
    if not text or not text.strip():
        return None
    import yaml

    try:
        loaded = yaml.safe_load(text)  # YAML reads JSON objects too
    except yaml.YAMLError as exc:
        errors["params"] = f"not valid JSON or YAML: {' '.join(str(exc).split())}"[:300]
        return None
    if not isinstance(loaded, dict):
        errors["params"] = f"write one object of KEY: VALUE pairs, not a {type(loaded).__name__}"
        return None
    return loaded


def plan_error_field(message: str) -> str:
    """Which field a refusal of the engine's plan belongs to."""
    lowered = message.lower()
    if "pipeline" in lowered and "unknown pipeline" in lowered:
        return "pipeline"
    if "param" in lowered:
        return "params"
    if "date" in lowered and "batch" not in lowered:
        return "date"
    if any(word in lowered for word in ("vcpu", "memory", "storage", "timeout", "retries")):
        for name, _, _ in RESOURCE_BLOCKS:
            if name.rstrip("s") in lowered:
                return name
    return "batch"


# -- Bolt ------------------------------------------------------------------------------------------
class RunForm:
    """The modal's listeners. `start_run(request, user, channel, respond)` is the typed command's
    own run path (handlers/listeners.py), so both start a run the same way."""

    def __init__(self, bot: Any, start_run: Callable[..., object],
                 refusals: tuple[type[Exception], ...]) -> None:
        self.bot = bot
        self.start_run = start_run
        self.refusals = refusals

    def open(self, body: Body, client: WebClient) -> None:
        """Open the form for a slash command (called from the command's ack, within the 3 s)."""
        from container.pipelines import available

        try:
            dates = self.bot.cyto.dates()
        except self.refusals:
            dates = []
        view = form_view(body.get("channel_id", ""), dates, available(), self.bot.cyto.settings.default_pipeline)
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as exc:  # e.g. expired_trigger_id: the person types `/cyto run` again
            log.warning("views.open failed: %s", exc.response.get("error") if exc.response else exc)

    def suggest(self, ack: Ack, body: Body) -> None:
        values = ((body.get("view") or {}).get("state") or {}).get("values") or {}
        date = _value(values, "date")
        refusals: tuple[type[Exception], ...] = (*self.refusals, LayoutError)
        try:
            options = batch_options(self.bot.cyto, parse_date(date), body.get("value") or "") if date else []
        except refusals:
            options = []
        ack(options=options)

    def submit_ack(self, ack: Ack, body: Body) -> None:
        user = (body.get("user") or {}).get("id", "")
        channel = _channel_of(body)
        refusal = self.bot.permissions.refusal(user, channel)
        if refusal:
            ack(response_action="errors", errors={"batch": refusal[:150]})
            return
        request, errors = read_form(body["view"]["state"]["values"])
        if request is None:
            ack(response_action="errors", errors=errors)
            return
        try:
            self.bot.cyto.plan(request.date, request.batch, pipeline=request.pipeline, vcpus=request.vcpus,
                               memory_mib=request.memory_mib, storage_gib=request.storage_gib,
                               timeout_s=request.timeout_s, retries=request.retries, params=request.params)
        except self.refusals as exc:
            ack(response_action="errors", errors={plan_error_field(str(exc)): str(exc)[:500]})
            return
        ack()

    def submit(self, body: Body, client: WebClient) -> None:
        """After the ack closed the form: start the run in the channel (its checks passed in the ack)."""
        request, errors = read_form(body["view"]["state"]["values"])
        user = (body.get("user") or {}).get("id", "")
        channel = _channel_of(body)
        if request is None or errors or self.bot.permissions.refusal(user, channel):
            return  # refused in the ack, with the reason on the form

        def respond(**message: Any) -> None:
            client.chat_postEphemeral(channel=channel, user=user, text=message.get("text") or "",
                                      blocks=message.get("blocks"))

        try:
            self.start_run(request, user, channel, respond)
        except self.refusals as exc:  # the store changed between the ack and now
            respond(text=f"⚠️ {exc}")


def _channel_of(body: Body) -> str:
    try:
        return str(json.loads(body["view"].get("private_metadata") or "{}").get("channel") or "")
    except (ValueError, AttributeError):
        return ""


def register(app: App, form: RunForm) -> None:
    app.options(BATCH_ACTION)(form.suggest)
    app.view(FORM)(ack=form.submit_ack, lazy=[form.submit])
