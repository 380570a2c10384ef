"""A pipeline with a bug, for the entrypoint's handling of unexpected exceptions."""

from __future__ import annotations

from container.pipelines import PipelineContext


def run(ctx: PipelineContext) -> dict:
    ctx.log.info("about to divide")
    return {"ratio": 1 / 0}
