"""What every store is: the Store protocol, what it lists, and the errors it raises. The stores
(local.py, s3.py) build on this module; the package's __init__ picks one for a URI."""

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
