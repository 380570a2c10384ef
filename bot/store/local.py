"""A local folder as the store: the embedded default for a laptop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from bot.store.base import ObjectInfo, ObjectNotFound, StoreError
from container.atomic import create_beside


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            link = next((p for p in _ancestors(self.root / key, self.root) if p.is_symlink()), None)
            if link is not None:
                raise StoreError(f"{link.relative_to(self.root).as_posix()} is a link outside the store "
                                 f"(to {path}); copy the files into the store instead")
            raise StoreError(f"key {key!r} points outside the store")
        return path

    def list_children(self, prefix: str) -> Iterator[str]:
        folder = self._path(prefix)
        try:
            entries = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read {folder}: {exc.strerror}") from exc
        yield from entries

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                yield ObjectInfo(path.relative_to(self.root).as_posix(), path.stat().st_size)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} does not exist in {self.uri}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc.strerror}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = create_beside(path)  # with the user's umask, unlike mkstemp
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def uri_for(self, key: str) -> str:
        uri = self._path(key).as_uri()
        return uri + "/" if key.endswith("/") and not uri.endswith("/") else uri

    def check(self) -> None:
        if not self.root.exists():
            raise StoreError(
                f"store folder {self.root} does not exist; create it or set CYTO_STORE to the lab's folder"
            )
        if not self.root.is_dir():
            raise StoreError(f"store {self.root} is not a folder (CYTO_STORE)")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StoreError(f"store folder {self.root} is not readable (CYTO_STORE)")


def _ancestors(path: Path, root: Path) -> list[Path]:
    """`path` and its parents below `root`, outermost first."""
    chain = []
    while path != root and root in path.parents:
        chain.append(path)
        path = path.parent
    return chain[::-1]
