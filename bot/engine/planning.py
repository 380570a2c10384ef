"""Checking a run request before anything is recorded: pipeline, resources, parameters, executor."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot import catalog, defaults
from bot.batch_files import check_batch_files
from bot.engine.core import EngineCore
from bot.engine.errors import BadParameters, EngineError
from bot.engine.model import Plan
from bot.executors import Resources
from bot.parameters import check_parameters
from container.pipelines import ParameterError
from container.pipelines import available as available_pipelines


class Planning(EngineCore):
    """Checks a run request; records nothing."""

    def plan(self, date: str, batch: str, pipeline: str = defaults.PIPELINE, resources: Resources | None = None,
             params: Mapping[str, Any] | None = None) -> Plan:
        """Check a run request against the store without recording anything."""
        if pipeline not in available_pipelines():
            raise EngineError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(available_pipelines())}")
        resources = resources or self.default_resources()
        validate_resources(resources)
        ref, analyses = catalog.resolve_batch(self.store, date, batch)
        try:
            check_batch_files(self.store, ref, check_parameters(self.store, ref, analyses, pipeline, params or {}))
        except ParameterError as exc:
            raise BadParameters(str(exc)) from None
        self.check_executor()
        return Plan(ref, analyses, pipeline, resources, dict(params or {}))


def new_run_id() -> str:
    return secrets.token_hex(3)


RESOURCE_LIMITS = {
    "vcpus": (0.25, 256),
    "memory_mib": (128, 1_048_576),
    "storage_gib": (1, 16_384),
    "timeout_s": (60, 14 * 24 * 3600),
    "retries": (0, 9),
}


def validate_resources(resources: Resources) -> Resources:
    for name, (low, high) in RESOURCE_LIMITS.items():
        value = getattr(resources, name)
        if not low <= value <= high:
            raise EngineError(f"{name.replace('_', ' ')} {value} is out of range: {low}..{high}")
    return resources


def with_overrides(resources: Resources, **overrides: Any) -> Resources:
    return replace(resources, **{k: v for k, v in overrides.items() if v is not None})


