"""Pipeline registry.

A pipeline is a module with a `run(ctx: PipelineContext) -> dict` function. It reads its inputs
from `ctx.input_dir` (the staged analysis folder), writes its outputs into `ctx.output_dir`, logs
through `ctx.log`, and returns a small JSON-able summary that goes into result.json.
It raises `ParameterError` for bad parameters and `InputError` for input it cannot read (both exit
2, never retried automatically) and `PipelineError` for any other failure the scientist should read
about (exit 1); the message is the last line of the log.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# name -> module path; modules are imported on demand so a job only loads what it runs.
PIPELINES: dict[str, str] = {
    "wordcount": "container.pipelines.wordcount",
    "cytometry": "container.pipelines.cytometry",
    "r-script": "container.pipelines.rscript",
    "fasta-kmers": "container.pipelines.fasta_kmers",
}
DEFAULT_PIPELINE = "cytometry"
# An analysis folder may carry its own parameters; they override the run's.
PARAMS_FILE = "params.json"


class PipelineError(RuntimeError):
    """The analysis failed for a reason the scientist can act on."""


class ParameterError(PipelineError):
    """The analysis's parameters are invalid."""


class InputError(PipelineError):
    """The analysis's input cannot be used as it is (no readable file): like a bad parameter, it would
    fail the same way again, so it exits 2 and is never retried automatically."""


class UnknownPipeline(LookupError):
    pass


@dataclass(frozen=True)
class PipelineContext:
    input_dir: Path
    output_dir: Path
    params: Mapping[str, Any]
    log: logging.Logger
    analysis: str = ""
    vcpus: float = 1
    memory_mib: int = 2048


def read_params_file(input_dir: Path) -> dict[str, Any]:
    """The analysis folder's params.json as a dict ({} when there is none)."""
    path = input_dir / PARAMS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"{PARAMS_FILE} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{PARAMS_FILE} must hold a JSON object, not {type(data).__name__}")
    return data


def available() -> list[str]:
    return sorted(PIPELINES)


def load(name: str) -> ModuleType:
    try:
        module_path = PIPELINES[name]
    except KeyError:
        raise UnknownPipeline(
            f"unknown pipeline {name!r}; choose one of: {', '.join(available())}"
        ) from None
    return importlib.import_module(module_path)
