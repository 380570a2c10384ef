"""What a run allows now, decided once for every front end (Slack buttons, notebook buttons, CLI
hints). Pure: the run's state, its failed analyses and the memory cap in, the decision out.

- The failed analyses may be retried while there are some and the run is not being cancelled.
- The run may be cancelled until it has finished or a cancel is under way (a held run is abandoned).
- Per failed analysis: whether it most likely ran out of memory, and then the memory to suggest for
  its retry (bot/failure_policy.py's rule: twice as much, within CYTO_MAX_MEMORY_MIB). No suggestion
  when the attempt already ran at the cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot import defaults
from bot.failure_policy import bigger_memory, is_out_of_memory
from bot.states import RunState

# What an attempt's reason or log says when it died of memory (kernel OOM kill, Batch's
# OutOfMemoryError, Python's MemoryError, R's "cannot allocate").
_MEMORY_DEATH = re.compile(r"out ?of ?memory|outofmemory|memoryerror|\boom\b|\bkilled\b|cannot allocate memory",
                           re.IGNORECASE)


def looks_out_of_memory(reason: str | None, exit_code: int | None, log_excerpt: str | None = None) -> bool:
    """Whether an attempt most likely died of memory: the failure policy's rule, an exit code 137
    (SIGKILL, the kernel's OOM killer), or the words of a memory death in its reason or log."""
    if is_out_of_memory(reason, exit_code) or exit_code == 137:
        return True
    return any(_MEMORY_DEATH.search(text) for text in (reason, log_excerpt) if text)


@dataclass(frozen=True)
class FailedAttempt:
    """A failed analysis as the decision sees it."""

    analysis: str
    attempt: int
    reason: str | None
    exit_code: int | None
    memory_mib: int | None  # what the failed attempt ran with
    log_excerpt: str | None = None


@dataclass(frozen=True)
class RetryAdvice:
    analysis: str
    attempt: int  # the attempt that failed: a retry names it (expected_attempt)
    out_of_memory: bool
    memory_mib: int | None
    suggested_memory_mib: int | None  # a retry with more memory, when it ran out and the cap allows more


@dataclass(frozen=True)
class RunActions:
    run_id: str
    retry_failed: bool
    cancel: bool
    failed: tuple[RetryAdvice, ...] = ()

    def advice(self, analysis: str) -> RetryAdvice | None:
        return next((a for a in self.failed if a.analysis == analysis), None)


def may_retry_failed(state: RunState, failed: int) -> bool:
    return failed > 0 and state != RunState.CANCELLING


def may_cancel(state: RunState) -> bool:
    return not state.is_finished and state != RunState.CANCELLING


def retry_advice(failed: FailedAttempt, max_memory_mib: int = defaults.MAX_MEMORY_MIB) -> RetryAdvice:
    oom = looks_out_of_memory(failed.reason, failed.exit_code, failed.log_excerpt)
    suggested = None
    if oom and failed.memory_mib:
        more = bigger_memory(failed.memory_mib, max_memory_mib)
        suggested = more if more > failed.memory_mib else None
    return RetryAdvice(failed.analysis, failed.attempt, oom, failed.memory_mib, suggested)


def run_actions(run_id: str, state: RunState, failed: Iterable[FailedAttempt], *,
                max_memory_mib: int = defaults.MAX_MEMORY_MIB) -> RunActions:
    advice = tuple(retry_advice(f, max_memory_mib) for f in failed)
    return RunActions(run_id, may_retry_failed(state, len(advice)), may_cancel(state), advice)
