"""wordcount: lines, words and bytes of every file in the analysis folder, exactly as `LC_ALL=C wc`.

GNU wc (coreutils 9.1) in the C locale counts:
- lines: the number of `\\n` bytes;
- words: maximal runs of printable bytes (0x21-0x7e) between separators, where the separators are
  exactly space, `\\n`, `\\r`, `\\f`, `\\t` and `\\v`; every other byte (other control characters,
  bytes >= 0x80) neither starts nor ends a word, so `a\\x00b` is one word and `\\x80` alone is none;
- bytes: the size.

Parameters (run-level `CYTO_PARAMS` are defaults; a `params.json` in the analysis folder overrides):
- `files`: optional list of file paths, relative to the analysis folder, to count instead of all.

Output: `wordcount.json` = {"files": [{"path", "lines", "words", "bytes"}, ...], "totals": {...}}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from container.pipelines import (
    PARAMS_FILE,
    InputError,
    ParameterError,
    PipelineContext,
    check_with_folder,
    read_params_file,
    unknown_parameters,
)

RUN_PARAMS = "CYTO_PARAMS"
OUTPUT_FILE = "wordcount.json"
KNOWN_PARAMS = frozenset({"files"})
CHUNK_SIZE = 1 << 20
_MAX_NAMES_IN_MESSAGE = 20

_SEPARATORS = b" \n\r\f\t\v"
_PRINTABLE = bytes(range(0x21, 0x7F))
# Map each byte to b" " (separator) or b"a" (word byte) and delete the bytes that neither start
# nor end a word; then every word start is an "a" that follows a " " (or begins the text).
_CLASSIFY = bytes.maketrans(_SEPARATORS + _PRINTABLE, b" " * len(_SEPARATORS) + b"a" * len(_PRINTABLE))
_NEUTRAL = bytes(b for b in range(256) if b not in _SEPARATORS and b not in _PRINTABLE)


@dataclass(frozen=True)
class Counts:
    lines: int = 0
    words: int = 0
    bytes: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.lines + other.lines, self.words + other.words, self.bytes + other.bytes)


class WordCounter:
    """Incremental `wc` over chunks; a word split across two chunks counts once."""

    def __init__(self) -> None:
        self.lines = 0
        self.words = 0
        self.bytes = 0
        self._in_word = False

    def feed(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")
        self.bytes += len(chunk)
        classes = chunk.translate(_CLASSIFY, _NEUTRAL)
        if not classes:
            return
        self.words += classes.count(b" a")
        if not self._in_word and classes[0] == ord("a"):
            self.words += 1
        self._in_word = classes[-1] == ord("a")

    def counts(self) -> Counts:
        return Counts(self.lines, self.words, self.bytes)


def count_bytes(data: bytes) -> Counts:
    counter = WordCounter()
    counter.feed(data)
    return counter.counts()


def count_file(path: Path, chunk_size: int = CHUNK_SIZE) -> Counts:
    counter = WordCounter()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            counter.feed(chunk)
    return counter.counts()


def run(ctx: PipelineContext) -> dict[str, Any]:
    settings = read_settings(ctx.params, ctx.input_dir)
    chosen = select_files(candidate_files(ctx.input_dir), settings)
    if not chosen:
        raise InputError("nothing to count: the analysis folder has no files")
    entries = []
    total = Counts()
    for relative in chosen:
        counts = count_file(ctx.input_dir / relative)
        ctx.log.info("%s: %d lines, %d words, %d bytes", relative, counts.lines, counts.words, counts.bytes)
        entries.append({"path": relative, **asdict(counts)})
        total += counts
    report = {"files": entries, "totals": asdict(total)}
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    (ctx.output_dir / OUTPUT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    ctx.log.info(
        "counted %d file(s): %d lines, %d words, %d bytes",
        *(len(entries), total.lines, total.words, total.bytes),
    )
    return {"files": len(entries), **asdict(total)}


@dataclass(frozen=True)
class Settings:
    files: list[str] | None = None
    files_source: str = ""  # where `files` came from, to name it in messages


def check_params(params: Mapping[str, Any]) -> Settings:
    """The wordcount parameter check (pure; the bot runs it at plan time too)."""
    unknown = set(params) - KNOWN_PARAMS
    if unknown:
        raise unknown_parameters(unknown, KNOWN_PARAMS)
    if "files" not in params:
        return Settings()
    return Settings(_check_names(params["files"]))


def read_settings(run_params: Mapping[str, Any], input_dir: Path) -> Settings:
    """Run-level parameters, overridden key by key by the folder's params.json; unknown keys refused."""
    folder_params = read_params_file(input_dir)
    settings = check_with_folder(check_params, run_params, folder_params)
    return replace(settings, files_source=PARAMS_FILE if "files" in folder_params else RUN_PARAMS)


def _check_names(names: Any) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise ParameterError(f"'files' must be a list of file names, got {names!r}")
    if not names:
        raise ParameterError("'files' is empty; name at least one file or leave it out")
    return list(dict.fromkeys(names))


def candidate_files(input_dir: Path) -> list[str]:
    """Relative paths of the files to count: recursive, sorted, without params.json or hidden files."""
    found = []
    for path in input_dir.rglob("*"):
        relative = path.relative_to(input_dir).as_posix()
        if relative == PARAMS_FILE or _is_hidden(relative) or not path.is_file():
            continue
        found.append(relative)
    return sorted(found)


def _is_hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def select_files(available: list[str], settings: Settings) -> list[str]:
    """All `available` files, or those the `files` parameter names (in its order, once each)."""
    if settings.files is None:
        return available
    present = set(available)
    for name in settings.files:
        if name not in present:
            raise ParameterError(
                f'{settings.files_source} names "{name}", which is not in the analysis folder '
                f"(found: {_list(available)})"
            )
    return settings.files


def _list(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "no files"
    shown = ", ".join(names[:_MAX_NAMES_IN_MESSAGE])
    more = len(names) - _MAX_NAMES_IN_MESSAGE
    return f"{shown}, and {more} more" if more > 0 else shown
