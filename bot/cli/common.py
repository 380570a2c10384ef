"""What every `cyto` command shares: the one-line usage failure (exit 2), the engine's errors turned
into it, the session, and the parsing of parameters and resource options."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bot import defaults
from bot.api import Cyto, DatabaseError, EngineError, FastaError
from bot.executors import ExecutorError
from bot.layout import LayoutError
from bot.settings import ConfigError
from bot.sizes import format_duration, format_mib
from bot.store import StoreError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageFailure(click.ClickException):
    """A clear one-line message and exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"cyto: {self.format_message()}", err=True)


def friendly_errors(func: F) -> F:
    """Turn the engine's narrow exceptions into one-line messages with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreError, DatabaseError, ExecutorError, EngineError, LayoutError, FastaError) as exc:
            raise UsageFailure(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def open_session() -> Cyto:
    return Cyto.from_env()


def parse_params(pairs: tuple[str, ...], params_json: str | None, params_file: str | None = None) -> dict[str, Any]:
    """--params-file, then --params, then each --param: a later one wins for the same key."""
    params: dict[str, Any] = read_params_file(params_file) if params_file else {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise UsageFailure(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageFailure("--params must be a JSON object, e.g. '{\"transform\": \"logicle\"}'")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageFailure(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def read_params_file(path: str) -> dict[str, Any]:
    """A JSON or YAML file holding one object of pipeline parameters."""
    import yaml

    try:
        text = open(path, encoding="utf-8").read()  # noqa: SIM115 - read at once
    except OSError as exc:
        raise UsageFailure(f"--params-file {path}: {exc.strerror or exc}") from None
    try:
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.endswith(".json") else "YAML or JSON"
        raise UsageFailure(f"--params-file {path} is not valid {kind}: {' '.join(str(exc).split())}") from None
    if not isinstance(loaded, dict):
        raise UsageFailure(f"--params-file {path} must hold one object of KEY: VALUE pairs, "
                           f"not {type(loaded).__name__}")
    return loaded


def checked_resources(vcpus: float | None = None, memory: str | None = None, storage: str | None = None,
                      timeout: str | None = None, retries: int | None = None) -> dict[str, Any]:
    """The resource options as the engine's keyword arguments, each parsed and range-checked with
    the option's own name in the message (`--memory 64 is out of range: …`)."""
    from bot.sizes import parse_resources

    values, errors = parse_resources({"vcpus": vcpus, "memory": memory, "storage": storage, "timeout": timeout,
                                      "retries": retries})
    if errors:
        name, message = next(iter(errors.items()))
        raise UsageFailure(f"--{name} {message}")
    return values


def resource_options(func: F) -> F:
    options = [
        click.option("--pipeline", help=f"Pipeline to run (default: CYTO_DEFAULT_PIPELINE or {defaults.PIPELINE})."),
        click.option("--vcpus", type=float, help=f"vCPUs per job (default {defaults.VCPUS:g})."),
        click.option("--memory", metavar="SIZE",
                     help=f"Memory per job: 4096 (MiB), 512M or 4G (default {format_mib(defaults.MEMORY_MIB)})."),
        click.option("--storage", metavar="SIZE",
                     help=f"Scratch storage per job: 20 (GiB) or 1T (default {defaults.STORAGE_GIB}G)."),
        click.option("--timeout", metavar="DURATION", help="Time before a job is stopped: 3600 (s), 90m or 2h "
                     f"(default {format_duration(defaults.TIMEOUT_S)})."),
        click.option("--retries", type=int,
                     help=f"Automatic retries of a failed analysis (default {defaults.RETRIES})."),
        click.option("--param", "param_pairs", multiple=True, metavar="KEY=VALUE",
                     help="A pipeline parameter (repeatable); VALUE is JSON or a string."),
        click.option("--params", "params_json", metavar="JSON", help="Pipeline parameters as a JSON object."),
        click.option("--params-file", type=click.Path(dir_okay=False),
                     help="Pipeline parameters from a JSON or YAML file (--params and --param override it)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON (a stable shape, see README.md \"Scripting\") instead of text.")



def whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def location(uri: str) -> str:
    """A path for a local file, the URI otherwise."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return uri


def size_text(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:g} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
