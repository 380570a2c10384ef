"""The store: where batches are dropped and results land (a local folder or an S3 bucket).

Every listing is an iterator so that a batch of 10,000 analyses streams page by page.
Keys are '/'-separated and relative to the store's root, e.g. `Input/2018-12-05/batch-7/A01/x.fcs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StoreError(RuntimeError):
    """The store cannot be reached or read; the message names the store and the fix."""


class ObjectNotFound(StoreError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@runtime_checkable
class Store(Protocol):
    uri: str

    def list_children(self, prefix: str) -> Iterator[str]:
        """Names of the immediate sub-folders of `prefix` (which ends with '/'), sorted."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, recursively."""
        ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def uri_for(self, key: str) -> str:
        """The URI a job uses to reach `key` (file:///... or s3://...)."""
        ...

    def check(self) -> None:
        """Raise StoreError with a clear message when the store cannot be used."""
        ...


def open_store(uri: str) -> Store:
    """A store for `CYTO_STORE`: `s3://bucket[/prefix]` or a local folder path."""
    if uri.startswith("s3://"):
        from bot.store.s3 import S3Store

        return S3Store.from_uri(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"store {uri!r} is neither a local folder nor s3://bucket[/prefix]")
    from bot.store.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))
