"""Claim tokens: who holds a claim on a row of the ledger (an attempt being submitted, a Slack
message being sent), as `host:pid:nonce[:…]`, so another process can tell a live holder from a dead one."""

from __future__ import annotations

import os
import secrets
import socket


def new_token() -> str:
    """A token naming this host and process, unique per call."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder(token: str) -> tuple[str, int | None]:
    """The host and pid a token names (pid None when it names none)."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    return host, int(pid) if pid.isdigit() else None


def dead_here(token: str) -> bool:
    """Whether the token names a process of this host that no longer exists."""
    host, pid = holder(token)
    return host == socket.gethostname() and pid is not None and not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
