"""Parse `/cyto …` text into typed requests. Pure: text in, a request or `UsageError` out."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.layout import LayoutError, parse_date
from bot.sizes import SizeError, parse_duration_s, parse_memory_mib, parse_storage_gib

USAGE = """\
*`/cyto` commands*
• `/cyto run DATE BATCH [pipeline=NAME] [vcpus=N] [memory=4G] [storage=20G] [timeout=2h] [retries=N] \
[params='{"k": 4}']` — run every analysis of a batch
• `/cyto run` — the same through a form (date, batch, pipeline, parameters, resources)
   add `--allow-concurrent` to start it while another run of the batch is unfinished (it writes its own Output folder)
• `/cyto status [RUN]` — progress of a run (the newest when RUN is left out)
• `/cyto retry RUN [ANALYSIS]` — retry one failed analysis, or every failed one
• `/cyto cancel RUN` — stop a run
• `/cyto list [DATE]` — dates in the store, or the batches of one date
• `/cyto help` — this text
Example: `/cyto run 2018-12-05 batch-7 pipeline=wordcount memory=4G`"""

RUN_OPTIONS = ("pipeline", "vcpus", "memory", "storage", "timeout", "retries", "params")
RUN_FLAGS = ("--allow-concurrent",)


class UsageError(ValueError):
    """The text is not a valid command; the message says why, `usage` how to write it."""

    def __init__(self, reason: str, usage: str = USAGE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage


@dataclass(frozen=True)
class RunRequest:
    date: str
    batch: str
    pipeline: str | None = None
    vcpus: float | None = None
    memory_mib: int | None = None
    retries: int | None = None
    allow_concurrent: bool = False
    storage_gib: int | None = None
    timeout_s: int | None = None
    params: dict[str, Any] | None = None  # pipeline parameters: params='{"k": 4}' or the form's field


@dataclass(frozen=True)
class StatusRequest:
    run_id: str | None = None


@dataclass(frozen=True)
class RetryRequest:
    run_id: str
    analysis: str | None = None


@dataclass(frozen=True)
class CancelRequest:
    run_id: str


@dataclass(frozen=True)
class ListRequest:
    date: str | None = None


@dataclass(frozen=True)
class HelpRequest:
    pass


Request = RunRequest | StatusRequest | RetryRequest | CancelRequest | ListRequest | HelpRequest
SUBCOMMANDS = ("run", "status", "retry", "cancel", "list", "help")


def parse(text: str) -> Request:
    words = _split(text)
    if not words or words[0].lower() == "help":
        return HelpRequest()
    verb, args = words[0].lower(), words[1:]
    if verb == "run":
        return _parse_run(args)
    if verb == "status":
        _at_most(args, 1, "/cyto status [RUN]")
        return StatusRequest(args[0] if args else None)
    if verb == "retry":
        _between(args, 1, 2, "/cyto retry RUN [ANALYSIS]")
        return RetryRequest(args[0], args[1] if len(args) > 1 else None)
    if verb == "cancel":
        _between(args, 1, 1, "/cyto cancel RUN")
        return CancelRequest(args[0])
    if verb == "list":
        _at_most(args, 1, "/cyto list [DATE]")
        return ListRequest(_date(args[0]) if args else None)
    raise UsageError(f"unknown command `{verb}`; choose one of: {', '.join(SUBCOMMANDS)}")


def _parse_run(args: list[str]) -> RunRequest:
    form = ("/cyto run DATE BATCH [pipeline=NAME] [vcpus=N] [memory=4G] [storage=20G] [timeout=2h] [retries=N] "
            "[params='{\"k\": 4}'] [--allow-concurrent]")
    flags = {_flag(a) for a in args if _flag(a)}
    for flag in flags:
        if flag not in RUN_FLAGS:
            raise UsageError(f"unknown flag `{flag}`; the only flag is {', '.join(RUN_FLAGS)}: `{form}`")
    args = [a for a in args if not _flag(a)]
    positional = [a for a in args if "=" not in a]
    options = [a for a in args if "=" in a]
    if len(positional) < 2:
        missing = "DATE and BATCH" if not positional else "BATCH"
        raise UsageError(f"`run` needs {missing}: `{form}`")
    if len(positional) > 2:
        raise UsageError(f"`run` takes DATE and BATCH, then options as name=value; "
                         f"did not understand `{positional[2]}`: `{form}`")
    values: dict[str, str] = {}
    for option in options:
        name, _, value = option.partition("=")
        name = name.strip().lower()
        if name not in RUN_OPTIONS:
            raise UsageError(f"unknown option `{name}`; options are {', '.join(RUN_OPTIONS)}: `{form}`")
        if not value:
            raise UsageError(f"option `{name}` has no value: write `{name}=…`")
        values[name] = value.strip()
    return RunRequest(
        date=_date(positional[0]),
        batch=positional[1],
        pipeline=values.get("pipeline"),
        vcpus=_number(values["vcpus"], "vcpus") if "vcpus" in values else None,
        memory_mib=parse_memory(values["memory"]) if "memory" in values else None,
        retries=_whole(values["retries"], "retries") if "retries" in values else None,
        storage_gib=_size(parse_storage_gib, values["storage"], "storage") if "storage" in values else None,
        timeout_s=_size(parse_duration_s, values["timeout"], "timeout") if "timeout" in values else None,
        params=_params(values["params"]) if "params" in values else None,
        allow_concurrent="--allow-concurrent" in flags,
    )


def _params(text: str) -> dict[str, Any]:
    """A JSON object, or YAML's flow form of one (`{k: 4}`): quotes may not survive a Slack client."""
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None
    if not isinstance(loaded, dict):
        raise UsageError(f"params `{text}` is not an object: write params='{{\"k\": 4}}' or params=\"{{k: 4}}\"")
    return loaded


def _size(parse: Callable[[str], int], text: str, name: str) -> int:
    try:
        return parse(text)
    except SizeError as exc:
        raise UsageError(f"{name} {exc}") from None


def _flag(word: str) -> str | None:
    """`--name` as written, or as a Slack client's autocorrect leaves it (`—name`); None otherwise."""
    for dash in ("--", "\u2014", "\u2013"):
        if word.startswith(dash) and "=" not in word and len(word) > len(dash):
            return "--" + word[len(dash):].lower()
    return None


def parse_memory(text: str) -> int:
    """`4096`, `4096MiB`, `512M` or `4G` (binary units) as MiB, read as the CLI reads `--memory`."""
    try:
        return parse_memory_mib(text)
    except SizeError as exc:
        raise UsageError(f"memory {exc}") from None


def _split(text: str) -> list[str]:
    # Slack clients may turn quotes into typographic ones; shlex only knows the plain kind.
    text = (text or "").replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"could not read the command: {exc}") from None


def _date(text: str) -> str:
    try:
        return parse_date(text)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{name} `{text}` is not a number") from None


def _whole(text: str, name: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{name} `{text}` is not a whole number")
    return int(text)


def _at_most(args: list[str], most: int, form: str) -> None:
    if len(args) > most:
        raise UsageError(f"too many words after the command: `{form}`")


def _between(args: list[str], least: int, most: int, form: str) -> None:
    if len(args) < least:
        raise UsageError(f"missing RUN: `{form}` (`/cyto status` shows run ids)")
    _at_most(args, most, form)
