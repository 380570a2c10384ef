from __future__ import annotations

import numpy as np
import pytest

from container.cytometry.stats import median_rcv, quantiles


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
