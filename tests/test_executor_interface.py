"""Every executor implements the whole Executor protocol: the engine and the doctor call each member
directly, never through getattr, so a missing one must fail here rather than in a run."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.executors import Executor, ExecutorError
from bot.executors.batch import BatchExecutor
from bot.executors.local import LocalExecutor
from tests.privileges import as_unprivileged_user
from tests.scripted_executor import ScriptedExecutor

MEMBERS = sorted({*Executor.__annotations__, *(n for n in vars(Executor) if not n.startswith("_"))})
EXECUTORS: dict[str, Callable[[Path], object]] = {
    "local": lambda tmp: LocalExecutor(tmp / "spool"),
    "batch": lambda tmp: BatchExecutor("queue", "definition"),  # no AWS call until used
    "scripted": lambda tmp: ScriptedExecutor(),
}


def test_the_protocol_names_every_capability_the_engine_uses() -> None:
    assert MEMBERS == ["cancel", "check", "describe", "explain", "find", "flush", "name", "read_log", "submit",
                       "submit_concurrency"]


@pytest.mark.parametrize("kind", sorted(EXECUTORS))
def test_each_executor_implements_every_member(kind: str, tmp_path: Path) -> None:
    executor = EXECUTORS[kind](tmp_path)
    missing = [m for m in MEMBERS if not hasattr(executor, m)]
    assert not missing, f"{type(executor).__name__} lacks {missing}"
    assert isinstance(executor.submit_concurrency, int) and executor.submit_concurrency >= 1  # type: ignore[attr-defined]


def test_a_read_only_local_spool_fails_the_check() -> None:
    def check() -> str:
        try:
            executor.check()
        except ExecutorError as exc:
            return str(exc)
        return "passed"

    with tempfile.TemporaryDirectory(prefix="cyto-read-only-") as scratch:  # /tmp: reachable by `nobody`
        spool = Path(scratch) / "spool"
        executor = LocalExecutor(spool)
        assert check() == "passed"
        if os.geteuid() == 0:  # the unprivileged user owns the spool, as a lab member owns theirs
            nobody = pwd.getpwnam("nobody")
            for owned in (Path(scratch), *spool.rglob("*"), spool):
                os.chown(owned, nobody.pw_uid, nobody.pw_gid)
        (spool / "queue").chmod(0o500)
        assert "CYTO_LOCAL_SPOOL" in as_unprivileged_user(check)
