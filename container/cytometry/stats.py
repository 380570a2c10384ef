"""Exact population statistics: median and robust CV per channel.

Percentiles use numpy's default definition (linear interpolation between order statistics), so
they equal `np.percentile`, but are found with single-kth in-place partitions: numpy's
multi-kth `partition` is ~10x slower than one SIMD select, and each later select only sees the
segment between ranks already fixed. A neighbouring order statistic is the minimum of the next
segment, which costs one cheap pass instead of another select.
"""

from __future__ import annotations

import math

import numpy as np

LOW, MID, HIGH = 0.1587, 0.5, 0.8413  # P15.87 and P84.13: the 1-sigma points of a normal


def quantiles(values: np.ndarray, qs: tuple[float, ...] = (LOW, MID, HIGH)) -> list[float]:
    """Linear-interpolated quantiles of a 1-D array, which is reordered in place (scratch)."""
    n = values.size
    if n == 0:
        return [math.nan] * len(qs)
    positions = [q * (n - 1) for q in qs]
    ranks = sorted({r for h in positions for r in (math.floor(h), min(math.floor(h) + 1, n - 1))})
    known: dict[int, float] = {}
    _select(values, 0, n, ranks, known)
    out = []
    for h in positions:
        k = math.floor(h)
        lo = known[k]
        hi = known[min(k + 1, n - 1)]
        out.append(lo + (hi - lo) * (h - k))
    return out


def _select(a: np.ndarray, lo: int, hi: int, ranks: list[int], known: dict[int, float]) -> None:
    """Fix the given ranks; a[lo:hi] holds exactly the order statistics lo..hi-1."""
    if not ranks:
        return
    if ranks == [lo]:
        known[lo] = float(a[lo:hi].min())
        return
    if ranks == [hi - 1]:
        known[hi - 1] = float(a[lo:hi].max())
        return
    mid = ranks[len(ranks) // 2]
    a[lo:hi].partition(mid - lo)
    known[mid] = float(a[mid])
    _select(a, lo, mid, [r for r in ranks if r < mid], known)
    _select(a, mid + 1, hi, [r for r in ranks if r > mid], known)


def median_rcv(values: np.ndarray) -> tuple[float, float]:
    """(median, rCV %) with rCV = 100 * 0.5 * (P84.13 - P15.87) / median; NaN when median <= 0."""
    low, mid, high = quantiles(values)
    if not mid > 0:
        return mid, math.nan
    return mid, 100.0 * 0.5 * (high - low) / mid


def population_stats(
    events: np.ndarray, channels: list[int], index: np.ndarray | None
) -> dict[int, tuple[float, float]]:
    """Median and rCV of each channel over the events in `index` (None: all events)."""
    n = events.shape[1] if index is None else index.size
    scratch = np.empty(n, dtype=events.dtype)
    out: dict[int, tuple[float, float]] = {}
    for j in channels:
        if index is None:
            np.copyto(scratch, events[j])
        else:
            np.take(events[j], index, out=scratch)
        out[j] = median_rcv(scratch)
    return out
