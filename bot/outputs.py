"""A run's results: list the objects under each analysis's Output/ folder, and fetch them.

Local stores are copied file by file (with the user's umask); S3 goes through boto3's transfer
manager (multipart, parallel parts, retries), reporting bytes as they arrive so a front end can
draw a progress bar. Nothing here imports a front-end framework.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.layout import BatchRef
from bot.store import Store, StoreError
from bot.store.local import LocalStore
from bot.store.s3 import S3Store
from container.atomic import create_beside
from container.staging import safe_target

Progress = Callable[[int], None]  # called with the number of bytes just written


@dataclass(frozen=True)
class OutputFile:
    analysis: str
    key: str  # the store key, Output/DATE/BATCH/ANALYSIS/...
    relative: str  # the path below the analysis's output folder
    size: int
    uri: str


def list_outputs(store: Store, ref: BatchRef, analyses: Iterable[str]) -> list[OutputFile]:
    """Every object under each analysis's output folder of `ref` (the run's own layout)."""
    found = []
    for analysis in analyses:
        prefix = ref.analysis(analysis).output_prefix
        for info in store.list_objects(prefix):
            found.append(OutputFile(analysis, info.key, info.key.removeprefix(prefix), info.size,
                                    store.uri_for(info.key)))
    return found


def download(store: Store, files: Sequence[OutputFile], dest: Path, progress: Progress | None = None) -> list[Path]:
    """Fetch `files` to DEST/ANALYSIS/RELATIVE; returns the paths written. A key that would land
    outside DEST is refused (StoreError) before anything is written."""
    targets = []
    for item in files:
        try:
            targets.append(safe_target(dest, f"{item.analysis}/{item.relative}"))
        except Exception as exc:  # StagingError: a key with '..' or an absolute part
            raise StoreError(f"refusing to write {item.key} outside {dest}: {exc}") from exc
    on_bytes = progress or (lambda n: None)
    for item, target in zip(files, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(store, S3Store):
            _download_s3(store, item.key, target, on_bytes)
        elif isinstance(store, LocalStore):
            _copy_local(store.root / item.key, target)
            on_bytes(item.size)
        else:
            _write_bytes(target, store.read_bytes(item.key))
            on_bytes(item.size)
    return targets


def _download_s3(store: S3Store, key: str, target: Path, on_bytes: Progress) -> None:
    from boto3.s3.transfer import TransferConfig

    # download_file writes a temporary file beside the target and renames it when complete.
    with store.errors(store.uri_for(key)):
        store.client.download_file(store.bucket, store.object_key(key), str(target), Callback=on_bytes,
                                   Config=TransferConfig(max_concurrency=8))


def _copy_local(source: Path, target: Path) -> None:
    fd, tmp = create_beside(target)
    try:
        with open(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_bytes(target: Path, data: bytes) -> None:
    fd, tmp = create_beside(target)
    try:
        with open(fd, "wb") as out:
            out.write(data)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
