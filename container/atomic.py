"""A temporary file beside its target, for write-then-rename, created with the user's umask.

`tempfile.mkstemp` creates files `-rw-------` whatever the umask, so every result renamed from one
was unreadable to colleagues on a shared folder. Here the kernel applies the umask, as it does for
`open(path, "w")`: with umask 022 the file is `-rw-r--r--`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_ATTEMPTS = 100


def create_beside(target: Path) -> tuple[int, Path]:
    """Open a new, uniquely named hidden file in `target`'s folder for writing; return (fd, path)."""
    for _ in range(_ATTEMPTS):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}"
        try:
            return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")
