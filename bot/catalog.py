"""What the store holds: dates, batches and analyses, with helpful answers for what it does not."""

from __future__ import annotations

from collections.abc import Iterator

from bot.layout import (
    INPUT,
    BatchRef,
    LayoutError,
    check_analysis_name,
    check_name,
    is_date,
    nearest,
    nearest_dates,
    parse_date,
)
from bot.store import Store


class UnknownBatch(LayoutError):
    """The batch does not exist or holds no analyses; the message names the nearest ones."""


def list_dates(store: Store) -> list[str]:
    return [d for d in store.list_children(f"{INPUT}/") if is_date(d)]


def list_batches(store: Store, date: str) -> list[str]:
    parse_date(date)
    return list(store.list_children(f"{INPUT}/{date}/"))


def iter_analyses(store: Store, ref: BatchRef) -> Iterator[str]:
    """Analysis names of a batch, streamed; names the layout refuses (or reserves) are skipped."""
    for name in store.list_children(ref.input_prefix):
        try:
            yield check_analysis_name(name)
        except LayoutError:
            continue


def resolve_batch(store: Store, date: str, batch: str) -> tuple[BatchRef, list[str]]:
    """The batch and its analyses, or UnknownBatch naming the nearest existing batches."""
    ref = BatchRef(parse_date(date), check_name(batch, "batch name"))
    analyses = list(iter_analyses(store, ref))
    if analyses:
        return ref, analyses
    batches = list_batches(store, date)
    if batch in batches:
        raise UnknownBatch(f"batch {ref.label} has no analyses: put each analysis in its own folder "
                           f"under {ref.input_prefix}")
    if batches:
        hint = ", ".join(nearest(batch, batches))
        raise UnknownBatch(f"no batch {batch!r} on {date}; batches on that date: {hint}")
    dates = list_dates(store)
    if not dates:
        raise UnknownBatch(f"no batch {ref.label}: the store {store.uri} has nothing under {INPUT}/ yet")
    near = [f"{d} ({', '.join(list_batches(store, d)[:3]) or 'empty'})" for d in nearest_dates(date, dates)]
    raise UnknownBatch(f"no batch {ref.label}: nothing on {date}; nearest dates: {'; '.join(near)}")
