"""Sizes and durations as people write them, read the same way by every front end.

    memory   4096 | 4096M | 512M | 4G | 4GiB | 1.5G      -> MiB (binary units; a bare number is MiB)
    storage  20 | 20G | 1T                               -> GiB (a bare number is GiB)
    timeout  3600 | 90s | 30m | 2h | 1d | 1h30m          -> seconds (a bare number is seconds)

Errors are `SizeError` with a message that starts with what was written, so each front end can put
its own name for the setting in front (`--memory`, `memory=`, the form's field).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_UNIT_MIB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class SizeError(ValueError):
    pass


def _mib(text: str, bare_unit: str) -> float:
    match = _SIZE.match(text.strip())
    if not match or (match.group(2) and match.group(2).lower() == "b"):
        raise SizeError(f"`{text}` is not a size: write a number, or one with a unit (512M, 4G)")
    unit = (match.group(2) or bare_unit)[0].lower()
    return float(match.group(1)) * _UNIT_MIB[unit]


def parse_memory_mib(text: str) -> int:
    """`4096`, `4096M`, `512M`, `4G`, `4GiB` as MiB."""
    mib = _mib(text, "m")
    if mib != int(mib) or mib < 1:
        raise SizeError(f"`{text}` is not a whole number of MiB")
    return int(mib)


def parse_storage_gib(text: str) -> int:
    """`20`, `20G`, `1T` as GiB."""
    gib = _mib(text, "g") / 1024
    if gib != int(gib) or gib < 1:
        raise SizeError(f"`{text}` is not a whole number of GiB")
    return int(gib)


def parse_duration_s(text: str) -> int:
    """`3600`, `90s`, `30m`, `2h`, `1d`, `1h30m` as seconds."""
    cleaned = text.strip().replace(" ", "")
    if cleaned.isdigit():
        return int(cleaned)
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(a + u for a, u in parts).lower() != cleaned.lower():
        raise SizeError(f"`{text}` is not a duration: write seconds (3600) or with units (90s, 30m, 2h, 1h30m)")
    seconds = sum(float(amount) * _UNIT_S[unit.lower()] for amount, unit in parts)
    if seconds != int(seconds):
        raise SizeError(f"`{text}` is not a whole number of seconds")
    return int(seconds)


def format_mib(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 and mib >= 1024 else f"{mib}M"


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# The resource settings every front end takes, by the name people write them with:
# name -> (the engine's keyword, parser, how a limit is shown).
RESOURCE_FIELDS: dict[str, tuple[str, Callable[[str], float], Callable[[float], str]]] = {
    "vcpus": ("vcpus", lambda text: _number(text, float), lambda v: f"{v:g}"),
    "memory": ("memory_mib", parse_memory_mib, lambda v: format_mib(int(v))),
    "storage": ("storage_gib", parse_storage_gib, lambda v: f"{v:g}G"),
    "timeout": ("timeout_s", parse_duration_s, lambda v: format_duration(int(v))),
    "retries": ("retries", lambda text: _number(text, int), str),
}


def parse_resources(texts: Mapping[str, str | float | None]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and range-check resource settings given as text (or numbers) by field name
    (`memory`, `timeout`, …). Returns the engine's keyword arguments and, per field, a message
    that starts with what was written (`10 is out of range: 128M to 1024G`) for the front end to
    put its own name in front of."""
    from bot.engine import RESOURCE_LIMITS

    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, given in texts.items():
        if given is None or (isinstance(given, str) and not given.strip()):
            continue
        keyword, parse, shown = RESOURCE_FIELDS[name]
        text = given.strip() if isinstance(given, str) else f"{given:g}"
        try:
            value = parse(text)
        except SizeError as exc:
            errors[name] = str(exc)
            continue
        low, high = RESOURCE_LIMITS[keyword]
        if not low <= value <= high:
            errors[name] = f"{text} is out of range: {shown(low)} to {shown(high)}"
            continue
        values[keyword] = value
    return values, errors


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise SizeError(f"`{text}` is not {noun}") from None
