"""Reading a job's log: its own last error line, and which attempt has a log to read. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.ledger import Attempt
from bot.states import JobState
from container.contract import ERROR_PREFIX

# A reason that says no more than the exit code; the job's own ERROR line says more.
GENERIC_REASON = re.compile(r"^(exit code -?\d+)?$")


def last_error_line(log: str, max_chars: int = 300) -> str | None:
    """The message of the last `ERROR: ...` line (container.contract.ERROR_PREFIX) the entrypoint wrote, if any."""
    for line in reversed(log.splitlines()[-50:]):
        _, sep, message = line.partition(ERROR_PREFIX)
        if sep and message.strip():
            message = message.strip()
            return message if len(message) <= max_chars else message[: max_chars - 1] + "…"
    return None


def last_run_attempt(attempts: Sequence[Attempt], current: int) -> int:
    """The newest attempt that reached the executor (a fresh retry has no log yet)."""
    for record in reversed(attempts):
        if record.executor_job_id or record.state != JobState.PENDING:
            return record.attempt
    return current
