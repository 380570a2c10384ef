"""Pipeline registry.

A pipeline is a module with a `run(ctx: PipelineContext) -> dict` function. It reads its inputs
from `ctx.input_dir` (the staged analysis folder), writes its outputs into `ctx.output_dir`, logs
through `ctx.log`, and returns a small JSON-able summary that goes into result.json.
It raises `ParameterError` for bad parameters (exit 2) and `PipelineError` for any other failure
the scientist should read about (exit 1); the message is the last line of the log.
"""

from __future__ import annotations

import importlib
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


class PipelineError(RuntimeError):
    """The analysis failed for a reason the scientist can act on."""


class ParameterError(PipelineError):
    """The analysis's parameters are invalid."""


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
