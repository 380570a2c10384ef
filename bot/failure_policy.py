"""What happens after an attempt fails: the failure policy, in one place. Pure code.

- Bad input or parameters (the job's exit code 2, as container/contract.py defines it) would fail
  the same way again: never retried automatically.
- Out of memory: retried automatically once with twice the memory (capped by CYTO_MAX_MEMORY_MIB),
  even when `--retries` is spent; a second out-of-memory failure is reported with the fix.
- Infrastructure failures (a reclaimed Spot host) are first retried by AWS Batch itself inside the
  same job (bot/executors/batch.py); what still fails follows `--retries`, like everything else.

Each decision carries the rule in plain words, which the ledger records with the attempt so that
Slack, the CLI and the notebook can say why an analysis was (or was not) retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import defaults
from container.contract import EXIT_BAD_PARAMETERS

DEFAULT_MAX_MEMORY_MIB = defaults.MAX_MEMORY_MIB


@dataclass(frozen=True)
class Decision:
    retry: bool
    rule: str  # plain words for people: which rule applied
    memory_mib: int | None = None  # the next attempt's memory, when the rule raises it
    extra_attempt: bool = False  # the rule grants an attempt beyond --retries


def is_out_of_memory(reason: str | None, exit_code: int | None) -> bool:
    text = reason or ""
    if "OutOfMemoryError" in text or "MemoryError" in text:
        return True
    return exit_code == 137 and "memory" in text.lower()


def bigger_memory(memory_mib: int, cap: int = DEFAULT_MAX_MEMORY_MIB) -> int:
    """The memory to suggest or use after running out at `memory_mib`: twice as much, within the cap."""
    return min(cap, max(memory_mib * 2, 1024))


def decide(*, attempt: int, max_attempts: int, exit_code: int | None, reason: str | None, memory_mib: int,
           memory_retried: bool, max_memory_mib: int = DEFAULT_MAX_MEMORY_MIB) -> Decision:
    """Whether a failed attempt gets an automatic retry, and under which rule."""
    retries = max(0, max_attempts - 1)
    if exit_code == EXIT_BAD_PARAMETERS:
        return Decision(False, "bad input or parameters (exit code 2): not retried automatically, "
                               "it would fail the same way")
    if is_out_of_memory(reason, exit_code):
        more = bigger_memory(memory_mib, max_memory_mib)
        if memory_retried:
            return Decision(False, f"out of memory again at {memory_mib} MiB: not retried automatically"
                                   + (f"; retry with --memory {more}" if more > memory_mib else ""))
        if more <= memory_mib:
            return Decision(False, f"out of memory at {memory_mib} MiB, already at the cap of {max_memory_mib} "
                                   "MiB (CYTO_MAX_MEMORY_MIB): not retried automatically")
        return Decision(True, f"out of memory at {memory_mib} MiB: retried once automatically with {more} MiB",
                        memory_mib=more, extra_attempt=attempt >= max_attempts)
    if attempt < max_attempts:
        return Decision(True, f"retried automatically ({attempt} of {retries} automatic "
                              f"{'retry' if retries == 1 else 'retries'}, --retries)")
    if retries == 0:
        return Decision(False, "not retried automatically (--retries 0)")
    return Decision(False, f"automatic retries spent ({retries}, --retries)")
