"""Running a piece of a test as a user the file permissions bind, even when the tests run as root."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable


def as_unprivileged_user(action: Callable[[], str]) -> str:
    """What `action` returns when run by a user the file permissions bind: in a forked child that has
    dropped to `nobody` when the tests run as root (root writes read-only files), else in process."""
    if os.geteuid() != 0:
        return action()
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, report, and never return into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            answer = action()
        except BaseException as exc:
            answer = f"{type(exc).__name__}: {exc}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer
