from __future__ import annotations

import numpy as np
import pytest

from container.cytometry.qc import _by_slice
from container.cytometry.stats import (
    Measurer,
    median,
    median_rcv,
    moments,
    percentile,
    quantiles,
    sorted_histogram,
    sorted_percentile,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 100, 1001, 65_537])
def test_quantiles_equal_numpy_percentile(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (rng.normal(size=n), np.round(rng.normal(size=n) * 2)):
        values = values.astype(np.float32)
        expected = np.percentile(values.astype(np.float64), [15.87, 50, 84.13])
        np.testing.assert_allclose(quantiles(values.copy()), expected, rtol=1e-12, atol=1e-12)


def test_rcv_of_a_normal_is_its_cv_and_empty_is_nan() -> None:
    values = np.random.default_rng(0).normal(1000, 100, 200_000).astype(np.float32)
    median, rcv = median_rcv(values)
    assert median == pytest.approx(1000, rel=0.005) and rcv == pytest.approx(10, rel=0.02)
    assert all(np.isnan(median_rcv(np.zeros(0, np.float32))))
    assert np.isnan(median_rcv(-values)[1])


def _expected(values: np.ndarray) -> tuple[float, float]:
    # the reference definition: np.percentile on the population's values, in float64
    p16, med, p84 = np.percentile(values.astype(np.float64), [15.87, 50, 84.13])
    return float(med), (100 * 0.5 * (p84 - p16) / med if med > 0 else float("nan"))


@pytest.mark.parametrize("kind", ["lognormal", "ties", "nan", "inf", "sorted", "negative"])
def test_measurer_large_populations_equal_percentile(kind: str) -> None:
    rng = np.random.default_rng(len(kind))
    n = 300_001
    events = rng.lognormal(7, 1.2, (3, n)).astype(np.float32)
    if kind == "ties":
        events = np.round(events / 500).astype(np.float32)
    elif kind == "nan":
        events[rng.random((3, n)) < 0.05] = np.nan
    elif kind == "inf":
        events[rng.random((3, n)) < 0.2] = np.inf
    elif kind == "sorted":
        events.sort(axis=1)
    elif kind == "negative":
        events[1] *= -1
    masks = [None, rng.random(n) < 0.9, events[0] > 2000, rng.random(n) < 0.01, np.zeros(n, dtype=bool)]
    measured = Measurer().measure(events, [0, 1, 2], masks)
    for mask, values in zip(masks, measured, strict=True):
        for j in range(3):
            population = events[j] if mask is None else events[j][mask]
            # the same numbers as selecting over a copy of the whole population (NaN sorts last)
            np.testing.assert_array_equal(values[j], median_rcv(population.copy()))
            if kind not in ("nan", "inf") and population.size:  # np.percentile: inf, NaN differ
                np.testing.assert_allclose(values[j], _expected(population), rtol=1e-12, atol=0, equal_nan=True)


def test_median_and_percentile_equal_numpy() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 1000, 99_999, 100_000):
        x64 = rng.normal(3, 1, n)
        x32 = x64.astype(np.float32)
        for x in (x64, x32, np.round(x32)):
            assert median(x) == float(np.median(x))
        for q in ([0.5, 99.5], [1], [0, 100], [15.87, 50, 84.13]):
            assert percentile(x64, q) == [float(v) for v in np.atleast_1d(np.percentile(x64, q))]


def test_sorted_percentile_and_histogram_equal_numpy() -> None:
    rng = np.random.default_rng(11)
    for n in (1, 2, 5, 1000, 90_001):
        for x in (rng.normal(3, 1, n), np.round(rng.normal(3, 1, n), 1)):
            ordered = np.sort(x)
            for q in ([0.5, 99.5], [1], [0, 100], [15.87, 50, 84.13]):
                assert sorted_percentile(ordered, q) == [float(v) for v in np.atleast_1d(np.percentile(x, q))]
            lo, hi = sorted_percentile(ordered, [0.5, 99.5])
            if hi > lo:
                counts, edges = sorted_histogram(ordered, 128, lo, hi)
                want_counts, want_edges = np.histogram(x, bins=128, range=(lo, hi))
                np.testing.assert_array_equal(counts, want_counts)
                np.testing.assert_array_equal(edges, want_edges)


@pytest.mark.parametrize("order", ["increasing", "shuffled"])
def test_time_slices_group_as_searchsorted(order: str) -> None:
    rng = np.random.default_rng(5)
    t = np.repeat(np.linspace(0, 600, 2001), 3)  # ties, and events exactly on the slice edges
    if order == "shuffled":
        rng.shuffle(t)
    v = rng.normal(size=t.size).astype(np.float32)
    edges = np.linspace(t.min(), t.max(), 11)
    grouped, ends = _by_slice(t, v, edges)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, 9)  # the definition
    np.testing.assert_array_equal(ends, np.cumsum(np.bincount(which, minlength=10)))
    np.testing.assert_array_equal(grouped, v[np.argsort(which, kind="stable")])


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 100_003])
def test_moments_equal_numpy(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    events = np.vstack(
        [
            rng.normal(80_000, 80, n),  # large mean, tiny spread: centring keeps the variance
            rng.lognormal(7, 1.2, n),
            rng.normal(100, 300, n),  # mostly compensated negatives
        ]
    ).astype(np.float32)
    masks = [None, rng.random(n) < 0.3, np.zeros(n, dtype=bool), events[1] > 1000]
    found = moments(events, [0, 1, 2], masks)
    for mask, values in zip(masks, found, strict=True):
        for j in range(3):
            v = (events[j] if mask is None else events[j][mask]).astype(np.float64)
            mean, gmean, cv = values[j]
            if v.size == 0:
                assert all(np.isnan(values[j]))
                continue
            assert mean == pytest.approx(v.mean(), rel=1e-12, abs=1e-9)
            pos = v[v > 0]
            want_g = float(np.exp(np.log(pos).mean())) if pos.size else np.nan
            np.testing.assert_allclose(gmean, want_g, rtol=1e-10, equal_nan=True)
            want_cv = 100 * v.std(ddof=1) / v.mean() if v.size >= 2 and v.mean() > 0 else np.nan
            np.testing.assert_allclose(cv, want_cv, rtol=1e-8, equal_nan=True)
