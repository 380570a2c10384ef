"""What a run allows now (bot/actions.py): one decision for Slack, the notebook and the CLI."""

from __future__ import annotations

import pytest

from bot.actions import FailedAttempt, looks_out_of_memory, run_actions
from bot.states import RunState


def test_memory_deaths_are_recognised_from_the_reason_the_exit_code_or_the_log() -> None:
    assert looks_out_of_memory("OutOfMemoryError: Container killed due to memory usage", None)
    assert looks_out_of_memory("exit code 137", 137)
    assert looks_out_of_memory("exit code 1", 1, "MemoryError")
    assert not looks_out_of_memory("exit code 2", 2, "ERROR: params.json names a missing file")


@pytest.mark.parametrize(("state", "failed", "retry", "cancel"), [
    (RunState.HELD, 0, False, True),
    (RunState.ACTIVE, 0, False, True),
    (RunState.ACTIVE, 2, True, True),
    (RunState.CANCELLING, 2, False, False),
    (RunState.FAILED, 2, True, False),
    (RunState.SUCCEEDED, 0, False, False),
    (RunState.CANCELLED, 1, True, False),
])
def test_retry_and_cancel_follow_the_run_state(state: RunState, failed: int, retry: bool, cancel: bool) -> None:
    attempts = [FailedAttempt(f"A{i}", 1, "exit code 1", 1, 2048) for i in range(failed)]
    actions = run_actions("r1", state, attempts)
    assert (actions.retry_failed, actions.cancel) == (retry, cancel)


def test_a_memory_retry_suggests_twice_the_memory_within_the_cap() -> None:
    failed = [FailedAttempt("A01", 1, "OutOfMemoryError", 137, 2048),
              FailedAttempt("A02", 2, "OutOfMemoryError", 137, 6144),
              FailedAttempt("A03", 1, "OutOfMemoryError", 137, 8192),
              FailedAttempt("A04", 1, "exit code 1", 1, 2048, log_excerpt="ERROR: bad header")]
    actions = run_actions("r1", RunState.FAILED, failed, max_memory_mib=8192)
    a01, a02, a03, a04 = (actions.advice(a) for a in ("A01", "A02", "A03", "A04"))
    assert a01 is not None and a01.out_of_memory and a01.suggested_memory_mib == 4096
    assert a02 is not None and a02.suggested_memory_mib == 8192, "capped, not 12288"
    assert a03 is not None and a03.out_of_memory and a03.suggested_memory_mib is None, "already at the cap"
    assert a04 is not None and not a04.out_of_memory and a04.suggested_memory_mib is None
    assert actions.advice("A05") is None
