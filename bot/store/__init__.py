"""The store: where batches are dropped and results land (a local folder or an S3 bucket).

Every listing is an iterator so that a batch of 10,000 analyses streams page by page.
Keys are '/'-separated and relative to the store's root, e.g. `Input/2018-12-05/batch-7/A01/x.fcs`.
"""

from __future__ import annotations

from bot.store.base import ObjectInfo, ObjectNotFound, Store, StoreError

__all__ = ["ObjectInfo", "ObjectNotFound", "Store", "StoreError", "open_store"]


def open_store(uri: str) -> Store:
    """A store for `CYTO_STORE`: `s3://bucket[/prefix]` or a local folder path."""
    if uri.startswith("s3://"):
        from bot.store.s3 import S3Store

        return S3Store.from_uri(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"store {uri!r} is neither a local folder nor s3://bucket[/prefix]")
    from bot.store.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))
